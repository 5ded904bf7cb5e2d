//! What a stranger can try from outside: request floods, metrics series
//! without bound, connections that never finish their headers, weak
//! operator tokens, hostile text, impossible dates, and rows the service
//! would never write.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use walletql::config::{ApiLimits, RateLimits, WsLimits};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code, serve_ledger};
use crate::ws::{TRANSPORT_WS, WsClient};

async fn serve_limited(app: &TestApp, rate_limits: RateLimits) -> SocketAddr {
    let api = ApiLimits {
        rate_limits,
        ..ApiLimits::default()
    };
    serve_ledger(app.ledger.clone(), api, WsLimits::default()).await
}

async fn post(
    addr: SocketAddr,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("post")
}

async fn rate_limits_answer_429_with_retry_after_and_change_nothing(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&alice.wallet, "100").await;
    let addr = serve_limited(
        &app,
        RateLimits {
            per_token: 2,
            anonymous_per_address: 1,
        },
    )
    .await;
    // Both tokens known before the flood below.
    for client in [&alice, &bob] {
        let me = post(addr, Some(&client.token), "{ me { name } }", json!({})).await;
        assert_eq!(me.status().as_u16(), 200);
    }

    // Anonymous: createClient from one address, refused past its budget.
    let clients_before = app.sql_i64("SELECT count(*) FROM client").await;
    let create = r#"mutation { createClient(input: {name: "Flood"}) { token } }"#;
    let mut refused = None;
    for _ in 0..10 {
        let response = post(addr, None, create, json!({})).await;
        if response.status().as_u16() == 429 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status().as_u16(), 200);
    }
    let refused = refused.expect("the anonymous limit refuses a flood of createClient");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(error_code(&body), "RATE_LIMITED");
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], retry_after);
    let created = app.sql_i64("SELECT count(*) FROM client").await - clients_before;
    assert!(created <= 2, "{created} clients created in the burst");

    // Per token: Alice's transfers past her budget move nothing.
    let transfer =
        "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }";
    let mut moved = 0;
    let mut limited = 0;
    for i in 0..10 {
        let input = json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet,
                                      "amount": "1", "idempotencyKey": format!("k{i}") } });
        let response = post(addr, Some(&alice.token), transfer, input).await;
        match response.status().as_u16() {
            200 => {
                data(&response.json::<Value>().await.expect("json"));
                moved += 1;
            }
            429 => limited += 1,
            other => panic!("status {other}"),
        }
    }
    assert!(
        limited > 0 && moved <= 4,
        "moved {moved}, limited {limited}"
    );
    assert_eq!(app.balance(&bob.wallet).await, format!("{moved}.00"));
    // Another client's budget is its own; the operator is not limited.
    let me = post(addr, Some(&bob.token), "{ me { name } }", json!({})).await;
    assert_eq!(me.status().as_u16(), 200);
    for _ in 0..10 {
        let op = post(
            addr,
            Some(OPERATOR),
            "{ wallets { nodes { id } } }",
            json!({}),
        )
        .await;
        assert_eq!(op.status().as_u16(), 200);
    }

    // The same budget holds over WebSocket: connection_init spends it.
    let mut refusal = None;
    for _ in 0..10 {
        if let Err(err) = WsClient::connect(addr, TRANSPORT_WS, Some(&alice.token)).await {
            refusal = Some(err);
            break;
        }
    }
    assert!(
        refusal
            .as_deref()
            .is_some_and(|e| e.contains("RATE_LIMITED")),
        "{refusal:?}"
    );
    app.assert_ledger_consistent().await;
}

/// Guessing tokens is rate-limited: each unknown token spends the address's
/// anonymous budget, and past it no token from there is looked up until the
/// budget allows again; a known token is served from the cache meanwhile.
async fn token_guessing_is_rate_limited(app: TestApp) {
    let ada = app.create_client("Ada").await;
    let addr = serve_limited(
        &app,
        RateLimits {
            per_token: 0,
            anonymous_per_address: 1,
        },
    )
    .await;
    let me = "{ me { name } }";
    // Ada's token is found, and cached.
    assert_eq!(
        post(addr, Some(&ada.token), me, json!({}))
            .await
            .status()
            .as_u16(),
        200
    );
    let mut statuses = Vec::new();
    let before = app.store.statements_run();
    for i in 0..6 {
        let guess = format!("wq_guess-{i}");
        statuses.push(
            post(addr, Some(&guess), me, json!({}))
                .await
                .status()
                .as_u16(),
        );
    }
    let lookups = app.store.statements_run() - before;
    // A burst of two guesses, then the one that tips the budget over, then
    // refusals that cost no lookup at all.
    assert_eq!(statuses, [401, 401, 429, 429, 429, 429]);
    assert_eq!(lookups, 3, "a blocked address's guesses are not looked up");
    // Ada, cached, is still served.
    let response = post(addr, Some(&ada.token), me, json!({})).await;
    assert_eq!(response.status().as_u16(), 200);
}

async fn operation_names_cannot_grow_the_metrics_without_bound(app: TestApp) {
    for i in 0..500 {
        let query = format!("query Probe{i}x{} {{ __typename }}", fastrand::u64(..));
        data(&app.gql(None, &query, json!({})).await);
    }
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("graphql_requests_total{"))
        .count();
    assert!(
        series <= walletql::metrics::MAX_OPERATION_LABELS + 2,
        "{series} series of graphql_requests_total"
    );
    assert!(metrics.contains("operation=\"other\""), "{metrics}");
}

async fn metrics_can_require_a_token(app: TestApp) {
    let api = ApiLimits {
        metrics_token: Some("metrics-secret".to_owned()),
        ..ApiLimits::default()
    };
    let addr = serve_ledger(app.ledger.clone(), api, WsLimits::default()).await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let anonymous = http.get(&url).send().await.expect("metrics");
    assert_eq!(anonymous.status().as_u16(), 401);
    let wrong = http
        .get(&url)
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("metrics");
    assert_eq!(wrong.status().as_u16(), 401);
    let right = http
        .get(&url)
        .bearer_auth("metrics-secret")
        .send()
        .await
        .expect("metrics");
    assert_eq!(right.status().as_u16(), 200);
    assert!(
        right
            .text()
            .await
            .expect("text")
            .contains("db_pool_connections")
    );
    // Off the main listener entirely when it has its own address.
    let api = ApiLimits {
        metrics_on_main: false,
        ..ApiLimits::default()
    };
    let addr = serve_ledger(app.ledger.clone(), api, WsLimits::default()).await;
    let hidden = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(hidden.status().as_u16(), 404);
}

async fn slow_headers_and_idle_connections_are_closed(app: TestApp) {
    let api = ApiLimits {
        header_timeout: Duration::from_millis(500),
        ..ApiLimits::default()
    };
    let addr = serve_ledger(app.ledger.clone(), api, WsLimits::default()).await;
    // Slowloris: headers that never end.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;
    assert!(
        read.is_ok(),
        "the server closes a connection stuck in its headers"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // Keep-alive: a connection idle after a response is closed too.
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.expect("response");
    assert_eq!(&first, b"HTTP/1.1 200");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "an idle keep-alive connection is closed");
}

async fn cors_allows_any_origin_with_a_star(app: TestApp) {
    let api = ApiLimits {
        cors_allowed_origins: vec!["*".to_owned()],
        ..ApiLimits::default()
    };
    let addr = serve_ledger(app.ledger.clone(), api, WsLimits::default()).await;
    let http = reqwest::Client::new();
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("http://{addr}/graphql"))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, x-request-id, x-min-lsn",
        )
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("x-request-id")
            && allowed.contains("authorization")
            && allowed.contains("x-min-lsn"),
        "{allowed}"
    );
    let response = crate::helpers::cross_origin_post(&addr.to_string()).await;
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(
        response.headers()["access-control-expose-headers"]
            .to_str()
            .is_ok_and(|h| {
                let h = h.to_ascii_lowercase();
                h.contains("x-request-id") && h.contains("x-commit-lsn")
            })
    );
}

/// `x-min-lsn` must be a WAL position: anything else is refused with
/// INVALID_INPUT (400) before anything runs. Without replicas a good one
/// changes nothing, and answers carry no `x-commit-lsn` (there is nothing
/// to wait for).
async fn a_malformed_min_lsn_is_refused(app: TestApp) {
    let addr = serve_ledger(
        app.ledger.clone(),
        ApiLimits::default(),
        WsLimits::default(),
    )
    .await;
    let client = app.create_client("Reader").await;
    let send = |lsn: &'static str| {
        reqwest::Client::new()
            .post(format!("http://{addr}/graphql"))
            .bearer_auth(OPERATOR)
            .header("x-min-lsn", lsn)
            .json(&json!({
                "query": "mutation($id: UUID!) { deposit(input: {walletId: $id, amount: \"1.00\"}) { wallet { balance } } }",
                "variables": { "id": client.wallet },
            }))
            .send()
    };
    for bad in ["yesterday", "1/2/3", "123456789/0", "", "+1/0"] {
        let refused = send(bad).await.expect("post");
        assert_eq!(refused.status(), 400, "{bad:?}");
        let body: Value = refused.json().await.expect("json");
        assert_eq!(error_code(&body), "INVALID_INPUT", "{bad:?}: {body}");
    }
    assert_eq!(app.balance(&client.wallet).await, "0.00");
    let taken = send("0/16B3748").await.expect("post");
    assert_eq!(taken.status(), 200);
    assert!(taken.headers().get("x-commit-lsn").is_none());
    let body: Value = taken.json().await.expect("json");
    assert_eq!(data(&body)["deposit"]["wallet"]["balance"], "1.00");
    assert!(
        body.get("extensions")
            .is_none_or(|e| e.get("commitLsn").is_none()),
        "{body}"
    );
}

async fn hostile_text_and_case_are_handled(app: TestApp) {
    let create = "mutation($name: String!) { createClient(input: {name: $name}) { token } }";
    for name in ["invoice\u{202E}fdp.exe", "a\u{2066}b", "tab\there"] {
        let refused = app.gql(None, create, json!({ "name": name })).await;
        assert_eq!(error_code(&refused), "INVALID_INPUT", "{name:?}: {refused}");
    }
    // The bearer scheme is case-insensitive.
    let client = app.create_client("Ada").await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let (status, response) = app
            .post(
                Some(&format!("{scheme} {}", client.token)),
                json!({ "query": "{ me { name } }" }),
            )
            .await;
        assert_eq!(status, 200, "{scheme}: {response}");
        assert_eq!(data(&response)["me"]["name"], "Ada");
    }
}

/// Out-of-range years are refused; within range, both backends return the
/// same pages for the same windows.
async fn date_filters_agree_and_refuse_impossible_years(app: TestApp) {
    let client = app.create_client("Ada").await;
    for amount in ["1", "2", "3"] {
        app.deposit(&client.wallet, amount).await;
    }
    let query = "query($w: UUID!, $f: OperationFilterInput) {
        operations(walletId: $w, filter: $f) { nodes { sequence createdAt } } }";
    let page = |filter: Value| {
        app.gql(
            Some(&client.token),
            query,
            json!({ "w": client.wallet, "f": filter }),
        )
    };
    for bad in [
        "-200000-01-01T00:00:00Z",
        "+10000-01-01T00:00:00Z",
        "0000-12-31T23:59:59Z",
        "2026-13-01T00:00:00Z",
        "yesterday",
    ] {
        for key in ["from", "to"] {
            let refused = page(json!({ key: bad })).await;
            assert_eq!(
                error_code(&refused),
                "INVALID_INPUT",
                "{key}: {bad}: {refused}"
            );
        }
    }
    let all = page(json!({})).await;
    let nodes = data(&all)["operations"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(nodes.len(), 3);
    let second = nodes[1]["createdAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        second.ends_with('Z') && second.len() == "2026-11-29T21:18:58.123456Z".len(),
        "{second}"
    );
    let sequences = |response: &Value| -> Vec<i64> {
        data(response)["operations"]["nodes"]
            .as_array()
            .map(|n| n.iter().filter_map(|o| o["sequence"].as_i64()).collect())
            .unwrap_or_default()
    };
    let cases = [
        (
            json!({ "from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z" }),
            vec![3, 2, 1],
        ),
        (json!({ "from": "9999-12-31T23:59:59.999999Z" }), vec![]),
        (json!({ "to": "0001-01-01T00:00:00Z" }), vec![]),
        // `from` inclusive, `to` exclusive, to the microsecond.
        (json!({ "from": second }), vec![3, 2]),
        (json!({ "to": second }), vec![1]),
        (json!({ "from": second.replace('Z', "+00:00") }), vec![3, 2]),
    ];
    for (filter, expected) in cases {
        let response = page(filter.clone()).await;
        assert_eq!(sequences(&response), expected, "{filter}");
    }
}

/// Rows the service never writes are refused by the database itself.
async fn the_database_refuses_rows_the_service_never_writes(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&alice.wallet, "5").await;
    data(
        &app.transfer_with(&alice, &bob.wallet, "1", Some("once"))
            .await,
    );
    let db = app.store.db();
    let run = |sql: String| async move {
        use sea_orm::ConnectionTrait;
        db.execute_unprepared(&sql).await
    };
    // Rows are picked by value, not by id: SQLite stores UUIDs as blobs.
    let refused = [
        "UPDATE client SET email = 'Alice@Example.com' WHERE name = 'Alice'",
        "UPDATE wallet SET last_seq = -1",
        "UPDATE operation SET transfer_id = NULL WHERE kind = 'TRANSFER_IN'",
        "UPDATE operation SET counterparty_wallet_id = wallet_id WHERE kind = 'DEPOSIT'",
        "UPDATE operation SET balance_after = 100000000000001 WHERE kind = 'DEPOSIT'",
        "UPDATE idempotency_key SET transfer_id = NULL, operation_id = NULL",
    ];
    for sql in refused {
        assert!(
            run(sql.to_owned()).await.is_err(),
            "the database accepted: {sql}"
        );
    }
    assert_eq!(app.sql_i64("SELECT count(*) FROM idempotency_key").await, 1);
    // Two emails that differ only in case cannot both exist.
    run("UPDATE client SET email = 'ada@example.com' WHERE name = 'Alice'".to_owned())
        .await
        .expect("a lower-case email");
    assert!(
        run("UPDATE client SET email = 'ADA@example.com' WHERE name = 'Bob'".to_owned())
            .await
            .is_err()
    );
    app.assert_ledger_consistent().await;
}

both_backends!(
    rate_limits_answer_429_with_retry_after_and_change_nothing,
    token_guessing_is_rate_limited,
    operation_names_cannot_grow_the_metrics_without_bound,
    metrics_can_require_a_token,
    slow_headers_and_idle_connections_are_closed,
    cors_allows_any_origin_with_a_star,
    a_malformed_min_lsn_is_refused,
    hostile_text_and_case_are_handled,
    date_filters_agree_and_refuse_impossible_years,
    the_database_refuses_rows_the_service_never_writes,
);
