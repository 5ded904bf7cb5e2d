//! Persistence: connecting to the database, migrating it, and the few places
//! where a backend needs its own handling. All SQL lives under `store/`:
//! reads, the posting engine's batch writes, clients, the audit.

pub mod audit;
mod backend;
pub mod clients;
mod coalesce;
pub mod postings;
pub mod primary;
pub mod reader;
pub mod reads;
pub mod replicas;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use self::coalesce::ByKey;
use self::primary::Primary;
use self::replicas::{Lsn, ReplicaOptions, Replicas};
use sea_orm::sqlx::postgres::{PgPool, PgPoolOptions};

pub use backend::{DbFailure, app_error, is_retryable, is_unavailable, unique_violation_on};

/// The database handle shared by every request. Cloned for every request
/// (and more), so one `Arc` holds it all.
#[derive(Clone)]
pub struct Store(Arc<Shared>);

impl std::ops::Deref for Store {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What `Store` shares.
pub struct Shared {
    db: DatabaseConnection,
    /// PostgreSQL's LISTEN needs a connection of its own; its pool follows
    /// the primary with the main one.
    listen: Option<PgPool>,
    /// Where the primary is, when `DATABASE_URL` names several hosts or
    /// asks for a writable one.
    primary: Option<Arc<Primary>>,
    /// Streaming replicas that serve reads (`DATABASE_REPLICA_URLS`).
    replicas: Option<Arc<Replicas>>,
    /// SQLite allows one writer at a time; queueing writers here, in process,
    /// is fairer and faster than letting them spin on `SQLITE_BUSY`.
    writer: Option<Arc<Mutex<()>>>,
    statements: Arc<AtomicU64>,
    retries: Arc<AtomicU64>,
    /// Requests waiting to begin a write transaction.
    write_waiters: Arc<AtomicU64>,
    /// Wallets by id and by client id, and clients, each read together for
    /// concurrent requests (`reader::Reader` routes them).
    by_key: ByKey,
}

/// How to connect.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// How long one statement may run (PostgreSQL's statement_timeout).
    pub statement_timeout: Duration,
    /// How long a request waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// Read replicas (PostgreSQL only).
    pub replicas: ReplicaOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            statement_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(2),
            replicas: ReplicaOptions::default(),
        }
    }
}

/// A write transaction, holding the writer slot on backends that need one.
pub struct WriteTx {
    pub tx: DatabaseTransaction,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.tx.commit().await
    }

    /// Rolls back now rather than on drop, so the connection and the writer
    /// slot are clean when the next writer gets them.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.tx.rollback().await
    }
}

impl Store {
    /// Connects, tunes the connection for its backend and applies pending
    /// migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, DbErr> {
        Store::connect_with(
            url,
            StoreOptions {
                max_connections,
                ..StoreOptions::default()
            },
        )
        .await
    }

    /// Connects with all options.
    pub async fn connect_with(url: &str, opts: StoreOptions) -> Result<Store, DbErr> {
        let (url, primary) = resolve(url, opts.acquire_timeout).await?;
        let mut options = ConnectOptions::new(url);
        options
            .max_connections(opts.max_connections)
            .min_connections(1)
            .connect_timeout(opts.acquire_timeout)
            .acquire_timeout(opts.acquire_timeout)
            // A ping before every use would cost a round trip per statement
            // batch; only connections idle for a while are checked.
            .test_before_acquire_if_idle_for(Duration::from_secs(5))
            .sqlx_logging(false)
            .map_sqlx_postgres_opts({
                let ms = opts.statement_timeout.as_millis().to_string();
                move |pg| pg.options([("statement_timeout", ms.as_str())])
            });
        if let Some(primary) = &primary {
            let generation = primary.generation();
            options.map_sqlx_postgres_before_acquire(move |_, meta| {
                let fresh = !generation.outlived(meta.age);
                Box::pin(async move { Ok(fresh) })
            });
            let check = primary::after_connect_check(primary.alarm());
            options.map_sqlx_postgres_pool_opts(move |pool| pool.after_connect(check.clone()));
        }
        let mut db = Database::connect(options).await?;
        let listen = match db.get_database_backend() {
            DbBackend::Postgres => {
                let main = db.get_postgres_connection_pool();
                let mut pool = PgPoolOptions::new()
                    .max_connections(2)
                    .min_connections(0)
                    .acquire_timeout(opts.acquire_timeout);
                if let Some(primary) = &primary {
                    pool = pool.after_connect(primary::after_connect_check(primary.alarm()));
                }
                let listen = pool.connect_lazy_with((*main.connect_options()).clone());
                if let Some(primary) = &primary {
                    primary.clone().watch(vec![main.clone(), listen.clone()]);
                }
                Some(listen)
            }
            _ => None,
        };
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        db.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let writer = match db.get_database_backend() {
            DbBackend::Sqlite => {
                // WAL lets readers proceed while a write is in progress.
                db.execute_unprepared("PRAGMA journal_mode = WAL").await?;
                Some(Arc::new(Mutex::new(())))
            }
            _ => None,
        };
        Migrator::up(&db, None).await?;
        let replicas = match (opts.replicas.urls.is_empty(), db.get_database_backend()) {
            (true, _) => None,
            (false, DbBackend::Postgres) => {
                Some(Replicas::start(db.clone(), &opts.replicas, &opts).await?)
            }
            (false, _) => {
                return Err(DbErr::Custom(
                    "read replicas need PostgreSQL (DATABASE_REPLICA_URLS)".into(),
                ));
            }
        };
        let by_key = ByKey::start(&db);
        Ok(Store(Arc::new(Shared {
            by_key,
            db,
            listen,
            primary,
            replicas,
            writer,
            statements,
            retries: Arc::new(AtomicU64::new(0)),
            write_waiters: Arc::new(AtomicU64::new(0)),
        })))
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Pool size, idle connections and the maximum, for the metrics.
    pub fn pool_stats(&self) -> Option<(u32, usize, u32)> {
        match self.backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                Some((
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                ))
            }
            DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                Some((
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                ))
            }
            _ => None,
        }
    }

    /// Requests waiting to begin a write transaction right now.
    pub fn write_waiters(&self) -> u64 {
        self.write_waiters.load(Ordering::Relaxed)
    }

    /// The pool LISTEN connections come from (PostgreSQL only).
    pub fn listen_pool(&self) -> Option<&PgPool> {
        self.listen.as_ref()
    }

    /// Each replica's lag behind the primary in seconds (`None`: not in use).
    pub fn replica_lags(&self) -> Vec<(String, Option<f64>)> {
        self.replicas.as_ref().map(|r| r.lags()).unwrap_or_default()
    }

    /// With replicas: notes the primary's WAL position after a commit, so
    /// that reads after it wait for a replica that has replayed it. Called
    /// before the commit is acknowledged.
    pub(crate) async fn note_commit(&self) {
        let Some(replicas) = &self.replicas else {
            return;
        };
        for _ in 0..3 {
            match replicas::primary_position(&self.db).await {
                Ok(lsn) => return replicas.committed(lsn),
                Err(err) => tracing::warn!(error = %err, "reading the WAL position after a commit"),
            }
        }
        // Nobody can say what a replica must have replayed to show it.
        replicas.commit_unknown();
    }

    /// With replicas: a position at or after every commit acknowledged so
    /// far on this instance (what a mutation's answer carries).
    pub fn commit_position(&self) -> Option<Lsn> {
        self.replicas.as_ref()?.last_commit()
    }

    /// With replicas: `caller` wrote up to `lsn`; its reads here wait for it.
    pub fn remember_commit(&self, caller: Uuid, lsn: Lsn) {
        if let Some(replicas) = &self.replicas {
            replicas.remember(caller, lsn);
        }
    }

    /// With several hosts: whether one takes writes now.
    pub fn primary_writable(&self) -> Option<bool> {
        self.primary.as_ref().map(|p| p.is_writable())
    }

    /// Changes each time the primary moves (None: one fixed host).
    pub fn primary_moves(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.primary.as_ref().map(|p| p.moves())
    }

    /// A database failure that may mean the primary moved: look now rather
    /// than at the next check.
    pub(crate) fn suspect(&self, err: &DbErr) {
        if let Some(primary) = &self.primary
            && backend::is_unavailable(err)
        {
            primary.alarm().raise();
        }
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// SQL statements run so far through this store (all connections); lets
    /// tests and benchmarks count round trips.
    pub fn statements_run(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Batches run again after a transient conflict (see the ledger's
    /// committer); with wallets locked in order this stays zero
    /// on PostgreSQL, which the tests check.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(crate) fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Begins a transaction that will write.
    pub async fn begin_write(&self) -> Result<WriteTx, DbErr> {
        self.write_waiters.fetch_add(1, Ordering::Relaxed);
        let writer = match &self.writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let tx = self.db.begin().await;
        self.write_waiters.fetch_sub(1, Ordering::Relaxed);
        let tx = tx?;
        Ok(WriteTx {
            tx,
            _writer: writer,
        })
    }

    /// PostgreSQL: the share of the NOTIFY queue in use (0 to 1). A listener
    /// that stops reading fills it, and then every write fails: worth an alert.
    pub async fn notification_queue_usage(&self) -> Option<f64> {
        if self.backend() != DbBackend::Postgres {
            return None;
        }
        let row = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_notification_queue_usage()",
            ))
            .await
            .ok()??;
        row.try_get_by_index::<f64>(0).ok()
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }

    pub async fn close(self) -> Result<(), DbErr> {
        if let Some(replicas) = &self.replicas {
            replicas.stop();
            for node in &replicas.nodes {
                node.db.clone().close().await.ok();
            }
        }
        if let Some(listen) = &self.listen {
            listen.close().await;
        }
        self.db.clone().close().await
    }
}

/// The URL to connect to: for PostgreSQL with several hosts (or
/// `target_session_attrs`), the writable one's, found within `wait`.
pub async fn resolve(url: &str, wait: Duration) -> Result<(String, Option<Arc<Primary>>), DbErr> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok((url.to_owned(), None));
    }
    let hosts = primary::split(url).map_err(DbErr::Custom)?;
    if !hosts.require_primary {
        return Ok((hosts.urls.into_iter().next().unwrap_or_default(), None));
    }
    let (primary, url) = Primary::find(&hosts.urls, wait)
        .await
        .map_err(DbErr::Custom)?;
    Ok((url, Some(primary)))
}
