#!/usr/bin/env bash
# The kernel table's measurements, graft and PyTorch taking turns: this machine's speed drifts by
# up to 2x within minutes (a shared virtual machine), so only figures taken side by side compare.
# Each round runs, one after the other: the ten-line plain script (scripts/bench/plain_step.py,
# EfficientNet-Lite0), the PyTorch reference's kernel rows (pytorch_reference.py kernels) and
# `graft bench`, on the same real images (the bundled Fashion-MNIST sample at 224 px) and
# weights (Lite0's published ones; ResNets randomly initialised in both). Appends one JSON line
# per figure, each with its round, to $RESULTS; report.py takes the median over rounds and the
# ratio of medians.
#
#   TORCH_PYTHON=/work/torchenv/bin/python ROUNDS=3 scripts/bench/kernels_side_by_side.sh
#
# TEACHERS (default resnet18,resnet50,efficientnet_lite0), ROUNDS (default 3), RESULTS (default
# /tmp/graft-bench/kernels.jsonl), GRAFT (default ./target/release/graft, built here when absent).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
teachers=${TEACHERS:-resnet18,resnet50,efficientnet_lite0}
rounds=${ROUNDS:-3}
results=${RESULTS:-/tmp/graft-bench/kernels.jsonl}
graft=${GRAFT:-./target/release/graft}
[ -n "${GRAFT:-}" ] || cargo build --release -q -p graft-cli
mkdir -p "$(dirname "$results")"
printf '{"run": {"graft_commit": "%s", "date": "%s"}}\n' "$(scripts/bench/graft_commit.sh)" "$(date -u +%F)" >> "$results"
tag() { sed "s/^{/{\"round\":$1,/"; }
# graft's binary keeps freed memory in the process (one glibc arena, no mmap threshold, no
# trimming: crates/graft-cli/src/allocator.rs); the reference gets the same settings, which make
# PyTorch up to 2x faster here (docs/BENCHMARKS.md). The plain script runs both ways.
same_allocator=(env MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736)
for round in $(seq 1 "$rounds"); do
    echo "== round $round of $rounds" >&2
    if [[ ",$teachers," == *",efficientnet_lite0,"* ]]; then
        (cd scripts/bench && "$python" plain_step.py) | tag "$round" >> "$results"
        (cd scripts/bench && "${same_allocator[@]}" "$python" plain_step.py) | tag "$round" >> "$results"
    fi
    "${same_allocator[@]}" "$python" scripts/bench/pytorch_reference.py kernels --teachers "$teachers" | tag "$round" >> "$results"
    "$graft" bench --quiet --teachers "$teachers" | sed 's/^{/{"implementation":"graft",/' | tag "$round" >> "$results"
done
echo "raw results in $results" >&2
