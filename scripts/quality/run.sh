#!/usr/bin/env bash
# The quality benchmark (docs/QUALITY.md): graft's defaults against the plain PyTorch recipe
# (scripts/quality/plain_recipe.py) on small labelled sets that ship in packages, 5 seeds each,
# each student scored on a test set it never saw. Results: one JSON line per run in
# $WORK/results.jsonl; the tables: python3 scripts/quality/report.py $WORK/results.jsonl.
#
#   PYTHON=/path/to/venv/bin/python scripts/quality/run.sh          # deep (minutes)
#   STRATEGIES="deep mid full" SETS="fm30" scripts/quality/run.sh   # fine-tuning (hours at 224 px)
#
# Needs: `apt-get install dataset-fashion-mnist`; a Python with torch, torchvision and Pillow
# (../shared/ASSETS.md: `python3 -m venv DIR && DIR/bin/pip install torch torchvision`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/graft-quality}
PYTHON=${PYTHON:-python3}
STRATEGIES=${STRATEGIES:-deep}
SEEDS=${SEEDS:-"1 2 3 4 5"}
SETS=${SETS:-"fm10 fm30 fm100 digits30 digits100"}
GRAFT=${GRAFT:-$ROOT/target/release/graft}
# PLAIN=0 skips the PyTorch recipe, BEFORE=0 graft's head-by-epochs runs (report.py keeps the
# latest result of each run, so a rerun of one side updates the tables).
PLAIN=${PLAIN:-1}
BEFORE=${BEFORE:-1}
# An ablation: VARIANT names it in the results, ARGS are the extra `graft train` arguments
# (e.g. VARIANT=batch-bn ARGS="--batch-norm batch" PLAIN=0 BEFORE=0).
VARIANT=${VARIANT:-default}
ARGS=${ARGS:-}
if [ ! -x "$GRAFT" ]; then (cd "$ROOT" && cargo build --release -p graft-cli); fi
mkdir -p "$WORK/runs"

missing=0
for set in $SETS; do [ -d "$WORK/sets/$set" ] || missing=1; done
if [ "$missing" = 1 ]; then
  # scikit-learn's digits ship in its wheel; any recent wheel carries the same file.
  mkdir -p "$WORK/wheels"
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: scikit-learn -d "$WORK/wheels"
  unzip -o -q "$WORK"/wheels/scikit_learn-*.whl 'sklearn/datasets/data/digits.csv.gz' -d "$WORK/wheels"
  "$PYTHON" "$ROOT/scripts/quality/make_sets.py" --out "$WORK/sets" --digits-csv "$WORK/wheels/sklearn/datasets/data/digits.csv.gz"
fi

RESULTS=$WORK/results.jsonl
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
# COMMIT names the commit GRAFT was built from when it is not the checkout's.
commit=${COMMIT:-$(cd "$ROOT" && git rev-parse --short HEAD)}

graft_run() {  # set strategy seed variant [extra train arguments...]
  local set=$1 strategy=$2 seed=$3 variant=$4; shift 4
  local run=$WORK/runs/$set-$strategy-$variant-$seed
  rm -rf "$run"
  local started; started=$(date +%s.%N)
  "$GRAFT" -q --cache-dir "$WORK/cache" train --data "$WORK/sets/$set/train" --strategy "$strategy" --seed "$seed" --out "$run" --json "$@" > "$run.train.json"
  local trained; trained=$(date +%s.%N)
  "$GRAFT" -q --cache-dir "$WORK/cache" eval "$run" --data "$WORK/sets/$set/test" --json > "$run.eval.json"
  python3 - "$run" "$set" "$strategy" "$seed" "$variant" "$started" "$trained" "$commit" "$machine" "$*" >> "$RESULTS" <<'PY'
import json, sys
run, set_, strategy, seed, variant, started, trained, commit, machine, args = sys.argv[1:]
train = json.load(open(run + ".train.json"))
test = json.load(open(run + ".eval.json"))
print(json.dumps({"tool": "graft", "variant": variant, "set": set_, "strategy": train["strategy"], "asked": strategy, "seed": int(seed),
                  "test_accuracy": test["accuracy"], "validation_accuracy": train["validation_accuracy"],
                  "seconds": float(trained) - float(started), "commit": commit, "machine": machine, "args": args}))
PY
}

for set in $SETS; do
  for strategy in $STRATEGIES; do
    for seed in $SEEDS; do
      # shellcheck disable=SC2086
      graft_run "$set" "$strategy" "$seed" "$VARIANT" $ARGS
      # The head as graft trained it before the probe (10 epochs, 20% held out), for the record.
      if [ "$strategy" = deep ] && [ "$BEFORE" = 1 ]; then graft_run "$set" deep "$seed" epochs --head-fit epochs; fi
    done
    if [ "$strategy" != auto ] && [ "$PLAIN" = 1 ]; then
      # shellcheck disable=SC2086
      "$PYTHON" "$ROOT/scripts/quality/plain_recipe.py" --set "$WORK/sets/$set" --strategy "$strategy" --seeds $SEEDS \
        | python3 -c "import json,sys
for line in sys.stdin:
    r = json.loads(line); r.update(commit='$commit', machine='$machine'); print(json.dumps(r))" >> "$RESULTS"
    fi
  done
done
python3 "$ROOT/scripts/quality/report.py" "$RESULTS"
