use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code};

async fn clients_cannot_read_each_others_money(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let mallory = app.create_client("Mallory").await;
    app.deposit(&alice.wallet, "40.00").await;

    let reads = [
        (
            "query($id: UUID!) { wallet(id: $id) { balance } }",
            json!({ "id": alice.wallet }),
        ),
        (
            "query($id: UUID!) { client(id: $id) { name } }",
            json!({ "id": alice.id }),
        ),
        (
            "query($id: UUID!) { operations(walletId: $id) { nodes { amount } } }",
            json!({ "id": alice.wallet }),
        ),
        // A wallet that does not exist looks the same as someone else's.
        (
            "query($id: UUID!) { wallet(id: $id) { id } }",
            json!({ "id": uuid::Uuid::now_v7() }),
        ),
    ];
    for (query, variables) in reads {
        let response = app.gql(Some(&mallory.token), query, variables).await;
        assert_eq!(error_code(&response), "FORBIDDEN", "{query}: {response}");
        assert!(!response.to_string().contains("40.00"));
    }
    // The operator reads everything.
    let operator = app
        .gql(
            Some(OPERATOR),
            "query($id: UUID!) { wallet(id: $id) { balance client { name } } }",
            json!({ "id": alice.wallet }),
        )
        .await;
    assert_eq!(data(&operator)["wallet"]["balance"], "40.00");
    assert_eq!(data(&operator)["wallet"]["client"]["name"], "Alice");
    let missing = app
        .gql(
            Some(OPERATOR),
            "query($id: UUID!) { wallet(id: $id) { id } }",
            json!({ "id": uuid::Uuid::now_v7() }),
        )
        .await;
    assert_eq!(error_code(&missing), "NOT_FOUND");
}

async fn a_counterparty_link_reveals_only_the_wallet_id(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&bob.wallet, "99.00").await;
    app.deposit(&alice.wallet, "1.00").await;
    app.transfer(&alice, &bob.wallet, "1.00").await;
    let query = "query($id: UUID!) { operations(walletId: $id) { nodes { counterparty { walletId BALANCE } } } }";
    let id_only = app
        .gql(
            Some(&alice.token),
            &query.replace("BALANCE", ""),
            json!({ "id": alice.wallet }),
        )
        .await;
    assert_eq!(
        data(&id_only)["operations"]["nodes"][0]["counterparty"]["walletId"],
        bob.wallet.as_str()
    );
    for field in [
        "balance",
        "client { name }",
        "operations { nodes { amount } }",
        "operationCount",
    ] {
        let response = app
            .gql(
                Some(&alice.token),
                &query.replace("BALANCE", field),
                json!({ "id": alice.wallet }),
            )
            .await;
        // A counterparty is a PublicWallet: asking for more is refused at
        // validation, before anything runs.
        assert_eq!(
            error_code(&response),
            "INVALID_INPUT",
            "{field}: {response}"
        );
        assert!(
            response["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("PublicWallet")),
            "{response}"
        );
        assert!(
            response.get("data").is_none_or(Value::is_null),
            "{response}"
        );
        assert!(!response.to_string().contains("Bob"));
    }
}

async fn anonymous_and_bad_tokens_are_unauthenticated(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let anonymous = app
        .gql(
            None,
            "query($id: UUID!) { wallet(id: $id) { balance } }",
            json!({ "id": alice.wallet }),
        )
        .await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    assert_eq!(
        error_code(&app.gql(None, "{ me { id } }", json!({})).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        error_code(
            &app.gql(None, "{ wallets { nodes { id } } }", json!({}))
                .await
        ),
        "UNAUTHENTICATED"
    );

    let body = json!({ "query": "{ me { id } }" });
    for header in [
        "Bearer wq_not-a-real-token",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "wq_token-without-scheme",
        "Bearer test-operator-tokeN",
    ] {
        let (status, response) = app.post(Some(header), body.clone()).await;
        assert_eq!(status, 401, "{header}");
        assert_eq!(error_code(&response), "UNAUTHENTICATED", "{header}");
    }
    let (status, response) = app
        .post(Some(&format!("Bearer {}", alice.token)), body)
        .await;
    assert_eq!(status, 200);
    assert_eq!(data(&response)["me"]["id"], alice.id.as_str());
}

async fn malformed_requests_get_a_code(app: TestApp) {
    for query in [
        "{ me { id ",
        "{ nope }",
        "query { wallet(id: 5) { id } }",
        "mutation { createClient { token } }",
    ] {
        let response = app.gql(Some(OPERATOR), query, json!({})).await;
        assert_eq!(
            error_code(&response),
            "INVALID_INPUT",
            "{query}: {response}"
        );
    }
}

both_backends!(
    clients_cannot_read_each_others_money,
    a_counterparty_link_reveals_only_the_wallet_id,
    anonymous_and_bad_tokens_are_unauthenticated,
    malformed_requests_get_a_code,
);
