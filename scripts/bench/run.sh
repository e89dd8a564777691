#!/usr/bin/env bash
# graft against the PyTorch reference on this machine, one after the other, in one invocation.
# Writes the raw results to $OUT/results.jsonl and the tables with ratios to docs/BENCHMARKS.md.
#
# Needs: apt-get install dataset-fashion-mnist time; a virtualenv with torch + torchvision
# (TORCH_PYTHON, default /tmp/torchenv/bin/python); for the libtorch column, a graft built with
# `--features tch` against torch==2.9.0 (GRAFT_TCH=path/to/that/graft), which adds `full` end to
# end and the kernels on libtorch; GRAFT_TCH_PYTHON is that virtualenv's python (its torch/lib
# holds the shared libraries the build loads). SKIP_60K=1 leaves out the 60,000-image memory run
# (scripts/bench/memory_60k.sh, ~15 minutes). PARTS picks what runs (default
# "e2e e2e224 decode libtorch kernels 60k"), RESULTS where the raw results go (default $OUT/results.jsonl);
# docs/BENCHMARKS.md is rewritten only when e2e and kernels both ran; it ends with
# docs/bench-notes.md (hand-written notes on the recorded run: update them with the run) and
# includes the GPU kernel table from docs/bench-gpu.jsonl when that exists (scripts/bench/gpu.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${TORCH_PYTHON:-/tmp/torchenv/bin/python}
out=${OUT:-/tmp/graft-bench}
graft=./target/release/graft
cargo build --release -q -p graft-cli
mkdir -p "$out"
results=${RESULTS:-$out/results.jsonl}
: > "$results"
# Which code ran, and when: report.py reads this line, not the checkout it runs in.
# (The commit as the build left it: editing crates/ while this runs does not change the binary.)
commit=$(scripts/bench/graft_commit.sh)
printf '{"run": {"graft_commit": "%s", "date": "%s"}}\n' "$commit" "$(date -u +%F)" >> "$results"
parts=" ${PARTS:-e2e e2e224 decode libtorch kernels 60k} "
[ -n "${SKIP_60K:-}" ] && parts=${parts/ 60k / }
part() { [[ "$parts" == *" $1 "* ]]; }
data=$out/data
[ -d "$data/train" ] || python3 scripts/make_demo_data.py --out "$data" --train 160 --val 40 --test 200 >&2

# Peak resident memory of a command, in MiB, from GNU time.
peak() { grep "Maximum resident set size" "$1" | awk '{printf "%.1f", $NF / 1024}'; }

# graft end to end with a cold feature cache: `train` then `eval` on the test set; appends one
# JSON line to $results. Usage: graft_e2e IMPLEMENTATION BINARY TAG STRATEGY EPOCHS [OPTION...]
# (TAG prefixes the run's files; OPTIONs go to both commands). $size is the image size, $data the
# data set.
size=112
graft_e2e() {
    local implementation=$1 binary=$2 tag=$3 strategy=$4 epochs=$5 start end
    shift 5
    export GRAFT_CACHE_DIR=$out/cache-$tag$strategy
    rm -rf "$GRAFT_CACHE_DIR" "$out/run-$tag$strategy"
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$out/time-${tag}train-$strategy" "$binary" train --quiet "$@" --data "$data" --strategy "$strategy" \
        --epochs "$epochs" --image-size "$size" --out "$out/run-$tag$strategy" --json > "$out/graft-${tag}train-$strategy.json"
    /usr/bin/time -v -o "$out/time-${tag}eval-$strategy" "$binary" eval --quiet "$@" "$out/run-$tag$strategy" --data "$data/test" \
        --json > "$out/graft-${tag}eval-$strategy.json"
    end=$(date +%s.%N)
    python3 - "$implementation" "$tag" "$strategy" "$epochs" "$out" "$start" "$end" \
        "$(peak "$out/time-${tag}train-$strategy")" "$(peak "$out/time-${tag}eval-$strategy")" "$size" >> "$results" <<'PY'
import json, sys
implementation, tag, strategy, epochs, out, start, end, peak_train, peak_eval, size = sys.argv[1:]
train = json.load(open(f"{out}/graft-{tag}train-{strategy}.json"))
evaluation = json.load(open(f"{out}/graft-{tag}eval-{strategy}.json"))
metrics = [json.loads(line) for line in open(f"{out}/run-{tag}{strategy}/metrics.jsonl")]
print(json.dumps({
    "implementation": implementation, "strategy": strategy, "epochs": int(epochs),
    "validation_accuracy": train["validation_accuracy"], "test_accuracy": evaluation["accuracy"],
    "seconds": float(end) - float(start),
    "train_images_per_second": sum(m["images_per_second"] * m["seconds"] for m in metrics) / sum(m["seconds"] for m in metrics),
    "peak_rss_mib": max(float(peak_train), float(peak_eval)),
    "image_size": int(size),
}))
PY
}

# The PyTorch reference on the same data, size and epochs; appends one JSON line to $results.
reference_e2e() {
    local strategy=$1 epochs=$2 tag=${3:-}
    /usr/bin/time -v -o "$out/time-${tag}ref-$strategy" "$python" scripts/bench/pytorch_reference.py train --data "$data" \
        --strategy "$strategy" --epochs "$epochs" --image-size "$size" > "$out/${tag}ref-$strategy.json"
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r['peak_rss_mib']=float(sys.argv[2]); r['image_size']=int(sys.argv[3]); print(json.dumps(r))" \
        "$out/${tag}ref-$strategy.json" "$(peak "$out/time-${tag}ref-$strategy")" "$size" >> "$results"
}

part e2e && for spec in deep:10 mid:10 full:3; do
    strategy=${spec%%:*}; epochs=${spec##*:}
    echo "== $strategy ($epochs epochs)" >&2
    graft_e2e graft "$graft" "" "$strategy" "$epochs"
    reference_e2e "$strategy" "$epochs"
done

# `full` and `mid` at the teacher's own size (224 px), on fewer images: 30 + 10 of each class to
# train, 50 of each to test.
if part e2e224; then
    data=$out/data224
    [ -d "$data/train" ] || python3 scripts/make_demo_data.py --out "$data" --train 30 --val 10 --test 50 >&2
    size=224
    for spec in full:3 mid:10; do
        strategy=${spec%%:*}; epochs=${spec##*:}
        echo "== $strategy ($epochs epochs) at 224 px" >&2
        graft_e2e graft "$graft" 224- "$strategy" "$epochs"
        reference_e2e "$strategy" "$epochs" 224-
    done
    data=$out/data size=112
fi

# Decoding phone-size photos (40 JPEGs of 4000 x 3000): `graft predict` against Pillow decoding and
# resizing the same files whole, and with its JPEG draft mode. GRAFT_BEFORE: another graft binary
# to time on the same files (the code before a change).
if part decode; then
    photos=$out/phone-jpegs
    [ -f "$photos/photo39.jpg" ] || "$python" scripts/bench/phone_jpegs.py --out "$photos" >&2
    echo "== decode: 40 phone-size JPEGs" >&2
    "$python" scripts/bench/decode.py "$photos" >> "$results"
    # The same photos as a two-class data set, for the feature cache's fill (`train --strategy deep`).
    mkdir -p "$out/phone-classes/a" "$out/phone-classes/b"
    for i in $(seq 0 39); do
        ln -sf "$photos/photo$(printf %02d "$i").jpg" "$out/phone-classes/$([ $((i % 2)) = 0 ] && echo a || echo b)/"
    done
    # One JSON line: implementation, mode, commit, then the command.
    decode_run() {
        local label=$1 mode=$2 commit=$3 start end
        shift 3
        start=$(date +%s.%N)
        /usr/bin/time -v -o "$out/time-decode-$label-$mode" "$@" > /dev/null
        end=$(date +%s.%N)
        python3 -c "import json,sys; print(json.dumps({'implementation': sys.argv[1], 'mode': sys.argv[2], 'images': 40, 'seconds': float(sys.argv[4]) - float(sys.argv[3]), 'peak_rss_mib': float(sys.argv[5]), 'graft_commit': sys.argv[6]}))" \
            "$label" "$mode" "$start" "$end" "$(peak "$out/time-decode-$label-$mode")" "$commit" >> "$results"
    }
    for binary in "$graft" ${GRAFT_BEFORE:-}; do
        if [ "$binary" = "$graft" ]; then label=graft; else label=graft-before; fi
        binary_commit=$([ "$label" = graft ] && echo "$commit" || echo "${GRAFT_BEFORE_COMMIT:-?}")
        "$binary" predict --quiet --offline --json "$photos" > /dev/null  # warms the page cache
        decode_run "$label" predict "$binary_commit" "$binary" predict --quiet --offline --json "$photos"
        rm -rf "$out/cache-phone" "$out/run-phone"
        decode_run "$label" cache_fill "$binary_commit" env GRAFT_CACHE_DIR="$out/cache-phone" "$binary" train --quiet --offline \
            --data "$out/phone-classes" --strategy deep --epochs 1 --out "$out/run-phone"
        # Fine-tuning on the photos themselves: every epoch decodes and augments each one again
        # (the next batch's while this one trains; batches of 8, so an epoch has four).
        # Augmentation on, no refit: decoding, not the augmentation choice's probe passes, is
        # what this times.
        rm -rf "$out/run-phone-full"
        decode_run "$label" full_train "$binary_commit" env GRAFT_CACHE_DIR="$out/cache-phone" "$binary" train --quiet --offline \
            --data "$out/phone-classes" --strategy full --epochs 2 --batch-size 8 --augment on --refit off --out "$out/run-phone-full"
    done
fi

if [ -n "${GRAFT_TCH:-}" ]; then
    # The libtorch build loads torch's shared libraries from the torch==2.9.0 virtualenv.
    tch_python=${GRAFT_TCH_PYTHON:?set GRAFT_TCH_PYTHON to the python of the torch==2.9.0 virtualenv}
    torch_lib=$("$tch_python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    if part libtorch; then
        # `full` again with graft's libtorch backend (the other strategies train on cached features).
        echo "== full (3 epochs), libtorch backend" >&2
        graft_e2e graft-libtorch "$GRAFT_TCH" tch- full 3 --device libtorch
    fi
fi

if part kernels; then
    echo "== kernels" >&2
    "$graft" bench --quiet | sed 's/^{/{"implementation":"graft",/' >> "$results"
    if [ -n "${GRAFT_TCH:-}" ]; then
        "$GRAFT_TCH" bench --quiet --device libtorch | sed 's/^{/{"implementation":"graft",/' >> "$results"
    fi
    "$python" scripts/bench/pytorch_reference.py kernels >> "$results"
fi
if part 60k; then
    OUT=$out RESULTS=$results GRAFT=$graft scripts/bench/memory_60k.sh
fi
if part e2e && part kernels; then
    python3 scripts/bench/report.py "$results" > docs/BENCHMARKS.md
    echo "wrote docs/BENCHMARKS.md" >&2
else
    echo "some parts only ($parts): raw results in $results; docs/BENCHMARKS.md left as it is" >&2
fi
