use serde_json::json;

use crate::both_backends;
use crate::helpers::{TestApp, data, error_code};

/// An unexpected failure (here: a table gone missing) is `INTERNAL`, says
/// nothing about the cause, and leaves the data as it was.
async fn internal_failures_are_opaque_and_change_nothing(app: TestApp) {
    use sea_orm::ConnectionTrait;
    let alice = app.create_client("Alice").await;
    data(&app.deposit(&alice.wallet, "5.00").await);
    app.store
        .db()
        .execute_unprepared("DROP TABLE idempotency_key")
        .await
        .expect("drop table");
    let response = app
        .deposit_with(&alice.wallet, json!("1.00"), Some("k"))
        .await;
    assert_eq!(error_code(&response), "INTERNAL");
    assert_eq!(response["errors"][0]["message"], "internal error");
    assert!(
        !response.to_string().contains("idempotency_key"),
        "{response}"
    );
    assert_eq!(app.balance(&alice.wallet).await, "5.00");
}

both_backends!(internal_failures_are_opaque_and_change_nothing);
