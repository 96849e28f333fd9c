#!/usr/bin/env bash
# Rebuilds vendor/rmcp from rmcp's crates.io release plus the patches in vendor/rmcp-patches, applied in name order
# (vendor/README.md says what each does and why). Run it after changing a patch or moving to another rmcp version;
# `git diff vendor/rmcp` then shows exactly what changed. Each patch stands on its own, to be proposed upstream alone.
#   scripts/vendor-rmcp.sh [VERSION]                  rebuild (default: the version vendored now)
#   scripts/vendor-rmcp.sh --write-patch NAME [VERSION]
#       after editing vendor/rmcp/src: write vendor/rmcp-patches/NAME as the difference between the release with
#       every other patch applied and the edited sources (a new NAME adds a patch)
set -euo pipefail
cd "$(dirname "$0")/.."
write_patch=
if [ "${1:-}" = --write-patch ]; then
  write_patch=${2:?"--write-patch needs the patch's file name, for example 4-something.patch"}
  shift 2
fi
version=${1:-$(sed -n 's/^version = "\(.*\)"$/\1/p' vendor/rmcp/Cargo.toml | head -n1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL "https://static.crates.io/crates/rmcp/rmcp-$version.crate" | tar -xz -C "$work"
release="$work/rmcp-$version"

apply_patches() { # DIR [SKIP]: applies every patch but SKIP to DIR, in name order
  local patch
  for patch in vendor/rmcp-patches/*.patch; do
    [ "$(basename "$patch")" = "${2:-}" ] && continue
    patch --quiet --no-backup-if-mismatch --directory "$1" -p1 <"$patch"
  done
}

if [ -n "$write_patch" ]; then
  # Paths as a/src/... and b/src/..., no timestamps: a patch changes only when its edits do.
  mkdir -p "$work/a" "$work/b"
  cp -r "$release/src" "$work/a/"
  apply_patches "$work/a" "$write_patch"
  cp -r vendor/rmcp/src "$work/b/"
  (cd "$work" && git diff --no-index --no-color --src-prefix= --dst-prefix= a b) >"vendor/rmcp-patches/$write_patch" \
    || [ $? -eq 1 ]
  echo "wrote vendor/rmcp-patches/$write_patch"
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
apply_patches vendor/rmcp
echo "vendor/rmcp: rmcp $version with $(ls vendor/rmcp-patches | tr '\n' ' ')"
