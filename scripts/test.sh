#!/usr/bin/env bash
# Set up a virtual environment with every extra and run the whole test suite.
# Idempotent: re-running reuses .venv and only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[all]'
.venv/bin/python -m pytest "$@"
