//! `previewTransfer` (issue 20): what `transfer` would answer now, with
//! nothing locked or written, on both backends.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, TestClient, data};
use crate::verbs::key;

const PREVIEW: &str = "query($input: TransferInput!) {
    previewTransfer(input: $input) { ok code message availableBalanceAfter } }";

async fn preview(
    app: &TestApp,
    token: Option<&str>,
    from: &str,
    to: &str,
    amount: &str,
    key: Option<&str>,
) -> Value {
    let response = app
        .gql(
            token,
            PREVIEW,
            json!({ "input": { "fromWalletId": from, "toWalletId": to, "amount": amount, "idempotencyKey": key } }),
        )
        .await;
    data(&response)["previewTransfer"].clone()
}

fn refused(preview: &Value) -> &str {
    assert_eq!(preview["ok"], false, "{preview}");
    assert!(preview["message"].is_string(), "{preview}");
    preview["code"].as_str().unwrap_or_default()
}

async fn state(app: &TestApp, wallet: &str) -> Value {
    data(
        &app.run(Some(OPERATOR), "Wallet", json!({ "id": wallet }))
            .await,
    )["wallet"]
        .clone()
}

async fn a_preview_meets_the_checks_a_transfer_would_and_writes_nothing(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let carol = app.create_client("Carol").await;
    data(&app.deposit(&alice.wallet, "50.00").await);
    let before = state(&app, &alice.wallet).await;
    let mine = |amount: &'static str, to: &'static str| {
        let (app, alice) = (&app, &alice);
        let to = match to {
            "bob" => bob.wallet.clone(),
            _ => carol.wallet.clone(),
        };
        async move { preview(app, Some(&alice.token), &alice.wallet, &to, amount, None).await }
    };
    let ok = mine("20.00", "bob").await;
    assert_eq!(
        ok,
        json!({ "ok": true, "code": null, "message": null, "availableBalanceAfter": "30.00" })
    );
    assert_eq!(refused(&mine("50.01", "bob").await), "INSUFFICIENT_FUNDS");
    // Someone else's wallet, no token, itself, nobody.
    let bobs: &TestClient = &bob;
    let forbidden = preview(
        &app,
        Some(&bobs.token),
        &alice.wallet,
        &bob.wallet,
        "1.00",
        None,
    )
    .await;
    assert_eq!(refused(&forbidden), "FORBIDDEN");
    let anonymous = preview(&app, None, &alice.wallet, &bob.wallet, "1.00", None).await;
    assert_eq!(refused(&anonymous), "UNAUTHENTICATED");
    let same = preview(
        &app,
        Some(&alice.token),
        &alice.wallet,
        &alice.wallet,
        "1.00",
        None,
    )
    .await;
    assert_eq!(refused(&same), "SAME_WALLET");
    let nobody = preview(
        &app,
        Some(&alice.token),
        &alice.wallet,
        "00000000-0000-7000-8000-000000000000",
        "1.00",
        None,
    )
    .await;
    assert_eq!(refused(&nobody), "NOT_FOUND");
    let bad = preview(
        &app,
        Some(&alice.token),
        &alice.wallet,
        &bob.wallet,
        "0.001",
        None,
    )
    .await;
    assert_eq!(refused(&bad), "INVALID_INPUT");
    // The payee's balance limit.
    app.set_balance(&carol.wallet, 100_000_000_000_000).await;
    assert_eq!(
        refused(&mine("1.00", "carol").await),
        "BALANCE_LIMIT_EXCEEDED"
    );
    // Limits, then status, in the transfer's order.
    let limited = app
        .gql(
            Some(OPERATOR),
            "mutation($input: SetWalletLimitsInput!) { setWalletLimits(input: $input) { wallet { id } } }",
            json!({ "input": { "walletId": alice.wallet, "maxTransferAmount": "10.00" } }),
        )
        .await;
    data(&limited);
    assert_eq!(refused(&mine("20.00", "bob").await), "LIMIT_EXCEEDED");
    let frozen = app
        .gql(
            Some(OPERATOR),
            "mutation($input: SetWalletStatusInput!) { setWalletStatus(input: $input) { wallet { id } } }",
            json!({ "input": { "walletId": alice.wallet, "status": "FROZEN", "reason": "check" } }),
        )
        .await;
    data(&frozen);
    assert_eq!(refused(&mine("20.00", "bob").await), "WALLET_FROZEN");
    // Nothing was written: no row, no limit used.
    let after = state(&app, &alice.wallet).await;
    assert_eq!(after["balance"], before["balance"]);
    assert_eq!(after["operationCount"], before["operationCount"]);
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM transfer").await, 0);
}

async fn a_used_key_previews_its_stored_result(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "50.00").await);
    let k = key();
    data(
        &app.transfer_with(&alice, &bob.wallet, "20.00", Some(&k))
            .await,
    );
    data(&app.transfer(&alice, &bob.wallet, "5.00").await);
    // As the first use left it (30.00), not as the wallet is now (25.00).
    let again = preview(
        &app,
        Some(&alice.token),
        &alice.wallet,
        &bob.wallet,
        "20.00",
        Some(&k),
    )
    .await;
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(again["availableBalanceAfter"], "30.00");
    let other = preview(
        &app,
        Some(&alice.token),
        &alice.wallet,
        &bob.wallet,
        "21.00",
        Some(&k),
    )
    .await;
    assert_eq!(refused(&other), "IDEMPOTENCY_KEY_REUSED");
    // A fresh key previews against now; nothing was claimed by previewing.
    let fresh = key();
    let now = preview(
        &app,
        Some(&alice.token),
        &alice.wallet,
        &bob.wallet,
        "20.00",
        Some(&fresh),
    )
    .await;
    assert_eq!(now["availableBalanceAfter"], "5.00");
    data(
        &app.transfer_with(&alice, &bob.wallet, "1.00", Some(&fresh))
            .await,
    );
    assert_eq!(app.balance(&alice.wallet).await, "24.00");
}

both_backends!(
    a_preview_meets_the_checks_a_transfer_would_and_writes_nothing,
    a_used_key_previews_its_stored_result,
);
