//! Prometheus metrics, through the `metrics` facade and its Prometheus
//! exporter (rendered on `GET /metrics`, no separate listener).
//!
//! Series:
//! - `graphql_requests_total{type, operation}` (at most
//!   [`MAX_OPERATION_LABELS`] operation names, the rest `other`) and
//!   `graphql_request_duration_seconds{type}` (histogram);
//! - `ledger_requests_total{operation, result}`: deposits and transfers by
//!   outcome (`OK` or the error code);
//! - `ledger_batch_size` (histogram): entries committed per transaction by
//!   the posting engine; `db_notification_queue_usage` (PostgreSQL: the
//!   share of the NOTIFY queue in use; at 1 every write fails);
//! - `db_pool_connections{state}` (`idle`, `in_use`), `db_pool_max_connections`,
//!   `db_write_waiters` (requests waiting to begin a write transaction);
//! - with read replicas: `db_reads_total{on}` (`replica`, `primary`) and
//!   `db_replica_lag_seconds{replica}` (how old the newest primary position
//!   it has replayed is; -1 while it is not used);
//! - `live_subscriptions` (active), `live_events_delivered_total`,
//!   `live_events_dropped_total` (subscribers dropped for lagging).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::Store;

/// The process-wide recorder, installed on first use (tests start several
/// servers in one process; they share it).
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("ledger_batch_size".into()),
                    &[
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                    ],
                )
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Installs the recorder (call at start-up, before anything is recorded).
pub fn init() {
    let _ = handle();
}

/// The current metrics in Prometheus text format.
pub fn render() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// Pool gauges, read when scraped.
pub fn record_pool(store: &Store) {
    if let Some((size, idle, max)) = store.pool_stats() {
        metrics::gauge!("db_pool_connections", "state" => "idle").set(idle as f64);
        let in_use = (size as usize).saturating_sub(idle);
        metrics::gauge!("db_pool_connections", "state" => "in_use").set(in_use as f64);
        metrics::gauge!("db_pool_max_connections").set(max as f64);
    }
    metrics::gauge!("db_write_waiters").set(store.write_waiters() as f64);
    for (replica, lag) in store.replica_lags() {
        // -1: not in use (down, not a standby, or never caught up).
        metrics::gauge!("db_replica_lag_seconds", "replica" => replica).set(lag.unwrap_or(-1.0));
    }
}

/// Most distinct operation names kept as label values; later new names are
/// counted as `other`, so clients cannot create series without bound.
pub const MAX_OPERATION_LABELS: usize = 100;

/// The label value for an operation name: itself while the set of names has
/// room (or already holds it), `other` after.
fn operation_label(operation: &str) -> String {
    use std::collections::HashSet;
    use std::sync::{Mutex, PoisonError};
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if seen.contains(operation) {
        return operation.to_owned();
    }
    if seen.len() < MAX_OPERATION_LABELS {
        seen.insert(operation.to_owned());
        return operation.to_owned();
    }
    "other".to_owned()
}

pub fn graphql_request(kind: &'static str, operation: &str, seconds: f64) {
    let operation = operation_label(operation);
    metrics::counter!("graphql_requests_total", "type" => kind, "operation" => operation)
        .increment(1);
    metrics::histogram!("graphql_request_duration_seconds", "type" => kind).record(seconds);
}

pub fn ledger_request(operation: &'static str, result: &'static str) {
    metrics::counter!("ledger_requests_total", "operation" => operation, "result" => result)
        .increment(1);
}

/// Entries committed together in one transaction.
pub fn ledger_batch(entries: usize) {
    metrics::histogram!("ledger_batch_size").record(entries as f64);
}

/// A read served (with replicas configured), by where: `replica` or
/// `primary`.
pub fn db_read(on: &'static str) {
    metrics::counter!("db_reads_total", "on" => on).increment(1);
}

pub fn subscription_started() {
    metrics::gauge!("live_subscriptions").increment(1.0);
}

pub fn subscription_ended() {
    metrics::gauge!("live_subscriptions").decrement(1.0);
}

pub fn event_delivered() {
    metrics::counter!("live_events_delivered_total").increment(1);
}

pub fn subscriber_dropped() {
    metrics::counter!("live_events_dropped_total").increment(1);
}
