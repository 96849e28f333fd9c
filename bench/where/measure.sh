#!/usr/bin/env bash
# Where a stdio tool call goes: system calls by kind, PostgreSQL round trips, wake-ups, allocations and CPU per
# call, and a perf profile, for pgmcp and (with --peers) the peer MCP servers, on a throwaway cluster. See
# BENCHMARKS.md, "Where a stdio call goes (issue 17)", and measure.py for the method. Never run by CI.
#
#   bench/where/measure.sh                      pgmcp only (target/release/pgmcp unless PGMCP_BIN is set)
#   bench/where/measure.sh --peers              also MCP Toolbox, DBHub and server-postgres (installed on demand)
#   bench/where/measure.sh --calls 2000 --warmup 300 --output FILE --servers pgmcp,Toolbox --no-perf
#   bench/where/measure.sh --floor              also the stdio floor (floor.c: the least a server can do per call)
#   FLOOR_SYNCS=1|3 bench/where/measure.sh --floor   the floor runs a read as pgmcp does, BEGIN/query/ROLLBACK under
#                                                  one Sync or three (floor.c says why)
#
# Needs strace, perf (linux-perf), a C compiler (and libpq's headers for --floor), PostgreSQL's server binaries with
# pgbench and pg_stat_statements; as root the cluster runs as the `postgres` OS user.
set -euo pipefail
cd "$(dirname "$0")/../.."

peers=0
floor=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --peers) peers=1 ;;
    --floor) floor=1 ;;
    --calls | --warmup | --perf-calls | --output | --servers) args+=("$1" "$2"); shift ;;
    --no-perf) args+=(--no-perf) ;;
    *) echo "unknown argument: $1 (known: --peers, --floor, --calls N, --warmup N, --perf-calls N, --output FILE, --servers a,b, --no-perf)" >&2; exit 2 ;;
  esac
  shift
done

for tool in strace perf cc runuser; do
  command -v "$tool" >/dev/null || { echo "bench/where needs $tool" >&2; exit 1; }
done

if [ "$peers" = 1 ]; then
  if [ ! -d bench/peers/node_modules/@toolbox-sdk/server-linux-x64 ]; then
    echo "installing the npm peers into bench/peers" >&2
    (cd bench/peers && npm ci --no-audit --no-fund --loglevel=error)
  fi
  args+=(--peers bench/peers)
fi

if [ -z "${PGMCP_BIN:-}" ]; then
  cargo build --quiet --release --bin pgmcp
  PGMCP_BIN=target/release/pgmcp
fi

build=bench/where/.build
mkdir -p "$build"
cc -O2 -shared -fPIC -Wall -Wextra -o "$build/alloccount.so" bench/where/alloccount.c
if [ "$floor" = 1 ]; then
  [ -f /usr/include/postgresql/libpq-fe.h ] || { echo "bench/where --floor needs libpq's headers (libpq-dev)" >&2; exit 1; }
  cc -O2 -Wall -Wextra -I/usr/include/postgresql -o "$build/floor" bench/where/floor.c -lpq
  args+=(--floor "$build/floor")
fi

exec python3 bench/where/measure.py --pgmcp "$PGMCP_BIN" --shim "$build/alloccount.so" "${args[@]}"
