//! Typed errors: every code is a value of the schema's `ErrorCode`, a batch
//! item's code is one too, and `INVALID_INPUT` says which input value is at
//! fault (`extensions.field`).

use serde_json::{Value, json};
use walletql::domain::error::ErrorCode;

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code, schema_error_codes};
use crate::verbs::key;

#[test]
fn the_schema_and_the_readme_list_every_code() {
    let schema = schema_error_codes();
    let ours: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(schema, ours, "schema.graphql's ErrorCode vs ErrorCode::ALL");
    let readme = include_str!("../../README.md");
    for code in &ours {
        assert!(
            readme.contains(&format!("| `{code}` |")),
            "the README's error table misses {code}"
        );
    }
}

fn field(response: &Value) -> &Value {
    &response["errors"][0]["extensions"]["field"]
}

async fn invalid_input_points_at_the_value(app: TestApp) {
    let payer = app.create_client("Payer").await;
    let payee = app.create_client("Payee").await;
    data(&app.deposit(&payer.wallet, "10.00").await);
    // A value of ours: an amount with three decimals.
    let precise = app.transfer(&payer, &payee.wallet, "1.234").await;
    assert_eq!(error_code(&precise), "INVALID_INPUT");
    assert_eq!(field(&precise), &json!(["input", "amount"]), "{precise}");
    // A value the schema refuses: a malformed id, in a batch's fourth item.
    let item =
        |to: &str| json!({ "fromWalletId": payer.wallet, "toWalletId": to, "amount": "0.01" });
    let items = vec![
        item(&payee.wallet),
        item(&payee.wallet),
        item(&payee.wallet),
        item("nope"),
    ];
    let batch = "mutation($input: TransferBatchInput!) { transferBatch(input: $input) { results { index code } } }";
    let malformed = app
        .gql(
            Some(&payer.token),
            batch,
            json!({ "input": { "transfers": items, "atomic": true } }),
        )
        .await;
    assert_eq!(error_code(&malformed), "INVALID_INPUT");
    assert_eq!(
        field(&malformed),
        &json!(["input", "transfers", 3, "toWalletId"]),
        "{malformed}"
    );
    // An atomic batch refused for its third item's amount: the index and
    // the field.
    let mut items = vec![
        item(&payee.wallet),
        item(&payee.wallet),
        item(&payee.wallet),
    ];
    items[2]["amount"] = json!("0.001");
    let refused = app
        .gql(
            Some(&payer.token),
            batch,
            json!({ "input": { "transfers": items, "atomic": true } }),
        )
        .await;
    assert_eq!(error_code(&refused), "INVALID_INPUT");
    assert_eq!(refused["errors"][0]["extensions"]["index"], 2);
    assert_eq!(field(&refused), &json!(["input", "transfers", 2, "amount"]));
    // A non-atomic batch: each refused item carries an ErrorCode value.
    let items = vec![
        item(&payee.wallet),
        json!({ "fromWalletId": payer.wallet, "toWalletId": payee.wallet, "amount": "999.00" }),
    ];
    let mixed = app
        .gql(
            Some(&payer.token),
            batch,
            json!({ "input": { "transfers": items, "atomic": false } }),
        )
        .await;
    let results = &data(&mixed)["transferBatch"]["results"];
    assert_eq!(results[0]["code"], Value::Null);
    assert_eq!(results[1]["code"], "INSUFFICIENT_FUNDS");
    // Other inputs: a name, a deadline, a page size, a cursor.
    let nameless = app
        .gql(
            None,
            "mutation { createClient(input: {name: \"  \"}) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(field(&nameless), &json!(["input", "name"]), "{nameless}");
    let past = app
        .gql(
            Some(&payer.token),
            "mutation($input: AuthorizeTransferInput!) { authorizeTransfer(input: $input) { transfer { id } } }",
            json!({ "input": { "fromWalletId": payer.wallet, "toWalletId": payee.wallet, "amount": "1.00",
                "expiresAt": "2020-01-01T00:00:00Z", "idempotencyKey": key() } }),
        )
        .await;
    assert_eq!(field(&past), &json!(["input", "expiresAt"]), "{past}");
    let page = "query($w: UUID!, $n: Int, $after: String) { operations(walletId: $w, first: $n, after: $after) { nodes { id } } }";
    let large = app
        .gql(
            Some(&payer.token),
            page,
            json!({ "w": payer.wallet, "n": 5000 }),
        )
        .await;
    assert_eq!(field(&large), &json!(["first"]), "{large}");
    let cursor = app
        .gql(
            Some(&payer.token),
            page,
            json!({ "w": payer.wallet, "n": 5, "after": "bogus" }),
        )
        .await;
    assert_eq!(field(&cursor), &json!(["after"]), "{cursor}");
    // A refusal that is not about one value points nowhere.
    let poor = app.transfer(&payer, &payee.wallet, "999.00").await;
    assert_eq!(error_code(&poor), "INSUFFICIENT_FUNDS");
    assert_eq!(field(&poor), &Value::Null);
    // An unknown transfer: NOT_FOUND for the operator, FORBIDDEN for others.
    let unknown = "0192f4d6-9c3e-7a51-8d2f-3b6c1e9a7f40";
    let query = "query($id: UUID!) { transfer(id: $id) { id } }";
    let operator = app
        .gql(Some(OPERATOR), query, json!({ "id": unknown }))
        .await;
    assert_eq!(error_code(&operator), "NOT_FOUND");
    let client = app
        .gql(Some(&payer.token), query, json!({ "id": unknown }))
        .await;
    assert_eq!(error_code(&client), "FORBIDDEN");
}

both_backends!(invalid_input_points_at_the_value);
