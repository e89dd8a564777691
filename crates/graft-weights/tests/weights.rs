//! graft-weights against real PyTorch files (made by scripts/reference/make_weight_fixtures.py).

use std::path::{Path, PathBuf};

use graft_weights::{Values, WeightsError, read, read_bytes};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn strided_tensors_come_out_as_pytorch_made_them_contiguous() {
    let expected = read(&fixture("strided_expected.safetensors")).unwrap();
    assert_eq!(expected.len(), 11);
    for file in ["strided_zip.pth", "strided_legacy.pth"] {
        let tensors = read(&fixture(file)).unwrap();
        let names: Vec<_> = tensors.keys().collect();
        assert_eq!(names, expected.keys().collect::<Vec<_>>(), "{file}");
        for (key, want) in &expected {
            let got = &tensors[key];
            assert_eq!(got.shape, want.shape, "{file}: shape of {key}");
            match (&got.values, &want.values) {
                (Values::F32(got), Values::F32(want)) => assert_eq!(got, want, "{file}: values of {key}"),
                (Values::I64(got), Values::I64(want)) => assert_eq!(got, want, "{file}: values of {key}"),
                _ => panic!("{file}: {key} has the wrong kind"),
            }
        }
        assert_eq!(tensors["half"].source_dtype, graft_weights::DType::F16);
        assert_eq!(tensors["bfloat16"].source_dtype, graft_weights::DType::BF16);
        assert_eq!(tensors["double"].source_dtype, graft_weights::DType::F64);
    }
}

#[test]
fn hostile_pickle_is_refused_and_its_command_never_runs() {
    let marker = Path::new("/tmp/graft-hostile-pickle-ran");
    let _ = std::fs::remove_file(marker);
    for file in ["hostile_zip.pth", "hostile_legacy.pth"] {
        let path = fixture(file);
        let bytes = std::fs::read(&path).unwrap();
        // The fixture really carries the payload (protocol 2 spells it `posix\nsystem`).
        assert!(bytes.windows(6).any(|w| w == b"system"), "{file} lost its payload");
        let error = read(&path).unwrap_err();
        match &error {
            WeightsError::ForbiddenGlobal { module, name, .. } => {
                assert!(module == "posix" || module == "os" || module == "nt", "{module}");
                assert_eq!(name, "system");
            }
            other => panic!("{file}: expected a refusal, got {other}"),
        }
        let message = error.to_string();
        assert!(message.contains(file) && message.contains("system"), "{message}");
    }
    assert!(!marker.exists(), "the hostile command ran");
}

#[test]
fn whole_pickled_module_is_refused_by_class_name() {
    let error = read(&fixture("whole_model.pth")).unwrap_err().to_string();
    assert!(error.contains("torch.nn.modules.linear") || error.contains("Linear"), "{error}");
    assert!(error.contains("state_dict"), "the message should say what to do: {error}");
}

#[test]
fn truncated_files_name_the_file() {
    for file in ["strided_zip.pth", "strided_legacy.pth", "strided_expected.safetensors"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let cut = &bytes[..bytes.len() * 2 / 3];
        let path = PathBuf::from(format!("cut-{file}"));
        let error = read_bytes(&path, cut).unwrap_err();
        assert!(matches!(error, WeightsError::Truncated { .. } | WeightsError::BadTensor { .. }), "{file}: {error}");
        assert!(error.to_string().contains(&format!("cut-{file}")), "{error}");
    }
}

#[test]
fn non_weight_files_are_named_and_rejected() {
    let error = read_bytes(Path::new("notes.txt"), b"just some text, not weights").unwrap_err();
    assert!(matches!(error, WeightsError::NotWeights { .. }), "{error}");
    assert!(error.to_string().contains("notes.txt"));
    let error = read_bytes(Path::new("empty.pth"), b"").unwrap_err();
    assert!(error.to_string().contains("empty.pth"), "{error}");
    let missing = read(Path::new("/nonexistent/model.pth")).unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/model.pth"), "{missing}");
}

#[test]
fn convert_writes_safetensors_that_read_back_identically() {
    let directory = std::env::temp_dir().join(format!("graft-convert-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let output = directory.join("out.safetensors");
    let written = graft_weights::convert(&fixture("strided_legacy.pth"), &output).unwrap();
    let back = read(&output).unwrap();
    assert_eq!(back.len(), written.len());
    for (key, tensor) in &written {
        // Floats are written as F32 whatever their source type, so compare shape and values.
        assert_eq!((&back[key].shape, &back[key].values), (&tensor.shape, &tensor.values), "{key}");
    }
    std::fs::remove_dir_all(&directory).unwrap();
}

/// Files graft writes get the permissions any new file gets under the process's umask (they
/// were 0600 whatever the umask, as temporary files are).
#[cfg(target_os = "linux")]
#[test]
fn atomic_writes_honour_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let umask = status
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))
        .map(|value| u32::from_str_radix(value.trim(), 8).unwrap())
        .unwrap();
    let dir = std::env::temp_dir().join(format!("graft-umask-{}", std::process::id()));
    let path = dir.join("out.bin");
    graft_weights::write_atomic(&path, |temporary| std::fs::write(temporary, b"bytes")).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666 & !umask, "umask {umask:o}");
    assert_eq!(std::fs::read(&path).unwrap(), b"bytes");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left beside it");
    std::fs::remove_dir_all(dir).unwrap();
}
