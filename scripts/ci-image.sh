#!/usr/bin/env bash
# CI: builds the runtime container image with scripts/image.sh and runs it the way a container runtime would
# (tests/image.rs: buildah mount + chroot as the image's user, against a throwaway PostgreSQL and a loopback token
# issuer). Needs root (buildah, chroot); installs buildah when missing.
#
#   ./scripts/ci-image.sh            the image around the debug binary that `cargo test` already built (no release
#                                    build in CI: about a minute after the test suite). Same files, user, entrypoint
#                                    and health check as the release image; only its size is not checked.
#   ./scripts/ci-image.sh --release  the real image: release build (the bulk of the time), and the size target
#                                    (under 40 MB uncompressed) is checked too.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
case "${1:-}" in
  "") ;;
  --release) profile=release ;;
  *) echo "unknown argument: $1 (known: --release)" >&2; exit 2 ;;
esac
# shellcheck source=scripts/deps.sh
. scripts/deps.sh
ensure_build_deps
command -v buildah >/dev/null || apt_install buildah

tag="localhost/pgmcp:ci-$$"
started=$SECONDS
if [ "$profile" = release ]; then
  nice -n 15 cargo build --release --locked --bin pgmcp
else
  cargo build --locked --bin pgmcp
fi
./scripts/image.sh --binary "target/$profile/pgmcp" --tag "$tag"
trap 'buildah rmi "$tag" >/dev/null 2>&1 || true' EXIT
PGMCP_IMAGE="$tag" PGMCP_IMAGE_PROFILE="$profile" cargo test --locked --test image -- --ignored
echo "ci-image ($profile): $((SECONDS - started)) s"
