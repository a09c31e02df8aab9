//! strait-init: captures a workload's traffic into its sidecar with the
//! iptables rules Istio's `istio-iptables` writes, applied atomically.
//!
//! The pieces, in the order a run uses them: [`cli`] (flags), [`config`]
//! (validation), [`rules`] (the pure rule generator), [`plan`] (the restore
//! transaction against the current state), [`apply`] (running it),
//! [`validation`] (`--run-validation`).

pub mod apply;
mod caps;
pub mod cli;
pub mod config;
pub mod iptables;
pub mod plan;
pub mod routes;
pub mod rules;
pub mod validation;

use std::io::Write;

pub use cli::{Action, Args, Cli};
pub use config::{Config, ConfigError, HostFacts};
pub use rules::{Rules, build_rules};

use config::InterceptionMode;

/// Exit codes: usage errors 2, runtime errors 1, failed validation 126.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Capability(String),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error(transparent)]
    Validation(#[from] validation::ValidationError),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            Error::Capability(_) | Error::Apply(_) => 1,
            Error::Validation(_) => validation::VALIDATION_ERROR_CODE,
        }
    }
}

/// One run of strait-init: validate, then apply (or print, or clean), then
/// validate the redirect if asked. Dry-run output goes to `out`.
pub fn run(
    action: Action,
    args: &Args,
    host: &HostFacts,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let cfg = Config::from_args(args, host)?;
    let tools = iptables::Tools::new(cfg.iptables_binary.as_deref());
    let writes = !cfg.dry_run && (action == Action::Clean || !cfg.skip_rule_apply);
    if writes && caps::has_net_admin() == Some(false) {
        return Err(Error::Capability(match cfg.mode {
            InterceptionMode::Tproxy => {
                "--istio-inbound-interception-mode: TPROXY needs CAP_NET_ADMIN, which this \
                 process does not have"
                    .to_owned()
            }
            InterceptionMode::Redirect => {
                "changing iptables rules needs CAP_NET_ADMIN, which this process does not have \
                 (use --dry-run to only print them)"
                    .to_owned()
            }
        }));
    }
    match action {
        Action::Clean => apply::clean(&cfg, &tools, cfg.dry_run.then_some(out))?,
        Action::Apply if cfg.skip_rule_apply => {
            tracing::info!("--skip-rule-apply: not touching iptables");
        }
        Action::Apply if cfg.dry_run => {
            out.write_all(build_rules(&cfg).to_dry_run().as_bytes())
                .map_err(apply::ApplyError::Output)?;
        }
        Action::Apply => apply::apply(&cfg, &tools)?,
    }
    if action == Action::Apply && cfg.run_validation {
        validation::run_validation(&cfg)?;
    }
    Ok(())
}
