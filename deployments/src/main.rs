//! `tributary`: run machine-learning models on event streams. See `tributary --help`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    tributary::cli::main(tributary::cli::Cli::parse()).await
}
