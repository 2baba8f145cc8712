#!/usr/bin/env bash
# Benchmarks: pytest-benchmark suites (each prints its ratio against the baseline
# measured in the same run), then the load runs against live servers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
bash scripts/install.sh test
.venv/bin/python -m pytest -p no:cacheprovider benches -s -q --benchmark-only --benchmark-columns=min,median,mean,rounds

# Load runs (need the bench extra and wrk): media ranges vs nginx and Starlette, Granian vs Robyn,
# API reads vs a bare Granian app and a FastAPI peer.
.venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"]))' \
  | xargs .venv/bin/pip install --quiet
.venv/bin/python benches/load/bench_media.py
.venv/bin/python benches/load/bench_servers.py
.venv/bin/python benches/load/bench_api.py
