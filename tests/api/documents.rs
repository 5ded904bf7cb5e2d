//! What a GraphQL document may cost, and how it may arrive: fragment
//! expansion bounded before validation, the standard introspection query of
//! schema tools, page sizes refused with their own code, and GET requests.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code};

const INTROSPECTION: &str = include_str!("fixtures/introspection.graphql");

/// `query { ...F<n> }` where each fragment spreads the one before twice: the
/// expanded document has 2^n fields.
fn fragment_chain(levels: usize) -> String {
    let mut query = format!("query {{ ...F{levels} }}\nfragment F0 on Query {{ me {{ name }} }}\n");
    for level in 1..=levels {
        let below = level - 1;
        query.push_str(&format!(
            "fragment F{level} on Query {{ ...F{below} ...F{below} }}\n"
        ));
    }
    query
}

async fn a_fragment_chain_is_refused_before_it_expands(app: TestApp) {
    let client = app.create_client("Ada").await;
    let started = Instant::now();
    // Several at once: before the guard, a 26-level chain (2^26 fields, under
    // the parser's recursion limit of 32) took seconds of CPU to validate and
    // stalled every other request. Past that limit (40) the parser refuses.
    let chains = [20, 26, 31, 40].map(fragment_chain);
    let attacks = chains
        .iter()
        .map(|chain| app.gql(Some(&client.token), chain, json!({})));
    let refusals = futures_util::future::join_all(attacks).await;
    let elapsed = started.elapsed();
    for refused in &refusals {
        assert_eq!(error_code(refused), "QUERY_TOO_COMPLEX", "{refused}");
        assert!(refused.get("data").is_none_or(Value::is_null), "{refused}");
    }
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    // Other requests are served normally meanwhile and after.
    let me = app
        .gql(Some(&client.token), "{ me { name } }", json!({}))
        .await;
    assert_eq!(data(&me)["me"]["name"], "Ada");
    // A short chain is fine: sharing fragments is not an attack.
    let short = app
        .gql(Some(&client.token), &fragment_chain(3), json!({}))
        .await;
    assert_eq!(data(&short)["me"]["name"], "Ada");
}

async fn a_fragment_that_spreads_itself_is_refused(app: TestApp) {
    let query =
        "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A me { id } }";
    let refused = app.gql(Some(OPERATOR), query, json!({})).await;
    assert_eq!(error_code(&refused), "INVALID_INPUT", "{refused}");
}

async fn the_standard_introspection_query_passes(app: TestApp) {
    // Anonymous, as GraphiQL and graphql-codegen send it.
    let response = app.gql(None, INTROSPECTION, json!({})).await;
    let schema = &data(&response)["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    assert_eq!(schema["mutationType"]["name"], "Mutation");
    assert_eq!(schema["subscriptionType"]["name"], "Subscription");
    let types = schema["types"].as_array().cloned().unwrap_or_default();
    let scalar = |name: &str| {
        types
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    for name in ["Decimal", "UUID", "DateTime"] {
        let t = scalar(name);
        assert!(
            t["description"].as_str().is_some_and(|d| d.len() > 20),
            "{name} has a description: {t}"
        );
        assert!(
            t["specifiedByURL"]
                .as_str()
                .is_some_and(|u| u.starts_with("https://")),
            "{name} has @specifiedBy: {t}"
        );
    }
    // Ordinary fields still have their depth limit (12 by default).
    let mut deep = String::from(
        "me { wallet { client { wallet { client { wallet { client { wallet { client { wallet { client { wallet { client { name",
    );
    deep.push_str(&" }".repeat(13));
    let refused = app
        .gql(Some(OPERATOR), &format!("{{ {deep} }}"), json!({}))
        .await;
    assert_eq!(error_code(&refused), "QUERY_TOO_COMPLEX", "{refused}");
    // And introspection has one of its own.
    let mut of_type = String::from("name");
    for _ in 0..25 {
        of_type = format!("ofType {{ {of_type} }}");
    }
    let refused = app
        .gql(
            None,
            &format!("{{ __type(name: \"Query\") {{ {of_type} }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(error_code(&refused), "QUERY_TOO_COMPLEX", "{refused}");
}

async fn oversized_pages_are_invalid_input_not_too_complex(app: TestApp) {
    for first in ["101", "500", "100000", "-1"] {
        let query = format!("{{ wallets(first: {first}) {{ nodes {{ id balance }} }} }}");
        let refused = app.gql(Some(OPERATOR), &query, json!({})).await;
        assert_eq!(
            error_code(&refused),
            "INVALID_INPUT",
            "first: {first}: {refused}"
        );
    }
    let query = "query($n: Int) { wallets(last: $n) { nodes { id } } }";
    let refused = app.gql(Some(OPERATOR), query, json!({ "n": 5000 })).await;
    assert_eq!(error_code(&refused), "INVALID_INPUT", "{refused}");
    let fine = app.gql(Some(OPERATOR), query, json!({ "n": 100 })).await;
    data(&fine);
}

async fn get_requests_run_queries_and_never_mutations(app: TestApp) {
    let client = app.create_client("Ada").await;
    let http = reqwest::Client::new();
    let get = |query: &str, accept: Option<&str>| {
        let url =
            reqwest::Url::parse_with_params(&app.url("/graphql"), [("query", query)]).expect("url");
        let mut request = http.get(url).bearer_auth(&client.token);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        request.send()
    };
    // What urql sends by default.
    let urql_accept = "application/graphql-response+json, application/graphql+json, application/json, text/event-stream, multipart/mixed";
    let response = get("{ me { name wallet { balance } } }", Some(urql_accept))
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/graphql-response+json; charset=utf-8"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(data(&body)["me"]["wallet"]["balance"], "0.00");

    // A mutation in a link must never run.
    let before = app.sql_i64("SELECT count(*) FROM client").await;
    let mutation = r#"mutation { createClient(input: {name: "Eve"}) { token } }"#;
    let refused = get(mutation, None).await.expect("get");
    assert_eq!(refused.status().as_u16(), 405);
    assert_eq!(refused.headers()["allow"], "POST");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(error_code(&body), "METHOD_NOT_ALLOWED");
    assert_eq!(app.sql_i64("SELECT count(*) FROM client").await, before);

    // A request error (no data) is a 400 with this media type.
    let invalid = get("{ nope }", None).await.expect("get");
    assert_eq!(invalid.status().as_u16(), 400);
    let body: Value = invalid.json().await.expect("json");
    assert_eq!(error_code(&body), "INVALID_INPUT");

    // A browser asking for HTML gets the playground, even with a query.
    let page = get("{ me { name } }", Some("text/html,application/xhtml+xml"))
        .await
        .expect("get");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.expect("html").contains("GraphiQL"));
}

/// Field errors follow the spec: the failed field is null (not left out),
/// and a non-null field that is null makes its parent null, up to the
/// nearest nullable field or `data`.
async fn errors_propagate_nulls_as_the_spec_says(app: TestApp) {
    let client = app.create_client("Ada").await;
    // A nullable root field fails: it is null, its sibling is there.
    let anonymous = app
        .gql(None, "{ a: __typename me { name } }", json!({}))
        .await;
    assert_eq!(
        anonymous["data"],
        json!({ "a": "Query", "me": null }),
        "{anonymous}"
    );
    assert_eq!(anonymous["errors"][0]["path"], json!(["me"]));
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    // A non-null root field fails: data is null.
    let missing = app
        .gql(
            None,
            "{ a: __typename wallet(id: \"0192f4d6-9c3e-7a51-8d2f-3b6c1e9a7f40\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(missing["data"], Value::Null, "{missing}");
    // Deep down: Wallet.operations (non-null) fails on a bad cursor, so the
    // wallet (non-null), then the client (non-null wallet) and `me`, the
    // nearest nullable field, are null; the error keeps its full path.
    let query =
        "{ a: __typename me { name wallet { operations(after: \"bogus\") { nodes { id } } } } }";
    let nested = app.gql(Some(&client.token), query, json!({})).await;
    assert_eq!(
        nested["data"],
        json!({ "a": "Query", "me": null }),
        "{nested}"
    );
    assert_eq!(
        nested["errors"][0]["path"],
        json!(["me", "wallet", "operations"])
    );
    assert_eq!(error_code(&nested), "INVALID_INPUT");
    // Through lists of non-null items up to the non-null root: data is null.
    app.create_client("Bob").await;
    let query = "{ wallets { nodes { id operations(after: \"bogus\") { nodes { id } } } } }";
    let listed = app.gql(Some(OPERATOR), query, json!({})).await;
    assert_eq!(listed["data"], Value::Null, "{listed}");
    let errors = listed["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 2, "one error per failed field: {listed}");
    assert_eq!(errors[0]["path"][0], "wallets");
    assert_eq!(errors[0]["path"][3], "operations");
}

both_backends!(
    errors_propagate_nulls_as_the_spec_says,
    a_fragment_chain_is_refused_before_it_expands,
    a_fragment_that_spreads_itself_is_refused,
    the_standard_introspection_query_passes,
    oversized_pages_are_invalid_input_not_too_complex,
    get_requests_run_queries_and_never_mutations,
);
