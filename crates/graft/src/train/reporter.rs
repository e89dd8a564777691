//! How the library tells its caller about progress; the CLI draws bars, the library never does.

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub validation_loss: f64,
    pub validation_accuracy: f64,
    pub learning_rate: f64,
    pub images_per_second: f64,
    pub seconds: f64,
}

/// Receives progress from long-running library calls.
pub trait Reporter: Sync {
    /// A stage with `total` steps begins (`total` 0 when unknown).
    fn start(&self, _stage: &str, _total: usize) {}
    /// `count` more steps of the current stage are done; `detail` is a short status.
    fn advance(&self, _count: usize, _detail: &str) {}
    /// The current stage is over.
    fn finish(&self) {}
    /// An epoch ended.
    fn epoch(&self, _metrics: &EpochMetrics) {}
    /// A line worth showing the user (a skipped file, a decision).
    fn note(&self, _message: &str) {}
}

/// Reports nothing.
pub struct Silent;

impl Reporter for Silent {}

/// Keeps the notes and nothing else: for a caller that shows them later, or a test that checks
/// what a run said.
#[derive(Default)]
pub struct Notes(std::sync::Mutex<Vec<String>>);

impl Notes {
    /// The notes so far, in order.
    pub fn taken(&self) -> Vec<String> {
        self.0.lock().map(|notes| notes.clone()).unwrap_or_default()
    }
}

impl Reporter for Notes {
    fn note(&self, message: &str) {
        if let Ok(mut notes) = self.0.lock() {
            notes.push(message.to_owned());
        }
    }
}
