#!/usr/bin/env bash
# The paced hot-path bench at 1, 2, 4, 8 and 16 producer threads (one run,
# one collector). Prints a table; runs with more threads than cores are
# labelled oversubscribed. Usage: perf/scaling.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
[ "${1:-}" = "--quick" ] && quick=(--quick)
cores=$(nproc)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo "machine: $cpu, $cores cores, $(uname -sr), $(rustc --version)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "command: perf/scaling.sh ${quick[*]:-}"
echo
echo "| threads | p50 ns | p99 ns | p99.9 ns | max ns | per-thread p99 | dropped | note |"
echo "|---|---|---|---|---|---|---|---|"
cargo bench -q --bench hot_path --no-run 2>/dev/null
for t in 1 2 4 8 16; do
  line=$(cargo bench -q --bench hot_path -- "${quick[@]}" --threads "$t" 2>/dev/null | grep '^threads=')
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $line"; }
  note=""
  [ "$t" -ge "$cores" ] && note="oversubscribed ($t producers + collector on $cores cores)"
  p99s=$(sed -n 's/.*per_thread_p99=\(\[[^]]*\]\).*/\1/p' <<<"$line")
  echo "| $t | $(get p50) | $(get p99) | $(get p99.9) | $(get max) | $p99s | $(get dropped) | $note |"
done
