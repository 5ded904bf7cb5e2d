//! The ledger audit (`walletql verify`) catches each kind of corruption,
//! made by hand in a test database.

use std::process::Command;

use sea_orm::ConnectionTrait;

use crate::both_backends;
use crate::helpers::{TestApp, data};

/// Alice deposits 100 and pays Bob 30: a small, clean ledger.
async fn ledger(app: &TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "100").await);
    data(&app.transfer(&alice, &bob.wallet, "30").await);
    app.assert_ledger_consistent().await;
}

/// Corrupts the ledger with `sql` and returns the names of the checks that
/// failed (and whether the totals still agree).
async fn violations_after(app: &TestApp, sql: &str) -> (Vec<&'static str>, bool) {
    app.store
        .db()
        .execute_unprepared(sql)
        .await
        .expect("corrupt");
    let audit = walletql::store::audit::audit(app.store.db())
        .await
        .expect("audit");
    assert!(!audit.is_clean(), "corruption went unnoticed: {sql}");
    let failed = audit
        .checks
        .iter()
        .filter(|c| c.violations > 0)
        .map(|c| c.name)
        .collect();
    (failed, audit.total_balance == audit.total_deposited)
}

async fn a_balance_that_disagrees_with_its_ledger(app: TestApp) {
    ledger(&app).await;
    let (failed, conserved) =
        violations_after(&app, "UPDATE wallet SET balance = balance + 1").await;
    assert!(
        failed.contains(&"each balance equals the sum of its operations"),
        "{failed:?}"
    );
    assert!(
        failed.contains(&"each balance equals its newest operation's balance-after"),
        "{failed:?}"
    );
    assert!(!conserved, "money appeared");
}

async fn a_transfer_missing_a_leg(app: TestApp) {
    ledger(&app).await;
    let (failed, _) =
        violations_after(&app, "DELETE FROM operation WHERE kind = 'TRANSFER_IN'").await;
    assert!(
        failed.contains(&"each transfer has the ledger rows of its status"),
        "{failed:?}"
    );
    assert!(
        failed.contains(&"each wallet's sequence is gapless"),
        "{failed:?}"
    );
}

async fn a_leg_that_does_not_match_its_transfer(app: TestApp) {
    ledger(&app).await;
    let (failed, _) = violations_after(
        &app,
        "UPDATE operation SET amount = amount + 1 WHERE kind = 'TRANSFER_IN'",
    )
    .await;
    assert!(
        failed.contains(&"each transfer's ledger rows match it"),
        "{failed:?}"
    );
}

async fn money_that_came_from_nowhere(app: TestApp) {
    ledger(&app).await;
    let (failed, conserved) = violations_after(
        &app,
        "UPDATE operation SET amount = amount + 500 WHERE kind = 'DEPOSIT'",
    )
    .await;
    assert!(
        failed.contains(&"each balance equals the sum of its operations"),
        "{failed:?}"
    );
    assert!(!conserved, "total of balances no longer equals deposits");
}

async fn a_balance_after_that_does_not_follow(app: TestApp) {
    ledger(&app).await;
    // Alice's deposit row says 90 instead of 100; her last row still says 70.
    let (failed, _) = violations_after(
        &app,
        "UPDATE operation SET balance_after = balance_after - 10, \
         available_after = available_after - 10 WHERE kind = 'DEPOSIT'",
    )
    .await;
    assert_eq!(
        failed,
        ["each balance-after follows from the row before"],
        "only the chain is broken"
    );
}

async fn time_that_goes_back(app: TestApp) {
    ledger(&app).await;
    let (failed, _) = violations_after(
        &app,
        "UPDATE operation SET created_at = '2999-01-01 00:00:00+00:00' WHERE kind = 'DEPOSIT'",
    )
    .await;
    assert_eq!(failed, ["time never goes back within a wallet"]);
}

async fn a_wallet_changed_at_another_time(app: TestApp) {
    ledger(&app).await;
    let (failed, _) = violations_after(
        &app,
        "UPDATE wallet SET updated_at = '2001-01-01 00:00:00+00:00'",
    )
    .await;
    assert_eq!(
        failed,
        ["each wallet's last change is its newest operation's time"]
    );
}

async fn verify_command_reports_and_fails(app: TestApp) {
    ledger(&app).await;
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_walletql"))
            .arg("verify")
            .env("DATABASE_URL", &app.db_url)
            .env("RUST_LOG", "error")
            .output()
            .expect("run verify")
    };
    let clean = run();
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    assert!(String::from_utf8_lossy(&clean.stdout).contains("ledger OK"));
    app.store
        .db()
        .execute_unprepared("UPDATE wallet SET last_seq = last_seq + 1")
        .await
        .expect("corrupt");
    let broken = run();
    assert_eq!(broken.status.code(), Some(1));
    let report = String::from_utf8_lossy(&broken.stdout);
    assert!(
        report.contains("VIOLATED  each wallet's sequence is gapless"),
        "{report}"
    );
}

/// The small ledger, plus Alice's hold of 10 for Bob and Bob's refund of 5.
async fn ledger_with_holds(app: &TestApp) -> String {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "100").await);
    let paid = app.transfer(&alice, &bob.wallet, "30").await;
    let paid = data(&paid)["transfer"]["transfer"]["id"].clone();
    data(&app
        .gql(
            Some(&alice.token),
            "mutation($input: AuthorizeTransferInput!) { authorizeTransfer(input: $input) { transfer { id } } }",
            serde_json::json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet,
                "amount": "10", "idempotencyKey": "h1" } }),
        )
        .await);
    data(&app
        .gql(
            Some(&bob.token),
            "mutation($input: RefundTransferInput!) { refundTransfer(input: $input) { refund { id } } }",
            serde_json::json!({ "input": { "transferId": paid, "amount": "5", "idempotencyKey": "r1" } }),
        )
        .await);
    app.assert_ledger_consistent().await;
    alice.wallet
}

async fn a_hold_that_no_pending_transfer_stands_for(app: TestApp) {
    ledger_with_holds(&app).await;
    let (failed, conserved) = violations_after(
        &app,
        "UPDATE transfer SET status = 'VOIDED' WHERE status = 'PENDING'",
    )
    .await;
    assert!(
        failed.contains(
            &"each held balance equals its holds minus their releases, and its open holds"
        ),
        "{failed:?}"
    );
    assert!(
        failed.contains(&"each transfer has the ledger rows of its status"),
        "{failed:?}"
    );
    assert!(conserved, "no money moved");
}

async fn a_refunded_amount_without_its_refunds(app: TestApp) {
    ledger_with_holds(&app).await;
    let (failed, _) = violations_after(
        &app,
        "UPDATE transfer SET refunded_amount = refunded_amount + 100 WHERE kind = 'PAYMENT' AND status = 'POSTED'",
    )
    .await;
    assert_eq!(
        failed,
        ["refunds never exceed what was captured, and add up"]
    );
}

async fn an_available_balance_after_that_does_not_follow(app: TestApp) {
    ledger_with_holds(&app).await;
    let (failed, _) = violations_after(
        &app,
        "UPDATE operation SET available_after = available_after + 1 WHERE kind = 'HOLD'",
    )
    .await;
    assert_eq!(failed, ["each balance-after follows from the row before"]);
}

both_backends!(
    a_hold_that_no_pending_transfer_stands_for,
    a_refunded_amount_without_its_refunds,
    an_available_balance_after_that_does_not_follow,
    a_balance_after_that_does_not_follow,
    time_that_goes_back,
    a_wallet_changed_at_another_time,
    a_balance_that_disagrees_with_its_ledger,
    a_transfer_missing_a_leg,
    a_leg_that_does_not_match_its_transfer,
    money_that_came_from_nowhere,
    verify_command_reports_and_fails,
    a_metadata_index_row_changed_or_missing,
    metadata_changed_behind_its_index,
    a_status_without_its_recorded_change,
    a_credit_limit_changed_behind_the_ledger,
    a_withdrawal_that_used_credit,
);

/// A pending transfer well past its deadline means no sweeper runs.
#[tokio::test]
async fn a_hold_left_pending_past_its_deadline() {
    let options = walletql::ledger::LedgerOptions {
        sweep_holds: false,
        ..Default::default()
    };
    let Some(app) = TestApp::postgres_with(options).await else {
        return;
    };
    ledger_with_holds(&app).await;
    let (failed, conserved) = violations_after(
        &app,
        "UPDATE transfer SET expires_at = now() - interval '1 minute' WHERE status = 'PENDING'",
    )
    .await;
    assert_eq!(
        failed,
        ["no pending transfer past its deadline by more than the sweeper's period"]
    );
    assert!(conserved);
}

/// A debit below the wallet's line cannot even be written while the rule
/// stands; with it dropped by hand, the audit still catches one.
#[tokio::test]
async fn a_debit_below_its_credit_line() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    ledger(&app).await;
    let below = "UPDATE operation SET available_after = -5, balance_after = -5 \
                 WHERE kind = 'TRANSFER_OUT'";
    let refused = app.store.db().execute_unprepared(below).await;
    assert!(
        refused.is_err(),
        "the database refuses a debit below the line"
    );
    app.store
        .db()
        .execute_unprepared("ALTER TABLE operation DROP CONSTRAINT operation_available_after_range")
        .await
        .expect("drop constraint");
    let (failed, _) = violations_after(&app, below).await;
    assert!(
        failed.contains(
            &"no debit leaves a wallet below its credit line, and no withdrawal uses credit"
        ),
        "{failed:?}"
    );
}

/// A line of 50.00 on 10.00, and a withdrawal of the wallet's own 10.00.
async fn ledger_with_credit(app: &TestApp) {
    let alice = app.create_client("Alice").await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    data(
        &app.gql(
            Some(crate::helpers::OPERATOR),
            "mutation($input: SetWalletLimitsInput!) { setWalletLimits(input: $input) { wallet { id } } }",
            serde_json::json!({ "input": { "walletId": alice.wallet, "creditLimit": "50.00" } }),
        )
        .await,
    );
    data(
        &app.run(
            Some(crate::helpers::OPERATOR),
            "Withdraw",
            serde_json::json!({ "input": { "walletId": alice.wallet, "amount": "10.00",
                "idempotencyKey": crate::verbs::key() } }),
        )
        .await,
    );
    app.assert_ledger_consistent().await;
}

async fn a_credit_limit_changed_behind_the_ledger(app: TestApp) {
    ledger_with_credit(&app).await;
    let (failed, conserved) =
        violations_after(&app, "UPDATE wallet SET credit_limit = credit_limit + 100").await;
    assert!(
        failed.contains(&"each credit limit is its CREDIT_LIMIT rows' changes added up"),
        "{failed:?}"
    );
    assert!(
        failed.contains(&"each balance equals its newest operation's balance-after"),
        "{failed:?}"
    );
    assert!(conserved, "no money moved");
}

/// The line row says 60.00 was available (a line of 60.00 on 10.00), so
/// the withdrawal that left 50.00 available spent 10.00 of credit.
async fn a_withdrawal_that_used_credit(app: TestApp) {
    ledger_with_credit(&app).await;
    let (failed, _) = violations_after(
        &app,
        "UPDATE operation SET available_after = available_after + 1000 WHERE kind = 'CREDIT_LIMIT'",
    )
    .await;
    assert!(
        failed.contains(
            &"no debit leaves a wallet below its credit line, and no withdrawal uses credit"
        ),
        "{failed:?}"
    );
}

/// A payment with metadata, a deposit with its own, and one without.
async fn ledger_with_metadata(app: &TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let deposit = app
        .gql(
            Some(crate::helpers::OPERATOR),
            "mutation($input: DepositInput!) { deposit(input: $input) { operation { id } } }",
            serde_json::json!({ "input": { "walletId": alice.wallet, "amount": "100",
                "metadata": [{ "key": "source", "value": "card" }] } }),
        )
        .await;
    data(&deposit);
    let paid = app
        .gql(
            Some(&alice.token),
            "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }",
            serde_json::json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet,
                "amount": "30", "metadata": [{ "key": "order", "value": "A-1" }, { "key": "n", "value": "2" }] } }),
        )
        .await;
    data(&paid);
    data(&app.transfer(&alice, &bob.wallet, "1").await);
    app.assert_ledger_consistent().await;
}

async fn a_status_without_its_recorded_change(app: TestApp) {
    ledger(&app).await;
    let (failed, conserved) = violations_after(&app, "UPDATE wallet SET status = 'FROZEN'").await;
    assert_eq!(
        failed,
        [
            "each wallet's status is its newest recorded change's (ACTIVE if none), and a closed one is empty, without a line"
        ]
    );
    assert!(conserved);
}

const ROWS_INDEXED: &str = "each ledger row's metadata is indexed, pair for pair, and nothing else";
const TRANSFERS_INDEXED: &str =
    "each transfer's metadata is indexed for both parties, and nothing else";

async fn a_metadata_index_row_changed_or_missing(app: TestApp) {
    ledger_with_metadata(&app).await;
    let (failed, conserved) = violations_after(
        &app,
        "UPDATE operation_tag SET value = 'A-2' WHERE value = 'A-1'",
    )
    .await;
    assert_eq!(failed, [ROWS_INDEXED], "{failed:?}");
    assert!(conserved);
    let (failed, _) = violations_after(&app, "DELETE FROM transfer_tag WHERE key = 'n'").await;
    assert!(failed.contains(&TRANSFERS_INDEXED), "{failed:?}");
}

async fn metadata_changed_behind_its_index(app: TestApp) {
    ledger_with_metadata(&app).await;
    let (failed, _) = violations_after(
        &app,
        r#"UPDATE transfer SET metadata = '[["n","2"],["order","B-1"]]' WHERE metadata IS NOT NULL"#,
    )
    .await;
    assert!(failed.contains(&ROWS_INDEXED), "{failed:?}");
    assert!(failed.contains(&TRANSFERS_INDEXED), "{failed:?}");
    let (failed, _) = violations_after(
        &app,
        r#"UPDATE operation SET metadata = NULL WHERE kind = 'DEPOSIT'"#,
    )
    .await;
    assert!(failed.contains(&ROWS_INDEXED), "{failed:?}");
}
