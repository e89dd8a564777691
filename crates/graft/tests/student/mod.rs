//! `run::Student`: a run loaded once into memory, asked for predictions from bytes, pixels and
//! files.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use graft::train::{Silent, Strategy, train};

use crate::common::{self, temp_dir};
use crate::training::{options, sample, teacher};

/// Every file under `dir`, with its length (what a run wrote there).
fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push((path.clone(), entry.metadata().unwrap().len()));
            }
        }
    }
    out.sort();
    out
}

/// A student held in memory predicts from encoded bytes, decoded pixels and files alike, the
/// same probabilities as the evaluation's cached path, from several threads at once, and
/// writes nothing: the feature cache its run filled is left as it was.
#[test]
fn a_student_in_memory_predicts_from_bytes_and_writes_nothing() {
    use graft::data::dataset::ItemSource;
    use graft::run::{Modality, Student, StudentOptions};
    let dir = temp_dir("in-memory");
    let teacher = teacher();
    let (train_set, validation) = sample(6);
    let cache = dir.join("cache");
    for strategy in [Strategy::Deep, Strategy::Mid] {
        let run = dir.join(strategy.to_string());
        let mut run_options = options(strategy, &run, &cache);
        run_options.hyperparameters.epochs = 1;
        train(&teacher, &train_set, &validation, &run_options, &Device::flex(), &Silent).unwrap();
        let student_options = StudentOptions { batch_size: 5, cache_dir: cache.clone(), ..StudentOptions::default() };
        let student = std::sync::Arc::new(Student::load(&run, &student_options).unwrap());
        assert_eq!(student.modality(), Modality::Image);
        assert_eq!(student.classes(), &train_set.classes[..]);
        assert_eq!(student.record()["strategy"], strategy.to_string());

        let before = files_under(&cache);
        let sources: Vec<ItemSource> = validation.items.iter().map(|item| item.source.clone()).collect();
        let files: Vec<Vec<u8>> = sources.iter().map(|source| source.content().unwrap()).collect();
        let mut encoded: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        let truncated = &files[0][..files[0].len() / 3];
        encoded.insert(1, truncated);
        let from_bytes = student.predict_encoded(&encoded).unwrap();
        assert!(from_bytes[1].is_err(), "the truncated image is refused on its own");
        let from_bytes: Vec<Vec<f32>> =
            from_bytes.into_iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, row)| row.unwrap()).collect();
        let pixels: Vec<image::RgbImage> = sources.iter().map(|source| source.load().unwrap()).collect();
        let from_pixels = student.predict_images(&pixels).unwrap();
        let (uncached, skipped) = student.predict_sources(&sources, None, &Silent).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(files_under(&cache), before, "{strategy}: predicting wrote nothing");

        // The evaluation's path through the feature cache (the same entries training made).
        let (cached, _) = student.predict_sources(&sources, Some(&cache), &Silent).unwrap();
        for (index, row) in from_bytes.iter().enumerate() {
            assert_eq!(row.len(), train_set.classes.len());
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            let cached = cached[index].as_ref().unwrap();
            common::assert_close_within(row, cached, 1e-4, &format!("{strategy}: bytes against the cache"));
            // The same images in other batches: equal up to the kernels' rounding.
            common::assert_close_within(row, &from_pixels[index], 1e-5, &format!("{strategy}: bytes and pixels"));
            let file = uncached[index].as_ref().unwrap();
            common::assert_close_within(row, file, 1e-5, &format!("{strategy}: bytes and files"));
        }

        // One student, several threads.
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (student, files) = (student.clone(), files.clone());
                std::thread::spawn(move || {
                    let encoded: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
                    student.predict_encoded(&encoded).unwrap().into_iter().map(|row| row.unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        for thread in threads {
            // The same batches as `files` makes (no truncated image among them).
            let rows = thread.join().unwrap();
            for (row, single) in rows.iter().zip(&from_bytes) {
                common::assert_close_within(row, single, 1e-5, "a second thread");
            }
        }
        let top = student.top_k(&from_bytes[0], 2);
        assert_eq!(top.len(), 2);
        assert!(top[0].probability >= top[1].probability);
        let error = student.predict_texts(&["a bag"]).err().unwrap().to_string();
        assert!(error.contains("holds an image student: it does not take texts"), "{error}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
