#!/usr/bin/env python3
"""Runs graft's exported students through onnxruntime and the `onnx` checker.

    GRAFT_ONNX_CHECK_DIR=target/onnx-check cargo test -p graft --test graft -- export
    python3 scripts/onnx/check_onnxruntime.py target/onnx-check

Each folder under the directory holds what the export test kept: `student.onnx`, its inputs
(`<name>.bin`, raw little-endian; names, shapes and types in `expected.json`: one for an image
student, `input_ids`, `attention_mask`, `token_type_ids` for a text student) and graft's own
class probabilities for them (`expected.json`). For each, the file must pass `onnx.checker` (full
check, shapes inferred) and onnxruntime's probabilities must agree with graft's within 1e-4.
Needs `pip install onnx onnxruntime numpy`.
"""

import json
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime

TOLERANCE = 1e-4


def check(folder: pathlib.Path) -> float:
    expected = json.loads((folder / "expected.json").read_text())
    path = folder / "student.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    classes = json.loads(metadata["classes"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    declared = [entry.name for entry in session.get_inputs()]
    names = [entry["name"] for entry in expected["inputs"]]
    if declared != names:
        raise SystemExit(f"{folder.name}: inputs {declared}, expected {names}")
    feed = {}
    for entry in expected["inputs"]:
        values = np.fromfile(folder / f"{entry['name']}.bin", dtype=np.dtype(entry["dtype"]).newbyteorder("<"))
        feed[entry["name"]] = values.reshape(entry["shape"])
    [probabilities] = session.run(["probabilities"], feed)
    want = np.asarray(expected["probabilities"], dtype=np.float32).reshape(probabilities.shape)
    if probabilities.shape[1] != len(classes):
        raise SystemExit(f"{folder.name}: {probabilities.shape[1]} probabilities, {len(classes)} classes")
    return float(np.abs(probabilities - want).max())


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    root = pathlib.Path(sys.argv[1])
    folders = sorted(path.parent for path in root.glob("*/expected.json"))
    if not folders:
        raise SystemExit(f"no exported students under {root} (run the export test with GRAFT_ONNX_CHECK_DIR set)")
    print(f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}")
    failed = []
    for folder in folders:
        difference = check(folder)
        verdict = "ok" if difference <= TOLERANCE else "DIFFERS"
        print(f"{folder.name:24} max |onnxruntime - graft| = {difference:.2e}  {verdict}")
        if difference > TOLERANCE:
            failed.append(folder.name)
    if failed:
        raise SystemExit(f"onnxruntime disagrees with graft beyond {TOLERANCE} on: {', '.join(failed)}")
    print(f"all {len(folders)} exported students agree with graft within {TOLERANCE} in onnxruntime")


if __name__ == "__main__":
    main()
