//! The lease's own PostgreSQL connection.
//!
//! The lease loop reads and renews every few seconds, on every node of a cluster.
//! Through sqlx's pool each of those statements cost three round trips (the pool pings
//! a connection before lending it, and again, on a task of its own, when it comes
//! back) and a hop to another thread: on an idle node that was most of its CPU
//! (BENCHMARKS.md, "A long history"). A renewal must also never queue behind deal
//! traffic for a pooled connection. So the four lease statements run on one connection
//! of their own, kept between ticks and bound to the host the store talks to now.
//!
//! A statement checks the connection out and gives it back only when it succeeded:
//! after an error, or when the caller's deadline drops the statement half way, the
//! connection is dropped (its socket closed) and the next statement opens a fresh one,
//! so no connection in an unknown state is used again.

use std::sync::Mutex;

use dealport_core::db_target::{DbTarget, HostSpec};
use sqlx::{postgres::PgConnection, ConnectOptions, Connection};

use super::pg_connect;
use crate::runtime::timeout;

/// How long a graceful close may wait for the server.
const CLOSE_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// The connection between two lease statements (at most one kept).
#[derive(Default)]
pub(super) struct LeaseConnSlot(Mutex<Option<LeaseConn>>);

/// A checked-out lease connection: run the statement on `conn`, then
/// [`LeaseConnSlot::give_back`] it if the statement succeeded.
pub(super) struct LeaseConn {
    host: HostSpec,
    pub conn: PgConnection,
}

impl LeaseConnSlot {
    /// The kept connection if it is to `host`, else a new one to `host` (checked
    /// against `target_session_attrs`, as the pool's connections are).
    pub async fn take(&self, target: &DbTarget, host: &HostSpec) -> Result<LeaseConn, sqlx::Error> {
        // A connection to another host (the store moved) is dropped here.
        if let Some(kept) = self.lock().take().filter(|c| &c.host == host) {
            return Ok(kept);
        }
        let mut conn = pg_connect::options_for(target, host).connect().await?;
        pg_connect::check_session_attrs(&mut conn, target.session_attrs).await?;
        Ok(LeaseConn {
            host: host.clone(),
            conn,
        })
    }

    /// Keep `c` for the next statement.
    pub fn give_back(&self, c: LeaseConn) {
        *self.lock() = Some(c);
    }

    /// Close the kept connection, if any (the store is closing).
    pub async fn close(&self) {
        let kept = self.lock().take();
        if let Some(c) = kept {
            let _ = timeout(CLOSE_BOUND, c.conn.close()).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<LeaseConn>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
