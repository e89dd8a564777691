"""Writes the three hostile checkpoints of issue #13 into a folder, as anyone could make them in a
few lines of Python (standard library only), then times `graft convert` on each and reports its
peak memory (GNU time). docs/RELIABILITY.md records the output.

    python3 scripts/reliability/hostile_files.py [--graft target/debug/graft] [--out /tmp/hostile]
"""
import argparse
import io
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
