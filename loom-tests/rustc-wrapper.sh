#!/bin/sh
# RUSTC_WRAPPER for loom-tests/run.sh: adds `--cfg ml_dash_mutant="$ML_DASH_MUTANT"`
# when compiling the ml_dash crate itself (and nothing else), so switching
# mutants rebuilds only ml-dash, not its dependencies. ml-dash reads
# ML_DASH_MUTANT with `option_env!` under the loom cfg, so cargo notices a change.
rustc="$1"
shift
if [ -n "${ML_DASH_MUTANT:-}" ]; then
  case " $* " in
    *" --crate-name ml_dash "*)
      exec "$rustc" "$@" --cfg "ml_dash_mutant=\"$ML_DASH_MUTANT\""
      ;;
  esac
fi
exec "$rustc" "$@"
