//! `loadgen`: drive a running walletql (seeded by `seed`) and report.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use walletql_bench::loadgen::{LoadConfig, Mix, run};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Load generator for walletql: throughput, latency percentiles, errors, ledger audit"
)]
struct Args {
    /// Base URL of the running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent connections (each a task issuing one request at a time).
    #[arg(long, short = 'c', default_value_t = 8)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, short = 'd', default_value_t = 10)]
    duration: u64,
    /// Request mix, as weights: transfer, deposit, wallet, me, history,
    /// hold (authorise then capture), refund (pay then refund), withdraw,
    /// batch (one transferBatch).
    #[arg(long, default_value = "transfer=70,deposit=10,wallet=10,history=10")]
    mix: String,
    /// Seeded clients to act as.
    #[arg(long, default_value_t = 1000)]
    clients: u64,
    /// Hot-wallet mode: this many wallets receive `--hot-share` of the traffic.
    #[arg(long, default_value_t = 0)]
    hot_wallets: u64,
    #[arg(long, default_value_t = 0.9)]
    hot_share: f64,
    #[arg(long, env = "OPERATOR_TOKEN")]
    operator_token: String,
    /// The server's database, for the ledger audit at the end.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Transfers per `transferBatch` request (the `batch` kind of the mix).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Instead of load: time history pages of this (seeded) wallet, first,
    /// `--depth` operations deep and last, and wallet reads.
    #[arg(long)]
    probe_history: Option<u64>,
    #[arg(long, default_value_t = 100_000)]
    depth: i64,
    #[arg(long, default_value_t = 200)]
    samples: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(wallet) = args.probe_history {
        let shallow = args.clients.saturating_sub(1).max(1);
        return match walletql_bench::loadgen::probe_history(
            &args.url,
            wallet,
            shallow,
            args.depth,
            args.samples,
        )
        .await
        {
            Ok(results) => {
                println!(
                    "{:<40} {:>9} {:>9} {:>9}",
                    "request", "p50 ms", "p99 ms", "max ms"
                );
                for (name, l) in results {
                    println!(
                        "{name:<40} {:>9.2} {:>9.2} {:>9.2}",
                        l.p50_us as f64 / 1000.0,
                        l.p99_us as f64 / 1000.0,
                        l.max_us as f64 / 1000.0
                    );
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("probe failed: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    let mix = match Mix::parse(&args.mix) {
        Ok(mix) => mix,
        Err(err) => {
            eprintln!("--mix: {err}");
            return ExitCode::FAILURE;
        }
    };
    let config = LoadConfig {
        url: args.url,
        connections: args.connections.max(1),
        duration: Duration::from_secs(args.duration),
        mix,
        clients: args.clients,
        hot_wallets: args.hot_wallets,
        hot_share: args.hot_share,
        operator_token: args.operator_token,
        database_url: args.database_url,
        rng_seed: args.seed,
        batch_size: args.batch_size.clamp(1, 1000),
    };
    let report = match run(&config).await {
        Ok(report) => report,
        Err(err) => {
            eprintln!("loadgen failed: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.render());
    if let Some(path) = args.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(anyhow::Error::from)
            .and_then(|json| std::fs::write(&path, json).map_err(Into::into));
        if let Err(err) = written {
            eprintln!("cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if report.unexpected_errors() > 0 || report.audit_clean == Some(false) {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
