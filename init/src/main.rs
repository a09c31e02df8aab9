use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use strait_init::{Cli, HostFacts};

fn main() -> ExitCode {
    // clap exits 2 on unknown or malformed flags, as usage errors should.
    let cli = Cli::parse();
    let (action, args) = cli.into_parts();
    init_logging(&args.log_output_level);
    let host = HostFacts::from_system();
    let mut stdout = std::io::stdout().lock();
    match strait_init::run(action, &args, &host, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("strait-init: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Istio's `--log_output_level` is `scope:level,...`; the `default` scope
/// (or a bare level) sets ours.
fn init_logging(levels: &str) {
    let level = levels
        .split(',')
        .find_map(|item| match item.split_once(':') {
            Some(("default", level)) => Some(level),
            None => Some(item),
            Some(_) => None,
        })
        .map(|l| match l.trim() {
            "none" => "off",
            "fatal" => "error",
            other => other,
        })
        .unwrap_or("info");
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
