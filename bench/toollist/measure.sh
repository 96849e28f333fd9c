#!/usr/bin/env bash
# Measures the tool lists of pgmcp and the peer MCP servers: bytes and o200k_base tokens of the whole `tools/list`
# response and of the part a client hands to a model (names, descriptions, input schemas). See BENCHMARKS.md,
# "The tool list".
#
#   bench/toollist/measure.sh            pgmcp only (`pgmcp demo`, the debug build unless PGMCP_BIN is set)
#   bench/toollist/measure.sh --peers    also install (into bench/, on demand) and measure the peers
#   bench/toollist/measure.sh --dump DIR also write each server's tools/list response into DIR
set -euo pipefail
cd "$(dirname "$0")/../.."

peers=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --peers) peers=1; args+=(--peers) ;;
    --dump) args+=(--dump "$2"); shift ;;
    *) echo "unknown argument: $1 (known: --peers, --dump DIR)" >&2; exit 2 ;;
  esac
  shift
done

. scripts/deps.sh
ensure_build_deps

venv=bench/toollist/.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import tiktoken' 2>/dev/null; then
  echo "installing tiktoken into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r bench/toollist/requirements.txt
fi

if [ "$peers" = 1 ]; then
  if [ ! -d bench/peers/node_modules/@bytebase/dbhub ]; then
    echo "installing the npm peers into bench/peers" >&2
    (cd bench/peers && npm ci --no-audit --no-fund --loglevel=error)
  fi
  bench/postgres-mcp/install.sh || true
fi

if [ -z "${PGMCP_BIN:-}" ]; then
  cargo build --quiet --bin pgmcp
  PGMCP_BIN=target/debug/pgmcp
fi
exec "$venv/bin/python" bench/toollist/measure.py --pgmcp "$PGMCP_BIN" "${args[@]}"
