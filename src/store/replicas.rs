//! Read replicas: queries served by streaming standbys when they are fresh
//! enough, with read-your-writes.
//!
//! Freshness is measured against the primary, never guessed from clocks: a
//! watcher samples the primary's WAL insert position `P` and timeline at
//! time `t`, then each replica's replay position `R`. A replica streaming
//! the primary's timeline whose `R` has reached `P` holds every commit
//! acknowledged before `t` (a commit's record is inserted before it is
//! acknowledged, even with `synchronous_commit = off`). A replica is used
//! only while that `t` is at most `MAX_REPLICA_LAG_MS` old, and for a
//! request with a floor (its caller's last commit, or `x-min-lsn`) only once
//! `R` has reached the floor; otherwise the primary answers. A replica on
//! another timeline (an old primary, a standby that had gone ahead of the
//! promoted one) is never used: its positions mean another history.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
};
use uuid::Uuid;

use super::coalesce::ByKey;

/// How often the watcher samples the primary and the replicas.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// A replica that does not answer its check within this is skipped.
const CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a request waiting for a replica to reach its floor asks it.
const WAIT_POLL: Duration = Duration::from_millis(2);
/// How long a caller's last commit position is remembered on this instance
/// (at least twice `MAX_REPLICA_LAG_MS`): far longer than any usable
/// replica's lag.
const REMEMBER_AT_LEAST: Duration = Duration::from_secs(60);
/// Callers remembered at most; past it, forgotten oldest first.
const MAX_REMEMBERED: usize = 100_000;

/// A position in PostgreSQL's write-ahead log, written as PostgreSQL writes
/// it (`16/B374D848`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = String;

    fn from_str(text: &str) -> Result<Lsn, String> {
        let bad = || format!("{text:?} is not a WAL position such as 16/B374D848");
        let (high, low) = text.trim().split_once('/').ok_or_else(bad)?;
        let part = |s: &str| match s.len() {
            1..=8 if s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u32::from_str_radix(s, 16).map_err(|_| bad())
            }
            _ => Err(bad()),
        };
        Ok(Lsn((u64::from(part(high)?) << 32) | u64::from(part(low)?)))
    }
}

/// How replicas are used.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    pub urls: Vec<String>,
    /// No read is served from a replica further behind than this.
    pub max_lag: Duration,
    /// How long a read waits for a replica to reach its floor before the
    /// primary answers it.
    pub wait: Duration,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            urls: Vec::new(),
            max_lag: Duration::from_millis(1000),
            wait: Duration::from_millis(20),
        }
    }
}

/// One replica: its pool, its readers by key, and what the watcher last saw.
pub(crate) struct Node {
    name: String,
    pub(crate) db: DatabaseConnection,
    pub(crate) by_key: ByKey,
    seen: Mutex<Seen>,
}

#[derive(Clone, Copy, Default)]
struct Seen {
    /// The replay position last read.
    replay: Lsn,
    /// The replica holds every commit acknowledged before this instant.
    fresh_as_of: Option<Instant>,
}

impl Node {
    fn seen(&self) -> Seen {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Out of use until the watcher sees it answer again.
    pub(crate) fn set_down(&self) {
        self.update(|seen| *seen = Seen::default());
    }

    /// Its replay position, asked now; `None` when it is not a standby.
    async fn replay_position(&self) -> Result<Option<Lsn>, DbErr> {
        Ok(self.check().await?.map(|(replay, _)| replay))
    }

    /// Its replay position and the timeline it streams (`None` when it
    /// does not stream now), or `None` when it is not a standby (promoted).
    async fn check(&self) -> Result<Option<(Lsn, Option<u32>)>, DbErr> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, \
                 (SELECT received_tli::bigint FROM pg_stat_wal_receiver WHERE status = 'streaming')",
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("no row from the replica's check".into()))?;
        let standby: bool = row.try_get_by_index(0)?;
        let replay: Option<i64> = row.try_get_by_index(1)?;
        let timeline: Option<i64> = row.try_get_by_index(2)?;
        Ok(match (standby, replay) {
            (true, Some(replay)) => Some((
                Lsn(replay as u64),
                timeline.and_then(|t| u32::try_from(t).ok()),
            )),
            _ => None,
        })
    }
}

/// The replicas, the primary's commit position, and each caller's last one.
pub(crate) struct Replicas {
    pub(crate) nodes: Vec<Arc<Node>>,
    max_lag: Duration,
    wait: Duration,
    next: AtomicUsize,
    /// The primary's WAL position after the newest commit this instance
    /// acknowledged (at least).
    last_commit: AtomicU64,
    /// Callers' last commit positions: they read their own writes here
    /// without saying where they wrote.
    callers: Mutex<HashMap<Uuid, (Lsn, Instant)>>,
    remember_for: Duration,
    /// After the primary changed timeline: every read must see the new
    /// primary's position at the change (what was remembered before it
    /// was on the old history), until the memory would have expired.
    reset: Mutex<Option<(Lsn, Instant)>>,
    /// Reads stay on the primary until then (a commit's position could not
    /// be read: nobody can say what a replica must have replayed).
    primary_only_until: Mutex<Option<Instant>>,
    stopped: AtomicBool,
}

impl Replicas {
    /// Opens the replicas' pools (lazily: a replica that is down at start
    /// is skipped until it answers) and starts watching them.
    pub(crate) async fn start(
        primary: DatabaseConnection,
        options: &ReplicaOptions,
        pool: &super::StoreOptions,
    ) -> Result<Arc<Replicas>, DbErr> {
        let mut nodes = Vec::with_capacity(options.urls.len());
        for url in &options.urls {
            let name = url
                .parse::<sea_orm::sqlx::postgres::PgConnectOptions>()
                .map(|o| format!("{}:{}", o.get_host(), o.get_port()))
                .map_err(|err| DbErr::Custom(format!("DATABASE_REPLICA_URLS: {err}")))?;
            let mut connect = ConnectOptions::new(url.clone());
            connect
                .max_connections(pool.max_connections)
                .min_connections(0)
                .connect_lazy(true)
                .connect_timeout(pool.acquire_timeout)
                .acquire_timeout(pool.acquire_timeout)
                .test_before_acquire_if_idle_for(Duration::from_secs(5))
                .sqlx_logging(false)
                .map_sqlx_postgres_opts({
                    let ms = pool.statement_timeout.as_millis().to_string();
                    move |pg| pg.options([("statement_timeout", ms.as_str())])
                });
            let db = Database::connect(connect).await?;
            nodes.push(Arc::new(Node {
                name,
                by_key: ByKey::start(&db),
                db,
                seen: Mutex::default(),
            }));
        }
        let replicas = Arc::new(Replicas {
            nodes,
            max_lag: options.max_lag,
            wait: options.wait,
            next: AtomicUsize::new(0),
            last_commit: AtomicU64::new(0),
            callers: Mutex::default(),
            remember_for: REMEMBER_AT_LEAST.max(options.max_lag * 2),
            reset: Mutex::default(),
            primary_only_until: Mutex::default(),
            stopped: AtomicBool::new(false),
        });
        tokio::spawn(watch(Arc::downgrade(&replicas), primary));
        Ok(replicas)
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Notes a commit position of the primary (kept if newer).
    pub(crate) fn committed(&self, lsn: Lsn) {
        self.last_commit.fetch_max(lsn.0, Ordering::AcqRel);
    }

    /// A commit's position could not be read: reads stay on the primary
    /// for as long as a replica may lag.
    pub(crate) fn commit_unknown(&self) {
        let until = Instant::now() + self.max_lag;
        *self
            .primary_only_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(until);
    }

    /// The primary is on a new timeline (promoted): positions remembered
    /// before are of the old history. From now on every read must see the
    /// new primary's position `at`, the last commit is that, and callers are
    /// forgotten.
    fn new_timeline(&self, at: Lsn) {
        self.last_commit.store(at.0, Ordering::Release);
        self.callers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        *self.reset.lock().unwrap_or_else(PoisonError::into_inner) = Some((at, Instant::now()));
        for node in &self.nodes {
            node.set_down();
        }
    }

    /// The floor every read has after a timeline change, for a while.
    fn reset_floor(&self) -> Option<Lsn> {
        let reset = *self.reset.lock().unwrap_or_else(PoisonError::into_inner);
        reset
            .filter(|(_, at)| at.elapsed() < self.remember_for)
            .map(|(lsn, _)| lsn)
    }

    /// At least the position of every commit acknowledged so far.
    pub(crate) fn last_commit(&self) -> Option<Lsn> {
        match self.last_commit.load(Ordering::Acquire) {
            0 => None,
            lsn => Some(Lsn(lsn)),
        }
    }

    /// Remembers that `caller` wrote up to `lsn`.
    pub(crate) fn remember(&self, caller: Uuid, lsn: Lsn) {
        let now = Instant::now();
        let mut callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
        if callers.len() >= MAX_REMEMBERED {
            callers.retain(|_, (_, at)| now.duration_since(*at) < self.remember_for);
            if callers.len() >= MAX_REMEMBERED {
                // All recent: forget the oldest tenth at once.
                let mut ages: Vec<Instant> = callers.values().map(|(_, at)| *at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 10];
                callers.retain(|_, (_, at)| *at > cut);
            }
        }
        let entry = callers.entry(caller).or_insert((lsn, now));
        *entry = (entry.0.max(lsn), now);
    }

    /// What `caller` last wrote through this instance, if recently.
    pub(crate) fn remembered(&self, caller: Uuid) -> Option<Lsn> {
        let callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
        let (lsn, at) = callers.get(&caller)?;
        (at.elapsed() < self.remember_for).then_some(*lsn)
    }

    /// Whether `node` is fresh within the allowed lag now.
    fn fresh(&self, node: &Node, now: Instant) -> bool {
        node.seen()
            .fresh_as_of
            .is_some_and(|at| now.saturating_duration_since(at) <= self.max_lag)
    }

    /// Whether the replica a request already read from may serve its next
    /// read as it is (fresh, replayed up to the floor): no waiting.
    pub(crate) fn still_fits(&self, node: &Node, floor: Option<Lsn>) -> bool {
        let floor = floor.max(self.reset_floor());
        self.fresh(node, Instant::now()) && floor.is_none_or(|floor| node.seen().replay >= floor)
    }

    /// A replica that may serve a read needing `floor`: fresh within the
    /// allowed lag and, within a short wait, replayed up to the floor.
    pub(crate) async fn pick(&self, floor: Option<Lsn>) -> Option<Arc<Node>> {
        let now = Instant::now();
        let primary_only = *self
            .primary_only_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if primary_only.is_some_and(|until| now < until) {
            return None;
        }
        let floor = floor.max(self.reset_floor());
        let fresh: Vec<&Arc<Node>> = self
            .nodes
            .iter()
            .filter(|node| self.fresh(node, now))
            .collect();
        if fresh.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let turn = |i: usize| fresh[(start + i) % fresh.len()];
        let Some(floor) = floor else {
            return Some(turn(0).clone());
        };
        if let Some(node) = (0..fresh.len())
            .map(turn)
            .find(|node| node.seen().replay >= floor)
        {
            return Some(node.clone());
        }
        // Most likely a commit of a moment ago: ask the most advanced one
        // until it has replayed it, briefly (each question bounded too, so
        // a busy replica's pool cannot stretch the wait).
        let node = fresh.iter().max_by_key(|node| node.seen().replay)?;
        let deadline = tokio::time::Instant::now() + self.wait;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(WAIT_POLL).await;
            match tokio::time::timeout_at(deadline, node.replay_position()).await {
                Ok(Ok(Some(replay))) => {
                    if replay >= floor {
                        return Some((*node).clone());
                    }
                }
                _ => return None,
            }
        }
        None
    }

    /// The replicas' lag behind the primary now, for the metrics: name and
    /// seconds (`None`: not in use).
    pub(crate) fn lags(&self) -> Vec<(String, Option<f64>)> {
        let now = Instant::now();
        self.nodes
            .iter()
            .map(|node| {
                let lag = node
                    .seen()
                    .fresh_as_of
                    .map(|at| now.saturating_duration_since(at).as_secs_f64());
                (node.name.clone(), lag)
            })
            .collect()
    }
}

/// The primary's WAL insert position now: at or after the commit record
/// of every transaction it has acknowledged.
pub(crate) async fn primary_position<C: ConnectionTrait>(db: &C) -> Result<Lsn, DbErr> {
    Ok(primary_sample(db).await?.0)
}

/// The primary's WAL insert position and timeline now.
async fn primary_sample<C: ConnectionTrait>(db: &C) -> Result<(Lsn, u32), DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT (l - '0/0'::pg_lsn)::bigint, ('x' || substr(pg_walfile_name(l), 1, 8))::bit(32)::bigint \
             FROM pg_current_wal_insert_lsn() AS l",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no WAL position".into()))?;
    let lsn: i64 = row.try_get_by_index(0)?;
    let timeline: i64 = row.try_get_by_index(1)?;
    let timeline = u32::try_from(timeline).map_err(|_| DbErr::Custom("bad timeline".into()))?;
    Ok((Lsn(lsn as u64), timeline))
}

/// Samples the primary, then every replica, each `CHECK_EVERY`, until the
/// replicas are dropped or stopped.
async fn watch(replicas: std::sync::Weak<Replicas>, primary: DatabaseConnection) {
    // The primary's recent positions, oldest first: enough to date a
    // replica up to the allowed lag; and its timeline.
    let mut samples: VecDeque<(Instant, Lsn)> = VecDeque::new();
    let mut timeline: Option<u32> = None;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(replicas) = replicas.upgrade() else {
            return;
        };
        if replicas.stopped.load(Ordering::Relaxed) {
            return;
        }
        let at = Instant::now();
        // Without the primary's position nothing new can be vouched for:
        // replicas age out by themselves.
        let Ok(Ok((lsn, now_on))) =
            tokio::time::timeout(CHECK_TIMEOUT, primary_sample(&primary)).await
        else {
            continue;
        };
        if timeline.is_some_and(|before| before != now_on) {
            tracing::warn!(
                timeline = now_on,
                "the primary is on a new timeline: replicas checked afresh"
            );
            samples.clear();
            replicas.new_timeline(lsn);
        }
        timeline = Some(now_on);
        samples.push_back((at, lsn));
        while samples.len() > 1
            && samples
                .front()
                .is_some_and(|(t, _)| at.duration_since(*t) > replicas.max_lag * 2)
        {
            samples.pop_front();
        }
        let checks = replicas.nodes.iter().map(|node| async {
            match tokio::time::timeout(CHECK_TIMEOUT, node.check()).await {
                Ok(Ok(Some((replay, streams)))) if streams == Some(now_on) => {
                    // The newest sample the replica has reached.
                    let reached = samples
                        .iter()
                        .rev()
                        .find(|(_, lsn)| *lsn <= replay)
                        .map(|(t, _)| *t);
                    node.update(|seen| {
                        // Gone back (restarted at an older point): dated
                        // afresh, never by what it had before.
                        seen.fresh_as_of = match replay < seen.replay {
                            true => reached,
                            false => seen.fresh_as_of.max(reached),
                        };
                        seen.replay = replay;
                    });
                }
                Ok(Ok(Some(_))) => {
                    tracing::debug!(replica = %node.name, "not streaming the primary's timeline: not used for reads");
                    node.set_down();
                }
                Ok(Ok(None)) => {
                    tracing::warn!(replica = %node.name, "not a standby (promoted?): not used for reads");
                    node.set_down();
                }
                Ok(Err(err)) => {
                    tracing::debug!(replica = %node.name, error = %err, "replica unreachable");
                    node.set_down();
                }
                Err(_) => node.set_down(),
            }
        });
        futures_util::future::join_all(checks).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Lsn;

    #[test]
    fn positions_read_and_print_as_postgresql_writes_them() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        for bad in [
            "",
            "16",
            "16/",
            "/1",
            "x/1",
            "1/123456789",
            "-1/0",
            "1/2/3",
            "+1/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?}");
        }
    }
}
