//! Metadata (issue 20): given with a payment, shown on its transfer and on
//! every ledger row of both parties, checked, part of the idempotency
//! fingerprint, and found again by exact-match filters, on both backends.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, TestClient, data, error_code, text};
use crate::verbs::{authorize, end, key};

const TRANSFER: &str = "mutation($input: TransferInput!) {
    transfer(input: $input) { transfer { id metadata { key value } } } }";

const HISTORY: &str = "query($w: UUID!, $first: Int, $after: String, $last: Int, $before: String, $filter: OperationFilterInput) {
    operations(walletId: $w, first: $first, after: $after, last: $last, before: $before, filter: $filter) {
      nodes { sequence kind amount metadata { key value } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

const TRANSFERS: &str = "query($w: UUID!, $first: Int, $after: String, $last: Int, $before: String, $filter: TransferFilterInput) {
    transfers(walletId: $w, first: $first, after: $after, last: $last, before: $before, filter: $filter) {
      nodes { amount status fromWalletId metadata { key value } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

fn pairs(entries: &[(&str, &str)]) -> Value {
    entries
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect()
}

async fn pay(app: &TestApp, from: &TestClient, to: &str, amount: &str, metadata: Value) -> Value {
    app.gql(
        Some(&from.token),
        TRANSFER,
        json!({ "input": { "fromWalletId": from.wallet, "toWalletId": to, "amount": amount,
            "idempotencyKey": key(), "metadata": metadata } }),
    )
    .await
}

async fn history(app: &TestApp, token: &str, variables: Value) -> Value {
    let response = app.gql(Some(token), HISTORY, variables).await;
    data(&response)["operations"].clone()
}

/// Each node's `field`, as text.
fn column(page: &Value, field: &str) -> Vec<String> {
    page["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n[field].to_string().trim_matches('"').to_owned())
        .collect()
}

async fn metadata_is_shown_on_the_transfer_and_every_row_of_both_parties(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let deposited = app
        .gql(
            Some(OPERATOR),
            "mutation($input: DepositInput!) { deposit(input: $input) { operation { metadata { key value } } } }",
            json!({ "input": { "walletId": alice.wallet, "amount": "100.00",
                "metadata": pairs(&[("source", "card"), ("batch", "7")]) } }),
        )
        .await;
    // In key order, whatever order they came in.
    assert_eq!(
        data(&deposited)["deposit"]["operation"]["metadata"],
        pairs(&[("batch", "7"), ("source", "card")])
    );

    let paid = pay(
        &app,
        &alice,
        &bob.wallet,
        "10.00",
        pairs(&[("order", "A-1"), ("customer", "c-9")]),
    )
    .await;
    let expected = pairs(&[("customer", "c-9"), ("order", "A-1")]);
    assert_eq!(data(&paid)["transfer"]["transfer"]["metadata"], expected);
    let transfer = text(&data(&paid)["transfer"]["transfer"]["id"]);
    // The payee sees it on the transfer and on its row, the payer on its.
    let read = app
        .gql(
            Some(&bob.token),
            "query($id: UUID!) { transfer(id: $id) { metadata { key value } } }",
            json!({ "id": transfer }),
        )
        .await;
    assert_eq!(data(&read)["transfer"]["metadata"], expected);
    let bobs = history(&app, &bob.token, json!({ "w": bob.wallet, "first": 1 })).await;
    assert_eq!(bobs["nodes"][0]["metadata"], expected);
    let alices = history(&app, &alice.token, json!({ "w": alice.wallet, "first": 2 })).await;
    assert_eq!(alices["nodes"][0]["metadata"], expected);
    assert_eq!(
        alices["nodes"][1]["metadata"],
        pairs(&[("batch", "7"), ("source", "card")])
    );

    // A hold's metadata is the transfer's: its capture rows show it too.
    let held = authorize(
        &app,
        &alice,
        &bob.wallet,
        "5.00",
        json!({ "metadata": pairs(&[("cart", "42")]) }),
    )
    .await;
    let hold = text(&data(&held)["authorizeTransfer"]["transfer"]["id"]);
    data(
        &end(
            &app,
            &bob.token,
            "captureTransfer",
            json!({ "transferId": hold, "idempotencyKey": key() }),
        )
        .await,
    );
    let after_capture = history(&app, &bob.token, json!({ "w": bob.wallet, "first": 3 })).await;
    assert_eq!(
        column(&after_capture, "kind"),
        ["TRANSFER_IN", "INCOMING_HOLD_RELEASE", "INCOMING_HOLD"]
    );
    for node in after_capture["nodes"].as_array().into_iter().flatten() {
        assert_eq!(node["metadata"], pairs(&[("cart", "42")]), "{node}");
    }

    // A refund carries its own; the payment keeps its own.
    let refunded = app
        .gql(
            Some(&bob.token),
            "mutation($input: RefundTransferInput!) { refundTransfer(input: $input) {
                refund { metadata { key value } } transfer { metadata { key value } } } }",
            json!({ "input": { "transferId": transfer, "amount": "1.00", "idempotencyKey": key(),
                "metadata": pairs(&[("reason", "damaged")]) } }),
        )
        .await;
    let refunded = &data(&refunded)["refundTransfer"];
    assert_eq!(
        refunded["refund"]["metadata"],
        pairs(&[("reason", "damaged")])
    );
    assert_eq!(refunded["transfer"]["metadata"], expected);

    // Batch items carry theirs; none is an empty list.
    let batch = app
        .gql(
            Some(&alice.token),
            "mutation($input: TransferBatchInput!) { transferBatch(input: $input) {
                results { code transfer { metadata { key value } } } } }",
            json!({ "input": { "atomic": false, "transfers": [
                { "fromWalletId": alice.wallet, "toWalletId": bob.wallet, "amount": "1.00",
                  "idempotencyKey": key(), "metadata": pairs(&[("line", "1")]) },
                { "fromWalletId": alice.wallet, "toWalletId": bob.wallet, "amount": "1.00",
                  "idempotencyKey": key() } ] } }),
        )
        .await;
    let results = &data(&batch)["transferBatch"]["results"];
    assert_eq!(results[0]["transfer"]["metadata"], pairs(&[("line", "1")]));
    assert_eq!(results[1]["transfer"]["metadata"], json!([]));

    // Withdrawals too.
    let withdrawn = app
        .gql(
            Some(OPERATOR),
            "mutation($input: WithdrawInput!) { withdraw(input: $input) { operation { metadata { key value } } } }",
            json!({ "input": { "walletId": bob.wallet, "amount": "1.00", "idempotencyKey": key(),
                "metadata": pairs(&[("payout", "p-1")]) } }),
        )
        .await;
    assert_eq!(
        data(&withdrawn)["withdraw"]["operation"]["metadata"],
        pairs(&[("payout", "p-1")])
    );
    app.assert_ledger_consistent().await;
}

async fn bad_metadata_is_refused_with_its_place_and_changes_nothing(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    let too_many: Vec<(String, String)> = (0..17).map(|i| (format!("k{i}"), "v".into())).collect();
    let too_many: Value = too_many
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    let long = "x".repeat(257);
    let cases = [
        (too_many, json!(["input", "metadata"])),
        (
            pairs(&[("a", "1"), ("a", "2")]),
            json!(["input", "metadata", 1, "key"]),
        ),
        (pairs(&[("", "1")]), json!(["input", "metadata", 0, "key"])),
        (
            pairs(&[("ok", "1"), ("white space", "1")]),
            json!(["input", "metadata", 1, "key"]),
        ),
        (
            pairs(&[(&"k".repeat(41), "1")]),
            json!(["input", "metadata", 0, "key"]),
        ),
        (
            pairs(&[("k", &long)]),
            json!(["input", "metadata", 0, "value"]),
        ),
        (
            pairs(&[("k", "evil\u{202E}txt")]),
            json!(["input", "metadata", 0, "value"]),
        ),
        (
            pairs(&[("k", "line\nbreak")]),
            json!(["input", "metadata", 0, "value"]),
        ),
    ];
    for (metadata, field) in cases {
        let refused = pay(&app, &alice, &bob.wallet, "1.00", metadata.clone()).await;
        assert_eq!(
            error_code(&refused),
            "INVALID_INPUT",
            "{metadata}: {refused}"
        );
        assert_eq!(
            refused["errors"][0]["extensions"]["field"], field,
            "{refused}"
        );
    }
    // Exactly at the limits: 16 entries, 40-character keys, 256 characters.
    let at_limits: Value = (0..16)
        .map(|i| json!({ "key": format!("{i:0>40}"), "value": "é".repeat(256) }))
        .collect();
    data(&pay(&app, &alice, &bob.wallet, "1.00", at_limits).await);
    // In a batch, a bad item is refused in its result; the others post.
    let batch = app
        .gql(
            Some(&alice.token),
            "mutation($input: TransferBatchInput!) { transferBatch(input: $input) { results { code message } } }",
            json!({ "input": { "atomic": false, "transfers": [
                { "fromWalletId": alice.wallet, "toWalletId": bob.wallet, "amount": "1.00" },
                { "fromWalletId": alice.wallet, "toWalletId": bob.wallet, "amount": "1.00",
                  "metadata": pairs(&[("bad key", "1")]) } ] } }),
        )
        .await;
    let results = &data(&batch)["transferBatch"]["results"];
    assert_eq!(results[0]["code"], Value::Null, "{batch}");
    assert_eq!(results[1]["code"], "INVALID_INPUT", "{batch}");
    // A filter no request could match is a mistake too.
    let filtered = app
        .gql(
            Some(&alice.token),
            HISTORY,
            json!({ "w": alice.wallet, "first": 5, "filter": { "metadata": { "key": "no way", "value": "x" } } }),
        )
        .await;
    assert_eq!(error_code(&filtered), "INVALID_INPUT", "{filtered}");
    assert_eq!(
        filtered["errors"][0]["extensions"]["field"],
        json!(["filter", "metadata", "key"]),
        "{filtered}"
    );
    // Only the one at the limits and the good batch item moved money.
    assert_eq!(app.balance(&alice.wallet).await, "8.00");
    app.assert_ledger_consistent().await;
}

async fn metadata_is_part_of_what_a_retry_must_repeat(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    let send = |k: &'static str, metadata: Value| {
        let (app, alice, bob) = (&app, &alice, &bob);
        async move {
            app.gql(
                Some(&alice.token),
                TRANSFER,
                json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet,
                    "amount": "1.00", "idempotencyKey": k, "metadata": metadata } }),
            )
            .await
        }
    };
    let first = send("k1", pairs(&[("a", "1"), ("b", "2")])).await;
    let id = text(&data(&first)["transfer"]["transfer"]["id"]);
    // The same pairs in another order: the same request.
    let again = send("k1", pairs(&[("b", "2"), ("a", "1")])).await;
    assert_eq!(text(&data(&again)["transfer"]["transfer"]["id"]), id);
    for other in [
        pairs(&[("a", "1"), ("b", "3")]),
        pairs(&[("a", "1")]),
        json!(null),
        pairs(&[("a", "1"), ("b", "2"), ("c", "")]),
    ] {
        let reused = send("k1", other.clone()).await;
        assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED", "{other}");
    }
    // None and an empty list are the same request.
    let none = send("k2", json!(null)).await;
    let id = text(&data(&none)["transfer"]["transfer"]["id"]);
    let empty = send("k2", json!([])).await;
    assert_eq!(text(&data(&empty)["transfer"]["transfer"]["id"]), id);
    assert_eq!(app.balance(&alice.wallet).await, "8.00");
}

async fn filters_find_the_rows_and_transfers_carrying_a_pair(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let carol = app.create_client("Carol").await;
    data(&app.deposit(&alice.wallet, "100.00").await);
    data(&app.deposit(&bob.wallet, "100.00").await);
    // Alice pays 1.00 .. 9.00; the odd ones are order 7's, the rest carry
    // another order or none. Bob pays her 0.50 for order 7 too.
    for cents in 1..=9 {
        let metadata = match cents % 3 {
            _ if cents % 2 == 1 => pairs(&[("order", "7"), ("n", &cents.to_string())]),
            0 => pairs(&[("order", "8")]),
            _ => json!(null),
        };
        let to = if cents == 9 {
            &carol.wallet
        } else {
            &bob.wallet
        };
        data(&pay(&app, &alice, to, &format!("{cents}.00"), metadata).await);
    }
    data(&pay(&app, &bob, &alice.wallet, "0.50", pairs(&[("order", "7")])).await);
    let order7 = json!({ "metadata": { "key": "order", "value": "7" } });

    // Newest first, two at a time, to the end and back.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = history(
            &app,
            &alice.token,
            json!({ "w": alice.wallet, "first": 2, "after": after, "filter": order7 }),
        )
        .await;
        seen.extend(column(&page, "amount"));
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ["0.50", "9.00", "7.00", "5.00", "3.00", "1.00"]);
    let oldest = history(
        &app,
        &alice.token,
        json!({ "w": alice.wallet, "last": 2, "filter": order7 }),
    )
    .await;
    assert_eq!(column(&oldest, "amount"), ["3.00", "1.00"]);
    assert_eq!(oldest["pageInfo"]["hasPreviousPage"], true);
    let earlier = history(
        &app,
        &alice.token,
        json!({ "w": alice.wallet, "last": 2, "before": oldest["pageInfo"]["startCursor"], "filter": order7 }),
    )
    .await;
    assert_eq!(column(&earlier, "amount"), ["7.00", "5.00"]);
    // With kinds: only what she received.
    let received = history(
        &app,
        &alice.token,
        json!({ "w": alice.wallet, "first": 10, "filter": { "metadata": order7["metadata"], "kinds": ["TRANSFER_IN"] } }),
    )
    .await;
    assert_eq!(column(&received, "amount"), ["0.50"]);
    // Another pair, and a pair nobody used.
    let order8 = history(
        &app,
        &alice.token,
        json!({ "w": alice.wallet, "first": 10, "filter": { "metadata": { "key": "order", "value": "8" } } }),
    )
    .await;
    assert_eq!(column(&order8, "amount"), ["6.00"]);
    let nothing = history(
        &app,
        &alice.token,
        json!({ "w": alice.wallet, "first": 10, "filter": { "metadata": { "key": "order", "value": "9" } } }),
    )
    .await;
    assert_eq!(nothing["nodes"], json!([]));
    // Each wallet sees its own rows: Bob's history holds his side only.
    let bobs = history(
        &app,
        &bob.token,
        json!({ "w": bob.wallet, "first": 10, "filter": order7 }),
    )
    .await;
    assert_eq!(
        column(&bobs, "amount"),
        ["0.50", "7.00", "5.00", "3.00", "1.00"]
    );
    assert_eq!(
        column(&bobs, "kind"),
        [
            "TRANSFER_OUT",
            "TRANSFER_IN",
            "TRANSFER_IN",
            "TRANSFER_IN",
            "TRANSFER_IN"
        ]
    );

    // The transfers list, both sides in one walk, then one side.
    let list = |variables: Value| {
        let app = &app;
        let token = alice.token.clone();
        async move {
            let response = app.gql(Some(&token), TRANSFERS, variables).await;
            data(&response)["transfers"].clone()
        }
    };
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page =
            list(json!({ "w": alice.wallet, "first": 4, "after": after, "filter": order7 })).await;
        seen.extend(column(&page, "amount"));
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ["0.50", "9.00", "7.00", "5.00", "3.00", "1.00"]);
    let incoming = list(json!({ "w": alice.wallet, "first": 10,
        "filter": { "metadata": order7["metadata"], "direction": "INCOMING" } }))
    .await;
    assert_eq!(column(&incoming, "amount"), ["0.50"]);
    let last = list(json!({ "w": alice.wallet, "last": 2, "filter": order7 })).await;
    assert_eq!(column(&last, "amount"), ["3.00", "1.00"]);
    let refunds = list(json!({ "w": alice.wallet, "first": 10,
        "filter": { "metadata": order7["metadata"], "kinds": ["REFUND"] } }))
    .await;
    assert_eq!(refunds["nodes"], json!([]));
}

both_backends!(
    metadata_is_shown_on_the_transfer_and_every_row_of_both_parties,
    bad_metadata_is_refused_with_its_place_and_changes_nothing,
    metadata_is_part_of_what_a_retry_must_repeat,
    filters_find_the_rows_and_transfers_carrying_a_pair,
);
