//! Applying and removing the rules on the running host: read the state,
//! plan one transaction per family, check them all, then commit them; if a
//! later family fails, the earlier ones are put back as they were.

use std::io::Write;

use crate::config::Config;
use crate::iptables::{FamilyTools, Snapshot, ToolError, Tools};
use crate::plan::{tables_touched, transaction};
use crate::routes;
use crate::rules::{Family, RuleSet, Rules, build_rules};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("applying the {family} rules failed: {source}{}", rollback_note(*.rolled_back))]
    Commit {
        family: &'static str,
        source: ToolError,
        rolled_back: bool,
    },
    #[error("writing the dry-run output: {0}")]
    Output(std::io::Error),
}

fn rollback_note(rolled_back: bool) -> &'static str {
    if rolled_back {
        " (nothing was changed)"
    } else {
        " (restoring the earlier rules failed too: check iptables-save)"
    }
}

/// One family's planned change and the state it was planned against.
struct Step<'a> {
    tools: &'a FamilyTools,
    transaction: String,
    before: Snapshot,
}

/// Programs the rules `cfg` asks for, replacing any earlier ISTIO_* rules.
pub fn apply(cfg: &Config, tools: &Tools) -> Result<(), ApplyError> {
    let rules = build_rules(cfg);
    let known = known_rules(cfg);
    tools.v4.require()?;
    if rules.v6.is_some() {
        tools.v6.require()?;
    }
    let mut steps = Vec::new();
    steps.extend(plan_family(&tools.v4, Some(&rules.v4), &known.v4)?);
    match &rules.v6 {
        Some(v6) => steps.extend(plan_family(&tools.v6, Some(v6), known_v6(&known))?),
        // Leftovers of an earlier dual-stack run would keep capturing IPv6.
        None if tools.v6.available() => {
            steps.extend(plan_family(&tools.v6, None, known_v6(&known))?);
        }
        None => {}
    }
    commit(&steps)?;
    routes::configure(cfg)?;
    Ok(())
}

/// Removes every ISTIO_* chain, every jump into one, and the non-jump rules
/// `cfg` would have added to built-in chains. With `dry_run` set, writes the
/// transactions there instead of running them.
pub fn clean(
    cfg: &Config,
    tools: &Tools,
    dry_run: Option<&mut dyn Write>,
) -> Result<(), ApplyError> {
    tools.v4.require()?;
    let known = known_rules(cfg);
    let mut steps = Vec::new();
    steps.extend(plan_family(&tools.v4, None, &known.v4)?);
    if tools.v6.available() {
        steps.extend(plan_family(&tools.v6, None, known_v6(&known))?);
    }
    if let Some(out) = dry_run {
        for step in &steps {
            writeln!(out, "# {} --noflush", step.tools.restore).map_err(ApplyError::Output)?;
            out.write_all(step.transaction.as_bytes())
                .map_err(ApplyError::Output)?;
        }
        return Ok(());
    }
    if steps.is_empty() {
        tracing::info!("no ISTIO_* rules found: nothing to clean");
    }
    commit(&steps)?;
    routes::remove(cfg);
    Ok(())
}

/// Every rule the configuration could produce in either family, so that
/// cleanup finds IPv6 rules even when IPv6 is not wanted now.
fn known_rules(cfg: &Config) -> Rules {
    let mut all = cfg.clone();
    all.enable_ipv6 = true;
    build_rules(&all)
}

fn known_v6(known: &Rules) -> &RuleSet {
    known.family(Family::V6).unwrap_or(&known.v4)
}

fn plan_family<'a>(
    tools: &'a FamilyTools,
    desired: Option<&RuleSet>,
    known: &RuleSet,
) -> Result<Option<Step<'a>>, ToolError> {
    let before = tools.snapshot()?;
    Ok(
        transaction(desired, known, &before).map(|transaction| Step {
            tools,
            transaction,
            before,
        }),
    )
}

fn commit(steps: &[Step<'_>]) -> Result<(), ApplyError> {
    // A syntax or unknown-module error in any family stops everything
    // before a single rule changes.
    for step in steps {
        step.tools
            .restore(&step.transaction, true, true)
            .map_err(|source| ApplyError::Commit {
                family: step.tools.family.label(),
                source,
                rolled_back: true,
            })?;
    }
    for (done, step) in steps.iter().enumerate() {
        tracing::info!(
            family = step.tools.family.label(),
            "running {} --noflush with:\n{}",
            step.tools.restore,
            step.transaction.trim_end()
        );
        if let Err(source) = step.tools.restore(&step.transaction, true, false) {
            let mut rolled_back = true;
            for earlier in &steps[..done] {
                let tables = tables_touched(&earlier.transaction);
                let text = earlier.before.restore_text(&tables);
                if let Err(e) = earlier.tools.restore(&text, false, false) {
                    tracing::error!(error = %e, "rolling back {}", earlier.tools.family.label());
                    rolled_back = false;
                }
            }
            return Err(ApplyError::Commit {
                family: step.tools.family.label(),
                source,
                rolled_back,
            });
        }
    }
    Ok(())
}
