//! The WebSocket surface holds the same rules as HTTP: sockets that never
//! initialise are closed and hold no slot, messages are bounded, dead peers
//! are dropped, only subscriptions run, and every refusal carries its code.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::client_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use walletql::config::WsLimits;

use crate::both_backends;
use crate::helpers::{OPERATOR, TestApp, data};
use crate::subscriptions::serve_with;
use crate::ws::{Event, LEGACY_WS, OPERATION_CREATED, TRANSPORT_WS, WsClient, refusal_code};

/// A WebSocket that completed the HTTP upgrade and nothing else.
async fn bare_socket(
    addr: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(TRANSPORT_WS),
    );
    client_async(request, stream).await.expect("upgrade").0
}

/// The close frame (code, reason) the server ends with, reading past pings.
async fn close_of(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    wait: Duration,
) -> Option<(u16, String)> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

async fn sockets_that_never_initialise_are_closed_and_hold_no_slot(app: TestApp) {
    let limits = WsLimits {
        max_connections: 1,
        init_timeout: Duration::from_millis(300),
        ..WsLimits::default()
    };
    let addr = serve_with(&app, limits).await;
    // Idle sockets, more than the cap: none of them takes the one slot.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(bare_socket(addr).await);
    }
    let mut subscriber = WsClient::connect(addr, TRANSPORT_WS, Some(OPERATOR))
        .await
        .expect("an initialised connection gets the slot");
    let client = app.create_client("Ada").await;
    subscriber
        .subscribe("ada", OPERATION_CREATED, json!({ "w": client.wallet }))
        .await;
    // Past the init timeout every idle socket is closed with 4408.
    for socket in &mut idle {
        let close = close_of(socket, Duration::from_secs(3)).await;
        assert_eq!(close.map(|c| c.0), Some(4408));
    }
    // The subscriber is untouched.
    tokio::time::sleep(Duration::from_millis(100)).await;
    data(&app.deposit(&client.wallet, "1").await);
    assert_eq!(subscriber.next_operation("ada").await["amount"], "1.00");
}

async fn silent_peers_are_dropped_and_live_ones_kept(app: TestApp) {
    let limits = WsLimits {
        keepalive: Duration::from_millis(200),
        ..WsLimits::default()
    };
    let addr = serve_with(&app, limits).await;
    // A peer that stops answering (never reads, so never pongs).
    let mut dead = WsClient::connect(addr, TRANSPORT_WS, Some(OPERATOR))
        .await
        .expect("dead");
    // A peer that keeps reading answers the pings by itself.
    let mut live = WsClient::connect(addr, TRANSPORT_WS, Some(OPERATOR))
        .await
        .expect("live");
    // Reading answers the server's pings; nothing else arrives.
    assert!(live.receive(Duration::from_millis(1200)).await.is_none());
    match dead.receive(Duration::from_secs(3)).await {
        Some(message) if message["type"] == "close" => {}
        other => panic!("the silent peer was not dropped: {other:?}"),
    }
    live.subscribe("all", OPERATION_CREATED, json!({})).await;
    let client = app.create_client("Ada").await;
    for _ in 0..20 {
        data(&app.deposit(&client.wallet, "1").await);
        if let Event::Data(_) = live.next_event("all", Duration::from_millis(200)).await {
            return;
        }
    }
    panic!("the live peer was dropped");
}

async fn messages_are_bounded_like_request_bodies(app: TestApp) {
    let addr = serve_with(&app, WsLimits::default()).await;
    let before = app.sql_i64("SELECT count(*) FROM client").await;
    let mut socket = bare_socket(addr).await;
    socket
        .send(Message::Text(
            json!({ "type": "connection_init", "payload": {} })
                .to_string()
                .into(),
        ))
        .await
        .expect("init");
    let name = "x".repeat(1024 * 1024);
    let big = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "mutation($n: String!) { createClient(input: {name: $n}) { token } }",
        "variables": { "n": name } } });
    let _ = socket.send(Message::Text(big.to_string().into())).await;
    let close = close_of(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(close.map(|c| c.0), Some(1009), "closed as too big");
    assert_eq!(app.sql_i64("SELECT count(*) FROM client").await, before);
}

async fn every_refusal_over_the_socket_has_a_code(app: TestApp) {
    let addr = serve_with(&app, WsLimits::default()).await;
    let client = app.create_client("Ada").await;
    let before = app.sql_i64("SELECT count(*) FROM client").await;
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let mut ws = WsClient::connect(addr, protocol, Some(&client.token))
            .await
            .expect("connect");
        let cases: [(&str, &str, Value); 5] = [
            ("typo", "subscription { mee }", json!({})),
            ("syntax", "subscription {", json!({})),
            ("bad-id", OPERATION_CREATED, json!({ "w": "not-a-uuid" })),
            ("query", "query { me { name } }", json!({})),
            (
                "mutation",
                r#"mutation { createClient(input: {name: "Eve"}) { token } }"#,
                json!({}),
            ),
        ];
        for (id, query, variables) in cases {
            ws.subscribe(id, query, variables).await;
            let event = ws.next_event(id, Duration::from_secs(5)).await;
            assert_eq!(
                refusal_code(&event),
                "INVALID_INPUT",
                "{protocol} {id}: {event:?}"
            );
        }
    }
    assert_eq!(app.sql_i64("SELECT count(*) FROM client").await, before);
}

async fn a_refused_connection_init_has_its_code_in_the_reason(app: TestApp) {
    let addr = serve_with(&app, WsLimits::default()).await;
    let refused = WsClient::connect(addr, TRANSPORT_WS, Some("wq_not-a-token")).await;
    assert!(
        refused
            .as_ref()
            .err()
            .is_some_and(|e| e.contains("UNAUTHENTICATED")),
        "{refused:?}",
        refused = refused.err()
    );
}

/// A `minLsn` that is not a WAL position is refused at `connection_init`
/// with INVALID_INPUT, as `x-min-lsn` is over HTTP; a good one is taken.
async fn a_malformed_min_lsn_is_refused_at_connection_init(app: TestApp) {
    let addr = serve_with(&app, WsLimits::default()).await;
    for bad in [json!("yesterday"), json!(42), json!("1/2/3")] {
        let mut socket = bare_socket(addr).await;
        let init = json!({ "type": "connection_init", "payload": { "minLsn": bad } });
        socket
            .send(Message::Text(init.to_string().into()))
            .await
            .expect("init");
        let closed = close_of(&mut socket, Duration::from_secs(5)).await;
        assert!(
            closed
                .as_ref()
                .is_some_and(|(_, reason)| reason.contains("INVALID_INPUT")),
            "{bad}: {closed:?}"
        );
    }
    let mut socket = bare_socket(addr).await;
    let init = json!({ "type": "connection_init", "payload": { "minLsn": "16/B374D848" } });
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("init");
    let ack = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
    assert!(
        matches!(&ack, Ok(Some(Ok(Message::Text(text)))) if text.contains("connection_ack")),
        "{ack:?}"
    );
}

/// Over WebSocket a `transferBatch` is a mutation like any other: refused,
/// and bound by MAX_BODY_BYTES like every message (the larger batch limit
/// is HTTP's only).
async fn transfer_batches_get_no_larger_messages_over_the_socket(app: TestApp) {
    let addr = serve_with(&app, WsLimits::default()).await;
    let payer = app.create_client("Payer").await;
    data(&app.deposit(&payer.wallet, "10.00").await);
    let items: Vec<Value> = (0..1_000)
        .map(|i| {
            json!({ "fromWalletId": payer.wallet, "toWalletId": payer.wallet, "amount": "0.01",
            "description": format!("invoice {i:04} of a monthly settlement run") })
        })
        .collect();
    let mut socket = bare_socket(addr).await;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", payer.token) } });
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("init");
    let big = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "mutation($input: TransferBatchInput!) { transferBatch(input: $input) { fromWallet { id } } }",
        "variables": { "input": { "transfers": items, "atomic": false } } } });
    assert!(big.to_string().len() > 64 * 1024);
    let _ = socket.send(Message::Text(big.to_string().into())).await;
    let close = close_of(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(close.map(|c| c.0), Some(1009), "closed as too big");

    let mut ws = WsClient::connect(addr, TRANSPORT_WS, Some(&payer.token))
        .await
        .expect("connect");
    let small = json!({ "input": { "transfers": [], "atomic": true } });
    ws.subscribe("b", "mutation($input: TransferBatchInput!) { transferBatch(input: $input) { fromWallet { id } } }", small)
        .await;
    assert_eq!(
        refusal_code(&ws.next_event("b", Duration::from_secs(5)).await),
        "INVALID_INPUT"
    );
    assert_eq!(app.sql_i64("SELECT COUNT(*) FROM transfer").await, 0);
}

both_backends!(
    transfer_batches_get_no_larger_messages_over_the_socket,
    sockets_that_never_initialise_are_closed_and_hold_no_slot,
    silent_peers_are_dropped_and_live_ones_kept,
    messages_are_bounded_like_request_bodies,
    every_refusal_over_the_socket_has_a_code,
    a_refused_connection_init_has_its_code_in_the_reason,
    a_malformed_min_lsn_is_refused_at_connection_init,
);
