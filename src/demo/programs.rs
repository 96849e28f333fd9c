//! The programs the throwaway cluster runs, found where they usually live when `PATH` lacks them: desktop MCP
//! clients start servers with a minimal environment (often `PATH=/usr/bin:/bin`), which has neither `runuser` in
//! /usr/sbin nor PostgreSQL's /usr/lib/postgresql/N/bin. A program that is missing is named, with its package.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

/// A program and the Debian/Ubuntu package that brings it, for the message when it is missing.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    pub name: &'static str,
    pub package: &'static str,
}

/// Root starts the server as the `postgres` OS user with it.
pub const RUNUSER: Program = Program {
    name: "runuser",
    package: "util-linux",
};
/// Reads the `postgres` OS user's ids.
pub const ID: Program = Program {
    name: "id",
    package: "coreutils",
};
/// Runs the reaper that removes a cluster its creator left behind.
pub const SH: Program = Program {
    name: "sh",
    package: "dash",
};
/// Loads the sample dataset; it normally sits beside the server binaries.
pub const PSQL: Program = Program {
    name: "psql",
    package: "postgresql-client",
};

/// Where system programs live when `PATH` does not say: the sbin directories first, since they are what a
/// minimal `PATH` usually leaves out.
const USUAL_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The absolute path of `program`: from `PATH`, else from the usual directories.
pub fn locate(program: Program) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let usual = USUAL_DIRS.iter().map(PathBuf::from);
    locate_in(program, std::env::split_paths(&path).chain(usual))
}

pub(crate) fn locate_in(
    program: Program,
    dirs: impl IntoIterator<Item = PathBuf>,
) -> anyhow::Result<PathBuf> {
    dirs.into_iter()
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program.name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            anyhow!(
                "`{}` was not found on PATH or in {}: install it (`sudo apt-get install {}` on Debian/Ubuntu)",
                program.name,
                USUAL_DIRS.join(", "),
                program.package
            )
        })
}

pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

const SERVER_INSTALL_HINT: &str = "PostgreSQL's server programs `initdb`, `pg_ctl` and `postgres` were not found \
     on PATH or in /usr/lib/postgresql/*/bin: install them (`sudo apt-get install postgresql` on Debian/Ubuntu, \
     `brew install postgresql@16` on macOS, then add its bin directory to PATH, \
     `sudo dnf install postgresql-server` on Fedora/RHEL)";

/// The directory holding initdb, pg_ctl and postgres: first PATH (all three side by side), else the
/// highest-versioned well-known install location.
pub fn server_bin_dir() -> anyhow::Result<PathBuf> {
    let has_server_tools = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|tool| is_executable(&dir.join(tool)))
    };
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|dir| has_server_tools(dir))
    {
        return Ok(dir);
    }
    let versioned_parents: [(&str, &str, &str); 4] = [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
        ("/opt/homebrew/opt", "postgresql@", "bin"),
        ("/usr/local/opt", "postgresql@", "bin"),
    ];
    for (parent, prefix, bin) in versioned_parents {
        let mut candidates: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let version = name.strip_prefix(prefix)?;
                let key: Option<Vec<u64>> =
                    version.split('.').map(|part| part.parse().ok()).collect();
                Some((key?, entry.path().join(bin)))
            })
            .filter(|(_, dir)| has_server_tools(dir))
            .collect();
        candidates.sort();
        if let Some((_, dir)) = candidates.pop() {
            return Ok(dir);
        }
    }
    Err(anyhow!(SERVER_INSTALL_HINT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_outside_path_is_found_in_the_usual_directories() {
        let dir = tempfile::tempdir().unwrap();
        let runuser = dir.path().join("runuser");
        std::fs::write(&runuser, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&runuser, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = locate_in(
            RUNUSER,
            [PathBuf::from("/nonexistent/bin"), dir.path().to_path_buf()],
        )
        .unwrap();
        assert_eq!(found, runuser);
    }

    #[test]
    fn a_missing_program_is_named_with_its_package() {
        let dir = tempfile::tempdir().unwrap();
        // Present but not executable: exec would fail the same way as absent.
        std::fs::write(dir.path().join("runuser"), "").unwrap();
        let err = locate_in(RUNUSER, [dir.path().to_path_buf(), "relative".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`runuser` was not found"), "{err}");
        assert!(err.contains("apt-get install util-linux"), "{err}");
        assert!(!err.contains("initdb"), "{err}");
    }
}
