"""Writes the weight-file fixtures of graft-weights' tests (crates/graft-weights/tests/fixtures/).

- strided_{zip,legacy}.pth: tensors saved with non-contiguous strides, storage offsets and shared
  storages, in float32, float16, bfloat16, float64 and int64;
  strided_expected.safetensors: the same tensors made contiguous (floats as float32), which is
  what graft must read back.
- hostile_{zip,legacy}.pth: checkpoints whose pickle calls `os.system("touch /tmp/graft-hostile-pickle-ran")`
  when loaded by Python's unpickler; graft must refuse them and never run the command.
- whole_model.pth: a pickled nn.Module (not a state dict), which graft refuses by class name.

Run (outside CI): /tmp/torchenv/bin/python scripts/reference/make_weight_fixtures.py
"""
import collections
import os
import pathlib

import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/graft-weights/tests/fixtures"
MARKER = "/tmp/graft-hostile-pickle-ran"


def strided_tensors():
    torch.manual_seed(7)
    base = torch.randn(6, 5)
    shared = torch.arange(24, dtype=torch.float32)
    tensors = collections.OrderedDict()
    tensors["transposed"] = base.t()                      # strides (1, 5)
    tensors["sliced"] = base[1:5:2, 1:4]                  # offset 6, strides (10, 1)
    tensors["shared_view_a"] = shared.view(4, 6)[:, ::2]  # strides (6, 2)
    tensors["shared_view_b"] = shared[5:17].view(3, 4)    # offset 5 into the same storage
    tensors["expanded"] = torch.randn(3, 1).expand(3, 4)  # stride 0
    tensors["half"] = torch.randn(4, 3).half().t()
    tensors["bfloat16"] = torch.randn(2, 3, 2).bfloat16().permute(2, 0, 1)
    tensors["double"] = torch.randn(5).double()[::2]
    tensors["int64"] = torch.arange(12).view(3, 4).t()
    tensors["scalar"] = torch.tensor(3.5)
    tensors["nested.conv.weight"] = torch.randn(2, 3, 3, 3).permute(0, 1, 3, 2)
    return tensors


class Hostile:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tensors = strided_tensors()
    assert not tensors["transposed"].is_contiguous()
    # Nest the dotted key as a real sub-dict, as checkpoints saved with {"model": state_dict} do.
    payload = collections.OrderedDict((k, v) for k, v in tensors.items() if not k.startswith("nested."))
    payload["nested"] = {"conv": {"weight": tensors["nested.conv.weight"]}}
    payload["epoch"] = 12  # a non-tensor entry, ignored
    torch.save(payload, OUT / "strided_zip.pth")
    torch.save(payload, OUT / "strided_legacy.pth", _use_new_zipfile_serialization=False)
    expected = {k: (v.contiguous().float() if v.is_floating_point() else v.contiguous()) for k, v in tensors.items()}
    save_file(expected, str(OUT / "strided_expected.safetensors"))

    hostile = collections.OrderedDict(weight=torch.ones(2), payload=Hostile())
    torch.save(hostile, OUT / "hostile_zip.pth")
    torch.save(hostile, OUT / "hostile_legacy.pth", _use_new_zipfile_serialization=False)

    torch.save(torch.nn.Linear(2, 2), OUT / "whole_model.pth")
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
