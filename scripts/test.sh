#!/usr/bin/env bash
# Set up a virtual environment with every extra and run the whole test suite.
# Idempotent: re-running reuses .venv and only installs what changed.
# constraints.txt pins a known-good resolution so pip never backtracks.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[all]'
if ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium; browser tests will fail" >&2
fi
# pyDVL 0.10 (numpy<2) lives in its own venv (~30 s to build once); the KNN-Shapley
# agreement test (tests/valuation/test_knn.py) runs it as a subprocess and fails, rather
# than skips, when DATABAZAAR_PYDVL_PYTHON names a missing interpreter
bash benchmarks/peers/setup_pydvl.sh
export DATABAZAAR_PYDVL_PYTHON="${DATABAZAAR_PYDVL_PYTHON:-$PWD/benchmarks/peers/.venv-pydvl/bin/python}"
# the Ray paths run on a local 2-CPU Ray in the suite
export DATABAZAAR_TEST_RAY="${DATABAZAAR_TEST_RAY:-1}"
.venv/bin/python -m pytest "$@"
