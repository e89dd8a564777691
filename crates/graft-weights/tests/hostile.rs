//! Weight files made to crash or exhaust a reader: each must end in a clear error naming the file,
//! quickly and within the memory budget (graft_weights::limits), never in a panic, an abort or a
//! stack overflow. The first three are the files of issue #13; docs/RELIABILITY.md lists them all.

use std::io::Write;
use std::path::Path;

use graft_weights::{WeightsError, read_bytes, safetensors};

/// Pickle opcodes, protocol 2, written by hand as a hostile file's author would.
mod pickle {
    pub fn header() -> Vec<u8> {
        vec![0x80, 2]
    }

    pub fn text(out: &mut Vec<u8>, text: &str) {
        out.push(b'X');
        out.extend((text.len() as u32).to_le_bytes());
        out.extend(text.as_bytes());
    }

    pub fn int(out: &mut Vec<u8>, value: i32) {
        out.push(b'J');
        out.extend(value.to_le_bytes());
    }

    pub fn global(out: &mut Vec<u8>, module: &str, name: &str) {
        out.extend(format!("c{module}\n{name}\n").as_bytes());
    }

    /// `_rebuild_tensor_v2(storage '0' of `elements` floats, offset 0, shape, strides, False, OrderedDict())`.
    pub fn tensor(out: &mut Vec<u8>, elements: i32, shape: &[i32], strides: &[i32]) {
        global(out, "torch._utils", "_rebuild_tensor_v2");
        out.push(b'(');
        out.push(b'(');
        text(out, "storage");
        global(out, "torch", "FloatStorage");
        text(out, "0");
        text(out, "cpu");
        int(out, elements);
        out.extend(b"tQ");
        int(out, 0);
        for dims in [shape, strides] {
            out.push(b'(');
            for d in dims {
                int(out, *d);
            }
            out.push(b't');
        }
        out.push(0x89);
        global(out, "collections", "OrderedDict");
        out.extend(b")R");
        out.extend(b"tR");
    }

    /// `{'w': tensor(...)}` as a whole pickle (see [`tensor`]).
    pub fn state_dict_of_one_tensor(elements: i32, shape: &[i32], strides: &[i32]) -> Vec<u8> {
        let mut object = header();
        object.push(b'}');
        text(&mut object, "w");
        tensor(&mut object, elements, shape, strides);
        object.extend(b"s.");
        object
    }

    /// A legacy (pre-1.6) checkpoint around `object` (one pickle, ending in STOP), with one float
    /// storage `'0'` of `elements` elements when `elements` is given.
    pub fn legacy(object: &[u8], elements: Option<u64>) -> Vec<u8> {
        let mut out = vec![0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.'];
        out.extend([0x80, 2, b'M', 0xe9, 0x03, b'.']);
        out.extend([0x80, 2, b'}', b'.']);
        out.extend(object);
        match elements {
            Some(count) => {
                out.extend([0x80, 2, b'(']);
                text(&mut out, "0");
                out.extend(b"l.");
                out.extend(count.to_le_bytes());
                out.extend(std::iter::repeat_n(0u8, count as usize * 4));
            }
            None => out.extend([0x80, 2, b']', b'.']),
        }
        out
    }
}

/// Writes one storage's bytes into a zip entry.
type WriteStorage<'a> = &'a dyn Fn(&mut dyn Write);

/// A zip checkpoint with `data.pkl` and the given storages, stored or deflated.
fn zip_checkpoint(pickle: &[u8], storages: &[(&str, WriteStorage)], deflate: bool) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    let options = zip::write::SimpleFileOptions::default().compression_method(method).large_file(true);
    writer.start_file("archive/data.pkl", options).unwrap();
    writer.write_all(pickle).unwrap();
    for (name, write) in storages {
        writer.start_file(format!("archive/data/{name}"), options).unwrap();
        write(&mut writer);
    }
    writer.finish().unwrap().into_inner()
}

fn refused(name: &str, bytes: &[u8]) -> WeightsError {
    let started = std::time::Instant::now();
    let error = read_bytes(Path::new(name), bytes).expect_err("a hostile file must be refused");
    assert!(error.to_string().contains(name), "the error names the file: {error}");
    // Generous: a debug build on a loaded CI machine; each takes well under a second in practice.
    assert!(started.elapsed().as_secs() < 60, "{name} took {:?}", started.elapsed());
    error
}

#[test]
fn a_dict_that_contains_itself_is_refused() {
    // d = {}; d['a'] = d: EMPTY_DICT, BINPUT 0, 'a', BINGET 0, SETITEM.
    let mut object = pickle::header();
    object.extend(b"}q\x00");
    pickle::text(&mut object, "a");
    object.extend(b"h\x00s.");
    let error = refused("cycle-legacy.pth", &pickle::legacy(&object, None));
    assert!(error.to_string().contains("contains itself"), "{error}");
    let error = refused("cycle-zip.pth", &zip_checkpoint(&object, &[], false));
    assert!(error.to_string().contains("contains itself"), "{error}");
}

#[test]
fn two_hundred_thousand_nested_lists_do_not_overflow_the_stack() {
    // [[[[...]]]]: 200,000 EMPTY_LISTs, then as many APPENDs, each list into the one below it.
    let depth = 200_000;
    let mut object = pickle::header();
    object.push(b'}');
    pickle::text(&mut object, "nested");
    object.extend(std::iter::repeat_n(b']', depth));
    object.extend(std::iter::repeat_n(b'a', depth - 1));
    object.extend(b"s.");
    let error = refused("nested-lists.pth", &pickle::legacy(&object, None));
    assert!(error.to_string().contains("holds no tensors"), "{error}");
    // The same depth of dicts, each inside the one before: refused by depth, not by the stack.
    let mut object = pickle::header();
    for _ in 0..depth {
        object.push(b'}');
        pickle::text(&mut object, "d");
    }
    object.extend(b"}");
    object.extend(std::iter::repeat_n(b's', depth));
    object.push(b'.');
    let error = refused("nested-dicts.pth", &pickle::legacy(&object, None));
    assert!(error.to_string().contains("levels deep"), "{error}");
}

#[test]
fn memo_copies_share_one_value_instead_of_copying_it() {
    // A 1 MB string memoised once, then fetched and appended ~3 million times (a 10 MB file):
    // copying the string each time would need terabytes; sharing it costs one slot each.
    let mut object = pickle::header();
    object.extend(b"](");
    object.push(b'X');
    object.extend((1u32 << 20).to_le_bytes());
    object.extend(std::iter::repeat_n(b'x', 1 << 20));
    object.extend(b"q\x00");
    while object.len() < 10 << 20 {
        object.extend(b"h\x00");
    }
    object.extend(b"e.");
    let error = refused("memo-copies.pth", &pickle::legacy(&object, None));
    assert!(error.to_string().contains("holds no tensors"), "{error}");
}

#[test]
fn copying_a_big_list_into_many_ordered_dicts_hits_the_budget() {
    // OrderedDict(pairs) copies its list; a pickle can ask for that again and again.
    let mut object = pickle::header();
    object.extend(b"](");
    for _ in 0..100_000 {
        object.extend(b"NN\x86");
    }
    object.extend(b"eq\x00]");
    for _ in 0..100_000 {
        pickle::global(&mut object, "collections", "OrderedDict");
        object.extend(b"h\x00\x85Ra");
    }
    object.push(b'.');
    let error = refused("ordered-dicts.pth", &pickle::legacy(&object, None));
    assert!(matches!(error, WeightsError::TooLarge { .. }), "{error}");
    assert!(error.to_string().contains("bytes of memory"), "{error}");
}

#[test]
fn a_stride_zero_view_with_a_huge_shape_is_refused_before_it_is_built() {
    // One float, viewed as 65536 x 65536 with strides (0, 0): in bounds, and 16 GiB as f32.
    let object = pickle::state_dict_of_one_tensor(1, &[65536, 65536], &[0, 0]);
    let error = refused("broadcast-legacy.pth", &pickle::legacy(&object, Some(1)));
    assert!(matches!(error, WeightsError::TooLarge { .. }) && error.to_string().contains("tensor `w`"), "{error}");
    let one_float: WriteStorage = &|out| out.write_all(&[0; 4]).unwrap();
    let error = refused("broadcast-zip.pth", &zip_checkpoint(&object, &[("0", one_float)], false));
    assert!(matches!(error, WeightsError::TooLarge { .. }), "{error}");
}

#[test]
fn shapes_and_offsets_that_overflow_are_errors_not_panics() {
    let object = pickle::state_dict_of_one_tensor(1, &[i32::MAX, i32::MAX, i32::MAX, i32::MAX], &[1, 1, 1, 1]);
    let error = refused("overflow.pth", &pickle::legacy(&object, Some(1)));
    assert!(matches!(error, WeightsError::BadTensor { .. }), "{error}");
    // A legacy storage whose element count overflows the file.
    let object = pickle::state_dict_of_one_tensor(1, &[1], &[1]);
    let mut bytes = pickle::legacy(&object, Some(1));
    let count_at = bytes.len() - 12;
    bytes[count_at..count_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let error = refused("huge-count.pth", &bytes);
    assert!(matches!(error, WeightsError::Truncated { .. }), "{error}");
}

#[test]
fn a_zip_entry_that_inflates_past_the_budget_is_refused() {
    // 512 MiB of zeros deflate to about 0.5 MB.
    let object = pickle::state_dict_of_one_tensor(1 << 27, &[1 << 27], &[1]);
    let zeros: WriteStorage = &|out| {
        let block = vec![0u8; 1 << 20];
        for _ in 0..512 {
            out.write_all(&block).unwrap();
        }
    };
    let bytes = zip_checkpoint(&object, &[("0", zeros)], true);
    assert!(bytes.len() < 4 << 20, "{}", bytes.len());
    let error = refused("bomb.pth", &bytes);
    assert!(matches!(error, WeightsError::TooLarge { .. }) && error.to_string().contains("archive/data/0"), "{error}");
}

#[test]
fn safetensors_entries_sharing_one_range_hit_the_budget() {
    // 20,000 names for the same 64 KiB of data: 1.3 GB of tensors from a 2 MB file.
    let mut header = serde_json::Map::new();
    for i in 0..20_000 {
        header
            .insert(format!("t{i}"), serde_json::json!({"dtype": "F32", "shape": [16384], "data_offsets": [0, 65536]}));
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend([0u8; 65536]);
    let error = refused("shared.safetensors", &bytes);
    assert!(matches!(error, WeightsError::TooLarge { .. }), "{error}");
    assert!(safetensors::parse(Path::new("shared.safetensors"), &bytes).is_err());
}

/// `BINPUT`/`BINGET` with a four-byte index.
fn put(out: &mut Vec<u8>, index: u32) {
    out.push(b'r');
    out.extend(index.to_le_bytes());
}

fn get(out: &mut Vec<u8>, index: u32) {
    out.push(b'j');
    out.extend(index.to_le_bytes());
}

/// Writes one pickled value.
type WriteValue<'a> = &'a dyn Fn(&mut Vec<u8>);

/// d0 = {leaf}; d_i = {'a': d_{i-1}, 'b': d_{i-1}}: a DAG of `levels` dicts with 2^levels paths.
fn dict_dag(levels: u32, leaf: Option<WriteValue>) -> Vec<u8> {
    let mut object = pickle::header();
    object.push(b'}');
    if let Some(leaf) = leaf {
        pickle::text(&mut object, "w");
        leaf(&mut object);
        object.push(b's');
    }
    put(&mut object, 0);
    for level in 1..=levels {
        object.extend(b"}(");
        for key in ["a", "b"] {
            pickle::text(&mut object, key);
            get(&mut object, level - 1);
        }
        object.push(b'u');
        put(&mut object, level);
    }
    object.push(b'.');
    object
}

#[test]
fn a_dag_of_dicts_is_walked_once_per_dict_not_once_per_path() {
    // 50 levels, 2^50 paths, 1.5 KB: walked per path this never ends.
    let object = dict_dag(50, None);
    assert!(object.len() < 2048, "{}", object.len());
    let error = refused("dag.pth", &pickle::legacy(&object, None));
    assert!(error.to_string().contains("holds no tensors"), "{error}");
    // With one tensor at the bottom every path names it: the names hit a budget, not the clock.
    let tensor = |out: &mut Vec<u8>| pickle::tensor(out, 1, &[1], &[1]);
    let object = dict_dag(50, Some(&tensor));
    let error = refused("dag-tensor.pth", &pickle::legacy(&object, Some(1)));
    assert!(matches!(error, WeightsError::TooLarge { .. } | WeightsError::TooMuchWork { .. }), "{error}");
    // A dict shared by two keys, as `torch.save({'model': sd, 'ema': sd})` writes it: both read.
    let object = dict_dag(1, Some(&tensor));
    let tensors = read_bytes(Path::new("shared.pth"), &pickle::legacy(&object, Some(1))).unwrap();
    assert_eq!(tensors.keys().map(String::as_str).collect::<Vec<_>>(), ["a.w", "b.w"]);
}

#[test]
fn a_tensor_with_thousands_of_dimensions_is_refused() {
    // 100,000 dimensions of one element each, strides 0: one element, and a walk of 10^5 per step.
    let ones = vec![1; 100_000];
    let zeros = vec![0; 100_000];
    let object = pickle::state_dict_of_one_tensor(1, &ones, &zeros);
    let error = refused("rank.pth", &pickle::legacy(&object, Some(1)));
    assert!(error.to_string().contains("100000 dimensions"), "{error}");
    let mut header = serde_json::Map::new();
    header.insert("w".into(), serde_json::json!({"dtype": "F32", "shape": ones, "data_offsets": [0, 4]}));
    let header = serde_json::to_vec(&header).unwrap();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend([0u8; 4]);
    let error = refused("rank.safetensors", &bytes);
    assert!(error.to_string().contains("100000 dimensions"), "{error}");
}

#[test]
fn a_memoised_tuple_handed_to_every_reduce_is_read_in_place() {
    // args = (tensor, None * 400,000) memoised once (0.4 MB), then `_rebuild_parameter(*args)`
    // called 200,000 times on it: copying the tuple each call is 8 * 10^10 copies.
    let mut object = pickle::header();
    object.extend(b"}(");
    pickle::tensor(&mut object, 1, &[1], &[1]);
    object.extend(std::iter::repeat_n(b'N', 400_000));
    object.push(b't');
    put(&mut object, 0);
    object.push(b'0');
    pickle::text(&mut object, "w");
    for i in 0..200_000 {
        pickle::global(&mut object, "torch._utils", "_rebuild_parameter");
        get(&mut object, 0);
        object.push(b'R');
        if i > 0 {
            object.push(b'0');
        }
    }
    object.extend(b"s.");
    let started = std::time::Instant::now();
    let tensors = read_bytes(Path::new("memo-args.pth"), &pickle::legacy(&object, Some(1))).unwrap();
    assert!(started.elapsed().as_secs() < 60, "took {:?}", started.elapsed());
    assert_eq!(tensors["w"].shape, [1]);
}

#[test]
fn marks_and_safetensors_headers_are_charged_to_the_budget() {
    // 20 MB of MARKs: 640 MB of stack slots from a file whose budget is 416 MB.
    let mut object = pickle::header();
    object.extend(std::iter::repeat_n(b'(', 20 << 20));
    object.push(b'.');
    let error = refused("marks.pth", &pickle::legacy(&object, None));
    assert!(matches!(error, WeightsError::TooLarge { .. }) && error.to_string().contains("MARK"), "{error}");
    // A 64 MB JSON header of zeros parses into about a gigabyte of values.
    let mut header = br#"{"__metadata__":{"x":["#.to_vec();
    while header.len() < 64 << 20 {
        header.extend(b"0,".repeat(1 << 16));
    }
    header.extend(br#"0]}}"#);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    let error = refused("header.safetensors", &bytes);
    assert!(matches!(error, WeightsError::TooLarge { .. }) && error.to_string().contains("JSON header"), "{error}");
}
