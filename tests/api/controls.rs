//! The operator's controls (issue 20): freezing and closing wallets, and
//! limits on what leaves them, enforced under the wallet's lock, through
//! HTTP on both backends and on two servers.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, TestClient, data, error_code, post_to, text};
use crate::verbs::{authorize, end, key};

const SET_STATUS: &str = "mutation($input: SetWalletStatusInput!) {
    setWalletStatus(input: $input) { wallet { id status balance } } }";
const SET_LIMITS: &str = "mutation($input: SetWalletLimitsInput!) {
    setWalletLimits(input: $input) { wallet { limits { maxTransferAmount dailyOutgoingAmount
      dailyOutgoingCount outgoingToday outgoingCountToday } } } }";
const WALLET: &str = "query($id: UUID!) { wallet(id: $id) { status balance availableBalance
    statusChanges { status reason changedAt }
    limits { maxTransferAmount dailyOutgoingAmount dailyOutgoingCount outgoingToday outgoingCountToday } } }";
const BATCH: &str = "mutation($input: TransferBatchInput!) { transferBatch(input: $input) { results { code transfer { amount } } } }";

async fn set_status(app: &TestApp, token: &str, wallet: &str, status: &str, reason: &str) -> Value {
    app.gql(
        Some(token),
        SET_STATUS,
        json!({ "input": { "walletId": wallet, "status": status, "reason": reason } }),
    )
    .await
}

async fn set_limits(app: &TestApp, wallet: &str, limits: Value) -> Value {
    let mut input = json!({ "walletId": wallet });
    if let (Some(input), Some(limits)) = (input.as_object_mut(), limits.as_object()) {
        input.extend(limits.clone());
    }
    app.gql(Some(OPERATOR), SET_LIMITS, json!({ "input": input }))
        .await
}

async fn wallet(app: &TestApp, id: &str) -> Value {
    data(&app.gql(Some(OPERATOR), WALLET, json!({ "id": id })).await)["wallet"].clone()
}

async fn withdraw(app: &TestApp, wallet: &str, amount: &str) -> Value {
    app.run(
        Some(OPERATOR),
        "Withdraw",
        json!({ "input": { "walletId": wallet, "amount": amount, "idempotencyKey": key() } }),
    )
    .await
}

async fn refund(app: &TestApp, token: &str, transfer: &str, amount: &str) -> Value {
    app.run(
        Some(token),
        "RefundTransfer",
        json!({ "input": { "transferId": transfer, "amount": amount, "idempotencyKey": key() } }),
    )
    .await
}

async fn batch(app: &TestApp, payer: &TestClient, payee: &str, amounts: &[&str]) -> Value {
    let items: Vec<Value> = amounts
        .iter()
        .map(|a| json!({ "fromWalletId": payer.wallet, "toWalletId": payee, "amount": a }))
        .collect();
    let response = app
        .gql(
            Some(&payer.token),
            BATCH,
            json!({ "input": { "atomic": false, "transfers": items } }),
        )
        .await;
    data(&response)["transferBatch"]["results"].clone()
}

async fn a_frozen_wallet_lets_nothing_out_and_still_receives(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "100.00").await);
    data(&app.deposit(&bob.wallet, "100.00").await);
    // Before the freeze: a hold by Alice for Bob, one by Bob for Alice, and
    // a payment to Alice she could refund.
    let hold = authorize(&app, &alice, &bob.wallet, "10.00", json!({})).await;
    let hold = text(&data(&hold)["authorizeTransfer"]["transfer"]["id"]);
    let second = authorize(&app, &alice, &bob.wallet, "5.00", json!({})).await;
    let second = text(&data(&second)["authorizeTransfer"]["transfer"]["id"]);
    let third = authorize(&app, &alice, &bob.wallet, "4.00", json!({})).await;
    let third = text(&data(&third)["authorizeTransfer"]["transfer"]["id"]);
    let paid = app.transfer(&bob, &alice.wallet, "8.00").await;
    let paid = text(&data(&paid)["transfer"]["transfer"]["id"]);

    // Only the operator sets a status.
    let refused = set_status(&app, &alice.token, &alice.wallet, "FROZEN", "mine").await;
    assert_eq!(error_code(&refused), "FORBIDDEN");
    let frozen = set_status(&app, OPERATOR, &alice.wallet, "FROZEN", "fraud review #12").await;
    assert_eq!(
        data(&frozen)["setWalletStatus"]["wallet"]["status"],
        "FROZEN"
    );

    let before = wallet(&app, &alice.wallet).await;
    for refused in [
        app.transfer(&alice, &bob.wallet, "1.00").await,
        withdraw(&app, &alice.wallet, "1.00").await,
        authorize(&app, &alice, &bob.wallet, "1.00", json!({})).await,
        refund(&app, &alice.token, &paid, "1.00").await,
        // Bob, the payee, cannot capture a frozen payer's hold.
        end(
            &app,
            &bob.token,
            "captureTransfer",
            json!({ "transferId": hold, "idempotencyKey": key() }),
        )
        .await,
    ] {
        assert_eq!(error_code(&refused), "WALLET_FROZEN", "{refused}");
    }
    let results = batch(&app, &alice, &bob.wallet, &["1.00", "2.00"]).await;
    assert_eq!(results[0]["code"], "WALLET_FROZEN");
    assert_eq!(results[1]["code"], "WALLET_FROZEN");
    assert_eq!(wallet(&app, &alice.wallet).await, before, "nothing changed");

    // Money still arrives; the operator may capture; voids proceed.
    data(&app.transfer(&bob, &alice.wallet, "2.00").await);
    data(&app.deposit(&alice.wallet, "1.00").await);
    let captured = end(
        &app,
        OPERATOR,
        "captureTransfer",
        json!({ "transferId": hold, "idempotencyKey": key() }),
    )
    .await;
    assert_eq!(
        data(&captured)["captureTransfer"]["transfer"]["status"],
        "POSTED"
    );
    let voided = end(
        &app,
        &bob.token,
        "voidTransfer",
        json!({ "transferId": second, "idempotencyKey": key() }),
    )
    .await;
    data(&voided);
    assert_eq!(
        text(&wallet(&app, &alice.wallet).await["balance"]),
        "101.00"
    );

    // Unfrozen, everything works again, Bob's capture included.
    data(&set_status(&app, OPERATOR, &alice.wallet, "ACTIVE", "cleared").await);
    data(&app.transfer(&alice, &bob.wallet, "1.00").await);
    data(
        &end(
            &app,
            &bob.token,
            "captureTransfer",
            json!({ "transferId": third, "idempotencyKey": key() }),
        )
        .await,
    );
    // Each change is kept, newest first, with its reason; setting the
    // status it has adds nothing.
    data(&set_status(&app, OPERATOR, &alice.wallet, "ACTIVE", "again").await);
    let changes = &wallet(&app, &alice.wallet).await["statusChanges"];
    let seen: Vec<(String, String)> = changes
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (text(&c["status"]), text(&c["reason"])))
        .collect();
    assert_eq!(
        seen,
        [
            ("ACTIVE".to_owned(), "cleared".to_owned()),
            ("FROZEN".to_owned(), "fraud review #12".to_owned())
        ]
    );
    // The owner sees its status and why.
    let own = app
        .gql(
            Some(&alice.token),
            "query { me { wallet { status statusChanges(first: 1) { reason } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&own)["me"]["wallet"]["status"], "ACTIVE");
    assert_eq!(
        data(&own)["me"]["wallet"]["statusChanges"][0]["reason"],
        "cleared"
    );
    app.assert_ledger_consistent().await;
}

async fn closing_needs_an_empty_wallet_and_is_final(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "10.00").await);
    data(&app.deposit(&bob.wallet, "10.00").await);
    let blank = set_status(&app, OPERATOR, &alice.wallet, "CLOSED", " ").await;
    assert_eq!(error_code(&blank), "INVALID_INPUT");
    assert_eq!(
        blank["errors"][0]["extensions"]["field"],
        json!(["input", "reason"])
    );
    let not_empty = set_status(&app, OPERATOR, &alice.wallet, "CLOSED", "leaving").await;
    assert_eq!(error_code(&not_empty), "WALLET_NOT_EMPTY");
    // Emptied, but a hold to it is still open.
    data(&withdraw(&app, &alice.wallet, "10.00").await);
    let hold = authorize(&app, &bob, &alice.wallet, "1.00", json!({})).await;
    let hold = text(&data(&hold)["authorizeTransfer"]["transfer"]["id"]);
    let held = set_status(&app, OPERATOR, &alice.wallet, "CLOSED", "leaving").await;
    assert_eq!(error_code(&held), "WALLET_NOT_EMPTY");
    data(
        &end(
            &app,
            OPERATOR,
            "voidTransfer",
            json!({ "transferId": hold, "idempotencyKey": key() }),
        )
        .await,
    );
    let closed = set_status(&app, OPERATOR, &alice.wallet, "CLOSED", "leaving").await;
    assert_eq!(
        data(&closed)["setWalletStatus"]["wallet"]["status"],
        "CLOSED"
    );

    // Nothing moves in or out, holds to it included; final.
    for refused in [
        app.deposit(&alice.wallet, "1.00").await,
        app.transfer(&bob, &alice.wallet, "1.00").await,
        app.transfer(&alice, &bob.wallet, "1.00").await,
        authorize(&app, &bob, &alice.wallet, "1.00", json!({})).await,
        set_status(&app, OPERATOR, &alice.wallet, "ACTIVE", "back").await,
        set_status(&app, OPERATOR, &alice.wallet, "FROZEN", "back").await,
    ] {
        assert_eq!(error_code(&refused), "WALLET_CLOSED", "{refused}");
    }
    // A frozen payer and a closed payee: closed is said first.
    data(&set_status(&app, OPERATOR, &bob.wallet, "FROZEN", "review").await);
    let both = app.transfer(&bob, &alice.wallet, "1.00").await;
    assert_eq!(error_code(&both), "WALLET_CLOSED");
    assert_eq!(text(&wallet(&app, &bob.wallet).await["balance"]), "10.00");
    app.assert_ledger_consistent().await;
}

async fn limits_refuse_what_exceeds_them_in_order(app: TestApp) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "100.00").await);
    let set = set_limits(
        &app,
        &alice.wallet,
        json!({ "maxTransferAmount": "8.00", "dailyOutgoingAmount": "20.00", "dailyOutgoingCount": 4 }),
    )
    .await;
    assert_eq!(
        data(&set)["setWalletLimits"]["wallet"]["limits"],
        json!({ "maxTransferAmount": "8.00", "dailyOutgoingAmount": "20.00",
            "dailyOutgoingCount": 4, "outgoingToday": "0.00", "outgoingCountToday": 0 })
    );
    let limit_of = |response: &Value| {
        assert_eq!(error_code(response), "LIMIT_EXCEEDED", "{response}");
        let ext = &response["errors"][0]["extensions"];
        (text(&ext["limit"]), ext["remaining"].clone())
    };
    let too_big = app.transfer(&alice, &bob.wallet, "8.01").await;
    assert_eq!(
        limit_of(&too_big),
        ("MAX_TRANSFER_AMOUNT".to_owned(), json!("8.00"))
    );
    data(&app.transfer(&alice, &bob.wallet, "7.00").await);
    data(&app.transfer(&alice, &bob.wallet, "7.00").await);
    let over = app.transfer(&alice, &bob.wallet, "7.00").await;
    assert_eq!(
        limit_of(&over),
        ("DAILY_OUTGOING_AMOUNT".to_owned(), json!("6.00"))
    );
    // A non-atomic batch: a later item that still fits posts.
    let results = batch(&app, &alice, &bob.wallet, &["7.00", "5.00", "2.00"]).await;
    assert_eq!(results[0]["code"], "LIMIT_EXCEEDED");
    assert_eq!(results[1]["code"], Value::Null);
    // 2.00 more would pass 20.00.
    assert_eq!(results[2]["code"], "LIMIT_EXCEEDED");
    let limits = &wallet(&app, &alice.wallet).await["limits"];
    assert_eq!(limits["outgoingToday"], "19.00");
    assert_eq!(limits["outgoingCountToday"], 3);
    // A hold counts when authorised; its void gives amount and count back.
    let hold = authorize(&app, &alice, &bob.wallet, "1.00", json!({})).await;
    let hold = text(&data(&hold)["authorizeTransfer"]["transfer"]["id"]);
    let full = app.transfer(&alice, &bob.wallet, "0.50").await;
    assert_eq!(
        limit_of(&full),
        ("DAILY_OUTGOING_AMOUNT".to_owned(), json!("0.00"))
    );
    data(
        &end(
            &app,
            &bob.token,
            "voidTransfer",
            json!({ "transferId": hold, "idempotencyKey": key() }),
        )
        .await,
    );
    let limits = &wallet(&app, &alice.wallet).await["limits"];
    assert_eq!(limits["outgoingToday"], "19.00");
    assert_eq!(limits["outgoingCountToday"], 3);
    // A capture of part gives the rest back, the count stays.
    let hold = authorize(&app, &alice, &bob.wallet, "1.00", json!({})).await;
    let hold = text(&data(&hold)["authorizeTransfer"]["transfer"]["id"]);
    data(
        &end(
            &app,
            &bob.token,
            "captureTransfer",
            json!({ "transferId": hold, "amount": "0.25", "idempotencyKey": key() }),
        )
        .await,
    );
    let limits = &wallet(&app, &alice.wallet).await["limits"];
    assert_eq!(limits["outgoingToday"], "19.25");
    assert_eq!(limits["outgoingCountToday"], 4);
    // Withdrawals are not limited; a refund the wallet pays is.
    data(&withdraw(&app, &alice.wallet, "10.00").await);
    let paid = app.transfer(&bob, &alice.wallet, "3.00").await;
    let paid = text(&data(&paid)["transfer"]["transfer"]["id"]);
    let refused = refund(&app, OPERATOR, &paid, "0.50").await;
    assert_eq!(
        limit_of(&refused),
        ("DAILY_OUTGOING_COUNT".to_owned(), json!(0))
    );
    // Left out: unchanged; null: removed.
    let removed = set_limits(&app, &alice.wallet, json!({ "dailyOutgoingCount": null })).await;
    assert_eq!(
        data(&removed)["setWalletLimits"]["wallet"]["limits"]["dailyOutgoingCount"],
        Value::Null
    );
    assert_eq!(
        data(&removed)["setWalletLimits"]["wallet"]["limits"]["maxTransferAmount"],
        "8.00"
    );
    data(&refund(&app, OPERATOR, &paid, "0.75").await);
    // Frozen and over a limit and short of funds: frozen first; then the
    // limit, before funds.
    data(&set_status(&app, OPERATOR, &alice.wallet, "FROZEN", "check").await);
    let frozen = app.transfer(&alice, &bob.wallet, "1000.00").await;
    assert_eq!(error_code(&frozen), "WALLET_FROZEN");
    data(&set_status(&app, OPERATOR, &alice.wallet, "ACTIVE", "ok").await);
    let limited = app.transfer(&alice, &bob.wallet, "1000.00").await;
    assert_eq!(limit_of(&limited).0, "MAX_TRANSFER_AMOUNT");
    // Bad limits are refused at their field; only the operator sets them.
    let bad = set_limits(&app, &alice.wallet, json!({ "maxTransferAmount": "0" })).await;
    assert_eq!(error_code(&bad), "INVALID_INPUT");
    assert_eq!(
        bad["errors"][0]["extensions"]["field"],
        json!(["input", "maxTransferAmount"])
    );
    let bad = set_limits(&app, &alice.wallet, json!({ "dailyOutgoingCount": 0 })).await;
    assert_eq!(error_code(&bad), "INVALID_INPUT");
    let stranger = app
        .gql(
            Some(&alice.token),
            SET_LIMITS,
            json!({ "input": { "walletId": alice.wallet, "maxTransferAmount": null } }),
        )
        .await;
    assert_eq!(error_code(&stranger), "FORBIDDEN");
    app.assert_ledger_consistent().await;
}

/// A change made through a server whose clock is behind the one that made
/// the previous change is still recorded after it: the newest change is
/// always the status (the audit checks that).
async fn a_status_change_comes_after_the_last_whatever_the_clock(app: TestApp) {
    use entity::wallet_status_change;
    use sea_orm::EntityTrait;
    use sea_orm::sea_query::Expr;
    let alice = app.create_client("Alice").await;
    data(&set_status(&app, OPERATOR, &alice.wallet, "FROZEN", "review").await);
    // As if the freeze came from a server an hour ahead.
    let ahead = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    wallet_status_change::Entity::update_many()
        .col_expr(wallet_status_change::Column::CreatedAt, Expr::value(ahead))
        .exec(app.store.db())
        .await
        .expect("move the change ahead");
    data(&set_status(&app, OPERATOR, &alice.wallet, "ACTIVE", "cleared").await);
    let changes = &wallet(&app, &alice.wallet).await["statusChanges"];
    assert_eq!(changes[0]["status"], "ACTIVE", "{changes}");
    let newest =
        chrono::DateTime::parse_from_rfc3339(&text(&changes[0]["changedAt"])).expect("a time");
    assert!(newest > ahead, "{changes}");
    app.assert_ledger_consistent().await;
}

both_backends!(
    a_status_change_comes_after_the_last_whatever_the_clock,
    a_frozen_wallet_lets_nothing_out_and_still_receives,
    closing_needs_an_empty_wallet_and_is_final,
    limits_refuse_what_exceeds_them_in_order,
);

/// 30 concurrent 7.00 transfers under a 100.00 daily limit post exactly 14,
/// through two servers sharing one database (each with its own committer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_limit_holds_under_a_race_on_two_servers() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let other = crate::group_commit::second_server(&app).await;
    race_under_limit(&app, [app.addr, other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_limit_holds_under_a_race_on_sqlite() {
    let app = TestApp::sqlite().await;
    race_under_limit(&app, [app.addr, app.addr]).await;
}

/// `n` concurrent transfers of `amount`, sent to the servers in turn: how
/// many posted, and the codes of those refused.
pub(crate) async fn race_transfers(
    servers: [std::net::SocketAddr; 2],
    payer: &TestClient,
    payee: &str,
    amount: &str,
    n: usize,
) -> (usize, Vec<String>) {
    let query = "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }";
    let requests = (0..n).map(|i| {
        let input = json!({ "input": { "fromWalletId": payer.wallet, "toWalletId": payee,
            "amount": amount, "idempotencyKey": key() } });
        async move { post_to(servers[i % 2], &payer.token, query, input).await }
    });
    let answers = join_all(requests).await;
    let posted = answers.iter().filter(|r| r.get("errors").is_none()).count();
    let refused = answers
        .iter()
        .filter(|r| r.get("errors").is_some())
        .map(|r| error_code(r).to_owned())
        .collect();
    (posted, refused)
}

async fn race_under_limit(app: &TestApp, servers: [std::net::SocketAddr; 2]) {
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "1000.00").await);
    data(
        &set_limits(
            app,
            &alice.wallet,
            json!({ "dailyOutgoingAmount": "100.00" }),
        )
        .await,
    );
    let (posted, refused) = race_transfers(servers, &alice, &bob.wallet, "7.00", 30).await;
    assert_eq!(
        (posted, refused),
        (14, vec!["LIMIT_EXCEEDED".to_owned(); 16])
    );
    assert_eq!(app.balance(&alice.wallet).await, "902.00");
    let limits = &wallet(app, &alice.wallet).await["limits"];
    assert_eq!(limits["outgoingToday"], "98.00");
    assert_eq!(limits["outgoingCountToday"], 14);
    app.assert_ledger_consistent().await;
}

/// Closing races with money arriving through two servers: either the close
/// comes first and nothing arrives, or money arrives first and the close is
/// refused; a closed wallet never holds money.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_races_with_incoming_money_on_two_servers() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let other = crate::group_commit::second_server(&app).await;
    let servers = [app.addr, other];
    for round in 0..3 {
        let target = app.create_client(&format!("Target {round}")).await;
        let payers = {
            let mut payers = Vec::new();
            for i in 0..10 {
                let payer = app.create_client(&format!("Payer {round} {i}")).await;
                data(&app.deposit(&payer.wallet, "5.00").await);
                payers.push(payer);
            }
            payers
        };
        let query =
            "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }";
        let transfers = payers.iter().enumerate().map(|(i, payer)| {
            let input = json!({ "input": { "fromWalletId": payer.wallet,
                "toWalletId": target.wallet, "amount": "1.00" } });
            async move { post_to(servers[i % 2], &payer.token, query, input).await }
        });
        let close = post_to(
            servers[round % 2],
            OPERATOR,
            SET_STATUS,
            json!({ "input": { "walletId": target.wallet, "status": "CLOSED", "reason": "race" } }),
        );
        let (answers, closed) = tokio::join!(join_all(transfers), close);
        let arrived = answers.iter().filter(|r| r.get("errors").is_none()).count();
        let after = wallet(&app, &target.wallet).await;
        if closed.get("errors").is_none() {
            assert_eq!(after["status"], "CLOSED");
            assert_eq!(after["balance"], "0.00");
            assert_eq!(arrived, 0, "money reached a closed wallet");
            for answer in &answers {
                assert_eq!(error_code(answer), "WALLET_CLOSED");
            }
        } else {
            assert_eq!(error_code(&closed), "WALLET_NOT_EMPTY");
            assert_eq!(after["status"], "ACTIVE");
            assert_eq!(text(&after["balance"]), format!("{arrived}.00"));
        }
    }
    app.assert_ledger_consistent().await;
}
