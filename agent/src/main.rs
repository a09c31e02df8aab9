use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use strait_agent::cli::{Cli, Command};

fn main() -> ExitCode {
    // clap exits 2 on unknown, repeated or malformed flags, naming the flag.
    let cli = Cli::parse();
    init_logging(&cli.log.log_output_level);
    if let Command::Proxy(args) = &cli.command
        && let Err(e) = args.validate()
    {
        eprintln!("pilot-agent: {e}");
        return ExitCode::from(strait_agent::agent::CONFIG_ERROR);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pilot-agent: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Proxy(args) => ExitCode::from(runtime.block_on(strait_agent::agent::run(args))),
        Command::Wait(args) => match runtime.block_on(strait_agent::commands::wait(&args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pilot-agent wait: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Request(args) => match runtime.block_on(strait_agent::commands::request(&args)) {
            Ok(body) => {
                print!("{body}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pilot-agent request: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Version => {
            println!("pilot-agent (strait) {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// Istio's `--log_output_level` is `scope:level,...`; the `default` scope (or a bare
/// level) sets the agent's level. `RUST_LOG` wins when set. (`--log_as_json` is
/// accepted but the output stays text.)
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
