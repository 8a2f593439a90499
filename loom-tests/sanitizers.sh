#!/usr/bin/env bash
# Miri and ThreadSanitizer for ml-dash, when the nightly toolchain has them.
#
#   loom-tests/sanitizers.sh            both
#   loom-tests/sanitizers.sh miri       Miri only
#   loom-tests/sanitizers.sh tsan       ThreadSanitizer only
#
# Miri runs the ring, registry and epoch unit tests (`ring::tests`,
# `collector::tests`: the collector against the in-memory sink on std
# threads). ThreadSanitizer runs the unit tests and every integration test in
# tests/. Nothing is downloaded: a missing toolchain or component prints a
# "skipped: ..." line and does not count as a failure. Exits non-zero if a run
# that did start failed.
set -uo pipefail
cd "$(dirname "$0")/.."

NIGHTLY=${NIGHTLY:-nightly}
HOST=$(rustc -vV | sed -n 's/^host: //p')
TARGET_DIR="$PWD/loom-tests/target"
what=${1:-all}
failed=0
results=()

has_nightly() { rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; }
has_component() { rustup +"$NIGHTLY" component list --installed 2>/dev/null | grep -q "^$1"; }

run_miri() {
  if ! has_nightly; then
    results+=("skipped: no nightly toolchain ($NIGHTLY), so no miri")
    return
  fi
  if ! has_component miri; then
    results+=("skipped: no nightly miri (rustup +$NIGHTLY component add miri would install it; this script does not download)")
    return
  fi
  echo "=== miri: ring, registry and epoch unit tests"
  # Isolation stays on (no real clock, no file system); the in-memory sink
  # needs neither. Leaks are checked.
  if CARGO_TARGET_DIR="$TARGET_DIR/miri" cargo +"$NIGHTLY" miri test --lib -- ring:: collector::tests; then
    results+=("ok: miri (ring::tests, collector::tests)")
  else
    results+=("FAILED: miri")
    failed=1
  fi
}

run_tsan() {
  if ! has_nightly; then
    results+=("skipped: no nightly toolchain ($NIGHTLY), so no ThreadSanitizer")
    return
  fi
  local sysroot rt
  sysroot=$(rustc +"$NIGHTLY" --print sysroot)
  rt=$(ls "$sysroot/lib/rustlib/$HOST/lib/"*rt.tsan* 2>/dev/null | head -n 1)
  if [ -z "$rt" ]; then
    results+=("skipped: the nightly toolchain has no ThreadSanitizer runtime for $HOST")
    return
  fi
  local flags="-Zsanitizer=thread" extra=() mode
  if has_component rust-src; then
    # The sound setup: std itself is compiled with TSan, no suppressions.
    extra=(-Zbuild-std)
    mode="std instrumented (-Zbuild-std)"
    export TSAN_OPTIONS="halt_on_error=0"
  else
    # No rust-src: std stays uninstrumented, so its own synchronisation
    # (Arc's acquire fence, Once, libtest's channel) shows as races; those
    # std-internal reports are suppressed by tsan.supp, nothing of ml-dash.
    flags="$flags -Cunsafe-allow-abi-mismatch=sanitizer"
    mode="std NOT instrumented (no rust-src): std-internal reports suppressed by loom-tests/tsan.supp"
    export TSAN_OPTIONS="halt_on_error=0 suppressions=$PWD/loom-tests/tsan.supp"
  fi
  local tests=(--lib)
  for t in tests/*.rs; do tests+=(--test "$(basename "$t" .rs)"); done
  echo "=== tsan: ${tests[*]} [$mode]"
  # --target keeps the sanitizer off build scripts and proc macros. The one
  # timing assertion (`_ts` within 1 ms of the call) is skipped: TSan slows
  # every thread several times, the clock thread included; it checks no
  # synchronisation.
  local log="$TARGET_DIR/tsan.log" rc
  mkdir -p "$TARGET_DIR"
  RUSTFLAGS="$flags" CARGO_TARGET_DIR="$TARGET_DIR/tsan" \
    cargo +"$NIGHTLY" test --no-fail-fast "${extra[@]}" --target "$HOST" "${tests[@]}" \
    -- --skip ts_is_within_a_millisecond 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  local races failing
  races=$(grep -c "WARNING: ThreadSanitizer" "$log")
  # The names listed under libtest's final "failures:" headings.
  failing=$(grep -E "^    [A-Za-z0-9_:]+$" "$log" | sort -u | tr -d ' ' | tr '\n' ' ')
  if [ "$rc" -eq 0 ]; then
    results+=("ok: tsan, ${#tests[@]} test targets, no report [$mode]")
  elif [ "$races" -gt 0 ]; then
    results+=("FAILED: tsan found $races race report(s) [$mode]; see $log")
    failed=1
  else
    results+=("FAILED: tsan: no race report, but tests failed: $failing[$mode]")
    failed=1
  fi
}

case "$what" in
  miri) run_miri ;;
  tsan) run_tsan ;;
  all) run_miri; run_tsan ;;
  *) echo "usage: $0 [miri|tsan]"; exit 2 ;;
esac

echo
echo "=== sanitizers"
printf '%s\n' "${results[@]}"
exit "$failed"
