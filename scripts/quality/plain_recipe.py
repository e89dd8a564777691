"""The plain PyTorch recipe graft's defaults are measured against (docs/QUALITY.md): what a
ten-line script does. Every training image is used (no hold-out), AdamW at 1e-3 (PyTorch's
default weight decay), batch 32, 10 epochs, the final epoch kept, no augmentation, no label
smoothing, the same EfficientNet-Lite0 weights and preprocessing as graft's defaults.

- deep: the teacher frozen in eval mode, a new linear head trained on its pooled features (the
  features are computed once, which gives the same numbers as recomputing them every epoch);
- mid: the last 3 of the 18 blocks (graft's default cut) and the head trained, `model.train()`;
- full: everything trained from the pretrained values, `model.train()`.

One JSON object per seed on stdout.

    /work/torch29/bin/python scripts/quality/plain_recipe.py --set DIR --strategy deep --seeds 1 2 3 4 5
"""
import argparse
import json
import pathlib
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))
from pytorch_reference import image_transforms, lite0  # noqa: E402


def load(folder, transform):
    from torchvision import datasets
    return datasets.ImageFolder(folder, transform=transform)


@torch.no_grad()
def pooled_features(model, data):
    model.eval()
    loader = torch.utils.data.DataLoader(data, batch_size=64)
    features, labels = [], []
    for images, targets in loader:
        features.append(model.features(images))
        labels.append(targets)
    return torch.cat(features), torch.cat(labels)


def deep(train_features, train_labels, test_features, test_labels, classes, seed, epochs=10):
    torch.manual_seed(seed)
    head = nn.Linear(train_features.shape[1], classes)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(train_labels))
        for start in range(0, len(order), 32):
            batch = order[start:start + 32]
            loss = nn.functional.cross_entropy(head(train_features[batch]), train_labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return (head(test_features).argmax(1) == test_labels).float().mean().item()


def fine_tune(train_data, test_data, classes, seed, unfrozen_blocks, epochs=10):
    torch.manual_seed(seed)
    model = lite0()
    model._fc = nn.Linear(1280, classes)
    stages = model.stages()
    if unfrozen_blocks is not None:
        for stage in stages[:len(stages) - unfrozen_blocks]:
            for parameter in stage.parameters():
                parameter.requires_grad = False
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loader = torch.utils.data.DataLoader(train_data, batch_size=32, shuffle=True)
    for _ in range(epochs):
        model.train()
        for images, targets in loader:
            loss = nn.functional.cross_entropy(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, targets in torch.utils.data.DataLoader(test_data, batch_size=64):
            correct += (model(images).argmax(1) == targets).sum().item()
    return correct / len(test_data)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", required=True)
    parser.add_argument("--strategy", choices=["deep", "mid", "full"], default="deep")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = pathlib.Path(args.set)
    evaluate, _ = image_transforms(args.image_size)
    train_data, test_data = load(folder / "train", evaluate), load(folder / "test", evaluate)
    classes = len(train_data.classes)
    started = time.time()
    if args.strategy == "deep":
        model = lite0()
        train_features, train_labels = pooled_features(model, train_data)
        test_features, test_labels = pooled_features(model, test_data)
    for seed in args.seeds:
        seed_started = time.time()
        if args.strategy == "deep":
            accuracy = deep(train_features, train_labels, test_features, test_labels, classes, seed)
        else:
            accuracy = fine_tune(train_data, test_data, classes, seed, 3 if args.strategy == "mid" else None)
        print(json.dumps({"tool": "pytorch", "set": folder.name, "strategy": args.strategy, "seed": seed, "test_accuracy": accuracy,
                          "seconds": time.time() - seed_started, "setup_seconds": seed_started - started if seed == args.seeds[0] else 0.0,
                          "torch": torch.__version__, "image_size": args.image_size}), flush=True)


if __name__ == "__main__":
    main()
