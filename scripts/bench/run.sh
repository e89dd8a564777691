#!/usr/bin/env bash
# graft against the PyTorch reference on this machine, one after the other, in one invocation.
# Writes the raw results to $OUT/results.jsonl and the tables with ratios to docs/BENCHMARKS.md.
#
# Needs: apt-get install dataset-fashion-mnist time; a virtualenv with torch + torchvision
# (TORCH_PYTHON, default /tmp/torchenv/bin/python); for the libtorch column, a graft built with
# `--features tch` against torch==2.9.0 (GRAFT_TCH=path/to/that/graft), which adds `full` end to
# end and the kernels on libtorch; GRAFT_TCH_PYTHON is that virtualenv's python (its torch/lib
# holds the shared libraries the build loads). SKIP_60K=1 leaves out the 60,000-image memory run
# (scripts/bench/memory_60k.sh, ~15 minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
out=${OUT:-/tmp/graft-bench}
graft=./target/release/graft
cargo build --release -q -p graft-cli
mkdir -p "$out"
results=$out/results.jsonl
: > "$results"
data=$out/data
[ -d "$data/train" ] || python3 scripts/make_demo_data.py --out "$data" --train 160 --val 40 --test 200 >&2

# Peak resident memory of a command, in MiB, from GNU time.
peak() { grep "Maximum resident set size" "$1" | awk '{printf "%.1f", $NF / 1024}'; }

for spec in deep:10 mid:10 full:3; do
    strategy=${spec%%:*}; epochs=${spec##*:}
    echo "== $strategy ($epochs epochs)" >&2
    # graft: cold feature cache; training (with caching) then scoring the test set.
    export GRAFT_CACHE_DIR=$out/cache-$strategy
    rm -rf "$GRAFT_CACHE_DIR" "$out/run-$strategy"
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$out/time-train-$strategy" "$graft" train --quiet --data "$data" --strategy "$strategy" --epochs "$epochs" \
        --image-size 112 --out "$out/run-$strategy" --json > "$out/graft-train-$strategy.json"
    /usr/bin/time -v -o "$out/time-eval-$strategy" "$graft" eval --quiet "$out/run-$strategy" --data "$data/test" --json > "$out/graft-eval-$strategy.json"
    end=$(date +%s.%N)
    python3 - "$strategy" "$epochs" "$out" "$start" "$end" "$(peak "$out/time-train-$strategy")" "$(peak "$out/time-eval-$strategy")" >> "$results" <<'PY'
import json, sys
strategy, epochs, out, start, end, peak_train, peak_eval = sys.argv[1:]
train = json.load(open(f"{out}/graft-train-{strategy}.json"))
evaluation = json.load(open(f"{out}/graft-eval-{strategy}.json"))
metrics = [json.loads(line) for line in open(f"{out}/run-{strategy}/metrics.jsonl")]
print(json.dumps({
    "implementation": "graft", "strategy": strategy, "epochs": int(epochs),
    "validation_accuracy": train["validation_accuracy"], "test_accuracy": evaluation["accuracy"],
    "seconds": float(end) - float(start),
    "train_images_per_second": sum(m["images_per_second"] * m["seconds"] for m in metrics) / sum(m["seconds"] for m in metrics),
    "peak_rss_mib": max(float(peak_train), float(peak_eval)),
}))
PY
    /usr/bin/time -v -o "$out/time-ref-$strategy" "$python" scripts/bench/pytorch_reference.py train --data "$data" --strategy "$strategy" --epochs "$epochs" > "$out/ref-$strategy.json"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r['peak_rss_mib']=float(sys.argv[2]); print(json.dumps(r))" "$out/ref-$strategy.json" "$(peak "$out/time-ref-$strategy")" >> "$results"
done

if [ -n "${GRAFT_TCH:-}" ]; then
    # The libtorch build loads torch's shared libraries from the torch==2.9.0 virtualenv.
    tch_python=${GRAFT_TCH_PYTHON:?set GRAFT_TCH_PYTHON to the python of the torch==2.9.0 virtualenv}
    torch_lib=$("$tch_python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    # `full` again with graft's libtorch backend (the other strategies train on cached features).
    strategy=full; epochs=3
    echo "== $strategy ($epochs epochs), libtorch backend" >&2
    export GRAFT_CACHE_DIR=$out/cache-tch-$strategy
    rm -rf "$GRAFT_CACHE_DIR" "$out/run-tch-$strategy"
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$out/time-tch-train-$strategy" "$GRAFT_TCH" train --quiet --device libtorch --data "$data" --strategy "$strategy" \
        --epochs "$epochs" --image-size 112 --out "$out/run-tch-$strategy" --json > "$out/graft-tch-train-$strategy.json"
    /usr/bin/time -v -o "$out/time-tch-eval-$strategy" "$GRAFT_TCH" eval --quiet --device libtorch "$out/run-tch-$strategy" --data "$data/test" \
        --json > "$out/graft-tch-eval-$strategy.json"
    end=$(date +%s.%N)
    python3 - "$strategy" "$epochs" "$out" "$start" "$end" "$(peak "$out/time-tch-train-$strategy")" "$(peak "$out/time-tch-eval-$strategy")" >> "$results" <<'PY'
import json, sys
strategy, epochs, out, start, end, peak_train, peak_eval = sys.argv[1:]
train = json.load(open(f"{out}/graft-tch-train-{strategy}.json"))
evaluation = json.load(open(f"{out}/graft-tch-eval-{strategy}.json"))
metrics = [json.loads(line) for line in open(f"{out}/run-tch-{strategy}/metrics.jsonl")]
print(json.dumps({
    "implementation": "graft-libtorch", "strategy": strategy, "epochs": int(epochs),
    "validation_accuracy": train["validation_accuracy"], "test_accuracy": evaluation["accuracy"],
    "seconds": float(end) - float(start),
    "train_images_per_second": sum(m["images_per_second"] * m["seconds"] for m in metrics) / sum(m["seconds"] for m in metrics),
    "peak_rss_mib": max(float(peak_train), float(peak_eval)),
}))
PY
fi

echo "== kernels" >&2
"$graft" bench --quiet | sed 's/^{/{"implementation":"graft",/' >> "$results"
if [ -n "${GRAFT_TCH:-}" ]; then
    "$GRAFT_TCH" bench --quiet --device libtorch | sed 's/^{/{"implementation":"graft",/' >> "$results"
fi
"$python" scripts/bench/pytorch_reference.py kernels >> "$results"
if [ -z "${SKIP_60K:-}" ]; then
    OUT=$out GRAFT=$graft scripts/bench/memory_60k.sh
fi
python3 scripts/bench/report.py "$results" > docs/BENCHMARKS.md
echo "wrote docs/BENCHMARKS.md" >&2
