//! Resolving settings in one place: CLI flag > environment > default.

use std::path::PathBuf;

use graft::burn::tensor::Device;

use crate::cli::GlobalArgs;

/// The settings a command runs with.
#[derive(Debug)]
pub struct Settings {
    pub device_name: String,
    pub device: Device,
    pub cache_dir: PathBuf,
    pub offline: bool,
    pub quiet: bool,
    /// Frozen blocks through graft's fused CPU plan on `flex` (default on).
    pub fused_plan: bool,
}

impl Settings {
    pub fn resolve(global: &GlobalArgs) -> anyhow::Result<Settings> {
        let env_flag =
            |name: &str| std::env::var(name).is_ok_and(|value| !matches!(value.as_str(), "" | "0" | "false"));
        let cache_dir = match &global.cache_dir {
            Some(dir) => dir.clone(),
            None => graft::fsutil::default_cache_dir(),
        };
        Ok(Settings {
            device: graft::device::parse(&global.device)?,
            device_name: global.device.clone(),
            cache_dir,
            offline: global.offline || env_flag("GRAFT_OFFLINE") || env_flag("HF_HUB_OFFLINE"),
            quiet: global.quiet,
            fused_plan: global.fused_plan.unwrap_or(true),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "device = {}\ncache_dir = {}\noffline = {}\nquiet = {}\nfused_plan = {}",
            self.device_name,
            self.cache_dir.display(),
            self.offline,
            self.quiet,
            self.fused_plan
        )
    }

    /// How students run on new images with these settings.
    pub fn inference(&self, batch_size: usize) -> graft::train::evaluate::InferenceOptions {
        graft::train::evaluate::InferenceOptions {
            batch_size,
            cache_dir: self.cache_dir.clone(),
            fused_plan: self.fused_plan,
        }
    }

    /// How a loaded student runs with these settings.
    pub fn student_options(&self, batch_size: usize) -> graft::run::StudentOptions {
        graft::run::StudentOptions {
            device: self.device.clone(),
            batch_size,
            fused_plan: self.fused_plan,
            cache_dir: self.cache_dir.clone(),
            offline: self.offline,
        }
    }

    /// How labelled data is opened with these settings and the column flags.
    pub fn data_options(&self, columns: &crate::cli::TextColumnArgs) -> graft::run::DataOptions {
        graft::run::DataOptions { cache_dir: self.cache_dir.clone(), columns: columns.columns() }
    }

    /// How a teacher runs on inputs with these settings.
    pub fn run_options(&self, batch_size: usize) -> graft::run::RunOptions {
        graft::run::RunOptions {
            device: self.device.clone(),
            batch_size,
            fused_plan: self.fused_plan,
            interrupt: Some(crate::INTERRUPT.clone()),
        }
    }

    /// Prints a log line to stderr unless `--quiet`.
    pub fn log(&self, message: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", message.as_ref());
        }
    }
}
