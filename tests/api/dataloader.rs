use serde_json::json;

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
        operations(first: 3) { nodes { amount wallet { id } counterparty { walletId } transfer { amount } } } } } }";
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
    // wallets, transfers: six kinds of lookup, each exactly one batch. The
    // batching waits on no timer (it runs when the request's task has
    // polled every resolver of a level), so a slow build cannot split it;
    // with async-graphql's 1 ms DataLoader this was 12 to 20 in a debug
    // build. Loading per row costs over 150.
    assert_eq!(
        statements, 6,
        "{statements} statements for one page of 30 wallets"
    );
}

/// The statements a lone transfer runs (a batch of one), pinned so that an
/// extra round trip on the hot path shows up as a failing test (BEGIN and
/// COMMIT are not counted by the driver's metric hook; the token lookup is
/// paid once per token, see below).
async fn a_transfer_runs_a_fixed_number_of_statements(app: TestApp) {
    // UUIDv7 ids sort by creation: Alice's wallet sorts before Bob's.
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&alice.wallet, "10").await;
    app.deposit(&bob.wallet, "10").await;
    for client in [&alice, &bob] {
        data(
            &app.gql(Some(&client.token), "{ me { id } }", json!({}))
                .await,
        );
    }
    let query = "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }";
    let count = |from: &crate::helpers::TestClient, to: &str, key: Option<&'static str>| {
        let (app, token) = (&app, from.token.clone());
        let input = json!({ "input": { "fromWalletId": from.wallet, "toWalletId": to, "amount": "1", "idempotencyKey": key } });
        async move {
            let before = app.store.statements_run();
            data(&app.gql(Some(&token), query, input).await);
            app.store.statements_run() - before
        }
    };
    let upward = count(&alice, &bob.wallet, None).await;
    let downward = count(&bob, &alice.wallet, None).await;
    let keyed = count(&alice, &bob.wallet, Some("k1")).await;
    // PostgreSQL: lock the wallets (in id order, whichever way the money
    // goes), then one statement writes everything; BEGIN and COMMIT are not
    // counted; an idempotency key is claimed by the statement that locks.
    // SQLite: read the wallets, update them, insert the transfer, insert
    // the rows, one statement each; a key is one statement more.
    if app.is_postgres() {
        assert_eq!((upward, downward, keyed), (2, 2, 2));
    } else {
        assert_eq!((upward, downward, keyed), (4, 4, 5));
    }
}

/// A client token is looked up in the database once; an unknown token is
/// looked up (and refused) every time, so guessing cannot fill the cache.
async fn a_token_is_looked_up_once(app: TestApp) {
    let ada = app.create_client("Ada").await;
    let me = |token: String| {
        let app = &app;
        async move {
            let before = app.store.statements_run();
            let response = app.gql(Some(&token), "{ me { name } }", json!({})).await;
            (app.store.statements_run() - before, response)
        }
    };
    let (cold, first) = me(ada.token.clone()).await;
    let (warm, second) = me(ada.token.clone()).await;
    assert_eq!(data(&first), data(&second));
    assert_eq!(cold, warm + 1, "the second request skips the token lookup");
    for _ in 0..2 {
        let (cost, refused) = me("wq_not-a-token".to_owned()).await;
        assert_eq!(crate::helpers::error_code(&refused), "UNAUTHENTICATED");
        assert_eq!(cost, 1, "an unknown token is looked up each time");
    }
}

/// `me` knows its client and wallet from the token: `me { id wallet {
/// balance } }` reads the wallet and nothing else; asking for the client's
/// name reads its row too.
async fn me_reads_only_what_it_asks_for(app: TestApp) {
    let ada = app.create_client("Ada").await;
    data(&app.deposit(&ada.wallet, "12.34").await);
    let cost = |query: &'static str| {
        let (app, token) = (&app, ada.token.clone());
        async move {
            let before = app.store.statements_run();
            let response = app.gql(Some(&token), query, json!({})).await;
            (app.store.statements_run() - before, response)
        }
    };
    // The token's lookup is paid once, first.
    cost("{ me { id } }").await;
    let (statements, response) = cost("{ me { id wallet { id balance } } }").await;
    assert_eq!(data(&response)["me"]["wallet"]["balance"], "12.34");
    assert_eq!(data(&response)["me"]["wallet"]["id"], ada.wallet.as_str());
    assert_eq!(statements, 1, "the wallet alone");
    let (statements, response) =
        cost("{ me { id name email createdAt wallet { balance } } }").await;
    assert_eq!(data(&response)["me"]["name"], "Ada");
    assert_eq!(statements, 2, "the wallet and the client, each once");
    let (statements, response) = cost("{ me { id } }").await;
    assert!(data(&response)["me"]["id"].is_string());
    assert_eq!(statements, 0, "nothing to read");
}

/// Statement counts are the store's: with no hold sweeper, whose query
/// every second would land in a count now and then.
fn quiet() -> walletql::ledger::LedgerOptions {
    walletql::ledger::LedgerOptions {
        sweep_holds: false,
        ..Default::default()
    }
}

macro_rules! quiet_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::helpers::TestApp::postgres_with(super::quiet()).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::TestApp::sqlite_with(super::quiet()).await).await;
                }
            )*
        }
    };
}

quiet_backends!(
    me_reads_only_what_it_asks_for,
    a_page_of_wallets_costs_a_few_statements,
    a_transfer_runs_a_fixed_number_of_statements,
    a_token_is_looked_up_once,
);
