#!/usr/bin/env bash
# Time to accuracy: what graft's defaults cost and buy against a plain PyTorch script, for each
# strategy, on the same images. Fashion-MNIST at 224 px (the teacher's own size): 300 training
# images (the first 30 of each class) and 500 test images (the first 50 of each class of the
# test set), no validation folder (graft splits one off and, by default, trains again on every
# image once it has chosen the epoch count: `--refit auto`). EfficientNet-Lite0 teacher.
#
# Rows, each a whole process timed from start to end (train, then the test set):
# - graft with its defaults (`graft train` + `graft eval`, cold feature cache);
# - graft with `--refit off` (what the refit costs and buys);
# - the plain script: pytorch_reference.py `train --input decoded` (images decoded once into a
#   tensor, no augmentation, so the frozen blocks' output is computed once; the same learning
#   rates, schedule and label smoothing as graft, every epoch on all 300 images, the last
#   epoch's weights; batch norm in training mode in the blocks that train, as `model.train()`
#   gives), under glibc's default allocator settings.
# Epochs: 10 for deep and mid (graft's default), 5 for full (both sides).
#
#   TORCH_PYTHON=/work/torchenv/bin/python scripts/bench/time_to_accuracy.sh
#
# Needs `apt-get install dataset-fashion-mnist`. RESULTS (default /tmp/graft-bench/accuracy.jsonl)
# gets one JSON line per row; kernels_report.py turns them into the table in docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
out=${OUT:-/tmp/graft-bench}
results=${RESULTS:-$out/accuracy.jsonl}
graft=${GRAFT:-./target/release/graft}
[ -n "${GRAFT:-}" ] || cargo build --release -q -p graft-cli
data=$out/accuracy-data
[ -d "$data/train" ] || python3 scripts/make_demo_data.py --out "$data" --train 30 --test 50 >&2
mkdir -p "$out"
printf '{"run": {"graft_commit": "%s", "date": "%s"}}\n' "$(scripts/bench/graft_commit.sh)" "$(date -u +%F)" >> "$results"

# One graft row: train + eval in a cold cache. Usage: graft_row NAME STRATEGY EPOCHS [OPTION...]
graft_row() {
    local name=$1 strategy=$2 epochs=$3 start end run
    shift 3
    run=$out/accuracy-run-$name-$strategy
    export GRAFT_CACHE_DIR=$out/accuracy-cache-$name-$strategy
    rm -rf "$GRAFT_CACHE_DIR" "$run"
    echo "== graft $name $strategy" >&2
    start=$(date +%s.%N)
    "$graft" train --quiet --data "$data/train" --strategy "$strategy" --epochs "$epochs" --out "$run" "$@" --json > "$run.train.json"
    "$graft" eval --quiet "$run" --data "$data/test" --json > "$run.eval.json"
    end=$(date +%s.%N)
    python3 - "$name" "$strategy" "$epochs" "$start" "$end" "$run" >> "$results" <<'PY'
import json, sys
name, strategy, epochs, start, end, run = sys.argv[1:]
train, evaluation = json.load(open(run + ".train.json")), json.load(open(run + ".eval.json"))
print(json.dumps({"accuracy_row": name, "implementation": "graft", "strategy": strategy, "epochs": int(epochs),
                  "seconds": float(end) - float(start), "test_accuracy": evaluation["accuracy"],
                  "validation_accuracy": train.get("validation_accuracy")}))
PY
}

# The plain script's row. Usage: plain_row STRATEGY EPOCHS
plain_row() {
    local strategy=$1 epochs=$2 start end
    echo "== plain script $strategy" >&2
    start=$(date +%s.%N)
    "$python" scripts/bench/pytorch_reference.py train --data "$data" --strategy "$strategy" --epochs "$epochs" \
        --image-size 224 --input decoded --augment off > "$out/accuracy-plain-$strategy.json"
    end=$(date +%s.%N)
    python3 - "$strategy" "$start" "$end" "$out/accuracy-plain-$strategy.json" >> "$results" <<'PY'
import json, sys
strategy, start, end, path = sys.argv[1:]
row = json.load(open(path))
row.update({"accuracy_row": "plain script", "implementation": "pytorch", "seconds": float(end) - float(start)})
print(json.dumps(row))
PY
}

# STRATEGIES and ROWS (default: all) rerun a part, e.g. STRATEGIES=deep ROWS=plain.
strategies=" ${STRATEGIES:-deep mid full} "
rows=" ${ROWS:-default refit-off plain} "
for spec in "deep 10" "mid 10" "full 5"; do
    set -- $spec
    [[ "$strategies" == *" $1 "* ]] || continue
    [[ "$rows" != *" default "* ]] || graft_row default "$1" "$2"
    [[ "$1" == deep || "$rows" != *" refit-off "* ]] || graft_row refit-off "$1" "$2" --refit off
    [[ "$rows" != *" plain "* ]] || plain_row "$1" "$2"
done
echo "raw results in $results" >&2
