//! The accept loop: HTTP/1.1 (with WebSocket upgrades) served by hyper
//! directly, because `axum::serve` sets no timer, so a connection that sends
//! its headers byte by byte, or sits idle between requests, would be kept for
//! ever. Here each connection has a header read timeout, which also closes
//! idle keep-alive connections.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

use super::{AppState, router};

/// Serves HTTP and WebSocket on `listener` until `shutdown` completes, then
/// lets open requests finish (WebSockets are closed).
///
/// Accepted sockets get TCP_NODELAY (small GraphQL responses should not wait
/// for Nagle) and a bounded kernel send buffer.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let send_buffer = state.ws_limits.socket_send_buffer;
    let header_timeout = state.api_limits.header_timeout;
    let app = router(state);
    // Every connection holds a receiver: shutdown is announced by sending,
    // and is complete when all receivers are gone.
    let (shutting_down, connections) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tune(&stream, send_buffer);
        let app = app.clone();
        let service = tower::service_fn(move |mut request: hyper::Request<Incoming>| {
            // What `into_make_service_with_connect_info` would give handlers.
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .with_upgrades();
        let mut shutdown_seen = connections.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let stopping = async {
                let _ = shutdown_seen.wait_for(|stop| *stop).await;
            };
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stopping => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
            drop(shutdown_seen);
        });
    }
    drop(listener);
    drop(connections);
    let _ = shutting_down.send(true);
    shutting_down.closed().await;
    Ok(())
}

fn tune(stream: &TcpStream, send_buffer: usize) {
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(stream).set_send_buffer_size(send_buffer);
}

/// The peer's address, for handlers (set by [`serve`]; absent elsewhere).
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
        ))
    }
}
