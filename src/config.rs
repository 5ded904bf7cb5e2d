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
}

impl Config {
    pub fn database_url(&self) -> &str {
        self.database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL)
    }
}
