//! What operators watch: metrics, health and readiness, request ids, JSON
//! logs, the offline playground, and the README's configuration reference.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, lines_of};

/// The value of one series in Prometheus text, 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

async fn scrape(app: &TestApp) -> String {
    let response = reqwest::get(app.url("/metrics")).await.expect("metrics");
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.expect("text")
}

async fn metrics_move_after_a_transfer(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "10").await);
    let before = scrape(&app).await;
    let query =
        "mutation Pay($input: TransferInput!) { transfer(input: $input) { transfer { id } } }";
    let input = |amount: &str| json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet, "amount": amount } });
    data(&app.gql(Some(&alice.token), query, input("1")).await);
    app.gql(Some(&alice.token), query, input("500")).await;
    let after = scrape(&app).await;

    let ok = r#"ledger_requests_total{operation="transfer",result="OK"}"#;
    let refused = r#"ledger_requests_total{operation="transfer",result="INSUFFICIENT_FUNDS"}"#;
    let requests = r#"graphql_requests_total{type="mutation",operation="Pay"}"#;
    assert_eq!(sample(&after, ok) - sample(&before, ok), 1.0, "{after}");
    assert_eq!(sample(&after, refused) - sample(&before, refused), 1.0);
    assert_eq!(sample(&after, requests) - sample(&before, requests), 2.0);
    for series in [
        "graphql_request_duration_seconds_bucket",
        "db_pool_connections{state=\"idle\"}",
        "db_pool_max_connections",
        "db_write_waiters",
        "ledger_batch_size_bucket{le=\"1\"}",
    ] {
        assert!(after.contains(series), "{series} missing from:\n{after}");
    }
    // Two transfers committed: the batch histogram counted at least two
    // entries more (other tests in this process add theirs too).
    let entries = "ledger_batch_size_sum";
    assert!(sample(&after, entries) - sample(&before, entries) >= 2.0);
    if app.is_postgres() {
        assert!(after.contains("\ndb_notification_queue_usage "), "{after}");
        let usage = sample(&after, "db_notification_queue_usage");
        assert!((0.0..1.0).contains(&usage), "{usage}");
    }
}

async fn health_readiness_and_request_ids(app: TestApp) {
    let http = reqwest::Client::new();
    let alive: Value = http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert_eq!(alive, json!({ "status": "alive", "database": "ok" }));
    let ready = http.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);

    let response = http.get(app.url("/healthz")).send().await.expect("healthz");
    let generated = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert!(
        generated
            .as_deref()
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()),
        "{generated:?}"
    );
    let response = http
        .post(app.url("/graphql"))
        .header("x-request-id", "trace-me-42")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("graphql");
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-me-42")
    );
}

async fn the_playground_is_served_offline(app: TestApp) {
    let http = reqwest::Client::new();
    let page = http
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        !page.contains("unpkg") && !page.contains("cdn"),
        "the page loads nothing from elsewhere"
    );
    for asset in [
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphql-ws.min.js",
    ] {
        assert!(
            page.contains(&format!("/graphiql/{asset}")),
            "{asset} not referenced"
        );
        // reqwest without its gzip feature gets the stored gzip bytes.
        let response = http
            .get(app.url(&format!("/graphiql/{asset}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status().as_u16(), 200, "{asset}");
        assert_eq!(
            response
                .headers()
                .get("content-encoding")
                .and_then(|v| v.to_str().ok()),
            Some("gzip")
        );
        let bytes = response.bytes().await.expect("bytes");
        assert!(
            bytes.len() > 1000 && bytes[..2] == [0x1f, 0x8b],
            "{asset} is gzip data"
        );
    }
    let missing = http
        .get(app.url("/graphiql/nope.js"))
        .send()
        .await
        .expect("asset");
    assert_eq!(missing.status().as_u16(), 404);
}

both_backends!(
    metrics_move_after_a_transfer,
    health_readiness_and_request_ids,
    the_playground_is_served_offline
);

/// With LOG_FORMAT=json, log lines are JSON and carry the request id.
#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let dir = std::env::temp_dir().join(format!("walletql-logs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_walletql"))
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("OPERATOR_TOKEN", OPERATOR)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let rx = lines_of(child.stdout.take().expect("stdout"));
    let wait = Duration::from_secs(20);
    let addr = loop {
        let line = rx.recv_timeout(wait).expect("a log line");
        let entry: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if let Some(addr) = entry["fields"]["address"].as_str() {
            break addr.to_owned();
        }
    };
    reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .header("x-request-id", "json-log-id-7")
        .send()
        .await
        .expect("request");
    let tagged = loop {
        let line = rx.recv_timeout(wait).expect("the request's log line");
        if line.contains("json-log-id-7") {
            break line;
        }
    };
    let entry: Value = serde_json::from_str(&tagged).expect("JSON line");
    let spans = entry["spans"].as_array().cloned().unwrap_or_default();
    assert!(
        spans.iter().any(|s| s["request_id"] == "json-log-id-7"),
        "{entry}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every flag of `walletql --help` is in the README's configuration table,
/// and the table names no flag that does not exist.
#[test]
fn the_readme_configuration_reference_matches_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_walletql"))
        .arg("--help")
        .output()
        .expect("--help");
    let help = String::from_utf8_lossy(&output.stdout);
    let mut flags: Vec<String> = help
        .split_whitespace()
        .filter(|word| word.starts_with("--") && !matches!(*word, "--help" | "--version"))
        .map(|word| word.trim_end_matches(',').to_owned())
        .collect();
    flags.sort();
    flags.dedup();
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or_default();
    let mut documented: Vec<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `--"))
        .filter_map(|rest| rest.split('`').next())
        .map(|flag| format!("--{flag}"))
        .collect();
    documented.sort();
    assert_eq!(
        documented, flags,
        "README configuration table vs `walletql --help`"
    );
}
