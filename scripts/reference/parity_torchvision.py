"""Parity of graft's torchvision teachers against torchvision itself.

For each architecture: seeded random weights (batch-norm statistics and affine parameters
randomised too, so they are exercised), saved with `torch.save(model.state_dict())`; a fixed
seeded input batch run through torchvision in eval mode and through graft (the `parity` example);
the max abs difference of the logits, absolute and relative to the largest |logit|.

Run (outside CI; needs torch + torchvision + safetensors in a virtualenv):
    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch torchvision safetensors
    /tmp/torchenv/bin/python scripts/reference/parity_torchvision.py [--write docs/PARITY.md]
"""
import argparse
import pathlib
import platform
import subprocess
import sys
import tempfile

import torch
import torchvision
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = {
    "alexnet": (lambda: torchvision.models.alexnet(), 224),
    "resnet18": (lambda: torchvision.models.resnet18(), 224),
    "resnet50": (lambda: torchvision.models.resnet50(), 224),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(), 224),
    "inception_v3": (lambda: torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True, transform_input=False), 299),
}


def randomise(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            # Inception's own init (std 0.1 everywhere) makes activations grow to ~1e12 with
            # inference-mode batch norm; He init keeps the logits at a scale that tests something.
            if isinstance(model, torchvision.models.Inception3) and isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (1.0 / fan_in) ** 0.5)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) * 0.5 + 0.75)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) * 0.5 + 0.75)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", help="write the markdown table to this file")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "graft", "--example", "parity"], cwd=ROOT, check=True)
    binary = ROOT / "target/release/examples/parity"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for index, (name, (build, size)) in enumerate(MODELS.items()):
            torch.manual_seed(1000 + index)
            model = build().eval()
            randomise(model, 2000 + index)
            weights = tmp / f"{name}.pth"
            torch.save(model.state_dict(), weights)
            images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3000 + index))
            with torch.no_grad():
                reference = model(images)
            save_file({"input": images.contiguous()}, str(tmp / f"{name}-input.safetensors"))
            subprocess.run([str(binary), name, str(weights), str(tmp / f"{name}-input.safetensors"), str(tmp / f"{name}-out.safetensors")], check=True)
            ours = load_file(str(tmp / f"{name}-out.safetensors"))["logits"]
            diff = (ours - reference).abs().max().item()
            scale = reference.abs().max().item()
            rows.append((name, size, scale, diff, diff / scale))
            print(f"{name:<14} max|logit| {scale:10.4f}   max|diff| {diff:.3e}   relative {diff / scale:.3e}", flush=True)
    table = ["| teacher | input | max abs logit | max abs diff | relative | ≤ 1e-4 |", "|---|---|---|---|---|---|"]
    table += [f"| {n} | {s}x{s} | {sc:.4f} | {d:.3e} | {r:.3e} | {'yes' if r <= 1e-4 else 'NO'} |" for n, s, sc, d, r in rows]
    text = "\n".join(table)
    if args.write:
        header = (
            "# Parity with torchvision\n\n"
            "graft's torchvision-layout teachers against torchvision itself: seeded random weights saved with\n"
            "`torch.save(model.state_dict())` (batch-norm statistics randomised), a fixed random input batch of 2,\n"
            "max abs difference of the logits (graft on its default `flex` backend, f32).\n\n"
            "Command (outside CI, needs torch + torchvision + safetensors in a virtualenv):\n\n"
            "    /tmp/torchenv/bin/python scripts/reference/parity_torchvision.py --write docs/PARITY.md\n\n"
            f"Ran with torch {torch.__version__}, torchvision {torchvision.__version__}, on {platform.processor() or platform.machine()}.\n\n"
        )
        lite = (
            "\n\nEfficientNet-Lite0 (efficientnet_pytorch layout, real ImageNet weights) is checked in CI by the test\n"
            "`efficientnet_lite0_matches_reference_logits` against logits from an independent functional\n"
            "PyTorch implementation (scripts/reference/efficientnet_lite_reference.py), max abs diff ≤ 1e-3.\n"
        )
        pathlib.Path(args.write).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.write).write_text(header + text + lite)
    print(text)
    if any(r > 1e-4 for *_, r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
