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
.venv/bin/python -m pytest -p no:cacheprovider "$@"
