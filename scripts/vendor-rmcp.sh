#!/usr/bin/env bash
# Rebuilds vendor/rmcp from rmcp's crates.io release plus vendor/rmcp-inline-stateless.patch (vendor/README.md says
# why). Run it after changing the patch or moving to another rmcp version; `git diff vendor/rmcp` then shows exactly
# what changed. Usage: scripts/vendor-rmcp.sh [VERSION] (default: the version vendored now).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-$(sed -n 's/^version = "\(.*\)"$/\1/p' vendor/rmcp/Cargo.toml | head -n1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL "https://static.crates.io/crates/rmcp/rmcp-$version.crate" | tar -xz -C "$work"
release="$work/rmcp-$version"
rm -rf vendor/rmcp
mkdir -p vendor/rmcp
cp -r "$release/src" "$release/LICENSE" "$release/README.md" vendor/rmcp/
# The library only: rmcp's tests, examples and dev-dependencies are not shipped here, and its build script (which
# configures git hooks in rmcp's own repository) has nothing to do in this one.
awk '
    /^\[/ { skip = ($0 ~ /^\[\[(test|example|bench)\]\]/ || $0 ~ /^\[dev-dependencies/) }
    !skip && !/^build = /
' "$release/Cargo.toml" >vendor/rmcp/Cargo.toml
patch --quiet --directory vendor/rmcp -p1 <vendor/rmcp-inline-stateless.patch
echo "vendor/rmcp: rmcp $version with vendor/rmcp-inline-stateless.patch"
