use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, TestClient, data, error_code, text};

const HISTORY: &str = "query($w: UUID!, $first: Int, $after: String, $last: Int, $before: String, $filter: OperationFilterInput) {
    operations(walletId: $w, first: $first, after: $after, last: $last, before: $before, filter: $filter) {
        edges { cursor node { sequence kind amount cursor createdAt } }
        nodes { sequence }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

/// Alice with 25 operations: deposits of 1..=20 dollars, then 5 transfers of 1.
async fn alice_with_history(app: &TestApp) -> TestClient {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    for i in 1..=20 {
        data(&app.deposit(&alice.wallet, &i.to_string()).await);
    }
    for _ in 0..5 {
        data(&app.transfer(&alice, &bob.wallet, "1").await);
    }
    alice
}

async fn page(app: &TestApp, who: &TestClient, args: Value) -> Value {
    let mut variables = args;
    variables["w"] = json!(who.wallet);
    let response = app.gql(Some(&who.token), HISTORY, variables).await;
    data(&response)["operations"].clone()
}

fn sequences(page: &Value) -> Vec<i64> {
    page["nodes"].as_array().map_or_else(Vec::new, |nodes| {
        nodes
            .iter()
            .filter_map(|n| n["sequence"].as_i64())
            .collect()
    })
}

async fn history_pages_forwards_newest_first(app: TestApp) {
    let alice = alice_with_history(&app).await;
    let first = page(&app, &alice, json!({ "first": 10 })).await;
    assert_eq!(sequences(&first), (16..=25).rev().collect::<Vec<_>>());
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(
        first["edges"][0]["cursor"],
        first["pageInfo"]["startCursor"]
    );
    assert_eq!(
        first["edges"][0]["cursor"],
        first["edges"][0]["node"]["cursor"]
    );
    assert_eq!(first["edges"][0]["node"]["kind"], "TRANSFER_OUT");

    let second = page(
        &app,
        &alice,
        json!({ "first": 10, "after": first["pageInfo"]["endCursor"] }),
    )
    .await;
    assert_eq!(sequences(&second), (6..=15).rev().collect::<Vec<_>>());
    assert_eq!(second["pageInfo"]["hasNextPage"], true);
    assert_eq!(second["pageInfo"]["hasPreviousPage"], true);

    let third = page(
        &app,
        &alice,
        json!({ "first": 10, "after": second["pageInfo"]["endCursor"] }),
    )
    .await;
    assert_eq!(sequences(&third), vec![5, 4, 3, 2, 1]);
    assert_eq!(third["pageInfo"]["hasNextPage"], false);
    assert_eq!(third["edges"][4]["node"]["amount"], "1.00");

    // Exactly at the end: an empty page, nothing further.
    let past = page(
        &app,
        &alice,
        json!({ "first": 10, "after": third["pageInfo"]["endCursor"] }),
    )
    .await;
    assert_eq!(sequences(&past), Vec::<i64>::new());
    assert_eq!(past["pageInfo"]["hasNextPage"], false);
    assert!(past["pageInfo"]["endCursor"].is_null());

    // No arguments: the default page size.
    let default = page(&app, &alice, json!({})).await;
    assert_eq!(sequences(&default).len(), 20);
}

async fn history_pages_backwards(app: TestApp) {
    let alice = alice_with_history(&app).await;
    let oldest = page(&app, &alice, json!({ "last": 10 })).await;
    assert_eq!(sequences(&oldest), (1..=10).rev().collect::<Vec<_>>());
    assert_eq!(oldest["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(oldest["pageInfo"]["hasNextPage"], false);

    let newer = page(
        &app,
        &alice,
        json!({ "last": 10, "before": oldest["pageInfo"]["startCursor"] }),
    )
    .await;
    assert_eq!(sequences(&newer), (11..=20).rev().collect::<Vec<_>>());
    assert_eq!(newer["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(newer["pageInfo"]["hasNextPage"], true);

    let newest = page(
        &app,
        &alice,
        json!({ "last": 10, "before": newer["pageInfo"]["startCursor"] }),
    )
    .await;
    assert_eq!(sequences(&newest), (21..=25).rev().collect::<Vec<_>>());
    assert_eq!(newest["pageInfo"]["hasPreviousPage"], false);

    // Forwards and backwards meet: the page before an `after` page's start
    // is the page that came before it.
    let forward = page(
        &app,
        &alice,
        json!({ "first": 7, "after": newest["pageInfo"]["endCursor"] }),
    )
    .await;
    assert_eq!(sequences(&forward), (14..=20).rev().collect::<Vec<_>>());
    let back = page(
        &app,
        &alice,
        json!({ "last": 3, "before": forward["pageInfo"]["startCursor"] }),
    )
    .await;
    assert_eq!(sequences(&back), vec![23, 22, 21]);

    // Between two cursors.
    let window = page(
        &app,
        &alice,
        json!({ "first": 100, "after": newest["edges"][0]["cursor"], "before": oldest["edges"][0]["cursor"] }),
    )
    .await;
    assert_eq!(sequences(&window), (11..=24).rev().collect::<Vec<_>>());
}

async fn history_filters_by_kind_and_time(app: TestApp) {
    let alice = alice_with_history(&app).await;
    let transfers = page(
        &app,
        &alice,
        json!({ "first": 100, "filter": { "kinds": ["TRANSFER_OUT"] } }),
    )
    .await;
    assert_eq!(sequences(&transfers), vec![25, 24, 23, 22, 21]);
    let deposits = page(
        &app,
        &alice,
        json!({ "first": 3, "filter": { "kinds": ["DEPOSIT"] } }),
    )
    .await;
    assert_eq!(sequences(&deposits), vec![20, 19, 18]);
    let next = page(
        &app,
        &alice,
        json!({ "first": 3, "after": deposits["pageInfo"]["endCursor"], "filter": { "kinds": ["DEPOSIT"] } }),
    )
    .await;
    assert_eq!(sequences(&next), vec![17, 16, 15]);
    let future = page(
        &app,
        &alice,
        json!({ "first": 100, "filter": { "from": "2999-01-01T00:00:00Z" } }),
    )
    .await;
    assert_eq!(sequences(&future), Vec::<i64>::new());
    let past = page(
        &app,
        &alice,
        json!({ "first": 100, "filter": { "to": "2999-01-01T00:00:00Z" } }),
    )
    .await;
    assert_eq!(sequences(&past).len(), 25);

    // Several kinds, paged both ways: one walk per kind, merged.
    let both = json!({ "kinds": ["TRANSFER_OUT", "DEPOSIT"] });
    let first = page(&app, &alice, json!({ "first": 4, "filter": both })).await;
    assert_eq!(sequences(&first), vec![25, 24, 23, 22]);
    let second = page(
        &app,
        &alice,
        json!({ "first": 4, "after": first["pageInfo"]["endCursor"], "filter": both }),
    )
    .await;
    assert_eq!(sequences(&second), vec![21, 20, 19, 18]);
    let back = page(
        &app,
        &alice,
        json!({ "last": 3, "before": second["pageInfo"]["endCursor"], "filter": both }),
    )
    .await;
    assert_eq!(sequences(&back), vec![21, 20, 19]);

    // A time window is [from, to) on createdAt, with or without kinds.
    let all = page(&app, &alice, json!({ "first": 100 })).await;
    let time = |seq: i64| -> Value {
        all["edges"]
            .as_array()
            .and_then(|edges| edges.iter().find(|e| e["node"]["sequence"] == seq))
            .map(|e| e["node"]["createdAt"].clone())
            .unwrap_or(Value::Null)
    };
    let window = json!({ "from": time(5), "to": time(8) });
    let inside = page(&app, &alice, json!({ "first": 100, "filter": window })).await;
    assert_eq!(sequences(&inside), vec![7, 6, 5]);
    let late = json!({ "from": time(19), "to": time(23), "kinds": ["TRANSFER_OUT"] });
    let mixed = page(&app, &alice, json!({ "first": 100, "filter": late })).await;
    assert_eq!(sequences(&mixed), vec![22, 21]);
    let empty = json!({ "from": time(8), "to": time(8) });
    let none = page(&app, &alice, json!({ "first": 100, "filter": empty })).await;
    assert_eq!(sequences(&none), Vec::<i64>::new());
}

async fn bad_page_arguments_are_invalid_input(app: TestApp) {
    let alice = alice_with_history(&app).await;
    let bob = app.create_client("Bob").await;
    app.deposit(&bob.wallet, "1").await;
    let bobs_page = page(&app, &bob, json!({ "first": 1 })).await;
    let bobs_cursor = bobs_page["pageInfo"]["endCursor"].clone();

    for args in [
        json!({ "first": 1, "last": 1 }),
        json!({ "first": 101 }),
        json!({ "first": -1 }),
        json!({ "last": -5 }),
        json!({ "first": 1, "after": "not-a-cursor" }),
        json!({ "first": 1, "after": "b3AxOnh4eDox" }),
        // A cursor from Bob's wallet cannot be used to page Alice's.
        json!({ "first": 1, "after": bobs_cursor }),
        json!({ "filter": { "kinds": ["NOPE"] } }),
        json!({ "filter": { "from": "yesterday" } }),
    ] {
        let mut variables = args.clone();
        variables["w"] = json!(alice.wallet);
        let response = app.gql(Some(&alice.token), HISTORY, variables).await;
        assert_eq!(error_code(&response), "INVALID_INPUT", "{args}: {response}");
    }
}

async fn wallets_connection_pages_for_the_operator(app: TestApp) {
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(app.create_client(&format!("client {i}")).await.wallet);
    }
    let query = "query($first: Int, $after: String, $last: Int, $before: String) {
        wallets(first: $first, after: $after, last: $last, before: $before) {
            nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
    let ids = |response: &Value| -> Vec<String> {
        data(response)["wallets"]["nodes"]
            .as_array()
            .map_or_else(Vec::new, |n| n.iter().map(|w| text(&w["id"])).collect())
    };
    let first = app.gql(Some(OPERATOR), query, json!({ "first": 3 })).await;
    assert_eq!(ids(&first), created[0..3]);
    let second = app
        .gql(
            Some(OPERATOR),
            query,
            json!({ "first": 3, "after": data(&first)["wallets"]["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(ids(&second), created[3..6]);
    assert_eq!(data(&second)["wallets"]["pageInfo"]["hasNextPage"], true);
    let last = app.gql(Some(OPERATOR), query, json!({ "last": 2 })).await;
    assert_eq!(ids(&last), created[5..7]);
    assert_eq!(data(&last)["wallets"]["pageInfo"]["hasPreviousPage"], true);
    let before = app
        .gql(
            Some(OPERATOR),
            query,
            json!({ "last": 2, "before": data(&last)["wallets"]["pageInfo"]["startCursor"] }),
        )
        .await;
    assert_eq!(ids(&before), created[3..5]);

    // A client sees only its own wallet.
    let client = app.create_client("someone").await;
    let own = app
        .gql(Some(&client.token), query, json!({ "first": 100 }))
        .await;
    assert_eq!(ids(&own), vec![client.wallet]);
    let bad = app
        .gql(
            Some(OPERATOR),
            query,
            json!({ "first": 1, "after": "garbage" }),
        )
        .await;
    assert_eq!(error_code(&bad), "INVALID_INPUT");
}

/// A cursor names its operation: once its position holds another one (a
/// database restored to before it gave the sequence to a new operation),
/// it is refused rather than resumed from, on `after` and `before`, and in
/// `operationCreated` (see subscriptions). `Wallet.cursor` names the
/// newest operation and is accepted; the cursor before the first one has
/// nothing to check.
async fn cursors_from_another_history_are_refused(app: TestApp) {
    use walletql::domain::cursor::OperationCursor;
    let alice = alice_with_history(&app).await;
    let wallet_id = uuid::Uuid::parse_str(&alice.wallet).expect("id");
    let other = |seq| {
        OperationCursor {
            wallet_id,
            seq,
            operation: Some(uuid::Uuid::now_v7()),
        }
        .encode()
    };
    for args in [
        json!({ "first": 5, "after": other(10) }),
        json!({ "last": 5, "before": other(10) }),
    ] {
        let mut variables = args.clone();
        variables["w"] = json!(alice.wallet);
        let refused = app.gql(Some(&alice.token), HISTORY, variables).await;
        assert_eq!(error_code(&refused), "INVALID_INPUT", "{args}: {refused}");
        let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("cursor no longer valid"), "{message}");
    }
    // The real cursors work, as does the start of the history.
    let head = app
        .gql(
            Some(&alice.token),
            "query($id: UUID!) { wallet(id: $id) { cursor } }",
            json!({ "id": alice.wallet }),
        )
        .await;
    let head = text(&data(&head)["wallet"]["cursor"]);
    // Newest first: after the newest come the older ones.
    let after_head = page(&app, &alice, json!({ "first": 3, "after": head })).await;
    assert_eq!(after_head["nodes"].as_array().map(Vec::len), Some(3));
    let start = OperationCursor {
        wallet_id,
        seq: 0,
        operation: None,
    }
    .encode();
    let before_start = page(&app, &alice, json!({ "last": 2, "before": start })).await;
    assert_eq!(before_start["nodes"][0]["sequence"], 2, "{before_start}");
}

both_backends!(
    cursors_from_another_history_are_refused,
    history_pages_forwards_newest_first,
    history_pages_backwards,
    history_filters_by_kind_and_time,
    bad_page_arguments_are_invalid_input,
    wallets_connection_pages_for_the_operator,
);
