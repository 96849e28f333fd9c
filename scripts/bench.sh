#!/usr/bin/env bash
# pgmcp's benchmark: builds the release binary, starts a throwaway PostgreSQL, loads the dataset (pgbench scale 10,
# a mixed-type table, 1,000 catalog tables), runs every scenario against pgmcp and the raw tokio-postgres floor,
# prints the tables and writes them into BENCHMARKS.md.
#
#   ./scripts/bench.sh            full run, results into BENCHMARKS.md
#   ./scripts/bench.sh --peers    also install (into bench/, on demand) and measure the peer MCP servers
#   ./scripts/bench.sh --only 2,6 only these scenarios (for profiling; never writes BENCHMARKS.md, only a file
#                                 named with --output FILE)
#   ./scripts/bench.sh --smoke    short run (about 15 s plus a debug build of the bench) that checks the harness
#                                 still works; writes nothing unless --output FILE is given. PGMCP_BENCH_SMOKE=1 does
#                                 the same. CI: `./scripts/bench.sh --smoke`.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0; peers=0; output=""; only=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1; args+=(--smoke) ;;
    --peers) peers=1; args+=(--peers) ;;
    --output) output="$2"; shift ;;
    --only) only=1; args+=(--only "$2"); shift ;;
    *) echo "unknown argument: $1 (known: --smoke, --peers, --output FILE, --only 1,2,...)" >&2; exit 2 ;;
  esac
  shift
done
[ "${PGMCP_BENCH_SMOKE:-0}" = 1 ] && smoke=1 && args+=(--smoke)
if [ -z "$output" ] && [ "$smoke" = 0 ] && [ "$only" = 0 ]; then output="$PWD/BENCHMARKS.md"; fi
[ -n "$output" ] && args+=(--output "$output")

. scripts/deps.sh
ensure_build_deps
# pgbench comes with the server package; the bench's token issuer makes its RSA key with the openssl CLI.
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || command -v pgbench >/dev/null || apt_install postgresql
command -v openssl >/dev/null || apt_install openssl

if [ "$peers" = 1 ]; then
  # The SDK client that drives every server, pgmcp included.
  venv=bench/driver/.venv
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import mcp' 2>/dev/null; then
    echo "installing the Python MCP SDK into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r bench/driver/requirements.txt
  fi
  # The npm peers, at the versions pinned by bench/peers/package-lock.json.
  if [ ! -d bench/peers/node_modules/@bytebase/dbhub ]; then
    echo "installing the npm peers into bench/peers"
    (cd bench/peers && npm ci --no-audit --no-fund --loglevel=error)
  fi
  bench/postgres-mcp/install.sh || true
fi

if [ "$smoke" = 1 ] && [ "${PGMCP_BENCH_RELEASE:-0}" != 1 ]; then
  # The smoke run checks that the harness works, not how fast pgmcp is: the debug build that `cargo test` already
  # made is enough and saves CI a release build. PGMCP_BENCH_RELEASE=1 smokes the release build instead.
  cargo bench --profile dev --bench pgmcp --quiet -- "${args[@]}"
else
  echo "building pgmcp and the bench (release)"
  cargo bench --bench pgmcp --quiet -- "${args[@]}"
fi
