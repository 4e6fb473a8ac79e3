//! The `airlock` binary: parse the command line, load the configuration, run one command.

mod cli;
mod commands;
mod context;
mod output;
mod telemetry;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // Parsing deeply nested SQL recurses (in libpg_query and in the tree walk); 64 MiB of
    // stack per runtime thread is reserved address space, touched only when used.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_stack_size(64 << 20);
    if let Some(n) = std::env::var("AIRLOCK_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        builder.worker_threads(n);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("airlock: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Commands run on a runtime thread (not main's smaller stack).
    let result = runtime.block_on(async { tokio::spawn(commands::run(cli)).await });
    match result.map_err(anyhow::Error::from).and_then(|r| r) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("airlock: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
