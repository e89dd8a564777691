#!/usr/bin/env bash
# Prints the commit graft's benchmark results are recorded against: the short hash of HEAD,
# with "+changes" when crates/ differs from it. Used by run.sh and seeds.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo +changes)"
