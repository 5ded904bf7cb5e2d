//! Persisted queries: Apollo's automatic persisted queries over POST and
//! GET, and trusted documents over HTTP and WebSocket.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use walletql::config::{ApiLimits, RateLimits, WsLimits};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code, serve_ledger};
use crate::ws::{Event, TRANSPORT_WS, WsClient};

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

async fn get(app: &TestApp, token: &str, params: &[(&str, &str)]) -> Value {
    let url = reqwest::Url::parse_with_params(&app.url("/graphql"), params).expect("url");
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

async fn automatic_persisted_queries_register_once_then_run_by_hash(app: TestApp) {
    let client = app.create_client("Ada").await;
    let auth = format!("Bearer {}", client.token);
    let query = "query Me { me { name } }";
    let hash = sha256(query);
    // What Apollo's PersistedQueryLink sends first: the hash alone.
    let (_, unknown) = app
        .post(Some(&auth), json!({ "extensions": persisted(&hash) }))
        .await;
    assert_eq!(error_code(&unknown), "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(unknown["errors"][0]["message"], "PersistedQueryNotFound");
    // A hash that is not the query's is refused, and registers nothing.
    let (_, mismatch) = app
        .post(
            Some(&auth),
            json!({ "query": query, "extensions": persisted(&sha256("{ other }")) }),
        )
        .await;
    assert_eq!(error_code(&mismatch), "INVALID_INPUT");
    // The link's retry: query and hash. Then the hash alone runs it.
    let (_, registered) = app
        .post(
            Some(&auth),
            json!({ "query": query, "extensions": persisted(&hash) }),
        )
        .await;
    assert_eq!(data(&registered)["me"]["name"], "Ada");
    let (_, by_hash) = app
        .post(Some(&auth), json!({ "extensions": persisted(&hash) }))
        .await;
    assert_eq!(data(&by_hash)["me"]["name"], "Ada");
    // GET, as Apollo sends persisted queries with useGETForHashedQueries.
    let extensions = persisted(&hash).to_string();
    let by_get = get(&app, &client.token, &[("extensions", &extensions)]).await;
    assert_eq!(data(&by_get)["me"]["name"], "Ada");
    // A stored query is still bounded like any other: its variables too.
    let paged = "query P($n: Int) { me { wallet { operations(first: $n) { nodes { id } } } } }";
    let paged_hash = sha256(paged);
    let (_, stored) = app
        .post(Some(&auth), json!({ "query": paged, "variables": { "n": 1 }, "extensions": persisted(&paged_hash) }))
        .await;
    data(&stored);
    let (_, too_large) = app
        .post(
            Some(&auth),
            json!({ "variables": { "n": 5000 }, "extensions": persisted(&paged_hash) }),
        )
        .await;
    assert_eq!(error_code(&too_large), "INVALID_INPUT");
}

both_backends!(automatic_persisted_queries_register_once_then_run_by_hash);

const ME: &str = "query Me { me { name } }";
const OPS: &str = "subscription Ops($w: UUID!) { operationCreated(walletId: $w) { kind amount } }";

async fn trusted_app() -> TestApp {
    let mut app = TestApp::sqlite().await;
    let manifest = [
        ("me-1".to_owned(), ME.to_owned()),
        ("ops-1".to_owned(), OPS.to_owned()),
    ];
    let limits = ApiLimits {
        rate_limits: RateLimits::OFF,
        trusted_documents: Some(Arc::new(manifest.into_iter().collect())),
        ..ApiLimits::default()
    };
    app.use_server(serve_ledger(app.ledger.clone(), limits, WsLimits::default()).await);
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_documents_run_only_what_is_listed() {
    let app = trusted_app().await;
    // createClient is not listed: the operator, who is exempt, signs Ada up.
    let created = app
        .gql(
            Some(OPERATOR),
            "mutation { createClient(input: {name: \"Ada\"}) { token wallet { id } } }",
            json!({}),
        )
        .await;
    let client = data(&created)["createClient"].clone();
    let token = client["token"].as_str().expect("token").to_owned();
    let auth = format!("Bearer {token}");
    // By id, three ways: persistedQuery's hash, documentId over POST and GET.
    let (_, by_hash) = app
        .post(Some(&auth), json!({ "extensions": persisted("me-1") }))
        .await;
    assert_eq!(data(&by_hash)["me"]["name"], "Ada");
    let (_, by_id) = app.post(Some(&auth), json!({ "documentId": "me-1" })).await;
    assert_eq!(data(&by_id)["me"]["name"], "Ada");
    let by_get = get(&app, &token, &[("documentId", "me-1")]).await;
    assert_eq!(data(&by_get)["me"]["name"], "Ada");
    // Anything else is refused before it runs.
    for body in [
        json!({ "query": "{ me { name email } }" }),
        json!({ "documentId": "nope" }),
        json!({ "query": "{ __typename }", "extensions": persisted(&sha256("{ __typename }")) }),
        json!({ "query": "mutation { createClient(input: {name: \"Eve\"}) { token } }" }),
    ] {
        let (_, refused) = app.post(Some(&auth), body.clone()).await;
        assert_eq!(
            error_code(&refused),
            "DOCUMENT_NOT_TRUSTED",
            "{body}: {refused}"
        );
    }
    let (_, anonymous) = app.post(None, json!({ "query": "{ __typename }" })).await;
    assert_eq!(error_code(&anonymous), "DOCUMENT_NOT_TRUSTED");
    // The operator runs what it sends, but introspection and the
    // playground are off.
    let (_, operator) = app
        .post(
            Some(&format!("Bearer {OPERATOR}")),
            json!({ "query": "{ wallets { nodes { id } } }" }),
        )
        .await;
    data(&operator);
    let (_, schema) = app
        .post(
            Some(&format!("Bearer {OPERATOR}")),
            json!({ "query": "{ __schema { queryType { name } } }" }),
        )
        .await;
    assert!(schema["data"]["__schema"].is_null(), "{schema}");
    let page = reqwest::Client::new()
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("get");
    assert_ne!(page.status().as_u16(), 200);

    // The same rules over WebSocket.
    let wallet = client["wallet"]["id"].as_str().expect("wallet").to_owned();
    let mut ws = WsClient::connect(app.addr, TRANSPORT_WS, Some(&token))
        .await
        .expect("connect");
    ws.send(json!({ "id": "bad", "type": "subscribe", "payload": {
        "query": "subscription($w: UUID!) { operationCreated(walletId: $w) { id } }", "variables": { "w": wallet } } }))
        .await;
    match ws.next_event("bad", Duration::from_secs(5)).await {
        Event::Errors(errors) => assert_eq!(
            errors[0]["extensions"]["code"], "DOCUMENT_NOT_TRUSTED",
            "{errors}"
        ),
        other => panic!("an unlisted subscription must be refused, got {other:?}"),
    }
    ws.send(json!({ "id": "ok", "type": "subscribe", "payload": {
        "variables": { "w": wallet }, "extensions": persisted("ops-1") } }))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    data(&app.deposit(&wallet, "5.00").await);
    let event = ws.next_operation("ok").await;
    assert_eq!(event["amount"], "5.00");
}
