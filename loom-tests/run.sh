#!/usr/bin/env bash
# Runs the loom models of ml-dash's lock-free protocols.
#
#   loom-tests/run.sh              every model at its bounds; exits non-zero on any failure
#   loom-tests/run.sh --mutants    every deliberate mutation; exits 0 only if loom catches each
#   loom-tests/run.sh ring flush   only these models (either mode)
#
# ml-dash is built with `--cfg ml_dash_loom` in this crate's own target dir
# (the main crate's build never sees the cfg). A mutant adds
# `--cfg ml_dash_mutant="<name>"` to the ml_dash crate only, through
# rustc-wrapper.sh, so switching mutants rebuilds ml-dash, not its dependencies.
set -uo pipefail
cd "$(dirname "$0")"

export RUSTFLAGS="--cfg ml_dash_loom"
export RUSTC_WRAPPER="$PWD/rustc-wrapper.sh"
export CARGO_TARGET_DIR="$PWD/target"
export CARGO_TERM_COLOR=never
unset ML_DASH_MUTANT
# The models use the main crate's dependency versions.
cp ../Cargo.lock Cargo.lock

# Preemption bound per model (LOOM_MAX_PREEMPTIONS): 3 where it fits the time
# budget, else 2. See README.md for what each model proves and its run time.
declare -A BOUND=([ring]=3 [registry]=2 [wake]=3 [flush]=2 [growth]=3 [shutdown]=2)
MODELS=(ring registry wake flush growth shutdown)

# model:test-name-filter:mutant -- each mutant must make that model fail.
MUTANTS=(
  "ring:variable_records:ring_publish_relaxed"
  "registry:rings_register:retire_frees_undrained"
  "wake:crossing:wake_no_fence"
  "wake:crossing:register_no_wake"
  "flush:flush_covers:flush_request_relaxed"
  "flush:flush_covers:flush_late_no_unpark"
  "flush:flush_racing:close_no_final_poll"
  "growth:full_ring_grows:grow_skips_old_ring"
  "shutdown:close_with:close_no_barrier"
  "shutdown:close_while_a_retired:close_single_pass"
)

mode=models
if [ "${1:-}" = "--mutants" ]; then
  mode=mutants
  shift
fi
only=("$@")
selected() {
  [ ${#only[@]} -eq 0 ] && return 0
  local m
  for m in "${only[@]}"; do [ "$m" = "$1" ] && return 0; done
  return 1
}

build() {
  mkdir -p "$CARGO_TARGET_DIR"
  if ! cargo test --release --no-run -q 2>"$CARGO_TARGET_DIR/build.log"; then
    cat "$CARGO_TARGET_DIR/build.log"
    echo "FAILED: build (${ML_DASH_MUTANT:-no mutant})"
    exit 2
  fi
}

# Seconds since a `date +%s%N` stamp, one decimal.
elapsed() {
  local ds=$((($(date +%s%N) - $1) / 100000000))
  echo "$((ds / 10)).$((ds % 10))"
}

summary=()
failures=0

if [ "$mode" = models ]; then
  build
  for m in "${MODELS[@]}"; do
    selected "$m" || continue
    p=${BOUND[$m]}
    echo "=== model $m (LOOM_MAX_PREEMPTIONS=$p)"
    start=$(date +%s%N)
    LOOM_MAX_PREEMPTIONS=$p cargo test --release -q --test "$m" 2>&1 | tail -n 40
    rc=${PIPESTATUS[0]}
    secs=$(elapsed "$start")
    if [ "$rc" -eq 0 ]; then
      summary+=("ok      $m  preemptions=$p  ${secs}s")
    else
      summary+=("FAILED  $m  preemptions=$p  ${secs}s")
      failures=$((failures + 1))
    fi
  done
else
  for entry in "${MUTANTS[@]}"; do
    IFS=: read -r m filter mutant <<<"$entry"
    selected "$m" || continue
    if ! grep -rq "ml_dash_mutant = \"$mutant\"" ../src; then
      summary+=("UNKNOWN $mutant: no such mutation in src/")
      failures=$((failures + 1))
      continue
    fi
    p=${BOUND[$m]}
    echo "=== mutant $mutant -> model $m ($filter, LOOM_MAX_PREEMPTIONS=$p)"
    export ML_DASH_MUTANT=$mutant
    build
    start=$(date +%s%N)
    out=$(LOOM_MAX_PREEMPTIONS=$p timeout 600 cargo test --release -q --test "$m" "$filter" 2>&1)
    rc=$?
    secs=$(elapsed "$start")
    unset ML_DASH_MUTANT
    # The first panic's message (the line after "panicked at").
    why=$(grep -m1 -A1 "panicked at" <<<"$out" | tail -n 1 | cut -c1-120)
    if [ "$rc" -eq 124 ]; then
      summary+=("MISSED  $mutant ($m): timed out after ${secs}s")
      failures=$((failures + 1))
    elif [ "$rc" -ne 0 ] && grep -qE "panicked|deadlock|Causality" <<<"$out"; then
      summary+=("caught  $mutant ($m) in ${secs}s: $why")
    else
      summary+=("MISSED  $mutant ($m): the model passed (rc=$rc) in ${secs}s")
      failures=$((failures + 1))
    fi
  done
  # Leave the target dir built without a mutant.
  build
fi

echo
echo "=== summary ($mode)"
printf '%s\n' "${summary[@]}"
if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "all passed"
