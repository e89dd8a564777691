"""Writes hostile weight files into a folder, as anyone could make them in a few lines of Python
(standard library only): the three of issue #13 and the work-bounding shapes of issue #36. Then
times `graft convert` on each and reports its peak memory (GNU time). docs/RELIABILITY.md records
the output. `--graft` may be the reader alone, built in seconds:

    cargo build --release -p graft-weights --example convert
    python3 scripts/reliability/hostile_files.py --graft target/release/examples/convert [--out /tmp/hostile]
"""
import argparse
import io
import struct
import pathlib
import pickle
import re
import subprocess
import time

MAGIC = 0x1950A86A20F9469CFC6C


def legacy(object_pickle: bytes) -> bytes:
    """A legacy (pre-1.6) torch.save file around one pickled object: magic, protocol, system
    info, the object, an empty storage-key list."""
    out = io.BytesIO()
    pickle.dump(MAGIC, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, out, protocol=2)
    out.write(object_pickle)
    pickle.dump([], out, protocol=2)
    return out.getvalue()


def files():
    cycle = {}
    cycle["self"] = cycle
    yield "cycle.pth", legacy(pickle.dumps(cycle, protocol=2))
    # [[[...]]] 200,000 deep: Python's own pickler cannot write it (recursion), the bytes are easy.
    depth = 200_000
    yield "nested.pth", legacy(b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b".")
    # One 1 MB string memoised, then fetched again and again: 10 MB.
    body = b"\x80\x02](X" + (1 << 20).to_bytes(4, "little") + b"x" * (1 << 20) + b"q\x00"
    body += b"h\x00" * ((10 << 20) // 2) + b"e."
    yield "memo.pth", legacy(body)
    # issue #36: d_i = {'a': d_{i-1}, 'b': d_{i-1}}, 50 levels: 2^50 paths in 1.5 KB.
    dag = b"\x80\x02}r" + struct.pack("<I", 0)
    for level in range(1, 51):
        dag += b"}(X\x01\x00\x00\x00aj" + struct.pack("<I", level - 1)
        dag += b"X\x01\x00\x00\x00bj" + struct.pack("<I", level - 1) + b"ur" + struct.pack("<I", level)
    yield "dag.pth", legacy(dag + b".")
    # A tensor record whose shape is 100,000 ones with zero strides (400 KB).
    def tensor(shape, strides):
        out = b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
        out += b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00"
        for dims in (shape, strides):
            out += b"(" + b"".join(b"K" + bytes([d]) for d in dims) + b"t"
        return out + b"\x89ccollections\nOrderedDict\n)RtR"
    rank = b"\x80\x02}X\x01\x00\x00\x00w" + tensor([1] * 100_000, [0] * 100_000) + b"s."
    yield "rank.pth", legacy_with_storage(rank, 1)
    # A 400,000-item tuple memoised (0.4 MB) and handed to 200,000 REDUCEs (2 MB in all).
    args = b"\x80\x02}(" + tensor([1], [1]) + b"N" * 400_000 + b"tr\x00\x00\x00\x000X\x01\x00\x00\x00w"
    call = b"ctorch._utils\n_rebuild_parameter\nj\x00\x00\x00\x00R"
    args += call + (b"0" + call) * 199_999 + b"s."
    yield "memo-args.pth", legacy_with_storage(args, 1)
    # 20 MB of MARKs.
    yield "marks.pth", legacy(b"\x80\x02" + b"(" * (20 << 20) + b".")
    # A safetensors file whose JSON header is 9 MB of zeros in one list.
    header = b'{"__metadata__":{"x":[' + b"0," * (9 << 19) + b'0]}}'
    yield "header.safetensors", struct.pack("<Q", len(header)) + header


def legacy_with_storage(object_pickle: bytes, floats: int) -> bytes:
    """`legacy`, with one float storage `'0'` of `floats` zeros after the object."""
    out = io.BytesIO()
    pickle.dump(MAGIC, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, out, protocol=2)
    out.write(object_pickle)
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<Q", floats) + b"\0" * (4 * floats))
    return out.getvalue()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--graft", default="target/debug/graft")
    parser.add_argument("--out", default="/tmp/graft-hostile")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("| file | bytes | exit | seconds | peak memory (MiB) | message |")
    print("|---|---|---|---|---|---|")
    for name, data in files():
        path = out / name
        path.write_bytes(data)
        started = time.monotonic()
        run = subprocess.run(["/usr/bin/time", "-v", args.graft, "convert", str(path), str(out / (name + ".safetensors"))], capture_output=True, text=True)
        seconds = time.monotonic() - started
        peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1)) / 1024
        message = next((line for line in run.stderr.splitlines() if line.startswith("error")), "").replace("|", "/")
        print(f"| {name} | {len(data):,} | {run.returncode} | {seconds:.2f} | {peak:.0f} | {message} |")


if __name__ == "__main__":
    main()
