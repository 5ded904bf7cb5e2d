//! HTTP wiring: routes, per-request authentication, start-up and graceful
//! shutdown.

mod auth;
mod body;
mod callers;
mod graphql;
mod listener;
mod playground;
mod ratelimit;
mod statement;
mod websocket;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use listener::serve;
pub use ratelimit::RateLimiter;

use crate::config::{ApiLimits, Config, WsLimits};
use crate::domain::auth::{OperatorToken, generate_token};
use crate::ledger::{Ledger, LedgerOptions};
use crate::schema::{self, WalletSchema};
use crate::store::{Store, StoreOptions};

/// Everything a request handler needs, behind one `Arc`: axum clones the
/// state for every request (and for each layer that extracts it), and a
/// clone of the fields themselves (the limits hold strings and lists) cost
/// a few percent of a read's CPU in allocations.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What `AppState` shares.
pub struct Shared {
    pub schema: WalletSchema,
    pub ledger: Ledger,
    pub store: Store,
    pub operator: Arc<OperatorToken>,
    pub ws_limits: WsLimits,
    pub api_limits: ApiLimits,
    pub rate_limiter: RateLimiter,
    /// Client tokens already seen (saves a lookup per request).
    callers: Arc<callers::CallerCache>,
    /// One permit per WebSocket connection past `connection_init`.
    ws_slots: Arc<Semaphore>,
}

impl AppState {
    pub fn new(ledger: Ledger, operator_token: &str) -> AppState {
        AppState::with_limits(
            ledger,
            operator_token,
            WsLimits::default(),
            ApiLimits::default(),
        )
    }

    pub fn with_limits(
        ledger: Ledger,
        operator_token: &str,
        ws_limits: WsLimits,
        mut api_limits: ApiLimits,
    ) -> AppState {
        if api_limits.trusted_documents.is_some() {
            // Only listed documents run: nothing to explore.
            api_limits.introspection = false;
            api_limits.graphiql = false;
        }
        let rate_limiter = RateLimiter::new(&api_limits.rate_limits);
        AppState(Arc::new(Shared {
            schema: schema::build(ledger.clone(), &api_limits),
            store: ledger.store().clone(),
            ledger,
            operator: Arc::new(OperatorToken::new(operator_token)),
            ws_slots: Arc::new(Semaphore::new(ws_limits.max_connections)),
            ws_limits,
            api_limits,
            rate_limiter,
            callers: Arc::default(),
        }))
    }
}

/// The routes, with the body limits and CORS around them.
///
/// The body limit is a tower-http layer because async-graphql-axum's
/// extractor reads the body stream itself, past axum's `DefaultBodyLimit`.
pub fn router(state: AppState) -> Router {
    let limits = state.api_limits.clone();
    let mut routes = Router::new()
        .route(
            "/graphql",
            get(websocket::graphql_get).post(graphql::graphql).layer(
                axum::middleware::from_fn_with_state(state.clone(), body::gate),
            ),
        )
        .route("/graphiql/{file}", get(playground::asset))
        .route(
            "/wallets/{wallet_id}/statement.csv",
            get(statement::statement_csv),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if limits.metrics_on_main {
        routes = routes.route("/metrics", get(metrics_endpoint));
    }
    routes
        .with_state(state)
        // The larger limit; `body::gate` keeps the smaller one for all but
        // an authenticated `transferBatch`.
        .layer(RequestBodyLimitLayer::new(
            limits.max_batch_body_bytes.max(limits.max_body_bytes),
        ))
        // A body that trickles in must not hold a connection for ever.
        .layer(RequestBodyTimeoutLayer::new(limits.request_timeout))
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

/// The router of the separate metrics listener (METRICS_LISTEN_ADDR).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_endpoint))
        .with_state(state)
}

/// Refuses origins that are neither `*` nor a valid header value, at start
/// rather than by silently ignoring them.
pub fn check_cors_origins(origins: &[String]) -> anyhow::Result<()> {
    for origin in origins.iter().map(|o| o.trim()) {
        anyhow::ensure!(
            origin == "*" || (origin.starts_with("http") && HeaderValue::from_str(origin).is_ok()),
            "CORS_ALLOWED_ORIGINS: {origin:?} is not an origin such as http://localhost:5173 (or *)"
        );
    }
    Ok(())
}

/// No cross-origin access unless origins are configured; `*` allows any
/// (tokens travel in a header, never in cookies, so no credentials mode).
/// Browser code may send and read `x-request-id`, send `x-min-lsn` and read
/// `x-commit-lsn` (read-your-writes with replicas).
fn cors(origins: &[String]) -> CorsLayer {
    let request_id = HeaderName::from_static("x-request-id");
    let allow = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            request_id.clone(),
            HeaderName::from_static(crate::schema::MIN_LSN_HEADER),
        ])
        .expose_headers([
            request_id,
            HeaderName::from_static(crate::schema::COMMIT_LSN_HEADER),
        ])
}

/// Ready when the database answers (with several hosts: one takes writes)
/// and every migration is applied.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    use migration::MigratorTrait;
    // Several hosts: ready only while one of them takes writes.
    if state.store.primary_writable() == Some(false) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "not ready", "database": "no primary" })),
        );
    }
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

/// Prometheus text format; behind METRICS_TOKEN when one is set.
async fn metrics_endpoint(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if let Some(token) = &state.api_limits.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::bearer_token);
        if !presented.is_some_and(|p| OperatorToken::new(token).matches(p)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need `Authorization: Bearer <METRICS_TOKEN>`",
            )
                .into_response();
        }
    }
    crate::metrics::record_pool(&state.store);
    if let Some(usage) = state.store.notification_queue_usage().await {
        metrics::gauge!("db_notification_queue_usage").set(usage);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
        .into_response()
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
        statement_timeout: std::time::Duration::from_millis(config.statement_timeout_ms),
        acquire_timeout: std::time::Duration::from_millis(config.db_acquire_timeout_ms),
        replicas: crate::store::replicas::ReplicaOptions {
            urls: (config.database_replica_urls.iter())
                .map(|url| url.trim().to_owned())
                .filter(|url| !url.is_empty())
                .collect(),
            max_lag: std::time::Duration::from_millis(config.max_replica_lag_ms),
            wait: std::time::Duration::from_millis(config.replica_wait_ms),
        },
    };
    let store = Store::connect_with(config.database_url(), options)
        .await
        .context("connecting to the database")?;
    let ledger = Ledger::start(
        store.clone(),
        LedgerOptions {
            event_buffer: config.subscription_buffer,
            lanes: config.ledger_lanes,
            max_batch: config.ledger_max_batch,
            key_retention: std::time::Duration::from_secs(
                u64::from(config.idempotency_retention_days) * 24 * 60 * 60,
            ),
            max_open_holds: config.max_open_holds_per_wallet,
            sweep_holds: true,
        },
    )
    .await
    .context("starting the ledger")?;
    check_cors_origins(&config.cors_allowed_origins)?;
    let operator_token = match config.operator_token()? {
        Some(token) => token,
        None => generated_operator_token()?,
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
    let mut api_limits = config.api_limits();
    if let Some(path) = &config.trusted_documents {
        let manifest = crate::schema::load_manifest(path)?;
        tracing::info!(documents = manifest.len(), "running trusted documents only");
        api_limits.trusted_documents = Some(Arc::new(manifest));
    }
    let state = AppState::with_limits(ledger, &operator_token, config.ws_limits(), api_limits);
    state.rate_limiter.spawn_pruning();
    let (stop, stopped) = tokio::sync::watch::channel(());
    if let Some(addr) = config.metrics_listen_addr {
        let metrics_listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding METRICS_LISTEN_ADDR {addr}"))?;
        tracing::info!(address = %metrics_listener.local_addr()?, "metrics listening");
        let app = metrics_router(state.clone());
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            if let Err(err) = axum::serve(metrics_listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %err, "metrics listener failed");
            }
        });
    }
    serve(listener, state, shutdown_signal())
        .await
        .context("serving HTTP")?;
    let _ = stop.send(());
    drop(stopped);
    tracing::info!("shutting down");
    store.close().await.context("closing the database")?;
    Ok(())
}

/// A random operator token for a run without one, written to
/// `walletql.operator-token` (mode 0600) so it never reaches the logs; it is
/// printed only when stderr is a terminal.
fn generated_operator_token() -> anyhow::Result<String> {
    use std::io::{IsTerminal, Write};
    let token = generate_token()?;
    let path = std::path::Path::new("walletql.operator-token");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing the generated operator token to {}", path.display()))?;
    // The mode applies only to a new file: tighten an existing one too.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    writeln!(file, "{token}")?;
    let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    tracing::warn!(
        file = %shown.display(),
        "no OPERATOR_TOKEN set: generated one for this run and wrote it to the file"
    );
    if std::io::stderr().is_terminal() {
        eprintln!("This run's operator token: {token}");
    }
    Ok(token)
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
pub async fn verify(config: &Config, on_replica: bool) -> anyhow::Result<bool> {
    // Statements are not logged: the report is the output.
    let wait = std::time::Duration::from_millis(config.db_acquire_timeout_ms);
    let url = match on_replica {
        true => (config.database_replica_urls.iter())
            .map(|url| url.trim().to_owned())
            .find(|url| !url.is_empty())
            .context("--on-replica needs DATABASE_REPLICA_URLS")?,
        false => {
            (crate::store::resolve(config.database_url(), wait).await)
                .context("finding the database")?
                .0
        }
    };
    let mut options = sea_orm::ConnectOptions::new(url);
    options.sqlx_logging(false);
    let db = sea_orm::Database::connect(options)
        .await
        .context("connecting to the database")?;
    let audit = crate::store::audit::audit_in_one_snapshot(&db)
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
