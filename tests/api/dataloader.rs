use serde_json::json;

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data};

/// A page of wallets with their clients, balances and latest operations costs
/// a fixed handful of statements, however many wallets are on it.
async fn a_page_of_wallets_costs_a_few_statements(app: TestApp) {
    let mut clients = Vec::new();
    for i in 0..30 {
        let client = app.create_client(&format!("client {i}")).await;
        app.deposit(&client.wallet, "10").await;
        clients.push(client);
    }
    for pair in clients.windows(2) {
        app.transfer(&pair[0], &pair[1].wallet, "1").await;
    }
    let query = "{ wallets(first: 100) { nodes {
        id balance client { name wallet { id } }
        operations(first: 3) { nodes { amount wallet { id } counterparty { id } transfer { amount } } } } } }";
    let before = app.store.statements_run();
    let response = app.gql(Some(OPERATOR), query, json!({})).await;
    let statements = app.store.statements_run() - before;
    let nodes = data(&response)["wallets"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(nodes.len(), 30);
    assert_eq!(
        nodes[1]["operations"]["nodes"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(nodes[1]["client"]["wallet"]["id"], nodes[1]["id"]);
    // wallets page, clients, clients' wallets, operation pages, operations'
    // wallets and counterparties, transfers: six kinds of lookup. A batch can
    // split when keys arrive after the loader's 1 ms window (seen on a busy
    // machine), hence some slack; without the loaders this is over 150.
    assert!(
        statements <= 10,
        "{statements} statements for one page of 30 wallets"
    );
}

/// The statements one transfer runs, pinned so that an extra round trip on
/// the hot path shows up as a failing test: the token lookup, then lock both
/// wallets, debit, credit, insert the transfer, insert both ledger rows,
/// announce them (BEGIN and COMMIT are not counted by the driver's metric
/// hook).
async fn a_transfer_runs_a_fixed_number_of_statements(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&alice.wallet, "10").await;
    let query = "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }";
    let input = |key: Option<&str>| json!({ "input": { "fromWalletId": alice.wallet, "toWalletId": bob.wallet, "amount": "1", "idempotencyKey": key } });
    let before = app.store.statements_run();
    data(&app.gql(Some(&alice.token), query, input(None)).await);
    let plain = app.store.statements_run() - before;
    let before = app.store.statements_run();
    data(&app.gql(Some(&alice.token), query, input(Some("k1"))).await);
    let keyed = app.store.statements_run() - before;
    // PostgreSQL announces the new rows with a NOTIFY inside the transaction.
    let notify = u64::from(app.is_postgres());
    assert_eq!(plain, 6 + notify);
    assert_eq!(
        keyed,
        7 + notify,
        "an idempotency key costs one statement more"
    );
}

both_backends!(
    a_page_of_wallets_costs_a_few_statements,
    a_transfer_runs_a_fixed_number_of_statements,
);
