//! `scripts/deps.sh` decides whether pg_query's build can find libclang the way it really looks for it (clang-sys),
//! so a fresh machine gets `libclang-dev` installed before a build that would fail with "Unable to find libclang".
//! The script runs in bash on fake library directories, with `apt_install` replaced by a recorder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The start of a 64-bit ELF file: clang-sys opens each candidate and skips what is not one.
const ELF64: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";

fn deps_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/deps.sh")
}

/// A directory holding the named files, each a 64-bit ELF stub unless given other contents.
fn library_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).expect("write fake library");
    }
    dir
}

/// Sources deps.sh, records what `apt_install` would install, and runs `snippet` with `args` as `$@`.
fn run_deps(snippet: &str, args: &[&Path], env: &[(&str, &str)]) -> (Output, String) {
    let record = tempfile::NamedTempFile::new().expect("record file");
    let script = format!(
        ". {}\napt_install() {{ echo \"$*\" >> \"$RECORD\"; }}\n{snippet}",
        deps_script().display()
    );
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", &script, "deps-test"])
        .args(args)
        .env("RECORD", record.path())
        .env_remove("LIBCLANG_PATH")
        .env_remove("LLVM_CONFIG_PATH")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBRARY_PATH");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run bash");
    let installed = std::fs::read_to_string(record.path()).unwrap_or_default();
    (output, installed)
}

fn ensure_libclang(dirs: &[&Path]) -> String {
    let (output, installed) = run_deps(r#"ensure_libclang "$@""#, dirs, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    installed
}

#[test]
fn only_libclang_cpp_is_not_libclang_so_libclang_dev_is_installed() {
    // Debian 12's default: Clang's C++ library, which bindgen cannot use.
    let llvm = library_dir(&[("libclang-cpp.so.14", ELF64), ("libLLVM-14.so.1", ELF64)]);
    let multiarch = library_dir(&[("libclang-cpp.so.14", ELF64), ("libclang-cpp.so", ELF64)]);
    assert_eq!(
        ensure_libclang(&[llvm.path(), multiarch.path()]),
        "libclang-dev\n"
    );
}

#[test]
fn an_unversioned_libclang_so_is_enough() {
    let llvm = library_dir(&[("libclang-cpp.so.14", ELF64), ("libclang.so", ELF64)]);
    assert_eq!(ensure_libclang(&[llvm.path()]), "");
}

#[test]
fn versioned_names_count_as_bindgen_loads_at_run_time() {
    for name in [
        "libclang-14.so",
        "libclang-14.so.1",
        "libclang.so.1",
        "libclang-14.so.14.0.6",
    ] {
        let llvm = library_dir(&[(name, ELF64)]);
        assert_eq!(ensure_libclang(&[llvm.path()]), "", "{name}");
    }
}

#[test]
fn a_file_that_is_not_a_native_elf_library_does_not_count() {
    let text = library_dir(&[("libclang.so", b"INPUT(libclang-14.so.1)\n")]);
    let elf32 = library_dir(&[("libclang.so", b"\x7fELF\x01\x01\x01\0")]);
    assert_eq!(
        ensure_libclang(&[text.path(), elf32.path()]),
        "libclang-dev\n"
    );
    // A library in a directory the build does not search is no help either: the search is per directory.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(ensure_libclang(&[empty.path()]), "libclang-dev\n");
}

#[test]
fn find_libclang_names_the_library_the_build_would_load() {
    let llvm = library_dir(&[("libclang-cpp.so.14", ELF64), ("libclang-14.so.1", ELF64)]);
    let (output, _) = run_deps(r#"find_libclang "$@""#, &[llvm.path()], &[]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        llvm.path().join("libclang-14.so.1").display().to_string()
    );
}

#[test]
fn libclang_path_is_the_only_place_searched_when_set() {
    let named = library_dir(&[("libclang-cpp.so.14", ELF64)]);
    let path = named.path().to_str().unwrap();
    let (output, _) = run_deps("libclang_search_dirs", &[], &[("LIBCLANG_PATH", path)]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{path}\n"));

    // Installing libclang-dev would not help a build that looks only there: the script says what to fix instead.
    let (output, installed) = run_deps(
        r#"ensure_libclang "$@""#,
        &[named.path()],
        &[("LIBCLANG_PATH", path)],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("LIBCLANG_PATH"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(installed, "");

    // LIBCLANG_PATH may name the library file itself.
    let file = library_dir(&[("libclang-14.so.1", ELF64)]);
    let library = file.path().join("libclang-14.so.1");
    assert_eq!(ensure_libclang(&[&library]), "");
}

#[test]
fn the_search_covers_llvm_config_and_the_loader_paths() {
    let prefix = tempfile::tempdir().unwrap();
    let llvm_config = prefix.path().join("llvm-config");
    std::fs::write(
        &llvm_config,
        format!("#!/bin/sh\necho {}\n", prefix.path().display()),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&llvm_config).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&llvm_config, permissions).unwrap();
    let (output, _) = run_deps(
        "libclang_search_dirs",
        &[],
        &[
            ("LLVM_CONFIG_PATH", llvm_config.to_str().unwrap()),
            ("LD_LIBRARY_PATH", "/opt/one/lib:/opt/two/lib"),
        ],
    );
    let dirs = String::from_utf8_lossy(&output.stdout);
    let prefix = prefix.path().display();
    for expected in [
        format!("{prefix}/lib"),
        format!("{prefix}/lib64"),
        "/opt/one/lib".into(),
        "/opt/two/lib".into(),
    ] {
        assert!(dirs.lines().any(|d| d == expected), "{expected} in {dirs}");
    }
    // The machine's own LLVM directories, found by clang-sys's globs (here: Debian's /usr/lib/llvm-N/lib).
    if let Some(llvm) = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
    {
        let lib = llvm.path().join("lib").display().to_string();
        assert!(dirs.lines().any(|d| d == lib), "{lib} in {dirs}");
    }
}
