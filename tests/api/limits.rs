//! Limits: body size, query depth and complexity, batching, timeouts, pool
//! exhaustion, introspection, GraphiQL and CORS. Each over-limit request
//! gets a clear code and costs the server little.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use walletql::config::{ApiLimits, WsLimits};
use walletql::store::{Store, StoreOptions};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code};

async fn serve_with(store: Store, limits: ApiLimits) -> SocketAddr {
    crate::helpers::serve_store(store, limits, WsLimits::default()).await
}

/// A server whose pool has one connection, which the test holds (in the
/// returned transaction): every request has to wait for it.
async fn server_with_a_held_pool(
    app: &TestApp,
    acquire_timeout: Duration,
    limits: ApiLimits,
) -> (SocketAddr, sea_orm::DatabaseTransaction) {
    use sea_orm::TransactionTrait;
    let options = StoreOptions {
        max_connections: 1,
        acquire_timeout,
        ..StoreOptions::default()
    };
    let store = Store::connect_with(&app.db_url, options)
        .await
        .expect("store");
    let addr = serve_with(store.clone(), limits).await;
    let held = store.db().begin().await.expect("hold the only connection");
    (addr, held)
}

/// Sends raw HTTP/1.1 and returns the status and body of the response.
async fn raw_http(addr: SocketAddr, request: Vec<u8>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before reading everything.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn oversized_bodies_are_refused_with_a_code(app: TestApp) {
    let padding = "x".repeat(70 * 1024);
    let body = json!({ "query": "{ me { id } }", "variables": { "pad": padding } });
    // With a Content-Length, the limit layer answers before reading.
    let (status, response) = app
        .post(Some(&format!("Bearer {OPERATOR}")), body.clone())
        .await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&response), "PAYLOAD_TOO_LARGE");

    // Chunked, with no length announced: the limit holds while reading too
    // (async-graphql-axum reads the stream itself, past axum's own limit).
    let payload = body.to_string();
    let mut request = "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".as_bytes().to_vec();
    for chunk in payload.as_bytes().chunks(8192) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw_http(app.addr, request).await;
    assert_eq!(status, 413, "{body}");
    let body = body.lines().find(|l| l.starts_with('{')).unwrap_or("{}");
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert_eq!(error_code(&parsed), "PAYLOAD_TOO_LARGE");

    // Just under the limit is fine.
    let small = json!({ "query": "{ me { id } }", "variables": { "pad": "x".repeat(60 * 1024) } });
    let (status, _) = app.post(Some(&format!("Bearer {OPERATOR}")), small).await;
    assert_eq!(status, 200);
}

async fn deep_and_expensive_queries_are_refused(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let mut deep = String::from("wallet { id }");
    for _ in 0..8 {
        deep = format!("wallet {{ client {{ {deep} }} }}");
    }
    let query =
        format!("query($w: UUID!) {{ {deep} }}").replacen("wallet {", "wallet(id: $w) {", 1);
    let response = app
        .gql(Some(OPERATOR), &query, json!({ "w": alice.wallet }))
        .await;
    assert_eq!(error_code(&response), "QUERY_TOO_COMPLEX", "{response}");

    let expensive = "{ wallets(first: 100) { nodes { id operations(first: 100) { nodes { id amount kind sequence } } } } }";
    let response = app.gql(Some(OPERATOR), expensive, json!({})).await;
    assert_eq!(error_code(&response), "QUERY_TOO_COMPLEX", "{response}");
    // An ordinary page is fine.
    let fine = "{ wallets(first: 100) { nodes { id balance operations(first: 5) { nodes { amount } } } } }";
    data(&app.gql(Some(OPERATOR), fine, json!({})).await);
}

async fn batches_and_malformed_bodies_are_invalid_input(app: TestApp) {
    let auth = format!("Bearer {OPERATOR}");
    let (status, response) = app
        .post(
            Some(&auth),
            json!([{ "query": "{ me { id } }" }, { "query": "{ me { id } }" }]),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&response), "INVALID_INPUT");
    // A body that is JSON but no request: an empty document, refused.
    let (_, response) = app.post(Some(&auth), json!({ "nope": 1 })).await;
    assert_eq!(error_code(&response), "INVALID_INPUT");
}

/// A query still running at the request timeout is answered with
/// TIMEOUT. To be slow for certain, it waits for the only pooled connection,
/// held by the test, with an acquire timeout longer than the request's.
/// (A mutation is let finish its field in flight: see `mutations.rs`.)
async fn a_slow_request_times_out(app: TestApp) {
    let limits = ApiLimits {
        request_timeout: Duration::from_millis(300),
        ..ApiLimits::default()
    };
    let (addr, held) = server_with_a_held_pool(&app, Duration::from_secs(10), limits).await;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(OPERATOR)
        .json(&json!({ "query": "{ wallets(first: 1) { nodes { id } } }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 504);
    let body: Value = response.json().await.expect("json");
    assert_eq!(error_code(&body), "TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(held);
}

/// With every pooled connection taken, a request is refused after the
/// acquire timeout instead of waiting forever.
async fn an_exhausted_pool_gives_service_unavailable(app: TestApp) {
    let (addr, held) =
        server_with_a_held_pool(&app, Duration::from_millis(300), ApiLimits::default()).await;
    let create = || async move {
        let response = reqwest::Client::new()
            .post(format!("http://{addr}/graphql"))
            .json(
                &json!({ "query": "mutation { createClient(input: {name: \"Bob\"}) { token } }" }),
            )
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.json::<Value>().await.expect("json");
        (status, retry_after, body)
    };
    let started = Instant::now();
    let (status, retry_after, response) = create().await;
    assert_eq!(error_code(&response), "SERVICE_UNAVAILABLE", "{response}");
    // Nothing was answered: 503, and when to come back.
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused after a bounded wait"
    );
    drop(held);
    // Once the connection is back, the same request succeeds.
    let (status, _, response) = create().await;
    data(&response);
    assert_eq!(status, 200);
}

async fn introspection_and_graphiql_can_be_switched_off(app: TestApp) {
    let introspection = "{ __schema { queryType { name } } }";
    data(&app.gql(None, introspection, json!({})).await);
    let limits = ApiLimits {
        introspection: false,
        graphiql: false,
        ..ApiLimits::default()
    };
    let addr = serve_with(app.store.clone(), limits).await;
    let http = reqwest::Client::new();
    let response: Value = http
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": introspection }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    // The schema answers as if it had nothing to introspect.
    assert!(response["data"]["__schema"].is_null(), "{response}");
    let page = http
        .get(format!("http://{addr}/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("get");
    assert_eq!(page.status().as_u16(), 404);
}

async fn cross_origin_calls_need_an_allowed_origin(app: TestApp) {
    let preflight = |addr: SocketAddr| async move {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("http://{addr}/graphql"))
            .header("Origin", "https://wallet.example")
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
            .await
            .expect("preflight")
    };
    let denied = preflight(app.addr).await;
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let limits = ApiLimits {
        cors_allowed_origins: vec!["https://wallet.example".into()],
        ..ApiLimits::default()
    };
    let addr = serve_with(app.store.clone(), limits).await;
    let allowed = preflight(addr).await;
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://wallet.example")
    );
}

/// A `transferBatch` of 1,000 items is larger than MAX_BODY_BYTES: it may
/// reach MAX_BATCH_BODY_BYTES, only authenticated and only alone.
async fn a_transfer_batch_may_be_larger_than_other_bodies(app: TestApp) {
    let payer = app.create_client("Payer").await;
    let payee = app.create_client("Payee").await;
    data(&app.deposit(&payer.wallet, "1000.00").await);
    let query = "mutation($input: TransferBatchInput!) { transferBatch(input: $input) {
        results { code transfer { id } } fromWallet { balance } } }";
    let items: Vec<Value> = (0..1_000)
        .map(|i| json!({ "fromWalletId": payer.wallet, "toWalletId": payee.wallet, "amount": "0.01",
            "description": format!("invoice {i:04} of a monthly settlement run"), "idempotencyKey": format!("run-1-{i}") }))
        .collect();
    let body = json!({ "query": query, "variables": { "input": { "transfers": items, "atomic": false } } });
    assert!(
        body.to_string().len() > 64 * 1024,
        "the batch is larger than MAX_BODY_BYTES"
    );

    let (status, response) = app.post(None, body.clone()).await;
    assert_eq!(
        (status, error_code(&response)),
        (413, "PAYLOAD_TOO_LARGE"),
        "anonymous"
    );
    let with_more = json!({ "query": query.replacen("fromWallet { balance } } }", "fromWallet { balance } } me { id } }", 1),
        "variables": body["variables"] });
    let (status, response) = app
        .post(Some(&format!("Bearer {}", payer.token)), with_more)
        .await;
    assert_eq!(
        (status, error_code(&response)),
        (413, "PAYLOAD_TOO_LARGE"),
        "not alone"
    );
    assert_eq!(app.balance(&payer.wallet).await, "1000.00");

    let (status, response) = app
        .post(Some(&format!("Bearer {}", payer.token)), body)
        .await;
    assert_eq!(status, 200);
    let batch = &data(&response)["transferBatch"];
    let posted = batch["results"]
        .as_array()
        .map(|r| r.iter().filter(|x| x["code"].is_null()).count());
    assert_eq!(posted, Some(1_000));
    assert_eq!(batch["fromWallet"]["balance"], "990.00");

    let huge = json!({ "query": query, "variables": { "input": { "transfers": [], "atomic": false }, "pad": "x".repeat(600 * 1024) } });
    let (status, response) = app
        .post(Some(&format!("Bearer {}", payer.token)), huge)
        .await;
    assert_eq!(
        (status, error_code(&response)),
        (413, "PAYLOAD_TOO_LARGE"),
        "past MAX_BATCH_BODY_BYTES"
    );
    app.assert_ledger_consistent().await;
}

both_backends!(
    a_transfer_batch_may_be_larger_than_other_bodies,
    oversized_bodies_are_refused_with_a_code,
    deep_and_expensive_queries_are_refused,
    batches_and_malformed_bodies_are_invalid_input,
    a_slow_request_times_out,
    an_exhausted_pool_gives_service_unavailable,
    introspection_and_graphiql_can_be_switched_off,
    cross_origin_calls_need_an_allowed_origin,
);

/// PostgreSQL stops a statement past STATEMENT_TIMEOUT_MS; that is TIMEOUT.
#[tokio::test]
async fn statements_past_their_time_limit_are_stopped() {
    use sea_orm::ConnectionTrait;
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let options = StoreOptions {
        statement_timeout: Duration::from_millis(50),
        ..StoreOptions::default()
    };
    let store = Store::connect_with(&app.db_url, options)
        .await
        .expect("store");
    let started = Instant::now();
    let err = store
        .db()
        .execute_unprepared("SELECT pg_sleep(5)")
        .await
        .expect_err("stopped");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(walletql::store::app_error(&err).code(), "TIMEOUT");
}
