#!/usr/bin/env bash
# Builds pgmcp's runtime container image from `scratch` with buildah, without pulling any base image: the release
# binary, the shared libraries `ldd` lists for it, the CA certificates and a passwd entry for the non-root user.
# The Containerfile's runtime stage is made of the same files by the same function (--rootfs), so both images
# have the same layout, user, entrypoint, command and health check.
#
#   ./scripts/image.sh                         release build, then the image pgmcp:local
#   ./scripts/image.sh --tag myacr.azurecr.io/pgmcp:1.0 --binary target/release/pgmcp
#   ./scripts/image.sh --rootfs DIR [--binary PATH]   only lay the files out under DIR (the Containerfile uses this)
#
# Needs: buildah (Debian/Ubuntu: apt-get install buildah; it is installed when missing and run as root), ldd.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="pgmcp:local"; binary=""; rootfs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift ;;
    --binary) binary="$2"; shift ;;
    --rootfs) rootfs="$2"; shift ;;
    *) echo "unknown argument: $1 (known: --tag NAME, --binary PATH, --rootfs DIR)" >&2; exit 2 ;;
  esac
  shift
done

# The image's user: a fixed, unprivileged uid/gid (the "nonroot" id distroless images use), with no login shell.
readonly APP_UID=65532 APP_GID=65532 APP_USER=pgmcp
readonly BIN_PATH=/usr/local/bin/pgmcp
readonly CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

# Lays out the runtime root filesystem under $2 for the binary $1.
lay_out_rootfs() {
  local bin="$1" root="$2" lib
  [ -x "$bin" ] || { echo "image.sh: $bin is not an executable (build it: cargo build --release --locked)" >&2; exit 1; }
  [ -f "$CA_BUNDLE" ] || { echo "image.sh: $CA_BUNDLE is missing (apt-get install ca-certificates)" >&2; exit 1; }
  mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/home/$APP_USER" "$root/tmp"
  install -m 0755 "$bin" "$root$BIN_PATH"
  # Every library at the path the dynamic loader looks for it, the loader itself included.
  for lib in $(ldd "$bin" | awk '/=> \// { print $3; next } /^\s*\// { print $1 }'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  install -m 0644 "$CA_BUNDLE" "$root$CA_BUNDLE"
  printf 'root:x:0:0:root:/root:/sbin/nologin\n%s:x:%s:%s:pgmcp:/home/%s:/sbin/nologin\n' \
    "$APP_USER" "$APP_UID" "$APP_GID" "$APP_USER" >"$root/etc/passwd"
  printf 'root:x:0:\n%s:x:%s:\n' "$APP_USER" "$APP_GID" >"$root/etc/group"
  chown "$APP_UID:$APP_GID" "$root/home/$APP_USER"
  chmod 0755 "$root/home/$APP_USER"
  chmod 1777 "$root/tmp"
}

if [ -n "$rootfs" ]; then
  lay_out_rootfs "${binary:-target/release/pgmcp}" "$rootfs"
  exit 0
fi

if ! command -v buildah >/dev/null; then
  # shellcheck source=scripts/deps.sh
  . scripts/deps.sh
  apt_install buildah
fi
if [ -z "$binary" ]; then
  echo "building pgmcp (release)"
  nice -n 15 cargo build --release --locked --bin pgmcp
  binary=target/release/pgmcp
fi

# Docker format throughout: OCI image configs have no health check, and buildah drops it from them.
export BUILDAH_FORMAT=docker
container=$(buildah from --name "pgmcp-image-$$" scratch)
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
root=$(buildah mount "$container")
lay_out_rootfs "$binary" "$root"
buildah umount "$container" >/dev/null

# The same metadata as the Containerfile's runtime stage.
buildah config \
  --user "$APP_UID:$APP_GID" \
  --workingdir "/home/$APP_USER" \
  --env HOME="/home/$APP_USER" \
  --env SSL_CERT_FILE="$CA_BUNDLE" \
  --port 8080/tcp \
  --entrypoint "[\"$BIN_PATH\"]" \
  --cmd '["serve", "--http", "0.0.0.0:8080"]' \
  --healthcheck "CMD $BIN_PATH health" \
  --healthcheck-interval 30s --healthcheck-timeout 5s --healthcheck-start-period 10s --healthcheck-retries 3 \
  --label org.opencontainers.image.title=pgmcp \
  --label org.opencontainers.image.description="A PostgreSQL server for the Model Context Protocol" \
  --label org.opencontainers.image.licenses=MIT \
  "$container"
buildah commit --quiet --format docker --rm "$container" "$tag" >/dev/null
trap - EXIT
echo "built $tag ($(buildah images --format '{{.Size}}' "$tag" | head -n 1) uncompressed)"
