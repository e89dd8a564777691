#!/usr/bin/env bash
# Serving figures for docs/SERVING.md: `graft serve` on loopback under a bounded load
# (crates/graft-serve/examples/load.rs), against the same student's in-process batch throughput
# (`Student::predict_encoded` in batches of 32) and `graft predict` on the same images.
#
#   scripts/serve/bench.sh            # OUT=/tmp/graft-serve-bench by default
#
# The student: EfficientNet-Lite0 (its bundled ImageNet weights), `deep`, trained on the bundled
# Fashion-MNIST sample's training images at the teacher's 224 px. The load: the sample's 500 test
# PNGs, one per request, cycled. Raw results: one JSON object per line in $OUT/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/graft-serve-bench}
PORT=${PORT:-18181}
REQUESTS_32=${REQUESTS_32:-10000}
rm -rf "$OUT" && mkdir -p "$OUT"
export GRAFT_OFFLINE=1 GRAFT_CACHE_DIR="$OUT/cache"

cargo build --release --locked -p graft-cli
cargo build --release --locked -p graft-serve --example load
graft=target/release/graft
load=target/release/examples/load
data=crates/graft-assets/data/fashion-mnist-sample
images=$data/test
count=$(find "$images" -name '*.png' | wc -l)

$graft train --data "$data/train" --out "$OUT/run" --strategy deep --quiet
record() { echo "$1" | tee -a "$OUT/results.jsonl"; }
record "{\"machine\": \"$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\", \"commit\": \"$(git rev-parse --short HEAD)\", \"images\": $count}"

# The in-process batch throughput: best of 3 passes over every image, after a warm-up pass; once
# before the server runs and once after, so that a drift of the machine shows.
baseline() {
    record "{\"kind\": \"student_predict_encoded\", \"when\": \"$1\", \"result\": $($load --local "$OUT/run" --files "$images" --batch 32 --rounds 3)}"
}
baseline before
# `graft predict` on the same folder: one process, the student loaded once, batches of 32.
start=$(date +%s.%N)
$graft predict --student "$OUT/run" "$images"/* --batch-size 32 --quiet --json > /dev/null
end=$(date +%s.%N)
record "{\"kind\": \"graft_predict\", \"images\": $count, \"seconds\": $(echo "$end - $start" | bc), \"images_per_second\": $(echo "$count / ($end - $start)" | bc -l)}"

# The server, its memory sampled every half second.
$graft serve "$OUT/run" --port "$PORT" --quiet > "$OUT/serve.out" 2> "$OUT/serve.err" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
wait_listening() {
    until grep -q "listening on" "$OUT/serve.out" 2>/dev/null; do
        kill -0 $server 2>/dev/null || { cat "$OUT/serve.err" >&2; exit 1; }
        sleep 0.2
    done
}
wait_listening
( while kill -0 $server 2>/dev/null; do
    echo "$(date +%s.%N) $(grep VmRSS /proc/$server/status | awk '{print $2}')" >> "$OUT/rss.txt"
    sleep 0.5
  done ) &
sampler=$!

rss() { grep "$1" /proc/$server/status | awk '{print $2}'; }
for clients in 1 8 32; do
    case $clients in 1) requests=500 ;; 8) requests=2000 ;; *) requests=$REQUESTS_32 ;; esac
    before=$(rss VmRSS)
    result=$($load --address "127.0.0.1:$PORT" --files "$images" --clients $clients --requests $requests --max-seconds 600)
    passes=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^graft_batch_size_count/ {print $2}')
    inputs=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^graft_inputs_total/ {print $2}')
    record "{\"kind\": \"serve\", \"clients\": $clients, \"rss_kb_before\": $before, \"rss_kb_after\": $(rss VmRSS), \"peak_rss_kb\": $(rss VmHWM), \"forward_passes_so_far\": $passes, \"inputs_so_far\": $inputs, \"result\": $result}"
done
kill -TERM $server; wait $server || true
baseline after

# Overload: 64 clients against a server whose queue holds 4 requests.
$graft serve "$OUT/run" --port "$PORT" --queue 4 --quiet > "$OUT/serve.out" 2> "$OUT/serve.err" &
server=$!
wait_listening
record "{\"kind\": \"overload\", \"queue\": 4, \"result\": $($load --address "127.0.0.1:$PORT" --files "$images" --clients 64 --requests 2000 --max-seconds 300)}"
one=$(find "$images" -name '*.png' | sort | head -1)
head -c 2000 /dev/urandom > "$OUT/junk.jpg"
answer() { echo "{\"kind\": \"answer\", \"what\": \"$1\", \"status\": $2, \"body\": $3}"; }
for what in junk truncated; do
    if [ $what = junk ]; then file="$OUT/junk.jpg"; else head -c 300 "$one" > "$OUT/cut.png"; file="$OUT/cut.png"; fi
    status=$(curl -s -o "$OUT/body.json" -w '%{http_code}' -F "file=@$file" "http://127.0.0.1:$PORT/v1/predict")
    record "$(answer "$what upload" "$status" "$(cat "$OUT/body.json")")"
done
status=$(curl -s -o "$OUT/body.json" -w '%{http_code}' -H 'content-type: application/json' -d '{"texts": ["a bag"]}' "http://127.0.0.1:$PORT/v1/predict")
record "$(answer "JSON to an image student" "$status" "$(cat "$OUT/body.json")")"
status=$(curl -s -o "$OUT/body.json" -w '%{http_code}' -H 'content-type: image/png' -H 'content-length: 10737418240' --data-binary @"$one" "http://127.0.0.1:$PORT/v1/predict" || true)
record "$(answer "10 GB declared length" "$status" "$(cat "$OUT/body.json")")"
kill -TERM $server; wait $server; echo "server exited with $?"
kill $sampler 2>/dev/null || true
echo "memory samples: $OUT/rss.txt"
