//! History at a point in time: `Wallet.balanceAt`.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data, error_code, text};

async fn balance_at(app: &TestApp, wallet: &str, at: &str) -> String {
    let response = app
        .gql(
            Some(OPERATOR),
            "query($w: UUID!, $at: DateTime!) { wallet(id: $w) { balanceAt(at: $at) } }",
            json!({ "w": wallet, "at": at }),
        )
        .await;
    text(&data(&response)["wallet"]["balanceAt"])
}

fn shifted(at: &str, micros: i64) -> String {
    let time: DateTime<Utc> = at.parse().unwrap_or_else(|e| panic!("{at}: {e}"));
    (time + TimeDelta::microseconds(micros)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// 10.00 in, 3.00 out, 5.00 in: the balance before, at and just after each
/// operation, and the net of a window equal to the difference of its ends.
async fn the_balance_at_any_moment(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    data(&app.transfer(&alice, &bob.wallet, "3.00").await);
    data(&app.deposit(&alice.wallet, "5.00").await);
    let history = data(
        &app.gql(
            Some(OPERATOR),
            "query($w: UUID!) { wallet(id: $w) { operations(last: 10) { nodes { createdAt } } } }",
            json!({ "w": alice.wallet }),
        )
        .await,
    )["wallet"]["operations"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Newest first.
    let times: Vec<String> = history
        .iter()
        .rev()
        .map(|n| text(&n["createdAt"]))
        .collect();
    assert_eq!(times.len(), 3);
    let expected = [
        ("0001-01-01T00:00:00Z".to_owned(), "0.00"),
        (times[0].clone(), "0.00"),
        (shifted(&times[0], 1), "10.00"),
        (times[1].clone(), "10.00"),
        (shifted(&times[1], 1), "7.00"),
        (times[2].clone(), "7.00"),
        (shifted(&times[2], 1), "12.00"),
        ("9999-12-31T23:59:59Z".to_owned(), "12.00"),
    ];
    for (at, balance) in expected {
        assert_eq!(
            balance_at(&app, &alice.wallet, &at).await,
            balance,
            "at {at}"
        );
    }

    // balanceAt(to) - balanceAt(from) is the net of the window [from, to).
    let (from, to) = (times[1].clone(), shifted(&times[2], 1));
    let window = data(
        &app.gql(
            Some(OPERATOR),
            "query($w: UUID!, $f: DateTime!, $t: DateTime!) { wallet(id: $w) {
                operations(first: 10, filter: { from: $f, to: $t }) { nodes { kind amount } } } }",
            json!({ "w": alice.wallet, "f": from, "t": to }),
        )
        .await,
    )["wallet"]["operations"]["nodes"]
        .clone();
    let net: f64 = window
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n: &Value| {
                    let amount: f64 = text(&n["amount"]).parse().unwrap_or(0.0);
                    if n["kind"] == "TRANSFER_OUT" {
                        -amount
                    } else {
                        amount
                    }
                })
                .sum()
        })
        .unwrap_or(0.0);
    assert_eq!(net, 2.0, "{window}");
    let ends = (
        balance_at(&app, &alice.wallet, &from).await,
        balance_at(&app, &alice.wallet, &to).await,
    );
    assert_eq!(ends, ("10.00".to_owned(), "12.00".to_owned()));

    // Someone else's wallet cannot be asked; a bad time is refused.
    let theirs = app
        .gql(
            Some(&bob.token),
            "query($w: UUID!) { wallet(id: $w) { balanceAt(at: \"2026-01-01T00:00:00Z\") } }",
            json!({ "w": alice.wallet }),
        )
        .await;
    assert_eq!(error_code(&theirs), "FORBIDDEN");
    let bad = app
        .gql(
            Some(OPERATOR),
            "query($w: UUID!) { wallet(id: $w) { balanceAt(at: \"yesterday\") } }",
            json!({ "w": alice.wallet }),
        )
        .await;
    assert_eq!(error_code(&bad), "INVALID_INPUT");
}

both_backends!(the_balance_at_any_moment);
