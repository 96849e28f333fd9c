//! libpq's URL form: `postgresql://[user[:password]@][host[:port][,host[:port]...]][/dbname][?key=value&...]`.

use super::conninfo::ConnSettings;
use super::error::ConfigError;

const SCHEMES: [&str; 2] = ["postgresql://", "postgres://"];

pub(crate) fn is_url(conn: &str) -> bool {
    SCHEMES
        .iter()
        .any(|scheme| starts_with_ignore_case(conn, scheme))
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

pub(crate) fn parse_url(url: &str) -> Result<ConnSettings, ConfigError> {
    let rest = SCHEMES
        .iter()
        .find(|scheme| starts_with_ignore_case(url, scheme))
        .map(|scheme| &url[scheme.len()..])
        .ok_or_else(|| {
            ConfigError::conn_string("a URL must start with postgresql:// or postgres://")
        })?;

    let (before_query, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (before_query, None),
    };
    // The last `@` ends the user part, so an unencoded Azure `user@server` still parses; `%40` works as well.
    let (userinfo, hostlist) = match authority.rsplit_once('@') {
        Some((userinfo, hostlist)) => (Some(userinfo), hostlist),
        None => (None, authority),
    };

    let mut settings = ConnSettings::default();
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            settings.user = Some(decode(user, "user name")?);
        }
        if let Some(password) = password {
            // The password's own text never appears in an error, not even a decoding error.
            let decoded = decode(password, "password").map_err(|_| {
                ConfigError::conn_string("the password is not valid percent-encoding")
            })?;
            settings.password = Some(super::secret::Secret::new(decoded));
        }
    }
    parse_hostlist(hostlist, &mut settings)?;
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        settings.dbname = Some(decode(path, "database name")?);
    }
    if let Some(query) = query {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                ConfigError::conn_string(format!(
                    "URL parameter `{}` has no value — write key=value",
                    decode(pair, "parameter").unwrap_or_default()
                ))
            })?;
            let key = decode(key, "parameter name")?;
            let value = decode(value, &key)?;
            settings.apply(&key, &value, &key)?;
        }
    }
    settings.check_host_port_counts()?;
    Ok(settings)
}

fn parse_hostlist(hostlist: &str, settings: &mut ConnSettings) -> Result<(), ConfigError> {
    if hostlist.is_empty() {
        return Ok(());
    }
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for entry in hostlist.split(',') {
        let (host, port) = if let Some(bracketed) = entry.strip_prefix('[') {
            // IPv6 literal: [::1]:5432
            let (host, after) = bracketed.split_once(']').ok_or_else(|| {
                ConfigError::conn_string(format!("unclosed \"[\" in host `{entry}`"))
            })?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    ConfigError::conn_string(format!(
                        "unexpected text after \"]\" in host `{entry}`"
                    ))
                })?),
            };
            (host.to_string(), port)
        } else {
            match entry.rsplit_once(':') {
                Some((host, port)) => (decode(host, "host")?, Some(port)),
                None => (decode(entry, "host")?, None),
            }
        };
        hosts.push(host);
        ports.push(port.unwrap_or(""));
    }
    settings.hosts = hosts;
    if ports.iter().any(|port| !port.is_empty()) {
        settings.apply("port", &ports.join(","), "port")?;
    }
    Ok(())
}

/// Percent-decoding as libpq does it for every URL part; `+` stays a plus sign (this is not a form).
pub(crate) fn decode(text: &str, what: &str) -> Result<String, ConfigError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| {
                    ConfigError::conn_string(format!(
                        "invalid percent-encoding in the {what} — \"%\" must be followed by two hex digits (write %25 for a literal %)"
                    ))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ConfigError::conn_string(format!("the {what} does not decode to UTF-8 text")))
}

/// The URL with its password replaced by `****`, for error messages and logs. Anything that is not a
/// recognisable URL is returned fully masked rather than risk echoing a secret.
pub fn redact_url(url: &str) -> String {
    let Some(scheme) = SCHEMES.iter().find(|s| starts_with_ignore_case(url, s)) else {
        return "****".to_string();
    };
    let rest = &url[scheme.len()..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:****@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => authority.to_string(),
    };
    let tail = redact_password_parameter(tail);
    format!("{}{authority}{tail}", &url[..scheme.len()])
}

fn redact_password_parameter(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=****"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}
