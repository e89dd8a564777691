"""Writes crates/graft-assets/data/fashion-mnist-sample/: the first 100 training and 50 test images of each
Fashion-MNIST class, as greyscale PNGs in `{train,test}/<class>/<index>.png` folders.

With `--out DIR --train N --val M --test K` it writes another sample: the first N training images
of each class into `train/`, the next M into `val/`, the first K test images into `test/` (the
benchmark's data, scripts/bench/run.sh).

Source: Debian's `dataset-fashion-mnist` package (`apt-get install dataset-fashion-mnist`),
Fashion-MNIST by Zalando Research, MIT licence. Standard library only.

    python3 scripts/make_demo_data.py [--source /usr/share/datasets/fashion-mnist]
"""
import argparse
import gzip
import pathlib
import struct
import zlib

CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "crates/graft-assets/data/fashion-mnist-sample"


def read_idx(path):
    data = gzip.open(path).read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 0x0803:
        rows, cols = struct.unpack(">II", data[8:16])
        return [data[16 + i * rows * cols:16 + (i + 1) * rows * cols] for i in range(count)], (rows, cols)
    return list(data[8:8 + count]), None


def png(pixels, rows, cols):
    raw = b"".join(b"\x00" + pixels[r * cols:(r + 1) * cols] for r in range(rows))
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--train", type=int, default=100)
    parser.add_argument("--val", type=int, default=0)
    parser.add_argument("--test", type=int, default=50)
    args = parser.parse_args()
    source, out = pathlib.Path(args.source), pathlib.Path(args.out)
    # (folder, IDX prefix, images per class to skip, images per class to take)
    for split, prefix, skip, per_class in [("train", "train", 0, args.train), ("val", "train", args.train, args.val), ("test", "t10k", 0, args.test)]:
        if per_class == 0:
            continue
        images, (rows, cols) = read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
        labels, _ = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        seen = [0] * len(CLASSES)
        taken = [0] * len(CLASSES)
        for index, (pixels, label) in enumerate(zip(images, labels)):
            seen[label] += 1
            if seen[label] <= skip or taken[label] >= per_class:
                continue
            folder = out / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index:05d}.png").write_bytes(png(pixels, rows, cols))
            taken[label] += 1
        print(split, taken)
    if out != OUT:
        return
    (OUT / "README.md").write_text(
        "# Fashion-MNIST sample\n\nThe first 100 training and 50 test images of each class of Fashion-MNIST\n"
        "(Xiao, Rasul & Vollgraf 2017, Zalando Research, MIT licence: LICENSE), from Debian's\n"
        "`dataset-fashion-mnist` package, written by `scripts/make_demo_data.py`. File names are the\n"
        "images' indices in the original IDX files. `T-shirt_top` is the class `T-shirt/top`.\n"
    )


if __name__ == "__main__":
    main()
