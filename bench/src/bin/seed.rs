//! `seed`: fill an empty PostgreSQL database for benchmarks.

use std::process::ExitCode;

use clap::Parser;
use walletql_bench::seed::{SeedConfig, seed};

#[derive(Parser, Debug)]
#[command(
    name = "seed",
    about = "Load clients, wallets and a consistent ledger into an empty walletql database (PostgreSQL)"
)]
struct Args {
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, default_value_t = 10_000)]
    clients: u64,
    /// Ledger rows in all (one deposit per wallet, then two per transfer).
    #[arg(long, default_value_t = 10_000_000)]
    operations: u64,
    /// Share of transfers involving wallet 0, to give it a deep history.
    #[arg(long, default_value_t = 0.1)]
    whale_share: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Payment flows (holds, captures, voids, refunds, withdrawals) posted
    /// through the ledger after the bulk load.
    #[arg(long, default_value_t = 1_000)]
    flows: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = SeedConfig {
        database_url: args.database_url,
        clients: args.clients,
        operations: args.operations,
        whale_share: args.whale_share,
        progress: true,
        rng_seed: args.seed,
        flows: args.flows,
    };
    match seed(&config).await {
        Ok(report) => {
            println!(
                "seeded {} clients, {} deposits, {} transfers, {} operations, {} payment flows in {:.1} s",
                report.clients,
                report.deposits,
                report.transfers,
                report.operations,
                report.flows,
                report.elapsed.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("seed failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
