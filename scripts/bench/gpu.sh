#!/usr/bin/env bash
# The kernel benchmark on a GPU: graft on burn's wgpu backend (Vulkan) against PyTorch on CUDA,
# one after the other, the same operations as `graft bench` on the CPU (batch 32, 224x224,
# random weights). Two steps, because the GPU machine (the `device` tool's, lent to some
# sessions only) has no internet and no Rust toolchain:
#
#   scripts/bench/gpu.sh prepare
#       here: builds graft with `--features wgpu` into .gpu/ (stripped and compressed, with the
#       commit it was built from) and downloads the Vulkan loader (.gl/*.deb) from Debian's archive.
#   device `run`: command "bash scripts/bench/gpu.sh run", carry [".gpu", ".gl"], timeout_s 360 (a
#       session has 15 device minutes, a start takes 1-2: room for one rerun)
#       there: unpacks the loader, then writes $OUT/bench-gpu.jsonl (one JSON object per line,
#       the first naming the GPU, driver and commit) and $OUT/gpu-usage.csv (nvidia-smi every
#       second, which shows that graft's run used the GPU).
#   then, here: cp <files_at>/bench-gpu.jsonl docs/bench-gpu.jsonl and
#       python3 scripts/bench/report.py docs/bench-results.jsonl > docs/BENCHMARKS.md, which adds
#       a GPU table from docs/bench-gpu.jsonl.
#
# `run` also works on a machine without an NVIDIA GPU (it then skips PyTorch's CUDA part), which
# is how the script is checked: with a software Vulkan driver (Mesa's lavapipe) set through
# VK_DRIVER_FILES, and TEACHERS / BATCH / ITERATIONS made small.
set -euo pipefail
cd "$(dirname "$0")/../.."
teachers=${TEACHERS:-resnet18,resnet50,efficientnet_lite0}
batch=${BATCH:-32}
iterations=${ITERATIONS:-3}

case "${1:-}" in
prepare)
    target=${CARGO_TARGET_DIR:-target}
    cargo build --release -q -p graft-cli --features wgpu
    mkdir -p .gpu .gl
    # Stripped, the wgpu build is ~90 MB; xz brings it to ~29 MB, under the device's 64 MiB for
    # everything that travels (the checkout itself is ~23 MB).
    rm -f .gpu/graft.xz
    strip -o .gpu/graft "$target/release/graft"
    xz -9 -T0 .gpu/graft
    scripts/bench/graft_commit.sh > .gpu/commit
    rm -f .gl/*.deb
    (cd .gl && apt-get download libvulkan1 libegl1 libglvnd0 2>/dev/null)
    ls -l .gpu .gl
    du -sh .gpu .gl
    ;;
run)
    out=${OUT:?"OUT: the folder for the results"}
    [ -f .gpu/graft.xz ] || { echo "no .gpu/graft.xz: run 'scripts/bench/gpu.sh prepare' here first and carry .gpu" >&2; exit 1; }
    graft=$(mktemp -d)/graft
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" .gpu/graft.xz "$graft"
    chmod +x "$graft"
    # The Vulkan loader, unless the machine has one (the NVIDIA driver brings the driver itself).
    if ! python3 -c "import ctypes; ctypes.CDLL('libvulkan.so.1')" 2>/dev/null; then
        ls .gl/*.deb >/dev/null 2>&1 || { echo "no Vulkan loader on this machine and none in .gl: carry .gl" >&2; exit 1; }
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ]; then
        export VK_DRIVER_FILES=$nvidia_icd
    fi
    results=$out/bench-gpu.jsonl
    gpu=none
    if command -v nvidia-smi >/dev/null 2>&1; then
        gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 > "$out/gpu-usage.csv" 2>&1 &
        smi=$!
        trap 'kill $smi 2>/dev/null || true' EXIT
    fi
    cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
    python3 - "$(cat .gpu/commit)" "$(date -u +%F)" "$gpu" "$cpu" "$(nproc)" > "$results" <<'PY'
import json, sys
commit, date, gpu, cpu, cores = sys.argv[1:]
print(json.dumps({"run": {"graft_commit": commit, "date": date, "gpu": gpu, "cpu": cpu, "cores": int(cores)}}))
PY
    if [ "$gpu" != none ] && python3 -c "import torch, torchvision; assert torch.cuda.is_available()" 2>/dev/null; then
        echo "== PyTorch on CUDA" >&2
        python3 -c "import json, torch; print(json.dumps({'implementation': 'pytorch', 'torch': torch.__version__}))" >> "$results"
        python3 scripts/bench/pytorch_reference.py kernels --device cuda --teachers "$teachers" \
            --batch-size "$batch" --iterations "$iterations" >> "$results"
    else
        echo "== no CUDA GPU with torch + torchvision here: PyTorch's part left out" >&2
    fi
    echo "== graft on wgpu: the bundled teacher's predictions against flex's" >&2
    # Speed means nothing if the GPU computes something else: the pretrained EfficientNet-Lite0 on
    # the bundled photos, on wgpu and on the CPU, by the same binary.
    weights=crates/graft-assets/weights/efficientnet-lite0-57934424.pth
    "$graft" predict -q --offline --json --weights "$weights" --device wgpu crates/graft-assets/images > "$out/predict-wgpu.json"
    "$graft" predict -q --offline --json --weights "$weights" --device flex crates/graft-assets/images > "$out/predict-flex.json"
    python3 - "$out/predict-wgpu.json" "$out/predict-flex.json" >> "$results" <<'PY'
import json, sys
gpu, cpu = (json.load(open(path)) for path in sys.argv[1:])
same = [[t["class_index"] for t in a["top"]] == [t["class_index"] for t in b["top"]] for a, b in zip(gpu, cpu)]
difference = max(abs(s["probability"] - t["probability"]) for a, b in zip(gpu, cpu) for s, t in zip(a["top"], b["top"]))
print(json.dumps({"check": "predict_wgpu_vs_flex", "images": len(gpu), "same_top5": all(same) and len(gpu) == len(cpu),
                  "max_probability_difference": difference}))
PY
    echo "== graft on wgpu: kernels" >&2
    # One warm-up iteration per operation (as on the CPU) compiles the shaders before the timing.
    "$graft" bench --device wgpu --teachers "$teachers" --batch-size "$batch" --iterations "$iterations" \
        | sed -u 's/^{/{"implementation":"graft",/' >> "$results"
    cat "$results"
    ;;
*)
    echo "usage: scripts/bench/gpu.sh prepare | run   (see the comment at the top)" >&2
    exit 2
    ;;
esac
