#!/usr/bin/env bash
# Benchmarks: pytest-benchmark suites (each prints its ratio against the baseline
# measured in the same run), then the load runs against live servers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
bash scripts/install.sh test
.venv/bin/python -m pytest -p no:cacheprovider benches -s -q --benchmark-only --benchmark-columns=min,median,mean,rounds
