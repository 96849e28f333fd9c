#!/usr/bin/env bash
# Rebuilds vendor/rmcp from rmcp's crates.io release plus vendor/rmcp-inline-stateless.patch (vendor/README.md says
# why). Run it after changing the patch or moving to another rmcp version; `git diff vendor/rmcp` then shows exactly
# what changed.
#   scripts/vendor-rmcp.sh [VERSION]               rebuild (default: the version vendored now)
#   scripts/vendor-rmcp.sh --write-patch [VERSION] after editing vendor/rmcp/src: write the patch from the edits
set -euo pipefail
cd "$(dirname "$0")/.."
write_patch=0
if [ "${1:-}" = --write-patch ]; then
  write_patch=1
  shift
fi
version=${1:-$(sed -n 's/^version = "\(.*\)"$/\1/p' vendor/rmcp/Cargo.toml | head -n1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL "https://static.crates.io/crates/rmcp/rmcp-$version.crate" | tar -xz -C "$work"
release="$work/rmcp-$version"

if [ "$write_patch" = 1 ]; then
  # Paths as a/src/... and b/src/..., no timestamps: the patch changes only when the edits do.
  mkdir -p "$work/a" "$work/b"
  cp -r "$release/src" "$work/a/"
  cp -r vendor/rmcp/src "$work/b/"
  (cd "$work" && git diff --no-index --no-color --src-prefix= --dst-prefix= a b) >vendor/rmcp-inline-stateless.patch \
    || [ $? -eq 1 ]
  echo "wrote vendor/rmcp-inline-stateless.patch"
  exit 0
fi

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
