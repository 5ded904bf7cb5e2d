use futures_util::future::join_all;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{TestApp, data, error_code};

async fn a_retried_deposit_moves_money_once(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let first = app
        .deposit_with(&alice.wallet, json!("25.00"), Some("dep-1"))
        .await;
    let retry = app
        .deposit_with(&alice.wallet, json!("25.00"), Some("dep-1"))
        .await;
    assert_eq!(
        data(&first)["deposit"]["operation"],
        data(&retry)["deposit"]["operation"]
    );
    assert_eq!(app.balance(&alice.wallet).await, "25.00");

    let reused = app
        .deposit_with(&alice.wallet, json!("26.00"), Some("dep-1"))
        .await;
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.balance(&alice.wallet).await, "25.00");
}

async fn a_retried_transfer_returns_the_first_result(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&alice.wallet, "10.00").await;

    let first = app
        .transfer_with(&alice, &bob.wallet, "10.00", Some("t-1"))
        .await;
    // The balance is now zero: a retry must still answer with the first
    // result, not with INSUFFICIENT_FUNDS.
    let retry = app
        .transfer_with(&alice, &bob.wallet, "10.00", Some("t-1"))
        .await;
    assert_eq!(
        data(&first)["transfer"]["transfer"],
        data(&retry)["transfer"]["transfer"]
    );
    assert_eq!(
        data(&first)["transfer"]["operation"],
        data(&retry)["transfer"]["operation"]
    );
    assert_eq!(app.balance(&alice.wallet).await, "0.00");
    assert_eq!(app.balance(&bob.wallet).await, "10.00");
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM transfer").await, 1);

    let other_amount = app
        .transfer_with(&alice, &bob.wallet, "5.00", Some("t-1"))
        .await;
    assert_eq!(error_code(&other_amount), "IDEMPOTENCY_KEY_REUSED");
    let other_payee = app
        .transfer_with(&alice, &alice.wallet, "10.00", Some("t-1"))
        .await;
    assert_eq!(error_code(&other_payee), "SAME_WALLET");
}

async fn keys_are_scoped_per_client(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&alice.wallet, "10.00").await;
    app.deposit(&bob.wallet, "10.00").await;
    data(
        &app.transfer_with(&alice, &bob.wallet, "1.00", Some("same-key"))
            .await,
    );
    data(
        &app.transfer_with(&bob, &alice.wallet, "2.00", Some("same-key"))
            .await,
    );
    assert_eq!(app.balance(&alice.wallet).await, "11.00");
    assert_eq!(app.balance(&bob.wallet).await, "9.00");
}

async fn a_refused_request_does_not_burn_its_key(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let refused = app
        .transfer_with(&alice, &bob.wallet, "5.00", Some("later"))
        .await;
    assert_eq!(error_code(&refused), "INSUFFICIENT_FUNDS");
    app.deposit(&alice.wallet, "5.00").await;
    let accepted = app
        .transfer_with(&alice, &bob.wallet, "5.00", Some("later"))
        .await;
    assert_eq!(data(&accepted)["transfer"]["transfer"]["amount"], "5.00");
}

async fn racing_retries_move_money_once(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    app.deposit(&alice.wallet, "100.00").await;

    let retries = (0..12).map(|_| app.transfer_with(&alice, &bob.wallet, "7.00", Some("race")));
    let responses = join_all(retries).await;
    let ids: Vec<_> = responses
        .iter()
        .map(|r| data(r)["transfer"]["transfer"]["id"].clone())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "all retries see one transfer: {ids:?}"
    );
    assert_eq!(app.balance(&alice.wallet).await, "93.00");
    assert_eq!(app.balance(&bob.wallet).await, "7.00");
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM transfer").await, 1);

    let deposits =
        (0..12).map(|_| app.deposit_with(&bob.wallet, json!("1.50"), Some("race-deposit")));
    for response in join_all(deposits).await {
        data(&response);
    }
    assert_eq!(app.balance(&bob.wallet).await, "8.50");
    app.assert_ledger_consistent().await;
}

/// A key past its retention is pruned (and only such a key): the same key
/// may then carry a new request. A fresh key still replays.
async fn keys_past_their_retention_are_pruned_and_free_again(app: TestApp) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    data(
        &app.transfer_with(&alice, &bob.wallet, "1.00", Some("old"))
            .await,
    );
    data(
        &app.transfer_with(&alice, &bob.wallet, "1.00", Some("fresh"))
            .await,
    );
    // "old" was used eight days ago.
    entity::idempotency_key::Entity::update_many()
        .col_expr(
            entity::idempotency_key::Column::CreatedAt,
            Expr::value(chrono::Utc::now() - chrono::TimeDelta::days(8)),
        )
        .filter(entity::idempotency_key::Column::Key.eq("old"))
        .exec(app.store.db())
        .await
        .expect("backdate");
    assert_eq!(app.ledger.prune_idempotency_keys().await.ok(), Some(1));
    assert_eq!(app.ledger.prune_idempotency_keys().await.ok(), Some(0));
    // Another amount under "old" is a new transfer now; under "fresh" it is
    // still refused.
    data(
        &app.transfer_with(&alice, &bob.wallet, "2.00", Some("old"))
            .await,
    );
    let reused = app
        .transfer_with(&alice, &bob.wallet, "2.00", Some("fresh"))
        .await;
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.balance(&alice.wallet).await, "6.00");
    app.assert_ledger_consistent().await;
}

/// Keys are stored with a versioned hash of the request; a key stored by an
/// earlier version (its `verb:field:...` text) still replays its request
/// after the upgrade, and still refuses another.
async fn keys_stored_before_the_hashed_fingerprints_still_replay(app: TestApp) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    let first = app
        .transfer_with(&alice, &bob.wallet, "3.00", Some("before"))
        .await;
    assert_eq!(
        app.sql_i64(
            "SELECT COUNT(*) FROM idempotency_key WHERE key = 'before' \
             AND fingerprint LIKE 'v2:%' AND length(fingerprint) = 67"
        )
        .await,
        1,
        "stored as a versioned SHA-256"
    );
    // As the version before stored it.
    entity::idempotency_key::Entity::update_many()
        .col_expr(
            entity::idempotency_key::Column::Fingerprint,
            Expr::value(format!("transfer:{}:{}:300:", alice.wallet, bob.wallet)),
        )
        .filter(entity::idempotency_key::Column::Key.eq("before"))
        .exec(app.store.db())
        .await
        .expect("store the old text");
    let retry = app
        .transfer_with(&alice, &bob.wallet, "3.00", Some("before"))
        .await;
    assert_eq!(
        data(&first)["transfer"]["transfer"],
        data(&retry)["transfer"]["transfer"]
    );
    let other = app
        .transfer_with(&alice, &bob.wallet, "4.00", Some("before"))
        .await;
    assert_eq!(error_code(&other), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.balance(&alice.wallet).await, "7.00");
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM transfer").await, 1);
}

both_backends!(
    keys_stored_before_the_hashed_fingerprints_still_replay,
    keys_past_their_retention_are_pruned_and_free_again,
    a_retried_deposit_moves_money_once,
    a_retried_transfer_returns_the_first_result,
    keys_are_scoped_per_client,
    a_refused_request_does_not_burn_its_key,
    racing_retries_move_money_once,
);
