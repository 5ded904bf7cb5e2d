use std::process::ExitCode;

use clap::Parser;
use walletql::config::{Cli, Command};
use walletql::{schema, server, telemetry};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::PrintSchema => {
            print!("{}", schema::sdl());
            ExitCode::SUCCESS
        }
        Command::Healthcheck => match server::healthcheck(cli.config.listen_addr).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("not ready: {err:#}");
                ExitCode::FAILURE
            }
        },
        Command::Verify { on_replica } => {
            telemetry::init(cli.config.log_format);
            match server::verify(&cli.config, on_replica).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(err) => {
                    eprintln!("verify failed: {err:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve => {
            telemetry::init(cli.config.log_format);
            match server::run(cli.config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = ?err, "walletql stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
