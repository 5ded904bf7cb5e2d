//! Documents with several mutations: each root field is answered on its
//! own (data means it committed, an error means it changed nothing), the
//! work one request may ask for is bounded before anything runs, and a
//! request whose time runs out stops between fields.

use std::time::Duration;

use serde_json::{Value, json};
use walletql::config::{ApiLimits, RateLimits, WsLimits};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, TestClient, data, error_code, serve_ledger, text};
use crate::verbs::{authorize, key};

/// Two clients; the first holds `funds`.
async fn pair(app: &TestApp, funds: &str) -> (TestClient, TestClient) {
    let payer = app.create_client("Payer").await;
    let payee = app.create_client("Payee").await;
    data(&app.deposit(&payer.wallet, funds).await);
    (payer, payee)
}

/// `count` aliased transfers of `amount` each, `t0` to `t{count-1}`.
fn aliased_transfers(count: usize, amount: &str) -> String {
    let fields: String = (0..count)
        .map(|i| {
            format!(
                "t{i}: transfer(input: {{fromWalletId: $from, toWalletId: $to, amount: \"{amount}\"}}) {{ transfer {{ id }} }} "
            )
        })
        .collect();
    format!("mutation($from: UUID!, $to: UUID!) {{ {fields} }}")
}

fn errors_of(response: &Value) -> Vec<Value> {
    response["errors"].as_array().cloned().unwrap_or_default()
}

async fn a_refused_alias_never_hides_one_that_committed(app: TestApp) {
    let (payer, payee) = pair(&app, "100000.00").await;
    let query = "mutation($from: UUID!, $to: UUID!) {
        pay: transfer(input: {fromWalletId: $from, toWalletId: $to, amount: \"1.00\"}) { transfer { id amount } }
        tooMuch: transfer(input: {fromWalletId: $from, toWalletId: $to, amount: \"999999999.00\"}) { transfer { id } }
        after: transfer(input: {fromWalletId: $from, toWalletId: $to, amount: \"2.00\"}) { transfer { id amount } } }";
    let vars = json!({ "from": payer.wallet, "to": payee.wallet });
    let response = app.gql(Some(&payer.token), query, vars).await;
    assert_eq!(
        response["data"]["pay"]["transfer"]["amount"], "1.00",
        "{response}"
    );
    assert_eq!(response["data"]["tooMuch"], Value::Null, "{response}");
    assert_eq!(
        response["data"]["after"]["transfer"]["amount"], "2.00",
        "{response}"
    );
    let errors = errors_of(&response);
    assert_eq!(errors.len(), 1, "{response}");
    assert_eq!(errors[0]["path"], json!(["tooMuch"]));
    assert_eq!(errors[0]["extensions"]["code"], "INSUFFICIENT_FUNDS");
    // Exactly what the answer shows moved.
    assert_eq!(app.balance(&payee.wallet).await, "3.00");
    assert_eq!(app.balance(&payer.wallet).await, "99997.00");

    // The same for holds and captures: an aliased capture past the hold is
    // refused on its own, the other capture commits and shows.
    let first = authorize(&app, &payer, &payee.wallet, "50.00", json!({})).await;
    let second = authorize(&app, &payer, &payee.wallet, "20.00", json!({})).await;
    let ids = [&first, &second].map(|r| text(&data(r)["authorizeTransfer"]["transfer"]["id"]));
    let query = "mutation($a: UUID!, $b: UUID!, $ka: String!, $kb: String!) {
        ok: captureTransfer(input: {transferId: $a, amount: \"10.00\", idempotencyKey: $ka}) { transfer { id status capturedAmount } }
        over: captureTransfer(input: {transferId: $b, amount: \"20.01\", idempotencyKey: $kb}) { transfer { id } } }";
    let vars = json!({ "a": ids[0], "b": ids[1], "ka": key(), "kb": key() });
    let response = app.gql(Some(&payee.token), query, vars).await;
    assert_eq!(
        response["data"]["ok"]["transfer"]["status"], "POSTED",
        "{response}"
    );
    assert_eq!(
        response["data"]["ok"]["transfer"]["capturedAmount"],
        "10.00"
    );
    assert_eq!(response["data"]["over"], Value::Null, "{response}");
    assert_eq!(errors_of(&response)[0]["path"], json!(["over"]));
    assert_eq!(
        errors_of(&response)[0]["extensions"]["code"],
        "INVALID_INPUT"
    );
    assert_eq!(app.balance(&payee.wallet).await, "13.00");
    app.assert_ledger_consistent().await;
}

async fn aliases_and_fragments_are_bounded_before_anything_runs(app: TestApp) {
    let (payer, payee) = pair(&app, "100.00").await;
    let vars = json!({ "from": payer.wallet, "to": payee.wallet });
    let before = app.sql_i64("SELECT count(*) FROM operation").await;
    // Eleven aliased transfers: refused whole, even the first.
    let eleven = app
        .gql(
            Some(&payer.token),
            &aliased_transfers(11, "1.00"),
            vars.clone(),
        )
        .await;
    assert_eq!(error_code(&eleven), "TOO_MANY_MUTATIONS", "{eleven}");
    assert_eq!(eleven["data"], Value::Null, "{eleven}");
    // Fragments count each time they are spread: 3 spreads of 4 fields.
    let spread = "mutation($from: UUID!, $to: UUID!) { ...F ...F ... on Mutation { ...F } }
        fragment F on Mutation {
          a: transfer(input: {fromWalletId: $from, toWalletId: $to, amount: \"1.00\"}) { transfer { id } }
          b: transfer(input: {fromWalletId: $from, toWalletId: $to, amount: \"1.00\"}) { transfer { id } }
          c: transfer(input: {fromWalletId: $from, toWalletId: $to, amount: \"1.00\"}) { transfer { id } }
          d: transfer(input: {fromWalletId: $from, toWalletId: $to, amount: \"1.00\"}) { transfer { id } } }";
    let spread = app.gql(Some(&payer.token), spread, vars.clone()).await;
    assert_eq!(error_code(&spread), "TOO_MANY_MUTATIONS", "{spread}");
    // Batches sharing one variable: their items add up past 1,000.
    let items: Vec<Value> = (0..450)
        .map(|_| json!({ "fromWalletId": payer.wallet, "toWalletId": payee.wallet, "amount": "0.01" }))
        .collect();
    let fields: String = (0..3)
        .map(|i| format!("b{i}: transferBatch(input: {{transfers: $t, atomic: false}}) {{ results {{ index }} }} "))
        .collect();
    let batches = app
        .gql(
            Some(&payer.token),
            &format!("mutation($t: [TransferInput!]!) {{ {fields} }}"),
            json!({ "t": items }),
        )
        .await;
    assert_eq!(error_code(&batches), "TOO_MANY_MUTATIONS", "{batches}");
    // The operator has no rate, but the same bounds.
    let deposits: String = (0..11)
        .map(|i| {
            format!(
                "d{i}: deposit(input: {{walletId: $w, amount: \"1.00\"}}) {{ wallet {{ id }} }} "
            )
        })
        .collect();
    let operator = app
        .gql(
            Some(OPERATOR),
            &format!("mutation($w: UUID!) {{ {deposits} }}"),
            json!({ "w": payer.wallet }),
        )
        .await;
    assert_eq!(error_code(&operator), "TOO_MANY_MUTATIONS", "{operator}");
    assert_eq!(app.sql_i64("SELECT count(*) FROM operation").await, before);
    assert_eq!(app.balance(&payer.wallet).await, "100.00");

    // At the limit, all of it runs.
    let ten = app
        .gql(Some(&payer.token), &aliased_transfers(10, "1.00"), vars)
        .await;
    let ten = data(&ten);
    assert_eq!(ten.as_object().map(|o| o.len()), Some(10));
    assert_eq!(app.balance(&payee.wallet).await, "10.00");
}

async fn each_mutation_field_spends_the_callers_rate(app: TestApp) {
    let (payer, payee) = pair(&app, "100.00").await;
    // 5 a second, bursts of 10.
    let limits = ApiLimits {
        rate_limits: RateLimits {
            per_token: 5,
            anonymous_per_address: 0,
        },
        ..ApiLimits::default()
    };
    let mut app = app;
    app.use_server(serve_ledger(app.ledger.clone(), limits, WsLimits::default()).await);
    let vars = json!({ "from": payer.wallet, "to": payee.wallet });
    // Ten fields spend the whole burst at once...
    let ten = app
        .gql(
            Some(&payer.token),
            &aliased_transfers(10, "1.00"),
            vars.clone(),
        )
        .await;
    data(&ten);
    // ... so two more are refused together, before either runs, as the
    // door refuses a request: 429 with Retry-After.
    let (status, two) = app
        .post(
            Some(&format!("Bearer {}", payer.token)),
            json!({ "query": aliased_transfers(2, "1.00"), "variables": vars }),
        )
        .await;
    assert_eq!(status, 429, "{two}");
    assert_eq!(error_code(&two), "RATE_LIMITED");
    assert!(two["errors"][0]["extensions"]["retryAfter"].as_u64() >= Some(1));
    assert_eq!(app.balance(&payee.wallet).await, "10.00");
    // The operator is not rate limited.
    let deposits: String = (0..10)
        .map(|i| {
            format!(
                "d{i}: deposit(input: {{walletId: $w, amount: \"1.00\"}}) {{ wallet {{ id }} }} "
            )
        })
        .collect();
    for _ in 0..3 {
        let response = app
            .gql(
                Some(OPERATOR),
                &format!("mutation($w: UUID!) {{ {deposits} }}"),
                json!({ "w": payee.wallet }),
            )
            .await;
        data(&response);
    }
    assert_eq!(app.balance(&payee.wallet).await, "40.00");
}

/// Makes writes to `wallet` wait for `hold`: its row is locked from another
/// connection (PostgreSQL), or the one writer's turn is taken (SQLite, where
/// another connection's write lock would fail writes rather than delay them).
async fn block_writes(app: &TestApp, wallet: &str, hold: Duration) -> tokio::task::JoinHandle<()> {
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};
    let url = app.db_url.clone();
    let wallet = wallet.to_owned();
    let store = app.store.clone();
    let postgres = app.is_postgres();
    let (locked, is_locked) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        if postgres {
            let db = Database::connect(url.as_str()).await.expect("connect");
            let tx = db.begin().await.expect("begin");
            tx.execute_unprepared(&format!(
                "SELECT 1 FROM wallet WHERE id = '{wallet}' FOR UPDATE"
            ))
            .await
            .expect("lock");
            let _ = locked.send(());
            tokio::time::sleep(hold).await;
            tx.rollback().await.expect("rollback");
        } else {
            let turn = store.begin_write().await.expect("the writer's turn");
            let _ = locked.send(());
            tokio::time::sleep(hold).await;
            drop(turn);
        }
    });
    is_locked.await.expect("locked");
    task
}

async fn a_request_out_of_time_stops_between_fields(app: TestApp) {
    let (payer, payee) = pair(&app, "100.00").await;
    let limits = ApiLimits {
        rate_limits: RateLimits::OFF,
        request_timeout: Duration::from_secs(1),
        ..ApiLimits::default()
    };
    let mut app = app;
    app.use_server(serve_ledger(app.ledger.clone(), limits, WsLimits::default()).await);
    // The first field waits past the deadline for the lock, then commits;
    // the second never starts.
    let blocker = block_writes(&app, &payer.wallet, Duration::from_millis(1800)).await;
    let query = "mutation($from: UUID!, $to: UUID!) {
        first: transfer(input: {fromWalletId: $from, toWalletId: $to, amount: \"1.00\"}) { transfer { amount } fromWallet { balance } }
        second: transfer(input: {fromWalletId: $from, toWalletId: $to, amount: \"2.00\"}) { transfer { amount } } }";
    let vars = json!({ "from": payer.wallet, "to": payee.wallet });
    let (status, response) = app
        .post(
            Some(&format!("Bearer {}", payer.token)),
            json!({ "query": query, "variables": vars }),
        )
        .await;
    blocker.await.expect("blocker");
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        response["data"]["first"]["transfer"]["amount"], "1.00",
        "{response}"
    );
    assert_eq!(response["data"]["first"]["fromWallet"]["balance"], "99.00");
    assert_eq!(response["data"]["second"], Value::Null, "{response}");
    let errors = errors_of(&response);
    assert_eq!(errors.len(), 1, "{response}");
    assert_eq!(errors[0]["path"], json!(["second"]));
    assert_eq!(errors[0]["extensions"]["code"], "TIMEOUT");
    assert_eq!(app.balance(&payee.wallet).await, "1.00");
    app.assert_ledger_consistent().await;
}

async fn a_replay_answers_what_was_stored_whatever_changed_since(app: TestApp) {
    let (payer, payee) = pair(&app, "100.00").await;
    let deadline = chrono::Utc::now() + chrono::TimeDelta::milliseconds(1500);
    let input = json!({ "fromWalletId": payer.wallet, "toWalletId": payee.wallet, "amount": "30.00",
        "expiresAt": deadline.to_rfc3339(), "idempotencyKey": "hold-lost-answer" });
    let query = "mutation($input: AuthorizeTransferInput!) { authorizeTransfer(input: $input) { transfer { id amount expiresAt } } }";
    let first = app
        .gql(Some(&payer.token), query, json!({ "input": input }))
        .await;
    let id = text(&data(&first)["authorizeTransfer"]["transfer"]["id"]);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // The same request again, its deadline passed: the stored answer.
    let replay = app
        .gql(Some(&payer.token), query, json!({ "input": input }))
        .await;
    assert_eq!(
        text(&data(&replay)["authorizeTransfer"]["transfer"]["id"]),
        id
    );
    assert_eq!(
        data(&replay)["authorizeTransfer"]["transfer"]["expiresAt"],
        data(&first)["authorizeTransfer"]["transfer"]["expiresAt"]
    );
    // The key with other parameters is still a reused key...
    let mut other = input.clone();
    other["amount"] = json!("31.00");
    let reused = app
        .gql(Some(&payer.token), query, json!({ "input": other }))
        .await;
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED", "{reused}");
    // ... and a new key with a past deadline is refused, holding nothing.
    let mut fresh = input.clone();
    fresh["idempotencyKey"] = json!("hold-never-stored");
    let refused = app
        .gql(Some(&payer.token), query, json!({ "input": fresh }))
        .await;
    assert_eq!(error_code(&refused), "INVALID_INPUT", "{refused}");
    let holds = app
        .sql_i64("SELECT count(*) FROM transfer WHERE kind = 'PAYMENT' AND expires_at IS NOT NULL")
        .await;
    assert_eq!(holds, 1);

    // A transfer retried after the balance dropped below its amount: the
    // transfer that posted, not INSUFFICIENT_FUNDS.
    let paid = app
        .transfer_with(&payer, &payee.wallet, "60.00", Some("pay-lost-answer"))
        .await;
    let paid_id = text(&data(&paid)["transfer"]["transfer"]["id"]);
    data(&app.transfer(&payer, &payee.wallet, "10.00").await);
    assert_eq!(app.balance(&payer.wallet).await, "30.00");
    let again = app
        .transfer_with(&payer, &payee.wallet, "60.00", Some("pay-lost-answer"))
        .await;
    assert_eq!(text(&data(&again)["transfer"]["transfer"]["id"]), paid_id);
    assert_eq!(app.balance(&payer.wallet).await, "30.00");
}

async fn json_clients_get_json(app: TestApp) {
    let client = app.create_client("Ada").await;
    let http = reqwest::Client::new();
    let post = |token: &str, accept: Option<&str>| {
        let mut request = http
            .post(app.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": "{ me { name } }" }));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        request.send()
    };
    for accept in [Some("application/json"), None] {
        let answered = post(&client.token, accept).await.expect("post");
        assert_eq!(answered.status().as_u16(), 200);
        assert_eq!(answered.headers()["content-type"], "application/json");
        // A refusal before execution is framed the same way.
        let refused = post("wq_not-a-token", accept).await.expect("post");
        assert_eq!(refused.status().as_u16(), 401);
        assert_eq!(refused.headers()["content-type"], "application/json");
    }
    let asked = post(&client.token, Some("application/graphql-response+json"))
        .await
        .expect("post");
    assert_eq!(
        asked.headers()["content-type"],
        "application/graphql-response+json; charset=utf-8"
    );
}

both_backends!(
    a_refused_alias_never_hides_one_that_committed,
    aliases_and_fragments_are_bounded_before_anything_runs,
    each_mutation_field_spends_the_callers_rate,
    a_request_out_of_time_stops_between_fields,
    a_replay_answers_what_was_stored_whatever_changed_since,
    json_clients_get_json,
);

/// A WebSocket upgrade with `origin` (and `host`), to the server at `addr`:
/// the HTTP status of the answer.
async fn upgrade_status(addr: std::net::SocketAddr, origin: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .expect("request");
    let headers = request.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    if let Some(origin) = origin {
        headers.insert("Origin", HeaderValue::from_str(origin).expect("origin"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(err) => panic!("upgrade failed: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_from_other_sites_are_refused() {
    let app = TestApp::sqlite().await;
    let own = format!("http://{}", app.addr);
    assert_eq!(upgrade_status(app.addr, None).await, 101);
    assert_eq!(upgrade_status(app.addr, Some(&own)).await, 101);
    assert_eq!(
        upgrade_status(app.addr, Some("http://evil.example")).await,
        403
    );
    assert_eq!(
        upgrade_status(app.addr, Some("http://localhost:5173")).await,
        403
    );
    // A listed origin is served; others still are not.
    let listed = ApiLimits {
        cors_allowed_origins: vec!["http://localhost:5173".to_owned()],
        ..ApiLimits::default()
    };
    let addr = serve_ledger(app.ledger.clone(), listed, WsLimits::default()).await;
    assert_eq!(
        upgrade_status(addr, Some("http://localhost:5173")).await,
        101
    );
    assert_eq!(upgrade_status(addr, Some("http://evil.example")).await, 403);
    let any = ApiLimits {
        cors_allowed_origins: vec!["*".to_owned()],
        ..ApiLimits::default()
    };
    let addr = serve_ledger(app.ledger.clone(), any, WsLimits::default()).await;
    assert_eq!(upgrade_status(addr, Some("http://evil.example")).await, 101);
}
