#!/usr/bin/env bash
# Peak resident memory of graft training on all 60,000 Fashion-MNIST training images (IDX files
# from Debian's dataset-fashion-mnist; 48,000 train + 12,000 validation, the 10,000 test images
# scored by `graft eval`): `deep` for 10 epochs and `mid` for 1 epoch, cold feature cache, 112x112.
# Appends one JSON line per run to $RESULTS (default $OUT/results.jsonl). Called by scripts/bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/graft-bench}
graft=${GRAFT:-./target/release/graft}
data=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
[ -f "$data/train-images-idx3-ubyte.gz" ] || { echo "no Fashion-MNIST IDX files in $data (apt-get install dataset-fashion-mnist)" >&2; exit 1; }
mkdir -p "$out"
for spec in deep:10 mid:1; do
    strategy=${spec%%:*}; epochs=${spec##*:}
    echo "== 60,000 images: $strategy ($epochs epochs)" >&2
    export GRAFT_CACHE_DIR=$out/cache-60k-$strategy
    rm -rf "$GRAFT_CACHE_DIR" "$out/run-60k-$strategy"
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$out/time-60k-$strategy" "$graft" train --quiet --data "$data" --strategy "$strategy" --epochs "$epochs" \
        --image-size 112 --out "$out/run-60k-$strategy" --json > "$out/graft-60k-$strategy.json"
    /usr/bin/time -v -o "$out/time-60k-eval-$strategy" "$graft" eval --quiet "$out/run-60k-$strategy" \
        --data "$data/t10k-images-idx3-ubyte.gz" --json > "$out/graft-60k-eval-$strategy.json"
    end=$(date +%s.%N)
    python3 - "$strategy" "$epochs" "$out" "$start" "$end" >> "${RESULTS:-$out/results.jsonl}" <<'PY'
import json, sys
strategy, epochs, out, start, end = sys.argv[1:]
train = json.load(open(f"{out}/graft-60k-{strategy}.json"))
evaluation = json.load(open(f"{out}/graft-60k-eval-{strategy}.json"))
config = json.load(open(f"{out}/run-60k-{strategy}/graft.json"))
peak = lambda name: next(int(line.split()[-1]) for line in open(f"{out}/{name}") if "Maximum resident set size" in line) / 1024
print(json.dumps({
    "implementation": "graft", "memory_run": True, "strategy": strategy, "epochs": int(epochs),
    "train_images": config["train_images"], "validation_images": config["validation_images"],
    "validation_accuracy": train["validation_accuracy"], "test_accuracy": evaluation["accuracy"],
    "seconds": float(end) - float(start),
    "peak_rss_mib": peak(f"time-60k-{strategy}"), "eval_peak_rss_mib": peak(f"time-60k-eval-{strategy}"),
}))
PY
done
