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
}

impl Config {
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
