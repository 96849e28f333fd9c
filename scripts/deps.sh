# Sourced by the other scripts: installs what building and running pgmcp's demo and tests need, only when missing.
# Debian/Ubuntu get the packages with apt-get (via sudo when not root); elsewhere the message names what to install.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "missing: $* — install the equivalent packages with your system's package manager" >&2
    exit 1
  fi
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_build_deps() {
  command -v cargo >/dev/null || { echo "Rust is required: see https://rustup.rs" >&2; exit 1; }
  # PostgreSQL server binaries: the demo and the tests start their own throwaway clusters from them.
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
    echo "installing PostgreSQL server binaries (package postgresql)"
    apt_install postgresql
  fi
  # pg_query builds PostgreSQL's parser with bindgen, which needs libclang.
  if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libclang; then
    echo "installing libclang-dev (for the pg_query build)"
    apt_install libclang-dev
  fi
}
