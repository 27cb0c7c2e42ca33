#!/usr/bin/env bash
# Build the isolated OpenDataVal 1.3 peer environment used by
# benchmarks/knn_shapley_vs_peers.py (see README.md in this folder for the why).
#
#   bash benchmarks/peers/setup_opendataval.sh            # creates benchmarks/peers/.venv-odv
#   ODV_VENV=/some/where bash benchmarks/peers/setup_opendataval.sh
#
# OpenDataVal 1.3.0 pins torch~=2.1, numpy<1.26, pandas<2, torchvision~=0.16,
# transformers~=4.35, pykeops, pandera, ... None of that can live in the main venv
# (numpy 1.26, pandas 3, torch 2.13).  Here we install opendataval itself with
# --no-deps and then only what `opendataval.dataval.knnshap` needs at import time,
# keeping OpenDataVal's own pins where a wheel exists for this machine:
#   * numpy<1.26, pandas<2, scikit-learn~=1.3, scipy~=1.11, matplotlib~=3.8,
#     requests, tqdm, transformers~=4.35 (imported by opendataval.model.bert),
#     geomloss~=0.2.6 (imported by the LAVA evaluator);
#   * torch==2.13.0 instead of torch~=2.1: 2.13.0 is the CPU wheel on this machine's
#     disk, every other torch version downloads gigabytes of CUDA libraries;
#   * no torchvision: the only torchvision wheels reachable for torch 2.13 are CUDA
#     builds that cannot load next to the CPU torch.  torchvision is only imported by
#     opendataval.dataloader.datasets.imagesets (image data-set registrations), which
#     odv_knn_shapley.py replaces by an empty module before importing OpenDataVal.
#     The KNN-Shapley code that runs is OpenDataVal's, unmodified.
#   * no pykeops, pandera, typer, torcheval: not imported on the KNN-Shapley path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${ODV_VENV:-$here/.venv-odv}"
python="${PYTHON:-python3.11}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --no-input)

"${pip[@]}" "torch==2.13.0"
"${pip[@]}" \
    "numpy>=1.22.4,<1.26" \
    "pandas>=1.5.3,<2" \
    "scikit-learn~=1.3.0" \
    "scipy~=1.11.0" \
    "matplotlib~=3.8.0" \
    "requests~=2.31" \
    "tqdm>=4.64" \
    "transformers~=4.35.0" \
    "geomloss~=0.2.6"
"${pip[@]}" --no-deps "opendataval==1.3.*"

# Smoke test: import the evaluator exactly as odv_knn_shapley.py does and value 3 points.
"$venv/bin/python" "$here/odv_knn_shapley.py" --self-test
echo "OpenDataVal peer environment ready: $venv"
