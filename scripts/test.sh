#!/usr/bin/env bash
# Installs advrobust with its test dependencies (CPU torch from the local wheel, the
# extension built against it) and runs the test suite. Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0 ninja setuptools wheel
python -m pip install -q --no-build-isolation -e ".[test]"
python -m pytest -q "$@"
