//! A small GraphQL-over-WebSocket client for the tests, speaking both
//! `graphql-transport-ws` and the legacy `graphql-ws`.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{WebSocketStream, client_async};

pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY_WS: &str = "graphql-ws";

pub const OPERATION_CREATED: &str = "subscription($w: UUID, $after: String) {
    operationCreated(walletId: $w, after: $after) { id walletId sequence kind amount balanceAfter cursor counterparty { walletId } } }";

pub struct WsClient {
    socket: WebSocketStream<tokio::net::TcpStream>,
    protocol: &'static str,
    /// Messages of other subscriptions, kept for their own `next_event`.
    held: Vec<Value>,
}

/// What the server said about a subscription.
#[derive(Debug)]
pub enum Event {
    Data(Value),
    Errors(Value),
    Complete,
    /// The connection ended.
    Closed(String),
}

impl WsClient {
    /// Connects and completes `connection_init`; `Err` carries the refusal.
    pub async fn connect(
        addr: SocketAddr,
        protocol: &'static str,
        token: Option<&str>,
    ) -> Result<WsClient, String> {
        WsClient::connect_with_buffer(addr, protocol, token, None).await
    }

    /// Like `connect`, with a small receive buffer, so a client that stops
    /// reading pushes back on the server quickly.
    pub async fn connect_with_buffer(
        addr: SocketAddr,
        protocol: &'static str,
        token: Option<&str>,
        recv_buffer: Option<u32>,
    ) -> Result<WsClient, String> {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        if let Some(size) = recv_buffer {
            socket
                .set_recv_buffer_size(size)
                .map_err(|e| e.to_string())?;
        }
        let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
        let mut request = format!("ws://{addr}/graphql")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
        let (socket, _) = client_async(request, stream)
            .await
            .map_err(|e| e.to_string())?;
        let mut client = WsClient {
            socket,
            protocol,
            held: Vec::new(),
        };
        let payload = match token {
            Some(token) => json!({ "Authorization": format!("Bearer {token}") }),
            None => json!({}),
        };
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        loop {
            match client.receive(Duration::from_secs(10)).await {
                Some(message) if message["type"] == "connection_ack" => return Ok(client),
                Some(message) if message["type"] == "ka" => continue,
                Some(message) => return Err(message.to_string()),
                None => return Err("no answer to connection_init".to_owned()),
            }
        }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send over WebSocket");
    }

    /// The next JSON message, or `None` when the connection ended or nothing
    /// came within `wait`. A close frame becomes `{"type": "close", ...}`.
    pub async fn receive(&mut self, wait: Duration) -> Option<Value> {
        // One deadline for the whole wait: the server's pings (skipped here)
        // must not extend it.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(json!({ "type": "close", "reason": "ended" })),
                Ok(Some(Err(err))) => {
                    return Some(json!({ "type": "close", "reason": err.to_string() }));
                }
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => return serde_json::from_str(&text).ok(),
                Message::Close(frame) => {
                    let (code, reason) = frame.map_or((0, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    });
                    return Some(json!({ "type": "close", "code": code, "reason": reason }));
                }
                _ => continue,
            }
        }
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.protocol == TRANSPORT_WS {
            "subscribe"
        } else {
            "start"
        };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next thing the server says about subscription `id`.
    pub async fn next_event(&mut self, id: &str, wait: Duration) -> Event {
        loop {
            let held = self
                .held
                .iter()
                .position(|m| m["id"] == id)
                .map(|i| self.held.remove(i));
            let message = match held {
                Some(message) => message,
                None => match self.receive(wait).await {
                    Some(message) => message,
                    None => return Event::Closed("no message".to_owned()),
                },
            };
            match message["type"].as_str() {
                Some("close") => return Event::Closed(message.to_string()),
                Some("ka" | "ping" | "pong") => continue,
                _ if message["id"] != id => {
                    self.held.push(message);
                    continue;
                }
                Some("next" | "data") => {
                    let payload = &message["payload"];
                    if payload.get("errors").is_some() {
                        return Event::Errors(payload["errors"].clone());
                    }
                    // The subscription's one root field, whichever it is.
                    let data = payload["data"].as_object();
                    let field = data.and_then(|fields| fields.values().next());
                    return Event::Data(field.cloned().unwrap_or(Value::Null));
                }
                Some("error") => return Event::Errors(message["payload"].clone()),
                Some("complete") => return Event::Complete,
                _ => continue,
            }
        }
    }

    /// The next operation of subscription `id`, failing the test on anything else.
    pub async fn next_operation(&mut self, id: &str) -> Value {
        match self.next_event(id, Duration::from_secs(10)).await {
            Event::Data(operation) => operation,
            other => panic!("expected an operation, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives for `wait`.
    pub async fn assert_silent(&mut self, id: &str, wait: Duration) {
        match self.next_event(id, wait).await {
            Event::Closed(reason) if reason == "no message" => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }
}

/// The error code of a refused subscription.
pub fn refusal_code(event: &Event) -> String {
    match event {
        Event::Errors(errors) => errors[0]["extensions"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
