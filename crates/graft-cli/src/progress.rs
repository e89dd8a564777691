//! The progress reporter: indicatif bars on a terminal, nothing when piped or `--quiet`;
//! epoch summaries and notes as plain stderr lines unless `--quiet`.

use std::io::IsTerminal;
use std::sync::Mutex;

use graft::train::{EpochMetrics, Reporter};
use indicatif::{ProgressBar, ProgressStyle};

pub struct CliReporter {
    quiet: bool,
    bars: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl CliReporter {
    pub fn new(quiet: bool) -> Self {
        CliReporter { quiet, bars: !quiet && std::io::stderr().is_terminal(), bar: Mutex::new(None) }
    }

    fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        match self.bar.lock().ok().and_then(|bar| bar.clone()) {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Reporter for CliReporter {
    fn start(&self, stage: &str, total: usize) {
        if !self.bars {
            return;
        }
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(stage.to_owned());
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, count: usize, detail: &str) {
        if let Some(bar) = self.bar.lock().ok().and_then(|bar| bar.clone()) {
            bar.inc(count as u64);
            if !detail.is_empty() {
                bar.set_message(detail.to_owned());
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }

    fn epoch(&self, m: &EpochMetrics) {
        self.println(&format!(
            "epoch {:>3}  loss {:.4}  acc {:.3}  val_loss {:.4}  val_acc {:.3}  lr {:.2e}  {:.0} img/s  {:.1}s",
            m.epoch,
            m.train_loss,
            m.train_accuracy,
            m.validation_loss,
            m.validation_accuracy,
            m.learning_rate,
            m.images_per_second,
            m.seconds
        ));
    }

    fn note(&self, message: &str) {
        self.println(message);
    }
}
