#!/usr/bin/env bash
# The run command (`make run`): build, migrate the embedded database, load the
# demo movies, serve on http://127.0.0.1:8000 (override with PORT, HOST, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ffmpeg >/dev/null; then
  echo "[run] installing ffmpeg (generates the demo clips)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
fi
bash scripts/install.sh
.venv/bin/vedina migrate
.venv/bin/vedina demo-data
echo "[run] serving on http://${HOST:-127.0.0.1}:${PORT:-8000}  (try /api/movies, /docs)"
exec .venv/bin/vedina serve
