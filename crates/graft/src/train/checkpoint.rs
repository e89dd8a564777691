//! A run's checkpoint folder, kept the same way for every student that trains by epochs (image
//! strategies, text fine-tunes): each epoch's checkpoint is a folder of its own (`epoch-0003/`,
//! holding `state.json` and whatever the student writes: its record, the optimizer's), written
//! whole before `LATEST` (replaced atomically) names it; only then is the previous one removed.
//! A write that fails midway (a full disk) or a process killed at any moment leaves `LATEST`
//! naming a complete checkpoint.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{GraftError, Result};

/// The checkpoint folder's name inside a run directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";
const LATEST_FILE: &str = "LATEST";
const STATE_FILE: &str = "state.json";

/// The folder of the newest complete checkpoint under `root`, if any. Runs written before
/// checkpoints had folders kept their files in `root` itself; they resume too.
///
/// # Errors
/// A `LATEST` that cannot be read or names no complete checkpoint folder.
pub fn latest(root: &Path) -> Result<Option<PathBuf>> {
    let pointer = root.join(LATEST_FILE);
    match std::fs::read_to_string(&pointer) {
        Ok(name) => {
            let name = name.trim();
            let valid = name
                .strip_prefix("epoch-")
                .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
            if !valid || !root.join(name).join(STATE_FILE).is_file() {
                return Err(GraftError::Checkpoint {
                    path: pointer,
                    reason: format!("it names `{name}`, which is not a complete checkpoint folder"),
                });
            }
            Ok(Some(root.join(name)))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok(root.join(STATE_FILE).is_file().then(|| root.to_owned()))
        }
        Err(source) => Err(GraftError::Io { path: pointer, source }),
    }
}

/// A run's checkpoint folder and the newest complete checkpoint in it.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    root: PathBuf,
    current: Option<PathBuf>,
}

impl Checkpoints {
    /// The checkpoints under `root`; with `resume`, the newest complete one is current (a fresh
    /// run starts with none, and its first save replaces what an earlier run left).
    ///
    /// # Errors
    /// As [`latest`].
    pub fn open(root: PathBuf, resume: bool) -> Result<Checkpoints> {
        let current = if resume { latest(&root)? } else { None };
        Ok(Checkpoints { root, current })
    }

    /// The checkpoint folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The newest complete checkpoint, once there is one.
    pub fn current(&self) -> Option<&Path> {
        self.current.as_deref()
    }

    /// The current checkpoint's state, when there is one.
    ///
    /// # Errors
    /// A state file that cannot be read or parsed.
    pub fn state<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let Some(current) = &self.current else { return Ok(None) };
        let path = current.join(STATE_FILE);
        let text = std::fs::read(&path).map_err(|source| GraftError::Io { path: path.clone(), source })?;
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|error| GraftError::Checkpoint { path, reason: error.to_string() })
    }

    /// Writes epoch `epochs_done`'s checkpoint: `write` fills the new folder (given it and the
    /// previous checkpoint, to link unchanged files from), then `state` is written, `LATEST`
    /// switched to the folder and the previous checkpoint removed.
    ///
    /// # Errors
    /// A file that cannot be written; the previous checkpoint then stays current.
    pub fn save(
        &mut self,
        epochs_done: usize,
        state: &impl Serialize,
        write: impl FnOnce(&Path, Option<&Path>) -> Result<()>,
    ) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| GraftError::Io { path, source }
        };
        let name = format!("epoch-{epochs_done:04}");
        let folder = self.root.join(&name);
        if folder.exists() {
            // Left by a write of this epoch that did not finish: never pointed to, so incomplete.
            std::fs::remove_dir_all(&folder).map_err(io(&folder))?;
        }
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        write(&folder, self.current.as_deref())?;
        let json = serde_json::to_vec_pretty(state)
            .map_err(|error| GraftError::Checkpoint { path: folder.clone(), reason: error.to_string() })?;
        crate::fsutil::write_atomic(&folder.join(STATE_FILE), &json)?;
        // The switch: from here on a resume reads this folder.
        crate::fsutil::write_atomic(&self.root.join(LATEST_FILE), name.as_bytes())?;
        match self.current.replace(folder) {
            Some(previous) if previous == self.root => {
                // A checkpoint from before folders: its files, not the folder holding the new one.
                for entry in std::fs::read_dir(&previous).into_iter().flatten().flatten() {
                    if entry.path().is_file() && entry.file_name() != LATEST_FILE {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
            Some(previous) => {
                let _ = std::fs::remove_dir_all(&previous);
            }
            None => {}
        }
        Ok(())
    }

    /// The error for a run asked to stop after `epochs_done` epochs: it names the checkpoint a
    /// resume continues from.
    pub fn interrupted(&self, epochs_done: usize) -> GraftError {
        GraftError::Interrupted { epochs_done, checkpoint: self.current.clone().unwrap_or_else(|| self.root.clone()) }
    }
}

/// Writes a module's record to `path`, atomically.
///
/// # Errors
/// A file that cannot be written.
pub fn write_record(path: &Path, record: ModuleRecord) -> Result<()> {
    crate::fsutil::write_atomic_with(path, |temporary| {
        record
            .save(temporary)
            .map_err(|error| GraftError::Checkpoint { path: path.to_owned(), reason: format!("{error:?}") })
    })
}

/// Reads a module's record written by [`write_record`].
///
/// # Errors
/// A file that cannot be read as a record.
pub fn read_record(path: &Path) -> Result<ModuleRecord> {
    ModuleRecord::load(path)
        .map_err(|error| GraftError::Checkpoint { path: path.to_owned(), reason: format!("{error:?}") })
}

/// Writes an optimizer's state (moments, step counts) to `path`.
///
/// # Errors
/// A file that cannot be written.
pub fn write_optimizer(path: &Path, optimizer: &ModuleOptimizer) -> Result<()> {
    optimizer.save(path).map_err(|error| GraftError::Checkpoint { path: path.to_owned(), reason: format!("{error:?}") })
}

/// An optimizer with the state [`write_optimizer`] wrote to `path`.
///
/// # Errors
/// A file that cannot be read as an optimizer's state.
pub fn read_optimizer(path: &Path, optimizer: ModuleOptimizer) -> Result<ModuleOptimizer> {
    optimizer.load(path).map_err(|error| GraftError::Checkpoint { path: path.to_owned(), reason: format!("{error:?}") })
}

/// Where two runs' identities (JSON objects, one level of nesting) differ, each as
/// `name: first vs second`; what a resume refuses a checkpoint for.
pub fn differences(first: &serde_json::Value, second: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let (Value::Object(first), Value::Object(second)) = (first, second) else {
        return if first == second { Vec::new() } else { vec![format!("the run's settings: {first} vs {second}")] };
    };
    let mut differences = Vec::new();
    for (key, value) in first {
        match (value, second.get(key)) {
            (Value::Object(inner), Some(Value::Object(other_inner))) => {
                for (inner_key, inner_value) in inner {
                    let other_value = other_inner.get(inner_key).unwrap_or(&Value::Null);
                    if inner_value != other_value {
                        differences.push(format!("{key}.{inner_key}: {inner_value} vs {other_value}"));
                    }
                }
            }
            (value, other_value) if Some(value) != other_value => {
                differences.push(format!("{key}: {value} vs {}", other_value.unwrap_or(&Value::Null)));
            }
            _ => {}
        }
    }
    for key in second.keys().filter(|key| !first.contains_key(*key)) {
        differences.push(format!("{key}: null vs {}", second[key]));
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_field_that_changed() {
        let saved = serde_json::json!({"seed": 1, "recipe": {"rate": 0.1, "batch": 8}, "classes": ["a", "b"]});
        let same = saved.clone();
        assert!(differences(&saved, &same).is_empty());
        let now =
            serde_json::json!({"seed": 2, "recipe": {"rate": 0.1, "batch": 16}, "classes": ["a", "b"], "new": true});
        assert_eq!(differences(&saved, &now), vec!["recipe.batch: 8 vs 16", "seed: 1 vs 2", "new: null vs true"]);
    }

    #[test]
    fn latest_names_only_a_complete_checkpoint_folder() {
        let root = std::env::temp_dir().join(format!("graft-checkpoints-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        assert_eq!(latest(&root).unwrap(), None, "an empty folder holds no checkpoint");
        let mut checkpoints = Checkpoints::open(root.clone(), true).unwrap();
        checkpoints
            .save(1, &serde_json::json!({"epochs_done": 1}), |folder, previous| {
                assert!(previous.is_none());
                std::fs::write(folder.join("model.bin"), b"one")
                    .map_err(|source| GraftError::Io { path: folder.to_owned(), source })
            })
            .unwrap();
        checkpoints
            .save(2, &serde_json::json!({"epochs_done": 2}), |folder, previous| {
                assert_eq!(previous, Some(root.join("epoch-0001").as_path()));
                std::fs::write(folder.join("model.bin"), b"two")
                    .map_err(|source| GraftError::Io { path: folder.to_owned(), source })
            })
            .unwrap();
        assert_eq!(latest(&root).unwrap(), Some(root.join("epoch-0002")));
        assert!(!root.join("epoch-0001").exists(), "the previous checkpoint is removed once the new one is named");
        let reopened = Checkpoints::open(root.clone(), true).unwrap();
        assert_eq!(reopened.state::<serde_json::Value>().unwrap().unwrap()["epochs_done"], 2);
        assert_eq!(Checkpoints::open(root.clone(), false).unwrap().current(), None, "a fresh run resumes nothing");

        // A failed write leaves the previous checkpoint current.
        let mut failing = Checkpoints::open(root.clone(), true).unwrap();
        let error =
            failing.save(3, &serde_json::json!({}), |_, _| Err(GraftError::Invalid("disk full".into()))).unwrap_err();
        assert!(error.to_string().contains("disk full"));
        assert_eq!(latest(&root).unwrap(), Some(root.join("epoch-0002")));

        std::fs::write(root.join("LATEST"), "../elsewhere").unwrap();
        let message = latest(&root).unwrap_err().to_string();
        assert!(message.contains("not a complete checkpoint folder") && message.contains("LATEST"), "{message}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
