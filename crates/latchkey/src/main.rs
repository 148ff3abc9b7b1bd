//! `latchkey`: the one binary. Each subcommand lives in `commands/`.

mod cli;
mod commands;
mod config;
mod handlers;
mod local_postgres;
mod shutdown;
mod telemetry;

use clap::Parser;
use config::ConfigError;
use std::process::ExitCode;

fn main() -> ExitCode {
    latchkey_jobs::memory::limit_malloc_arenas();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("latchkey: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<ConfigError>() {
            Some(config_error) => {
                eprintln!("latchkey: {config_error}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("latchkey: error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
