//! Holds, captures, voids, expiry, refunds, withdrawals and transfer
//! batches, through HTTP on both backends.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, TestClient, data, error_code, text};

pub(crate) fn key() -> String {
    Uuid::now_v7().to_string()
}

pub(crate) async fn authorize(
    app: &TestApp,
    payer: &TestClient,
    payee: &str,
    amount: &str,
    extra: Value,
) -> Value {
    let mut input = json!({ "fromWalletId": payer.wallet, "toWalletId": payee, "amount": amount,
        "idempotencyKey": key() });
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        input.extend(extra.clone());
    }
    app.run(
        Some(&payer.token),
        "AuthorizeTransfer",
        json!({ "input": input }),
    )
    .await
}

/// Captures (`verb` = "captureTransfer") or voids ("voidTransfer").
pub(crate) async fn end(app: &TestApp, token: &str, verb: &str, input: Value) -> Value {
    let operation = if verb == "captureTransfer" {
        "CaptureTransfer"
    } else {
        "VoidTransfer"
    };
    app.run(Some(token), operation, json!({ "input": input }))
        .await
}

async fn refund(app: &TestApp, token: &str, input: Value) -> Value {
    app.run(Some(token), "RefundTransfer", json!({ "input": input }))
        .await
}

/// balance, heldBalance, availableBalance (as the operator sees them).
async fn balances(app: &TestApp, wallet: &str) -> (String, String, String) {
    let response = app
        .run(Some(OPERATOR), "Wallet", json!({ "id": wallet }))
        .await;
    let w = &data(&response)["wallet"];
    (
        text(&w["balance"]),
        text(&w["heldBalance"]),
        text(&w["availableBalance"]),
    )
}

/// A wallet's history, oldest first: (kind, amount, balanceAfter, availableBalanceAfter).
async fn history(app: &TestApp, wallet: &str) -> Vec<(String, String, String, String)> {
    let response = app
        .run(
            Some(OPERATOR),
            "Operations",
            json!({ "walletId": wallet, "first": 100 }),
        )
        .await;
    let mut rows: Vec<_> = data(&response)["operations"]["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    (
                        text(&n["kind"]),
                        text(&n["amount"]),
                        text(&n["balanceAfter"]),
                        text(&n["availableBalanceAfter"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    rows.reverse();
    rows
}

fn row(kind: &str, amount: &str, after: &str, available: &str) -> (String, String, String, String) {
    (kind.into(), amount.into(), after.into(), available.into())
}

async fn pair(app: &TestApp, funds: &str) -> (TestClient, TestClient) {
    let payer = app.create_client("Payer").await;
    let payee = app.create_client("Payee").await;
    data(&app.deposit(&payer.wallet, funds).await);
    (payer, payee)
}

async fn a_hold_is_captured_in_part(app: TestApp) {
    let (payer, payee) = pair(&app, "100.00").await;
    let held = authorize(
        &app,
        &payer,
        &payee.wallet,
        "40.00",
        json!({ "description": "hotel" }),
    )
    .await;
    let held = &data(&held)["authorizeTransfer"];
    assert_eq!(held["transfer"]["status"], "PENDING");
    assert_eq!(held["transfer"]["capturedAmount"], Value::Null);
    assert_eq!(held["transfer"]["settledAt"], Value::Null);
    assert!(held["transfer"]["expiresAt"].is_string());
    assert_eq!(held["fromWallet"]["availableBalance"], "60.00");
    let id = text(&held["transfer"]["id"]);
    assert_eq!(
        balances(&app, &payer.wallet).await,
        ("100.00".into(), "40.00".into(), "60.00".into())
    );

    // The payee sees what it may capture; the payer what it promised.
    for client in [&payer, &payee] {
        let pending = app
            .gql(
                Some(&client.token),
                "query($w: UUID!) { wallet(id: $w) { pendingTransfers(first: 10) { nodes { id amount } } } }",
                json!({ "w": client.wallet }),
            )
            .await;
        assert_eq!(
            data(&pending)["wallet"]["pendingTransfers"]["nodes"][0]["id"],
            id.as_str()
        );
    }
    // Held money cannot be spent twice.
    assert_eq!(
        error_code(&app.transfer(&payer, &payee.wallet, "60.01").await),
        "INSUFFICIENT_FUNDS"
    );
    // The payer may not capture its own hold; a stranger cannot even see it.
    let stranger = app.create_client("Stranger").await;
    let input = json!({ "transferId": id, "amount": "25.50", "idempotencyKey": key() });
    assert_eq!(
        error_code(&end(&app, &payer.token, "captureTransfer", input.clone()).await),
        "FORBIDDEN"
    );
    assert_eq!(
        error_code(&end(&app, &stranger.token, "captureTransfer", input.clone()).await),
        "FORBIDDEN"
    );
    let lookup = "query($id: UUID!) { transfer(id: $id) { id status } }";
    assert_eq!(
        error_code(
            &app.gql(Some(&stranger.token), lookup, json!({ "id": id }))
                .await
        ),
        "FORBIDDEN"
    );
    let too_much = json!({ "transferId": id, "amount": "40.01", "idempotencyKey": key() });
    assert_eq!(
        error_code(&end(&app, &payee.token, "captureTransfer", too_much).await),
        "INVALID_INPUT"
    );

    let captured = end(&app, &payee.token, "captureTransfer", input.clone()).await;
    let captured = &data(&captured)["captureTransfer"];
    assert_eq!(captured["transfer"]["status"], "POSTED");
    assert_eq!(captured["transfer"]["amount"], "40.00");
    assert_eq!(captured["transfer"]["capturedAmount"], "25.50");
    assert!(captured["transfer"]["settledAt"].is_string());
    assert_eq!(captured["toWallet"]["balance"], "25.50");
    assert_eq!(captured["fromWallet"]["walletId"], payer.wallet.as_str());
    // A retry with the same key answers the same; a second capture is refused.
    let again = end(&app, &payee.token, "captureTransfer", input).await;
    assert_eq!(
        data(&again)["captureTransfer"]["transfer"]["capturedAmount"],
        "25.50"
    );
    let second = end(
        &app,
        &payee.token,
        "captureTransfer",
        json!({ "transferId": id, "idempotencyKey": key() }),
    )
    .await;
    assert_eq!(error_code(&second), "TRANSFER_NOT_PENDING");
    assert_eq!(second["errors"][0]["extensions"]["status"], "POSTED");

    assert_eq!(
        balances(&app, &payer.wallet).await,
        ("74.50".into(), "0.00".into(), "74.50".into())
    );
    assert_eq!(
        history(&app, &payer.wallet).await,
        [
            row("DEPOSIT", "100.00", "100.00", "100.00"),
            row("HOLD", "40.00", "100.00", "60.00"),
            row("HOLD_RELEASE", "40.00", "100.00", "100.00"),
            row("TRANSFER_OUT", "25.50", "74.50", "74.50"),
        ]
    );
    // The payee's side: the hold for it, its end, then the money.
    assert_eq!(
        history(&app, &payee.wallet).await,
        [
            row("INCOMING_HOLD", "40.00", "0.00", "0.00"),
            row("INCOMING_HOLD_RELEASE", "40.00", "0.00", "0.00"),
            row("TRANSFER_IN", "25.50", "25.50", "25.50"),
        ]
    );
    let seen = app
        .gql(Some(&payee.token), lookup, json!({ "id": id }))
        .await;
    assert_eq!(data(&seen)["transfer"]["status"], "POSTED");
    app.assert_ledger_consistent().await;
}

async fn a_void_releases_and_ends_the_hold(app: TestApp) {
    let (payer, payee) = pair(&app, "10.00").await;
    let held = authorize(&app, &payer, &payee.wallet, "10.00", json!({})).await;
    let id = text(&data(&held)["authorizeTransfer"]["transfer"]["id"]);
    assert_eq!(
        error_code(&authorize(&app, &payer, &payee.wallet, "0.01", json!({})).await),
        "INSUFFICIENT_FUNDS"
    );
    // The operator may void any hold.
    let voided = end(
        &app,
        OPERATOR,
        "voidTransfer",
        json!({ "transferId": id, "idempotencyKey": key() }),
    )
    .await;
    let voided = &data(&voided)["voidTransfer"]["transfer"];
    assert_eq!(voided["status"], "VOIDED");
    assert_eq!(voided["capturedAmount"], Value::Null);
    assert!(voided["settledAt"].is_string());
    let late = end(
        &app,
        &payee.token,
        "captureTransfer",
        json!({ "transferId": id, "idempotencyKey": key() }),
    )
    .await;
    assert_eq!(error_code(&late), "TRANSFER_NOT_PENDING");
    assert_eq!(late["errors"][0]["extensions"]["status"], "VOIDED");
    assert_eq!(
        balances(&app, &payer.wallet).await,
        ("10.00".into(), "0.00".into(), "10.00".into())
    );
    assert_eq!(balances(&app, &payee.wallet).await.0, "0.00");
    // A key refused with its request is free again (here the operator's).
    let shared = key();
    let first = end(
        &app,
        OPERATOR,
        "voidTransfer",
        json!({ "transferId": id, "idempotencyKey": shared }),
    )
    .await;
    assert_eq!(error_code(&first), "TRANSFER_NOT_PENDING");
    let again = end(
        &app,
        OPERATOR,
        "voidTransfer",
        json!({ "transferId": id, "idempotencyKey": shared }),
    )
    .await;
    assert_eq!(error_code(&again), "TRANSFER_NOT_PENDING");
    // A caller's key stands for one verb on one target: the same request
    // again answers the same; another verb or another transfer is refused.
    let held = authorize(&app, &payer, &payee.wallet, "1.00", json!({})).await;
    let other = text(&data(&held)["authorizeTransfer"]["transfer"]["id"]);
    let capture = json!({ "transferId": other, "idempotencyKey": shared });
    let captured = end(&app, &payee.token, "captureTransfer", capture.clone()).await;
    let retried = end(&app, &payee.token, "captureTransfer", capture).await;
    assert_eq!(
        data(&retried)["captureTransfer"]["transfer"],
        data(&captured)["captureTransfer"]["transfer"]
    );
    for (verb, target) in [("voidTransfer", &other), ("captureTransfer", &id)] {
        let input = json!({ "transferId": target, "idempotencyKey": shared });
        let reused = end(&app, &payee.token, verb, input).await;
        assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED", "{verb}");
    }
    let unknown = end(
        &app,
        OPERATOR,
        "voidTransfer",
        json!({ "transferId": key(), "idempotencyKey": key() }),
    )
    .await;
    assert_eq!(error_code(&unknown), "NOT_FOUND");
    app.assert_ledger_consistent().await;
}

async fn holds_expire_on_their_deadline(app: TestApp) {
    let (payer, payee) = pair(&app, "5.00").await;
    let past = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let far = chrono::Utc::now() + chrono::TimeDelta::days(31);
    for at in [past, far] {
        let refused = authorize(
            &app,
            &payer,
            &payee.wallet,
            "1.00",
            json!({ "expiresAt": at.to_rfc3339() }),
        )
        .await;
        assert_eq!(error_code(&refused), "INVALID_INPUT");
    }
    let soon = chrono::Utc::now() + chrono::TimeDelta::milliseconds(800);
    let held = authorize(
        &app,
        &payer,
        &payee.wallet,
        "5.00",
        json!({ "expiresAt": soon.to_rfc3339() }),
    )
    .await;
    let id = text(&data(&held)["authorizeTransfer"]["transfer"]["id"]);
    // Within seconds of the deadline, the sweeper has expired and released it.
    let lookup = "query($id: UUID!) { transfer(id: $id) { status settledAt } }";
    let mut status = String::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let seen = app
            .gql(Some(&payer.token), lookup, json!({ "id": id }))
            .await;
        status = text(&data(&seen)["transfer"]["status"]);
        if status == "EXPIRED" {
            break;
        }
    }
    assert_eq!(status, "EXPIRED");
    let late = end(
        &app,
        &payee.token,
        "captureTransfer",
        json!({ "transferId": id, "idempotencyKey": key() }),
    )
    .await;
    assert_eq!(error_code(&late), "TRANSFER_NOT_PENDING");
    assert_eq!(late["errors"][0]["extensions"]["status"], "EXPIRED");
    assert_eq!(
        balances(&app, &payer.wallet).await,
        ("5.00".into(), "0.00".into(), "5.00".into())
    );
    let kinds: Vec<String> = history(&app, &payer.wallet)
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(kinds, ["DEPOSIT", "HOLD", "HOLD_RELEASE"]);
    app.assert_ledger_consistent().await;
}

async fn refunds_never_exceed_the_payment(app: TestApp) {
    let (payer, payee) = pair(&app, "50.00").await;
    let paid = app.transfer(&payer, &payee.wallet, "50.00").await;
    let id = text(&data(&paid)["transfer"]["transfer"]["id"]);
    // Only the payee (or the operator) refunds.
    let by_payer = refund(
        &app,
        &payer.token,
        json!({ "transferId": id, "idempotencyKey": key() }),
    )
    .await;
    assert_eq!(error_code(&by_payer), "FORBIDDEN");

    let part = refund(&app, &payee.token, json!({ "transferId": id, "amount": "20.00", "idempotencyKey": key(), "description": "damaged" })).await;
    let part = &data(&part)["refundTransfer"];
    assert_eq!(part["refund"]["kind"], "REFUND");
    assert_eq!(part["refund"]["status"], "POSTED");
    assert_eq!(part["refund"]["amount"], "20.00");
    assert_eq!(part["refund"]["refundOf"]["id"], id.as_str());
    assert_eq!(part["refund"]["fromWalletId"], payee.wallet.as_str());
    assert_eq!(part["transfer"]["refundedAmount"], "20.00");
    assert_eq!(part["fromWallet"]["balance"], "30.00");
    assert_eq!(part["toWallet"]["walletId"], payer.wallet.as_str());
    // A refund is not refundable.
    let refund_id = text(&part["refund"]["id"]);
    let of_refund = refund(
        &app,
        OPERATOR,
        json!({ "transferId": refund_id, "idempotencyKey": key() }),
    )
    .await;
    assert_eq!(error_code(&of_refund), "TRANSFER_NOT_REFUNDABLE");
    let over = refund(
        &app,
        &payee.token,
        json!({ "transferId": id, "amount": "30.01", "idempotencyKey": key() }),
    )
    .await;
    assert_eq!(error_code(&over), "REFUND_EXCEEDS_TRANSFER");
    // What remains, by leaving the amount out.
    let rest = refund(
        &app,
        OPERATOR,
        json!({ "transferId": id, "idempotencyKey": key() }),
    )
    .await;
    let rest = &data(&rest)["refundTransfer"];
    assert_eq!(rest["refund"]["amount"], "30.00");
    assert_eq!(rest["transfer"]["refundedAmount"], "50.00");
    assert_eq!(
        rest["transfer"]["refunds"].as_array().map(Vec::len),
        Some(2)
    );
    let none_left = refund(
        &app,
        &payee.token,
        json!({ "transferId": id, "idempotencyKey": key() }),
    )
    .await;
    assert_eq!(error_code(&none_left), "REFUND_EXCEEDS_TRANSFER");
    // A pending transfer is not refundable either; a refund needs funds.
    let held = authorize(&app, &payer, &payee.wallet, "10.00", json!({})).await;
    let pending = text(&data(&held)["authorizeTransfer"]["transfer"]["id"]);
    let early = refund(
        &app,
        OPERATOR,
        json!({ "transferId": pending, "idempotencyKey": key() }),
    )
    .await;
    assert_eq!(error_code(&early), "TRANSFER_NOT_REFUNDABLE");
    let paid = app.transfer(&payer, &payee.wallet, "5.00").await;
    let small = text(&data(&paid)["transfer"]["transfer"]["id"]);
    data(&app.transfer(&payee, &payer.wallet, "5.00").await);
    let broke = refund(
        &app,
        &payee.token,
        json!({ "transferId": small, "idempotencyKey": key() }),
    )
    .await;
    assert_eq!(error_code(&broke), "INSUFFICIENT_FUNDS");
    assert_eq!(balances(&app, &payee.wallet).await.0, "0.00");
    app.assert_ledger_consistent().await;
}

async fn withdrawals_are_the_operators_and_spend_the_available_balance(app: TestApp) {
    let (payer, payee) = pair(&app, "30.00").await;
    data(&authorize(&app, &payer, &payee.wallet, "10.00", json!({})).await);
    let withdraw = |token: &'static str, amount: &'static str| {
        let input = json!({ "walletId": payer.wallet, "amount": amount, "idempotencyKey": key(), "description": "to bank" });
        let app = &app;
        async move {
            app.run(Some(token), "Withdraw", json!({ "input": input }))
                .await
        }
    };
    assert_eq!(
        error_code(&withdraw("not-a-token", "1.00").await),
        "UNAUTHENTICATED"
    );
    let by_client = app
        .run(
            Some(&payer.token),
            "Withdraw",
            json!({ "input": { "walletId": payer.wallet, "amount": "1.00", "idempotencyKey": key() } }),
        )
        .await;
    assert_eq!(error_code(&by_client), "FORBIDDEN");
    assert_eq!(
        error_code(&withdraw(OPERATOR, "20.01").await),
        "INSUFFICIENT_FUNDS"
    );
    let done = withdraw(OPERATOR, "20.00").await;
    let done = &data(&done)["withdraw"];
    assert_eq!(done["operation"]["kind"], "WITHDRAWAL");
    assert_eq!(done["operation"]["balanceAfter"], "10.00");
    assert_eq!(done["operation"]["availableBalanceAfter"], "0.00");
    assert_eq!(done["operation"]["description"], "to bank");
    assert_eq!(done["wallet"]["availableBalance"], "0.00");
    app.assert_ledger_consistent().await;
}

async fn transfer_batch(
    app: &TestApp,
    payer: &TestClient,
    items: Vec<Value>,
    atomic: bool,
) -> Value {
    app.run(
        Some(&payer.token),
        "TransferBatch",
        json!({ "input": { "transfers": items, "atomic": atomic } }),
    )
    .await
}

fn item(payer: &TestClient, to: &str, amount: &str, key: Option<&str>) -> Value {
    json!({ "fromWalletId": payer.wallet, "toWalletId": to, "amount": amount, "idempotencyKey": key })
}

async fn batches_settle_item_by_item_or_all_at_once(app: TestApp) {
    let (payer, payee) = pair(&app, "10.00").await;
    let first_key = key();
    let items = vec![
        item(&payer, &payee.wallet, "4.00", Some(&first_key)),
        item(&payer, &payee.wallet, "7.00", None),
        item(&payer, &payer.wallet, "1.00", None),
        item(&payer, &payee.wallet, "0.001", None),
        item(&payer, &payee.wallet, "6.00", None),
    ];
    let loose = transfer_batch(&app, &payer, items, false).await;
    let loose = &data(&loose)["transferBatch"];
    let codes: Vec<Value> = loose["results"]
        .as_array()
        .map(|r| r.iter().map(|x| x["code"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        codes,
        [
            Value::Null,
            json!("INSUFFICIENT_FUNDS"),
            json!("SAME_WALLET"),
            json!("INVALID_INPUT"),
            Value::Null
        ]
    );
    let indexes: Vec<Value> = loose["results"]
        .as_array()
        .map(|r| r.iter().map(|x| x["index"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(indexes, [0, 1, 2, 3, 4]);
    assert_eq!(loose["fromWallet"]["balance"], "0.00");
    let first_id = loose["results"][0]["transfer"]["id"].clone();

    // Atomic: the refusal of item 2 leaves everything as it was.
    data(&app.deposit(&payer.wallet, "5.00").await);
    let items = vec![
        item(&payer, &payee.wallet, "2.00", None),
        item(&payer, &payee.wallet, "2.00", None),
        item(&payer, &payee.wallet, "2.00", None),
    ];
    let refused = transfer_batch(&app, &payer, items, true).await;
    assert_eq!(error_code(&refused), "INSUFFICIENT_FUNDS");
    assert_eq!(refused["errors"][0]["extensions"]["index"], 2);
    assert_eq!(balances(&app, &payer.wallet).await.0, "5.00");
    // An item whose key was used returns its first result, in both modes.
    let items = vec![
        item(&payer, &payee.wallet, "4.00", Some(&first_key)),
        item(&payer, &payee.wallet, "2.50", None),
        item(&payer, &payee.wallet, "2.50", None),
    ];
    let whole = transfer_batch(&app, &payer, items, true).await;
    let whole = &data(&whole)["transferBatch"];
    assert_eq!(whole["results"][0]["transfer"]["id"], first_id);
    assert_eq!(whole["fromWallet"]["balance"], "0.00");
    // Keys must differ within a batch; the operator has no wallet to pay from.
    let dup = vec![
        item(&payer, &payee.wallet, "1", Some("k")),
        item(&payer, &payee.wallet, "1", Some("k")),
    ];
    let dup = transfer_batch(&app, &payer, dup, true).await;
    assert_eq!(error_code(&dup), "INVALID_INPUT");
    assert_eq!(dup["errors"][0]["extensions"]["index"], 1);
    let too_many: Vec<Value> = (0..1_001)
        .map(|_| item(&payer, &payee.wallet, "0.01", None))
        .collect();
    // Past 1,000 entries the request is refused before anything runs.
    assert_eq!(
        error_code(&transfer_batch(&app, &payer, too_many, false).await),
        "TOO_MANY_MUTATIONS"
    );
    app.assert_ledger_consistent().await;
}

async fn one_transfer_among_racing_captures_voids_and_expiry(app: TestApp) {
    let (payer, payee) = pair(&app, "100.00").await;
    for round in 0..4 {
        let soon = chrono::Utc::now() + chrono::TimeDelta::milliseconds(300 + 100 * round);
        let held = authorize(
            &app,
            &payer,
            &payee.wallet,
            "10.00",
            json!({ "expiresAt": soon.to_rfc3339() }),
        )
        .await;
        let id = text(&data(&held)["authorizeTransfer"]["transfer"]["id"]);
        let (capture, void) = tokio::join!(
            async {
                tokio::time::sleep(std::time::Duration::from_millis(280)).await;
                end(
                    &app,
                    &payee.token,
                    "captureTransfer",
                    json!({ "transferId": id, "idempotencyKey": key() }),
                )
                .await
            },
            async {
                tokio::time::sleep(std::time::Duration::from_millis(280)).await;
                end(
                    &app,
                    OPERATOR,
                    "voidTransfer",
                    json!({ "transferId": id, "idempotencyKey": key() }),
                )
                .await
            }
        );
        let wins = [&capture, &void]
            .iter()
            .filter(|r| r.get("errors").is_none())
            .count();
        assert!(wins <= 1, "{capture} {void}");
        for lost in [&capture, &void]
            .iter()
            .filter(|r| r.get("errors").is_some())
        {
            assert_eq!(error_code(lost), "TRANSFER_NOT_PENDING", "{lost}");
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert_eq!(balances(&app, &payer.wallet).await.1, "0.00");
    app.assert_ledger_consistent().await;
}

async fn concurrent_partial_refunds_stay_within_the_payment(app: TestApp) {
    let (payer, payee) = pair(&app, "50.00").await;
    let paid = app.transfer(&payer, &payee.wallet, "50.00").await;
    let id = text(&data(&paid)["transfer"]["transfer"]["id"]);
    let attempts = (0..12).map(|_| {
        refund(
            &app,
            &payee.token,
            json!({ "transferId": id, "amount": "10.00", "idempotencyKey": key() }),
        )
    });
    let results = futures_util::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.get("errors").is_none()).count();
    assert_eq!(ok, 5);
    assert!(
        results
            .iter()
            .filter(|r| r.get("errors").is_some())
            .all(|r| error_code(r) == "REFUND_EXCEEDS_TRANSFER")
    );
    assert_eq!(balances(&app, &payer.wallet).await.0, "50.00");
    app.assert_ledger_consistent().await;
}

/// Open holds page by deadline without repeating or skipping one.
async fn pending_transfers_page_without_repeats(app: TestApp) {
    let (payer, payee) = pair(&app, "10.00").await;
    let mut held = Vec::new();
    for i in 0..5 {
        let extra = if i % 2 == 0 {
            json!({})
        } else {
            json!({ "expiresAt": (chrono::Utc::now() + chrono::TimeDelta::days(1)).to_rfc3339() })
        };
        let response = authorize(&app, &payer, &payee.wallet, "1.00", extra).await;
        held.push(text(
            &data(&response)["authorizeTransfer"]["transfer"]["id"],
        ));
    }
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = app
            .gql(
                Some(&payee.token),
                "query($w: UUID!, $after: String) { wallet(id: $w) { pendingTransfers(first: 2, after: $after) {
                    nodes { id expiresAt } pageInfo { hasNextPage endCursor } } } }",
                json!({ "w": payee.wallet, "after": after }),
            )
            .await;
        let page = &data(&page)["wallet"]["pendingTransfers"];
        for node in page["nodes"].as_array().into_iter().flatten() {
            seen.push((text(&node["expiresAt"]), text(&node["id"])));
        }
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "soonest deadline first");
    let mut ids: Vec<String> = seen.into_iter().map(|(_, id)| id).collect();
    ids.sort();
    held.sort();
    assert_eq!(ids, held, "each open hold once");
}

both_backends!(
    pending_transfers_page_without_repeats,
    a_hold_is_captured_in_part,
    a_void_releases_and_ends_the_hold,
    holds_expire_on_their_deadline,
    refunds_never_exceed_the_payment,
    withdrawals_are_the_operators_and_spend_the_available_balance,
    batches_settle_item_by_item_or_all_at_once,
    one_transfer_among_racing_captures_voids_and_expiry,
    concurrent_partial_refunds_stay_within_the_payment,
);
