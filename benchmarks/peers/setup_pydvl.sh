#!/usr/bin/env bash
# Build the isolated pyDVL 0.10 peer environment used by benchmarks/knn_shapley_vs_peers.py,
# benchmarks/tmc_vs_pydvl.py and the pyDVL agreement test (tests/valuation).
#
#   bash benchmarks/peers/setup_pydvl.sh        # creates benchmarks/peers/.venv-pydvl
#   PYDVL_VENV=/some/where bash benchmarks/peers/setup_pydvl.sh
#
# pyDVL 0.10 requires numpy<2; the project runs on numpy 2, so pyDVL lives in its own
# venv (as OpenDataVal does). Idempotent: re-running reuses the venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${PYDVL_VENV:-$here/.venv-pydvl}"
python="${PYTHON:-python3.11}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --no-input \
    "pydvl==0.10.0" "numpy>=1.26,<2" "scikit-learn>=1.3,<1.10" "joblib>=1.3" "threadpoolctl>=3"
"$venv/bin/python" -c "import pydvl, numpy; print('pyDVL', pydvl.__version__, 'numpy', numpy.__version__)"
echo "pyDVL peer environment ready: $venv"
