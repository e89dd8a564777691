#!/usr/bin/env bash
# Test accuracy of graft and the PyTorch reference over several seeds, on run.sh's data, to tell
# a real accuracy gap from seed-to-seed noise. Accuracy only: the machine may be busy.
# Usage: scripts/bench/seeds.sh STRATEGY EPOCHS SEED... (e.g. `mid 10 1 2 3`)
# Appends one JSON line per run to $OUT/seeds.jsonl and prints mean and spread per implementation.
# Needs what run.sh needs (TORCH_PYTHON; run.sh's data in $OUT/data, or it is made).
set -euo pipefail
cd "$(dirname "$0")/../.."
strategy=${1:?strategy}; epochs=${2:?epochs}; shift 2
[ $# -gt 0 ] || { echo "give one or more seeds" >&2; exit 2; }
python=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
out=${OUT:-/tmp/graft-bench}
graft=./target/release/graft
cargo build --release -q -p graft-cli
data=$out/data
[ -d "$data/train" ] || python3 scripts/make_demo_data.py --out "$data" --train 160 --val 40 --test 200 >&2
results=$out/seeds.jsonl
for seed in "$@"; do
    echo "== $strategy, seed $seed" >&2
    export GRAFT_CACHE_DIR=$out/cache-seeds
    run=$out/run-seed-$strategy-$seed
    rm -rf "$GRAFT_CACHE_DIR" "$run"
    "$graft" train --quiet --data "$data" --strategy "$strategy" --epochs "$epochs" --image-size 112 --seed "$seed" --out "$run" --json > /dev/null
    graft_accuracy=$("$graft" eval --quiet "$run" --data "$data/test" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])')
    reference_accuracy=$("$python" scripts/bench/pytorch_reference.py train --data "$data" --strategy "$strategy" --epochs "$epochs" --seed "$seed" | python3 -c 'import json,sys; print(json.load(sys.stdin)["test_accuracy"])')
    printf '{"strategy":"%s","epochs":%s,"seed":%s,"graft_test_accuracy":%s,"pytorch_test_accuracy":%s}\n' \
        "$strategy" "$epochs" "$seed" "$graft_accuracy" "$reference_accuracy" | tee -a "$results"
done
python3 - "$results" "$strategy" "$epochs" <<'PY'
import json, statistics, sys
path, strategy, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [r for r in map(json.loads, open(path)) if r["strategy"] == strategy and r["epochs"] == epochs]
for name in ["graft", "pytorch"]:
    values = [100 * r[f"{name}_test_accuracy"] for r in rows]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"{strategy} {name}: mean {statistics.mean(values):.2f}% over {len(values)} seeds (sd {spread:.2f}; {min(values):.2f}-{max(values):.2f})")
PY
