//! The payee's side of a hold: its incoming held balance, its own ledger
//! rows (heard live, in sequence), and the upgrade that writes them for the
//! holds open at migration time.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use migration::MigratorTrait;
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, EntityTrait, QueryFilter, QueryOrder, Statement,
};
use serde_json::{Value, json};
use uuid::Uuid;
use walletql::domain::auth::Caller;
use walletql::domain::money::Money;
use walletql::ledger::{Ledger, LedgerOptions};
use walletql::store::Store;

use crate::both_backends;
use crate::helpers::{EmptyDb, OPERATOR, TestApp, data, text};
use crate::verbs::{authorize, end, key};
use crate::ws::{OPERATION_CREATED, TRANSPORT_WS, WsClient};

const WALLET: &str = "query($w: UUID!) { wallet(id: $w) { balance availableBalance incomingHeldBalance operationCount
    operations(first: 10) { nodes { kind amount balanceAfter availableBalanceAfter incomingHeldBalanceAfter } } } }";

async fn wallet(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app.gql(Some(token), WALLET, json!({ "w": id })).await;
    data(&response)["wallet"].clone()
}

async fn the_payee_sees_each_hold_for_it_in_its_ledger(app: TestApp) {
    let payer = app.create_client("Payer").await;
    let payee = app.create_client("Merchant").await;
    data(&app.deposit(&payer.wallet, "100.00").await);
    let mut ws = WsClient::connect(app.addr, TRANSPORT_WS, Some(&payee.token))
        .await
        .expect("connect");
    ws.subscribe("p", OPERATION_CREATED, json!({ "w": payee.wallet }))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let first = authorize(&app, &payer, &payee.wallet, "40.00", json!({})).await;
    let first = text(&data(&first)["authorizeTransfer"]["transfer"]["id"]);
    let second = authorize(&app, &payer, &payee.wallet, "15.00", json!({})).await;
    let second = text(&data(&second)["authorizeTransfer"]["transfer"]["id"]);
    let held = wallet(&app, &payee.token, &payee.wallet).await;
    assert_eq!(
        (
            &held["balance"],
            &held["availableBalance"],
            &held["incomingHeldBalance"]
        ),
        (&json!("0.00"), &json!("0.00"), &json!("55.00"))
    );
    assert_eq!(held["operationCount"], 2);
    // Heard live, gapless, before any capture.
    for (sequence, amount) in [(1, "40.00"), (2, "15.00")] {
        let event = ws.next_operation("p").await;
        assert_eq!(event["kind"], "INCOMING_HOLD");
        assert_eq!(event["sequence"], sequence);
        assert_eq!(event["amount"], amount);
        assert_eq!(event["counterparty"]["walletId"], payer.wallet.as_str());
    }

    // A capture: the release comes before the money.
    let input = json!({ "transferId": first, "amount": "30.00", "idempotencyKey": key() });
    data(&end(&app, &payee.token, "captureTransfer", input).await);
    let event = ws.next_operation("p").await;
    assert_eq!(
        (&event["kind"], &event["sequence"]),
        (&json!("INCOMING_HOLD_RELEASE"), &json!(3))
    );
    let event = ws.next_operation("p").await;
    assert_eq!(
        (&event["kind"], &event["sequence"]),
        (&json!("TRANSFER_IN"), &json!(4))
    );
    // A void: a release alone.
    let input = json!({ "transferId": second, "idempotencyKey": key() });
    data(&end(&app, OPERATOR, "voidTransfer", input).await);
    let event = ws.next_operation("p").await;
    assert_eq!(
        (&event["kind"], &event["amount"]),
        (&json!("INCOMING_HOLD_RELEASE"), &json!("15.00"))
    );

    let after = wallet(&app, &payee.token, &payee.wallet).await;
    assert_eq!(after["balance"], "30.00");
    assert_eq!(after["incomingHeldBalance"], "0.00");
    assert_eq!(after["operationCount"], 5);
    let rows: Vec<(String, String, String)> = after["operations"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|op| {
            (
                text(&op["kind"]),
                text(&op["balanceAfter"]),
                text(&op["incomingHeldBalanceAfter"]),
            )
        })
        .collect();
    let row = |k: &str, b: &str, i: &str| (k.to_owned(), b.to_owned(), i.to_owned());
    assert_eq!(
        rows,
        [
            row("INCOMING_HOLD_RELEASE", "30.00", "0.00"),
            row("TRANSFER_IN", "30.00", "15.00"),
            row("INCOMING_HOLD_RELEASE", "0.00", "15.00"),
            row("INCOMING_HOLD", "0.00", "55.00"),
            row("INCOMING_HOLD", "0.00", "40.00"),
        ]
    );
    // The payer's ledger is as before: a hold and its release.
    let payer_side = wallet(&app, &payer.token, &payer.wallet).await;
    assert_eq!(payer_side["balance"], "70.00");
    assert_eq!(payer_side["incomingHeldBalance"], "0.00");
    app.assert_ledger_consistent().await;
}

async fn an_expired_hold_ends_on_both_sides(app: TestApp) {
    let payer = app.create_client("Payer").await;
    let payee = app.create_client("Merchant").await;
    data(&app.deposit(&payer.wallet, "10.00").await);
    let soon = (Utc::now() + TimeDelta::milliseconds(400)).to_rfc3339();
    data(
        &authorize(
            &app,
            &payer,
            &payee.wallet,
            "4.00",
            json!({ "expiresAt": soon }),
        )
        .await,
    );
    assert_eq!(
        wallet(&app, &payee.token, &payee.wallet).await["incomingHeldBalance"],
        "4.00"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.ledger.expire_overdue_holds().await.expect("sweep");
    let after = wallet(&app, &payee.token, &payee.wallet).await;
    assert_eq!(after["incomingHeldBalance"], "0.00");
    assert_eq!(
        after["operations"]["nodes"][0]["kind"],
        "INCOMING_HOLD_RELEASE"
    );
    app.assert_ledger_consistent().await;
}

both_backends!(
    the_payee_sees_each_hold_for_it_in_its_ledger,
    an_expired_hold_ends_on_both_sides,
);

/// A database from before this change, with an open hold and a voided one,
/// upgraded in place: the open hold gets its payee row, the voided one
/// none (exempt), the audit is clean, and the open hold captures as any.
async fn upgrade(db: EmptyDb) {
    let conn = Database::connect(db.url.as_str()).await.expect("connect");
    // Every migration before incoming holds.
    migration::Migrator::up(&conn, Some(6))
        .await
        .expect("old schema");
    let backend = conn.get_database_backend();
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let (alice_wallet, bob_wallet) = (Uuid::now_v7(), Uuid::now_v7());
    let (open, voided) = (Uuid::now_v7(), Uuid::now_v7());
    let at = Utc::now() - TimeDelta::hours(1);
    let tick = |n: i64| at + TimeDelta::seconds(n);
    let deadline = Utc::now() + TimeDelta::days(1);
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
            "INSERT INTO wallet (id, client_id, currency, balance, held, open_holds, last_seq, created_at, updated_at) \
             VALUES ($1, $2, 'USD', 10000, 3000, 1, 4, $3, $4)",
            vec![alice_wallet.into(), alice.into(), at.into(), tick(4).into()],
        ),
        (
            "INSERT INTO wallet (id, client_id, currency, balance, last_seq, created_at, updated_at) VALUES ($1, $2, 'USD', 0, 0, $3, $3)",
            vec![bob_wallet.into(), bob.into(), at.into()],
        ),
        (
            "INSERT INTO transfer (id, from_wallet_id, to_wallet_id, amount, created_at, kind, status, expires_at, settled_at) \
             VALUES ($1, $2, $3, 1000, $4, 'PAYMENT', 'VOIDED', $5, $6)",
            vec![
                voided.into(),
                alice_wallet.into(),
                bob_wallet.into(),
                tick(2).into(),
                deadline.into(),
                tick(3).into(),
            ],
        ),
        (
            "INSERT INTO transfer (id, from_wallet_id, to_wallet_id, amount, created_at, kind, status, expires_at) \
             VALUES ($1, $2, $3, 3000, $4, 'PAYMENT', 'PENDING', $5)",
            vec![
                open.into(),
                alice_wallet.into(),
                bob_wallet.into(),
                tick(4).into(),
                deadline.into(),
            ],
        ),
    ];
    // The payer's rows: sequence, kind, amount, available after, transfer.
    type Row<'a> = (i64, &'a str, i64, i64, Option<Uuid>, i64);
    let rows: [Row; 4] = [
        (1, "DEPOSIT", 10000, 10000, None, 1),
        (2, "HOLD", 1000, 9000, Some(voided), 2),
        (3, "HOLD_RELEASE", 1000, 10000, Some(voided), 3),
        (4, "HOLD", 3000, 7000, Some(open), 4),
    ];
    for (sql, values) in statements {
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for (seq, kind, amount, available, transfer, at) in rows {
        let counterparty = transfer.map(|_| bob_wallet);
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            "INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, available_after, \
                 transfer_id, counterparty_wallet_id, created_at) VALUES ($1, $2, $3, $4, $5, 10000, $6, $7, $8, $9)",
            [
                Uuid::now_v7().into(),
                alice_wallet.into(),
                seq.into(),
                kind.into(),
                amount.into(),
                available.into(),
                transfer.into(),
                counterparty.into(),
                tick(at).into(),
            ],
        ))
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    migration::Migrator::up(&conn, None).await.expect("upgrade");
    conn.close().await.expect("close");

    let store = Store::connect(&db.url, 4).await.expect("store");
    let bob_rows = entity::operation::Entity::find()
        .filter(entity::operation::Column::WalletId.eq(bob_wallet))
        .order_by_asc(entity::operation::Column::Seq)
        .all(store.db())
        .await
        .expect("rows");
    assert_eq!(
        bob_rows.len(),
        1,
        "one row, for the open hold only: {bob_rows:?}"
    );
    assert_eq!(
        bob_rows[0].kind,
        entity::operation::OperationKind::IncomingHold
    );
    assert_eq!(bob_rows[0].transfer_id, Some(open));
    assert_eq!(bob_rows[0].seq, 1);
    assert_eq!(bob_rows[0].amount, 3000);
    assert_eq!(bob_rows[0].incoming_held_after, Some(3000));
    assert_eq!(bob_rows[0].counterparty_wallet_id, Some(alice_wallet));
    let bob_after = entity::wallet::Entity::find_by_id(bob_wallet)
        .one(store.db())
        .await
        .expect("read")
        .expect("bob");
    assert_eq!((bob_after.incoming_held, bob_after.last_seq), (3000, 1));
    let audit = walletql::store::audit::audit(store.db())
        .await
        .expect("audit");
    assert!(audit.is_clean(), "{}", audit.report());

    // The open hold, captured after the upgrade: released on both sides.
    let ledger = Ledger::start(store.clone(), LedgerOptions::default())
        .await
        .expect("ledger");
    let bob_caller = Caller::Client {
        client_id: bob,
        wallet_id: bob_wallet,
    };
    ledger
        .capture(&bob_caller, open, Money::from_cents(2000), key())
        .await
        .expect("capture");
    let audit = walletql::store::audit::audit(store.db())
        .await
        .expect("audit");
    assert!(audit.is_clean(), "{}", audit.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_holds_get_their_payee_rows_on_upgrade_postgres() {
    if let Some(db) = EmptyDb::postgres().await {
        upgrade(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_holds_get_their_payee_rows_on_upgrade_sqlite() {
    upgrade(EmptyDb::sqlite()).await;
}
