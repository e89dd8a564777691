"""The PyTorch reference graft is benchmarked against (never needed by CI or users).

`train`: trains the same student as graft, the way torchvision's fine-tuning tutorial does: an
ImageFolder + DataLoader, the frozen layers recomputed every epoch (no cache), validation every
epoch keeping the best weights, then the test set. Same teacher weights (the bundled
EfficientNet-Lite0 .pth), same data folders, head (linear), optimizer (AdamW, weight decay 1e-4),
learning rates (1e-3 head, 1e-4 unfrozen teacher blocks), schedule (one warm-up epoch, cosine per
step), label smoothing 0.1, batch size, epochs, image size and augmentation as graft's defaults.
Frozen blocks are kept in eval mode (batch norm on stored statistics), as graft's are.

`kernels`: one training step (full; last block + head with the frozen prefix run in inference
mode inside the step), then teacher inference (batch 32), for ResNet-18, ResNet-50 and
EfficientNet-Lite0, plus forward FLOPs per image and the machine's measured sgemm GFLOP/s, on the
CPU or (`--device cuda`) a GPU, in float32 with TF32 off, timed after synchronizing the GPU. Real
images (the bundled Fashion-MNIST sample at 224 px) unless `--inputs random`; Lite0's published
weights, the ResNets randomly initialised (their weights are not reachable from these machines).
Each figure is the median of `--iterations` steps after `--warmup` untimed ones.

Every result is one JSON object per line on stdout.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch torchvision
    /tmp/torchenv/bin/python scripts/bench/pytorch_reference.py train --data DIR --strategy deep --epochs 10
    /tmp/torchenv/bin/python scripts/bench/pytorch_reference.py kernels
"""
import argparse
import copy
import json
import math
import os
import pathlib
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
LITE0 = ROOT / "crates/graft-assets/weights/efficientnet-lite0-57934424.pth"
# Real images for the kernel rows: the bundled Fashion-MNIST sample (what `graft bench` uses too).
SAMPLE = ROOT / "crates/graft-assets/data/fashion-mnist-sample"
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


class SameConv(nn.Conv2d):
    """TensorFlow "SAME" padding (one extra pixel at the bottom/right on stride 2)."""

    def forward(self, x):
        height, width = x.shape[-2:]
        kernel, stride = self.kernel_size[0], self.stride[0]
        def total(size):
            return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pad_h, pad_w = total(height), total(width)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    def __init__(self, inp, out, kernel, stride, expand):
        super().__init__()
        hidden = inp * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(inp, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=1e-3)
        self.expand = expand != 1
        self._depthwise_conv = SameConv(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=1e-3)
        self._project_conv = nn.Conv2d(hidden, out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out, eps=1e-3)
        self.residual = stride == 1 and inp == out

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """The efficientnet_pytorch layout, so the bundled state dict loads as is."""

    def __init__(self, classes=1000):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, channels = [], 32
        for repeats, kernel, stride, expand, out in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(channels, out, kernel, stride if r == 0 else 1, expand))
                channels = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._fc = nn.Linear(1280, classes)

    def stages(self):
        """The named blocks in order, as graft cuts them: stem, 16 MBConv blocks, head."""
        stem = nn.Sequential(self._conv_stem, self._bn0, nn.ReLU6())
        head = nn.Sequential(self._conv_head, self._bn1, nn.ReLU6())
        return [stem, *self._blocks, head]

    def features(self, x):
        for stage in self.stages():
            x = stage(x)
        return x.mean(dim=(2, 3))

    def forward(self, x):
        return self._fc(self.features(x))


def lite0(pretrained=True):
    model = EfficientNetLite0()
    if pretrained:
        model.load_state_dict(torch.load(LITE0, map_location="cpu", weights_only=True))
    return model


def warmup_cosine(step, warmup, total):
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.5 * (1 + math.cos(math.pi * progress))


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def image_transforms(size):
    """The evaluation view and the augmented view of graft's defaults, at `size` pixels:
    (evaluate, augment). Also used by augment_stats.py."""
    from torchvision import transforms
    resize = round(size * 256 / 224)
    mean, std = [127 / 255] * 3, [128 / 255] * 3
    evaluate = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(size), transforms.ToTensor(), transforms.Normalize(mean, std)])
    augment = transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.35, 1.0)), transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(0.2, 0.2, 0.2), transforms.ToTensor(), transforms.Normalize(mean, std)])
    return evaluate, augment


def decoded(folder, size):
    """Every image of a class-folder tree, decoded and normalised once (the evaluation view), as
    one tensor, with its labels: what a plain script does when the data fits in memory."""
    from torchvision import datasets
    evaluate, _ = image_transforms(size)
    images = datasets.ImageFolder(folder, evaluate)
    pairs = [images[i] for i in range(len(images))]
    return torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


def train(args):
    """Trains and tests one student; `seconds` counts from the start (decoding included). Without
    a `val` folder, trains on `train` for the epochs and keeps the last weights."""
    from torchvision import datasets
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    size = args.image_size
    evaluate, augment = image_transforms(size)
    data = pathlib.Path(args.data)
    classes = datasets.ImageFolder(data / "train").classes
    if args.input == "decoded":
        # Each image decoded and normalised once, held as one tensor; each epoch a new order.
        if args.augment == "on":
            sys.exit("--input decoded decodes each image once: it cannot augment (use --input loader)")
        augmented = False
        tensors = {part: decoded(data / part, size) for part in ("train", "val", "test") if (data / part).is_dir()}
        def batches(part, shuffle):
            x, y = tensors[part]
            order = torch.randperm(len(y)) if shuffle else torch.arange(len(y))
            return [(x[b], y[b]) for b in order.split(args.batch_size)]
        loaders = {part: (lambda part=part: batches(part, part == "train")) for part in tensors}
        train_images = len(tensors["train"][1])
    else:
        # torchvision's tutorial: an ImageFolder and a DataLoader that decodes every epoch.
        # As graft's `--augment auto`: augmentation on when teacher blocks train.
        augmented = args.augment == "on" or (args.augment == "auto" and args.strategy != "deep")
        train_set = datasets.ImageFolder(data / "train", augment if augmented else evaluate)
        made = {"train": torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, num_workers=args.workers)}
        for part in ("val", "test"):
            if (data / part).is_dir():
                made[part] = torch.utils.data.DataLoader(datasets.ImageFolder(data / part, evaluate), batch_size=args.batch_size,
                                                         num_workers=args.workers)
        loaders = {part: (lambda part=part: made[part]) for part in made}
        train_images = len(train_set)
    steps_per_epoch = math.ceil(train_images / args.batch_size)
    model = lite0()
    model._fc = nn.Linear(1280, len(classes))
    stages = model.stages()
    cut = {"deep": len(stages), "mid": len(stages) - 3, "full": 0}[args.strategy]
    frozen = nn.ModuleList(stages[:cut])
    for parameter in model.parameters():
        parameter.requires_grad = False
    forward = model
    if args.input == "decoded" and cut > 0:
        # Decoded once and never augmented, the frozen blocks' output never changes: computed
        # once (as Keras's feature-extraction tutorial does), then each epoch runs the rest.
        frozen.eval()
        with torch.no_grad():
            for part, (x, y) in list(tensors.items()):
                outputs = []
                for batch in x.split(args.batch_size):
                    for stage in stages[:cut]:
                        batch = stage(batch)
                    outputs.append(batch)
                tensors[part] = (torch.cat(outputs), y)
        def forward(z):
            for stage in stages[cut:]:
                z = stage(z)
            return model._fc(z.mean(dim=(2, 3)))
    trainable_teacher = [p for stage in stages[cut:] for p in stage.parameters()]
    for parameter in [*trainable_teacher, *model._fc.parameters()]:
        parameter.requires_grad = True
    groups = [{"params": list(model._fc.parameters()), "lr": args.learning_rate}]
    if trainable_teacher:
        groups.append({"params": trainable_teacher, "lr": args.learning_rate * 0.1})
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    steps = steps_per_epoch * args.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, steps_per_epoch, steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)

    validated = (data / "val").is_dir()
    best, best_state, trained_images, train_seconds = -1.0, None, 0, 0.0
    for epoch in range(args.epochs):
        model.train()
        frozen.eval()  # frozen batch norms on their stored statistics, as in graft
        epoch_started = time.perf_counter()
        for images, labels in loaders["train"]():
            optimizer.zero_grad()
            loss = criterion(forward(images), labels)
            loss.backward()
            optimizer.step()
            scheduler.step()
            trained_images += len(labels)
        train_seconds += time.perf_counter() - epoch_started
        if not validated:
            # No validation folder: a plain script trains its epochs and keeps the last weights.
            print(f"epoch {epoch + 1} {time.perf_counter() - epoch_started:.1f}s", file=sys.stderr, flush=True)
            continue
        accuracy = accuracy_of(model, loaders["val"](), forward)
        print(f"epoch {epoch + 1} val_acc {accuracy:.4f} {time.perf_counter() - epoch_started:.1f}s", file=sys.stderr, flush=True)
        if accuracy > best:
            best, best_state = accuracy, copy.deepcopy(model.state_dict())
    if validated:
        model.load_state_dict(best_state)
    test_accuracy = accuracy_of(model, loaders["test"](), forward)
    print(json.dumps({
        "implementation": "pytorch", "strategy": args.strategy, "epochs": args.epochs, "image_size": size,
        "train_images": train_images, "input": args.input, "workers": args.workers if args.input == "loader" else 0,
        "augmented": augmented, "validation_accuracy": best if validated else None, "test_accuracy": test_accuracy,
        "seconds": time.perf_counter() - started, "train_images_per_second": trained_images / train_seconds,
        "peak_rss_mib": peak_rss_mib(), "torch": torch.__version__, "threads": torch.get_num_threads(),
    }))


@torch.no_grad()
def accuracy_of(model, loader, forward=None):
    model.eval()
    forward = forward or model
    correct = total = 0
    for images, labels in loader:
        correct += (forward(images).argmax(1) == labels).sum().item()
        total += len(labels)
    return correct / total


def kernel_models():
    import torchvision
    def torchvision_stages(model):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return [stem, model.layer1, model.layer2, model.layer3, model.layer4]
    # ResNet: torchvision's initialisation (its published weights are not reachable from these
    # machines); EfficientNet-Lite0: the published ImageNet weights bundled with graft.
    resnet18, resnet50 = torchvision.models.resnet18(), torchvision.models.resnet50()
    efficientnet = lite0(pretrained=True)
    return {
        "resnet18": (resnet18, torchvision_stages(resnet18), 512),
        "resnet50": (resnet50, torchvision_stages(resnet50), 2048),
        "efficientnet_lite0": (efficientnet, efficientnet.stages(), 1280),
    }


def timed(work, warmup, iterations, device="cpu"):
    """Median seconds per call of `work` after `warmup` untimed calls (as `graft bench` times);
    on a GPU, waits for its queued work before reading the clock."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        work()
    seconds = []
    for _ in range(iterations):
        sync()
        started = time.perf_counter()
        work()
        sync()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def sample_batch(batch_size):
    """`batch_size` real images at 224 px: the bundled sample's test images in a fixed shuffled
    order (every class present), as `graft bench` takes them."""
    x, _ = decoded(SAMPLE / "test", 224)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order[:batch_size]].contiguous()


def kernels(args):
    from torch.utils.flop_counter import FlopCounterMode
    device = args.device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            sys.exit("--device cuda: this torch sees no CUDA GPU")
        # Full float32, as graft computes: no TF32 shortcuts in matrix products or convolutions.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    # The machine's practical peak: a large single-precision matrix product.
    n = 2048 if device == "cpu" else 8192
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    seconds = timed(lambda: a @ b, 2, 10, device)
    peak = {"implementation": "pytorch", "device": device, "operation": f"sgemm_{n}", "gflops_per_second": 2 * n ** 3 / seconds / 1e9}
    if device == "cpu":
        peak["threads"] = torch.get_num_threads()
    else:
        peak["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(peak), flush=True)
    for name, (model, stages, width) in kernel_models().items():
        if name not in args.teachers.split(","):
            continue
        model.to(device)
        if args.inputs == "random":
            images = torch.randn(args.batch_size, 3, 224, 224, device=device)
        else:
            images = sample_batch(args.batch_size).to(device)
        model.eval()
        with FlopCounterMode(display=False) as counter:
            with torch.no_grad():
                model(images[:1])
        flops = counter.get_total_flops()
        def result(operation, seconds, flops_per_image):
            print(json.dumps({
                "implementation": "pytorch", "device": device, "teacher": name, "operation": operation,
                "batch_size": args.batch_size, "images_per_second": args.batch_size / seconds,
                "weights": "published" if name == "efficientnet_lite0" else "random", "inputs": args.inputs,
                "threads": torch.get_num_threads(), "torch": torch.__version__,
                "malloc": "graft's settings" if "MALLOC_MMAP_THRESHOLD_" in os.environ else "glibc defaults",
                "forward_gflops_per_image": flops / 1e9,
                "gflops_per_second": flops_per_image * args.batch_size / seconds / 1e9,
            }), flush=True)
        head = nn.Linear(width, 10).to(device)
        labels = torch.arange(args.batch_size, device=device) % 10
        for operation, cut in [("train_full", 0), ("train_last_block", len(stages) - 1)]:
            trainable = [p for stage in stages[cut:] for p in stage.parameters()] + list(head.parameters())
            optimizer = torch.optim.AdamW(trainable, lr=1e-4)
            def step():
                with torch.no_grad():
                    x = images
                    for stage in stages[:cut]:
                        stage.eval()
                        x = stage(x)
                for stage in stages[cut:]:
                    stage.train()
                    x = stage(x)
                loss = F.cross_entropy(head(x.mean(dim=(2, 3))), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            # Training costs about three forwards (forward, two for backward) of the trained part.
            result(operation, timed(step, args.warmup, args.iterations, device), flops * 3 if cut == 0 else flops)
        # Inference after the training steps, as in a plain script that trains then predicts: by
        # then glibc's heap has grown to the working set, and PyTorch's inference is up to a
        # fifth faster here than first thing in a fresh process (docs/BENCHMARKS.md).
        model.eval()
        with torch.no_grad():
            result("inference", timed(lambda: model(images), args.warmup, args.iterations, device), flops)


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--strategy", choices=["deep", "mid", "full"], required=True)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--image-size", type=int, default=112)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--workers", type=int, default=1, help="DataLoader workers (--input loader)")
    t.add_argument("--input", choices=["loader", "decoded"], default="loader",
                   help="loader: decode (and augment) every epoch in DataLoader workers; decoded: decode once into a tensor")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--augment", choices=["auto", "on", "off"], default="auto")
    k = commands.add_parser("kernels")
    k.add_argument("--teachers", default="resnet18,resnet50,efficientnet_lite0")
    k.add_argument("--batch-size", type=int, default=32)
    k.add_argument("--iterations", type=int, default=5, help="timed iterations (the median is reported)")
    k.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    k.add_argument("--inputs", choices=["images", "random"], default="images",
                   help="images: real photos (the bundled sample); random: normal noise")
    k.add_argument("--device", default="cpu", help="cpu, or cuda for an NVIDIA GPU")
    args = parser.parse_args()
    {"train": train, "kernels": kernels}[args.command](args)


if __name__ == "__main__":
    main()
