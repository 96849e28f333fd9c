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

# Where pg_query's build looks for libclang. bindgen loads it at run time through clang-sys (1.9, `runtime`
# feature), which searches only $LIBCLANG_PATH when it is set, else `llvm-config --prefix`'s bin/lib/lib64,
# $LD_LIBRARY_PATH, $LIBRARY_PATH and these globs (clang-sys's DIRECTORIES_LINUX). The ldconfig cache is not
# consulted: a library only ldconfig knows about is not found.
libclang_search_dirs() {
  if [ -n "${LIBCLANG_PATH:-}" ]; then
    printf '%s\n' "$LIBCLANG_PATH"
    return
  fi
  local prefix dir
  if prefix=$("${LLVM_CONFIG_PATH:-llvm-config}" --prefix 2>/dev/null) && [ -n "$prefix" ]; then
    printf '%s\n' "$prefix/bin" "$prefix/lib" "$prefix/lib64"
  fi
  printf '%s\n' "${LD_LIBRARY_PATH:-}" "${LIBRARY_PATH:-}" | tr ':' '\n' | grep -v '^$' || true
  for dir in /usr/local/llvm*/lib* /usr/local/lib*/*/* /usr/local/lib*/* /usr/local/lib* \
    /usr/lib*/*/* /usr/lib*/* /usr/lib*; do
    [ -d "$dir" ] && printf '%s\n' "$dir"
  done
}

# Prints the first libclang clang-sys would load from the given directories (or library files: LIBCLANG_PATH may
# name one), and fails when there is none. Its rules: `libclang.so`, `libclang-*.so`, and — since bindgen loads at
# run time — `libclang.so.*` and `libclang-*.so.*`; never a name containing `-cpp.` (`libclang-cpp.so.14` is
# Clang's C++ library, not libclang); and only an ELF file of this machine's word size.
find_libclang() {
  local path candidate name candidates
  for path in "$@"; do
    if [ -d "$path" ]; then
      candidates=("$path"/libclang.so "$path"/libclang-*.so "$path"/libclang.so.* "$path"/libclang-*.so.*)
    else
      candidates=("$path")
    fi
    for candidate in "${candidates[@]}"; do
      name=${candidate##*/}
      case "$name" in
        *-cpp.*) continue ;;
        libclang.so | libclang-*.so | libclang.so.* | libclang-*.so.*) ;;
        *) continue ;;
      esac
      if [ -f "$candidate" ] && is_native_elf "$candidate"; then
        printf '%s\n' "$candidate"
        return 0
      fi
    done
  done
  return 1
}

# clang-sys skips a library whose ELF class differs from the build's (a 32-bit libclang on a 64-bit machine).
is_native_elf() {
  local class
  case "$(getconf LONG_BIT 2>/dev/null || echo 64)" in 32) class=001 ;; *) class=002 ;; esac
  [ "$(head -c 5 "$1" 2>/dev/null | od -An -c | tr -d ' \n')" = "177ELF$class" ]
}

# Installs libclang-dev unless clang-sys would find a libclang in the given directories.
ensure_libclang() {
  find_libclang "$@" >/dev/null && return 0
  if [ -n "${LIBCLANG_PATH:-}" ]; then
    echo "LIBCLANG_PATH=$LIBCLANG_PATH holds no libclang (libclang.so or libclang-N.so); pg_query's build looks only there: fix or unset it" >&2
    exit 1
  fi
  echo "installing libclang-dev (pg_query builds PostgreSQL's parser with bindgen, which loads libclang)"
  command -v apt-get >/dev/null \
    || echo "elsewhere: install libclang (e.g. clang-devel on Fedora, llvm on macOS) or set LIBCLANG_PATH to its directory" >&2
  apt_install libclang-dev
}

ensure_build_deps() {
  command -v cargo >/dev/null || { echo "Rust is required: see https://rustup.rs" >&2; exit 1; }
  # PostgreSQL server binaries: the demo and the tests start their own throwaway clusters from them.
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
    echo "installing PostgreSQL server binaries (package postgresql)"
    apt_install postgresql
  fi
  local dirs
  mapfile -t dirs < <(libclang_search_dirs)
  ensure_libclang "${dirs[@]}"
}
