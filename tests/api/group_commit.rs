//! The posting engine's group commit: concurrent requests share
//! transactions, and each still gets exactly its own result.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    OPERATOR, TestApp, TestClient, data, error_code, post_to as post, serve_store, text,
};
use crate::ws::{Event, OPERATION_CREATED, TRANSPORT_WS, WsClient, refusal_code};

/// Deposits and transfers among three wallets, 120 at once, so that batches
/// hold several operations of one wallet. Every sequence stays gapless, every
/// balance-after exact (the audit walks each wallet's chain), and a
/// subscriber to the busiest wallet hears each of its operations once, in
/// order. Fewer statements ran than one transaction per request needs.
async fn batches_keep_every_wallet_exact(app: TestApp) {
    let clients = clients(&app, "c", 3).await;
    for client in &clients {
        data(&app.deposit(&client.wallet, "50.00").await);
    }
    let head = data(
        &app.gql(
            Some(OPERATOR),
            "query($w: UUID!) { wallet(id: $w) { cursor } }",
            json!({ "w": clients[0].wallet }),
        )
        .await,
    )["wallet"]["cursor"]
        .clone();
    // Reads while the requests run; should it lag (a batch of many events
    // of this wallet on a loaded machine), it resumes from its last cursor,
    // as the protocol says.
    let reader = async {
        let subscribe = |after: Value| {
            let token = clients[0].token.clone();
            let wallet = clients[0].wallet.clone();
            async move {
                let mut ws = WsClient::connect(app.addr, TRANSPORT_WS, Some(&token))
                    .await
                    .expect("connect");
                ws.subscribe(
                    "s",
                    OPERATION_CREATED,
                    json!({ "w": wallet, "after": after }),
                )
                .await;
                ws
            }
        };
        let mut ws = subscribe(head.clone()).await;
        let (mut seen, mut cursor) = (Vec::new(), head.clone());
        loop {
            match ws.next_event("s", Duration::from_secs(3)).await {
                Event::Data(op) => {
                    seen.push(op["sequence"].as_i64().unwrap_or(-1));
                    cursor = op["cursor"].clone();
                }
                Event::Closed(reason) if reason == "no message" => return seen,
                event if refusal_code(&event) == "SUBSCRIPTION_LAGGED" => {
                    ws = subscribe(cursor.clone()).await;
                }
                other => panic!("subscriber: {other:?}"),
            }
        }
    };
    let before = app.store.statements_run();
    let requests = (0..120).map(|i| {
        let (app, clients) = (&app, &clients);
        async move {
            let from = &clients[i % 3];
            let to = &clients[(i + 1 + i / 3 % 2) % 3];
            if i % 10 == 0 {
                app.deposit(&from.wallet, "1.00").await
            } else {
                app.transfer(from, &to.wallet, &format!("0.{:02}", 1 + i % 90))
                    .await
            }
        }
    });
    let (responses, seen) = tokio::join!(
        async {
            let responses = join_all(requests).await;
            (responses, app.store.statements_run() - before)
        },
        reader
    );
    let (responses, statements) = responses;
    for response in &responses {
        if response.get("errors").is_some() {
            assert_eq!(error_code(response), "INSUFFICIENT_FUNDS", "{response}");
        }
    }
    app.assert_ledger_consistent().await;
    // One request alone costs 2 statements on PostgreSQL and 5 on SQLite.
    let alone = if app.is_postgres() { 2 } else { 5 };
    assert!(
        statements < alone * 120,
        "{statements} statements for 120 requests: nothing was batched"
    );

    let last = data(
        &app.gql(
            Some(OPERATOR),
            "query($w: UUID!) { wallet(id: $w) { operationCount } }",
            json!({ "w": clients[0].wallet }),
        )
        .await,
    )["wallet"]["operationCount"]
        .as_i64()
        .unwrap_or(0);
    let expected: Vec<i64> = (2..=last).collect();
    assert_eq!(seen, expected, "each operation once, in order");
}

/// A payer with 6.00 and 1,000 transfers of 1.00 queued at once gets exactly
/// six; the 994 others are refused with INSUFFICIENT_FUNDS without failing
/// one another, and its rows count down 5.00, 4.00, ... 0.00 without a gap.
async fn a_hot_payer_gets_exactly_what_fits(app: TestApp) {
    let payer = app.create_client("Payer").await;
    let payees = clients(&app, "p", 4).await;
    data(&app.deposit(&payer.wallet, "6.00").await);
    let transfers = (0..1_000).map(|i| {
        let (app, payer, payees) = (&app, &payer, &payees);
        async move { app.transfer(payer, &payees[i % 4].wallet, "1.00").await }
    });
    let responses = join_all(transfers).await;
    let posted = responses
        .iter()
        .filter(|r| r.get("errors").is_none())
        .count();
    for response in responses.iter().filter(|r| r.get("errors").is_some()) {
        assert_eq!(error_code(response), "INSUFFICIENT_FUNDS", "{response}");
    }
    assert_eq!(posted, 6);
    assert_eq!(app.balance(&payer.wallet).await, "0.00");
    let history = data(
        &app.gql(
            Some(OPERATOR),
            "query($w: UUID!) { wallet(id: $w) { operations(first: 10) { edges { node { sequence balanceAfter } } } } }",
            json!({ "w": payer.wallet }),
        )
        .await,
    )["wallet"]["operations"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let chain: Vec<(i64, String)> = history
        .iter()
        .map(|e| {
            (
                e["node"]["sequence"].as_i64().unwrap_or(0),
                text(&e["node"]["balanceAfter"]),
            )
        })
        .collect();
    let expected: Vec<(i64, String)> = (1..=7)
        .rev()
        .map(|seq| (seq, format!("{}.00", if seq == 1 { 6 } else { 7 - seq })))
        .collect();
    assert_eq!(
        chain, expected,
        "6.00, then 5.00 down to 0.00 without a gap"
    );
    app.assert_ledger_consistent().await;
}

/// 200 wallet reads at once from five clients: each gets its own balance,
/// and they share queries. Alone, a read runs two (its client, its wallet):
/// 400 in all; shared, 20 to 34 were seen here.
async fn concurrent_reads_share_queries(app: TestApp) {
    let clients = clients(&app, "r", 5).await;
    for (i, client) in clients.iter().enumerate() {
        data(&app.deposit(&client.wallet, &format!("{}.00", i + 1)).await);
        // Every token is looked up once, before the measured reads.
        data(
            &app.gql(Some(&client.token), "{ me { id } }", json!({}))
                .await,
        );
    }
    let before = app.store.statements_run();
    let reads = (0..200).map(|i| {
        let (app, client) = (&app, &clients[i % 5]);
        async move {
            let response = app
                .gql(
                    Some(&client.token),
                    "{ me { wallet { balance } } }",
                    json!({}),
                )
                .await;
            (i % 5, text(&data(&response)["me"]["wallet"]["balance"]))
        }
    });
    for (owner, balance) in join_all(reads).await {
        assert_eq!(balance, format!("{}.00", owner + 1));
    }
    let statements = app.store.statements_run() - before;
    assert!(statements < 200, "{statements} queries for 200 reads");
}

both_backends!(
    batches_keep_every_wallet_exact,
    a_hot_payer_gets_exactly_what_fits,
    concurrent_reads_share_queries,
);

/// Two servers (each with its own pool and committer, as two processes
/// would have) get the same idempotency key at once: money moves once, and
/// every answer names the same transfer.
#[tokio::test]
async fn one_key_on_two_servers_moves_money_once() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let other = second_server(&app).await;
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    let query = "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }";
    let input = json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet, "amount": "3.00", "idempotencyKey": "twice" } });
    let requests = (0..16).map(|i| {
        let (app, alice, input) = (&app, &alice, input.clone());
        let addr = if i % 2 == 0 { app.addr } else { other };
        async move { post(addr, &alice.token, query, input).await }
    });
    let ids: BTreeSet<String> = join_all(requests)
        .await
        .iter()
        .map(|r| data(r)["transfer"]["transfer"]["id"].to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(app.balance(&alice.wallet).await, "7.00");
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM transfer").await, 1);
}

/// The bank workload on two servers sharing one database: transfers both
/// ways among a few wallets through both, while the total is read over and
/// over. No deadlock or retry reaches anyone (only INSUFFICIENT_FUNDS may
/// refuse), and the total never changes.
#[tokio::test]
async fn two_servers_under_the_bank_workload() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let other = second_server(&app).await;
    let clients = clients(&app, "b", 6).await;
    for client in &clients {
        data(&app.deposit(&client.wallet, "20.00").await);
    }
    let query = "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }";
    let transfers = (0..300).map(|i| {
        let (app, clients) = (&app, &clients);
        let addr = if i % 2 == 0 { app.addr } else { other };
        async move {
            let mut rng = fastrand::Rng::with_seed(i as u64);
            let from = rng.usize(..6);
            let to = (from + 1 + rng.usize(..5)) % 6;
            let input = json!({ "input": { "fromWalletId": clients[from].wallet, "toWalletId": clients[to].wallet, "amount": format!("{}.{:02}", rng.u32(0..5), rng.u32(1..100)) } });
            post(addr, &clients[from].token, query, input).await
        }
    });
    let totals = async {
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            seen.insert(
                app.sql_i64("SELECT CAST(SUM(balance) AS BIGINT) FROM wallet")
                    .await,
            );
            tokio::task::yield_now().await;
        }
        seen
    };
    let (responses, totals) = tokio::join!(join_all(transfers), totals);
    for response in &responses {
        if response.get("errors").is_some() {
            assert_eq!(error_code(response), "INSUFFICIENT_FUNDS", "{response}");
        }
    }
    assert_eq!(totals, BTreeSet::from([12_000]), "the total moved");
    assert_eq!(app.store.retries(), 0, "a batch was retried");
    app.assert_ledger_consistent().await;
}

/// Another server on the same PostgreSQL database, with its own store (pool)
/// and ledger (committer and LISTEN connection).
pub(crate) async fn second_server(app: &TestApp) -> std::net::SocketAddr {
    let store = walletql::store::Store::connect(&app.db_url, 8)
        .await
        .expect("second store");
    serve_store(
        store,
        walletql::config::ApiLimits {
            rate_limits: walletql::config::RateLimits::OFF,
            ..Default::default()
        },
        Default::default(),
    )
    .await
}

async fn clients(app: &TestApp, prefix: &str, n: usize) -> Vec<TestClient> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        clients.push(app.create_client(&format!("{prefix}{i}")).await);
    }
    clients
}
