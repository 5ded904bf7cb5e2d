//! Lists a frontend needs: a wallet's transfers (paid and received, newest
//! first, keyset-paged both ways, filtered) and the history's totalCount.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code, text};
use crate::verbs::{authorize, key};

const TRANSFERS: &str = "query($w: UUID!, $first: Int, $after: String, $last: Int, $before: String, $filter: TransferFilterInput) {
    transfers(walletId: $w, first: $first, after: $after, last: $last, before: $before, filter: $filter) {
      nodes { id amount kind status fromWalletId toWalletId }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

async fn transfers(app: &TestApp, token: &str, variables: Value) -> Value {
    let response = app.gql(Some(token), TRANSFERS, variables).await;
    data(&response)["transfers"].clone()
}

fn amounts(page: &Value) -> Vec<String> {
    page["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| text(&t["amount"]))
        .collect()
}

async fn a_wallets_transfers_page_newest_first(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let eve = app.create_client("Eve").await;
    data(&app.deposit(&alice.wallet, "100.00").await);
    data(&app.deposit(&bob.wallet, "100.00").await);
    // Oldest to newest: 1.00, 2.00 and 3.00 paid, 4.00 received, a 5.00
    // hold, then 1.50 refunded of the 3.00.
    data(&app.transfer(&alice, &bob.wallet, "1.00").await);
    data(&app.transfer(&alice, &bob.wallet, "2.00").await);
    let third = app.transfer(&alice, &bob.wallet, "3.00").await;
    let third = text(&data(&third)["transfer"]["transfer"]["id"]);
    data(&app.transfer(&bob, &alice.wallet, "4.00").await);
    data(&authorize(&app, &alice, &eve.wallet, "5.00", json!({})).await);
    let refund = app
        .gql(
            Some(&bob.token),
            "mutation($input: RefundTransferInput!) { refundTransfer(input: $input) { refund { id } } }",
            json!({ "input": { "transferId": third, "amount": "1.50", "idempotencyKey": key() } }),
        )
        .await;
    data(&refund);

    // Forward, two at a time, to the end.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = transfers(
            &app,
            &alice.token,
            json!({ "w": alice.wallet, "first": 2, "after": after }),
        )
        .await;
        seen.extend(amounts(&page));
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ["1.50", "5.00", "4.00", "3.00", "2.00", "1.00"]);
    // Backward from the end: the two oldest, then the two before them.
    let oldest = transfers(&app, &alice.token, json!({ "w": alice.wallet, "last": 2 })).await;
    assert_eq!(amounts(&oldest), ["2.00", "1.00"]);
    assert_eq!(oldest["pageInfo"]["hasPreviousPage"], true);
    let before = oldest["pageInfo"]["startCursor"].clone();
    let earlier = transfers(
        &app,
        &alice.token,
        json!({ "w": alice.wallet, "last": 2, "before": before }),
    )
    .await;
    assert_eq!(amounts(&earlier), ["4.00", "3.00"]);

    // Filters.
    let filtered = |filter: Value| {
        transfers(
            &app,
            &alice.token,
            json!({ "w": alice.wallet, "first": 10, "filter": filter }),
        )
    };
    assert_eq!(
        amounts(&filtered(json!({ "direction": "OUTGOING" })).await),
        ["5.00", "3.00", "2.00", "1.00"]
    );
    assert_eq!(
        amounts(&filtered(json!({ "direction": "INCOMING" })).await),
        ["1.50", "4.00"]
    );
    assert_eq!(
        amounts(&filtered(json!({ "statuses": ["PENDING"] })).await),
        ["5.00"]
    );
    assert_eq!(
        amounts(&filtered(json!({ "kinds": ["REFUND"] })).await),
        ["1.50"]
    );
    // An empty list matches nothing.
    assert!(amounts(&filtered(json!({ "statuses": [] })).await).is_empty());
    assert!(amounts(&filtered(json!({ "kinds": [] })).await).is_empty());
    let both =
        filtered(json!({ "kinds": ["PAYMENT"], "statuses": ["POSTED"], "direction": "OUTGOING" }))
            .await;
    assert_eq!(amounts(&both), ["3.00", "2.00", "1.00"]);

    // The operator reads any wallet's; another client none.
    let operator = transfers(&app, OPERATOR, json!({ "w": bob.wallet, "first": 10 })).await;
    assert_eq!(amounts(&operator), ["1.50", "4.00", "3.00", "2.00", "1.00"]);
    let refused = app
        .gql(
            Some(&eve.token),
            TRANSFERS,
            json!({ "w": alice.wallet, "first": 1 }),
        )
        .await;
    assert_eq!(error_code(&refused), "FORBIDDEN");
}

async fn the_history_counts_itself_when_unfiltered(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    data(&app.transfer(&alice, &bob.wallet, "1.00").await);
    data(&app.transfer(&alice, &bob.wallet, "1.00").await);
    let query = "query($w: UUID!, $filter: OperationFilterInput) {
        operations(walletId: $w, first: 1, filter: $filter) { totalCount nodes { id } }
        wallet(id: $w) { operationCount operations(first: 1) { totalCount } } }";
    let all = app
        .gql(Some(&alice.token), query, json!({ "w": alice.wallet }))
        .await;
    let all = data(&all);
    assert_eq!(all["operations"]["totalCount"], 3);
    assert_eq!(all["wallet"]["operations"]["totalCount"], 3);
    assert_eq!(all["wallet"]["operationCount"], 3);
    let filtered = app
        .gql(
            Some(&alice.token),
            query,
            json!({ "w": alice.wallet, "filter": { "kinds": ["DEPOSIT"] } }),
        )
        .await;
    assert_eq!(data(&filtered)["operations"]["totalCount"], Value::Null);
}

both_backends!(
    a_wallets_transfers_page_newest_first,
    the_history_counts_itself_when_unfiltered,
);
