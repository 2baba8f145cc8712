#!/usr/bin/env bash
# Create .venv and build + install Vedina into it (the Rust extension too).
# `install.sh test` adds what the tests and benchmarks need.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[ "${1:-}" = "test" ] && extra="[test]"
command -v cargo >/dev/null || { echo "cargo (Rust) is needed to build the extension" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip >/dev/null 2>&1 || true
echo "[install] building vedina$extra (Rust extension in release mode)"
.venv/bin/pip install --quiet -e ".$extra"
