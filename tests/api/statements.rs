//! Statements (issue 20): `Wallet.statement` adds up, and the CSV download
//! lists every line of the window, streamed in pages, safe to open in a
//! spreadsheet, for the wallet's owner or the operator only.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, TestClient, data, error_code, text};

const STATEMENT: &str = "query($id: UUID!, $from: DateTime!, $to: DateTime!) { wallet(id: $id) {
    balance operationCount
    statement(from: $from, to: $to) { openingBalance closingBalance totalIn totalOut operationCount } } }";

fn at(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A moment strictly between the requests before and after it.
async fn moment() -> String {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let now = at(chrono::Utc::now());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    now
}

async fn statement(app: &TestApp, token: &str, wallet: &str, from: &str, to: &str) -> Value {
    app.gql(
        Some(token),
        STATEMENT,
        json!({ "id": wallet, "from": from, "to": to }),
    )
    .await
}

async fn csv(app: &TestApp, token: Option<&str>, wallet: &str, query: &str) -> reqwest::Response {
    let mut request =
        reqwest::Client::new().get(app.url(&format!("/wallets/{wallet}/statement.csv?{query}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("get")
}

fn window(from: &str, to: &str) -> String {
    serde_urlencoded::to_string([("from", from), ("to", to)]).expect("query")
}

/// The CSV's records (RFC 4180: quoted cells may hold commas and line
/// breaks), checking every record ends with CRLF.
fn records(body: &str) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body.as_bytes());
    let records: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("a CSV record").iter().map(str::to_owned).collect())
        .collect();
    assert!(body.ends_with("\r\n"), "CRLF line ends");
    assert_eq!(
        body.matches("\r\n").count(),
        records.len(),
        "one CRLF per record (none inside these cells)"
    );
    records
}

async fn a_statement_adds_up_and_its_csv_lists_the_window(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let start = moment().await;
    let deposit = app
        .gql(
            Some(OPERATOR),
            "mutation($input: DepositInput!) { deposit(input: $input) { operation { id } } }",
            json!({ "input": { "walletId": alice.wallet, "amount": "100.00",
                "description": "=HYPERLINK(\"http://evil\")" } }),
        )
        .await;
    data(&deposit);
    let middle = moment().await;
    let paid = app
        .gql(
            Some(&alice.token),
            "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }",
            json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet,
                "amount": "12.50", "description": "lunch, \"team\"",
                "metadata": [{ "key": "order", "value": "-7" }] } }),
        )
        .await;
    let transfer = text(&data(&paid)["transfer"]["transfer"]["id"]);
    let hold = crate::verbs::authorize(&app, &alice, &bob.wallet, "5.00", json!({})).await;
    data(&hold);
    data(&app.transfer(&bob, &alice.wallet, "2.00").await);
    let end = moment().await;
    data(&app.deposit(&alice.wallet, "1.00").await);

    // The whole window, then from the middle: opening + in - out = closing.
    let all = statement(&app, &alice.token, &alice.wallet, &start, &end).await;
    assert_eq!(
        data(&all)["wallet"]["statement"],
        json!({ "openingBalance": "0.00", "closingBalance": "89.50", "totalIn": "102.00",
            "totalOut": "12.50", "operationCount": 4 })
    );
    let later = statement(&app, OPERATOR, &alice.wallet, &middle, &end).await;
    assert_eq!(
        data(&later)["wallet"]["statement"],
        json!({ "openingBalance": "100.00", "closingBalance": "89.50", "totalIn": "2.00",
            "totalOut": "12.50", "operationCount": 3 })
    );
    let backwards = statement(&app, &alice.token, &alice.wallet, &end, &start).await;
    assert_eq!(error_code(&backwards), "INVALID_INPUT");

    // The CSV of the whole window, as its owner downloads it.
    let response = csv(
        &app,
        Some(&alice.token),
        &alice.wallet,
        &window(&start, &end),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/csv")
    );
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"statement-"),
        "{disposition}"
    );
    let body = response.text().await.expect("body");
    let rows = records(&body);
    assert_eq!(
        rows[0],
        [
            "sequence",
            "time",
            "kind",
            "amount",
            "balance_after",
            "available_after",
            "transfer_id",
            "counterparty_wallet_id",
            "description",
            "metadata"
        ]
    );
    let kinds: Vec<&str> = rows[1..].iter().map(|r| r[2].as_str()).collect();
    assert_eq!(kinds, ["DEPOSIT", "TRANSFER_OUT", "HOLD", "TRANSFER_IN"]);
    let amounts: Vec<&str> = rows[1..].iter().map(|r| r[3].as_str()).collect();
    assert_eq!(amounts, ["100.00", "-12.50", "-5.00", "2.00"]);
    assert_eq!(rows[3][4], "87.50", "a hold leaves the balance");
    assert_eq!(rows[3][5], "82.50", "and lowers the available balance");
    // User text: a formula is defused, quotes and commas survive.
    assert_eq!(rows[1][8], "'=HYPERLINK(\"http://evil\")");
    assert_eq!(rows[2][6], transfer);
    assert_eq!(rows[2][7], bob.wallet);
    assert_eq!(rows[2][8], "lunch, \"team\"");
    assert_eq!(rows[2][9], r#"{"order":"-7"}"#);
    let sequences: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(sequences, ["1", "2", "3", "4"]);
}

async fn only_its_owner_and_the_operator_download_a_statement(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let eve = app.create_client("Eve").await;
    data(&app.deposit(&alice.wallet, "1.00").await);
    let query = window("2020-01-01T00:00:00Z", "2100-01-01T00:00:00Z");
    let status = |r: &reqwest::Response| r.status().as_u16();
    let stranger = csv(&app, Some(&eve.token), &alice.wallet, &query).await;
    assert_eq!(status(&stranger), 403);
    let body: Value = stranger.json().await.expect("json");
    assert_eq!(error_code(&body), "FORBIDDEN");
    let anonymous = csv(&app, None, &alice.wallet, &query).await;
    assert_eq!(status(&anonymous), 401);
    let operator = csv(&app, Some(OPERATOR), &alice.wallet, &query).await;
    assert_eq!(status(&operator), 200);
    assert_eq!(records(&operator.text().await.expect("body")).len(), 2);
    let missing = csv(
        &app,
        Some(OPERATOR),
        "00000000-0000-7000-8000-000000000000",
        &query,
    )
    .await;
    assert_eq!(status(&missing), 404);
    // Malformed windows.
    for bad in [
        window("yesterday", "2100-01-01T00:00:00Z"),
        "from=2020-01-01T00:00:00Z".to_owned(),
        window("2100-01-01T00:00:00Z", "2020-01-01T00:00:00Z"),
    ] {
        let refused = csv(&app, Some(&alice.token), &alice.wallet, &bad).await;
        assert_eq!(status(&refused), 400, "{bad}");
        let body: Value = refused.json().await.expect("json");
        assert_eq!(error_code(&body), "INVALID_INPUT");
    }
    let not_a_wallet = csv(&app, Some(&alice.token), "nope", &query).await;
    assert_eq!(status(&not_a_wallet), 400);
}

/// More lines than one page: every sequence number once, in order.
async fn a_long_statement_streams_every_line_once(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "10000.00").await);
    let from = at(chrono::Utc::now() - chrono::TimeDelta::hours(1));
    for _ in 0..3 {
        pay_many(&app, &alice, &bob.wallet, 900).await;
    }
    let to = at(chrono::Utc::now() + chrono::TimeDelta::hours(1));
    let response = csv(&app, Some(&alice.token), &alice.wallet, &window(&from, &to)).await;
    let rows = records(&response.text().await.expect("body"));
    let sequences: Vec<i64> = rows[1..]
        .iter()
        .map(|r| r[0].parse().expect("a number"))
        .collect();
    assert_eq!(sequences, (1..=2701).collect::<Vec<i64>>());
    assert_eq!(rows.last().map(|r| r[4].as_str()), Some("9973.00"));
}

async fn pay_many(app: &TestApp, payer: &TestClient, payee: &str, n: usize) {
    let items: Vec<Value> = (0..n)
        .map(|_| json!({ "fromWalletId": payer.wallet, "toWalletId": payee, "amount": "0.01" }))
        .collect();
    let response = app
        .gql(
            Some(&payer.token),
            "mutation($input: TransferBatchInput!) { transferBatch(input: $input) { results { code } } }",
            json!({ "input": { "atomic": true, "transfers": items } }),
        )
        .await;
    data(&response);
}

/// A failure after the first bytes went out aborts the response: the body
/// ends without its final chunk, so the client sees an error, never a
/// short file that looks whole. (The transfers table is renamed away by
/// hand: the window is found without it, the first page then fails.)
async fn a_failure_mid_stream_aborts_the_download(app: TestApp) {
    let alice = app.create_client("Alice").await;
    data(&app.deposit(&alice.wallet, "1.00").await);
    let db = app.store.db();
    use sea_orm::ConnectionTrait;
    db.execute_unprepared("ALTER TABLE transfer RENAME TO transfer_away")
        .await
        .expect("rename");
    let url = app.url(&format!(
        "/wallets/{}/statement.csv?{}",
        alice.wallet,
        window("2020-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
    ));
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(&alice.token)
        .send()
        .await;
    // The head may or may not have left before the abort; either way no
    // body is read as complete.
    let body = match response {
        Ok(response) => {
            assert_eq!(response.status().as_u16(), 200);
            response.text().await.map_err(|e| e.to_string())
        }
        Err(err) => Err(err.to_string()),
    };
    db.execute_unprepared("ALTER TABLE transfer_away RENAME TO transfer")
        .await
        .expect("rename back");
    assert!(body.is_err(), "a truncated file read as whole: {body:?}");
}

/// A download spends the caller's rate budget like any request.
async fn statements_are_rate_limited(app: TestApp) {
    use walletql::config::{ApiLimits, RateLimits, WsLimits};
    let alice = app.create_client("Alice").await;
    let api = ApiLimits {
        rate_limits: RateLimits {
            per_token: 2,
            anonymous_per_address: 1,
        },
        ..ApiLimits::default()
    };
    let addr = crate::helpers::serve_ledger(app.ledger.clone(), api, WsLimits::default()).await;
    let url = format!(
        "http://{addr}/wallets/{}/statement.csv?{}",
        alice.wallet,
        window("2020-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
    );
    // A burst is two seconds' worth (4): a few more come back 429.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let response = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&alice.token)
            .send()
            .await
            .expect("get");
        statuses.push(response.status().as_u16());
        if response.status().as_u16() == 429 {
            let body: Value = response.json().await.expect("json");
            assert_eq!(error_code(&body), "RATE_LIMITED");
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 1,
        "{statuses:?}"
    );
}

both_backends!(
    a_failure_mid_stream_aborts_the_download,
    statements_are_rate_limited,
    a_statement_adds_up_and_its_csv_lists_the_window,
    only_its_owner_and_the_operator_download_a_statement,
    a_long_statement_streams_every_line_once,
);
