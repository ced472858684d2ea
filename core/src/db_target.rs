//! Owns the reading of a libpq connection string (URI or key=value form, several hosts)
//! and the rule for which answering server is acceptable. Pure: strings and facts in,
//! values out; uses only std. The node opens the sockets (node/src/store/pg_connect.rs).
//!
//! The rules followed are libpq's (PostgreSQL 15, "Connection Strings" and "Specifying
//! Multiple Hosts"): hosts are tried in the order given; in the key=value form `host`
//! and `port` take comma-separated lists of equal length, or one port for all hosts; in
//! the URI form each host carries its own `:port`; `target_session_attrs` decides which
//! answering server is kept; `connect_timeout` is per host, in seconds, 0 or absent
//! meaning no limit and 1 meaning 2. Unknown keywords are refused, as libpq does.

use std::fmt;

/// Port used for a host that names none.
pub const DEFAULT_PORT: u16 = 5432;

/// Which servers a session may use (`target_session_attrs`). Only the kinds a writer
/// can use are accepted; `read-only`, `standby` and `prefer-standby` are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    /// Any server that accepts the connection (libpq's default).
    Any,
    /// A server whose `transaction_read_only` is `off`.
    ReadWrite,
    /// A server not in recovery (`pg_is_in_recovery()` is false).
    Primary,
}

impl SessionAttrs {
    /// Whether a server that reported these facts is acceptable.
    pub fn accepts(self, server: ServerRole) -> bool {
        match self {
            SessionAttrs::Any => true,
            SessionAttrs::ReadWrite => !server.read_only,
            SessionAttrs::Primary => !server.in_recovery,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::Primary => "primary",
        }
    }
}

/// What a connected server said about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRole {
    /// `SHOW transaction_read_only` answered `on`.
    pub read_only: bool,
    /// `pg_is_in_recovery()` answered true.
    pub in_recovery: bool,
}

impl ServerRole {
    /// Whether deals can be written there.
    pub fn writable(self) -> bool {
        !self.read_only && !self.in_recovery
    }
}

/// `sslmode`, libpq's six values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// One server to try: a TCP host name or address, or a Unix-socket directory (a host
/// starting with `/`), with its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub host: String,
    pub port: u16,
}

impl HostSpec {
    pub fn is_socket_dir(&self) -> bool {
        self.host.starts_with('/')
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') && !self.is_socket_dir() {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A parsed connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct DbTarget {
    /// Tried in this order; never empty.
    pub hosts: Vec<HostSpec>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub dbname: Option<String>,
    pub session_attrs: SessionAttrs,
    /// Per-host connect bound in seconds (already raised to libpq's minimum of 2);
    /// `None`: no limit given.
    pub connect_timeout_secs: Option<u64>,
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub application_name: Option<String>,
}

// The password never reaches a log.
impl fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbTarget")
            .field("hosts", &self.hosts)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("session_attrs", &self.session_attrs)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

impl DbTarget {
    /// `host:port,host:port/db`, for logs and `/health` (no user, no password).
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self.hosts.iter().map(|h| h.to_string()).collect();
        format!(
            "{}/{}",
            hosts.join(","),
            self.dbname.as_deref().unwrap_or("")
        )
    }
}

/// Parse either form. Errors name the offending part and never echo a password.
pub fn parse(s: &str) -> Result<DbTarget, String> {
    let s = s.trim();
    if let Some(rest) = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
    {
        parse_uri(rest)
    } else if s.contains("://") {
        Err("database URL: the scheme must be postgres:// or postgresql://".into())
    } else {
        parse_key_value(s)
    }
}

/// Gathered before the hosts and ports are paired.
#[derive(Default)]
struct Raw {
    hosts: Vec<String>,
    ports: Vec<String>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    session_attrs: Option<String>,
    connect_timeout: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
    application_name: Option<String>,
}

impl Raw {
    fn set(&mut self, key: &str, value: String) -> Result<(), String> {
        let slot = match key {
            "host" => {
                self.hosts = value.split(',').map(str::to_owned).collect();
                return Ok(());
            }
            "port" => {
                self.ports = value.split(',').map(str::to_owned).collect();
                return Ok(());
            }
            "user" => &mut self.user,
            "password" => &mut self.password,
            "dbname" => &mut self.dbname,
            "target_session_attrs" => &mut self.session_attrs,
            "connect_timeout" => &mut self.connect_timeout,
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            "application_name" => &mut self.application_name,
            "hostaddr" => {
                return Err(
                    "database URL: hostaddr is not supported; give the addresses in host".into(),
                )
            }
            "load_balance_hosts" if value == "disable" => return Ok(()),
            "load_balance_hosts" => {
                return Err(format!(
                    "database URL: load_balance_hosts={value} is not supported (hosts are tried in order)"
                ))
            }
            other => return Err(format!("database URL: invalid connection option \"{other}\"")),
        };
        *slot = Some(value);
        Ok(())
    }

    fn finish(self) -> Result<DbTarget, String> {
        let hosts = if self.hosts.is_empty() {
            vec![String::new()]
        } else {
            self.hosts
        };
        let ports = match self.ports.len() {
            0 => vec![String::new(); hosts.len()],
            1 => vec![self.ports[0].clone(); hosts.len()],
            n if n == hosts.len() => self.ports,
            n => {
                return Err(format!(
                    "database URL: could not match {n} port numbers to {} hosts",
                    hosts.len()
                ))
            }
        };
        let hosts = hosts
            .into_iter()
            .zip(ports)
            .map(|(h, p)| host_spec(h, &p))
            .collect::<Result<Vec<_>, _>>()?;
        let session_attrs = match self.session_attrs.as_deref() {
            None | Some("any") => SessionAttrs::Any,
            Some("read-write") => SessionAttrs::ReadWrite,
            Some("primary") => SessionAttrs::Primary,
            Some(v @ ("read-only" | "standby" | "prefer-standby")) => {
                return Err(format!(
                    "database URL: target_session_attrs={v} cannot carry a writer; use read-write or primary"
                ))
            }
            Some(v) => {
                return Err(format!(
                    "database URL: invalid target_session_attrs value \"{v}\""
                ))
            }
        };
        let connect_timeout_secs = match self.connect_timeout.as_deref() {
            None | Some("") => None,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n <= 0 => None,
                Ok(n) => Some(n.max(2) as u64),
                Err(_) => {
                    return Err(format!(
                        "database URL: invalid connect_timeout value \"{v}\""
                    ))
                }
            },
        };
        let sslmode = match self.sslmode.as_deref() {
            None => None,
            Some("disable") => Some(SslMode::Disable),
            Some("allow") => Some(SslMode::Allow),
            Some("prefer") => Some(SslMode::Prefer),
            Some("require") => Some(SslMode::Require),
            Some("verify-ca") => Some(SslMode::VerifyCa),
            Some("verify-full") => Some(SslMode::VerifyFull),
            Some(v) => return Err(format!("database URL: invalid sslmode value \"{v}\"")),
        };
        Ok(DbTarget {
            hosts,
            user: self.user,
            password: self.password,
            dbname: self.dbname,
            session_attrs,
            connect_timeout_secs,
            sslmode,
            sslrootcert: self.sslrootcert,
            sslcert: self.sslcert,
            sslkey: self.sslkey,
            application_name: self.application_name,
        })
    }
}

/// An empty host means the default Unix-socket directory, as in libpq.
fn host_spec(host: String, port: &str) -> Result<HostSpec, String> {
    let port = if port.is_empty() {
        DEFAULT_PORT
    } else {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("database URL: invalid port number \"{port}\"")),
        }
    };
    let host = if host.is_empty() {
        "/var/run/postgresql".to_owned()
    } else {
        host
    };
    Ok(HostSpec { host, port })
}

/// `[user[:password]@][host[:port][,...]][/dbname][?key=value&...]`, percent-encoded.
fn parse_uri(rest: &str) -> Result<DbTarget, String> {
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    let mut raw = Raw::default();
    // The last '@' ends the user info (a password may hold an encoded '@' only).
    let hostlist = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                raw.user = Some(decode(user, "user name")?);
            }
            if let Some(p) = password {
                raw.password = Some(decode(p, "password")?);
            }
            hosts
        }
        None => authority,
    };
    if !hostlist.is_empty() {
        for spec in hostlist.split(',') {
            let (host, port) = split_host_port(spec)?;
            raw.hosts.push(decode(host, "host")?);
            raw.ports.push(port.to_owned());
        }
    }
    if let Some(p) = path {
        if !p.is_empty() {
            raw.dbname = Some(decode(p, "database name")?);
        }
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("database URL: parameter \"{pair}\" has no '='"))?;
        let key = decode(k, "parameter name")?;
        // libpq lets a URI parameter stand for a part of the URI.
        let key = match key.as_str() {
            "ssl" if v == "true" => {
                raw.set("sslmode", "require".into())?;
                continue;
            }
            _ => key,
        };
        raw.set(&key, decode(v, "parameter value")?)?;
    }
    raw.finish()
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(spec: &str) -> Result<(&str, &str), String> {
    if let Some(inner) = spec.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("database URL: unterminated IPv6 address in \"{spec}\""))?;
        let port = match after {
            "" => "",
            p => p
                .strip_prefix(':')
                .ok_or_else(|| format!("database URL: unexpected \"{p}\" after an IPv6 address"))?,
        };
        Ok((host, port))
    } else {
        match spec.split_once(':') {
            Some((h, p)) => Ok((h, p)),
            None => Ok((spec, "")),
        }
    }
}

/// Percent-decoding of one URI part.
fn decode(s: &str, what: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("database URL: invalid percent-encoding in the {what}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("database URL: the {what} is not UTF-8"))
}

/// `key = value ...`, values bare or single-quoted with `\'` and `\\` escapes.
fn parse_key_value(s: &str) -> Result<DbTarget, String> {
    let mut raw = Raw::default();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!(
                "database URL: missing \"=\" after \"{key}\" in the connection string"
            ));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(
                            "database URL: unterminated quoted string in the connection string"
                                .into(),
                        )
                    }
                    Some('\'') => break,
                    Some('\\') => {
                        match chars.next() {
                            Some(c) => value.push(c),
                            None => return Err(
                                "database URL: unterminated quoted string in the connection string"
                                    .into(),
                            ),
                        }
                    }
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                    continue;
                }
                value.push(c);
                chars.next();
            }
        }
        raw.set(&key, value)?;
    }
    raw.finish()
}

/// The hosts in the order to try them. libpq always starts again from the first (so a
/// recovered first host is preferred once it is acceptable again); kept as a function
/// so the rule has one home.
pub fn try_order(target: &DbTarget) -> impl Iterator<Item = &HostSpec> {
    target.hosts.iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(h: &str, p: u16) -> HostSpec {
        HostSpec {
            host: h.into(),
            port: p,
        }
    }

    #[test]
    fn multi_host_uri() {
        let t = parse("postgres://u@db1:5432,db2:5433/dealport?target_session_attrs=read-write")
            .unwrap();
        assert_eq!(t.hosts, vec![hs("db1", 5432), hs("db2", 5433)]);
        assert_eq!(t.user.as_deref(), Some("u"));
        assert_eq!(t.dbname.as_deref(), Some("dealport"));
        assert_eq!(t.session_attrs, SessionAttrs::ReadWrite);
        assert_eq!(t.describe(), "db1:5432,db2:5433/dealport");
    }

    #[test]
    fn uri_defaults_and_encoding() {
        let t = parse(
            "postgresql://us%40er:p%3Ass@[::1],db2/my%20db?connect_timeout=1&sslmode=require",
        )
        .unwrap();
        assert_eq!(t.hosts, vec![hs("::1", 5432), hs("db2", 5432)]);
        assert_eq!(t.user.as_deref(), Some("us@er"));
        assert_eq!(t.password.as_deref(), Some("p:ss"));
        assert_eq!(t.dbname.as_deref(), Some("my db"));
        assert_eq!(t.connect_timeout_secs, Some(2), "libpq raises 1 to 2");
        assert_eq!(t.sslmode, Some(SslMode::Require));
        assert_eq!(t.session_attrs, SessionAttrs::Any, "libpq's default");
        assert_eq!(t.hosts[0].to_string(), "[::1]:5432");
        assert!(
            !format!("{t:?}").contains("p:ss"),
            "Debug hides the password"
        );
    }

    #[test]
    fn key_value_form() {
        let t = parse(
            "host=db1,db2 port=5432,5433 user=dealport password='it''s \\'q\\'' dbname=deals target_session_attrs=primary connect_timeout=0",
        );
        // libpq has no '' escape in quoted values: the second quote ends the value.
        assert!(t.is_err());
        let t = parse(
            "host = db1,db2 port=5432,5433 user=dealport password='a \\'q\\' b' dbname=deals target_session_attrs=primary connect_timeout=0",
        )
        .unwrap();
        assert_eq!(t.hosts, vec![hs("db1", 5432), hs("db2", 5433)]);
        assert_eq!(t.password.as_deref(), Some("a 'q' b"));
        assert_eq!(t.session_attrs, SessionAttrs::Primary);
        assert_eq!(t.connect_timeout_secs, None, "0 means no limit");
    }

    #[test]
    fn one_port_applies_to_all_hosts() {
        let t = parse("host=a,b,c port=6000").unwrap();
        assert_eq!(t.hosts, vec![hs("a", 6000), hs("b", 6000), hs("c", 6000)]);
        let t = parse("host=a,b").unwrap();
        assert_eq!(t.hosts, vec![hs("a", 5432), hs("b", 5432)]);
    }

    #[test]
    fn bad_strings_have_clear_errors() {
        let cases = [
            (
                "host=a,b,c port=1,2",
                "could not match 2 port numbers to 3 hosts",
            ),
            ("postgres://db1:x/db", "invalid port number \"x\""),
            ("postgres://db1:70000/db", "invalid port number"),
            (
                "postgres://db1/db?target_session_attrs=standby",
                "cannot carry a writer",
            ),
            (
                "postgres://db1/db?target_session_attrs=rw",
                "invalid target_session_attrs",
            ),
            ("postgres://db1/db?sslmode=maybe", "invalid sslmode"),
            (
                "postgres://db1/db?connect_timeout=soon",
                "invalid connect_timeout",
            ),
            (
                "postgres://db1/db?bogus=1",
                "invalid connection option \"bogus\"",
            ),
            ("postgres://db1/db?x", "has no '='"),
            ("postgres://[::1/db", "unterminated IPv6"),
            ("postgres://db1/d%zz", "invalid percent-encoding"),
            ("host=a password='open", "unterminated quoted string"),
            ("host a", "missing \"=\""),
            ("mysql://db1/db", "scheme"),
            ("hostaddr=10.0.0.1", "hostaddr is not supported"),
            ("host=a load_balance_hosts=random", "not supported"),
        ];
        for (input, want) in cases {
            let err = parse(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn session_attrs_rule() {
        let primary = ServerRole {
            read_only: false,
            in_recovery: false,
        };
        let standby = ServerRole {
            read_only: true,
            in_recovery: true,
        };
        // default_transaction_read_only = on on a primary
        let ro_primary = ServerRole {
            read_only: true,
            in_recovery: false,
        };
        assert!(SessionAttrs::Any.accepts(standby));
        assert!(SessionAttrs::ReadWrite.accepts(primary));
        assert!(!SessionAttrs::ReadWrite.accepts(standby));
        assert!(!SessionAttrs::ReadWrite.accepts(ro_primary));
        assert!(SessionAttrs::Primary.accepts(ro_primary));
        assert!(!SessionAttrs::Primary.accepts(standby));
        assert!(primary.writable() && !ro_primary.writable() && !standby.writable());
    }

    #[test]
    fn hosts_are_tried_in_order() {
        let t = parse("host=c,a,b").unwrap();
        let order: Vec<&str> = try_order(&t).map(|h| h.host.as_str()).collect();
        assert_eq!(order, ["c", "a", "b"]);
    }

    #[test]
    fn socket_directories() {
        let t = parse("host=/tmp/pg,db2 port=5433").unwrap();
        assert!(t.hosts[0].is_socket_dir());
        assert!(!t.hosts[1].is_socket_dir());
        let t = parse("postgres:///db?host=/tmp/pg").unwrap();
        assert_eq!(t.hosts, vec![hs("/tmp/pg", 5432)]);
    }
}
