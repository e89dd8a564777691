#!/usr/bin/env bash
# Two graft binaries on the same training run, alternately: the same student (byte for byte) and
# the training throughput of each epoch after the first (the first warms caches and allocators).
# A check that a change to the training loop costs nothing and changes no number.
#
#   scripts/bench/compare_binaries.sh OLD_GRAFT NEW_GRAFT [STRATEGY] [ROUNDS] [EPOCHS]
#
# Data: the first 16 training images of three classes of the bundled Fashion-MNIST sample at the
# teacher's 224 px (EfficientNet-Lite0), refit and augmentation off; both binaries share one
# feature cache, filled before the timed rounds.
set -euo pipefail
old=${1:?old graft binary}
new=${2:?new graft binary}
strategy=${3:-mid}
rounds=${4:-3}
epochs=${5:-4}
root="$(cd "$(dirname "$0")/../.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for class in Bag Sandal Trouser; do
    mkdir -p "$work/data/$class"
    find "$root/crates/graft-assets/data/fashion-mnist-sample/train/$class" -name '*.png' | sort | awk 'NR <= 16' |
        xargs -I{} cp {} "$work/data/$class/"
done
export GRAFT_OFFLINE=1 GRAFT_CACHE_DIR="$work/cache"
train() {
    rm -rf "$work/run-$1"
    "$2" train --data "$work/data" --strategy "$strategy" --epochs "$epochs" --refit off --augment off \
        --quiet --out "$work/run-$1" >/dev/null
}
train warm "$new"
for round in $(seq "$rounds"); do
    for which in old new; do
        binary=$old
        [ "$which" = new ] && binary=$new
        train "$which" "$binary"
        python3 - "$work/run-$which/metrics.jsonl" "$strategy" "$round" "$which" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])][1:]
rates = [row["images_per_second"] for row in rows]
print(json.dumps({"strategy": sys.argv[2], "round": int(sys.argv[3]), "binary": sys.argv[4],
                  "images_per_second": [round(rate, 1) for rate in rates],
                  "mean": round(sum(rates) / len(rates), 1)}))
PY
    done
    if cmp -s "$work/run-old/student.safetensors" "$work/run-new/student.safetensors"; then
        echo "round $round: the two students are identical, byte for byte"
    else
        echo "round $round: the two students differ" >&2
        exit 1
    fi
done
