use futures_util::future::join_all;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{TestApp, TestClient, data, error_code};

/// Many tasks transfer random amounts among a few wallets, in both
/// directions at once. Afterwards no balance is negative, no money appeared
/// or vanished, each balance equals its ledger, and each transfer has its
/// two rows. Only INSUFFICIENT_FUNDS may be refused: never a deadlock or a
/// serialization failure.
async fn random_concurrent_transfers_keep_the_ledger_exact(app: TestApp) {
    const WALLETS: usize = 4;
    const TASKS: usize = 16;
    const TRANSFERS_PER_TASK: usize = 20;
    let mut clients: Vec<TestClient> = Vec::new();
    for i in 0..WALLETS {
        let client = app.create_client(&format!("c{i}")).await;
        data(&app.deposit(&client.wallet, "100.00").await);
        clients.push(client);
    }
    let tasks = (0..TASKS).map(|task| {
        let (app, clients) = (&app, &clients);
        async move {
            let mut rng = fastrand::Rng::with_seed(task as u64);
            let mut outcomes = Vec::new();
            for _ in 0..TRANSFERS_PER_TASK {
                let from = rng.usize(..WALLETS);
                let to = (from + 1 + rng.usize(..WALLETS - 1)) % WALLETS;
                let amount = format!("{}.{:02}", rng.u32(0..40), rng.u32(1..100));
                outcomes.push(
                    app.transfer(&clients[from], &clients[to].wallet, &amount)
                        .await,
                );
            }
            outcomes
        }
    });
    let outcomes: Vec<Value> = join_all(tasks).await.into_iter().flatten().collect();
    let mut succeeded = 0;
    for outcome in &outcomes {
        if outcome.get("errors").is_some() {
            assert_eq!(error_code(outcome), "INSUFFICIENT_FUNDS", "{outcome}");
        } else {
            succeeded += 1;
        }
    }
    assert!(
        succeeded > TASKS * TRANSFERS_PER_TASK / 4,
        "only {succeeded} transfers succeeded"
    );
    assert_eq!(
        app.sql_i64("SELECT COUNT(*) FROM transfer").await,
        succeeded as i64
    );
    assert_eq!(
        app.sql_i64("SELECT CAST(SUM(balance) AS BIGINT) FROM wallet")
            .await,
        40_000
    );
    app.assert_ledger_consistent().await;
}

/// A-to-B and B-to-A at the same moment, many times over: every transfer
/// succeeds, and none had to be retried after a deadlock, because both
/// wallets are locked in the same order whichever way the money goes.
async fn opposite_transfers_never_deadlock(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "1000.00").await);
    data(&app.deposit(&bob.wallet, "1000.00").await);
    let transfers = (0..60).map(|i| {
        let app = &app;
        let (from, to) = if i % 2 == 0 {
            (&alice, &bob)
        } else {
            (&bob, &alice)
        };
        async move { app.transfer(from, &to.wallet, "1.00").await }
    });
    for response in join_all(transfers).await {
        data(&response);
    }
    assert_eq!(app.balance(&alice.wallet).await, "1000.00");
    assert_eq!(app.balance(&bob.wallet).await, "1000.00");
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM transfer").await, 60);
    assert_eq!(
        app.store.retries(),
        0,
        "transactions were retried after conflicts"
    );
    app.assert_ledger_consistent().await;
}

both_backends!(
    random_concurrent_transfers_keep_the_ledger_exact,
    opposite_transfers_never_deadlock,
);
