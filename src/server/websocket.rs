//! GraphQL subscriptions over WebSocket, on the GraphQL endpoint itself.
//!
//! Both `graphql-transport-ws` and the legacy `graphql-ws` protocol are
//! spoken. The caller authenticates in the `connection_init` payload
//! (`{"Authorization": "Bearer <token>"}`). Limits: a cap on connections per
//! server, on subscriptions per connection, and a timeout on each message a
//! client leaves unread, after which the connection is closed.

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt, future};
use tokio::sync::OwnedSemaphorePermit;

use super::AppState;
use super::auth::authenticate_value;
use crate::domain::error::AppError;
use crate::schema::{SubscriptionSlots, new_loader};

/// `GET /graphql`: a WebSocket upgrade for subscriptions, GraphiQL otherwise.
pub async fn graphql_get(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let protocol = protocol(&parts.headers);
    let Some(protocol) = protocol else {
        return super::playground::page(&state);
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(_) => return super::playground::page(&state),
    };
    let Ok(permit) = state.ws_slots.clone().try_acquire_owned() else {
        tracing::warn!(
            max = state.ws_limits.max_connections,
            "refusing a WebSocket: too many connections"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many WebSocket connections",
        )
            .into_response();
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(socket, state, protocol, permit))
}

/// The GraphQL WebSocket protocol the client asked for, if any.
fn protocol(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|name| name.trim().parse().ok())
}

async fn serve(
    socket: WebSocket,
    state: AppState,
    protocol: WebSocketProtocols,
    _permit: OwnedSemaphorePermit,
) {
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|message| future::ready(message.is_ok()))
        .filter_map(|message| {
            future::ready(match message {
                Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        });
    let init_state = state.clone();
    let output = async_graphql::http::WebSocket::new(state.schema.clone(), input, protocol)
        .on_connection_init(move |payload| connection_init(init_state, payload));
    futures_util::pin_mut!(output);
    while let Some(message) = output.next().await {
        let message = match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        };
        // The sink waits while the client does not read; past the timeout the
        // connection is dropped rather than left holding server resources.
        match tokio::time::timeout(state.ws_limits.send_timeout, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::warn!("closing a WebSocket whose client stopped reading");
                break;
            }
        }
    }
}

/// Authenticates the connection from its `connection_init` payload and gives
/// it what its subscriptions need: the caller, a DataLoader, the slot count.
async fn connection_init(
    state: AppState,
    payload: serde_json::Value,
) -> async_graphql::Result<Data> {
    let value = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"));
    let caller = match value {
        None | Some(serde_json::Value::Null) => Ok(crate::domain::auth::Caller::Anonymous),
        Some(value) => authenticate_value(&state, value.as_str()).await,
    };
    let caller = caller.map_err(|err: AppError| {
        // Refusals at connection time carry the code in the message: the
        // protocols have no other place for it.
        async_graphql::Error::new(format!("{}: {err}", err.code()))
    })?;
    let mut data = Data::default();
    data.insert(caller);
    data.insert(new_loader(state.store.clone()));
    data.insert(SubscriptionSlots::new(
        state.ws_limits.max_subscriptions_per_connection,
    ));
    Ok(data)
}
