//! How long the agent lets the proxy drain after SIGTERM: `terminationDrainDuration`,
//! or, with `EXIT_ON_ZERO_ACTIVE_CONNECTIONS`, at least `MINIMUM_DRAIN_DURATION` and
//! then until the proxy reports no open downstream connections (checked every
//! second), never longer than `terminationDrainDuration`.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::DrainSettings;

const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Consecutive failures to read the stats after which the agent stops waiting.
const MAX_ERRORS: u32 = 5;

/// Why the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainEnd {
    /// The termination drain duration passed.
    Elapsed,
    /// No open connections were left.
    NoConnections,
    /// The proxy keeps no connection stats; nothing to wait for.
    StatsUnavailable,
    /// The stats could not be read several times in a row.
    Errors(String),
}

/// Waits as the settings say. `active` reads the open connection count: `Ok(None)`
/// when the proxy reports none at all.
pub async fn wait<F, Fut>(settings: &DrainSettings, mut active: F) -> DrainEnd
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<u64>, String>>,
{
    let deadline = Instant::now() + settings.termination;
    if !settings.exit_on_zero_active_connections {
        info!(
            "graceful termination period is {:?}, starting",
            settings.termination
        );
        tokio::time::sleep_until(deadline).await;
        return DrainEnd::Elapsed;
    }
    info!(
        "draining for at least {:?}, then until no connections are open (at most {:?})",
        settings.minimum, settings.termination
    );
    tokio::time::sleep_until(deadline.min(Instant::now() + settings.minimum)).await;
    let mut errors = 0;
    loop {
        let next = Instant::now() + CHECK_INTERVAL;
        if next >= deadline {
            tokio::time::sleep_until(deadline).await;
            return DrainEnd::Elapsed;
        }
        tokio::time::sleep_until(next).await;
        match active().await {
            Ok(Some(0)) => return DrainEnd::NoConnections,
            Ok(None) => return DrainEnd::StatsUnavailable,
            Ok(Some(n)) => {
                errors = 0;
                info!("{n} connections still open");
            }
            Err(e) => {
                errors += 1;
                warn!("reading the proxy's open connections (attempt {errors}): {e}");
                if errors >= MAX_ERRORS {
                    return DrainEnd::Errors(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn settings(exit_on_zero: bool) -> DrainSettings {
        DrainSettings {
            drain_duration: Duration::from_secs(45),
            termination: Duration::from_secs(20),
            minimum: Duration::from_secs(5),
            exit_on_zero_active_connections: exit_on_zero,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn default_waits_the_termination_duration() {
        let start = Instant::now();
        let end = wait(&settings(false), || async { Ok(Some(0)) }).await;
        assert_eq!(end, DrainEnd::Elapsed);
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn exit_on_zero_waits_the_minimum_then_for_zero() {
        let start = Instant::now();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let end = wait(&settings(true), move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move { Ok(Some(u64::from(3u32.saturating_sub(n)))) }
        })
        .await;
        assert_eq!(end, DrainEnd::NoConnections);
        // 5 s minimum, then checks at 6, 7, 8 and 9 s (3, 2, 1, 0 open).
        assert_eq!(start.elapsed(), Duration::from_secs(9));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn exit_on_zero_never_outlasts_the_termination_duration() {
        let start = Instant::now();
        let end = wait(&settings(true), || async { Ok(Some(7)) }).await;
        assert_eq!(end, DrainEnd::Elapsed);
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn missing_stats_or_repeated_errors_end_the_wait() {
        let end = wait(&settings(true), || async { Ok(None) }).await;
        assert_eq!(end, DrainEnd::StatsUnavailable);
        let start = Instant::now();
        let end = wait(&settings(true), || async { Err("refused".to_owned()) }).await;
        assert_eq!(end, DrainEnd::Errors("refused".into()));
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }
}
