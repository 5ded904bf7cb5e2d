use serde_json::json;

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code, text};

async fn create_client_returns_client_empty_wallet_and_token(app: TestApp) {
    let response = app
        .gql(
            None,
            "mutation { createClient(input: {name: \"  Ada Lovelace \", email: \"Ada@Example.com\"}) {
                token client { id name email } wallet { id balance currency operationCount } } }",
            json!({}),
        )
        .await;
    let created = &data(&response)["createClient"];
    assert_eq!(created["client"]["name"], "Ada Lovelace");
    assert_eq!(created["client"]["email"], "ada@example.com");
    assert_eq!(created["wallet"]["balance"], "0.00");
    assert_eq!(created["wallet"]["currency"], "USD");
    assert_eq!(created["wallet"]["operationCount"], 0);
    assert!(text(&created["token"]).starts_with("wq_"));

    // The token identifies the client, whose wallet is the one just created.
    let token = text(&created["token"]);
    let me = app
        .gql(
            Some(&token),
            "{ me { id name wallet { id balance } } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&me)["me"]["id"], created["client"]["id"]);
    assert_eq!(data(&me)["me"]["wallet"]["id"], created["wallet"]["id"]);

    // Only the token's hash is stored.
    let stored = app
        .sql_i64(&format!(
            "SELECT COUNT(*) FROM client WHERE token_hash = '{token}'"
        ))
        .await;
    assert_eq!(stored, 0);
}

async fn create_client_refuses_bad_input_and_changes_nothing(app: TestApp) {
    let create = |name: String, email: Option<&'static str>| {
        let app = &app;
        async move {
            app.gql(
                None,
                "mutation($name: String!, $email: String) { createClient(input: {name: $name, email: $email}) { token } }",
                json!({ "name": name, "email": email }),
            )
            .await
        }
    };
    for (name, email) in [
        ("   ".to_owned(), None),
        ("x".repeat(201), None),
        ("nul\u{0}byte".to_owned(), None),
        ("Ada".to_owned(), Some("not-an-email")),
    ] {
        let response = create(name.clone(), email).await;
        assert_eq!(
            error_code(&response),
            "INVALID_INPUT",
            "{name:?} {email:?}: {response}"
        );
    }
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM client").await, 0);
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM wallet").await, 0);

    data(&create("Ada".into(), Some("ada@example.com")).await);
    let duplicate = create("Other Ada".into(), Some("ADA@example.com")).await;
    assert_eq!(error_code(&duplicate), "EMAIL_TAKEN");
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM client").await, 1);
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM wallet").await, 1);
}

async fn client_and_me_queries(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let by_id = app
        .gql(
            Some(&alice.token),
            "query($id: UUID!) { client(id: $id) { name wallet { id } } }",
            json!({ "id": alice.id }),
        )
        .await;
    assert_eq!(data(&by_id)["client"]["name"], "Alice");
    assert_eq!(
        data(&by_id)["client"]["wallet"]["id"],
        alice.wallet.as_str()
    );

    let operator_me = app.gql(Some(OPERATOR), "{ me { id } }", json!({})).await;
    assert!(data(&operator_me)["me"].is_null());
    let operator_reads = app
        .gql(
            Some(OPERATOR),
            "query($id: UUID!) { client(id: $id) { name } }",
            json!({ "id": alice.id }),
        )
        .await;
    assert_eq!(data(&operator_reads)["client"]["name"], "Alice");

    let missing = app
        .gql(
            Some(OPERATOR),
            "query($id: UUID!) { client(id: $id) { name } }",
            json!({ "id": uuid::Uuid::now_v7() }),
        )
        .await;
    assert_eq!(error_code(&missing), "NOT_FOUND");
}

async fn health_check_reports_the_database(app: TestApp) {
    let response = reqwest::get(app.url("/healthz")).await.expect("healthz");
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "alive");
    assert_eq!(body["database"], "ok");
    let ready = reqwest::get(app.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let graphiql = reqwest::Client::new()
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("graphiql");
    assert_eq!(graphiql.status().as_u16(), 200);
    assert!(graphiql.text().await.expect("html").contains("graphiql"));
}

both_backends!(
    create_client_returns_client_empty_wallet_and_token,
    create_client_refuses_bad_input_and_changes_nothing,
    client_and_me_queries,
    health_check_reports_the_database,
);
