//! The command line: clap definitions only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "graft", version, about = "Transfer learning from pretrained teachers, on a laptop CPU.")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Settings every command shares. Each resolves CLI flag > environment variable > default.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Compute backend: `flex` (pure Rust, default), `libtorch` or `cuda` when built with them.
    #[arg(long, global = true, env = "GRAFT_DEVICE", default_value = "flex")]
    pub device: String,

    /// Where downloaded weights and feature caches live [default: $XDG_CACHE_HOME/graft or ~/.cache/graft].
    #[arg(long, global = true, env = "GRAFT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Never use the network (also set by GRAFT_OFFLINE=1 or HF_HUB_OFFLINE=1).
    #[arg(long, global = true)]
    pub offline: bool,

    /// No progress or log lines on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Print the resolved settings to stderr before running.
    #[arg(long, global = true)]
    pub show_settings: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify images with a pretrained teacher (ImageNet classes).
    Predict(PredictArgs),
    /// Print a teacher's pooled feature vector for each image.
    Embed(EmbedArgs),
    /// Convert a weight file (safetensors, PyTorch zip or legacy .pth) to safetensors.
    Convert(ConvertArgs),
    /// List the teachers graft knows.
    Teachers,
}

/// Which teacher and which weights.
#[derive(Debug, Args)]
pub struct TeacherArgs {
    /// Teacher name (see `graft teachers`).
    #[arg(long, default_value = graft::models::zoo::DEFAULT_TEACHER)]
    pub teacher: String,

    /// A local weight file for the teacher (safetensors or .pth); works offline.
    #[arg(long)]
    pub weights: Option<PathBuf>,

    /// Load even if the file lacks some tensors or shapes some differently (they keep random values).
    #[arg(long)]
    pub allow_partial: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub teacher: TeacherArgs,

    /// Image files, or folders of images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,

    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,

    /// Print JSON: [{"path", "top": [{"class_index", "label", "probability"}]}].
    #[arg(long)]
    pub json: bool,

    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub teacher: TeacherArgs,

    /// Image files, or folders of images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,

    /// Print JSON: [{"path", "features": [...]}] (default: CSV rows `path,v1,v2,...`).
    #[arg(long)]
    pub json: bool,

    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The weight file to read.
    pub input: PathBuf,
    /// The safetensors file to write.
    pub output: PathBuf,
}
