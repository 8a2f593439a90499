#!/usr/bin/env bash
# Builds, lints and tests the bridge members (bridges/burn, bridges/candle) and
# runs their examples at a small size (each fails unless its loss falls).
#
#   bridges/check.sh           always
#   bridges/check.sh --ci      only when bridges/ differs from bridges/CHECKED
#   bridges/check.sh --stamp   always, then records bridges/ in bridges/CHECKED
#
# burn and candle take minutes to build from clean on 2 cores (README
# "Bridges"), so CI (.ci/run) calls it with --ci: bridges/CHECKED holds the
# hash of the tracked files under bridges/ (itself excluded) that a
# `--stamp` run passed on; commit it with them. A change to bridges/ that
# is not stamped is checked by CI. A change to the library alone is not:
# run this script when changing the public API.
set -euo pipefail
cd "$(dirname "$0")/.."
hash() { git ls-files -z bridges | grep -zv '^bridges/CHECKED$' | xargs -0 sha256sum | sha256sum | cut -d' ' -f1; }
if [ "${1:-}" = --ci ] && [ "$(hash)" = "$(cat bridges/CHECKED 2>/dev/null)" ]; then
  echo "bridges/ unchanged since its last check ($(cut -c1-12 bridges/CHECKED)): skipped"
  exit 0
fi
members=(-p ml-dash-burn -p ml-dash-candle)
cargo clippy "${members[@]}" --all-targets -- -D warnings
cargo test "${members[@]}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
root=$PWD
(cd "$out" && "$root/target/debug/examples/train_mlp" --steps 300 --check)
(cd "$out" && "$root/target/debug/examples/learner" --epochs 3 --check)
test -s "$out/.dash/alice/synthetic/train-mlp/metrics/train/data.jsonl"
test -s "$out/.dash/alice/synthetic/burn-learner/metrics/train/data.jsonl"
if [ "${1:-}" = --stamp ]; then
  hash > bridges/CHECKED
  echo "bridges/CHECKED: $(cat bridges/CHECKED)"
fi
