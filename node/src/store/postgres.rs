//! The cluster store: any server that speaks PostgreSQL's protocol (PostgreSQL,
//! YugabyteDB), through sqlx 0.9.
//!
//! Schema (`node/migrations/`, embedded and run at [`PostgresStore::connect`]): one
//! `libp2p` row holding the identity and the leader lease (after Curio's table), and a
//! `deals` table mirroring the sled record, with UNIQUE proposal and signed-proposal CIDs
//! and an indexed `piece_cid` (migration 4), the dashboard's indexes, counts and
//! timeline (migration 5), the piece directory, `piece_index` and `piece_blocks`
//! (migration 6), and the IPNI chain (migration 7).
//!
//! Fencing: a leader writes deals and its listen address only through the fenced forms.
//! Each checks, in the same transaction (deals: `SELECT … FOR SHARE` on the lease row,
//! which also makes a concurrent acquisition wait for the write) or the same statement
//! (listen address), that the lease row still names the writer at its generation and is
//! unexpired by the database's `now()`. The unfenced [`Store::insert_new_deal`] and
//! [`Store::update_deal`] are refused here ([`StoreError::NeedsLease`]).
//!
//! Time is always the database's: expiry is computed and compared with `now()` in SQL and
//! handed to the node as unix milliseconds.
//!
//! Failures: each attempt has a deadline; serialization failures (40001, what YugabyteDB
//! answers to conflicting transactions), deadlocks (40P01), lost or refused connections
//! (I/O errors, class 08, 57P01-57P03) and attempt timeouts are retried with a bounded,
//! jittered exponential back-off. Every operation is safe to repeat after a commit whose
//! answer was lost: a repeated insert reports `UuidExists` (the caller re-reads and sees
//! its own deal), a repeated acquisition fails and the next poll retakes the row under
//! the node's own name with a fresh generation, renewals, releases and updates are
//! idempotent.
//!
//! Servers: the URL is a libpq connection string, one host or several
//! (`target_session_attrs`, `connect_timeout`, `sslmode`); `pg_connect` picks the first
//! acceptable host, and a failure that may mean the server is lost or demoted walks the
//! hosts again and moves the pool (docs/database-failover.md).
//!
//! Runtime: sqlx's `runtime-async-global-executor` feature. Its sockets and timers are
//! async-io's (the reactor the rest of node/ uses, under smol and async-std alike); the
//! few tasks sqlx spawns (returning connections to the pool, closing them) run on
//! async-global-executor's threads. `runtime-smol` / `runtime-async-std` would pull the
//! smol / async-std crates into node/, which must stay runtime-agnostic.

use std::{
    borrow::Cow,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use dealport_core::{
    dashboard::{
        from_state_code, state_code, DealQuery, HourCount, Order, StateCounts, StateFilter,
    },
    db_target::{DbTarget, HostSpec, SessionAttrs},
    deal::{Checkpoint, DealRecord},
    ipni::Block,
    piece_index::{BlockEntry, BlockLocation, IndexState},
    wire::Cid,
    wire::DealUuid,
};
use sqlx::{
    migrate::{Migration, MigrationType, Migrator},
    postgres::{PgPool, PgPoolOptions, PgRow},
    Row, SqlSafeStr,
};

use super::pg_connect;
use super::pg_lease_conn::{LeaseConn, LeaseConnSlot};

use super::{
    Fence, Inserted, IpniAdRef, IpniHead, IpniPublish, LeaseGrant, LeaseRead, LeaseRow, Published,
    RelayTarget, Store, StoreError, StoreFuture, StoredDeal,
};
use crate::runtime::timeout;

/// Connection and retry settings.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long to wait for a pooled connection (including opening a new one).
    pub acquire_timeout: Duration,
    /// How long `connect` may take, migrations included.
    pub connect_timeout: Duration,
    /// Deadline of one attempt of one operation; a hung server counts as a lost
    /// connection.
    pub attempt_timeout: Duration,
    /// Attempts per operation (the first included).
    pub max_attempts: u32,
    /// First back-off; doubles per retry up to `max_backoff`, with ±50 % jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(4),
            max_attempts: 5,
            base_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(800),
        }
    }
}

/// Least time between two walks of the host list.
const RESELECT_EVERY: Duration = Duration::from_millis(500);

/// Starts a walk of the hosts when an operation is dropped before it finished.
struct CancelGuard<'a>(Option<&'a PostgresStore>);

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.0 {
            store.reselect();
        }
    }
}

/// One pool's settings. Each new connection is asked its role and dropped if the
/// connection string's `target_session_attrs` refuses it (a server demoted after it
/// was chosen), so the pool never lends a connection to a server it must not use.
fn pool_options(opts: &PostgresOptions, attrs: SessionAttrs) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(opts.acquire_timeout)
        .idle_timeout(Duration::from_secs(60))
        .max_lifetime(Duration::from_secs(30 * 60))
        .test_before_acquire(true)
        .after_connect(move |conn, _meta| Box::pin(pg_connect::check_session_attrs(conn, attrs)))
}

/// The migrations, embedded so the binary needs no files beside it.
///
/// Migrations a newer dealport applied are left alone, not an error (sqlx's
/// `ignore_missing`): in a rolling upgrade a node one version behind must still start on
/// the schema the first upgraded node migrated. That holds because migrations only add
/// (tables, indexes, columns that may be NULL), never rename, drop or change what an
/// older node reads or writes (docs/operations.md, upgrades).
fn migrator() -> Migrator {
    let mut m = Migrator::with_migrations(vec![
        Migration::new(
            1,
            Cow::Borrowed("cluster store"),
            MigrationType::Simple,
            include_str!("../../migrations/0001_cluster_store.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("leader state"),
            MigrationType::Simple,
            include_str!("../../migrations/0002_leader_state.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("live deals by checkpoint"),
            MigrationType::Simple,
            include_str!("../../migrations/0003_live_deals.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("deals by piece CID"),
            MigrationType::Simple,
            include_str!("../../migrations/0004_deals_by_piece.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("dashboard"),
            MigrationType::Simple,
            include_str!("../../migrations/0005_dashboard.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("piece directory"),
            MigrationType::Simple,
            include_str!("../../migrations/0006_piece_directory.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("ipni chain"),
            MigrationType::Simple,
            include_str!("../../migrations/0007_ipni_chain.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            Cow::Borrowed("online deals awaiting download"),
            MigrationType::Simple,
            include_str!("../../migrations/0008_awaiting_download.sql").into_sql_str(),
            false,
        ),
    ]);
    m.set_ignore_missing(true);
    m
}

/// Say so when a newer dealport migrated this database further than this one knows (a
/// rolling upgrade in progress): fine for a while, worth upgrading this node too.
async fn warn_if_newer_schema(pool: &PgPool, known: &Migrator) {
    let ours = known.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await;
    if let Ok(Some(newest)) = applied {
        if newest > ours {
            tracing::warn!(
                schema = newest,
                this_binary = ours,
                "the database was migrated by a newer dealport; this node runs on it \
                 (migrations only add), upgrade it when you can"
            );
        }
    }
}

/// The server the store is talking to now, and its pool.
struct Current {
    pool: PgPool,
    host: HostSpec,
    writable: bool,
}

/// The PostgreSQL backend of [`Store`].
#[derive(Clone)]
pub struct PostgresStore {
    current: Arc<RwLock<Current>>,
    target: Arc<DbTarget>,
    /// A walk of the hosts is under way, and when the last one started: a burst of
    /// failures walks once.
    walking: Arc<std::sync::atomic::AtomicBool>,
    last_walk: Arc<std::sync::Mutex<Option<Instant>>>,
    /// The lease statements' own connection, outside the pool.
    lease: Arc<LeaseConnSlot>,
    opts: PostgresOptions,
    describe: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("db", &self.describe)
            .finish()
    }
}

/// A failed attempt.
#[derive(Debug)]
enum Fail {
    Sql(sqlx::Error),
    TimedOut,
    /// A decided outcome, never retried.
    Store(StoreError),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

/// SQLSTATEs worth another attempt: serialization failure, deadlock, connection
/// exceptions (class 08), the server shutting down or starting up.
fn retryable_code(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03") || lost_server_code(code)
}

/// SQLSTATEs that say this server cannot take our writes any more: connection
/// exceptions (class 08), shutdown (57P01-57P03), a read-only transaction (25006: the
/// server was demoted). Worth walking the hosts again.
fn lost_server_code(code: &str) -> bool {
    matches!(code, "57P01" | "57P02" | "57P03" | "25006") || code.starts_with("08")
}

impl Fail {
    fn retryable(&self) -> bool {
        match self {
            Fail::TimedOut => true,
            Fail::Store(_) => false,
            Fail::Sql(e) => match e {
                sqlx::Error::Database(db) => db.code().is_some_and(|c| retryable_code(&c)),
                // PoolClosed: the pool of a server we moved away from; the next
                // attempt takes the new one.
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::BeginFailed => true,
                _ => false,
            },
        }
    }

    /// Whether the failure may mean the server is gone or no longer the primary.
    fn lost_server(&self) -> bool {
        match self {
            Fail::TimedOut => true,
            Fail::Store(_) => false,
            Fail::Sql(e) => match e {
                sqlx::Error::Database(db) => db.code().is_some_and(|c| lost_server_code(&c)),
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
                _ => false,
            },
        }
    }

    fn into_store(self, what: &str) -> StoreError {
        match self {
            Fail::Store(e) => e,
            Fail::TimedOut => StoreError::Backend(format!("{what}: the database did not answer")),
            Fail::Sql(e) => StoreError::Backend(format!("{what}: {e}")),
        }
    }
}

/// The back-off before retry number `attempt` (0-based): base * 2^attempt, capped, ±50 %.
fn backoff(opts: &PostgresOptions, attempt: u32) -> Duration {
    let exp = opts
        .base_backoff
        .saturating_mul(1u32 << attempt.min(16))
        .min(opts.max_backoff);
    let jitter = getrandom::u32().unwrap_or(0) % 1000; // 0..1000 per mille
    exp.mul_f64(0.5 + jitter as f64 / 1000.0)
}

/// Run `$body` (an `async` block giving `Result<T, Fail>`) with the attempt deadline,
/// retrying what is retryable with back-off.
macro_rules! with_retry {
    ($store:expr, $what:expr, $body:expr) => {{
        let store: &PostgresStore = $store;
        let mut attempt = 0u32;
        // A caller's bound may drop this operation mid-attempt (a server that stopped
        // answering): the guard then starts a walk of the hosts anyway.
        let mut guard = CancelGuard(Some(store));
        let result = loop {
            let outcome = match timeout(store.opts.attempt_timeout, $body).await {
                Some(r) => r,
                None => Err(Fail::TimedOut),
            };
            match outcome {
                Ok(v) => break Ok(v),
                Err(f) if f.retryable() && attempt + 1 < store.opts.max_attempts => {
                    tracing::debug!(what = $what, attempt, error = ?f, "store: retrying");
                    if f.lost_server() {
                        store.reselect();
                    }
                    async_io::Timer::after(backoff(&store.opts, attempt)).await;
                    attempt += 1;
                }
                Err(f) => {
                    if f.lost_server() {
                        store.reselect();
                    }
                    break Err(f.into_store($what));
                }
            }
        };
        guard.0 = None;
        result
    }};
}

/// `now()` as unix milliseconds, in SQL.
const NOW_MS: &str = "floor(extract(epoch from now()) * 1000)::bigint";

fn ms_sql(column: &str) -> String {
    format!("floor(extract(epoch from {column}) * 1000)::bigint")
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

fn to_i64(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} {v} does not fit a BIGINT")))
}

fn to_u64(key: &str, what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        key: key.to_owned(),
        message: format!("negative {what} {v}"),
    })
}

/// The PeerID of a protobuf-encoded libp2p key.
fn peer_id_of(key: &[u8]) -> Result<String, StoreError> {
    libp2p::identity::Keypair::from_protobuf_encoding(key)
        .map(|k| k.public().to_peer_id().to_string())
        .map_err(|e| StoreError::Backend(format!("identity key does not decode: {e}")))
}

/// Live deals at the checkpoint bound to `$1`: the live partial index's predicate
/// (migration 3) repeated, so the planner reads that index.
const LIVE_AT: &str = "error IS NULL AND checkpoint <> 'Complete' AND checkpoint = $1";

/// A deal's columns, in the order of [`DEAL_COLUMNS`] after `uuid` and `params`.
struct DealRow {
    uuid: String,
    params: Vec<u8>,
    proposal_cid: String,
    signed_proposal_cid: String,
    client_peer_id: String,
    created_at_unix_nanos: i64,
    checkpoint: String,
    error: Option<String>,
    n_bytes_received: i64,
    publish_cid: Option<String>,
    chain_deal_id: i64,
    sector_number: Option<i64>,
    sector_offset: Option<i64>,
    sealing_status: String,
    /// Only written by the insert (`deals_by_piece_cid`).
    piece_cid: String,
    /// The proposal's client address; only written by the insert (`deals_ui_by_client`).
    client: String,
    /// Only written by the insert (`deals_awaiting_download`).
    is_offline: bool,
}

const DEAL_COLUMNS: &str = "uuid::text AS uuid, params, proposal_cid, signed_proposal_cid, \
     client_peer_id, created_at_unix_nanos, checkpoint, error, n_bytes_received, publish_cid, \
     chain_deal_id, sector_number, sector_offset, sealing_status";

impl DealRow {
    fn of(d: &DealRecord) -> Result<DealRow, StoreError> {
        let opt = |what: &str, v: Option<u64>| v.map(|v| to_i64(what, v)).transpose();
        Ok(DealRow {
            uuid: d.uuid.to_string(),
            params: d.params_bytes.clone(),
            proposal_cid: d.proposal_cid.to_string(),
            signed_proposal_cid: d.signed_proposal_cid.to_string(),
            client_peer_id: d.client_peer_id.clone(),
            created_at_unix_nanos: d.created_at_unix_nanos,
            checkpoint: d.checkpoint.name().to_owned(),
            error: d.error.clone(),
            n_bytes_received: to_i64("n_bytes_received", d.n_bytes_received)?,
            publish_cid: d.publish_cid.as_ref().map(Cid::to_string),
            chain_deal_id: to_i64("chain_deal_id", d.chain_deal_id)?,
            sector_number: opt("sector_number", d.sector_number)?,
            sector_offset: opt("sector_offset", d.sector_offset)?,
            sealing_status: d.sealing_status.clone(),
            piece_cid: d.params.client_deal_proposal.proposal.piece_cid.to_string(),
            client: d.params.client_deal_proposal.proposal.client.to_string(),
            is_offline: d.params.is_offline,
        })
    }

    fn decode(row: &PgRow) -> Result<DealRecord, StoreError> {
        let uuid: String = row
            .try_get("uuid")
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let corrupt = |message: String| StoreError::Corrupt {
            key: uuid.clone(),
            message,
        };
        let get = |e: sqlx::Error| corrupt(e.to_string());
        let opt_u64 = |what: &str, v: Option<i64>| v.map(|v| to_u64(&uuid, what, v)).transpose();
        let params: Vec<u8> = row.try_get("params").map_err(get)?;
        let stored = StoredDeal {
            v: 1,
            uuid: uuid.clone(),
            params: hex::encode(params),
            signed_proposal_cid: row.try_get("signed_proposal_cid").map_err(get)?,
            proposal_cid: row.try_get("proposal_cid").map_err(get)?,
            client_peer_id: row.try_get("client_peer_id").map_err(get)?,
            created_at_unix_nanos: row.try_get("created_at_unix_nanos").map_err(get)?,
            checkpoint: row.try_get("checkpoint").map_err(get)?,
            error: row.try_get("error").map_err(get)?,
            n_bytes_received: to_u64(
                &uuid,
                "n_bytes_received",
                row.try_get("n_bytes_received").map_err(get)?,
            )?,
            publish_cid: row.try_get("publish_cid").map_err(get)?,
            chain_deal_id: to_u64(
                &uuid,
                "chain_deal_id",
                row.try_get("chain_deal_id").map_err(get)?,
            )?,
            sector_number: opt_u64("sector_number", row.try_get("sector_number").map_err(get)?)?,
            sector_offset: opt_u64("sector_offset", row.try_get("sector_offset").map_err(get)?)?,
            sealing_status: row.try_get("sealing_status").map_err(get)?,
        };
        stored.into_record().map_err(corrupt)
    }
}

/// The lease check at the start of a fenced transaction: locks the row against a
/// concurrent acquisition until the transaction ends.
const FENCE_SQL: &str = "SELECT generation FROM libp2p \
     WHERE singleton AND holder = $1 AND generation = $2 AND expires_at > now() FOR SHARE";

async fn check_fence(
    tx: &mut sqlx::PgConnection,
    fence: &Fence,
    generation: i64,
) -> Result<(), Fail> {
    let held = sqlx::query(FENCE_SQL)
        .bind(&fence.node)
        .bind(generation)
        .fetch_optional(&mut *tx)
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(Fail::Store(StoreError::Fenced {
            node: fence.node.clone(),
            generation: fence.generation,
        })),
    }
}

fn grant_of(row: &PgRow) -> Result<LeaseGrant, Fail> {
    let generation: i64 = row.try_get("generation")?;
    Ok(LeaseGrant {
        generation: u64::try_from(generation).unwrap_or(0),
        at: row.try_get("now_ms")?,
        expires_at: row.try_get("expires_ms")?,
    })
}

impl PostgresStore {
    /// Connect to `url` (a libpq connection string: URI or key=value, one host or
    /// several), walk the hosts in order to the first acceptable one, and run the
    /// migrations there.
    pub async fn connect(url: &str, opts: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let target = pg_connect::parse(url).map_err(StoreError::Backend)?;
        let describe = format!("postgres at {}", target.describe());
        let open = StoreError::Backend;
        let connecting = async {
            let chosen = pg_connect::choose(&target)
                .await
                .map_err(|e| open(format!("{describe}: {e}")))?;
            let pool = pool_options(&opts, target.session_attrs)
                .connect_with(pg_connect::options_for(&target, &chosen.host))
                .await
                .map_err(|e| open(format!("{describe}: {}: {e}", chosen.host)))?;
            let migrations = migrator();
            migrations
                .run(&pool)
                .await
                .map_err(|e| open(format!("{describe}: migrations: {e}")))?;
            warn_if_newer_schema(&pool, &migrations).await;
            fill_piece_cids(&pool)
                .await
                .map_err(|e| open(format!("{describe}: filling deals.piece_cid: {e}")))?;
            fill_offline_flags(&pool)
                .await
                .map_err(|e| open(format!("{describe}: filling deals.is_offline: {e}")))?;
            Ok::<_, StoreError>((pool, chosen))
        };
        let (pool, chosen) = timeout(opts.connect_timeout, connecting)
            .await
            .ok_or_else(|| {
                open(format!(
                    "{describe}: no answer within {:?}",
                    opts.connect_timeout
                ))
            })??;
        tracing::info!(host = %chosen.host, writable = chosen.role.writable(), "store: connected");
        Ok(PostgresStore {
            current: Arc::new(RwLock::new(Current {
                pool,
                host: chosen.host,
                writable: chosen.role.writable(),
            })),
            target: Arc::new(target),
            walking: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            last_walk: Arc::new(std::sync::Mutex::new(None)),
            lease: Arc::new(LeaseConnSlot::default()),
            opts,
            describe,
        })
    }

    /// The pool of the server chosen now.
    fn pool(&self) -> PgPool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pool
            .clone()
    }

    /// The host talked to now and whether it took writes when last asked.
    pub fn server(&self) -> (String, bool) {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        (c.host.to_string(), c.writable)
    }

    /// After a failure that may mean the server is lost or demoted: walk the hosts
    /// again (libpq's order and rule) and move to the first acceptable one. Runs on a
    /// thread of its own, so a caller whose bound drops its operation does not cut the
    /// walk short; one walk at a time, at most one per [`RESELECT_EVERY`].
    fn reselect(&self) {
        use std::sync::atomic::Ordering;
        {
            let mut last = self.last_walk.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < RESELECT_EVERY)
                || self.walking.swap(true, Ordering::AcqRel)
            {
                return;
            }
            *last = Some(Instant::now());
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("dealport-db-walk".into())
            .spawn(move || {
                async_io::block_on(me.walk());
                me.walking.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "store: cannot start a walk of the database hosts");
            self.walking.store(false, Ordering::Release);
        }
    }

    /// One walk. On a new host: the current pool's connect options move there (its
    /// connection attempts under way land on the new server), and a fresh pool takes
    /// over, so no idle connection to a demoted server is lent again; the old pool is
    /// closed once its connections come back (bounded).
    async fn walk(&self) {
        let chosen = match pg_connect::choose(&self.target).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "store: no acceptable database server");
                return;
            }
        };
        let old = {
            let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
            cur.writable = chosen.role.writable();
            if cur.host == chosen.host {
                return;
            }
            tracing::warn!(from = %cur.host, to = %chosen.host, "store: moving to another database server");
            let opts = pg_connect::options_for(&self.target, &chosen.host);
            cur.pool.set_connect_options(opts.clone());
            let fresh = pool_options(&self.opts, self.target.session_attrs).connect_lazy_with(opts);
            cur.host = chosen.host;
            std::mem::replace(&mut cur.pool, fresh)
        };
        let _ = timeout(Duration::from_secs(10), old.close()).await;
    }

    /// Close the pool's connections.
    pub async fn close(&self) {
        self.lease.close().await;
        self.pool().close().await;
    }

    /// The lease's own connection to the host talked to now (see `pg_lease_conn`).
    async fn lease_conn(&self) -> Result<LeaseConn, Fail> {
        let host = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .host
            .clone();
        Ok(self.lease.take(&self.target, &host).await?)
    }

    /// At most `limit` deals matching `filter` (which reads `$1`, the text `key`), after
    /// `after` in UUID order: the one paged read behind the listing, the live index and
    /// the piece lookup. PostgreSQL orders uuid values by their bytes, as sled does.
    async fn deals_page(
        &self,
        what: &'static str,
        filter: &str,
        key: Option<String>,
        after: Option<DealUuid>,
        limit: usize,
    ) -> Result<Vec<DealRecord>, StoreError> {
        let sql = format!(
            "SELECT {DEAL_COLUMNS} FROM deals WHERE ({filter}) \
             AND ($2::uuid IS NULL OR deals.uuid > $2::uuid) ORDER BY deals.uuid LIMIT $3"
        );
        let after = after.map(|u| u.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = with_retry!(self, what, async {
            Ok::<_, Fail>(
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(key.clone())
                    .bind(after.clone())
                    .bind(limit)
                    .fetch_all(&self.pool())
                    .await?,
            )
        })?;
        rows.iter().map(DealRow::decode).collect()
    }

    /// The dashboard's list: the filter repeats a partial index's predicate and the
    /// order is the index's, so the planner reads one index range (migration 5).
    async fn query_deals_impl(&self, q: &DealQuery) -> Result<Vec<DealRecord>, StoreError> {
        let state = match q.state {
            StateFilter::Any => "TRUE",
            StateFilter::Failed => "error IS NOT NULL",
            StateFilter::InProgress => "error IS NULL AND checkpoint <> 'Complete'",
            StateFilter::Done => "error IS NULL AND checkpoint = 'Complete'",
            StateFilter::At(_) => "error IS NULL AND checkpoint = $2",
        };
        let (cmp, dir) = match q.order {
            Order::Newest => ("<", "DESC"),
            Order::Oldest => (">", "ASC"),
        };
        let sql = format!(
            "SELECT {DEAL_COLUMNS} FROM deals WHERE ({state}) \
             AND ($1::text IS NULL OR client = $1) \
             AND ($3::bigint IS NULL OR (created_at_unix_nanos, uuid) {cmp} ($3, $4::uuid)) \
             ORDER BY created_at_unix_nanos {dir}, uuid {dir} LIMIT $5"
        );
        let at = match q.state {
            StateFilter::At(c) => Some(c.name().to_owned()),
            _ => None,
        };
        let (after_t, after_u) = match q.after {
            Some(c) => (Some(c.created_at_unix_nanos), Some(c.uuid.to_string())),
            None => (None, None),
        };
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let rows = with_retry!(self, "query deals", async {
            Ok::<_, Fail>(
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(q.client.clone())
                    .bind(at.clone())
                    .bind(after_t)
                    .bind(after_u.clone())
                    .bind(limit)
                    .fetch_all(&self.pool())
                    .await?,
            )
        })?;
        rows.iter().map(DealRow::decode).collect()
    }

    async fn state_counts_impl(&self) -> Result<StateCounts, StoreError> {
        let rows: Vec<(String, bool, i64)> = with_retry!(self, "count deals", async {
            Ok::<_, Fail>(
                sqlx::query_as(
                    "SELECT checkpoint, failed, sum(n)::bigint FROM deal_state_counts \
                     GROUP BY 1, 2 HAVING sum(n) > 0",
                )
                .fetch_all(&self.pool())
                .await?,
            )
        })?;
        Ok(StateCounts(
            rows.into_iter()
                .filter_map(|(c, failed, n)| {
                    let c = super::checkpoint_from_name(&c)?;
                    Some((state_code(c, failed), u64::try_from(n).ok()?))
                })
                .collect(),
        ))
    }

    async fn hourly_counts_impl(&self, since_hour: i64) -> Result<Vec<HourCount>, StoreError> {
        let since = since_hour.saturating_mul(dealport_core::dashboard::HOUR_NANOS);
        let rows: Vec<(i64, i64, i64)> = with_retry!(self, "count deals per hour", async {
            Ok::<_, Fail>(
                sqlx::query_as(
                    "SELECT created_at_unix_nanos / 3600000000000 AS hour, count(*), \
                     count(error) FROM deals WHERE created_at_unix_nanos >= $1 \
                     GROUP BY 1 ORDER BY 1",
                )
                .bind(since)
                .fetch_all(&self.pool())
                .await?,
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|(hour, accepted, failed)| HourCount {
                hour,
                accepted: u64::try_from(accepted).unwrap_or(0),
                failed: u64::try_from(failed).unwrap_or(0),
            })
            .collect())
    }

    async fn deal_timeline_impl(&self, uuid: DealUuid) -> Result<Vec<(u8, i64)>, StoreError> {
        let sql = format!(
            "SELECT checkpoint, failed, {} FROM deal_timeline WHERE uuid = $1::uuid",
            ms_sql("at")
        );
        let rows: Vec<(String, bool, i64)> = with_retry!(self, "read a deal's timeline", async {
            Ok::<_, Fail>(
                sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(uuid.to_string())
                    .fetch_all(&self.pool())
                    .await?,
            )
        })?;
        let mut out: Vec<(u8, i64)> = rows
            .into_iter()
            .filter_map(|(c, failed, ms)| {
                Some((state_code(super::checkpoint_from_name(&c)?, failed), ms))
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    async fn deal_where(
        &self,
        clause: &str,
        key: String,
    ) -> Result<Option<DealRecord>, StoreError> {
        let sql = format!("SELECT {DEAL_COLUMNS} FROM deals WHERE {clause}");
        let row = with_retry!(self, "read deal", async {
            Ok::<_, Fail>(
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(&key)
                    .fetch_optional(&self.pool())
                    .await?,
            )
        })?;
        row.as_ref().map(DealRow::decode).transpose()
    }

    /// Load `deals` in one transaction, skipping any already known: an administrative
    /// load (benchmarks, imports) made while no node holds the lease, so unfenced.
    /// How many were written.
    pub async fn bulk_load(&self, deals: &[DealRecord]) -> Result<usize, StoreError> {
        let rows = deals
            .iter()
            .map(DealRow::of)
            .collect::<Result<Vec<_>, _>>()?;
        let db = |e: sqlx::Error| StoreError::Backend(format!("bulk load: {e}"));
        let mut tx = self.pool().begin().await.map_err(db)?;
        let written = insert_new_rows(&mut tx, &rows).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(written.iter().filter(|w| **w).count())
    }

    /// [`PostgresStore::bulk_load`] for deals brought from another store with their
    /// timelines (`(state code, unix ms)`, as [`Store::deal_timeline`] gives them): a
    /// deal written here gets exactly those timeline rows (not the insert's own, which
    /// would say now); a deal already known keeps what it has. How many were written.
    pub async fn bulk_load_history(
        &self,
        deals: &[(DealRecord, Vec<(u8, i64)>)],
    ) -> Result<usize, StoreError> {
        let rows = deals
            .iter()
            .map(|(d, _)| DealRow::of(d))
            .collect::<Result<Vec<_>, _>>()?;
        let db = |e: sqlx::Error| StoreError::Backend(format!("bulk load: {e}"));
        let mut tx = self.pool().begin().await.map_err(db)?;
        let inserted = insert_new_rows(&mut tx, &rows).await.map_err(db)?;
        let written: Vec<(&str, &Vec<(u8, i64)>)> = rows
            .iter()
            .zip(deals)
            .zip(inserted)
            .filter(|(_, w)| *w)
            .map(|((row, (_, timeline)), _)| (row.uuid.as_str(), timeline))
            .collect();
        let uuids: Vec<String> = written.iter().map(|(u, _)| u.to_string()).collect();
        sqlx::query("DELETE FROM deal_timeline WHERE uuid = ANY($1::uuid[])")
            .bind(&uuids)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let (mut u, mut c, mut f, mut ms) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (uuid, timeline) in &written {
            for (code, at) in timeline.iter() {
                if let Some((checkpoint, failed)) = from_state_code(*code) {
                    u.push(uuid.to_string());
                    c.push(checkpoint.name());
                    f.push(failed);
                    ms.push(*at);
                }
            }
        }
        sqlx::query(
            "INSERT INTO deal_timeline (uuid, checkpoint, failed, at) \
             SELECT u::uuid, c, f, 'epoch'::timestamptz + ms * interval '1 millisecond' \
             FROM UNNEST($1::text[], $2::text[], $3::bool[], $4::bigint[]) AS t(u, c, f, ms) \
             ON CONFLICT (uuid, checkpoint, failed) DO UPDATE SET at = EXCLUDED.at",
        )
        .bind(&u)
        .bind(&c)
        .bind(&f)
        .bind(&ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(written.len())
    }

    async fn insert_fenced(
        &self,
        fence: &Fence,
        deal: &DealRecord,
    ) -> Result<Inserted, StoreError> {
        let d = DealRow::of(deal)?;
        let generation = to_i64("generation", fence.generation)?;
        with_retry!(self, "insert deal", async {
            let mut tx = self.pool().begin().await?;
            check_fence(&mut tx, fence, generation).await?;
            let inserted = bind_new_deal(sqlx::query(INSERT_DEAL), &d, generation)
                .fetch_optional(&mut *tx)
                .await?;
            if inserted.is_some() {
                tx.commit().await?;
                return Ok(Inserted::Yes);
            }
            // Nothing written: say which deal is in the way, as the sled store does
            // (the UUID first, then the proposal).
            let by_uuid = sqlx::query("SELECT 1 FROM deals WHERE uuid = $1::uuid")
                .bind(&d.uuid)
                .fetch_optional(&mut *tx)
                .await?;
            if by_uuid.is_some() {
                tx.rollback().await?;
                return Ok(Inserted::UuidExists);
            }
            let other: Option<String> = sqlx::query_scalar(
                "SELECT uuid::text FROM deals WHERE proposal_cid = $1 \
                 OR signed_proposal_cid = $2 LIMIT 1",
            )
            .bind(&d.proposal_cid)
            .bind(&d.signed_proposal_cid)
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            match other.map(|u| DealUuid::parse(&u)) {
                Some(Ok(u)) => Ok(Inserted::ProposalExists(u)),
                Some(Err(e)) => Err(Fail::Store(StoreError::Backend(format!(
                    "stored uuid: {e}"
                )))),
                // The conflicting insert was rolled back meanwhile: try again.
                None => Err(Fail::Sql(sqlx::Error::Io(std::io::Error::other(
                    "a conflicting insert vanished",
                )))),
            }
        })
    }

    async fn update_fenced(&self, fence: &Fence, deal: &DealRecord) -> Result<(), StoreError> {
        let d = DealRow::of(deal)?;
        let generation = to_i64("generation", fence.generation)?;
        with_retry!(self, "update deal", async {
            let mut tx = self.pool().begin().await?;
            check_fence(&mut tx, fence, generation).await?;
            let done = bind_deal(
                sqlx::query(
                    "UPDATE deals SET params = $2, proposal_cid = $3, signed_proposal_cid = $4, \
                 client_peer_id = $5, created_at_unix_nanos = $6, checkpoint = $7, error = $8, \
                 n_bytes_received = $9, publish_cid = $10, chain_deal_id = $11, \
                 sector_number = $12, sector_offset = $13, sealing_status = $14, \
                 writer_generation = $15, updated_at = now() \
                 WHERE uuid = $1::uuid",
                ),
                &d,
                generation,
            )
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                tx.rollback().await?;
                return Err(Fail::Store(StoreError::NoSuchDeal(deal.uuid)));
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn identity_or_create_impl(
        &self,
        generate: Box<dyn FnOnce() -> Vec<u8> + Send>,
    ) -> Result<(Vec<u8>, bool), StoreError> {
        if let Some(k) = self.identity_impl().await? {
            return Ok((k, false));
        }
        let key = generate();
        let peer = peer_id_of(&key)?;
        // Insert the row, or fill a row the lease created; an existing key always wins.
        let created: Option<Vec<u8>> = with_retry!(self, "create identity", async {
            Ok::<_, Fail>(
                sqlx::query_scalar(
                    "INSERT INTO libp2p (singleton, priv_key, peer_id) VALUES (TRUE, $1, $2) \
                     ON CONFLICT (singleton) DO UPDATE SET priv_key = $1, peer_id = $2 \
                     WHERE libp2p.priv_key IS NULL RETURNING priv_key",
                )
                .bind(&key)
                .bind(&peer)
                .fetch_optional(&self.pool())
                .await?,
            )
        })?;
        match created {
            Some(k) => Ok((k, true)),
            None => match self.identity_impl().await? {
                Some(k) => Ok((k, false)),
                None => Err(StoreError::Backend(
                    "identity: the key vanished while it was being created".into(),
                )),
            },
        }
    }

    async fn identity_impl(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let key: Option<Option<Vec<u8>>> = with_retry!(self, "read identity", async {
            Ok::<_, Fail>(
                sqlx::query_scalar("SELECT priv_key FROM libp2p WHERE singleton")
                    .fetch_optional(&self.pool())
                    .await?,
            )
        })?;
        Ok(key.flatten())
    }

    async fn read_lease_impl(&self) -> Result<LeaseRead, StoreError> {
        let sql = format!(
            "SELECT {NOW_MS} AS now_ms, l.singleton, l.holder, l.generation, {} AS expires_ms \
             FROM (SELECT 1) AS one LEFT JOIN libp2p AS l ON l.singleton",
            ms_sql("l.expires_at")
        );
        let row = with_retry!(self, "read lease", async {
            let mut c = self.lease_conn().await?;
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_one(&mut c.conn)
                .await?;
            self.lease.give_back(c);
            Ok::<_, Fail>(row)
        })?;
        let get = |e: sqlx::Error| StoreError::Backend(format!("read lease: {e}"));
        let now: i64 = row.try_get("now_ms").map_err(get)?;
        let present: Option<bool> = row.try_get("singleton").map_err(get)?;
        let lease = match present {
            None => None,
            Some(_) => {
                let generation: i64 = row.try_get("generation").map_err(get)?;
                Some(LeaseRow {
                    holder: row.try_get("holder").map_err(get)?,
                    generation: to_u64("libp2p", "generation", generation)?,
                    expires_at: row.try_get("expires_ms").map_err(get)?,
                })
            }
        };
        Ok(LeaseRead { row: lease, now })
    }

    async fn try_acquire_impl(
        &self,
        node: &str,
        expect_generation: Option<u64>,
        ttl: Duration,
    ) -> Result<Option<LeaseGrant>, StoreError> {
        let ttl = ttl_ms(ttl);
        let returning = format!(
            "RETURNING generation, {NOW_MS} AS now_ms, {} AS expires_ms",
            ms_sql("expires_at")
        );
        let sql = match expect_generation {
            None => format!(
                "INSERT INTO libp2p (singleton, holder, generation, expires_at, updated_at) \
                 VALUES (TRUE, $1, 1, now() + $2 * interval '1 millisecond', now()) \
                 ON CONFLICT (singleton) DO NOTHING {returning}"
            ),
            Some(_) => format!(
                "UPDATE libp2p SET holder = $1, generation = generation + 1, \
                 expires_at = now() + $2 * interval '1 millisecond', updated_at = now(), \
                 local_listen = NULL \
                 WHERE singleton AND generation = $3 \
                 AND (holder IS NULL OR holder = $1 OR expires_at IS NULL OR expires_at <= now()) \
                 {returning}"
            ),
        };
        let expect = expect_generation
            .map(|g| to_i64("generation", g))
            .transpose()?;
        with_retry!(self, "acquire lease", async {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(node)
                .bind(ttl);
            if let Some(g) = expect {
                q = q.bind(g);
            }
            let mut c = self.lease_conn().await?;
            let row = q.fetch_optional(&mut c.conn).await?;
            self.lease.give_back(c);
            row.as_ref().map(grant_of).transpose()
        })
    }

    async fn renew_impl(
        &self,
        fence: &Fence,
        ttl: Duration,
    ) -> Result<Option<LeaseGrant>, StoreError> {
        let sql = format!(
            "UPDATE libp2p SET expires_at = now() + $3 * interval '1 millisecond', \
             updated_at = now() \
             WHERE singleton AND holder = $1 AND generation = $2 AND expires_at > now() \
             RETURNING generation, {NOW_MS} AS now_ms, {} AS expires_ms",
            ms_sql("expires_at")
        );
        let generation = to_i64("generation", fence.generation)?;
        with_retry!(self, "renew lease", async {
            let mut c = self.lease_conn().await?;
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(&fence.node)
                .bind(generation)
                .bind(ttl_ms(ttl))
                .fetch_optional(&mut c.conn)
                .await?;
            self.lease.give_back(c);
            row.as_ref().map(grant_of).transpose()
        })
    }

    async fn release_impl(&self, fence: &Fence) -> Result<bool, StoreError> {
        let generation = to_i64("generation", fence.generation)?;
        let done = with_retry!(self, "release lease", async {
            let mut c = self.lease_conn().await?;
            let done = sqlx::query(
                "UPDATE libp2p SET holder = NULL, expires_at = NULL, local_listen = NULL, \
                 updated_at = now() \
                 WHERE singleton AND holder = $1 AND generation = $2",
            )
            .bind(&fence.node)
            .bind(generation)
            .execute(&mut c.conn)
            .await?;
            self.lease.give_back(c);
            Ok::<_, Fail>(done)
        })?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_local_listen_impl(
        &self,
        fence: &Fence,
        local_listen: &str,
        announce: &[String],
    ) -> Result<(), StoreError> {
        let generation = to_i64("generation", fence.generation)?;
        let done = with_retry!(self, "set listen address", async {
            Ok::<_, Fail>(
                sqlx::query(
                    "UPDATE libp2p SET local_listen = $3, announce = $4 \
                     WHERE singleton AND holder = $1 AND generation = $2 AND expires_at > now()",
                )
                .bind(&fence.node)
                .bind(generation)
                .bind(local_listen)
                .bind(announce)
                .execute(&self.pool())
                .await?,
            )
        })?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Fenced {
                node: fence.node.clone(),
                generation: fence.generation,
            })
        }
    }

    async fn leader_state_impl(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        with_retry!(self, "read leader state", async {
            Ok::<_, Fail>(
                sqlx::query_scalar("SELECT value FROM leader_state WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool())
                    .await?,
            )
        })
    }

    /// Upsert under the fence: the lease row is checked in the same statement.
    async fn put_leader_state_impl(
        &self,
        fence: &Fence,
        name: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let generation = to_i64("generation", fence.generation)?;
        let done = with_retry!(self, "write leader state", async {
            Ok::<_, Fail>(
                sqlx::query(
                    "INSERT INTO leader_state (name, value) \
                     SELECT $3, $4 FROM libp2p \
                     WHERE singleton AND holder = $1 AND generation = $2 AND expires_at > now() \
                     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                )
                .bind(&fence.node)
                .bind(generation)
                .bind(name)
                .bind(value)
                .execute(&self.pool())
                .await?,
            )
        })?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Fenced {
                node: fence.node.clone(),
                generation: fence.generation,
            })
        }
    }

    async fn index_state_impl(&self, piece: &Cid) -> Result<IndexState, StoreError> {
        let row = with_retry!(self, "read a piece's index state", async {
            Ok::<_, Fail>(
                sqlx::query("SELECT state, blocks, reason FROM piece_index WHERE piece = $1")
                    .bind(piece.as_bytes())
                    .fetch_optional(&self.pool())
                    .await?,
            )
        })?;
        let Some(row) = row else {
            return Ok(IndexState::NotYet);
        };
        let key = format!("piece_index/{piece}");
        let get = |e: sqlx::Error| StoreError::Corrupt {
            key: key.clone(),
            message: e.to_string(),
        };
        let state: String = row.try_get("state").map_err(get)?;
        let blocks: Option<i64> = row.try_get("blocks").map_err(get)?;
        let blocks = blocks.map(|b| to_u64(&key, "blocks", b)).transpose()?;
        IndexState::from_parts(&state, blocks, row.try_get("reason").map_err(get)?).ok_or_else(
            || StoreError::Corrupt {
                key: key.clone(),
                message: format!("state {state:?} with the wrong parts"),
            },
        )
    }

    /// One statement per batch: the entries go as three arrays.
    async fn put_blocks_impl(&self, piece: &Cid, entries: &[BlockEntry]) -> Result<(), StoreError> {
        let mut offsets = Vec::with_capacity(entries.len());
        let mut lengths = Vec::with_capacity(entries.len());
        let mut multihashes = Vec::with_capacity(entries.len());
        for e in entries {
            offsets.push(to_i64("block offset", e.offset)?);
            lengths.push(to_i64("block length", e.length)?);
            multihashes.push(e.multihash.clone());
        }
        with_retry!(self, "write a piece's block entries", async {
            sqlx::query(
                "INSERT INTO piece_blocks (piece, block_offset, length, multihash)                  SELECT $1, * FROM UNNEST($2::bigint[], $3::bigint[], $4::bytea[])                  ON CONFLICT (piece, block_offset)                  DO UPDATE SET length = EXCLUDED.length, multihash = EXCLUDED.multihash",
            )
            .bind(piece.as_bytes())
            .bind(&offsets)
            .bind(&lengths)
            .bind(&multihashes)
            .execute(&self.pool())
            .await?;
            Ok::<_, Fail>(())
        })
    }

    async fn set_index_state_impl(
        &self,
        piece: &Cid,
        state: &IndexState,
    ) -> Result<(), StoreError> {
        let blocks = state.blocks().map(|b| to_i64("blocks", b)).transpose()?;
        let reason = state.reason().map(str::to_owned);
        with_retry!(self, "write a piece's index state", async {
            let mut tx = self.pool().begin().await?;
            if blocks.is_none() {
                sqlx::query("DELETE FROM piece_blocks WHERE piece = $1")
                    .bind(piece.as_bytes())
                    .execute(&mut *tx)
                    .await?;
            }
            if *state == IndexState::NotYet {
                sqlx::query("DELETE FROM piece_index WHERE piece = $1")
                    .bind(piece.as_bytes())
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO piece_index (piece, state, blocks, reason)                      VALUES ($1, $2, $3, $4) ON CONFLICT (piece) DO UPDATE                      SET state = EXCLUDED.state, blocks = EXCLUDED.blocks, reason = EXCLUDED.reason",
                )
                .bind(piece.as_bytes())
                .bind(state.name())
                .bind(blocks)
                .bind(&reason)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<_, Fail>(())
        })
    }

    async fn blocks_page_impl(
        &self,
        piece: &Cid,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<BlockEntry>, StoreError> {
        let after = match after.map(i64::try_from) {
            None => -1,
            Some(Ok(a)) => a,
            Some(Err(_)) => return Ok(Vec::new()),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = with_retry!(self, "read a page of a piece's blocks", async {
            Ok::<_, Fail>(
                sqlx::query(
                    "SELECT block_offset, length, multihash FROM piece_blocks                      WHERE piece = $1 AND block_offset > $2 ORDER BY block_offset LIMIT $3",
                )
                .bind(piece.as_bytes())
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool())
                .await?,
            )
        })?;
        let key = format!("piece_blocks/{piece}");
        let get = |e: sqlx::Error| StoreError::Corrupt {
            key: key.clone(),
            message: e.to_string(),
        };
        rows.iter()
            .map(|r| {
                Ok(BlockEntry {
                    offset: to_u64(&key, "offset", r.try_get("block_offset").map_err(get)?)?,
                    length: to_u64(&key, "length", r.try_get("length").map_err(get)?)?,
                    multihash: r.try_get("multihash").map_err(get)?,
                })
            })
            .collect()
    }

    async fn by_multihash_impl(
        &self,
        multihash: &[u8],
        limit: usize,
    ) -> Result<Vec<BlockLocation>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = with_retry!(self, "look a block up by multihash", async {
            Ok::<_, Fail>(
                sqlx::query(
                    "SELECT piece, block_offset, length FROM piece_blocks WHERE multihash = $1                      ORDER BY piece, block_offset LIMIT $2",
                )
                .bind(multihash)
                .bind(limit)
                .fetch_all(&self.pool())
                .await?,
            )
        })?;
        let key = format!("piece_blocks/multihash {}", hex::encode(multihash));
        let get = |e: sqlx::Error| StoreError::Corrupt {
            key: key.clone(),
            message: e.to_string(),
        };
        rows.iter()
            .map(|r| {
                let piece: Vec<u8> = r.try_get("piece").map_err(get)?;
                Ok(BlockLocation {
                    piece: Cid::from_bytes(&piece).map_err(|e| StoreError::Corrupt {
                        key: key.clone(),
                        message: format!("piece CID: {e}"),
                    })?,
                    offset: to_u64(&key, "offset", r.try_get("block_offset").map_err(get)?)?,
                    length: to_u64(&key, "length", r.try_get("length").map_err(get)?)?,
                })
            })
            .collect()
    }

    async fn relay_target_impl(&self) -> Result<Option<RelayTarget>, StoreError> {
        let row = with_retry!(self, "read relay target", async {
            Ok::<_, Fail>(
                sqlx::query(
                    "SELECT local_listen, \
                     (holder IS NOT NULL AND expires_at IS NOT NULL AND expires_at > now()) AS live \
                     FROM libp2p WHERE singleton AND local_listen IS NOT NULL",
                )
                .fetch_optional(&self.pool())
                .await?,
            )
        })?;
        let get = |e: sqlx::Error| StoreError::Backend(format!("read relay target: {e}"));
        row.map(|r| {
            Ok(RelayTarget {
                local_listen: r.try_get("local_listen").map_err(get)?,
                live: r.try_get("live").map_err(get)?,
            })
        })
        .transpose()
    }
}

impl PostgresStore {
    async fn ipni_head_impl(&self) -> Result<Option<IpniHead>, StoreError> {
        let row: Option<(Vec<u8>, i64)> = with_retry!(self, "read the ipni head", async {
            Ok::<_, Fail>(
                sqlx::query_as("SELECT cid, seq FROM ipni_head WHERE singleton")
                    .fetch_optional(&self.pool())
                    .await?,
            )
        })?;
        row.map(|(cid, seq)| {
            Ok(IpniHead {
                cid: stored_cid("ipni_head", &cid)?,
                seq: to_u64("ipni_head", "seq", seq)?,
            })
        })
        .transpose()
    }

    async fn ipni_block_impl(&self, cid: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        with_retry!(self, "read an ipni block", async {
            Ok::<_, Fail>(
                sqlx::query_scalar("SELECT bytes FROM ipni_blocks WHERE cid = $1")
                    .bind(cid.as_bytes())
                    .fetch_optional(&self.pool())
                    .await?,
            )
        })
    }

    async fn put_ipni_chunk_impl(&self, block: &Block) -> Result<(), StoreError> {
        with_retry!(self, "write an ipni chunk", async {
            sqlx::query(
                "INSERT INTO ipni_blocks (cid, bytes) VALUES ($1, $2) ON CONFLICT (cid) DO NOTHING",
            )
            .bind(block.cid.as_bytes())
            .bind(&block.bytes)
            .execute(&self.pool())
            .await?;
            Ok::<_, Fail>(())
        })
    }

    async fn publish_ipni_ad_impl(
        &self,
        fence: &Fence,
        p: &IpniPublish,
    ) -> Result<Published, StoreError> {
        let generation = to_i64("generation", fence.generation)?;
        let deal = p.deal.to_string();
        let part = i32::try_from(p.part)
            .map_err(|_| StoreError::Backend(format!("ipni part {} too large", p.part)))?;
        with_retry!(self, "publish an ipni advertisement", async {
            let mut tx = self.pool().begin().await?;
            check_fence(&mut tx, fence, generation).await?;
            // First: a retry after a commit whose answer was lost finds its own ad.
            let done: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT cid FROM ipni_ads WHERE deal_uuid = $1::uuid AND is_rm = $2 AND part = $3",
            )
            .bind(&deal)
            .bind(p.is_rm)
            .bind(part)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(cid) = done {
                tx.rollback().await?;
                return Ok(Published::Already(
                    stored_cid("ipni_ads", &cid).map_err(Fail::Store)?,
                ));
            }
            let head: Option<(Vec<u8>, i64)> =
                sqlx::query_as("SELECT cid, seq FROM ipni_head WHERE singleton FOR UPDATE")
                    .fetch_optional(&mut *tx)
                    .await?;
            let (at_head, seq) = match &head {
                None => (p.previous.is_none(), 1i64),
                Some((cid, seq)) => (
                    p.previous
                        .as_ref()
                        .is_some_and(|prev| prev.as_bytes() == cid.as_slice()),
                    seq + 1,
                ),
            };
            if !at_head {
                tx.rollback().await?;
                return Ok(Published::HeadMoved);
            }
            sqlx::query(
                "INSERT INTO ipni_blocks (cid, bytes) VALUES ($1, $2) ON CONFLICT (cid) DO NOTHING",
            )
            .bind(p.ad.cid.as_bytes())
            .bind(&p.ad.bytes)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO ipni_ads (cid, seq, previous, deal_uuid, is_rm, part, writer_generation) \
                 VALUES ($1, $2, $3, $4::uuid, $5, $6, $7)",
            )
            .bind(p.ad.cid.as_bytes())
            .bind(seq)
            .bind(p.previous.as_ref().map(|c| c.as_bytes().to_vec()))
            .bind(&deal)
            .bind(p.is_rm)
            .bind(part)
            .bind(generation)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO ipni_head (singleton, cid, seq) VALUES (TRUE, $1, $2) \
                 ON CONFLICT (singleton) DO UPDATE SET cid = EXCLUDED.cid, seq = EXCLUDED.seq",
            )
            .bind(p.ad.cid.as_bytes())
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            let mark = if p.is_rm {
                "DELETE FROM ipni_announced WHERE deal_uuid = $1::uuid"
            } else {
                "INSERT INTO ipni_announced (deal_uuid) VALUES ($1::uuid) ON CONFLICT DO NOTHING"
            };
            sqlx::query(mark).bind(&deal).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Published::Yes { seq: seq as u64 })
        })
    }

    async fn ipni_ads_of_deal_impl(&self, deal: DealUuid) -> Result<Vec<IpniAdRef>, StoreError> {
        let rows: Vec<(Vec<u8>, bool, i32, i64)> = with_retry!(
            self,
            "read a deal's ipni ads",
            async {
                Ok::<_, Fail>(
                sqlx::query_as(
                    "SELECT cid, is_rm, part, seq FROM ipni_ads WHERE deal_uuid = $1::uuid ORDER BY seq",
                )
                .bind(deal.to_string())
                .fetch_all(&self.pool())
                .await?,
            )
            }
        )?;
        rows.into_iter()
            .map(|(cid, is_rm, part, seq)| {
                Ok(IpniAdRef {
                    cid: stored_cid("ipni_ads", &cid)?,
                    is_rm,
                    part: u32::try_from(part).unwrap_or(0),
                    seq: to_u64("ipni_ads", "seq", seq)?,
                })
            })
            .collect()
    }

    /// [`Store::live_uuids_at`]: the live partial index's own columns, no deal read.
    async fn live_uuids_at_impl(
        &self,
        checkpoint: Checkpoint,
        after: Option<DealUuid>,
        limit: usize,
    ) -> Result<Vec<DealUuid>, StoreError> {
        if checkpoint == Checkpoint::Complete {
            return Ok(Vec::new());
        }
        let after = after.map(|u| u.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT uuid::text FROM deals WHERE ({LIVE_AT}) \
             AND ($2::uuid IS NULL OR uuid > $2::uuid) ORDER BY uuid LIMIT $3"
        );
        let rows: Vec<String> = with_retry!(self, "list live deal UUIDs", async {
            Ok::<_, Fail>(
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(checkpoint.name())
                    .bind(&after)
                    .bind(limit)
                    .fetch_all(&self.pool())
                    .await?,
            )
        })?;
        stored_uuids("deals", &rows)
    }

    /// One page behind [`Store::awaiting_download`]: UUIDs from migration 8's index
    /// (the filter repeats its predicate, so the planner reads it), each with whether its
    /// deal is online. A row whose flag is NULL (written by an older node) has its deal
    /// read to find out; a node fills those flags in at connect, so this is rare.
    async fn awaiting_download_page(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> Result<Vec<(DealUuid, bool)>, StoreError> {
        let after = after.map(|u| u.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = "SELECT uuid::text, is_offline FROM deals \
             WHERE checkpoint = 'Accepted' AND error IS NULL AND is_offline IS NOT TRUE \
             AND ($1::uuid IS NULL OR uuid > $1::uuid) ORDER BY uuid LIMIT $2";
        let rows: Vec<(String, Option<bool>)> =
            with_retry!(self, "list deals awaiting download", async {
                Ok::<_, Fail>(
                    sqlx::query_as(sql)
                        .bind(&after)
                        .bind(limit)
                        .fetch_all(&self.pool())
                        .await?,
                )
            })?;
        let (texts, flags): (Vec<String>, Vec<Option<bool>>) = rows.into_iter().unzip();
        let mut page = Vec::with_capacity(texts.len());
        for (uuid, flag) in stored_uuids("deals", &texts)?.into_iter().zip(flags) {
            let online = match flag {
                Some(offline) => !offline,
                None => self
                    .deal_by_uuid(uuid)
                    .await?
                    .is_some_and(|d| !d.params.is_offline),
            };
            page.push((uuid, online));
        }
        Ok(page)
    }

    async fn ipni_announced_page_impl(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> Result<Vec<DealUuid>, StoreError> {
        let after = after.map(|u| u.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<String> = with_retry!(self, "read the announced deals", async {
            Ok::<_, Fail>(
                sqlx::query_scalar(
                    "SELECT deal_uuid::text FROM ipni_announced \
                     WHERE $1::uuid IS NULL OR deal_uuid > $1::uuid ORDER BY deal_uuid LIMIT $2",
                )
                .bind(&after)
                .bind(limit)
                .fetch_all(&self.pool())
                .await?,
            )
        })?;
        stored_uuids("ipni_announced", &rows)
    }
}

/// UUIDs read as text from a column of `table`.
fn stored_uuids(table: &str, rows: &[String]) -> Result<Vec<DealUuid>, StoreError> {
    rows.iter()
        .map(|u| {
            DealUuid::parse(u).map_err(|e| StoreError::Corrupt {
                key: format!("{table}/{u}"),
                message: e.to_string(),
            })
        })
        .collect()
}

/// A CID read from a column.
fn stored_cid(table: &str, bytes: &[u8]) -> Result<Cid, StoreError> {
    Cid::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        key: format!("{table}/{}", hex::encode(bytes)),
        message: e.to_string(),
    })
}

impl Store for PostgresStore {
    fn identity_or_create<'a>(
        &'a self,
        generate: Box<dyn FnOnce() -> Vec<u8> + Send>,
    ) -> StoreFuture<'a, (Vec<u8>, bool)> {
        Box::pin(self.identity_or_create_impl(generate))
    }

    fn identity(&self) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(self.identity_impl())
    }

    /// Refused: a cluster store takes deal writes only under a lease.
    fn insert_new_deal<'a>(&'a self, _deal: &'a DealRecord) -> StoreFuture<'a, Inserted> {
        Box::pin(async { Err(StoreError::NeedsLease("insert_new_deal")) })
    }

    /// Refused: a cluster store takes deal writes only under a lease.
    fn update_deal<'a>(&'a self, _deal: &'a DealRecord) -> StoreFuture<'a, ()> {
        Box::pin(async { Err(StoreError::NeedsLease("update_deal")) })
    }

    fn deal_by_uuid(&self, uuid: DealUuid) -> StoreFuture<'_, Option<DealRecord>> {
        Box::pin(self.deal_where("uuid = $1::uuid", uuid.to_string()))
    }

    fn deal_by_proposal_cid<'a>(&'a self, cid: &'a Cid) -> StoreFuture<'a, Option<DealRecord>> {
        Box::pin(self.deal_where("proposal_cid = $1", cid.to_string()))
    }

    fn deal_by_signed_proposal_cid<'a>(
        &'a self,
        cid: &'a Cid,
    ) -> StoreFuture<'a, Option<DealRecord>> {
        Box::pin(self.deal_where("signed_proposal_cid = $1", cid.to_string()))
    }

    /// One query: the rows under either key, each told apart by what it matched.
    fn deals_for_proposal<'a>(
        &'a self,
        uuid: DealUuid,
        proposal_cid: &'a Cid,
    ) -> StoreFuture<'a, (Option<DealRecord>, Option<DealRecord>)> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {DEAL_COLUMNS}, deals.uuid = $1::uuid AS is_uuid, \
                 proposal_cid = $2 AS is_proposal \
                 FROM deals WHERE deals.uuid = $1::uuid OR proposal_cid = $2"
            );
            let (uuid, cid) = (uuid.to_string(), proposal_cid.to_string());
            let rows = with_retry!(self, "read deals of a proposal", async {
                Ok::<_, Fail>(
                    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                        .bind(&uuid)
                        .bind(&cid)
                        .fetch_all(&self.pool())
                        .await?,
                )
            })?;
            let (mut by_uuid, mut by_proposal) = (None, None);
            for row in &rows {
                let flag = |name: &str| {
                    row.try_get::<bool, _>(name)
                        .map_err(|e| StoreError::Backend(e.to_string()))
                };
                let deal = DealRow::decode(row)?;
                if flag("is_proposal")? {
                    by_proposal = Some(deal.clone());
                }
                if flag("is_uuid")? {
                    by_uuid = Some(deal);
                }
            }
            Ok((by_uuid, by_proposal))
        })
    }

    fn list_deals(&self) -> StoreFuture<'_, Vec<DealRecord>> {
        Box::pin(async move {
            let sql = format!("SELECT {DEAL_COLUMNS} FROM deals ORDER BY deals.uuid");
            let rows = with_retry!(self, "list deals", async {
                Ok::<_, Fail>(
                    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                        .fetch_all(&self.pool())
                        .await?,
                )
            })?;
            rows.iter().map(DealRow::decode).collect()
        })
    }

    fn list_deals_page(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealRecord>> {
        Box::pin(self.deals_page(
            "list a page of deals",
            "$1::text IS NULL",
            None,
            after,
            limit,
        ))
    }

    fn awaiting_download(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealUuid>> {
        let limit = limit.max(1);
        let page = move |after| -> StoreFuture<'_, Vec<(DealUuid, bool)>> {
            Box::pin(self.awaiting_download_page(after, limit))
        };
        Box::pin(super::online_only(page, after, limit))
    }

    fn live_deals_at(
        &self,
        checkpoint: Checkpoint,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealRecord>> {
        Box::pin(async move {
            if checkpoint == Checkpoint::Complete {
                return Ok(Vec::new());
            }
            let key = Some(checkpoint.name().to_owned());
            self.deals_page("list live deals", LIVE_AT, key, after, limit)
                .await
        })
    }

    fn live_uuids_at(
        &self,
        checkpoint: Checkpoint,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealUuid>> {
        Box::pin(self.live_uuids_at_impl(checkpoint, after, limit))
    }

    fn deals_by_piece_cid<'a>(
        &'a self,
        piece: &'a Cid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<DealRecord>> {
        let key = Some(piece.to_string());
        Box::pin(self.deals_page(
            "read deals by piece CID",
            "piece_cid = $1",
            key,
            None,
            limit,
        ))
    }

    fn query_deals<'a>(&'a self, q: &'a DealQuery) -> StoreFuture<'a, Vec<DealRecord>> {
        Box::pin(self.query_deals_impl(q))
    }

    fn state_counts(&self) -> StoreFuture<'_, StateCounts> {
        Box::pin(self.state_counts_impl())
    }

    fn hourly_counts(&self, since_hour: i64) -> StoreFuture<'_, Vec<HourCount>> {
        Box::pin(self.hourly_counts_impl(since_hour))
    }

    fn deal_timeline(&self, uuid: DealUuid) -> StoreFuture<'_, Vec<(u8, i64)>> {
        Box::pin(self.deal_timeline_impl(uuid))
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn server(&self) -> Option<(String, bool)> {
        Some(PostgresStore::server(self))
    }

    fn insert_new_deal_fenced<'a>(
        &'a self,
        fence: &'a Fence,
        deal: &'a DealRecord,
    ) -> StoreFuture<'a, Inserted> {
        Box::pin(self.insert_fenced(fence, deal))
    }

    fn update_deal_fenced<'a>(
        &'a self,
        fence: &'a Fence,
        deal: &'a DealRecord,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.update_fenced(fence, deal))
    }

    fn read_lease(&self) -> StoreFuture<'_, LeaseRead> {
        Box::pin(self.read_lease_impl())
    }

    fn try_acquire<'a>(
        &'a self,
        node: &'a str,
        expect_generation: Option<u64>,
        ttl: Duration,
    ) -> StoreFuture<'a, Option<LeaseGrant>> {
        Box::pin(self.try_acquire_impl(node, expect_generation, ttl))
    }

    fn renew<'a>(&'a self, fence: &'a Fence, ttl: Duration) -> StoreFuture<'a, Option<LeaseGrant>> {
        Box::pin(self.renew_impl(fence, ttl))
    }

    fn release<'a>(&'a self, fence: &'a Fence) -> StoreFuture<'a, bool> {
        Box::pin(self.release_impl(fence))
    }

    fn set_local_listen<'a>(
        &'a self,
        fence: &'a Fence,
        local_listen: &'a str,
        announce: &'a [String],
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.set_local_listen_impl(fence, local_listen, announce))
    }

    fn relay_target(&self) -> StoreFuture<'_, Option<RelayTarget>> {
        Box::pin(self.relay_target_impl())
    }

    fn piece_index_state<'a>(&'a self, piece: &'a Cid) -> StoreFuture<'a, IndexState> {
        Box::pin(self.index_state_impl(piece))
    }

    fn put_piece_blocks<'a>(
        &'a self,
        piece: &'a Cid,
        entries: &'a [BlockEntry],
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.put_blocks_impl(piece, entries))
    }

    fn set_piece_index_state<'a>(
        &'a self,
        piece: &'a Cid,
        state: &'a IndexState,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.set_index_state_impl(piece, state))
    }

    fn piece_blocks_page<'a>(
        &'a self,
        piece: &'a Cid,
        after: Option<u64>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<BlockEntry>> {
        Box::pin(self.blocks_page_impl(piece, after, limit))
    }

    fn blocks_by_multihash<'a>(
        &'a self,
        multihash: &'a [u8],
        limit: usize,
    ) -> StoreFuture<'a, Vec<BlockLocation>> {
        Box::pin(self.by_multihash_impl(multihash, limit))
    }

    fn ipni_head(&self) -> StoreFuture<'_, Option<IpniHead>> {
        Box::pin(self.ipni_head_impl())
    }

    fn ipni_block<'a>(&'a self, cid: &'a Cid) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(self.ipni_block_impl(cid))
    }

    fn put_ipni_chunk<'a>(&'a self, block: &'a Block) -> StoreFuture<'a, ()> {
        Box::pin(self.put_ipni_chunk_impl(block))
    }

    fn publish_ipni_ad<'a>(
        &'a self,
        fence: &'a Fence,
        ad: &'a IpniPublish,
    ) -> StoreFuture<'a, Published> {
        Box::pin(self.publish_ipni_ad_impl(fence, ad))
    }

    fn ipni_ads_of_deal(&self, deal: DealUuid) -> StoreFuture<'_, Vec<IpniAdRef>> {
        Box::pin(self.ipni_ads_of_deal_impl(deal))
    }

    fn ipni_announced_page(
        &self,
        after: Option<DealUuid>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DealUuid>> {
        Box::pin(self.ipni_announced_page_impl(after, limit))
    }

    fn leader_state<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(self.leader_state_impl(name))
    }

    fn put_leader_state<'a>(
        &'a self,
        fence: &'a Fence,
        name: &'a str,
        value: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.put_leader_state_impl(fence, name, value))
    }
}

/// A batch of rows from `select` (which reads `uuid` and `params`), each with its params
/// decoded: the fills at connect read what older rows lack from their params bytes,
/// which SQL cannot decode.
async fn decoded_batch(
    pool: &PgPool,
    select: &'static str,
) -> Result<Vec<(String, dealport_core::wire::DealParams)>, String> {
    let rows = sqlx::query(select)
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    rows.iter()
        .map(|row| {
            let uuid: String = row.try_get("uuid").map_err(|e| e.to_string())?;
            let params: Vec<u8> = row.try_get("params").map_err(|e| e.to_string())?;
            let decoded =
                <dealport_core::wire::DealParams as dealport_core::wire::Cbor>::from_cbor(&params)
                    .map_err(|e| format!("deal {uuid}: stored params do not decode: {e}"))?;
            Ok((uuid, decoded))
        })
        .collect()
}

/// Rows written before migrations 4 and 5 get their piece CID and client, read from
/// their params, a batch at a time (the indexes find the NULLs; nothing to do is one
/// indexed query each).
async fn fill_piece_cids(pool: &PgPool) -> Result<(), String> {
    loop {
        let batch = decoded_batch(
            pool,
            "(SELECT uuid::text AS uuid, params FROM deals WHERE piece_cid IS NULL LIMIT 500) \
             UNION (SELECT uuid::text AS uuid, params FROM deals WHERE client IS NULL LIMIT 500)",
        )
        .await?;
        if batch.is_empty() {
            return Ok(());
        }
        for (uuid, params) in batch {
            let proposal = params.client_deal_proposal.proposal;
            sqlx::query("UPDATE deals SET piece_cid = $2, client = $3 WHERE uuid = $1::uuid")
                .bind(&uuid)
                .bind(proposal.piece_cid.to_string())
                .bind(proposal.client.to_string())
                .execute(pool)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
}

/// `is_offline` of the deals at `Accepted` stored before migration 8 (the flag is in the
/// params bytes). Only those are read by it, and they are the work in flight, so this
/// stays short whatever the history; older finished deals keep NULL.
async fn fill_offline_flags(pool: &PgPool) -> Result<(), String> {
    loop {
        let batch = decoded_batch(
            pool,
            "SELECT uuid::text AS uuid, params FROM deals \
             WHERE is_offline IS NULL AND checkpoint = 'Accepted' AND error IS NULL LIMIT 500",
        )
        .await?;
        if batch.is_empty() {
            return Ok(());
        }
        let (uuids, flags): (Vec<String>, Vec<bool>) =
            batch.into_iter().map(|(u, p)| (u, p.is_offline)).unzip();
        // One statement per batch: this runs inside the connect deadline.
        sqlx::query(
            "UPDATE deals SET is_offline = f.offline \
             FROM unnest($1::text[], $2::bool[]) AS f(uuid, offline) \
             WHERE deals.uuid = f.uuid::uuid",
        )
        .bind(&uuids)
        .bind(&flags)
        .execute(pool)
        .await
        .map_err(|e| e.to_string())?;
    }
}

type PgQuery<'q> =
    sqlx::query::Query<'q, sqlx::Postgres, <sqlx::Postgres as sqlx::Database>::Arguments>;

/// Bind a deal row as `$1..$15`, the column order of both the insert and the update.
/// One deal row, bound by [`bind_deal`]; nothing written when it conflicts.
const INSERT_DEAL: &str = "INSERT INTO deals (uuid, params, proposal_cid, signed_proposal_cid, \
     client_peer_id, created_at_unix_nanos, checkpoint, error, n_bytes_received, \
     publish_cid, chain_deal_id, sector_number, sector_offset, sealing_status, \
     writer_generation, piece_cid, client, is_offline) \
     VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     $18) \
     ON CONFLICT DO NOTHING RETURNING 1";

/// [`bind_deal`] and the piece CID, client and offline flag as `$16` to `$18`: a new
/// row (none of them ever changes, so the update leaves them).
fn bind_new_deal<'q>(q: PgQuery<'q>, d: &'q DealRow, generation: i64) -> PgQuery<'q> {
    bind_deal(q, d, generation)
        .bind(&d.piece_cid)
        .bind(&d.client)
        .bind(d.is_offline)
}

fn bind_deal<'q>(q: PgQuery<'q>, d: &'q DealRow, generation: i64) -> PgQuery<'q> {
    q.bind(&d.uuid)
        .bind(&d.params)
        .bind(&d.proposal_cid)
        .bind(&d.signed_proposal_cid)
        .bind(&d.client_peer_id)
        .bind(d.created_at_unix_nanos)
        .bind(&d.checkpoint)
        .bind(&d.error)
        .bind(d.n_bytes_received)
        .bind(&d.publish_cid)
        .bind(d.chain_deal_id)
        .bind(d.sector_number)
        .bind(d.sector_offset)
        .bind(&d.sealing_status)
        .bind(generation)
}

/// Insert `rows` as new deals in `tx` (unfenced: administrative loads), skipping any
/// whose UUID or proposal is already stored: whether each was written.
async fn insert_new_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[DealRow],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut written = Vec::with_capacity(rows.len());
    for row in rows {
        let done = bind_new_deal(sqlx::query(INSERT_DEAL), row, 0)
            .fetch_optional(&mut **tx)
            .await?;
        written.push(done.is_some());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes() {
        for c in ["40001", "40P01", "08006", "08001", "57P01", "57P03"] {
            assert!(retryable_code(c), "{c}");
        }
        for c in ["23505", "42P01", "22P02", "57014"] {
            assert!(!retryable_code(c), "{c}");
        }
        assert!(Fail::TimedOut.retryable());
        assert!(Fail::Sql(sqlx::Error::PoolTimedOut).retryable());
        assert!(!Fail::Sql(sqlx::Error::RowNotFound).retryable());
        assert!(!Fail::Store(StoreError::NoSuchDeal(DealUuid([0; 16]))).retryable());
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let o = PostgresOptions::default();
        for attempt in 0..40 {
            let b = backoff(&o, attempt);
            assert!(b <= o.max_backoff.mul_f64(1.5), "{attempt}: {b:?}");
            assert!(b >= o.base_backoff / 2, "{attempt}: {b:?}");
        }
        assert!(backoff(&o, 5) > o.base_backoff.mul_f64(1.5));
    }

    #[test]
    fn migrations_are_embedded() {
        let m = migrator();
        let sql: Vec<&str> = m.iter().map(|m| m.sql.as_str()).collect();
        assert_eq!(sql.len(), 8);
        assert!(sql[0].contains("CREATE TABLE IF NOT EXISTS libp2p"));
        assert!(sql[1].contains("CREATE TABLE IF NOT EXISTS leader_state"));
        assert!(sql[2].contains("deals_live_by_checkpoint"));
        assert!(sql[3].contains("deals_by_piece_cid"));
        assert!(sql[4].contains("deals_ui_by_time") && sql[4].contains("deal_timeline"));
        assert!(sql[5].contains("piece_blocks_by_multihash"));
        assert!(sql[6].contains("CREATE TABLE IF NOT EXISTS ipni_head"));
        assert!(sql[7].contains("deals_awaiting_download"));
    }
}
