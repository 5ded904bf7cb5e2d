//! Deadlines, the hold sweeper, the open-holds limit, the upgrade of an
//! existing database, and a workload mixing every verb.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures_util::future::join_all;
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, Database, EntityTrait, Statement};
use serde_json::{Value, json};
use uuid::Uuid;
use walletql::domain::auth::Caller;
use walletql::domain::money::Money;
use walletql::ledger::{AuthorizeRequest, Ledger, LedgerOptions, RefundRequest};
use walletql::store::Store;

use crate::helpers::{EmptyDb, OPERATOR, TestApp, data, error_code, serve_store, text};
use crate::verbs::{authorize, end, key};

async fn status(app: &TestApp, id: &str) -> String {
    let seen = app
        .gql(
            Some(OPERATOR),
            "query($id: UUID!) { transfer(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    text(&data(&seen)["transfer"]["status"])
}

/// With no sweeper running, a hold past its deadline is already refused
/// (on the database's clock) though still stored as PENDING; a sweep then
/// expires it, once. The open-holds limit counts pending transfers only.
async fn the_deadline_holds_before_any_sweep(app: TestApp) {
    let payer = app.create_client("Payer").await;
    let payee = app.create_client("Payee").await;
    data(&app.deposit(&payer.wallet, "10.00").await);
    let soon = Utc::now() + TimeDelta::milliseconds(300);
    let held = authorize(
        &app,
        &payer,
        &payee.wallet,
        "4.00",
        json!({ "expiresAt": soon.to_rfc3339() }),
    )
    .await;
    let id = text(&data(&held)["authorizeTransfer"]["transfer"]["id"]);
    let second = authorize(&app, &payer, &payee.wallet, "1.00", json!({})).await;
    let second = text(&data(&second)["authorizeTransfer"]["transfer"]["id"]);
    assert_eq!(
        error_code(&authorize(&app, &payer, &payee.wallet, "1.00", json!({})).await),
        "TOO_MANY_HOLDS"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    for verb in ["captureTransfer", "voidTransfer"] {
        let late = end(
            &app,
            &payee.token,
            verb,
            json!({ "transferId": id, "idempotencyKey": key() }),
        )
        .await;
        assert_eq!(error_code(&late), "TRANSFER_NOT_PENDING");
        assert_eq!(late["errors"][0]["extensions"]["status"], "EXPIRED");
    }
    assert_eq!(status(&app, &id).await, "PENDING", "no sweeper has run");
    assert_eq!(app.ledger.expire_overdue_holds().await.ok(), Some(1));
    assert_eq!(app.ledger.expire_overdue_holds().await.ok(), Some(0));
    assert_eq!(status(&app, &id).await, "EXPIRED");
    // The expired hold no longer counts; the other still does.
    data(&authorize(&app, &payer, &payee.wallet, "1.00", json!({})).await);
    assert_eq!(
        error_code(&authorize(&app, &payer, &payee.wallet, "1.00", json!({})).await),
        "TOO_MANY_HOLDS"
    );
    data(
        &end(
            &app,
            &payee.token,
            "captureTransfer",
            json!({ "transferId": second, "idempotencyKey": key() }),
        )
        .await,
    );
    app.assert_ledger_consistent().await;
}

fn no_sweeper() -> LedgerOptions {
    LedgerOptions {
        sweep_holds: false,
        max_open_holds: 2,
        ..LedgerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_holds_before_any_sweep_on_postgres() {
    if let Some(app) = TestApp::postgres_with(no_sweeper()).await {
        the_deadline_holds_before_any_sweep(app).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_holds_before_any_sweep_on_sqlite() {
    the_deadline_holds_before_any_sweep(TestApp::sqlite_with(no_sweeper()).await).await;
}

/// Three servers sweep the same overdue holds at once: each expires once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweepers_on_three_servers_expire_each_hold_once() {
    let Some(app) = TestApp::postgres_with(no_sweeper()).await else {
        return;
    };
    let payer = app.create_client("Payer").await;
    let payee = app.create_client("Payee").await;
    data(&app.deposit(&payer.wallet, "100.00").await);
    let many = LedgerOptions {
        sweep_holds: false,
        ..LedgerOptions::default()
    };
    let mut ledgers = vec![app.ledger.clone()];
    for _ in 0..2 {
        let store = Store::connect(&app.db_url, 4).await.expect("store");
        ledgers.push(Ledger::start(store, many.clone()).await.expect("ledger"));
    }
    // Long enough for 30 authorisations on a loaded machine.
    let soon = Utc::now() + TimeDelta::milliseconds(1500);
    let caller = Caller::Client {
        client_id: Uuid::parse_str(&payer.id).expect("id"),
        wallet_id: Uuid::parse_str(&payer.wallet).expect("id"),
    };
    let payee_id = Uuid::parse_str(&payee.wallet).expect("id");
    for _ in 0..30 {
        let request = AuthorizeRequest {
            from_wallet_id: Uuid::parse_str(&payer.wallet).expect("id"),
            to_wallet_id: payee_id,
            amount: Money::from_cents(100).expect("amount"),
            expires_at: Some(soon),
            description: None,
            metadata: Default::default(),
            idempotency_key: key(),
        };
        // Through the other ledgers' limits (1,000), not this app's (2).
        ledgers[1]
            .authorize(&caller, request)
            .await
            .expect("authorize");
    }
    tokio::time::sleep_until(deadline_after(soon)).await;
    let sweeps = ledgers.iter().map(|ledger| ledger.expire_overdue_holds());
    let expired: usize = join_all(sweeps)
        .await
        .into_iter()
        .map(|n| n.expect("sweep"))
        .sum();
    assert_eq!(expired, 30);
    assert_eq!(
        app.sql_i64("SELECT COUNT(*) FROM operation WHERE kind = 'HOLD_RELEASE'")
            .await,
        30
    );
    app.assert_ledger_consistent().await;
}

/// Today's schema, with data, upgraded in place: existing transfers read as
/// POSTED payments captured whole, existing rows' available balance is
/// their balance, the audit is clean, and the new verbs work on old rows.
async fn upgrade(db: EmptyDb) {
    let conn = Database::connect(db.url.as_str()).await.expect("connect");
    // The four migrations before this issue's.
    migration::Migrator::up(&conn, Some(4))
        .await
        .expect("old schema");
    let backend = conn.get_database_backend();
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let (alice_wallet, bob_wallet, transfer) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let at = Utc::now() - TimeDelta::hours(1);
    let later = at + TimeDelta::seconds(1);
    let statements: Vec<(&str, Vec<sea_orm::Value>)> = vec![
        (
            "INSERT INTO client (id, name, token_hash, created_at) VALUES ($1, 'Alice', 'a', $2)",
            vec![alice.into(), at.into()],
        ),
        (
            "INSERT INTO client (id, name, token_hash, created_at) VALUES ($1, 'Bob', 'b', $2)",
            vec![bob.into(), at.into()],
        ),
        (
            "INSERT INTO wallet (id, client_id, currency, balance, last_seq, created_at, updated_at) VALUES ($1, $2, 'USD', 7000, 2, $3, $4)",
            vec![alice_wallet.into(), alice.into(), at.into(), later.into()],
        ),
        (
            "INSERT INTO wallet (id, client_id, currency, balance, last_seq, created_at, updated_at) VALUES ($1, $2, 'USD', 3000, 1, $3, $4)",
            vec![bob_wallet.into(), bob.into(), at.into(), later.into()],
        ),
        (
            "INSERT INTO transfer (id, from_wallet_id, to_wallet_id, amount, description, created_at) VALUES ($1, $2, $3, 3000, 'old', $4)",
            vec![
                transfer.into(),
                alice_wallet.into(),
                bob_wallet.into(),
                later.into(),
            ],
        ),
        (
            "INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, created_at) VALUES ($1, $2, 1, 'DEPOSIT', 10000, 10000, $3)",
            vec![Uuid::now_v7().into(), alice_wallet.into(), at.into()],
        ),
        (
            "INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, transfer_id, counterparty_wallet_id, created_at) VALUES ($1, $2, 2, 'TRANSFER_OUT', 3000, 7000, $3, $4, $5)",
            vec![
                Uuid::now_v7().into(),
                alice_wallet.into(),
                transfer.into(),
                bob_wallet.into(),
                later.into(),
            ],
        ),
        (
            "INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, transfer_id, counterparty_wallet_id, created_at) VALUES ($1, $2, 1, 'TRANSFER_IN', 3000, 3000, $3, $4, $5)",
            vec![
                Uuid::now_v7().into(),
                bob_wallet.into(),
                transfer.into(),
                alice_wallet.into(),
                later.into(),
            ],
        ),
    ];
    for (sql, values) in statements {
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    migration::Migrator::up(&conn, None).await.expect("upgrade");
    conn.close().await.expect("close");

    let store = Store::connect(&db.url, 4).await.expect("store");
    let old = entity::transfer::Entity::find_by_id(transfer)
        .one(store.db())
        .await
        .expect("read")
        .expect("the transfer");
    assert_eq!(old.kind, entity::transfer::TransferKind::Payment);
    assert_eq!(old.status, entity::transfer::TransferStatus::Posted);
    assert_eq!(old.captured(), Some(3000));
    assert_eq!(old.settled(), Some(old.created_at));
    let rows = entity::operation::Entity::find()
        .all(store.db())
        .await
        .expect("rows");
    assert!(
        rows.iter()
            .all(|op| op.available_after() == op.balance_after)
    );
    let audit = walletql::store::audit::audit(store.db())
        .await
        .expect("audit");
    assert!(audit.is_clean(), "{}", audit.report());

    // The old payment is refundable; holds work on old wallets.
    let ledger = Ledger::start(store.clone(), LedgerOptions::default())
        .await
        .expect("ledger");
    let refunded = ledger
        .refund(
            &Caller::Operator,
            RefundRequest {
                transfer_id: transfer,
                amount: Money::from_cents(1000),
                description: None,
                metadata: Default::default(),
                idempotency_key: key(),
            },
        )
        .await
        .expect("refund");
    assert_eq!(refunded.original.refunded_amount, 1000);
    let bob_caller = Caller::Client {
        client_id: bob,
        wallet_id: bob_wallet,
    };
    let held = ledger
        .authorize(
            &bob_caller,
            AuthorizeRequest {
                from_wallet_id: bob_wallet,
                to_wallet_id: alice_wallet,
                amount: Money::from_cents(2000).expect("amount"),
                expires_at: None,
                description: None,
                metadata: Default::default(),
                idempotency_key: key(),
            },
        )
        .await
        .expect("authorize");
    assert_eq!(
        held.transfer.status,
        entity::transfer::TransferStatus::Pending
    );
    let audit = walletql::store::audit::audit(store.db())
        .await
        .expect("audit");
    assert!(audit.is_clean(), "{}", audit.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_postgres_database_upgrades_in_place() {
    if let Some(db) = EmptyDb::postgres().await {
        upgrade(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_sqlite_database_upgrades_in_place() {
    upgrade(EmptyDb::sqlite()).await;
}

/// Every verb at once on two servers sharing one database: transfers,
/// holds captured or voided, refunds, withdrawals. Balances plus what was
/// withdrawn never change, only expected refusals happen, and the audit
/// stays clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_under_every_verb() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let store = Store::connect(&app.db_url, 8).await.expect("second store");
    let limits = walletql::config::ApiLimits {
        rate_limits: walletql::config::RateLimits::OFF,
        ..Default::default()
    };
    let other = serve_store(store, limits, Default::default()).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let client = app.create_client(&format!("m{i}")).await;
        data(&app.deposit(&client.wallet, "30.00").await);
        clients.push(client);
    }
    let flows = (0..120).map(|i| {
        let (app, clients) = (&app, &clients);
        let addr = if i % 2 == 0 { app.addr } else { other };
        async move {
            let mut rng = fastrand::Rng::with_seed(i);
            let from = rng.usize(..6);
            let to = (from + 1 + rng.usize(..5)) % 6;
            let (payer, payee) = (&clients[from], &clients[to]);
            let amount = format!("{}.{:02}", rng.u32(0..4), rng.u32(1..100));
            let mut answers = Vec::new();
            let call = |token: String, query: &'static str, input: Value| async move {
                crate::helpers::post_to(addr, &token, query, json!({ "input": input })).await
            };
            match i % 4 {
                0 => {
                    let paid = call(payer.token.clone(), "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }",
                        json!({ "fromWalletId": payer.wallet, "toWalletId": payee.wallet, "amount": amount })).await;
                    if let Some(id) = paid["data"]["transfer"]["transfer"]["id"].as_str() {
                        answers.push(call(payee.token.clone(), "mutation($input: RefundTransferInput!) { refundTransfer(input: $input) { refund { id } } }",
                            json!({ "transferId": id, "amount": "0.01", "idempotencyKey": key() })).await);
                    }
                    answers.push(paid);
                }
                1 | 2 => {
                    let held = call(payer.token.clone(), "mutation($input: AuthorizeTransferInput!) { authorizeTransfer(input: $input) { transfer { id } } }",
                        json!({ "fromWalletId": payer.wallet, "toWalletId": payee.wallet, "amount": amount, "idempotencyKey": key() })).await;
                    if let Some(id) = held["data"]["authorizeTransfer"]["transfer"]["id"].as_str() {
                        let query: &'static str = if i % 4 == 1 {
                            "mutation($input: CaptureTransferInput!) { captureTransfer(input: $input) { transfer { id } } }"
                        } else {
                            "mutation($input: VoidTransferInput!) { voidTransfer(input: $input) { transfer { id } } }"
                        };
                        answers.push(call(payee.token.clone(), query, json!({ "transferId": id, "idempotencyKey": key() })).await);
                    }
                    answers.push(held);
                }
                _ => {
                    answers.push(call(OPERATOR.to_owned(), "mutation($input: WithdrawInput!) { withdraw(input: $input) { operation { id } } }",
                        json!({ "walletId": payer.wallet, "amount": "0.50", "idempotencyKey": key() })).await);
                }
            }
            answers
        }
    });
    let totals = async {
        let mut seen = BTreeSet::new();
        for _ in 0..60 {
            seen.insert(
                app.sql_i64(
                    "SELECT CAST((SELECT SUM(balance) FROM wallet) + (SELECT COALESCE(SUM(amount), 0) \
                     FROM operation WHERE kind = 'WITHDRAWAL') AS BIGINT)",
                )
                .await,
            );
            tokio::task::yield_now().await;
        }
        seen
    };
    let (answers, totals) = tokio::join!(join_all(flows), totals);
    for answer in answers.iter().flatten() {
        if answer.get("errors").is_some() {
            assert_eq!(error_code(answer), "INSUFFICIENT_FUNDS", "{answer}");
        }
    }
    assert_eq!(
        totals,
        BTreeSet::from([18_000]),
        "money appeared or vanished"
    );
    assert_eq!(app.store.retries(), 0, "a batch was retried");
    assert_eq!(
        app.sql_i64("SELECT COUNT(*) FROM transfer WHERE status = 'PENDING'")
            .await,
        0
    );
    app.assert_ledger_consistent().await;
}

/// The moment just after `at`, for `tokio::time::sleep_until`.
fn deadline_after(at: chrono::DateTime<Utc>) -> tokio::time::Instant {
    let wait = (at - Utc::now() + TimeDelta::milliseconds(100))
        .to_std()
        .unwrap_or_default();
    tokio::time::Instant::now() + wait
}
