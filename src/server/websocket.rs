//! GraphQL subscriptions over WebSocket, on the GraphQL endpoint itself.
//!
//! Both `graphql-transport-ws` and the legacy `graphql-ws` protocol are
//! spoken. The caller authenticates in the `connection_init` payload
//! (`{"Authorization": "Bearer <token>"}`), which must arrive within
//! `WS_INIT_TIMEOUT_SECS`; only then does the connection take one of the
//! `MAX_WS_CONNECTIONS` slots, so sockets that never initialise cannot lock
//! subscribers out. The same rules as HTTP apply: messages are bounded by
//! `MAX_BODY_BYTES`, `connection_init` spends the caller's rate budget, and
//! only subscriptions run here (queries and mutations are refused with a
//! code). The server pings every `WS_KEEPALIVE_SECS` and drops a peer silent
//! for two of them, and closes a connection whose client stops reading.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt, future};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::AppState;
use super::auth::authenticate_value;
use super::listener::Peer;
use crate::domain::error::AppError;
use crate::schema::{SubscriptionSlots, Transport, new_loader};
use crate::store::reader::Reader;
use crate::store::replicas::Lsn;

/// `GET /graphql`: a WebSocket upgrade for subscriptions, the playground for
/// a browser asking for HTML, a GraphQL query otherwise.
pub async fn graphql_get(State(state): State<AppState>, peer: Peer, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    if let Some(protocol) = protocol(&parts.headers) {
        if !origin_allowed(&parts.headers, &state.api_limits.cors_allowed_origins) {
            return super::graphql::refused(AppError::ForbiddenOrigin);
        }
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
        let max = state.api_limits.max_body_bytes;
        let address = peer.0;
        return upgrade
            .protocols(ALL_WEBSOCKET_PROTOCOLS)
            .max_message_size(max)
            .max_frame_size(max)
            .on_upgrade(move |socket| serve(socket, state, protocol, address));
    }
    if wants_html(&parts.headers) {
        return super::playground::page(&state);
    }
    super::graphql::graphql_get(&state, peer, &parts.headers, parts.uri.query()).await
}

/// Whether a WebSocket upgrade may be served to the page it comes from.
/// Browsers send `Origin` with every upgrade and CORS does not apply to
/// WebSockets, so this is the check that keeps other sites' pages out: no
/// `Origin` (not a browser), the server's own (the bundled GraphiQL), or
/// one of `CORS_ALLOWED_ORIGINS` (`*` allows any).
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let own = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .is_some_and(|host| {
            [("http://", host), ("https://", host)]
                .iter()
                .any(|(scheme, host)| origin.strip_prefix(scheme) == Some(host))
        });
    own || allowed
        .iter()
        .map(|o| o.trim())
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
}

/// A browser navigating to the endpoint (its Accept starts with text/html).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The GraphQL WebSocket protocol the client asked for, if any.
fn protocol(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|name| name.trim().parse().ok())
}

/// What the input side of a connection tells the loop serving it.
#[derive(Default)]
struct Connection {
    /// `connection_init` was accepted.
    initialised: AtomicBool,
    /// A message was larger than MAX_BODY_BYTES.
    too_big: AtomicBool,
    /// When the peer last sent anything (pongs included).
    last_seen: std::sync::Mutex<Option<Instant>>,
}

impl Connection {
    fn seen(&self) {
        if let Ok(mut last) = self.last_seen.lock() {
            *last = Some(Instant::now());
        }
    }

    fn silent_for(&self) -> Duration {
        self.last_seen
            .lock()
            .ok()
            .and_then(|last| *last)
            .map_or(Duration::ZERO, |at| at.elapsed())
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn serve(
    socket: WebSocket,
    state: AppState,
    protocol: WebSocketProtocols,
    address: Option<SocketAddr>,
) {
    let (mut sink, stream) = socket.split();
    let peer = Arc::new(Connection::default());
    peer.seen();
    let input_peer = peer.clone();
    let input = stream
        .inspect(move |message| match message {
            Ok(_) => input_peer.seen(),
            Err(err) => {
                if matches!(
                    std::error::Error::source(err)
                        .and_then(|e| e.downcast_ref::<tungstenite::Error>()),
                    Some(tungstenite::Error::Capacity(_))
                ) {
                    input_peer.too_big.store(true, Ordering::Release);
                }
            }
        })
        .take_while(|message| future::ready(message.is_ok()))
        .filter_map(|message| {
            future::ready(match message {
                Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        });
    let init_state = state.clone();
    let init_peer = peer.clone();
    let output = async_graphql::http::WebSocket::new(state.schema.clone(), input, protocol)
        .on_connection_init(move |payload| {
            connection_init(init_state, init_peer, address, payload)
        });
    futures_util::pin_mut!(output);
    let limits = &state.ws_limits;
    let init_deadline = tokio::time::sleep(limits.init_timeout);
    tokio::pin!(init_deadline);
    let mut keepalive =
        tokio::time::interval_at(Instant::now() + limits.keepalive, limits.keepalive);
    loop {
        let message = tokio::select! {
            message = output.next() => match message {
                Some(WsMessage::Text(text)) => Message::Text(text.into()),
                Some(WsMessage::Close(code, reason)) => close(code, &reason),
                None if peer.too_big.load(Ordering::Acquire) => {
                    close(1009, &format!("a message is larger than {} bytes", state.api_limits.max_body_bytes))
                }
                None => break,
            },
            () = &mut init_deadline, if !peer.initialised.load(Ordering::Acquire) => {
                // graphql-transport-ws: 4408 Connection initialisation timeout.
                close(4408, "Connection initialisation timeout")
            }
            _ = keepalive.tick() => {
                if peer.silent_for() > limits.keepalive * 2 {
                    tracing::debug!("dropping a silent WebSocket peer");
                    break;
                }
                Message::Ping(Default::default())
            }
        };
        let closing = matches!(message, Message::Close(_));
        // The sink waits while the client does not read; past the timeout the
        // connection is dropped rather than left holding server resources.
        match tokio::time::timeout(limits.send_timeout, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::warn!("closing a WebSocket whose client stopped reading");
                break;
            }
        }
        if closing {
            break;
        }
    }
}

/// A connection slot, held for as long as the connection's data lives.
struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// Authenticates the connection from its `connection_init` payload, spends
/// one request of the caller's rate budget, takes a connection slot, and
/// gives the connection what its subscriptions need.
async fn connection_init(
    state: AppState,
    peer: Arc<Connection>,
    address: Option<SocketAddr>,
    payload: serde_json::Value,
) -> async_graphql::Result<Data> {
    let refuse = |err: AppError| {
        // Refusals at connection time carry the code in the message: the
        // protocols have no other place for it.
        async_graphql::Error::new(format!("{}: {err}", err.code()))
    };
    let value = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"));
    let caller = match value {
        None | Some(serde_json::Value::Null) => Ok(crate::domain::auth::Caller::Anonymous),
        Some(value) => authenticate_value(&state, value.as_str(), address.map(|a| a.ip())).await,
    }
    .map_err(refuse)?;
    state
        .rate_limiter
        .check(&caller, address.map(|a| a.ip()))
        .map_err(refuse)?;
    let Ok(permit) = state.ws_slots.clone().try_acquire_owned() else {
        tracing::warn!(
            max = state.ws_limits.max_connections,
            "refusing a WebSocket: too many connections"
        );
        return Err(refuse(AppError::TooManyConnections(
            state.ws_limits.max_connections,
        )));
    };
    let floor = match payload.get("minLsn") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(
            value
                .as_str()
                .ok_or_else(|| "minLsn: not a string".to_owned())
                .and_then(str::parse::<Lsn>)
                .map_err(|err| refuse(AppError::invalid(format!("minLsn: {err}"))))?,
        ),
    };
    // Subscriptions read on the primary (what they read feeds a live
    // stream), but for their replays (`Reader::for_replay`).
    let reader = Reader::new(state.store.clone(), caller.identity(), floor);
    reader.pin_to_primary();
    let mut data = Data::default();
    data.insert(caller);
    data.insert(new_loader(reader));
    data.insert(SubscriptionSlots::new(
        state.ws_limits.max_subscriptions_per_connection,
    ));
    data.insert(Transport::WebSocket);
    data.insert(Slot(permit));
    peer.initialised.store(true, Ordering::Release);
    Ok(data)
}
