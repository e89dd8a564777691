#!/usr/bin/env bash
# Test accuracy of graft and the PyTorch reference over several seeds, on run.sh's data, to tell
# a real accuracy gap from seed-to-seed noise. Accuracy only: the machine may be busy.
# Usage: scripts/bench/seeds.sh STRATEGY EPOCHS SEED... (e.g. `mid 10 1 2 3`)
# Appends one JSON line per run to $OUT/seeds.jsonl and prints mean and spread per implementation.
# Needs what run.sh needs (TORCH_PYTHON; run.sh's data in $OUT/data, or it is made).
# GRAFT_ARGS: more options for `graft train` (e.g. "--views 4"), recorded with the results;
# REFERENCE_ARGS: the same for the reference (e.g. "--augment off" with GRAFT_ARGS="--augment off");
# SKIP_REFERENCE=1 runs graft only (the reference's accuracy for a seed does not change).
set -euo pipefail
cd "$(dirname "$0")/../.."
strategy=${1:?strategy}; epochs=${2:?epochs}; shift 2
[ $# -gt 0 ] || { echo "give one or more seeds" >&2; exit 2; }
python=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
out=${OUT:-/tmp/graft-bench}
# GRAFT: another graft binary (e.g. one built with `--features tch`, with GRAFT_ARGS="--device
# libtorch" and its libtorch on LD_LIBRARY_PATH); by default this checkout's release build. The
# commit recorded is this checkout's either way: build GRAFT from the same code.
graft=${GRAFT:-./target/release/graft}
[ -n "${GRAFT:-}" ] || cargo build --release -q -p graft-cli
data=$out/data
[ -d "$data/train" ] || python3 scripts/make_demo_data.py --out "$data" --train 160 --val 40 --test 200 >&2
results=$out/seeds.jsonl
commit=$(scripts/bench/graft_commit.sh)
for seed in "$@"; do
    echo "== $strategy, seed $seed" >&2
    export GRAFT_CACHE_DIR=$out/cache-seeds
    run=$out/run-seed-$strategy-$seed
    rm -rf "$GRAFT_CACHE_DIR" "$run"
    # shellcheck disable=SC2086 # GRAFT_ARGS is a list of options
    "$graft" train --quiet --data "$data" --strategy "$strategy" --epochs "$epochs" --image-size 112 --seed "$seed" --out "$run" ${GRAFT_ARGS:-} --json > /dev/null
    graft_accuracy=$("$graft" eval --quiet "$run" --data "$data/test" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])')
    reference_accuracy=null
    if [ -z "${SKIP_REFERENCE:-}" ]; then
        # shellcheck disable=SC2086 # REFERENCE_ARGS is a list of options
        reference_accuracy=$("$python" scripts/bench/pytorch_reference.py train --data "$data" --strategy "$strategy" --epochs "$epochs" --seed "$seed" ${REFERENCE_ARGS:-} | python3 -c 'import json,sys; print(json.load(sys.stdin)["test_accuracy"])')
    fi
    printf '{"strategy":"%s","epochs":%s,"seed":%s,"graft_commit":"%s","graft_args":"%s","reference_args":"%s","graft_test_accuracy":%s,"pytorch_test_accuracy":%s}\n' \
        "$strategy" "$epochs" "$seed" "$commit" "${GRAFT_ARGS:-}" "${REFERENCE_ARGS:-}" "$graft_accuracy" "$reference_accuracy" | tee -a "$results"
done
python3 - "$results" "$strategy" "$epochs" <<'PY'
import json, statistics, sys
path, strategy, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [r for r in map(json.loads, open(path)) if r["strategy"] == strategy and r["epochs"] == epochs]
series = {}
for r in rows:
    # Rows from before graft_commit was recorded come from the code before 2026-11-28's change.
    commit = r.get("graft_commit", "before the plain cached view")
    name = " ".join(part for part in ["graft", r.get("graft_args", ""), f"({commit})"] if part)
    series.setdefault(name, {})[r["seed"]] = r["graft_test_accuracy"]
    if r["pytorch_test_accuracy"] is not None:
        series.setdefault(f"pytorch {r.get('reference_args', '')}".strip(), {})[r["seed"]] = r["pytorch_test_accuracy"]
for name, by_seed in series.items():
    values = [100 * by_seed[seed] for seed in sorted(by_seed)]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"{strategy} {name}: mean {statistics.mean(values):.2f}% over seeds {sorted(by_seed)} (sd {spread:.2f}; {min(values):.2f}-{max(values):.2f})")
PY
