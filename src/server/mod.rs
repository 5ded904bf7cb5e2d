//! HTTP wiring: routes, per-request authentication, start-up and graceful
//! shutdown.

mod auth;
mod graphql;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::domain::auth::{OperatorToken, generate_token};
use crate::schema::{self, WalletSchema};
use crate::store::Store;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    pub schema: WalletSchema,
    pub store: Store,
    pub operator: Arc<OperatorToken>,
}

impl AppState {
    pub fn new(store: Store, operator_token: &str) -> AppState {
        AppState {
            schema: schema::build(store.clone()),
            store,
            operator: Arc::new(OperatorToken::new(operator_token)),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/graphql", get(graphql::graphiql).post(graphql::graphql))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Healthy when the database answers.
async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ok" })),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    serde_json::json!({ "status": "unavailable", "database": "unreachable" }),
                ),
            )
        }
    }
}

/// Connects, migrates and serves until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = Store::connect(config.database_url(), config.db_max_connections)
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
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding {}", config.listen_addr))?;
    tracing::info!(
        address = %listener.local_addr()?,
        backend = ?store.backend(),
        "walletql listening; GraphiQL at http://{}/graphql",
        listener.local_addr()?
    );
    let state = AppState::new(store.clone(), &operator_token);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("shutting down");
    store.close().await.context("closing the database")?;
    Ok(())
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
