//! Configuration, from flags or the environment: `walletql --help` lists it all.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    Verify {
        /// Audit on the first of DATABASE_REPLICA_URLS: its one long
        /// snapshot then holds nothing back on the primary.
        #[arg(long)]
        on_replica: bool,
    },
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

/// Shortest operator token accepted: a guessable operator token is every
/// wallet's key.
pub const MIN_OPERATOR_TOKEN_CHARS: usize = 32;

/// Limits on live subscriptions over WebSocket.
#[derive(Clone, Debug)]
pub struct WsLimits {
    /// Connections that have completed `connection_init`.
    pub max_connections: usize,
    /// Time a new connection has to send `connection_init`.
    pub init_timeout: std::time::Duration,
    /// Interval of the server's pings; a peer silent for two is dropped.
    pub keepalive: std::time::Duration,
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
            init_timeout: std::time::Duration::from_secs(5),
            keepalive: std::time::Duration::from_secs(30),
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

    /// Streaming replicas that serve reads (comma-separated PostgreSQL
    /// URLs): queries and subscription replays go to one when it is fresh
    /// enough; writes never do.
    #[arg(
        long,
        env = "DATABASE_REPLICA_URLS",
        value_delimiter = ',',
        global = true
    )]
    pub database_replica_urls: Vec<String>,

    /// Milliseconds a replica may be behind the primary and still serve a
    /// read; past it, reads go to the primary.
    #[arg(
        long,
        env = "MAX_REPLICA_LAG_MS",
        default_value_t = 1000,
        global = true
    )]
    pub max_replica_lag_ms: u64,

    /// Milliseconds a read waits for a replica to replay a position it must
    /// see (the caller's last write, `x-min-lsn`) before the primary serves it.
    #[arg(long, env = "REPLICA_WAIT_MS", default_value_t = 20, global = true)]
    pub replica_wait_ms: u64,

    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "LISTEN_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen_addr: SocketAddr,

    /// Token of the operator, who may deposit and read everything (at least
    /// 32 characters). Prefer OPERATOR_TOKEN_FILE: a flag shows in `ps`. When
    /// neither is set, a random one is generated and written to
    /// walletql.operator-token (mode 0600) in the working directory.
    #[arg(long, env = "OPERATOR_TOKEN", hide_env_values = true, global = true)]
    pub operator_token: Option<String>,

    /// File holding the operator token (the container convention for
    /// secrets, e.g. /run/secrets/operator_token).
    #[arg(
        long,
        env = "OPERATOR_TOKEN_FILE",
        global = true,
        conflicts_with = "operator_token"
    )]
    pub operator_token_file: Option<PathBuf>,

    /// Largest number of database connections the server keeps open.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10, global = true)]
    pub db_max_connections: u32,

    /// Most WebSocket connections served at once, counted once they complete
    /// `connection_init`; more are refused.
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

    /// Batches the posting engine commits at once on PostgreSQL: while one
    /// waits for its commit, the next gathers and runs (SQLite has one).
    #[arg(long, env = "LEDGER_LANES", default_value_t = crate::ledger::DEFAULT_LANES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64), global = true)]
    pub ledger_lanes: usize,

    /// Most entries (deposits, transfers) committed in one transaction.
    #[arg(long, env = "LEDGER_MAX_BATCH", default_value_t = crate::ledger::DEFAULT_MAX_BATCH, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096), global = true)]
    pub ledger_max_batch: usize,

    /// Pending (authorised, not yet captured or voided) transfers a payer
    /// may have at once; beyond it, TOO_MANY_HOLDS.
    #[arg(long, env = "MAX_OPEN_HOLDS_PER_WALLET", default_value_t = crate::ledger::DEFAULT_MAX_OPEN_HOLDS, value_parser = clap::value_parser!(i32).range(1..=1_000_000), global = true)]
    pub max_open_holds_per_wallet: i32,

    /// Days an idempotency key is kept; older keys are pruned in the
    /// background and may be used again.
    #[arg(long, env = "IDEMPOTENCY_RETENTION_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650), global = true)]
    pub idempotency_retention_days: u32,

    /// Committed batches (each one message per subscriber, however many
    /// operations) a subscriber may fall behind by before it is told
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

    /// Seconds a new WebSocket connection has to send `connection_init`
    /// before it is closed (4408).
    #[arg(long, env = "WS_INIT_TIMEOUT_SECS", default_value_t = 5, global = true)]
    pub ws_init_timeout_secs: u64,

    /// Seconds between the server's WebSocket pings; a peer that sends
    /// nothing (not even a pong) for two of them is dropped.
    #[arg(long, env = "WS_KEEPALIVE_SECS", default_value_t = 30, global = true)]
    pub ws_keepalive_secs: u64,

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

    /// Deepest nesting inside introspection (`__schema`, `__type`): the
    /// standard introspection query of GraphiQL and codegen tools needs 13.
    #[arg(
        long,
        env = "MAX_INTROSPECTION_DEPTH",
        default_value_t = 20,
        global = true
    )]
    pub max_introspection_depth: usize,

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

    /// Largest request body (and WebSocket message), in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 65536, global = true)]
    pub max_body_bytes: usize,

    /// Largest body of an authenticated request whose document is one
    /// `transferBatch` (up to 1,000 transfers), in bytes.
    #[arg(
        long,
        env = "MAX_BATCH_BODY_BYTES",
        default_value_t = 524288,
        global = true
    )]
    pub max_batch_body_bytes: usize,

    /// Queries kept for Apollo's automatic persisted queries (by SHA-256
    /// hash, least recently used out first); 0 turns APQ off.
    #[arg(long, env = "APQ_CACHE_SIZE", default_value_t = 1000, global = true)]
    pub apq_cache_size: usize,

    /// A trusted-documents manifest (JSON: id -> document, as graphql-codegen's
    /// client preset writes it): only listed documents run (the operator is
    /// exempt), APQ registration, GraphiQL and introspection are off.
    #[arg(long, env = "TRUSTED_DOCUMENTS", global = true)]
    pub trusted_documents: Option<std::path::PathBuf>,

    /// Most mutation fields one request may run (aliases and fragments
    /// counted); each spends one unit of the caller's rate budget.
    #[arg(
        long,
        env = "MAX_MUTATIONS_PER_REQUEST",
        default_value_t = 10,
        global = true
    )]
    pub max_mutations_per_request: usize,

    /// Seconds a request may take before it is answered with TIMEOUT (a
    /// mutation's fields that had not started by then are refused with
    /// TIMEOUT; those that committed are answered).
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

    /// Seconds a connection may take to send a request's headers; an idle
    /// keep-alive connection is closed after as long. A request body must
    /// arrive within REQUEST_TIMEOUT_SECS.
    #[arg(
        long,
        env = "HTTP_HEADER_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub http_header_timeout_secs: u64,

    /// Requests per second allowed per client token (bursts of twice as
    /// many); 0 turns the limit off. The operator is not limited.
    #[arg(
        long,
        env = "RATE_LIMIT_PER_TOKEN",
        default_value_t = 100,
        global = true
    )]
    pub rate_limit_per_token: u32,

    /// Requests per second allowed per peer address for calls without a
    /// token, such as createClient (bursts of twice as many); 0 turns the
    /// limit off. Behind a proxy every caller has the proxy's address.
    #[arg(
        long,
        env = "RATE_LIMIT_ANONYMOUS",
        default_value_t = 10,
        global = true
    )]
    pub rate_limit_anonymous: u32,

    /// Token that `/metrics` requires (`Authorization: Bearer <token>`);
    /// open when unset.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true, global = true)]
    pub metrics_token: Option<String>,

    /// Serve `/metrics` on this address only (e.g. a private interface)
    /// instead of on LISTEN_ADDR.
    #[arg(long, env = "METRICS_LISTEN_ADDR", global = true)]
    pub metrics_listen_addr: Option<SocketAddr>,

    /// Turn off schema introspection (for production).
    #[arg(long, env = "DISABLE_INTROSPECTION", global = true)]
    pub disable_introspection: bool,

    /// Turn off the GraphiQL playground (for production).
    #[arg(long, env = "DISABLE_GRAPHIQL", global = true)]
    pub disable_graphiql: bool,

    /// Origins allowed to call the API from a browser (comma-separated, e.g.
    /// http://localhost:5173), or `*` for any; none by default, so no
    /// cross-origin page can.
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

/// Request budgets (see `server::ratelimit`); 0 means no limit.
#[derive(Clone, Copy, Debug)]
pub struct RateLimits {
    pub per_token: u32,
    pub anonymous_per_address: u32,
}

impl RateLimits {
    pub const OFF: RateLimits = RateLimits {
        per_token: 0,
        anonymous_per_address: 0,
    };
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_token: 100,
            anonymous_per_address: 10,
        }
    }
}

/// Limits on HTTP requests and GraphQL documents.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    pub max_depth: usize,
    pub max_introspection_depth: usize,
    pub max_complexity: usize,
    pub max_page_size: usize,
    pub max_body_bytes: usize,
    pub max_batch_body_bytes: usize,
    pub max_mutations_per_request: usize,
    pub apq_cache_size: usize,
    /// The trusted documents, when only they may run.
    pub trusted_documents: Option<std::sync::Arc<crate::schema::Manifest>>,
    pub request_timeout: std::time::Duration,
    pub header_timeout: std::time::Duration,
    pub rate_limits: RateLimits,
    pub introspection: bool,
    pub graphiql: bool,
    pub cors_allowed_origins: Vec<String>,
    /// What `/metrics` requires, if anything.
    pub metrics_token: Option<String>,
    /// Whether `/metrics` is on the main listener.
    pub metrics_on_main: bool,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_depth: 12,
            max_introspection_depth: 20,
            max_complexity: 5000,
            max_page_size: 100,
            max_body_bytes: 64 * 1024,
            max_batch_body_bytes: 512 * 1024,
            max_mutations_per_request: 10,
            apq_cache_size: 1000,
            trusted_documents: None,
            request_timeout: std::time::Duration::from_secs(30),
            header_timeout: std::time::Duration::from_secs(10),
            rate_limits: RateLimits::default(),
            introspection: true,
            graphiql: true,
            cors_allowed_origins: Vec::new(),
            metrics_token: None,
            metrics_on_main: true,
        }
    }
}

impl Config {
    /// The HTTP and GraphQL limits this configuration sets.
    pub fn api_limits(&self) -> ApiLimits {
        ApiLimits {
            max_depth: self.max_query_depth,
            max_introspection_depth: self.max_introspection_depth,
            max_complexity: self.max_query_complexity,
            max_page_size: self.max_page_size,
            max_body_bytes: self.max_body_bytes,
            max_batch_body_bytes: self.max_batch_body_bytes.max(self.max_body_bytes),
            max_mutations_per_request: self.max_mutations_per_request,
            apq_cache_size: self.apq_cache_size,
            trusted_documents: None,
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            header_timeout: std::time::Duration::from_secs(self.http_header_timeout_secs),
            rate_limits: RateLimits {
                per_token: self.rate_limit_per_token,
                anonymous_per_address: self.rate_limit_anonymous,
            },
            introspection: !self.disable_introspection,
            graphiql: !self.disable_graphiql,
            cors_allowed_origins: self.cors_allowed_origins.clone(),
            metrics_token: self.metrics_token.clone().filter(|t| !t.is_empty()),
            metrics_on_main: self.metrics_listen_addr.is_none(),
        }
    }

    /// The WebSocket limits this configuration sets.
    pub fn ws_limits(&self) -> WsLimits {
        WsLimits {
            max_connections: self.max_ws_connections,
            init_timeout: std::time::Duration::from_secs(self.ws_init_timeout_secs),
            keepalive: std::time::Duration::from_secs(self.ws_keepalive_secs),
            max_subscriptions_per_connection: self.max_subscriptions_per_connection,
            send_timeout: std::time::Duration::from_secs(self.ws_send_timeout_secs),
            socket_send_buffer: self.socket_send_buffer,
        }
    }

    /// The operator token from OPERATOR_TOKEN or OPERATOR_TOKEN_FILE (one
    /// trailing newline dropped); `None` when neither is set. A token shorter
    /// than [`MIN_OPERATOR_TOKEN_CHARS`] is a configuration error.
    pub fn operator_token(&self) -> anyhow::Result<Option<String>> {
        use anyhow::Context as _;
        let token = match (&self.operator_token, &self.operator_token_file) {
            (Some(token), _) if !token.is_empty() => token.clone(),
            (_, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading OPERATOR_TOKEN_FILE {}", path.display()))?;
                text.strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text)
                    .to_owned()
            }
            _ => return Ok(None),
        };
        anyhow::ensure!(
            token.chars().count() >= MIN_OPERATOR_TOKEN_CHARS,
            "the operator token must be at least {MIN_OPERATOR_TOKEN_CHARS} characters \
             (e.g. `openssl rand -base64 32`)"
        );
        anyhow::ensure!(
            !token.chars().any(|c| c.is_whitespace() || c.is_control()),
            "the operator token must not contain spaces or control characters"
        );
        Ok(Some(token))
    }

    pub fn database_url(&self) -> &str {
        self.database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL)
    }
}
