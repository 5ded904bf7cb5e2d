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
    // wallets/counterparties, transfers: one statement each at most.
    assert!(
        statements <= 7,
        "{statements} statements for one page of 30 wallets"
    );
}

both_backends!(a_page_of_wallets_costs_a_few_statements);
