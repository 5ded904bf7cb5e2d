//! HTTP wiring: routes, per-request authentication, start-up and graceful
//! shutdown.

mod auth;
mod graphql;
mod playground;
mod websocket;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use axum::http::{HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::config::{ApiLimits, Config, WsLimits};
use crate::domain::auth::{OperatorToken, generate_token};
use crate::schema::{self, WalletSchema};
use crate::store::{Store, StoreOptions};

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    pub schema: WalletSchema,
    pub store: Store,
    pub operator: Arc<OperatorToken>,
    pub ws_limits: WsLimits,
    pub api_limits: ApiLimits,
    /// One permit per open WebSocket connection.
    ws_slots: Arc<Semaphore>,
}

impl AppState {
    pub fn new(store: Store, operator_token: &str) -> AppState {
        AppState::with_limits(
            store,
            operator_token,
            WsLimits::default(),
            ApiLimits::default(),
        )
    }

    pub fn with_ws_limits(store: Store, operator_token: &str, ws_limits: WsLimits) -> AppState {
        AppState::with_limits(store, operator_token, ws_limits, ApiLimits::default())
    }

    pub fn with_limits(
        store: Store,
        operator_token: &str,
        ws_limits: WsLimits,
        api_limits: ApiLimits,
    ) -> AppState {
        AppState {
            schema: schema::build(store.clone(), &api_limits),
            store,
            operator: Arc::new(OperatorToken::new(operator_token)),
            ws_slots: Arc::new(Semaphore::new(ws_limits.max_connections)),
            ws_limits,
            api_limits,
        }
    }
}

/// The routes, with the body limit and CORS around them.
///
/// The body limit is a tower-http layer because async-graphql-axum's
/// extractor reads the body stream itself, past axum's `DefaultBodyLimit`.
pub fn router(state: AppState) -> Router {
    let limits = state.api_limits.clone();
    Router::new()
        .route(
            "/graphql",
            get(websocket::graphql_get).post(graphql::graphql),
        )
        .route("/graphiql/{file}", get(playground::asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_endpoint))
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<axum::body::Body>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::map_response_with_state(
            limits.max_body_bytes,
            graphql::payload_too_large,
        ))
        .layer(cors(&limits.cors_allowed_origins))
}

/// No cross-origin access unless origins are configured.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
}

/// Ready when the database answers and every migration is applied.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    use migration::MigratorTrait;
    let pending = match state.store.ping().await {
        Ok(()) => migration::Migrator::get_pending_migrations(state.store.db())
            .await
            .map(|p| p.len()),
        Err(err) => Err(err),
    };
    match pending {
        Ok(0) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ready" })),
        ),
        Ok(n) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "not ready", "pending_migrations": n })),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "status": "not ready", "database": "unreachable" })),
            )
        }
    }
}

/// Prometheus text format.
async fn metrics_endpoint(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl IntoResponse {
    crate::metrics::record_pool(&state.store);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}

/// Alive: the process answers (200 whatever the database does, so an
/// orchestrator does not restart a healthy process during a database
/// outage); the body reports the database, which `/readyz` gates on.
async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    let database = match state.store.ping().await {
        Ok(()) => "ok",
        Err(err) => {
            tracing::warn!(error = %err, "health check: database unreachable");
            "unreachable"
        }
    };
    axum::Json(serde_json::json!({ "status": "alive", "database": database }))
}

/// Connects, migrates and serves until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let options = StoreOptions {
        max_connections: config.db_max_connections,
        event_buffer: config.subscription_buffer,
        statement_timeout: std::time::Duration::from_millis(config.statement_timeout_ms),
        acquire_timeout: std::time::Duration::from_millis(config.db_acquire_timeout_ms),
    };
    let store = Store::connect_with(config.database_url(), options)
        .await
        .context("connecting to the database")?;
    let operator_token = match config.operator_token.clone() {
        Some(token) if !token.is_empty() => token,
        _ => {
            let token = generate_token()?;
            // Printed once, on purpose: with no OPERATOR_TOKEN this is the
            // only way to learn the operator's token.
            eprintln!("No OPERATOR_TOKEN set; this run's operator token is: {token}");
            token
        }
    };
    crate::metrics::init();
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding {}", config.listen_addr))?;
    tracing::info!(
        address = %listener.local_addr()?,
        backend = ?store.backend(),
        "walletql listening; GraphiQL at http://{}/graphql",
        listener.local_addr()?
    );
    let state = AppState::with_limits(
        store.clone(),
        &operator_token,
        config.ws_limits(),
        config.api_limits(),
    );
    serve(listener, state, shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("shutting down");
    store.close().await.context("closing the database")?;
    Ok(())
}

/// `walletql healthcheck`: asks the server on `addr` for `/readyz` (a plain
/// HTTP/1.0 request: the container image has no curl).
pub async fn healthcheck(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), probe)
        .await
        .context("timed out")?
        .with_context(|| format!("cannot reach {addr}"))?;
    let status = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(status.contains(" 200 "), "{status}");
    Ok(())
}

/// `walletql verify`: audits the ledger, prints the report; `Ok(false)`
/// when any invariant is violated. Connects without migrating or listening.
pub async fn verify(config: &Config) -> anyhow::Result<bool> {
    let db = sea_orm::Database::connect(config.database_url())
        .await
        .context("connecting to the database")?;
    let audit = crate::store::audit::audit(&db)
        .await
        .context("auditing the ledger")?;
    println!("{}", audit.report());
    let clean = audit.is_clean();
    println!(
        "{}",
        if clean {
            "ledger OK"
        } else {
            "LEDGER VIOLATIONS FOUND"
        }
    );
    db.close().await.ok();
    Ok(clean)
}

/// Serves HTTP and WebSocket on `listener` until `shutdown` completes.
///
/// Accepted sockets get TCP_NODELAY (small GraphQL responses should not wait
/// for Nagle) and a bounded kernel send buffer.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let send_buffer = state.ws_limits.socket_send_buffer;
    let listener = listener.tap_io(move |stream| {
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&*stream).set_send_buffer_size(send_buffer);
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
