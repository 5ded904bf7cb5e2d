use serde_json::json;

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code};

async fn deposit_credits_the_wallet_and_records_an_operation(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let first = app.deposit(&alice.wallet, "100.5").await;
    let deposit = &data(&first)["deposit"];
    assert_eq!(deposit["operation"]["kind"], "DEPOSIT");
    assert_eq!(deposit["operation"]["amount"], "100.50");
    assert_eq!(deposit["operation"]["balanceAfter"], "100.50");
    assert_eq!(deposit["operation"]["sequence"], 1);
    assert_eq!(deposit["wallet"]["balance"], "100.50");

    let second = app.deposit(&alice.wallet, "0.01").await;
    assert_eq!(data(&second)["deposit"]["wallet"]["balance"], "100.51");
    assert_eq!(data(&second)["deposit"]["operation"]["sequence"], 2);
    // A whole JSON number is exact, so it is accepted too.
    let whole = app.deposit_with(&alice.wallet, json!(7), None).await;
    assert_eq!(data(&whole)["deposit"]["wallet"]["balance"], "107.51");
    app.assert_ledger_consistent().await;
}

async fn deposit_refuses_bad_amounts_without_changing_anything(app: TestApp) {
    let alice = app.create_client("Alice").await;
    app.deposit(&alice.wallet, "10.00").await;
    for amount in [
        json!("0"),
        json!("0.00"),
        json!("-5"),
        json!("10.505"),
        json!("0.001"),
        json!("1e3"),
        json!("1E2"),
        json!("+5"),
        json!("1_000"),
        json!(" 5"),
        json!("abc"),
        json!(""),
        json!("NaN"),
        json!("1000000000.01"),
        json!("99999999999999999999999999999"),
        json!(10.5),
        json!(-3),
        json!(true),
        json!(null),
        json!({"amount": 1}),
    ] {
        let response = app.deposit_with(&alice.wallet, amount.clone(), None).await;
        assert_eq!(
            error_code(&response),
            "INVALID_INPUT",
            "amount {amount}: {response}"
        );
    }
    assert_eq!(app.balance(&alice.wallet).await, "10.00");
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM operation").await, 1);
}

async fn deposit_is_for_the_operator_only(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let as_client = app
        .gql(
            Some(&alice.token),
            "mutation($w: UUID!) { deposit(input: {walletId: $w, amount: \"5\"}) { wallet { balance } } }",
            json!({ "w": alice.wallet }),
        )
        .await;
    assert_eq!(error_code(&as_client), "FORBIDDEN");
    let anonymous = app
        .gql(
            None,
            "mutation($w: UUID!) { deposit(input: {walletId: $w, amount: \"5\"}) { wallet { balance } } }",
            json!({ "w": alice.wallet }),
        )
        .await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    assert_eq!(app.balance(&alice.wallet).await, "0.00");
}

async fn deposit_to_an_unknown_wallet_is_not_found(app: TestApp) {
    let response = app.deposit(&uuid::Uuid::now_v7().to_string(), "5").await;
    assert_eq!(error_code(&response), "NOT_FOUND");
    let malformed = app
        .gql(
            Some(OPERATOR),
            "mutation { deposit(input: {walletId: \"not-a-uuid\", amount: \"5\"}) { wallet { balance } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&malformed), "INVALID_INPUT");
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM operation").await, 0);
}

async fn deposit_cannot_exceed_the_maximum_balance(app: TestApp) {
    let alice = app.create_client("Alice").await;
    // Reaching the maximum by deposits would take a million of them: set the
    // balance just below it directly.
    app.set_balance(
        &alice.wallet,
        walletql::domain::money::MAX_BALANCE_CENTS - 50,
    )
    .await;
    let response = app.deposit(&alice.wallet, "1.00").await;
    assert_eq!(error_code(&response), "BALANCE_LIMIT_EXCEEDED");
    assert_eq!(app.balance(&alice.wallet).await, "999999999999.50");
    let fits = app.deposit(&alice.wallet, "0.50").await;
    assert_eq!(
        data(&fits)["deposit"]["wallet"]["balance"],
        "1000000000000.00"
    );
}

both_backends!(
    deposit_credits_the_wallet_and_records_an_operation,
    deposit_refuses_bad_amounts_without_changing_anything,
    deposit_is_for_the_operator_only,
    deposit_to_an_unknown_wallet_is_not_found,
    deposit_cannot_exceed_the_maximum_balance,
);
