//! Read replicas: walletql given a primary and a streaming replica
//! (`deploy/ha/pair.sh`, made with `pg_basebackup -R -X stream`) serves
//! queries from the replica, reads its callers' own writes at once even
//! when the replica stops replaying, never serves data older than
//! `MAX_REPLICA_LAG_MS`, and goes on from the primary when the replica is
//! gone.
//!
//! It starts PostgreSQL clusters of its own (as the postgres user when run
//! as root), so it is `#[ignore]`d and run by `.ci/faults`.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "api/ws.rs"]
#[allow(dead_code)]
mod ws;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use helpers::{OPERATOR, Pair, ServerProcess, pg_scalar};

const MAX_LAG_MS: u64 = 1000;

struct Instance {
    process: ServerProcess,
    http: reqwest::Client,
}

impl Instance {
    fn start(pair: &Pair, max_lag_ms: u64) -> Instance {
        let replicas = pair.standby_url();
        let lag = max_lag_ms.to_string();
        let process = ServerProcess::spawn_with(
            &pair.primary_url(),
            &[
                ("DATABASE_REPLICA_URLS", replicas.as_str()),
                ("MAX_REPLICA_LAG_MS", lag.as_str()),
            ],
        );
        Instance {
            process,
            http: reqwest::Client::new(),
        }
    }

    /// Runs a shared document; the response body and its `x-commit-lsn`.
    async fn run(
        &self,
        token: &str,
        name: &str,
        variables: Value,
        min_lsn: Option<&str>,
    ) -> (Value, Option<String>) {
        let query = walletql::documents::operation(name).expect("a shared document");
        let mut request = self
            .http
            .post(format!("http://{}/graphql", self.process.addr))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(lsn) = min_lsn {
            request = request.header("x-min-lsn", lsn);
        }
        let response = request.send().await.expect("post");
        let lsn = response
            .headers()
            .get("x-commit-lsn")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (response.json().await.expect("json"), lsn)
    }

    async fn balance(&self, token: &str, wallet: &str, min_lsn: Option<&str>) -> String {
        let (body, _) = self
            .run(token, "Wallet", json!({ "id": wallet }), min_lsn)
            .await;
        helpers::text(&helpers::data(&body)["wallet"]["balance"])
    }

    async fn create_client(&self, name: &str) -> (String, String) {
        let (body, _) = self
            .run(
                OPERATOR,
                "CreateClient",
                json!({ "input": { "name": name } }),
                None,
            )
            .await;
        let created = &helpers::data(&body)["createClient"];
        (
            helpers::text(&created["token"]),
            helpers::text(&created["wallet"]["id"]),
        )
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.process.addr))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// Waits until the replica has replayed everything the primary has now.
async fn caught_up(pair: &Pair) {
    let target = pg_scalar(&pair.primary_url(), "SELECT pg_current_wal_lsn()::text").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reached = pg_scalar(
            &pair.standby_url(),
            &format!("SELECT (pg_last_wal_replay_lsn() >= '{target}')::text"),
        )
        .await;
        if reached == "true" {
            return;
        }
        assert!(Instant::now() < deadline, "the replica never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts PostgreSQL clusters of its own: run by .ci/faults"]
async fn replicas_serve_reads_without_ever_hiding_a_callers_own_writes() {
    let pair = Pair::up((25440, 25441));
    // A tolerates a replica a minute behind, so that a read it serves from
    // the paused replica shows; B holds reads to MAX_LAG_MS.
    let (a, b) = (
        Instance::start(&pair, 60_000),
        Instance::start(&pair, MAX_LAG_MS),
    );
    let (alice, alice_wallet) = a.create_client("Alice").await;
    let (bob, bob_wallet) = a.create_client("Bob").await;
    let (deposited, deposit_lsn) = a
        .run(
            OPERATOR,
            "Deposit",
            json!({ "input": { "walletId": alice_wallet, "amount": "100.00" } }),
            None,
        )
        .await;
    helpers::data(&deposited);
    let deposit_lsn = deposit_lsn.expect("a mutation's answer carries x-commit-lsn");
    assert_eq!(
        deposited["extensions"]["commitLsn"].as_str(),
        Some(deposit_lsn.as_str()),
        "and extensions.commitLsn: {deposited}"
    );
    caught_up(&pair).await;
    // The watcher has seen the replica fresh.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Reads land on the replica.
    let served = a.metric("db_reads_total{on=\"replica\"}").await;
    for _ in 0..20 {
        assert_eq!(a.balance(&alice, &alice_wallet, None).await, "100.00");
    }
    assert!(a.metric("db_reads_total{on=\"replica\"}").await >= served + 20.0);

    // `walletql verify --on-replica` audits the replica.
    let verify = Command::new(env!("CARGO_BIN_EXE_walletql"))
        .args(["verify", "--on-replica"])
        .env("DATABASE_URL", pair.primary_url())
        .env("DATABASE_REPLICA_URLS", pair.standby_url())
        .output()
        .expect("walletql verify");
    assert!(
        verify.status.success(),
        "walletql verify --on-replica: {}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // The replica stops replaying: what is written now is not there.
    pg_scalar(&pair.standby_url(), "SELECT pg_wal_replay_pause()::text").await;
    let (paid, lsn) = a
        .run(
            &alice,
            "Transfer",
            json!({ "input": { "fromWalletId": alice_wallet, "toWalletId": bob_wallet, "amount": "30.00" } }),
            None,
        )
        .await;
    helpers::data(&paid);
    let lsn = lsn.expect("x-commit-lsn");
    let started = Instant::now();
    // The payer reads its own write at once on the instance that wrote it,
    // without saying anything.
    assert_eq!(a.balance(&alice, &alice_wallet, None).await, "70.00");
    // On another instance, with the position it was given.
    assert_eq!(b.balance(&alice, &alice_wallet, Some(&lsn)).await, "70.00");
    let own_reads = started.elapsed();
    // Anyone else on A reads the paused replica (A allows a minute's lag):
    // the reads above did not come from it by chance.
    assert_eq!(a.balance(&bob, &bob_wallet, None).await, "0.00");
    assert_eq!(a.balance(OPERATOR, &alice_wallet, None).await, "100.00");
    // A subscription's replay from the start of Alice's history: the
    // replica serves what it has (the deposit), the primary the rest (the
    // payment the paused replica has not replayed); nothing is missed.
    let replayed = a.metric("db_reads_total{on=\"replica\"}").await;
    let mut socket = ws::WsClient::connect(a.process.addr, ws::TRANSPORT_WS, Some(&alice))
        .await
        .expect("connect");
    let start = walletql::domain::cursor::OperationCursor {
        wallet_id: Uuid::parse_str(&alice_wallet).expect("id"),
        seq: 0,
        operation: None,
    }
    .encode();
    socket
        .subscribe(
            "replay",
            ws::OPERATION_CREATED,
            json!({ "w": alice_wallet, "after": start }),
        )
        .await;
    let first = socket.next_operation("replay").await;
    let second = socket.next_operation("replay").await;
    assert_eq!(
        (first["sequence"].as_i64(), first["kind"].as_str()),
        (Some(1), Some("DEPOSIT"))
    );
    assert_eq!(
        (second["sequence"].as_i64(), second["balanceAfter"].as_str()),
        (Some(2), Some("70.00"))
    );
    socket
        .assert_silent("replay", Duration::from_millis(200))
        .await;
    assert!(
        a.metric("db_reads_total{on=\"replica\"}").await > replayed,
        "the replay's first read was the replica's"
    );
    // Another caller, with no position: it may see the replica's older
    // state, but never older than MAX_REPLICA_LAG_MS.
    let mut stale_seen = 0;
    loop {
        let seen = b.balance(&bob, &bob_wallet, None).await;
        if seen == "30.00" {
            break;
        }
        assert_eq!(seen, "0.00");
        stale_seen += 1;
        assert!(
            started.elapsed() < Duration::from_millis(MAX_LAG_MS + 500),
            "still the replica's state {} ms after the write",
            started.elapsed().as_millis()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Well past the bound, every read is fresh.
    tokio::time::sleep(Duration::from_millis(MAX_LAG_MS)).await;
    assert_eq!(b.balance(&bob, &bob_wallet, None).await, "30.00");
    println!(
        "replicas: own writes read in {} ms with replay paused; another caller saw the \
         replica's state {stale_seen} times, fresh data within {} ms",
        own_reads.as_millis(),
        MAX_LAG_MS + 500
    );

    // Replaying again, the replica serves again.
    pg_scalar(&pair.standby_url(), "SELECT pg_wal_replay_resume()::text").await;
    caught_up(&pair).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served = b.metric("db_reads_total{on=\"replica\"}").await;
    assert_eq!(b.balance(&bob, &bob_wallet, None).await, "30.00");
    assert!(b.metric("db_reads_total{on=\"replica\"}").await > served);

    // The replica stops: reads go on from the primary.
    pair.run("stop-standby");
    for _ in 0..5 {
        assert_eq!(a.balance(&bob, &bob_wallet, None).await, "30.00");
        assert_eq!(b.balance(&alice, &alice_wallet, None).await, "70.00");
    }

    // Back, then promoted (a standby that is a primary now, with its own
    // history from here): never read from again, even by A, which allows a
    // minute's lag.
    pair.run("start-standby");
    caught_up(&pair).await;
    // The primary must stop waiting for it as its synchronous standby.
    for sql in [
        "ALTER SYSTEM SET synchronous_standby_names = ''",
        "SELECT pg_reload_conf()",
    ] {
        let db = sea_orm::Database::connect(pair.primary_url())
            .await
            .expect("connect");
        sea_orm::ConnectionTrait::execute_unprepared(&db, sql)
            .await
            .expect(sql);
        let _ = db.close().await;
    }
    pair.run("promote");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (paid, _) = a
        .run(
            &alice,
            "Transfer",
            json!({ "input": { "fromWalletId": alice_wallet, "toWalletId": bob_wallet, "amount": "5.00" } }),
            None,
        )
        .await;
    helpers::data(&paid);
    assert_eq!(a.balance(&bob, &bob_wallet, None).await, "35.00");
    assert_eq!(a.balance(OPERATOR, &bob_wallet, None).await, "35.00");
}
