"""The ten-line check of the PyTorch reference: fine-tuning as a user writes it, nothing else.

Every layer of the published EfficientNet-Lite0 trainable (batch norm in training mode), a new
10-class head, AdamW, batch 32, the bundled Fashion-MNIST sample decoded once into a tensor at
224 px, no augmentation, torch's default threads (one per core) and settings (no denormal flush).
Prints one JSON line: steady images/s of a training step (the median of the steps after three
warm-up steps) and of inference. `pytorch_reference.py kernels` must agree with it (docs/BENCHMARKS.md).

    /work/torchenv/bin/python scripts/bench/plain_step.py [STEPS]
"""
import json, os, statistics, sys, time, torch, torch.nn as nn, torch.nn.functional as F
from pytorch_reference import SAMPLE, decoded, lite0

x, y = decoded(SAMPLE / "train", 224)  # 1,000 images, 10 classes, decoded and normalised once
model = lite0(); model._fc = nn.Linear(1280, 10); model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
steps, batches, seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10, torch.randperm(len(y)).split(32), []
for batch in batches[:3 + steps]:
    started = time.perf_counter(); loss = F.cross_entropy(model(x[batch]), y[batch])
    optimizer.zero_grad(); loss.backward(); optimizer.step(); seconds.append(time.perf_counter() - started)
model.eval(); inference = []
with torch.no_grad():
    for batch in batches[:3 + steps]:
        started = time.perf_counter(); model(x[batch]); inference.append(time.perf_counter() - started)
print(json.dumps({"implementation": "pytorch-plain", "teacher": "efficientnet_lite0", "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "malloc": "graft's settings" if "MALLOC_MMAP_THRESHOLD_" in os.environ else "glibc defaults",
                  "train_full_images_per_second": 32 / statistics.median(seconds[3:]), "inference_images_per_second": 32 / statistics.median(inference[3:])}))
