//! Finding the PostgreSQL primary among several hosts, and following it.
//!
//! `DATABASE_URL` may name several hosts the way libpq does
//! (`postgres://u@host1:5432,host2:5433/db?target_session_attrs=read-write`).
//! sqlx parses one host only, so the URL is split here into one URL per
//! host; the pool connects to the writable one, checks every new connection
//! (`transaction_read_only`: a half-promoted node is out of recovery but
//! still read-only), and a watcher moves the pool to the new primary when
//! the old one goes away or turns read-only, without a restart. Connections
//! opened before a move are closed instead of reused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sea_orm::sqlx::{Connection, Executor, Row};
use tokio::sync::Notify;

/// How often the watcher checks that the primary is still writable.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long one host may take to answer while looking for the primary.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A `DATABASE_URL` split by host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hosts {
    /// One single-host URL per host, in the order given.
    pub urls: Vec<String>,
    /// Only a writable server will do: several hosts, or
    /// `target_session_attrs` asked for it.
    pub require_primary: bool,
}

/// Splits a PostgreSQL URL by host; a one-host URL comes back as it is
/// (less `target_session_attrs`, which sqlx does not know).
pub fn split(url: &str) -> Result<Hosts, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "the database URL has no scheme".to_owned())?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let mut attrs = None;
    let params: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| match p.split_once('=') {
            Some(("target_session_attrs", value)) => {
                attrs = Some(value);
                false
            }
            _ => !p.is_empty(),
        })
        .collect();
    match attrs {
        None | Some("read-write" | "primary" | "any") => {}
        Some(other) => {
            return Err(format!(
                "target_session_attrs={other}: walletql writes, so it needs read-write or primary"
            ));
        }
    }
    let query = match params.is_empty() {
        true => String::new(),
        false => format!("?{}", params.join("&")),
    };
    let hosts: Vec<&str> = hosts.split(',').collect();
    if hosts.len() > 1 && hosts.iter().any(|h| h.is_empty()) {
        return Err("the database URL lists an empty host".to_owned());
    }
    Ok(Hosts {
        urls: hosts
            .iter()
            .map(|host| format!("{scheme}://{user}{host}{path}{query}"))
            .collect(),
        require_primary: hosts.len() > 1 || matches!(attrs, Some("read-write" | "primary")),
    })
}

/// Whether the server behind `conn` takes writes.
async fn writable(conn: &mut PgConnection) -> Result<bool, sea_orm::sqlx::Error> {
    let row = conn
        .fetch_one("SELECT current_setting('transaction_read_only') = 'off'")
        .await?;
    row.try_get(0)
}

/// The first host, in order, that answers and takes writes, with a
/// connection to it.
async fn find(hosts: &[PgConnectOptions]) -> Option<(usize, PgConnection)> {
    for (i, options) in hosts.iter().enumerate() {
        let probe = async {
            let mut conn = PgConnection::connect_with(options).await.ok()?;
            writable(&mut conn).await.ok()?.then_some(conn)
        };
        if let Ok(Some(conn)) = tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            return Some((i, conn));
        }
    }
    None
}

/// The moment connections were last moved to a new primary, as nanoseconds
/// since the process's first look at the clock: connections older than
/// that are closed, not reused.
#[derive(Clone, Default)]
pub(crate) struct Generation(Arc<AtomicU64>);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Generation {
    fn bump(&self) {
        let now = u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.store(now, Ordering::Release);
    }

    /// Whether a connection of this age was opened before the last move.
    pub(crate) fn outlived(&self, age: Duration) -> bool {
        let opened = EPOCH.elapsed().saturating_sub(age);
        let moved = Duration::from_nanos(self.0.load(Ordering::Acquire));
        opened < moved
    }
}

/// The pools' link to the watcher: wake it when the primary seems gone.
#[derive(Clone, Default)]
pub(crate) struct Alarm(Arc<Notify>);

impl Alarm {
    pub(crate) fn raise(&self) {
        self.0.notify_one();
    }
}

/// Where the primary is, shared by the store and the watcher.
pub struct Primary {
    hosts: Vec<PgConnectOptions>,
    current: AtomicU64,
    writable: AtomicBool,
    generation: Generation,
    alarm: Alarm,
    /// Counts moves, for the LISTEN task (a demoted primary keeps its
    /// connections open but sends no more notifications).
    moves: tokio::sync::watch::Sender<u64>,
}

impl Primary {
    /// Finds the primary among `urls` (waiting up to `wait` for one), and
    /// returns its URL with the shared state the pools' hooks need.
    pub(crate) async fn find(
        urls: &[String],
        wait: Duration,
    ) -> Result<(Arc<Primary>, String), String> {
        let hosts: Vec<PgConnectOptions> = urls
            .iter()
            .map(|u| u.parse().map_err(|e| format!("{e}")))
            .collect::<Result<_, _>>()?;
        let deadline = Instant::now() + wait;
        let (index, _) = loop {
            if let Some(found) = find(&hosts).await {
                break found;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "none of the {} database hosts takes writes",
                    hosts.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let url = urls.get(index).cloned().unwrap_or_default();
        let primary = Primary {
            hosts,
            current: AtomicU64::new(index as u64),
            writable: AtomicBool::new(true),
            generation: Generation::default(),
            alarm: Alarm::default(),
            moves: tokio::sync::watch::Sender::new(0),
        };
        Ok((Arc::new(primary), url))
    }

    pub(crate) fn generation(&self) -> Generation {
        self.generation.clone()
    }

    pub(crate) fn alarm(&self) -> Alarm {
        self.alarm.clone()
    }

    /// Changes each time the pools move (or the primary comes back).
    pub fn moves(&self) -> tokio::sync::watch::Receiver<u64> {
        self.moves.subscribe()
    }

    /// False while no host takes writes (the watcher is looking).
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    /// The host (as `host:port`) the pools connect to, for the logs.
    fn current(&self) -> String {
        let i = self.current.load(Ordering::Acquire) as usize;
        self.hosts
            .get(i)
            .map(|h| format!("{}:{}", h.get_host(), h.get_port()))
            .unwrap_or_default()
    }

    /// Checks the primary every `CHECK_EVERY`, or at once when a pool raises
    /// the alarm; when it is gone or read-only, looks for the new one and
    /// points `pools` at it. Stops when the pools are closed.
    pub(crate) fn watch(self: Arc<Self>, pools: Vec<PgPool>) {
        tokio::spawn(async move {
            let mut probe: Option<PgConnection> = None;
            loop {
                if pools.iter().all(PgPool::is_closed) {
                    return;
                }
                let fine = match probe.as_mut() {
                    Some(conn) => writable(conn).await.unwrap_or(false),
                    None => false,
                };
                if !fine {
                    probe = self.follow(&pools).await;
                }
                tokio::select! {
                    _ = self.alarm.0.notified() => {}
                    _ = tokio::time::sleep(CHECK_EVERY) => {}
                }
            }
        });
    }

    /// Looks for the writable host and moves the pools there; `None` (and
    /// not writable) while there is none.
    async fn follow(&self, pools: &[PgPool]) -> Option<PgConnection> {
        let Some((index, conn)) = find(&self.hosts).await else {
            if self.writable.swap(false, Ordering::AcqRel) {
                tracing::warn!("no database host takes writes; looking for the primary");
            }
            return None;
        };
        let before = self.current.swap(index as u64, Ordering::AcqRel);
        if before != index as u64 {
            let host = self.hosts.get(index)?;
            for pool in pools {
                let options = (*pool.connect_options())
                    .clone()
                    .host(host.get_host())
                    .port(host.get_port());
                pool.set_connect_options(options);
            }
            self.generation.bump();
            self.moves.send_modify(|n| *n += 1);
            tracing::warn!(primary = %self.current(), "moved to the new primary");
        } else if !self.is_writable() {
            // The same host came back (a restart): its old connections are gone.
            self.generation.bump();
            self.moves.send_modify(|n| *n += 1);
            tracing::info!(primary = %self.current(), "the primary is back");
        }
        self.writable.store(true, Ordering::Release);
        Some(conn)
    }
}

/// The pool hooks for a store that follows the primary: a new connection
/// must be writable (else the watcher is woken), and a pooled one opened
/// before the last move is closed.
pub(crate) fn after_connect_check(
    alarm: Alarm,
) -> impl for<'c> Fn(
    &'c mut PgConnection,
    sea_orm::sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'c, Result<(), sea_orm::sqlx::Error>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |conn, _| {
        let alarm = alarm.clone();
        Box::pin(async move {
            if writable(conn).await? {
                Ok(())
            } else {
                alarm.raise();
                Err(sea_orm::sqlx::Error::Protocol(
                    "the server is read-only (not the primary)".into(),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_host_url_becomes_one_url_per_host() {
        let hosts = split(
            "postgres://app:pw@db1:5432,db2:5433/walletql?sslmode=disable&target_session_attrs=read-write",
        );
        assert_eq!(
            hosts,
            Ok(Hosts {
                urls: vec![
                    "postgres://app:pw@db1:5432/walletql?sslmode=disable".to_owned(),
                    "postgres://app:pw@db2:5433/walletql?sslmode=disable".to_owned(),
                ],
                require_primary: true,
            })
        );
        let ipv6 = split("postgresql://[::1]:5432,[::1]:5433/db").map(|h| h.urls);
        assert_eq!(
            ipv6,
            Ok(vec![
                "postgresql://[::1]:5432/db".to_owned(),
                "postgresql://[::1]:5433/db".to_owned()
            ])
        );
    }

    #[test]
    fn a_single_host_url_is_left_as_it_is() {
        let url = "postgres://postgres@127.0.0.1:5432/test";
        assert_eq!(
            split(url),
            Ok(Hosts {
                urls: vec![url.to_owned()],
                require_primary: false
            })
        );
        let primary = split("postgres://h/db?target_session_attrs=primary");
        assert_eq!(primary.map(|h| h.require_primary), Ok(true));
    }

    #[test]
    fn a_url_that_cannot_write_is_refused() {
        assert!(split("postgres://a,b/db?target_session_attrs=read-only").is_err());
        assert!(split("postgres://a,,b/db").is_err());
        assert!(split("no scheme").is_err());
    }

    #[test]
    fn connections_from_before_a_move_are_outlived() {
        let generation = Generation::default();
        assert!(!generation.outlived(Duration::ZERO));
        std::thread::sleep(Duration::from_millis(5));
        generation.bump();
        assert!(generation.outlived(Duration::from_secs(1)));
        assert!(!generation.outlived(Duration::ZERO));
    }
}
