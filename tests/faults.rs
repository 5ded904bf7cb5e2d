//! Database faults: PostgreSQL stopped in the middle of traffic.
//!
//! These tests stop and start the local PostgreSQL cluster, so they must not
//! run beside other tests: they are `#[ignore]`d and run alone by
//! `.ci/faults` (`cargo nextest run --test faults --run-ignored only`), which
//! also restarts PostgreSQL whatever happens.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use helpers::{OPERATOR, TestApp, data, error_code};

fn cluster(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut entries| entries.next())
        .and_then(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().to_string())
        .expect("a PostgreSQL cluster under /etc/postgresql");
    let status = Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            action,
            "-m",
            "fast",
        ])
        .status()
        .expect("pg_ctlcluster");
    assert!(
        status.success() || action == "start",
        "pg_ctlcluster {action}"
    );
}

/// Starts PostgreSQL again when dropped, even if the test panicked.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| cluster("start"));
    }
}

/// `/readyz` status, and what `/healthz` says of the database.
async fn health(app: &TestApp) -> (u16, String) {
    let ready = reqwest::get(app.url("/readyz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    let alive: Value = match reqwest::get(app.url("/healthz")).await {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    (ready, alive["database"].as_str().unwrap_or("?").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops PostgreSQL; run alone by .ci/faults"]
async fn the_service_fails_fast_while_postgres_is_down_and_recovers_by_itself() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let alice = app.create_client("Alice").await;
    data(&app.deposit(&alice.wallet, "10").await);
    assert_eq!(health(&app).await, (200, "ok".to_owned()));

    let _restart = RestartOnDrop;
    // Traffic in flight while the database goes away.
    let traffic = async {
        let mut codes = Vec::new();
        let until = Instant::now() + Duration::from_millis(1200);
        while Instant::now() < until {
            let response = app.deposit(&alice.wallet, "1").await;
            codes.push(
                response["errors"][0]["extensions"]["code"]
                    .as_str()
                    .unwrap_or("OK")
                    .to_owned(),
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        codes
    };
    let stop = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster("stop");
    };
    let (codes, ()) = tokio::join!(traffic, stop);
    assert!(
        codes
            .iter()
            .all(|c| c == "OK" || c == "SERVICE_UNAVAILABLE"),
        "{codes:?}"
    );

    // While it is down: a clear code, quickly, and an unhealthy health check.
    let started = Instant::now();
    let response: Value = app.deposit(&alice.wallet, "1").await;
    assert_eq!(error_code(&response), "SERVICE_UNAVAILABLE", "{response}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "failed fast: {:?}",
        started.elapsed()
    );
    let read = app
        .gql(
            Some(OPERATOR),
            "query($w: UUID!) { wallet(id: $w) { balance } }",
            json!({ "w": alice.wallet }),
        )
        .await;
    assert_eq!(error_code(&read), "SERVICE_UNAVAILABLE");
    // Over HTTP: 503 with Retry-After when nothing could be answered.
    let raw = reqwest::Client::new()
        .post(app.url("/graphql"))
        .bearer_auth(OPERATOR)
        .json(
            &json!({ "query": "query($w: UUID!) { wallet(id: $w) { balance } }",
            "variables": { "w": alice.wallet } }),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(raw.status().as_u16(), 503);
    assert_eq!(
        raw.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Alive, but not ready, and saying why.
    assert_eq!(health(&app).await, (503, "unreachable".to_owned()));

    // Back up: the same server recovers without a restart.
    cluster("start");
    let deadline = Instant::now() + Duration::from_secs(30);
    while health(&app).await.0 != 200 {
        assert!(Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut recovered = false;
    for _ in 0..20 {
        if app
            .deposit(&alice.wallet, "1")
            .await
            .get("errors")
            .is_none()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "deposits work again");
    // No fault left half a transfer or a deposit without its row.
    app.assert_ledger_consistent().await;
}
