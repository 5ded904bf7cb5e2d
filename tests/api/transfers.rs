use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code};

async fn transfer_moves_money_and_writes_both_ledger_rows(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&alice.wallet, "100.00").await;

    let response = app.transfer(&alice, &bob.wallet, "30.25").await;
    let transfer = &data(&response)["transfer"];
    assert_eq!(transfer["transfer"]["amount"], "30.25");
    assert_eq!(transfer["transfer"]["fromWalletId"], alice.wallet.as_str());
    assert_eq!(transfer["transfer"]["toWalletId"], bob.wallet.as_str());
    assert_eq!(transfer["operation"]["kind"], "TRANSFER_OUT");
    assert_eq!(transfer["operation"]["balanceAfter"], "69.75");
    assert_eq!(transfer["operation"]["sequence"], 2);
    assert_eq!(transfer["fromWallet"]["balance"], "69.75");

    assert_eq!(app.balance(&alice.wallet).await, "69.75");
    assert_eq!(app.balance(&bob.wallet).await, "30.25");

    // The payee sees the credit, linked to the payer and the transfer.
    let history = app
        .gql(
            Some(&bob.token),
            "query($w: UUID!) { operations(walletId: $w) { nodes {
                kind amount balanceAfter sequence counterparty { walletId } transfer { id amount } wallet { id } } } }",
            json!({ "w": bob.wallet }),
        )
        .await;
    let nodes = &data(&history)["operations"]["nodes"];
    assert_eq!(nodes.as_array().map(Vec::len), Some(1));
    assert_eq!(nodes[0]["kind"], "TRANSFER_IN");
    assert_eq!(nodes[0]["amount"], "30.25");
    assert_eq!(nodes[0]["balanceAfter"], "30.25");
    assert_eq!(nodes[0]["sequence"], 1);
    assert_eq!(nodes[0]["counterparty"]["walletId"], alice.wallet.as_str());
    assert_eq!(nodes[0]["transfer"]["id"], transfer["transfer"]["id"]);
    assert_eq!(nodes[0]["wallet"]["id"], bob.wallet.as_str());
    app.assert_ledger_consistent().await;
}

async fn transfer_of_the_whole_balance_leaves_zero(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&alice.wallet, "10.00").await;
    data(&app.transfer(&alice, &bob.wallet, "10").await);
    assert_eq!(app.balance(&alice.wallet).await, "0.00");
    assert_eq!(
        error_code(&app.transfer(&alice, &bob.wallet, "0.01").await),
        "INSUFFICIENT_FUNDS"
    );
}

async fn refused_transfers_change_nothing(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&alice.wallet, "50.00").await;
    let unknown = uuid::Uuid::now_v7().to_string();

    let cases = [
        (
            app.transfer(&alice, &bob.wallet, "50.01").await,
            "INSUFFICIENT_FUNDS",
        ),
        (
            app.transfer(&alice, &alice.wallet, "1").await,
            "SAME_WALLET",
        ),
        (app.transfer(&alice, &unknown, "1").await, "NOT_FOUND"),
        (
            app.transfer(&alice, &bob.wallet, "0").await,
            "INVALID_INPUT",
        ),
        (
            app.transfer(&alice, &bob.wallet, "1.234").await,
            "INVALID_INPUT",
        ),
        (
            app.transfer(&alice, &bob.wallet, "-1").await,
            "INVALID_INPUT",
        ),
    ];
    for (response, code) in &cases {
        assert_eq!(error_code(response), *code, "{response}");
        // The field is null, and so is all its document asked for.
        assert_eq!(response["data"], json!({ "transfer": null }), "{response}");
    }
    // Too long a description is refused too.
    let long = app
        .gql(
            Some(&alice.token),
            "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }",
            json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet, "amount": "1", "description": "d".repeat(501) } }),
        )
        .await;
    assert_eq!(error_code(&long), "INVALID_INPUT");

    assert_eq!(app.balance(&alice.wallet).await, "50.00");
    assert_eq!(app.balance(&bob.wallet).await, "0.00");
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM transfer").await, 0);
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM operation").await, 1);
    app.assert_ledger_consistent().await;
}

async fn only_the_owner_may_transfer_out_of_a_wallet(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let mallory = app.create_client("Mallory").await;
    app.deposit(&alice.wallet, "50.00").await;

    // Mallory names Alice's wallet as the source.
    let stolen = app
        .gql(
            Some(&mallory.token),
            "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }",
            json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": mallory.wallet, "amount": "10" } }),
        )
        .await;
    assert_eq!(error_code(&stolen), "FORBIDDEN");
    // The operator deposits and reads but does not move clients' money.
    let by_operator = app
        .gql(
            Some(OPERATOR),
            "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }",
            json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": mallory.wallet, "amount": "10" } }),
        )
        .await;
    assert_eq!(error_code(&by_operator), "FORBIDDEN");
    let anonymous = app
        .gql(
            None,
            "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }",
            json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": mallory.wallet, "amount": "10" } }),
        )
        .await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    assert_eq!(app.balance(&alice.wallet).await, "50.00");
    assert_eq!(app.balance(&mallory.wallet).await, "0.00");
}

async fn the_payer_cannot_see_the_payees_balance(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&alice.wallet, "5.00").await;
    app.deposit(&bob.wallet, "777.00").await;
    let transfer = |selection: &str| {
        format!("mutation($input: TransferInput!) {{ transfer(input: $input) {{ {selection} }} }}")
    };
    let input = |key: &str| {
        json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet,
                           "amount": "1", "idempotencyKey": key } })
    };
    // The payee is a PublicWallet: asking for its balance is refused at
    // validation, and nothing moves.
    for selection in [
        "toWallet { walletId balance }",
        "transfer { toWallet { balance } }",
        "operation { counterparty { balance } }",
    ] {
        let refused = app
            .gql(Some(&alice.token), &transfer(selection), input("k1"))
            .await;
        assert_eq!(error_code(&refused), "INVALID_INPUT", "{refused}");
        assert!(refused.get("data").is_none_or(Value::is_null), "{refused}");
        assert!(!refused.to_string().contains("778.00"));
        assert_eq!(app.balance(&bob.wallet).await, "777.00");
    }
    // What the payer may see comes back whole, with no error at all.
    let response = app
        .gql(
            Some(&alice.token),
            &transfer(
                "transfer { amount fromWallet { walletId } toWallet { walletId } } \
                 operation { counterparty { walletId } } fromWallet { balance } toWallet { walletId }",
            ),
            input("k2"),
        )
        .await;
    assert!(response.get("errors").is_none(), "{response}");
    let payload = &response["data"]["transfer"];
    assert_eq!(payload["transfer"]["amount"], "1.00");
    assert_eq!(payload["toWallet"]["walletId"], bob.wallet.as_str());
    assert_eq!(
        payload["operation"]["counterparty"]["walletId"],
        bob.wallet.as_str()
    );
    assert_eq!(payload["fromWallet"]["balance"], "4.00");
    assert_eq!(app.balance(&bob.wallet).await, "778.00");
}

/// A transfer's description is stored once, on the transfer, and both
/// ledger rows show it; a deposit keeps its own.
async fn a_description_is_stored_once_and_shown_on_both_legs(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let deposit =
        "mutation($input: DepositInput!) { deposit(input: $input) { operation { description } } }";
    let input = json!({ "input": { "walletId": alice.wallet, "amount": "10.00", "description": "salary" } });
    let deposited = data(&app.gql(Some(OPERATOR), deposit, input).await)["deposit"].clone();
    assert_eq!(deposited["operation"]["description"], "salary");
    let pay = "mutation($input: TransferInput!) { transfer(input: $input) {
        transfer { description } operation { description } } }";
    let input = json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet, "amount": "4.00", "description": "lunch" } });
    let paid = data(&app.gql(Some(&alice.token), pay, input).await)["transfer"].clone();
    assert_eq!(paid["transfer"]["description"], "lunch");
    assert_eq!(paid["operation"]["description"], "lunch");
    let history = "query($w: UUID!) { wallet(id: $w) { operations(first: 10) { nodes { kind description } } } }";
    for (wallet, expected) in [
        (
            &alice.wallet,
            json!([
                { "kind": "TRANSFER_OUT", "description": "lunch" },
                { "kind": "DEPOSIT", "description": "salary" },
            ]),
        ),
        (
            &bob.wallet,
            json!([{ "kind": "TRANSFER_IN", "description": "lunch" }]),
        ),
    ] {
        let nodes = data(
            &app.gql(Some(OPERATOR), history, json!({ "w": wallet }))
                .await,
        )["wallet"]["operations"]["nodes"]
            .clone();
        assert_eq!(nodes, expected);
    }
    assert_eq!(
        app.sql_i64("SELECT COUNT(*) FROM operation WHERE description IS NOT NULL")
            .await,
        1,
        "only the deposit's row holds its description"
    );
    // An empty description is one; none is NULL (the batch's typed arrays
    // carry NULL by a flag, never by a value a caller could send).
    for description in [json!(""), Value::Null] {
        let input = json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet, "amount": "1.00", "description": description } });
        let paid = data(&app.gql(Some(&alice.token), pay, input).await)["transfer"].clone();
        assert_eq!(paid["transfer"]["description"], description);
    }
    assert_eq!(
        (
            app.sql_i64("SELECT COUNT(*) FROM transfer WHERE description = ''")
                .await,
            app.sql_i64("SELECT COUNT(*) FROM transfer WHERE description IS NULL")
                .await
        ),
        (1, 1)
    );
}

both_backends!(
    a_description_is_stored_once_and_shown_on_both_legs,
    transfer_moves_money_and_writes_both_ledger_rows,
    transfer_of_the_whole_balance_leaves_zero,
    refused_transfers_change_nothing,
    only_the_owner_may_transfer_out_of_a_wallet,
    the_payer_cannot_see_the_payees_balance,
);
