#!/usr/bin/env bash
# Builds Vienna (release) and runs `vienna serve` with embedded defaults: every built role on loopback,
# SQLite store and a generated certificate in ./vienna-data. Extra arguments go to `vienna serve`,
# e.g. `bash tools/run.sh --set admin.listen=127.0.0.1:0`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
exec cargo run --release --locked --bin vienna -- serve "$@"
