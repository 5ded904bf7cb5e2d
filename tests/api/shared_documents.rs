//! The operation documents in `documents/` (written once, sent by the web
//! app and the tools) run as they are, by operation name, on both backends:
//! a customer pays and holds, a merchant sees its holds and captures, voids
//! and refunds, and both read their history.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, TestClient, data, text};
use crate::verbs::key;

/// Runs the operation `name` of the shared documents as `who`.
async fn run(app: &TestApp, who: &TestClient, name: &str, variables: Value) -> Value {
    data(&app.run(Some(&who.token), name, variables).await).clone()
}

async fn the_shared_documents_run_as_written(app: TestApp) {
    let customer = app.create_client("Customer").await;
    let merchant = app.create_client("Merchant").await;
    data(&app.deposit(&customer.wallet, "50.00").await);
    let me = run(&app, &customer, "Me", json!({})).await;
    assert_eq!(me["me"]["wallet"]["balance"], "50.00");

    let input = |amount: &str| {
        json!({ "input": { "fromWalletId": customer.wallet, "toWalletId": merchant.wallet,
        "amount": amount, "idempotencyKey": key() } })
    };
    let paid = run(&app, &customer, "Pay", input("5.00")).await;
    assert_eq!(paid["transfer"]["wallets"][0]["balance"], "45.00");
    let held = run(&app, &customer, "Authorize", input("20.00")).await;
    let hold = text(&held["authorizeTransfer"]["transfer"]["id"]);
    let second = run(&app, &customer, "Authorize", input("3.00")).await;
    let second = text(&second["authorizeTransfer"]["transfer"]["id"]);

    let holds = run(
        &app,
        &merchant,
        "IncomingHolds",
        json!({ "walletId": merchant.wallet }),
    )
    .await;
    let amounts: Vec<&str> = holds["transfers"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["amount"].as_str())
        .collect();
    assert_eq!(amounts, ["3.00", "20.00"]);
    let captured = run(
        &app,
        &merchant,
        "Capture",
        json!({ "input": { "transferId": hold, "amount": "12.00", "idempotencyKey": key() } }),
    )
    .await;
    assert_eq!(
        captured["captureTransfer"]["wallets"][0]["balance"],
        "17.00"
    );
    let voided = run(
        &app,
        &merchant,
        "Void",
        json!({ "input": { "transferId": second, "idempotencyKey": key() } }),
    )
    .await;
    assert_eq!(voided["voidTransfer"]["transfer"]["status"], "VOIDED");
    let received = run(
        &app,
        &merchant,
        "Received",
        json!({ "walletId": merchant.wallet }),
    )
    .await;
    let refundable = text(&received["transfers"]["nodes"][0]["id"]);
    let refunded = run(
        &app,
        &merchant,
        "Refund",
        json!({ "input": { "transferId": refundable, "amount": "2.00", "idempotencyKey": key() } }),
    )
    .await;
    assert_eq!(refunded["refundTransfer"]["wallets"][0]["balance"], "15.00");

    let many = json!({ "input": { "atomic": false, "transfers": [
        { "fromWalletId": customer.wallet, "toWalletId": merchant.wallet, "amount": "1.00" },
        { "fromWalletId": customer.wallet, "toWalletId": merchant.wallet, "amount": "999.00" } ] } });
    let batch = run(&app, &customer, "PayMany", many).await;
    assert_eq!(
        batch["transferBatch"]["results"][1]["code"],
        "INSUFFICIENT_FUNDS"
    );

    let history = run(
        &app,
        &customer,
        "History",
        json!({ "walletId": customer.wallet, "first": 3 }),
    )
    .await;
    let kinds: Vec<&str> = history["operations"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["node"]["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["TRANSFER_OUT", "TRANSFER_IN", "HOLD_RELEASE"]);
    assert_eq!(history["operations"]["pageInfo"]["hasNextPage"], true);
    let me = run(&app, &customer, "Me", json!({})).await;
    assert_eq!(me["me"]["wallet"]["balance"], "34.00");
    app.assert_ledger_consistent().await;
}

both_backends!(the_shared_documents_run_as_written);
