//! Credit lines (issue 20): a wallet may go below zero down to its line,
//! each change of a line is a ledger row, a line lowered under what a
//! wallet uses blocks its debits until it is back within, and the
//! database and the audit hold all of it, on both backends.

use serde_json::{Value, json};

use crate::both_backends;
use crate::controls::race_transfers;
use crate::helpers::{EmptyDb, OPERATOR, TestApp, TestClient, data, error_code, text};
use crate::verbs::{authorize, end, key};

const SET_LINE: &str = "mutation($input: SetWalletLimitsInput!) {
    setWalletLimits(input: $input) { wallet { balance availableBalance limits { creditLimit } } } }";
const WALLET: &str = "query($id: UUID!) { wallet(id: $id) { balance heldBalance availableBalance
    limits { creditLimit }
    operations(first: 20) { nodes { kind amount balanceAfter availableBalanceAfter } } } }";

async fn set_line(app: &TestApp, token: &str, wallet: &str, line: Value) -> Value {
    app.gql(
        Some(token),
        SET_LINE,
        json!({ "input": { "walletId": wallet, "creditLimit": line } }),
    )
    .await
}

async fn wallet(app: &TestApp, id: &str) -> Value {
    data(&app.gql(Some(OPERATOR), WALLET, json!({ "id": id })).await)["wallet"].clone()
}

/// (balance, availableBalance)
async fn balances(app: &TestApp, id: &str) -> (String, String) {
    let w = wallet(app, id).await;
    (text(&w["balance"]), text(&w["availableBalance"]))
}

async fn withdraw(app: &TestApp, wallet: &str, amount: &str) -> Value {
    app.run(
        Some(OPERATOR),
        "Withdraw",
        json!({ "input": { "walletId": wallet, "amount": amount, "idempotencyKey": key() } }),
    )
    .await
}

async fn clients(app: &TestApp) -> (TestClient, TestClient) {
    (
        app.create_client("Alice").await,
        app.create_client("Bob").await,
    )
}

async fn a_credit_line_lets_the_balance_go_below_zero_to_its_limit(app: TestApp) {
    let (alice, bob) = clients(&app).await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    let set = set_line(&app, OPERATOR, &alice.wallet, json!("50.00")).await;
    let after = &data(&set)["setWalletLimits"]["wallet"];
    assert_eq!(after["limits"]["creditLimit"], "50.00");
    assert_eq!(
        (text(&after["balance"]), text(&after["availableBalance"])),
        ("10.00".into(), "60.00".into())
    );
    // The change is a row of its own: amount 0, balance unchanged.
    let rows = &wallet(&app, &alice.wallet).await["operations"]["nodes"];
    assert_eq!(
        rows[0],
        json!({ "kind": "CREDIT_LIMIT", "amount": "0.00", "balanceAfter": "10.00",
            "availableBalanceAfter": "60.00" })
    );
    // Setting the same line again writes nothing.
    data(&set_line(&app, OPERATOR, &alice.wallet, json!("50.00")).await);
    let again = wallet(&app, &alice.wallet).await;
    assert_eq!(
        again["operations"]["nodes"].as_array().map(Vec::len),
        Some(2)
    );

    let over = app.transfer(&alice, &bob.wallet, "60.01").await;
    assert_eq!(error_code(&over), "INSUFFICIENT_FUNDS");
    data(&app.transfer(&alice, &bob.wallet, "60.00").await);
    assert_eq!(
        balances(&app, &alice.wallet).await,
        ("-50.00".into(), "0.00".into())
    );
    let rows = &wallet(&app, &alice.wallet).await["operations"]["nodes"];
    assert_eq!(rows[0]["kind"], "TRANSFER_OUT");
    assert_eq!(rows[0]["balanceAfter"], "-50.00");
    let refused = app.transfer(&alice, &bob.wallet, "0.01").await;
    assert_eq!(error_code(&refused), "INSUFFICIENT_FUNDS");
    assert_eq!(app.balance(&bob.wallet).await, "60.00");

    // The statement and the CSV show the negative balance.
    let statement = app
        .gql(
            Some(OPERATOR),
            "query($id: UUID!) { wallet(id: $id) { statement(from: \"2000-01-01T00:00:00Z\",
               to: \"2100-01-01T00:00:00Z\") { openingBalance closingBalance totalIn totalOut operationCount } } }",
            json!({ "id": alice.wallet }),
        )
        .await;
    assert_eq!(
        data(&statement)["wallet"]["statement"],
        json!({ "openingBalance": "0.00", "closingBalance": "-50.00", "totalIn": "10.00",
            "totalOut": "60.00", "operationCount": 3 })
    );
    app.assert_ledger_consistent().await;
}

async fn withdrawals_cannot_use_credit_but_holds_can(app: TestApp) {
    let (alice, bob) = clients(&app).await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    data(&set_line(&app, OPERATOR, &alice.wallet, json!("50.00")).await);
    assert_eq!(
        error_code(&withdraw(&app, &alice.wallet, "10.01").await),
        "INSUFFICIENT_FUNDS"
    );
    // A hold uses the line; what is left of the wallet's own money is then
    // less than the hold, so nothing may be withdrawn.
    let hold = authorize(&app, &alice, &bob.wallet, "30.00", json!({})).await;
    let hold = text(&data(&hold)["authorizeTransfer"]["transfer"]["id"]);
    assert_eq!(
        balances(&app, &alice.wallet).await,
        ("10.00".into(), "30.00".into())
    );
    assert_eq!(
        error_code(&withdraw(&app, &alice.wallet, "0.01").await),
        "INSUFFICIENT_FUNDS"
    );
    let captured = end(
        &app,
        &bob.token,
        "captureTransfer",
        json!({ "transferId": hold, "idempotencyKey": key() }),
    )
    .await;
    data(&captured);
    assert_eq!(
        balances(&app, &alice.wallet).await,
        ("-20.00".into(), "30.00".into())
    );
    // Paid back above zero, it withdraws its own money only.
    data(&app.deposit(&alice.wallet, "25.00").await);
    assert_eq!(
        error_code(&withdraw(&app, &alice.wallet, "5.01").await),
        "INSUFFICIENT_FUNDS"
    );
    data(&withdraw(&app, &alice.wallet, "5.00").await);
    assert_eq!(
        balances(&app, &alice.wallet).await,
        ("0.00".into(), "50.00".into())
    );
    app.assert_ledger_consistent().await;
}

async fn a_line_lowered_under_its_use_blocks_debits_until_back_within(app: TestApp) {
    let (alice, bob) = clients(&app).await;
    data(&app.deposit(&bob.wallet, "100.00").await);
    data(&set_line(&app, OPERATOR, &alice.wallet, json!("100.00")).await);
    data(&app.transfer(&alice, &bob.wallet, "80.00").await);
    // Lowered to 50.00 while 80.00 is used: allowed, and the wallet is 30.00
    // short of its line.
    let lowered = set_line(&app, OPERATOR, &alice.wallet, json!("50.00")).await;
    assert_eq!(
        data(&lowered)["setWalletLimits"]["wallet"]["availableBalance"],
        "-30.00"
    );
    let before = wallet(&app, &alice.wallet).await;
    for refused in [
        app.transfer(&alice, &bob.wallet, "0.01").await,
        authorize(&app, &alice, &bob.wallet, "0.01", json!({})).await,
        withdraw(&app, &alice.wallet, "0.01").await,
    ] {
        assert_eq!(error_code(&refused), "INSUFFICIENT_FUNDS", "{refused}");
    }
    assert_eq!(wallet(&app, &alice.wallet).await, before, "nothing changed");
    // Money coming in is always taken.
    data(&app.deposit(&alice.wallet, "20.00").await);
    data(&app.transfer(&bob, &alice.wallet, "15.00").await);
    assert_eq!(
        balances(&app, &alice.wallet).await,
        ("-45.00".into(), "5.00".into())
    );
    // Back within: it pays again, up to its line.
    assert_eq!(
        error_code(&app.transfer(&alice, &bob.wallet, "5.01").await),
        "INSUFFICIENT_FUNDS"
    );
    data(&app.transfer(&alice, &bob.wallet, "5.00").await);
    // Null removes the line (0.00).
    let removed = set_line(&app, OPERATOR, &alice.wallet, Value::Null).await;
    let removed = &data(&removed)["setWalletLimits"]["wallet"];
    assert_eq!(removed["limits"]["creditLimit"], "0.00");
    assert_eq!(removed["availableBalance"], "-50.00");
    let kinds: Vec<String> = wallet(&app, &alice.wallet).await["operations"]["nodes"]
        .as_array()
        .map(|rows| rows.iter().map(|r| text(&r["kind"])).collect())
        .unwrap_or_default();
    assert_eq!(
        kinds,
        [
            "CREDIT_LIMIT",
            "TRANSFER_OUT",
            "TRANSFER_IN",
            "DEPOSIT",
            "CREDIT_LIMIT",
            "TRANSFER_OUT",
            "CREDIT_LIMIT"
        ]
    );
    app.assert_ledger_consistent().await;
}

async fn bad_credit_lines_are_refused_and_change_nothing(app: TestApp) {
    let (alice, _) = clients(&app).await;
    for (line, code) in [
        (json!("-1.00"), "INVALID_INPUT"),
        (json!("0.001"), "INVALID_INPUT"),
        (json!("1000000000.01"), "INVALID_INPUT"),
    ] {
        let refused = set_line(&app, OPERATOR, &alice.wallet, line.clone()).await;
        assert_eq!(error_code(&refused), code, "{line}: {refused}");
        assert_eq!(
            refused["errors"][0]["extensions"]["field"],
            json!(["input", "creditLimit"]),
            "{refused}"
        );
    }
    let mine = set_line(&app, &alice.token, &alice.wallet, json!("10.00")).await;
    assert_eq!(error_code(&mine), "FORBIDDEN");
    let w = wallet(&app, &alice.wallet).await;
    assert_eq!(w["limits"]["creditLimit"], "0.00");
    assert_eq!(w["operations"]["nodes"], json!([]));
    // Closing removes the line, with its row; a closed wallet takes none.
    data(&set_line(&app, OPERATOR, &alice.wallet, json!("10.00")).await);
    data(
        &app.gql(
            Some(OPERATOR),
            "mutation($input: SetWalletStatusInput!) { setWalletStatus(input: $input) { wallet { status } } }",
            json!({ "input": { "walletId": alice.wallet, "status": "CLOSED", "reason": "gone" } }),
        )
        .await,
    );
    let w = wallet(&app, &alice.wallet).await;
    assert_eq!(w["limits"]["creditLimit"], "0.00");
    assert_eq!(w["availableBalance"], "0.00");
    assert_eq!(
        w["operations"]["nodes"],
        json!([
            { "kind": "CREDIT_LIMIT", "amount": "0.00", "balanceAfter": "0.00", "availableBalanceAfter": "0.00" },
            { "kind": "CREDIT_LIMIT", "amount": "0.00", "balanceAfter": "0.00", "availableBalanceAfter": "10.00" }
        ])
    );
    let closed = set_line(&app, OPERATOR, &alice.wallet, json!("10.00")).await;
    assert_eq!(error_code(&closed), "WALLET_CLOSED");
    app.assert_ledger_consistent().await;
}

/// The migration undoes cleanly until a line is used; then it refuses
/// with a message rather than failing on a rule halfway.
async fn undo_the_migration(db: EmptyDb) {
    use migration::MigratorTrait;
    use sea_orm::{ConnectionTrait, Database};
    let conn = Database::connect(db.url.as_str()).await.expect("connect");
    migration::Migrator::up(&conn, None).await.expect("up");
    migration::Migrator::down(&conn, Some(1))
        .await
        .expect("down");
    migration::Migrator::up(&conn, None)
        .await
        .expect("up again");
    let (client, wallet) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let at = "2026-12-07T00:00:00Z";
    for sql in [
        format!(
            "INSERT INTO client (id, name, token_hash, created_at) VALUES ('{client}', 'A', 'a', '{at}')"
        ),
        format!(
            "INSERT INTO wallet (id, client_id, currency, balance, last_seq, created_at, updated_at, credit_limit) \
             VALUES ('{wallet}', '{client}', 'USD', 0, 1, '{at}', '{at}', 100)"
        ),
        format!(
            "INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, available_after, created_at) \
             VALUES ('{}', '{wallet}', 1, 'CREDIT_LIMIT', 0, 0, 100, '{at}')",
            uuid::Uuid::now_v7()
        ),
    ] {
        conn.execute_unprepared(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let refused = migration::Migrator::down(&conn, Some(1)).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("cannot be undone"), "{message}");
    let kept: i64 = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT credit_limit FROM wallet",
        ))
        .await
        .ok()
        .flatten()
        .and_then(|row| row.try_get_by_index(0).ok())
        .unwrap_or(-1);
    assert_eq!(kept, 100, "nothing was undone");
}

#[tokio::test]
async fn the_migration_undoes_until_a_line_is_used_postgres() {
    if let Some(db) = EmptyDb::postgres().await {
        undo_the_migration(db).await;
    }
}

#[tokio::test]
async fn the_migration_undoes_until_a_line_is_used_sqlite() {
    undo_the_migration(EmptyDb::sqlite()).await;
}

async fn a_preview_counts_the_line(app: TestApp) {
    let (alice, bob) = clients(&app).await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    data(&set_line(&app, OPERATOR, &alice.wallet, json!("50.00")).await);
    let query = "query($input: TransferInput!) {
        previewTransfer(input: $input) { ok code availableBalanceAfter } }";
    let preview = |amount: &str| json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet, "amount": amount } });
    let fits = app.gql(Some(&alice.token), query, preview("59.50")).await;
    assert_eq!(
        data(&fits)["previewTransfer"],
        json!({ "ok": true, "code": null, "availableBalanceAfter": "0.50" })
    );
    let short = app.gql(Some(&alice.token), query, preview("60.01")).await;
    assert_eq!(
        data(&short)["previewTransfer"]["code"],
        "INSUFFICIENT_FUNDS"
    );
}

/// The database refuses what breaks the credit rules even when no code
/// path would write it: a debit row below its line, a negative line, a
/// CREDIT_LIMIT row that moves money.
async fn the_database_refuses_rows_that_break_a_line(app: TestApp) {
    let (alice, bob) = clients(&app).await;
    data(&set_line(&app, OPERATOR, &alice.wallet, json!("50.00")).await);
    data(&app.transfer(&alice, &bob.wallet, "50.00").await);
    let db = app.store.db();
    use sea_orm::ConnectionTrait;
    for sql in [
        "UPDATE operation SET available_after = -1 WHERE kind = 'TRANSFER_OUT'",
        "UPDATE wallet SET credit_limit = -1",
        "UPDATE operation SET amount = 5 WHERE kind = 'CREDIT_LIMIT'",
        "UPDATE operation SET amount = 0 WHERE kind = 'TRANSFER_OUT'",
    ] {
        assert!(
            db.execute_unprepared(sql).await.is_err(),
            "{sql} was let through"
        );
    }
    app.assert_ledger_consistent().await;
}

both_backends!(
    a_credit_line_lets_the_balance_go_below_zero_to_its_limit,
    withdrawals_cannot_use_credit_but_holds_can,
    a_line_lowered_under_its_use_blocks_debits_until_back_within,
    bad_credit_lines_are_refused_and_change_nothing,
    a_preview_counts_the_line,
    the_database_refuses_rows_that_break_a_line,
);

/// 30 concurrent 7.00 transfers from an empty wallet with a 100.00 line
/// post exactly 14, through two servers sharing one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_line_holds_under_a_race_on_two_servers() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let other = crate::group_commit::second_server(&app).await;
    race_on_credit(&app, [app.addr, other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_line_holds_under_a_race_on_sqlite() {
    let app = TestApp::sqlite().await;
    race_on_credit(&app, [app.addr, app.addr]).await;
}

async fn race_on_credit(app: &TestApp, servers: [std::net::SocketAddr; 2]) {
    let (alice, bob) = clients(app).await;
    data(&set_line(app, OPERATOR, &alice.wallet, json!("100.00")).await);
    let (posted, refused) = race_transfers(servers, &alice, &bob.wallet, "7.00", 30).await;
    assert_eq!(
        (posted, refused),
        (14, vec!["INSUFFICIENT_FUNDS".to_owned(); 16])
    );
    assert_eq!(
        balances(app, &alice.wallet).await,
        ("-98.00".into(), "2.00".into())
    );
    app.assert_ledger_consistent().await;
}
