#!/usr/bin/env bash
# Rebuilds vendor/CRATE (rmcp, tokio-postgres) from the crate's crates.io release plus the patches in
# vendor/CRATE-patches, applied in name order (vendor/README.md says what each does and why). Run it after changing a
# patch or moving to another version; `git diff vendor/CRATE` then shows exactly what changed. Each patch stands on
# its own, to be proposed upstream alone.
#   scripts/vendor.sh CRATE [VERSION]                  rebuild (default: the version vendored now)
#   scripts/vendor.sh CRATE --write-patch NAME [VERSION]
#       after editing vendor/CRATE/src: write vendor/CRATE-patches/NAME as the difference between the release with
#       every other patch applied and the edited sources (a new NAME adds a patch)
set -euo pipefail
cd "$(dirname "$0")/.."
crate=${1:?"name the vendored crate: $(ls -d vendor/*-patches | sed 's|vendor/||; s|-patches||' | tr '\n' ' ')"}
shift
[ -d "vendor/$crate-patches" ] || { echo "vendor/$crate-patches does not exist: create it to vendor $crate" >&2; exit 1; }
write_patch=
if [ "${1:-}" = --write-patch ]; then
  write_patch=${2:?"--write-patch needs the patch's file name, for example 4-something.patch"}
  shift 2
fi
version=${1:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "vendor/$crate/Cargo.toml" | head -n1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL "https://static.crates.io/crates/$crate/$crate-$version.crate" | tar -xz -C "$work"
release="$work/$crate-$version"

apply_patches() { # DIR [SKIP]: applies every patch but SKIP to DIR, in name order
  local patch
  for patch in "vendor/$crate-patches"/*.patch; do
    [ -e "$patch" ] || continue
    [ "$(basename "$patch")" = "${2:-}" ] && continue
    patch --quiet --no-backup-if-mismatch --directory "$1" -p1 <"$patch"
  done
}

if [ -n "$write_patch" ]; then
  # Paths as a/src/... and b/src/..., no timestamps: a patch changes only when its edits do.
  mkdir -p "$work/a" "$work/b"
  cp -r "$release/src" "$work/a/"
  apply_patches "$work/a" "$write_patch"
  cp -r "vendor/$crate/src" "$work/b/"
  (cd "$work" && git diff --no-index --no-color --src-prefix= --dst-prefix= a b) >"vendor/$crate-patches/$write_patch" \
    || [ $? -eq 1 ]
  echo "wrote vendor/$crate-patches/$write_patch"
  exit 0
fi

rm -rf "vendor/$crate"
mkdir -p "vendor/$crate"
cp -r "$release/src" "$release"/LICENSE* "$release/README.md" "vendor/$crate/"
# The library only: the crate's tests, examples, benches and dev-dependencies are not shipped here, and a build
# script (rmcp's configures git hooks in its own repository) has nothing to do in this one.
awk '
    /^\[/ { skip = ($0 ~ /^\[\[(test|example|bench)\]\]/ || $0 ~ /^\[dev-dependencies/) }
    !skip && !/^build = /
' "$release/Cargo.toml" >"vendor/$crate/Cargo.toml"
apply_patches "vendor/$crate"
echo "vendor/$crate: $crate $version with $(ls "vendor/$crate-patches" | tr '\n' ' ')"
