#!/usr/bin/env bash
# Transfer vs from scratch on Fashion-MNIST: 100 training images per class (80 train + 20
# validation, stratified, seed 42), scored on all 10,000 test images, EfficientNet-Lite0 teacher,
# the same budget for every strategy. Writes docs/FASHION_MNIST.md.
#
# Needs: apt-get install dataset-fashion-mnist; a release build (cargo build --release -p graft-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
out=${OUT:-/tmp/graft-fashion-mnist}
epochs=${EPOCHS:-8}
# A cold feature cache, so the wall times include filling it.
export GRAFT_CACHE_DIR=$out/cache
rm -rf "$out/runs" "$GRAFT_CACHE_DIR"
mkdir -p "$out"
args=(compare --data "$data" --per-class 100 --image-size 112 --epochs "$epochs" --out "$out/runs" --strategies deep,mid,full,scratch)
echo "graft ${args[*]}" >&2
start=$(date +%s)
./target/release/graft "${args[@]}"
end=$(date +%s)
{
  echo "# Fashion-MNIST: transfer strategies against training from scratch"
  echo
  echo "EfficientNet-Lite0 (ImageNet weights, bundled) as the teacher; 100 training images per class drawn"
  echo "(seed 42) from the 60,000 of Fashion-MNIST's training set, 20% of them held out for validation"
  echo "(so 800 train / 200 validation); every student scored on all 10,000 test images. Images are"
  echo "28x28 greyscale, upscaled to 112x112 (\`--image-size 112\`). The same budget for every strategy:"
  echo "$epochs epochs, AdamW, peak learning rate 1e-3 for the head and 1e-4 for unfrozen teacher blocks,"
  echo "cosine schedule with one warm-up epoch, label smoothing 0.1, batch 32; augmentation (random"
  echo "resized crop, flip, colour jitter) for mid, full and scratch, for mid two cached versions per image (the plain view and an augmented one)."
  echo "\`scratch\` is the same architecture from random initialisation, every layer trained."
  echo "Wall time is the training command's: filling the (cold) feature cache for deep and mid, the epochs,"
  echo "and the validation report; scoring the 10,000 test images comes after it and is not included."
  echo
  echo "Command (release build, after \`apt-get install dataset-fashion-mnist\`):"
  echo
  echo "    scripts/fashion_mnist_strategies.sh"
  echo
  echo "which runs"
  echo
  echo "    graft ${args[*]}"
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d); total $((end - start)) s."
  echo
  # compare.md: a header line, then the table.
  sed -n '/^| strategy/,$p' "$out/runs/compare.md"
} > docs/FASHION_MNIST.md
echo "wrote docs/FASHION_MNIST.md" >&2
