//! Live subscriptions over WebSocket. On PostgreSQL every test subscribes
//! through one server process and writes through another, so events must
//! cross processes (LISTEN/NOTIFY); on SQLite one in-process server does both.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{OPERATOR, ServerProcess, TestApp, data, error_code, text};
use crate::ws::{Event, LEGACY_WS, OPERATION_CREATED, TRANSPORT_WS, WsClient, refusal_code};

/// Where subscribers connect; keeps the server processes alive.
struct Live {
    subscribe_at: SocketAddr,
    _processes: Vec<ServerProcess>,
}

/// Subscription variables for `wallet` from its current head: every
/// operation after this moment arrives, however long the server takes to
/// start the subscription.
async fn from_head(app: &TestApp, wallet: &str) -> Value {
    let response = app
        .gql(
            Some(OPERATOR),
            "query($w: UUID!) { wallet(id: $w) { cursor } }",
            json!({ "w": wallet }),
        )
        .await;
    json!({ "w": wallet, "after": data(&response)["wallet"]["cursor"] })
}

/// Waits until an all-wallet subscription is live, by depositing into
/// `probe` until one of those deposits arrives; later probe events may
/// follow, and are told apart by their wallet.
async fn await_live(ws: &mut WsClient, id: &str, app: &TestApp, probe: &str) {
    for _ in 0..50 {
        data(&app.deposit(probe, "0.01").await);
        if let Event::Data(_) = ws.next_event(id, Duration::from_millis(200)).await {
            return;
        }
    }
    panic!("subscription {id} never went live");
}

/// The next event of an all-wallet subscription that is not about `probe`.
async fn next_except(ws: &mut WsClient, id: &str, probe: &str) -> Value {
    loop {
        let op = ws.next_operation(id).await;
        if op["walletId"] != probe {
            return op;
        }
    }
}

/// A connection (as `token`) with one subscription `id` started.
async fn subscribed(
    addr: SocketAddr,
    protocol: &'static str,
    token: &str,
    id: &str,
    variables: Value,
) -> WsClient {
    let mut ws = WsClient::connect(addr, protocol, Some(token))
        .await
        .expect("connect");
    ws.subscribe(id, OPERATION_CREATED, variables).await;
    ws
}

fn live(app: &mut TestApp) -> Live {
    if app.is_postgres() {
        let (listening, writing) = (app.spawn_process(), app.spawn_process());
        app.use_server(writing.addr);
        Live {
            subscribe_at: listening.addr,
            _processes: vec![listening, writing],
        }
    } else {
        Live {
            subscribe_at: app.addr,
            _processes: Vec::new(),
        }
    }
}

async fn payer_and_payee_hear_a_transfer(mut app: TestApp) {
    let live = live(&mut app);
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let mut alice_ws = subscribed(
        live.subscribe_at,
        TRANSPORT_WS,
        &alice.token,
        "a",
        from_head(&app, &alice.wallet).await,
    )
    .await;
    // Bob speaks the legacy protocol.
    let mut bob_ws = subscribed(
        live.subscribe_at,
        LEGACY_WS,
        &bob.token,
        "b",
        from_head(&app, &bob.wallet).await,
    )
    .await;
    let mut operator_ws =
        subscribed(live.subscribe_at, TRANSPORT_WS, OPERATOR, "all", json!({})).await;
    let probe = app.create_client("Probe").await.wallet;
    await_live(&mut operator_ws, "all", &app, &probe).await;

    data(&app.deposit(&alice.wallet, "50").await);
    data(&app.transfer(&alice, &bob.wallet, "20.5").await);

    let deposit = alice_ws.next_operation("a").await;
    assert_eq!(
        (
            deposit["kind"].as_str(),
            deposit["amount"].as_str(),
            deposit["sequence"].as_i64()
        ),
        (Some("DEPOSIT"), Some("50.00"), Some(1))
    );
    let out = alice_ws.next_operation("a").await;
    assert_eq!(out["kind"], "TRANSFER_OUT");
    assert_eq!(out["amount"], "20.50");
    assert_eq!(out["balanceAfter"], "29.50");
    assert_eq!(out["counterparty"]["walletId"], bob.wallet.as_str());
    let incoming = bob_ws.next_operation("b").await;
    assert_eq!(incoming["kind"], "TRANSFER_IN");
    assert_eq!(incoming["amount"], "20.50");
    assert_eq!(incoming["sequence"], 1);
    assert_eq!(incoming["walletId"], bob.wallet.as_str());

    let mut seen = Vec::new();
    for _ in 0..3 {
        let op = next_except(&mut operator_ws, "all", &probe).await;
        seen.push((text(&op["kind"]), text(&op["walletId"])));
    }
    assert_eq!(
        seen,
        vec![
            ("DEPOSIT".to_owned(), alice.wallet.clone()),
            ("TRANSFER_OUT".to_owned(), alice.wallet.clone()),
            ("TRANSFER_IN".to_owned(), bob.wallet.clone()),
        ]
    );
    // Nothing else: each event once.
    alice_ws
        .assert_silent("a", Duration::from_millis(300))
        .await;
    bob_ws.assert_silent("b", Duration::from_millis(10)).await;
}

async fn a_refused_transfer_emits_nothing(mut app: TestApp) {
    let live = live(&mut app);
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let mut alice_ws = subscribed(
        live.subscribe_at,
        TRANSPORT_WS,
        &alice.token,
        "a",
        from_head(&app, &alice.wallet).await,
    )
    .await;
    let mut bob_ws = subscribed(
        live.subscribe_at,
        TRANSPORT_WS,
        &bob.token,
        "b",
        from_head(&app, &bob.wallet).await,
    )
    .await;

    assert_eq!(
        error_code(&app.transfer(&alice, &bob.wallet, "1").await),
        "INSUFFICIENT_FUNDS"
    );
    alice_ws
        .assert_silent("a", Duration::from_millis(500))
        .await;
    bob_ws.assert_silent("b", Duration::from_millis(10)).await;
    // The next real operation is the first event, numbered 1.
    data(&app.deposit(&alice.wallet, "3").await);
    let first = alice_ws.next_operation("a").await;
    assert_eq!(
        (first["kind"].as_str(), first["sequence"].as_i64()),
        (Some("DEPOSIT"), Some(1))
    );
}

async fn subscriptions_are_authorized(mut app: TestApp) {
    let live = live(&mut app);
    let alice = app.create_client("Alice").await;
    let mallory = app.create_client("Mallory").await;
    data(&app.deposit(&mallory.wallet, "1").await);
    let mallory_cursor = {
        let page = app
            .gql(
                Some(&mallory.token),
                "query($w: UUID!) { operations(walletId: $w) { nodes { cursor } } }",
                json!({ "w": mallory.wallet }),
            )
            .await;
        text(&data(&page)["operations"]["nodes"][0]["cursor"])
    };

    let mut ws = WsClient::connect(live.subscribe_at, TRANSPORT_WS, Some(&mallory.token))
        .await
        .expect("mallory");
    let cases = [
        (
            "someone else's wallet",
            json!({ "w": alice.wallet }),
            "FORBIDDEN",
        ),
        ("every wallet, as a client", json!({}), "FORBIDDEN"),
        (
            "a wallet that does not exist",
            json!({ "w": uuid::Uuid::now_v7() }),
            "FORBIDDEN",
        ),
        (
            "a cursor from another wallet",
            json!({ "w": alice.wallet, "after": mallory_cursor }),
            "INVALID_INPUT",
        ),
        (
            "a malformed cursor",
            json!({ "w": mallory.wallet, "after": "garbage" }),
            "INVALID_INPUT",
        ),
        (
            "a cursor whose position holds another operation now (a restore)",
            json!({ "w": mallory.wallet, "after": walletql::domain::cursor::OperationCursor {
                wallet_id: uuid::Uuid::parse_str(&mallory.wallet).expect("id"),
                seq: 1,
                operation: Some(uuid::Uuid::now_v7()),
            }.encode() }),
            "INVALID_INPUT",
        ),
    ];
    for (i, (case, variables, code)) in cases.into_iter().enumerate() {
        let id = i.to_string();
        ws.subscribe(&id, OPERATION_CREATED, variables).await;
        assert_eq!(
            refusal_code(&ws.next_event(&id, Duration::from_secs(5)).await),
            code,
            "{case}"
        );
        let end = ws.next_event(&id, Duration::from_secs(5)).await;
        assert!(matches!(end, Event::Complete), "{case}: {end:?}");
    }
    // No event of Alice's reaches Mallory.
    data(&app.deposit(&alice.wallet, "5").await);
    ws.assert_silent("0", Duration::from_millis(300)).await;

    let mut anonymous = WsClient::connect(live.subscribe_at, TRANSPORT_WS, None)
        .await
        .expect("anonymous connects");
    anonymous
        .subscribe("x", OPERATION_CREATED, from_head(&app, &alice.wallet).await)
        .await;
    assert_eq!(
        refusal_code(&anonymous.next_event("x", Duration::from_secs(5)).await),
        "UNAUTHENTICATED"
    );

    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let refused = WsClient::connect(live.subscribe_at, protocol, Some("wq_forged")).await;
        let reason = refused.err().expect("a forged token is refused");
        assert!(reason.contains("UNAUTHENTICATED"), "{protocol}: {reason}");
    }

    let mut operator = WsClient::connect(live.subscribe_at, TRANSPORT_WS, Some(OPERATOR))
        .await
        .expect("operator");
    operator
        .subscribe(
            "all",
            OPERATION_CREATED,
            json!({ "after": mallory_cursor.clone() }),
        )
        .await;
    assert_eq!(
        refusal_code(&operator.next_event("all", Duration::from_secs(5)).await),
        "INVALID_INPUT"
    );
    operator
        .subscribe(
            "alice",
            OPERATION_CREATED,
            from_head(&app, &alice.wallet).await,
        )
        .await;
    data(&app.deposit(&alice.wallet, "6").await);
    assert_eq!(operator.next_operation("alice").await["amount"], "6.00");
}

/// A subscriber misses events, then resumes from its last cursor while
/// transfers keep arriving: what it receives, over both connections, is
/// exactly the wallet's ledger, each operation once and in order.
async fn resuming_with_a_cursor_has_no_gap_and_no_duplicate(mut app: TestApp) {
    let live = live(&mut app);
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    data(&app.deposit(&alice.wallet, "1000").await);
    data(&app.deposit(&bob.wallet, "1000").await);

    let mut first = WsClient::connect(live.subscribe_at, TRANSPORT_WS, Some(&alice.token))
        .await
        .expect("connect");
    // From just after the deposits.
    first
        .subscribe("1", OPERATION_CREATED, from_head(&app, &alice.wallet).await)
        .await;

    const TRANSFERS: usize = 60;
    let writer = async {
        for i in 0..TRANSFERS {
            let response = if i % 2 == 0 {
                app.transfer(&alice, &bob.wallet, "1.25").await
            } else {
                app.transfer(&bob, &alice.wallet, "0.75").await
            };
            data(&response);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    };
    let reader = async {
        let mut received: Vec<Value> = Vec::new();
        for _ in 0..10 {
            received.push(first.next_operation("1").await);
        }
        drop(first);
        // Miss some while the writer goes on, then resume from the last cursor.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let cursor = text(&received[received.len() - 1]["cursor"]);
        let mut second = WsClient::connect(live.subscribe_at, LEGACY_WS, Some(&alice.token))
            .await
            .expect("reconnect");
        second
            .subscribe(
                "2",
                OPERATION_CREATED,
                json!({ "w": alice.wallet, "after": cursor }),
            )
            .await;
        (received, second)
    };
    let ((), (mut received, mut second)) = tokio::join!(writer, reader);
    // Alice's wallet: the first deposit (before subscribing, so not an
    // event) and one operation per transfer.
    let last = (TRANSFERS + 1) as i64;
    while received.last().and_then(|op| op["sequence"].as_i64()) != Some(last) {
        received.push(second.next_operation("2").await);
    }
    let sequences: Vec<i64> = received
        .iter()
        .filter_map(|op| op["sequence"].as_i64())
        .collect();
    assert_eq!(
        sequences,
        (2..=last).collect::<Vec<_>>(),
        "gap or duplicate"
    );

    let history = app
        .gql(Some(&alice.token), "query($w: UUID!) { operations(walletId: $w, last: 100) { nodes { id sequence kind amount balanceAfter } } }", json!({ "w": alice.wallet }))
        .await;
    let mut ledger: Vec<Value> = data(&history)["operations"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ledger.reverse();
    ledger.remove(0);
    for (event, row) in received.iter().zip(&ledger) {
        for field in ["id", "sequence", "kind", "amount", "balanceAfter"] {
            assert_eq!(event[field], row[field], "{field} of event {event}");
        }
    }
    second.assert_silent("2", Duration::from_millis(300)).await;
}

/// A subscriber that stops reading falls behind, is told so and dropped;
/// another subscriber to the same wallet and the writers carry on
/// untouched; the slow one resumes from its last cursor and misses nothing.
async fn a_slow_subscriber_is_dropped_without_hurting_others(mut app: TestApp) {
    // This test is about the lag notice, not the send timeout (tested on its
    // own below): the listening server waits for the slow reader longer than
    // the writers take on a loaded machine, so the notice queued behind its
    // full socket is still there when it reads.
    const PATIENT: Duration = Duration::from_secs(120);
    let live = if app.is_postgres() {
        let patient = PATIENT.as_secs().to_string();
        let listening =
            ServerProcess::spawn_with(&app.db_url, &[("WS_SEND_TIMEOUT_SECS", patient.as_str())]);
        let writing = app.spawn_process();
        app.use_server(writing.addr);
        Live {
            subscribe_at: listening.addr,
            _processes: vec![listening, writing],
        }
    } else {
        let limits = walletql::config::WsLimits {
            send_timeout: PATIENT,
            socket_send_buffer: crate::helpers::TEST_SOCKET_SEND_BUFFER,
            ..Default::default()
        };
        Live {
            subscribe_at: serve_with(&app, limits).await,
            _processes: Vec::new(),
        }
    };
    let alice = app.create_client("Alice").await;
    let query = from_head(&app, &alice.wallet).await;
    let mut slow = WsClient::connect_with_buffer(
        live.subscribe_at,
        TRANSPORT_WS,
        Some(&alice.token),
        Some(4096),
    )
    .await
    .expect("slow");
    slow.subscribe("slow", OPERATION_CREATED, query.clone())
        .await;
    let mut fast = subscribed(live.subscribe_at, TRANSPORT_WS, &alice.token, "fast", query).await;

    // Far more events than the socket buffers and the hub's buffer of
    // the hub's buffer (TEST_EVENT_BUFFER) hold, written by 8 concurrent writers.
    const EVENTS: usize = 1600; // a multiple of the 8 writers
    let started = Instant::now();
    let writers = (0..8).map(|_| {
        let app = &app;
        let alice = &alice;
        async move {
            for _ in 0..EVENTS / 8 {
                data(&app.deposit(&alice.wallet, "0.01").await);
            }
        }
    });
    let reader = async {
        // A reader that keeps up; should it lag anyway on a loaded machine
        // (refused as lagging, or dropped for not reading within the send
        // timeout), it does what the protocol says and resumes from its
        // last cursor.
        let mut sequences = Vec::new();
        let mut cursor = None;
        let mut resumes = 0;
        while sequences.len() < EVENTS {
            match fast.next_event("fast", Duration::from_secs(10)).await {
                Event::Data(op) => {
                    sequences.push(op["sequence"].as_i64().unwrap_or(0));
                    cursor = Some(op["cursor"].clone());
                }
                event
                    if resumes < 5
                        && (matches!(event, Event::Closed(_))
                            || refusal_code(&event) == "SUBSCRIPTION_LAGGED") =>
                {
                    resumes += 1;
                    fast = WsClient::connect(live.subscribe_at, TRANSPORT_WS, Some(&alice.token))
                        .await
                        .expect("fast again");
                    let after = cursor.clone().unwrap_or(Value::Null);
                    fast.subscribe(
                        "fast",
                        OPERATION_CREATED,
                        json!({ "w": alice.wallet, "after": after }),
                    )
                    .await;
                }
                other => panic!("fast subscriber: {other:?}"),
            }
        }
        sequences
    };
    let (_, fast_sequences) = tokio::join!(join_all(writers), reader);
    let elapsed = started.elapsed();
    assert_eq!(
        fast_sequences,
        (1..=EVENTS as i64).collect::<Vec<_>>(),
        "the fast subscriber saw everything in order"
    );

    // The slow one reads now: a gapless prefix, then the notice.
    let mut slow_sequences: Vec<i64> = Vec::new();
    let mut last_cursor = None;
    let ending = loop {
        match slow.next_event("slow", Duration::from_secs(5)).await {
            Event::Data(op) => {
                slow_sequences.push(op["sequence"].as_i64().unwrap_or(0));
                last_cursor = Some(text(&op["cursor"]));
            }
            other => break other,
        }
    };
    assert!(
        slow_sequences.len() < EVENTS,
        "the slow subscriber was not dropped ({} events, {elapsed:?})",
        slow_sequences.len()
    );
    assert!(!slow_sequences.is_empty(), "it got what its socket held");
    assert_eq!(
        slow_sequences,
        (1..=slow_sequences.len() as i64).collect::<Vec<_>>()
    );
    assert_eq!(
        refusal_code(&ending),
        "SUBSCRIPTION_LAGGED",
        "it was told why"
    );

    // It resumes from its last cursor and gets exactly the rest.
    let mut resumed = WsClient::connect(live.subscribe_at, TRANSPORT_WS, Some(&alice.token))
        .await
        .expect("resume");
    resumed
        .subscribe(
            "again",
            OPERATION_CREATED,
            json!({ "w": alice.wallet, "after": last_cursor }),
        )
        .await;
    let mut next = slow_sequences.len() as i64 + 1;
    while next <= EVENTS as i64 {
        assert_eq!(resumed.next_operation("again").await["sequence"], next);
        next += 1;
    }
}

async fn subscriptions_per_connection_are_capped(mut app: TestApp) {
    let live = live(&mut app);
    let alice = app.create_client("Alice").await;
    data(&app.deposit(&alice.wallet, "1").await);
    data(&app.deposit(&alice.wallet, "2").await);
    let history = app
        .gql(
            Some(&alice.token),
            "query($w: UUID!) { operations(walletId: $w, last: 1) { nodes { cursor } } }",
            json!({ "w": alice.wallet }),
        )
        .await;
    let first = text(&data(&history)["operations"]["nodes"][0]["cursor"]);
    let mut ws = WsClient::connect(live.subscribe_at, TRANSPORT_WS, Some(&alice.token))
        .await
        .expect("connect");
    let limit = walletql::config::WsLimits::default().max_subscriptions_per_connection;
    // Each resumes after the first deposit, so the second is replayed at
    // once: proof that the subscription is active.
    for i in 0..limit {
        ws.subscribe(
            &i.to_string(),
            OPERATION_CREATED,
            json!({ "w": alice.wallet, "after": first }),
        )
        .await;
        assert_eq!(ws.next_operation(&i.to_string()).await["amount"], "2.00");
    }
    ws.subscribe("over", OPERATION_CREATED, json!({ "w": alice.wallet }))
        .await;
    assert_eq!(
        refusal_code(&ws.next_event("over", Duration::from_secs(5)).await),
        "TOO_MANY_SUBSCRIPTIONS"
    );
    // The refused one did not take a slot from the others.
    data(&app.deposit(&alice.wallet, "3").await);
    for i in 0..limit {
        assert_eq!(ws.next_operation(&i.to_string()).await["amount"], "3.00");
    }
}

/// Holds, their releases, captures, refunds and withdrawals reach
/// subscribers like any operation, each once, in the wallet's order; the
/// history filter knows the new kinds.
async fn every_new_kind_reaches_subscribers(mut app: TestApp) {
    let live = live(&mut app);
    let payer = app.create_client("Payer").await;
    let payee = app.create_client("Payee").await;
    let mut ws = subscribed(
        live.subscribe_at,
        TRANSPORT_WS,
        &payer.token,
        "p",
        from_head(&app, &payer.wallet).await,
    )
    .await;
    data(&app.deposit(&payer.wallet, "20.00").await);
    let key = || uuid::Uuid::now_v7().to_string();
    let held = app
        .gql(
            Some(&payer.token),
            "mutation($input: AuthorizeTransferInput!) { authorizeTransfer(input: $input) { transfer { id } } }",
            json!({ "input": { "fromWalletId": payer.wallet, "toWalletId": payee.wallet, "amount": "8.00", "idempotencyKey": key() } }),
        )
        .await;
    let id = text(&data(&held)["authorizeTransfer"]["transfer"]["id"]);
    data(&app
        .gql(
            Some(&payee.token),
            "mutation($input: CaptureTransferInput!) { captureTransfer(input: $input) { transfer { id } } }",
            json!({ "input": { "transferId": id, "amount": "5.00", "idempotencyKey": key() } }),
        )
        .await);
    data(&app
        .gql(
            Some(&payee.token),
            "mutation($input: RefundTransferInput!) { refundTransfer(input: $input) { refund { id } } }",
            json!({ "input": { "transferId": id, "amount": "1.00", "idempotencyKey": key() } }),
        )
        .await);
    data(&app
        .gql(
            Some(OPERATOR),
            "mutation($input: WithdrawInput!) { withdraw(input: $input) { operation { id } } }",
            json!({ "input": { "walletId": payer.wallet, "amount": "2.00", "idempotencyKey": key() } }),
        )
        .await);
    let mut heard = Vec::new();
    for _ in 0..6 {
        let op = ws.next_operation("p").await;
        heard.push((
            text(&op["kind"]),
            text(&op["amount"]),
            op["sequence"].as_i64().unwrap_or(0),
        ));
    }
    let expected = [
        ("DEPOSIT", "20.00", 1),
        ("HOLD", "8.00", 2),
        ("HOLD_RELEASE", "8.00", 3),
        ("TRANSFER_OUT", "5.00", 4),
        ("TRANSFER_IN", "1.00", 5),
        ("WITHDRAWAL", "2.00", 6),
    ];
    let expected: Vec<(String, String, i64)> = expected
        .iter()
        .map(|(k, a, s)| (k.to_string(), a.to_string(), *s))
        .collect();
    assert_eq!(heard, expected);
    ws.assert_silent("p", Duration::from_millis(300)).await;
    let holds = app
        .gql(
            Some(&payer.token),
            "query($w: UUID!) { operations(walletId: $w, filter: {kinds: [HOLD, HOLD_RELEASE, WITHDRAWAL]}) { nodes { kind } } }",
            json!({ "w": payer.wallet }),
        )
        .await;
    let kinds: Vec<String> = data(&holds)["operations"]["nodes"]
        .as_array()
        .map(|n| n.iter().map(|x| text(&x["kind"])).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["WITHDRAWAL", "HOLD_RELEASE", "HOLD"]);
}

/// A batch reaches a subscriber as one message: 500 transfers of one
/// `transferBatch` on one wallet, far more than the subscriber buffer
/// (64 in tests), arrive whole and in order, without a lag.
async fn one_large_batch_never_lags_a_subscriber(mut app: TestApp) {
    let live = live(&mut app);
    let payer = app.create_client("Payer").await;
    let payee = app.create_client("Payee").await;
    data(&app.deposit(&payer.wallet, "100.00").await);
    let mut ws = subscribed(
        live.subscribe_at,
        TRANSPORT_WS,
        &payer.token,
        "p",
        from_head(&app, &payer.wallet).await,
    )
    .await;
    let items: Vec<Value> = (0..500)
        .map(|_| json!({ "fromWalletId": payer.wallet, "toWalletId": payee.wallet, "amount": "0.01" }))
        .collect();
    let batch = app
        .gql(
            Some(&payer.token),
            "mutation($input: TransferBatchInput!) { transferBatch(input: $input) { fromWallet { balance } } }",
            json!({ "input": { "transfers": items, "atomic": true } }),
        )
        .await;
    assert_eq!(
        data(&batch)["transferBatch"]["fromWallet"]["balance"],
        "95.00"
    );
    for sequence in 2..=501 {
        let op = ws.next_operation("p").await;
        assert_eq!(
            (op["kind"].as_str(), op["sequence"].as_i64()),
            (Some("TRANSFER_OUT"), Some(sequence))
        );
    }
    ws.assert_silent("p", Duration::from_millis(200)).await;
}

both_backends!(
    one_large_batch_never_lags_a_subscriber,
    every_new_kind_reaches_subscribers,
    payer_and_payee_hear_a_transfer,
    a_refused_transfer_emits_nothing,
    subscriptions_are_authorized,
    resuming_with_a_cursor_has_no_gap_and_no_duplicate,
    a_slow_subscriber_is_dropped_without_hurting_others,
    subscriptions_per_connection_are_capped,
    wallet_updated_sends_the_state_then_each_batch,
    a_slow_wallet_subscriber_gets_the_newest_state,
);

const WALLET_UPDATED: &str = "subscription($w: UUID!) { walletUpdated(walletId: $w) { id balance heldBalance availableBalance operationCount cursor limits { creditLimit } } }";

async fn wallet_updated_sends_the_state_then_each_batch(mut app: TestApp) {
    let live = live(&mut app);
    let alice = app.create_client("Alice").await;
    let bob = app.create_client("Bob").await;
    let mut ws = WsClient::connect(live.subscribe_at, TRANSPORT_WS, Some(&alice.token))
        .await
        .expect("connect");
    ws.subscribe("w", WALLET_UPDATED, json!({ "w": alice.wallet }))
        .await;
    let first = ws.next_operation("w").await;
    assert_eq!(first["balance"], "0.00");
    assert_eq!(first["operationCount"], 0);
    data(&app.deposit(&alice.wallet, "10.00").await);
    let deposited = ws.next_operation("w").await;
    assert_eq!(deposited["balance"], "10.00");
    assert_eq!(deposited["operationCount"], 1);
    data(&crate::verbs::authorize(&app, &alice, &bob.wallet, "4.00", json!({})).await);
    let held = ws.next_operation("w").await;
    assert_eq!(
        (
            &held["balance"],
            &held["heldBalance"],
            &held["availableBalance"]
        ),
        (&json!("10.00"), &json!("4.00"), &json!("6.00"))
    );
    data(&app.transfer(&alice, &bob.wallet, "1.00").await);
    let paid = ws.next_operation("w").await;
    assert_eq!(paid["availableBalance"], "5.00");
    assert_eq!(paid["operationCount"], 3);
    // A credit line is a ledger row: live, with the held balance kept.
    data(
        &app.gql(
            Some(OPERATOR),
            "mutation($input: SetWalletLimitsInput!) { setWalletLimits(input: $input) { wallet { id } } }",
            json!({ "input": { "walletId": alice.wallet, "creditLimit": "20.00" } }),
        )
        .await,
    );
    let lined = ws.next_operation("w").await;
    assert_eq!(
        (
            &lined["balance"],
            &lined["heldBalance"],
            &lined["availableBalance"],
            &lined["limits"]["creditLimit"]
        ),
        (
            &json!("9.00"),
            &json!("4.00"),
            &json!("25.00"),
            &json!("20.00")
        )
    );
    data(&app.transfer(&alice, &bob.wallet, "20.00").await);
    let borrowed = ws.next_operation("w").await;
    assert_eq!(
        (
            &borrowed["balance"],
            &borrowed["heldBalance"],
            &borrowed["availableBalance"]
        ),
        (&json!("-11.00"), &json!("4.00"), &json!("5.00"))
    );
    // Batches of other wallets are not this wallet's events.
    data(&app.deposit(&bob.wallet, "1.00").await);
    ws.assert_silent("w", Duration::from_millis(300)).await;
    // Someone else's wallet: refused like operationCreated.
    let mut bobs = WsClient::connect(live.subscribe_at, TRANSPORT_WS, Some(&bob.token))
        .await
        .expect("connect");
    bobs.subscribe("x", WALLET_UPDATED, json!({ "w": alice.wallet }))
        .await;
    let refused = bobs.next_event("x", Duration::from_secs(5)).await;
    assert_eq!(refusal_code(&refused), "FORBIDDEN");
}

/// A subscriber that reads nothing while hundreds of batches commit is
/// never dropped: when it reads again it gets the newest state.
async fn a_slow_wallet_subscriber_gets_the_newest_state(mut app: TestApp) {
    let live = live(&mut app);
    let alice = app.create_client("Alice").await;
    let mut slow = WsClient::connect_with_buffer(
        live.subscribe_at,
        TRANSPORT_WS,
        Some(&alice.token),
        Some(4096),
    )
    .await
    .expect("slow");
    slow.subscribe("w", WALLET_UPDATED, json!({ "w": alice.wallet }))
        .await;
    assert_eq!(slow.next_operation("w").await["balance"], "0.00");
    // Far more batches than the hub's buffer (TEST_EVENT_BUFFER) and the
    // socket buffers hold.
    const BATCHES: usize = 600;
    let writers = (0..4).map(|_| {
        let (app, alice) = (&app, &alice);
        async move {
            for _ in 0..BATCHES / 4 {
                data(&app.deposit(&alice.wallet, "0.01").await);
            }
        }
    });
    join_all(writers).await;
    let mut counts = Vec::new();
    loop {
        match slow.next_event("w", Duration::from_secs(3)).await {
            Event::Data(wallet) => {
                counts.push(wallet["operationCount"].as_i64().unwrap_or(0));
                if wallet["balance"] == "6.00" {
                    break;
                }
            }
            other => panic!("a slow wallet subscriber must not be dropped: {other:?}"),
        }
    }
    assert_eq!(counts.last(), Some(&(BATCHES as i64)));
    assert!(
        counts.windows(2).all(|w| w[0] < w[1]),
        "the cursor never goes back: {counts:?}"
    );
    assert!(
        counts.len() < BATCHES,
        "it skipped to the newest state ({} events)",
        counts.len()
    );
}

/// An in-process server on `app`'s database with other WebSocket limits.
pub async fn serve_with(app: &TestApp, limits: walletql::config::WsLimits) -> SocketAddr {
    let api = walletql::config::ApiLimits {
        rate_limits: walletql::config::RateLimits::OFF,
        ..Default::default()
    };
    crate::helpers::serve_ledger(app.ledger.clone(), api, limits).await
}

/// Past the connection cap, `connection_init` is refused (with the code in
/// the close reason); a slot is taken only by an initialised connection.
#[tokio::test]
async fn websocket_connections_are_capped() {
    let app = TestApp::sqlite().await;
    let limits = walletql::config::WsLimits {
        max_connections: 1,
        ..Default::default()
    };
    let addr = serve_with(&app, limits).await;
    let first = WsClient::connect(addr, TRANSPORT_WS, Some(OPERATOR))
        .await
        .expect("first");
    let second = WsClient::connect(addr, TRANSPORT_WS, Some(OPERATOR)).await;
    assert!(
        second
            .as_ref()
            .err()
            .is_some_and(|e| e.contains("TOO_MANY_CONNECTIONS")),
        "the second connection is refused: {:?}",
        second.err()
    );
    drop(first);
    assert!(
        WsClient::connect(addr, TRANSPORT_WS, Some(OPERATOR))
            .await
            .is_ok(),
        "a freed slot is reused"
    );
}

/// A client that leaves messages unread past the send timeout is
/// disconnected, while another client on the same server carries on.
#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let app = TestApp::sqlite().await;
    let limits = walletql::config::WsLimits {
        send_timeout: Duration::from_millis(300),
        socket_send_buffer: crate::helpers::TEST_SOCKET_SEND_BUFFER,
        ..Default::default()
    };
    let addr = serve_with(&app, limits).await;
    let alice = app.create_client("Alice").await;
    let mut stuck =
        WsClient::connect_with_buffer(addr, TRANSPORT_WS, Some(&alice.token), Some(4096))
            .await
            .expect("stuck");
    stuck
        .subscribe("s", OPERATION_CREATED, from_head(&app, &alice.wallet).await)
        .await;
    let mut reading = subscribed(
        addr,
        TRANSPORT_WS,
        &alice.token,
        "r",
        from_head(&app, &alice.wallet).await,
    )
    .await;
    // Enough events to fill the stuck client's socket buffers; the hub's
    // default buffer (256) is larger, so this is the send timeout at work.
    for i in 1..=200 {
        data(&app.deposit(&alice.wallet, "0.01").await);
        assert_eq!(reading.next_operation("r").await["sequence"], i);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut received = 0;
    let ending = loop {
        match stuck.next_event("s", Duration::from_secs(5)).await {
            Event::Data(_) => received += 1,
            other => break other,
        }
    };
    assert!(
        received < 200,
        "the stuck client got everything ({received})"
    );
    assert!(
        matches!(&ending, Event::Closed(reason) if reason != "no message"),
        "{ending:?}"
    );
}

/// NOTIFYs sent while a server's LISTEN connection is down are lost; when it
/// is back, per-wallet subscribers recover them from the ledger, and
/// all-wallet subscribers are told that they may have missed some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_lost_while_listening_is_down_are_recovered() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let alice = app.create_client("Alice").await;
    let mut wallet_ws = subscribed(
        app.addr,
        TRANSPORT_WS,
        &alice.token,
        "a",
        from_head(&app, &alice.wallet).await,
    )
    .await;
    let mut all_ws = subscribed(app.addr, TRANSPORT_WS, OPERATOR, "all", json!({})).await;
    let probe = app.create_client("Probe").await.wallet;
    await_live(&mut all_ws, "all", &app, &probe).await;
    data(&app.deposit(&alice.wallet, "1").await);
    assert_eq!(wallet_ws.next_operation("a").await["amount"], "1.00");
    assert_eq!(
        next_except(&mut all_ws, "all", &probe).await["amount"],
        "1.00"
    );

    // Cut the LISTEN connection and keep it from coming back; the pool's open
    // connections still serve the deposit, whose NOTIFY nobody hears.
    let db = app.db_name().to_owned();
    app.admin_sql(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"))
        .await;
    app.admin_sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND query LIKE 'LISTEN%'"
    ))
    .await;
    data(&app.deposit(&alice.wallet, "2").await);
    wallet_ws
        .assert_silent("a", Duration::from_millis(500))
        .await;

    app.admin_sql(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
        .await;
    let recovered = wallet_ws.next_operation("a").await;
    assert_eq!(
        (recovered["amount"].as_str(), recovered["sequence"].as_i64()),
        (Some("2.00"), Some(2))
    );
    let ending = loop {
        match all_ws.next_event("all", Duration::from_secs(10)).await {
            Event::Data(op) if op["walletId"] == probe.as_str() => continue,
            other => break other,
        }
    };
    assert_eq!(refusal_code(&ending), "EVENTS_MISSED");
    // And live delivery works again.
    data(&app.deposit(&alice.wallet, "3").await);
    assert_eq!(wallet_ws.next_operation("a").await["amount"], "3.00");
}
