#!/usr/bin/env bash
# Installs Postgres MCP Pro (PyPI `postgres-mcp` 0.3.0) into bench/postgres-mcp/.venv for the peer benchmark.
#
# postgres-mcp needs Python >= 3.12 and pins pglast==7.2.0, which PyPI does not serve: a plain
# `pip install postgres-mcp` ends in "ResolutionImpossible" on Python 3.12 and in "No matching distribution found"
# on 3.11. What works: the package without dependencies, then its dependencies with pglast from the same 7.x series
# and the MCP SDK on the 1.x line it was written for. Without a Python 3.12+ it still runs on 3.11 with a
# sitecustomize shim for the one 3.12 name it imports (typing.override, from typing_extensions).
# The plain install's error and how it was installed go to INSTALL-NOTE.txt; a failure to NOT-INSTALLED.txt.
set -uo pipefail
cd "$(dirname "$0")"
venv=.venv
[ -x "$venv/bin/postgres-mcp" ] && exit 0

python=""
for candidate in python3.13 python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[23]*/bin/python3; do
  if "$candidate" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then python=$candidate; break; fi
done
[ -n "$python" ] || python=python3
log=$(mktemp)
rm -rf "$venv"
"$python" -m venv "$venv" >"$log" 2>&1
pip=("$venv/bin/pip" install -q --disable-pip-version-check)
if "${pip[@]}" "postgres-mcp==0.3.0" >>"$log" 2>&1; then
  echo "installed with a plain pip install on $("$python" --version 2>&1)" > INSTALL-NOTE.txt
else
  { echo "plain \`pip install postgres-mcp==0.3.0\` on $("$python" --version 2>&1) failed:"; grep ERROR "$log" | tail -3
    echo "installed instead: --no-deps postgres-mcp==0.3.0, then its dependencies with pglast==7.* and mcp<2"; } > INSTALL-NOTE.txt
  {
    "${pip[@]}" --ignore-requires-python --no-deps "postgres-mcp==0.3.0" &&
    "${pip[@]}" 'attrs>=25.3.0' 'humanize>=4.8.0' 'instructor>=1.7.9' 'mcp[cli]>=1.5.0,<2' 'pglast==7.*' \
        'psycopg-pool>=3.2.6' 'psycopg[binary]>=3.2.6' 'typing_extensions'
  } >>"$log" 2>&1
  if ! "$venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    printf 'import typing\nif not hasattr(typing, "override"):\n    import typing_extensions\n    typing.override = typing_extensions.override\n' \
      > "$site/sitecustomize.py"
    echo "Python 3.11 with a typing.override shim (sitecustomize.py)" >> INSTALL-NOTE.txt
  fi
fi
if ! "$venv/bin/python" -c 'import postgres_mcp.server' >>"$log" 2>&1; then
  { echo "not installable here with $("$python" --version 2>&1):"; tail -5 "$log"; } > NOT-INSTALLED.txt
  rm -rf "$venv"
  echo "Postgres MCP Pro could not be installed: see bench/postgres-mcp/NOT-INSTALLED.txt" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log" NOT-INSTALLED.txt
