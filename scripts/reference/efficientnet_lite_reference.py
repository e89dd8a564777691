"""An independent EfficientNet-Lite0 forward pass in plain PyTorch functional ops.

It shares nothing with graft: the weights are read by `torch.load(weights_only=True)` and the
network is written out layer by layer from the efficientnet_pytorch / TensorFlow Lite
definitions (TF "SAME" padding, ReLU6, batch-norm epsilon 1e-3, no squeeze-excitation).

Writes crates/graft/tests/fixtures/efficientnet_lite0_logits.safetensors with two fixed inputs
(`input`, [2, 3, 224, 224], already normalised) and their logits (`logits`, [2, 1000]), which
graft's test `efficientnet_lite0_matches_reference_logits` compares against.

Run (outside CI; torch from PyPI in a virtualenv):
    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch safetensors pillow numpy
    /tmp/torchenv/bin/python scripts/reference/efficientnet_lite_reference.py
"""
import math
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "crates/graft-assets/weights/efficientnet-lite0-57934424.pth"
FIXTURE = ROOT / "crates/graft/tests/fixtures/efficientnet_lite0_logits.safetensors"

# (repeats, kernel, stride, expand, output channels) for Lite0 (no width/depth scaling).
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


def same_pad(x, kernel, stride):
    height, width = x.shape[-2:]
    def total(size):
        out = math.ceil(size / stride)
        return max((out - 1) * stride + kernel - size, 0)
    pad_h, pad_w = total(height), total(width)
    return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


def bn(x, state, prefix):
    return F.batch_norm(x, state[prefix + ".running_mean"], state[prefix + ".running_var"],
                        state[prefix + ".weight"], state[prefix + ".bias"], False, 0.0, 1e-3)


def forward(state, x):
    x = F.conv2d(same_pad(x, 3, 2), state["_conv_stem.weight"], stride=2)
    x = F.relu6(bn(x, state, "_bn0"))
    index = 0
    channels = 32
    for repeats, kernel, stride, expand, out in STAGES:
        for repeat in range(repeats):
            s = stride if repeat == 0 else 1
            p = f"_blocks.{index}"
            inputs = x
            if expand != 1:
                x = F.relu6(bn(F.conv2d(x, state[p + "._expand_conv.weight"]), state, p + "._bn0"))
            hidden = x.shape[1]
            x = F.conv2d(same_pad(x, kernel, s), state[p + "._depthwise_conv.weight"], stride=s, groups=hidden)
            x = F.relu6(bn(x, state, p + "._bn1"))
            x = bn(F.conv2d(x, state[p + "._project_conv.weight"]), state, p + "._bn2")
            if s == 1 and channels == out:
                x = x + inputs
            channels = out
            index += 1
    x = F.relu6(bn(F.conv2d(x, state["_conv_head.weight"]), state, "_bn1"))
    x = x.mean(dim=(2, 3))
    return F.linear(x, state["_fc.weight"], state["_fc.bias"])


def main():
    from safetensors.torch import save_file
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    state = {k: v.double() for k, v in state.items()}
    rng = np.random.default_rng(20261128)
    noise = rng.standard_normal((3, 224, 224))
    ys, xs = np.meshgrid(np.linspace(-1, 1, 224), np.linspace(-1, 1, 224), indexing="ij")
    pattern = np.stack([np.sin(6 * xs) * np.cos(4 * ys), xs * ys * 2, np.cos(9 * (xs + ys))])
    inputs = torch.tensor(np.stack([noise, pattern]), dtype=torch.float32)
    with torch.no_grad():
        logits = forward(state, inputs.double()).float()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    save_file({"input": inputs.contiguous(), "logits": logits.contiguous()}, str(FIXTURE))
    print(f"wrote {FIXTURE.relative_to(ROOT)}: logits range {logits.min():.3f}..{logits.max():.3f}")

    if len(sys.argv) > 1:  # classify photos too: preprocess like graft's card
        from PIL import Image
        for path in sys.argv[1:]:
            image = Image.open(path).convert("RGB")
            scale = 256 / min(image.size)
            image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BILINEAR)
            left, top = (image.size[0] - 224) // 2, (image.size[1] - 224) // 2
            image = image.crop((left, top, left + 224, top + 224))
            array = torch.tensor(np.asarray(image), dtype=torch.float64).permute(2, 0, 1) / 255.0
            for name, mean, std in [("0.5/0.5", 0.5, 0.5), ("imagenet", torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1))]:
                probs = forward(state, ((array - mean) / std).unsqueeze(0)).softmax(-1)[0]
                top = probs.topk(3)
                print(path, name, [(int(i), round(float(p), 3)) for p, i in zip(top.values, top.indices)])


if __name__ == "__main__":
    main()
