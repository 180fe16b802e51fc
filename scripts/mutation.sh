#!/usr/bin/env bash
# Mutation testing by hand (not CI): puts small bugs into audiocnn/explain.py, features.py, inference.py and
# training/augment.py one at a time and checks that a fast test fails for each ([tool.mutmut] in pyproject.toml).
# mutmut is not a project dependency: it goes into its own folder (MUTMUT_LIB) beside the test venv.
# Usage: bash scripts/mutation.sh [mutmut run options]; then `mutmut results` / `mutmut show NAME` with the
# same PYTHONPATH. Interrupted runs continue where they stopped; about 20-25 CPU minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${AUDIOCNN_VENV:-.venv}"
MUTMUT_LIB="${MUTMUT_LIB:-${TMPDIR:-/tmp}/audiocnn-mutmut}"
if [ ! -d "$MUTMUT_LIB/mutmut" ]; then
    "$VENV/bin/python" -m pip install --quiet --target "$MUTMUT_LIB" mutmut==3.8.1
fi
PYTHONPATH="$MUTMUT_LIB" nice -n 10 "$VENV/bin/python" -m mutmut run "$@"
PYTHONPATH="$MUTMUT_LIB" "$VENV/bin/python" -m mutmut results
