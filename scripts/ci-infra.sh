#!/usr/bin/env bash
# CI: checks infra/ (Bicep) with checkov, offline (--skip-download, BC_SKIP_MAPPING=TRUE: it never calls its
# vendor's API). Fails on any finding not suppressed in the code with a reason (`// checkov:skip=ID: why`), and
# when checkov's parser does not see a declared resource (tests/infra/resources.py). infra/entra/ holds the
# Microsoft Graph resources, which checkov's Bicep parser cannot read: it is excluded, and compiled with the
# Bicep CLI when one is installed. checkov lives in tests/infra/.venv (pinned in tests/infra/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=tests/infra/.venv
if [ ! -x "$venv/bin/checkov" ] || ! cmp -s tests/infra/requirements.txt "$venv/requirements.txt"; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    # shellcheck source=scripts/deps.sh
    . scripts/deps.sh
    apt_install python3 python3-venv
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/infra/requirements.txt
  cp tests/infra/requirements.txt "$venv/requirements.txt"
fi

export BC_SKIP_MAPPING=TRUE
"$venv/bin/python" tests/infra/resources.py infra entra/
"$venv/bin/checkov" --skip-download --quiet --compact --framework bicep -d infra --skip-path entra

if command -v bicep >/dev/null; then
  for file in infra/main.bicep infra/entra/app.bicep; do bicep build --stdout "$file" >/dev/null; done
  echo "bicep build: ok"
elif command -v az >/dev/null && az bicep version >/dev/null 2>&1; then
  for file in infra/main.bicep infra/entra/app.bicep; do az bicep build --stdout --file "$file" >/dev/null; done
  echo "az bicep build: ok"
else
  echo "no Bicep CLI here: infra/entra/app.bicep was not compiled"
fi
