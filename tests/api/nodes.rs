//! Relay's `Node` and payloads that refresh what a screen shows: any object
//! is fetched again by its id (null when unknown or not the caller's), a
//! `PublicWallet` never shares an id with a `Wallet`, and every money
//! mutation's payload carries the wallets and rows it changed.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code, text};
use crate::verbs::{authorize, key};

const NODE: &str = "query($id: ID!) { node(id: $id) { __typename id
    ... on Wallet { balance } ... on Client { name } ... on Transfer { amount } ... on Operation { kind } } }";

async fn node_of(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app.gql(Some(token), NODE, json!({ "id": id })).await;
    data(&response)["node"].clone()
}

async fn every_object_is_a_node_for_whoever_may_read_it(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let eve = app.create_client("Eve").await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    let paid = app.transfer(&alice, &bob.wallet, "2.50").await;
    let transfer = text(&data(&paid)["transfer"]["transfer"]["id"]);
    let ops = app
        .gql(
            Some(&alice.token),
            "query($w: UUID!) { operations(walletId: $w, first: 1) { nodes { id } } }",
            json!({ "w": alice.wallet }),
        )
        .await;
    let operation = text(&data(&ops)["operations"]["nodes"][0]["id"]);

    let wallet = node_of(&app, &alice.token, &alice.wallet).await;
    assert_eq!(
        wallet,
        json!({ "__typename": "Wallet", "id": alice.wallet, "balance": "7.50" })
    );
    let client = node_of(&app, &alice.token, &alice.id).await;
    assert_eq!(
        client,
        json!({ "__typename": "Client", "id": alice.id, "name": "Alice" })
    );
    let as_payer = node_of(&app, &alice.token, &transfer).await;
    assert_eq!(as_payer["__typename"], "Transfer");
    assert_eq!(as_payer["amount"], "2.50");
    // The payee reads the transfer too, not the payer's wallet or rows.
    assert_eq!(node_of(&app, &bob.token, &transfer).await["amount"], "2.50");
    assert_eq!(node_of(&app, &bob.token, &alice.wallet).await, Value::Null);
    assert_eq!(node_of(&app, &bob.token, &operation).await, Value::Null);
    let row = node_of(&app, &alice.token, &operation).await;
    assert_eq!(
        row,
        json!({ "__typename": "Operation", "id": operation, "kind": "TRANSFER_OUT" })
    );
    // Someone else's, unknown and malformed ids all answer null.
    for id in [
        transfer.as_str(),
        alice.id.as_str(),
        "0192f4d6-9c3e-7a51-8d2f-3b6c1e9a7f40",
        "nope",
    ] {
        assert_eq!(node_of(&app, &eve.token, id).await, Value::Null, "{id}");
    }
    // The operator reads everything.
    assert_eq!(
        node_of(&app, OPERATOR, &alice.wallet).await["balance"],
        "7.50"
    );
    assert_eq!(
        node_of(&app, OPERATOR, &operation).await["kind"],
        "TRANSFER_OUT"
    );

    // nodes: in order, null where node would be.
    let query = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }";
    let ids = json!([bob.wallet, alice.wallet, transfer, "nope"]);
    let listed = app
        .gql(Some(&bob.token), query, json!({ "ids": ids }))
        .await;
    assert_eq!(
        data(&listed)["nodes"],
        json!([{ "__typename": "Wallet", "id": bob.wallet }, null, { "__typename": "Transfer", "id": transfer }, null])
    );
    let too_many: Vec<String> = (0..101).map(|_| bob.wallet.clone()).collect();
    let refused = app
        .gql(Some(&bob.token), query, json!({ "ids": too_many }))
        .await;
    assert_eq!(error_code(&refused), "INVALID_INPUT");
    let anonymous = app.gql(None, NODE, json!({ "id": alice.wallet })).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");

    // A PublicWallet has no `id`: one type per id in a normalised cache.
    let public = app
        .gql(
            Some(&alice.token),
            "query($id: UUID!) { transfer(id: $id) { toWallet { id } } }",
            json!({ "id": transfer }),
        )
        .await;
    assert_eq!(error_code(&public), "INVALID_INPUT");
}

const CHANGED: &str = "wallets { __typename id balance heldBalance availableBalance } operations { id walletId kind amount }";

async fn payloads_carry_what_the_mutation_changed(app: TestApp) {
    let payer = app.create_client("Payer").await;
    let payee = app.create_client("Payee").await;
    data(&app.deposit(&payer.wallet, "100.00").await);
    // A client's transfer: only its own wallet and row.
    let paid = app
        .gql(
            Some(&payer.token),
            &format!("mutation($input: TransferInput!) {{ transfer(input: $input) {{ {CHANGED} }} }}"),
            json!({ "input": { "fromWalletId": payer.wallet, "toWalletId": payee.wallet, "amount": "10.00" } }),
        )
        .await;
    let paid = &data(&paid)["transfer"];
    assert_eq!(
        paid["wallets"],
        json!([{ "__typename": "Wallet", "id": payer.wallet, "balance": "90.00", "heldBalance": "0.00", "availableBalance": "90.00" }])
    );
    assert_eq!(paid["operations"].as_array().map(Vec::len), Some(1));
    assert_eq!(paid["operations"][0]["kind"], "TRANSFER_OUT");

    // The operator's capture: both wallets, every row, in order.
    let held = authorize(&app, &payer, &payee.wallet, "40.00", json!({})).await;
    let id = text(&data(&held)["authorizeTransfer"]["transfer"]["id"]);
    let captured = app
        .gql(
            Some(OPERATOR),
            &format!("mutation($input: CaptureTransferInput!) {{ captureTransfer(input: $input) {{ {CHANGED} }} }}"),
            json!({ "input": { "transferId": id, "amount": "25.00", "idempotencyKey": key() } }),
        )
        .await;
    let captured = &data(&captured)["captureTransfer"];
    let wallets = captured["wallets"].as_array().cloned().unwrap_or_default();
    assert_eq!(wallets.len(), 2, "{captured}");
    assert_eq!(wallets[0]["id"], payer.wallet.as_str());
    assert_eq!(wallets[0]["balance"], "65.00");
    assert_eq!(wallets[0]["heldBalance"], "0.00");
    assert_eq!(wallets[1]["id"], payee.wallet.as_str());
    assert_eq!(wallets[1]["balance"], "35.00");
    let kinds: Vec<&str> = captured["operations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|op| op["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "HOLD_RELEASE",
            "INCOMING_HOLD_RELEASE",
            "TRANSFER_OUT",
            "TRANSFER_IN"
        ]
    );

    // The payee's void: its own wallet (its incoming held balance) and
    // row; the payer's are not the payee's to read.
    let held = authorize(&app, &payer, &payee.wallet, "5.00", json!({})).await;
    let id = text(&data(&held)["authorizeTransfer"]["transfer"]["id"]);
    let voided = app
        .gql(
            Some(&payee.token),
            &format!("mutation($input: VoidTransferInput!) {{ voidTransfer(input: $input) {{ {CHANGED} }} }}"),
            json!({ "input": { "transferId": id, "idempotencyKey": key() } }),
        )
        .await;
    let voided = &data(&voided)["voidTransfer"];
    assert_eq!(voided["wallets"].as_array().map(Vec::len), Some(1));
    assert_eq!(voided["wallets"][0]["id"], payee.wallet.as_str());
    assert_eq!(voided["operations"].as_array().map(Vec::len), Some(1));
    assert_eq!(voided["operations"][0]["kind"], "INCOMING_HOLD_RELEASE");
    assert_eq!(voided["operations"][0]["walletId"], payee.wallet.as_str());

    // A batch: the payer's final state once, and a row per posted item.
    let item =
        json!({ "fromWalletId": payer.wallet, "toWalletId": payee.wallet, "amount": "1.00" });
    let batch = app
        .gql(
            Some(&payer.token),
            &format!("mutation($input: TransferBatchInput!) {{ transferBatch(input: $input) {{ {CHANGED} }} }}"),
            json!({ "input": { "transfers": [item, item, item], "atomic": false } }),
        )
        .await;
    let batch = &data(&batch)["transferBatch"];
    assert_eq!(batch["wallets"].as_array().map(Vec::len), Some(1));
    assert_eq!(batch["wallets"][0]["balance"], "62.00");
    assert_eq!(batch["operations"].as_array().map(Vec::len), Some(3));
}

both_backends!(
    every_object_is_a_node_for_whoever_may_read_it,
    payloads_carry_what_the_mutation_changed,
);
