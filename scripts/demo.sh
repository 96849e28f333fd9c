#!/usr/bin/env bash
# Runs pgmcp on its built-in demo database (a throwaway PostgreSQL with a restaurants sample), installing what is
# missing first. Extra arguments go to `pgmcp demo` (e.g. --print-config).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
ensure_build_deps
exec cargo run --release --quiet -- demo "$@"
