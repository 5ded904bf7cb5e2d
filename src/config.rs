//! Configuration, from flags or the environment: `walletql --help` lists it all.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

/// The embedded database used when `DATABASE_URL` is not set: a SQLite file in
/// the working directory, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://walletql.db?mode=rwc";

#[derive(Parser, Debug)]
#[command(
    name = "walletql",
    version,
    about = "A wallet and payment service with a GraphQL API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Print the GraphQL schema (SDL) and exit.
    PrintSchema,
    /// Check every invariant of the ledger; exits non-zero on any violation.
    Verify,
    /// Ask the running server at LISTEN_ADDR whether it is ready (for
    /// container health checks); exits non-zero if not.
    Healthcheck,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Limits on live subscriptions over WebSocket.
#[derive(Clone, Debug)]
pub struct WsLimits {
    pub max_connections: usize,
    pub max_subscriptions_per_connection: usize,
    pub send_timeout: std::time::Duration,
    /// The kernel's send buffer per connection, in bytes: with the event
    /// buffer, what a client that stops reading can hold up.
    pub socket_send_buffer: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            max_connections: 1024,
            max_subscriptions_per_connection: 16,
            send_timeout: std::time::Duration::from_secs(10),
            socket_send_buffer: 256 * 1024,
        }
    }
}

#[derive(Parser, Debug, Clone)]
pub struct Config {
    /// Database to use: postgres://user@host/db for production, or
    /// sqlite://path?mode=rwc for the embedded backend [default: an embedded
    /// SQLite file, walletql.db]
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "LISTEN_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen_addr: SocketAddr,

    /// Token of the operator, who may deposit and read everything. When unset,
    /// a random one is generated at start and printed.
    #[arg(long, env = "OPERATOR_TOKEN", hide_env_values = true, global = true)]
    pub operator_token: Option<String>,

    /// Largest number of database connections the server keeps open.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10, global = true)]
    pub db_max_connections: u32,

    /// Most WebSocket connections served at once; more are refused with 503.
    #[arg(
        long,
        env = "MAX_WS_CONNECTIONS",
        default_value_t = 1024,
        global = true
    )]
    pub max_ws_connections: usize,

    /// Most subscriptions one WebSocket connection may hold at once.
    #[arg(
        long,
        env = "MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 16,
        global = true
    )]
    pub max_subscriptions_per_connection: usize,

    /// Events a subscriber may fall behind by before it is told
    /// (SUBSCRIPTION_LAGGED) and dropped; it resumes with its last cursor.
    #[arg(
        long,
        env = "SUBSCRIPTION_BUFFER",
        default_value_t = 256,
        global = true
    )]
    pub subscription_buffer: usize,

    /// Seconds a WebSocket client may leave a message unread before the
    /// server closes the connection.
    #[arg(
        long,
        env = "WS_SEND_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub ws_send_timeout_secs: u64,

    /// Kernel send buffer per connection, in bytes (bounds what a client that
    /// stops reading holds up).
    #[arg(
        long,
        env = "SOCKET_SEND_BUFFER",
        default_value_t = 262144,
        global = true
    )]
    pub socket_send_buffer: usize,

    /// Deepest nesting of fields a query may have.
    #[arg(long, env = "MAX_QUERY_DEPTH", default_value_t = 12, global = true)]
    pub max_query_depth: usize,

    /// Highest complexity a query may have (each field counts 1, a page of
    /// n items counts n times its fields).
    #[arg(
        long,
        env = "MAX_QUERY_COMPLEXITY",
        default_value_t = 5000,
        global = true
    )]
    pub max_query_complexity: usize,

    /// Largest `first`/`last` of a page.
    #[arg(long, env = "MAX_PAGE_SIZE", default_value_t = 100, global = true)]
    pub max_page_size: usize,

    /// Largest request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 65536, global = true)]
    pub max_body_bytes: usize,

    /// Seconds a request may take before it is answered with TIMEOUT.
    #[arg(
        long,
        env = "REQUEST_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    pub request_timeout_secs: u64,

    /// Milliseconds one SQL statement may run (PostgreSQL statement_timeout).
    #[arg(
        long,
        env = "STATEMENT_TIMEOUT_MS",
        default_value_t = 5000,
        global = true
    )]
    pub statement_timeout_ms: u64,

    /// Milliseconds a request waits for a free database connection before it
    /// is refused with SERVICE_UNAVAILABLE.
    #[arg(
        long,
        env = "DB_ACQUIRE_TIMEOUT_MS",
        default_value_t = 2000,
        global = true
    )]
    pub db_acquire_timeout_ms: u64,

    /// Turn off schema introspection (for production).
    #[arg(long, env = "DISABLE_INTROSPECTION", global = true)]
    pub disable_introspection: bool,

    /// Turn off the GraphiQL playground (for production).
    #[arg(long, env = "DISABLE_GRAPHIQL", global = true)]
    pub disable_graphiql: bool,

    /// Origins allowed to call the API from a browser (comma-separated);
    /// none by default, so no cross-origin page can.
    #[arg(
        long,
        env = "CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub cors_allowed_origins: Vec<String>,

    /// Log format; `RUST_LOG` picks what is logged.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Limits on HTTP requests and GraphQL documents.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_page_size: usize,
    pub max_body_bytes: usize,
    pub request_timeout: std::time::Duration,
    pub introspection: bool,
    pub graphiql: bool,
    pub cors_allowed_origins: Vec<String>,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_depth: 12,
            max_complexity: 5000,
            max_page_size: 100,
            max_body_bytes: 64 * 1024,
            request_timeout: std::time::Duration::from_secs(30),
            introspection: true,
            graphiql: true,
            cors_allowed_origins: Vec::new(),
        }
    }
}

impl Config {
    /// The HTTP and GraphQL limits this configuration sets.
    pub fn api_limits(&self) -> ApiLimits {
        ApiLimits {
            max_depth: self.max_query_depth,
            max_complexity: self.max_query_complexity,
            max_page_size: self.max_page_size,
            max_body_bytes: self.max_body_bytes,
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            introspection: !self.disable_introspection,
            graphiql: !self.disable_graphiql,
            cors_allowed_origins: self.cors_allowed_origins.clone(),
        }
    }

    /// The WebSocket limits this configuration sets.
    pub fn ws_limits(&self) -> WsLimits {
        WsLimits {
            max_connections: self.max_ws_connections,
            max_subscriptions_per_connection: self.max_subscriptions_per_connection,
            send_timeout: std::time::Duration::from_secs(self.ws_send_timeout_secs),
            socket_send_buffer: self.socket_send_buffer,
        }
    }

    pub fn database_url(&self) -> &str {
        self.database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL)
    }
}
