"""A student's network written out by `graft export` is a weight file of its teacher: it loads,
strictly (every name and shape), into the PyTorch EfficientNet-Lite0 of the efficientnet_pytorch
layout (scripts/bench/pytorch_reference.py), and computes there the logits graft computes with
it (the `parity` example). Also prints how far those logits are from the published teacher's, to
show the file is another network.

Run (outside CI; needs torch + safetensors in a virtualenv):
    graft export RUN --out /tmp/student-as-teacher.safetensors
    /tmp/torchenv/bin/python scripts/reference/parity_export.py /tmp/student-as-teacher.safetensors
"""
import argparse
import pathlib
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts/bench"))
from pytorch_reference import lite0  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exported", type=pathlib.Path, help="the file `graft export` wrote (an EfficientNet-Lite0 student)")
    parser.add_argument("--binary", type=pathlib.Path, help="the built `parity` example (default: build it in release)")
    args = parser.parse_args()
    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "graft", "--example", "parity"], cwd=ROOT, check=True)
        binary = ROOT / "target/release/examples/parity"
    model = lite0(pretrained=False).eval()
    # Strict: every tensor of the module present with its shape, nothing more. The batch norms'
    # `num_batches_tracked` counters, absent from the file, are filled in by PyTorch itself.
    result = model.load_state_dict(load_file(str(args.exported)), strict=True)
    print(f"strict load: {result}")
    published = lite0(pretrained=True).eval()
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3100))
    with torch.no_grad():
        reference, teacher = model(images), published(images)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        save_file({"input": images.contiguous()}, str(tmp / "input.safetensors"))
        subprocess.run([str(binary), "efficientnet_lite0", str(args.exported), str(tmp / "input.safetensors"), str(tmp / "out.safetensors")], check=True)
        ours = load_file(str(tmp / "out.safetensors"))["logits"]
    scale = reference.abs().max().item()
    diff = (ours - reference).abs().max().item()
    apart = (teacher - reference).abs().max().item()
    print(f"graft against PyTorch, the exported network: max|logit| {scale:.4f}, max|diff| {diff:.3e}, relative {diff / scale:.3e}")
    print(f"the exported network against the published teacher (PyTorch): max|diff| {apart:.3e}")
    if diff / scale > 1e-4:
        sys.exit(1)


if __name__ == "__main__":
    main()
