//! Owns reaching the right PostgreSQL server of a multi-host connection string: turning
//! one host of a [`DbTarget`] into sqlx options, asking a connected server what it is,
//! and walking the hosts in libpq's order to the first acceptable one. Uses sqlx, the
//! pure rules of `dealport_core::db_target`, and `crate::runtime::timeout`; the store
//! (postgres.rs) uses it, never the reverse.
//!
//! Why here and not in the driver: sqlx 0.9's `PgConnectOptions` holds one host and
//! refuses a comma-separated host list, and its pool has no per-connection connector.
//! So the store keeps one pool per chosen host and replaces it when that host is lost.

use std::time::Duration;

use dealport_core::db_target::{self, DbTarget, HostSpec, ServerRole, SessionAttrs, SslMode};
use sqlx::{
    postgres::{PgConnectOptions, PgConnection, PgSslMode},
    ConnectOptions, Connection, Row,
};

use crate::runtime::timeout;

/// Per-host bound when the string gives no `connect_timeout`: a host that drops packets
/// must not hold the walk for long.
pub const DEFAULT_HOST_TIMEOUT: Duration = Duration::from_secs(3);

/// Parse a connection string, with errors fit for the operator.
pub fn parse(url: &str) -> Result<DbTarget, String> {
    db_target::parse(url)
}

/// The bound on connecting to one host.
pub fn host_timeout(target: &DbTarget) -> Duration {
    target
        .connect_timeout_secs
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_HOST_TIMEOUT)
}

/// sqlx options for one host of `target`.
pub fn options_for(target: &DbTarget, host: &HostSpec) -> PgConnectOptions {
    let mut o = PgConnectOptions::new().port(host.port);
    o = if host.is_socket_dir() {
        o.socket(&host.host)
    } else {
        o.host(&host.host)
    };
    if let Some(u) = &target.user {
        o = o.username(u);
    }
    if let Some(p) = &target.password {
        o = o.password(p);
    }
    if let Some(d) = &target.dbname {
        o = o.database(d);
    }
    if let Some(m) = target.sslmode {
        o = o.ssl_mode(match m {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow => PgSslMode::Allow,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        });
    }
    if let Some(c) = &target.sslrootcert {
        o = o.ssl_root_cert(c);
    }
    if let Some(c) = &target.sslcert {
        o = o.ssl_client_cert(c);
    }
    if let Some(k) = &target.sslkey {
        o = o.ssl_client_key(k);
    }
    o.application_name(target.application_name.as_deref().unwrap_or("dealport"))
}

/// What the server behind `conn` is: one round trip, the two facts libpq checks.
pub async fn role_of(conn: &mut PgConnection) -> Result<ServerRole, sqlx::Error> {
    let row =
        sqlx::query("SELECT current_setting('transaction_read_only') = 'on', pg_is_in_recovery()")
            .fetch_one(conn)
            .await?;
    Ok(ServerRole {
        read_only: row.try_get(0)?,
        in_recovery: row.try_get(1)?,
    })
}

/// Refuse a freshly opened connection whose server the connection string's
/// `target_session_attrs` does not accept (a server demoted after it was chosen).
pub async fn check_session_attrs(
    conn: &mut PgConnection,
    attrs: SessionAttrs,
) -> Result<(), sqlx::Error> {
    if attrs == SessionAttrs::Any {
        return Ok(());
    }
    let role = role_of(conn).await?;
    if attrs.accepts(role) {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!(
            "server not acceptable for target_session_attrs={}",
            attrs.as_str()
        )))
    }
}

/// Connect to one host and ask its role, all within `bound`.
pub async fn probe(opts: &PgConnectOptions, bound: Duration) -> Result<ServerRole, String> {
    let attempt = async {
        let mut conn = opts.connect().await.map_err(|e| e.to_string())?;
        let role = role_of(&mut conn).await.map_err(|e| e.to_string());
        let _ = conn.close().await;
        role
    };
    timeout(bound, attempt)
        .await
        .unwrap_or_else(|| Err(format!("no answer within {bound:?}")))
}

/// The chosen server.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub index: usize,
    pub host: HostSpec,
    pub role: ServerRole,
}

/// Walk the hosts in order; the first that answers and is acceptable wins. The error
/// lists every host's reason, as libpq's does.
pub async fn choose(target: &DbTarget) -> Result<Chosen, String> {
    let bound = host_timeout(target);
    let mut reasons = Vec::new();
    for (index, host) in db_target::try_order(target).enumerate() {
        match probe(&options_for(target, host), bound).await {
            Ok(role) if target.session_attrs.accepts(role) => {
                return Ok(Chosen {
                    index,
                    host: host.clone(),
                    role,
                })
            }
            Ok(role) => reasons.push(format!(
                "{host}: not acceptable for target_session_attrs={} (read_only={}, in_recovery={})",
                target.session_attrs.as_str(),
                role.read_only,
                role.in_recovery
            )),
            Err(e) => reasons.push(format!("{host}: {e}")),
        }
    }
    Err(format!("no acceptable server: {}", reasons.join("; ")))
}
