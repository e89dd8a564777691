"""Writes the small labelled sets docs/QUALITY.md is measured on, as image folders
`SET/{train,test}/<class>/<n>.png`:

- fm10, fm30, fm50, fm100: the first 10, 30, 50, 100 Fashion-MNIST training images of each class (28x28
  greyscale, as published); test: the first 100 test images of each class (1,000).
- digits30, digits100: scikit-learn's 8x8 digits (pixel values 0-16), the first 30 or 100 of each
  class for training, upscaled to 224x224 (bilinear) as the teacher sees them; test: every image
  after the first 100 of its class (797), the same for both.

Sources: Debian's `dataset-fashion-mnist` (MIT) and scikit-learn's wheel (`digits.csv.gz`,
BSD-3). Needs Pillow (the PyTorch venv has it).

    python3 scripts/quality/make_sets.py --out DIR --digits-csv sklearn/datasets/data/digits.csv.gz
"""
import argparse
import gzip
import pathlib
import sys

from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from make_demo_data import CLASSES, read_idx  # noqa: E402


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def fashion(out, source, sizes, test_per_class):
    images, (rows, cols) = read_idx(source / "train-images-idx3-ubyte.gz")
    labels, _ = read_idx(source / "train-labels-idx1-ubyte.gz")
    test_images, _ = read_idx(source / "t10k-images-idx3-ubyte.gz")
    test_labels, _ = read_idx(source / "t10k-labels-idx1-ubyte.gz")
    for per_class in sizes:
        root = out / f"fm{per_class}"
        for split, pool, pool_labels, take in [("train", images, labels, per_class), ("test", test_images, test_labels, test_per_class)]:
            taken = [0] * len(CLASSES)
            for index, (pixels, label) in enumerate(zip(pool, pool_labels)):
                if taken[label] >= take:
                    continue
                taken[label] += 1
                write(root / split / CLASSES[label] / f"{index:05d}.png", Image.frombytes("L", (cols, rows), bytes(pixels)))


def digits(out, csv_path, sizes, size=224, test_after=100):
    rows = [line.split(",") for line in gzip.open(csv_path, "rt").read().split("\n") if line.strip()]
    samples = [([int(float(v)) for v in row[:64]], int(float(row[64]))) for row in rows]
    def image(pixels):
        small = Image.frombytes("L", (8, 8), bytes(min(255, v * 16) for v in pixels))
        return small.resize((size, size), Image.BILINEAR)
    for per_class in sizes:
        root = out / f"digits{per_class}"
        seen = [0] * 10
        for index, (pixels, label) in enumerate(samples):
            seen[label] += 1
            if seen[label] <= per_class:
                write(root / "train" / str(label) / f"{index:04d}.png", image(pixels))
            elif seen[label] > test_after:
                write(root / "test" / str(label) / f"{index:04d}.png", image(pixels))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--fashion", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--digits-csv", required=True)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    fashion(out, pathlib.Path(args.fashion), [10, 30, 50, 100], 100)
    digits(out, pathlib.Path(args.digits_csv), [30, 100])


if __name__ == "__main__":
    main()
