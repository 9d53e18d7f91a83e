//! The `osprey` binary: parse arguments, set up logging, hand over to [`osprey::app`].

use std::process::ExitCode;

use clap::Parser;
use osprey::cli::{Cli, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(osprey::app::main(cli));
    // A task wedged in a blocking call (a write to a stdout nobody reads, past the shutdown
    // timeout) must not keep the process alive: give the rest a moment, then leave.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
