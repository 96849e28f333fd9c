//! The libpq password file (`~/.pgpass`, `passfile`, `PGPASSFILE`): `host:port:database:user:password` lines,
//! `*` matches anything, `\:` and `\\` escape, the first matching line wins, and the file is ignored when
//! others may read it.

use std::path::{Path, PathBuf};

use super::secret::Secret;

/// Where the password file is: the `passfile` setting, else `PGPASSFILE`, else `~/.pgpass`.
pub fn passfile_path(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    if let Some(path) = env("PGPASSFILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    env("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| Path::new(&home).join(".pgpass"))
}

/// The password for this connection from the file at `path`, if the file exists, is private, and has a line
/// that matches. A missing file is normal and silent; a readable-by-others file is skipped with a warning,
/// exactly as libpq does.
pub fn lookup(path: &Path, host: &str, port: u16, dbname: &str, user: &str) -> Option<Secret> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_file() {
        tracing::warn!(path = %path.display(), "password file is not a plain file; ignoring it");
        return None;
    }
    if is_readable_by_others(&metadata) {
        tracing::warn!(
            path = %path.display(),
            "password file has group or world access; ignoring it (permissions should be u=rw (0600) or less)"
        );
        return None;
    }
    let contents = match std::fs::read_to_string(path) {
        Ok(contents) => contents,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read password file; ignoring it");
            return None;
        }
    };
    find_password(&contents, host, port, dbname, user)
}

#[cfg(unix)]
fn is_readable_by_others(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o077 != 0
}

#[cfg(not(unix))]
fn is_readable_by_others(_metadata: &std::fs::Metadata) -> bool {
    false
}

/// The first line of a password file's `contents` that matches the connection.
pub fn find_password(
    contents: &str,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<Secret> {
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    contents
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .find_map(|line| {
            let fields = split_fields(line)?;
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(pattern, value)| pattern == "*" || pattern == value);
            matches.then(|| Secret::new(fields[4].clone()))
        })
}

/// Splits one line into its five fields, undoing `\:` and `\\`; the password is the rest of the line.
/// Lines with fewer than five fields are skipped, as libpq does.
fn split_fields(line: &str) -> Option<[String; 5]> {
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
}
