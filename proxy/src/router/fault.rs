//! Fault injection (`envoy.filters.http.fault`): delay and abort are sampled separately,
//! each against its own fraction; the delay, when injected, comes first.

use std::time::Duration;

use bytes::Bytes;

use crate::config::route::{FaultAbort, FaultConfig};

use super::local_reply::{LocalReply, ReplyTo, local_reply};
use super::matching::fraction_hit;

/// What to inject into one request.
#[derive(Clone, Debug, Default)]
pub struct FaultDecision {
    pub delay: Option<Duration>,
    /// Answer with this abort (after the delay, if any) instead of forwarding.
    pub abort: Option<FaultAbort>,
}

impl FaultDecision {
    /// The request counts towards the filter's active faults while it is delayed or
    /// being aborted.
    pub fn is_active(&self) -> bool {
        self.delay.is_some() || self.abort.is_some()
    }
}

/// Decide the faults of one request. `delay_random` and `abort_random` are independent
/// random values; `active_faults` is the number of requests currently faulted by this
/// filter. At or above `max_active_faults`, no fault is injected.
pub fn fault_decision(
    fault: &FaultConfig,
    delay_random: u64,
    abort_random: u64,
    active_faults: u32,
) -> FaultDecision {
    let delay = fault
        .delay
        .filter(|(d, fraction)| !d.is_zero() && fraction_hit(*fraction, delay_random))
        .map(|(d, _)| d);
    let abort = fault
        .abort
        .as_ref()
        .filter(|(_, fraction)| fraction_hit(*fraction, abort_random))
        .map(|(a, _)| a.clone());
    if (delay.is_some() || abort.is_some())
        && fault
            .max_active_faults
            .is_some_and(|max| active_faults >= max)
    {
        return FaultDecision::default();
    }
    FaultDecision { delay, abort }
}

pub const ABORT_BODY: &str = "fault filter abort";

/// The response of an aborted request. A gRPC-status abort is an HTTP 200 with that
/// `grpc-status` for gRPC requests (trailers-only), and a plain 200 otherwise.
pub fn abort_reply(abort: &FaultAbort, to: ReplyTo) -> LocalReply {
    let (status, grpc) = match abort {
        FaultAbort::Http(status) => (*status, None),
        FaultAbort::Grpc(code) => (200, Some(*code)),
    };
    local_reply(
        status,
        Bytes::from_static(ABORT_BODY.as_bytes()),
        grpc,
        to,
        "fault_filter_abort",
        |_| {},
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::common::PartsPerMillion;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn half_and_half() -> FaultConfig {
        FaultConfig {
            delay: Some((Duration::from_secs(5), PartsPerMillion(500_000))),
            abort: Some((FaultAbort::Http(503), PartsPerMillion(500_000))),
            max_active_faults: None,
        }
    }

    #[test]
    fn fifty_percent_sampling_over_many_requests() {
        let f = half_and_half();
        let mut rng = StdRng::seed_from_u64(3);
        let n = 100_000;
        let (mut delays, mut aborts, mut both) = (0, 0, 0);
        for _ in 0..n {
            let d = fault_decision(&f, rng.random(), rng.random(), 0);
            delays += usize::from(d.delay.is_some());
            aborts += usize::from(d.abort.is_some());
            both += usize::from(d.delay.is_some() && d.abort.is_some());
        }
        for (what, count, expected) in [
            ("delays", delays, 0.5),
            ("aborts", aborts, 0.5),
            ("both", both, 0.25),
        ] {
            let share = count as f64 / n as f64;
            assert!((share - expected).abs() < 0.01, "{what}: {share}");
        }
    }

    #[test]
    fn fractions_compare_parts_per_million() {
        let f = half_and_half();
        let d = fault_decision(&f, 499_999, 500_000, 0);
        assert_eq!(d.delay, Some(Duration::from_secs(5)));
        assert!(d.abort.is_none());
        let all = FaultConfig {
            delay: None,
            abort: Some((FaultAbort::Grpc(14), PartsPerMillion::ALL)),
            max_active_faults: None,
        };
        assert!(fault_decision(&all, 0, 999_999, 0).abort.is_some());
        let zero_delay = FaultConfig {
            delay: Some((Duration::ZERO, PartsPerMillion::ALL)),
            abort: None,
            max_active_faults: None,
        };
        assert!(!fault_decision(&zero_delay, 0, 0, 0).is_active());
    }

    #[test]
    fn max_active_faults_stops_injection() {
        let mut f = half_and_half();
        f.max_active_faults = Some(2);
        assert!(fault_decision(&f, 0, 0, 1).is_active());
        assert!(!fault_decision(&f, 0, 0, 2).is_active());
    }

    #[test]
    fn abort_responses() {
        let http = abort_reply(&FaultAbort::Http(503), ReplyTo::default());
        assert_eq!(http.status, 503);
        assert_eq!(&http.body[..], b"fault filter abort");

        let grpc_req = ReplyTo {
            grpc: true,
            head: false,
        };
        let g = abort_reply(&FaultAbort::Grpc(14), grpc_req);
        assert_eq!(g.status, 200);
        assert_eq!(g.headers["grpc-status"], "14");
        assert_eq!(g.headers["grpc-message"], "fault filter abort");
        assert!(g.body.is_empty());

        // An HTTP abort of a gRPC request maps the status.
        let h = abort_reply(&FaultAbort::Http(503), grpc_req);
        assert_eq!(h.status, 200);
        assert_eq!(h.headers["grpc-status"], "14");

        let plain = abort_reply(&FaultAbort::Grpc(14), ReplyTo::default());
        assert_eq!(plain.status, 200);
        assert_eq!(&plain.body[..], b"fault filter abort");
    }
}
