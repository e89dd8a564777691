//! Images and texts: the two kinds of input a teacher or student reads. Below everything that
//! differs between them (data, teachers, run records), so each can name it; the run layer
//! (`run::modality`) decides what each means for data and inputs.

/// What a teacher or student reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Run records written before graft read texts hold no modality: they are image runs.
    #[default]
    Image,
    Text,
}

impl Modality {
    /// The word for its examples: `images` or `texts`.
    pub fn noun(self) -> &'static str {
        match self {
            Modality::Image => "images",
            Modality::Text => "texts",
        }
    }

    /// What names one input in an answer: its `path`, or the `text` itself.
    pub fn input_key(self) -> &'static str {
        match self {
            Modality::Image => "path",
            Modality::Text => "text",
        }
    }

    /// "an image" / "a text".
    pub fn with_article(self) -> &'static str {
        match self {
            Modality::Image => "an image",
            Modality::Text => "a text",
        }
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Modality::Image => "image",
            Modality::Text => "text",
        })
    }
}
