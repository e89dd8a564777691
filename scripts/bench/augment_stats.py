"""Statistics of torchvision's augmented views (the PyTorch reference's recipe) next to graft's
(crates/graft/examples/augment_stats.rs), on the same images.

Usage: python augment_stats.py GRAFT_EXAMPLE SIZE VIEWS IMAGE_DIR [IMAGES]
(build the example with `cargo build --release -p graft --example augment_stats`; IMAGES, default
200, are taken evenly from IMAGE_DIR's PNG files in name order.)
Prints one JSON line per implementation: over every view of every image, the mean and spread
of the per-view pixel mean and standard deviation (normalised values, channel 0) and of the
mean absolute difference from the image's evaluation view.
"""
import json
import pathlib
import statistics
import subprocess
import sys

import torch
from PIL import Image

from pytorch_reference import image_transforms


def main():
    example, size, views, image_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), pathlib.Path(sys.argv[4])
    limit = int(sys.argv[5]) if len(sys.argv) > 5 else 200
    found = sorted(image_dir.rglob("*.png"))
    images = found[:: max(1, len(found) // limit)][:limit]  # spread over the classes
    graft = subprocess.run([example, str(size), str(views), *map(str, images)], capture_output=True, text=True, check=True)
    print(graft.stdout.strip())
    torch.manual_seed(7)
    evaluate, augment = image_transforms(size)
    means, stds, differences = [], [], []
    for path in images:
        image = Image.open(path).convert("RGB")
        eval_view = evaluate(image)[0]
        for _ in range(views):
            view = augment(image)[0]
            means.append(view.mean().item())
            stds.append(view.std(unbiased=False).item())
            differences.append((view - eval_view).abs().mean().item())
    summary = lambda values: {"mean": round(statistics.mean(values), 4), "sd": round(statistics.pstdev(values), 4)}
    print(json.dumps({"implementation": "torchvision", "views": len(means), "pixel_mean": summary(means),
                      "pixel_std": summary(stds), "distance_from_eval_view": summary(differences)}))


if __name__ == "__main__":
    main()
