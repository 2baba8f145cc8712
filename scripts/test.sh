#!/usr/bin/env bash
# The test command (`make test`): services, build, cargo test, the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
bash scripts/install.sh test

echo "[test] ruff (pyflakes + import order)"
.venv/bin/ruff check --no-cache python tests benches

echo "[test] cargo test"
cargo test --manifest-path rust_ext/Cargo.toml --quiet

export VEDINA_TEST_DB_HOST=127.0.0.1
export VEDINA_TEST_DB_PASSWORD=${VEDINA_TEST_DB_PASSWORD:-vedina-test-password}
export VEDINA_TEST_REDIS=redis://127.0.0.1:6379
export VEDINA_TEST_AMQP=amqp://guest:guest@127.0.0.1:5672/
echo "[test] pytest"
# Without arguments: the whole suite but the operations drills marked `ops` (over ~30 s each:
# wheel build in a new virtualenv, SIGHUP reload and rolling restart under load), which
# `make ops-test` runs (scripts/test.sh -m ops tests/ops), and the drills on test hosts in
# network namespaces marked `cluster`, which `make cluster-test` runs.
if (($#)); then
  .venv/bin/python -m pytest -p no:cacheprovider "$@"
else
  .venv/bin/python -m pytest -p no:cacheprovider -m "not ops and not cluster"
fi
