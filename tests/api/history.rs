//! History at a point in time: `Wallet.balanceAt` and time windows, found
//! by a binary search of the wallet's sequence, and the upgrade that lets
//! them (rows whose time went back are moved forward).

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, Database, EntityTrait, QueryOrder, Statement};
use serde_json::{Value, json};
use uuid::Uuid;
use walletql::store::{Store, reads};

use crate::both_backends;
use crate::helpers::{EmptyDb, OPERATOR, TestApp, data, error_code, text};

async fn balance_at(app: &TestApp, wallet: &str, at: &str) -> String {
    let response = app
        .gql(
            Some(OPERATOR),
            "query($w: UUID!, $at: DateTime!) { wallet(id: $w) { balanceAt(at: $at) } }",
            json!({ "w": wallet, "at": at }),
        )
        .await;
    text(&data(&response)["wallet"]["balanceAt"])
}

fn shifted(at: &str, micros: i64) -> String {
    let time: DateTime<Utc> = at.parse().unwrap_or_else(|e| panic!("{at}: {e}"));
    (time + TimeDelta::microseconds(micros)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// 10.00 in, 3.00 out, 5.00 in: the balance before, at and just after each
/// operation, and the net of a window equal to the difference of its ends.
async fn the_balance_at_any_moment(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    data(&app.transfer(&alice, &bob.wallet, "3.00").await);
    data(&app.deposit(&alice.wallet, "5.00").await);
    let history = data(
        &app.gql(
            Some(OPERATOR),
            "query($w: UUID!) { wallet(id: $w) { operations(last: 10) { nodes { createdAt } } } }",
            json!({ "w": alice.wallet }),
        )
        .await,
    )["wallet"]["operations"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Newest first.
    let times: Vec<String> = history
        .iter()
        .rev()
        .map(|n| text(&n["createdAt"]))
        .collect();
    assert_eq!(times.len(), 3);
    let expected = [
        ("0001-01-01T00:00:00Z".to_owned(), "0.00"),
        (times[0].clone(), "0.00"),
        (shifted(&times[0], 1), "10.00"),
        (times[1].clone(), "10.00"),
        (shifted(&times[1], 1), "7.00"),
        (times[2].clone(), "7.00"),
        (shifted(&times[2], 1), "12.00"),
        ("9999-12-31T23:59:59Z".to_owned(), "12.00"),
    ];
    for (at, balance) in expected {
        assert_eq!(
            balance_at(&app, &alice.wallet, &at).await,
            balance,
            "at {at}"
        );
    }

    // balanceAt(to) - balanceAt(from) is the net of the window [from, to).
    let (from, to) = (times[1].clone(), shifted(&times[2], 1));
    let window = data(
        &app.gql(
            Some(OPERATOR),
            "query($w: UUID!, $f: DateTime!, $t: DateTime!) { wallet(id: $w) {
                operations(first: 10, filter: { from: $f, to: $t }) { nodes { kind amount } } } }",
            json!({ "w": alice.wallet, "f": from, "t": to }),
        )
        .await,
    )["wallet"]["operations"]["nodes"]
        .clone();
    let net: f64 = window
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n: &Value| {
                    let amount: f64 = text(&n["amount"]).parse().unwrap_or(0.0);
                    if n["kind"] == "TRANSFER_OUT" {
                        -amount
                    } else {
                        amount
                    }
                })
                .sum()
        })
        .unwrap_or(0.0);
    assert_eq!(net, 2.0, "{window}");
    let ends = (
        balance_at(&app, &alice.wallet, &from).await,
        balance_at(&app, &alice.wallet, &to).await,
    );
    assert_eq!(ends, ("10.00".to_owned(), "12.00".to_owned()));

    // Someone else's wallet cannot be asked; a bad time is refused.
    let theirs = app
        .gql(
            Some(&bob.token),
            "query($w: UUID!) { wallet(id: $w) { balanceAt(at: \"2026-01-01T00:00:00Z\") } }",
            json!({ "w": alice.wallet }),
        )
        .await;
    assert_eq!(error_code(&theirs), "FORBIDDEN");
    let bad = app
        .gql(
            Some(OPERATOR),
            "query($w: UUID!) { wallet(id: $w) { balanceAt(at: \"yesterday\") } }",
            json!({ "w": alice.wallet }),
        )
        .await;
    assert_eq!(error_code(&bad), "INVALID_INPUT");
}

/// The times of a wallet's operations, oldest first.
async fn times_of(app: &TestApp, wallet: &str) -> Vec<String> {
    let response = app
        .gql(
            Some(OPERATOR),
            "query($w: UUID!) { wallet(id: $w) { operations(last: 100) { nodes { createdAt } } } }",
            json!({ "w": wallet }),
        )
        .await;
    let mut times: Vec<String> = data(&response)["wallet"]["operations"]["nodes"]
        .as_array()
        .map(|nodes| nodes.iter().map(|n| text(&n["createdAt"])).collect())
        .unwrap_or_default();
    times.reverse();
    times
}

/// 37 deposits of 1.00, 2.00, ...: every boundary of the search (before,
/// at and just after each row, both ends) and windows between any two rows
/// give what the rows say; a window's size is its number of rows.
async fn every_boundary_of_a_longer_history(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let n = 37;
    for i in 1..=n {
        data(&app.deposit(&alice.wallet, &format!("{i}.00")).await);
    }
    let times = times_of(&app, &alice.wallet).await;
    assert_eq!(times.len(), n);
    // The balance after row i (1-based) is 1 + ... + i.
    let after = |i: usize| format!("{}.00", i * (i + 1) / 2);
    for (i, at) in times.iter().enumerate() {
        assert_eq!(
            balance_at(&app, &alice.wallet, at).await,
            after(i),
            "at row {}",
            i + 1
        );
        assert_eq!(
            balance_at(&app, &alice.wallet, &shifted(at, 1)).await,
            after(i + 1),
            "just after row {}",
            i + 1
        );
    }
    for (from, to) in [
        (0, n),
        (0, 1),
        (5, 6),
        (3, 30),
        (n - 1, n),
        (10, 10),
        (20, 11),
    ] {
        let window = data(
            &app.gql(
                Some(OPERATOR),
                "query($w: UUID!, $f: DateTime!, $t: DateTime!) { wallet(id: $w) {
                    operations(first: 100, filter: { from: $f, to: $t }) { nodes { amount } } } }",
                json!({ "w": alice.wallet, "f": times[from], "t": times.get(to).cloned().unwrap_or_else(|| shifted(&times[n - 1], 1)) }),
            )
            .await,
        )["wallet"]["operations"]["nodes"]
            .clone();
        let amounts: Vec<String> = window
            .as_array()
            .map(|nodes| nodes.iter().map(|n| text(&n["amount"])).collect())
            .unwrap_or_default();
        let expected: Vec<String> = (from..to.max(from))
            .rev()
            .map(|i| format!("{}.00", i + 1))
            .collect();
        assert_eq!(amounts, expected, "window [{from}, {to})");
    }
}

both_backends!(
    the_balance_at_any_moment,
    every_boundary_of_a_longer_history
);

/// A database from before the time index was dropped, with a wallet whose
/// third row's time went back (two servers' clocks, before issue 11):
/// upgraded in place, that row is moved to the time of the row before it,
/// the audit is clean, and balances at each moment follow the sequence.
async fn upgrade(db: EmptyDb) {
    let conn = Database::connect(db.url.as_str()).await.expect("connect");
    migration::Migrator::up(&conn, Some(8))
        .await
        .expect("old schema");
    let backend = conn.get_database_backend();
    let (alice, wallet) = (Uuid::now_v7(), Uuid::now_v7());
    // Microseconds, as stored.
    let at = (Utc::now() - TimeDelta::hours(1)).trunc_subsecs(6);
    let tick = |n: i64| at + TimeDelta::seconds(n);
    let rows: [(i64, i64, i64); 4] = [(1, 100, 1), (2, 200, 3), (3, 300, 2), (4, 400, 4)];
    let mut statements: Vec<(&str, Vec<sea_orm::Value>)> = vec![
        (
            "INSERT INTO client (id, name, token_hash, created_at) VALUES ($1, 'Alice', 'a', $2)",
            vec![alice.into(), at.into()],
        ),
        (
            "INSERT INTO wallet (id, client_id, currency, balance, last_seq, created_at, updated_at) \
             VALUES ($1, $2, 'USD', 1000, 4, $3, $4)",
            vec![wallet.into(), alice.into(), at.into(), tick(4).into()],
        ),
    ];
    let mut balance = 0;
    for (seq, amount, second) in rows {
        balance += amount;
        statements.push((
            "INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, available_after, created_at) \
             VALUES ($1, $2, $3, 'DEPOSIT', $4, $5, $5, $6)",
            vec![
                Uuid::now_v7().into(),
                wallet.into(),
                seq.into(),
                amount.into(),
                balance.into(),
                tick(second).into(),
            ],
        ));
    }
    for (sql, values) in statements {
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    migration::Migrator::up(&conn, None).await.expect("upgrade");
    conn.close().await.expect("close");

    let store = Store::connect(&db.url, 4).await.expect("store");
    let times: Vec<DateTime<Utc>> = entity::operation::Entity::find()
        .order_by_asc(entity::operation::Column::Seq)
        .all(store.db())
        .await
        .expect("rows")
        .into_iter()
        .map(|row| row.created_at)
        .collect();
    assert_eq!(times, [tick(1), tick(3), tick(3), tick(4)]);
    let audit = walletql::store::audit::audit(store.db())
        .await
        .expect("audit");
    assert!(audit.is_clean(), "{}", audit.report());
    for (second, balance) in [(0, 0), (1, 0), (2, 100), (3, 100), (4, 600), (5, 1000)] {
        assert_eq!(
            reads::balance_before(store.db(), wallet, tick(second))
                .await
                .expect("balance"),
            balance,
            "before second {second}"
        );
    }
    let indexes = store
        .db()
        .query_one_raw(Statement::from_string(
            backend,
            match backend {
                sea_orm::DbBackend::Sqlite => {
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'operation_wallet_time_idx'"
                }
                _ => {
                    "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'operation_wallet_time_idx'"
                }
            },
        ))
        .await
        .expect("indexes")
        .map(|row| row.try_get_by_index::<i64>(0).expect("count"));
    assert_eq!(indexes, Some(0), "the time index is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_that_went_back_are_moved_forward_on_upgrade_postgres() {
    if let Some(db) = EmptyDb::postgres().await {
        upgrade(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_that_went_back_are_moved_forward_on_upgrade_sqlite() {
    upgrade(EmptyDb::sqlite()).await;
}
