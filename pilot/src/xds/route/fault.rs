//! `HTTPRoute.fault` → the fault filter's per-route `HTTPFault`.

use strait_proto::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use strait_proto::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use strait_proto::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use strait_proto::istio::{Abort, AbortError, Delay, DelayKind, HttpFaultInjection, Percent};

use super::{Problems, wkt};

/// The fault config, or `None` when neither a usable delay nor a usable abort remains.
/// Parts Envoy would reject are dropped and reported.
pub fn translate_fault(fault: &HttpFaultInjection, problems: &mut Problems) -> Option<HttpFault> {
    let delay = fault
        .delay
        .as_ref()
        .and_then(|d| translate_delay(d, problems));
    let abort = fault
        .abort
        .as_ref()
        .and_then(|a| translate_abort(a, problems));
    if delay.is_none() && abort.is_none() {
        return None;
    }
    Some(HttpFault {
        delay,
        abort,
        ..Default::default()
    })
}

fn translate_delay(delay: &Delay, problems: &mut Problems) -> Option<FaultDelay> {
    let fixed = match delay.delay {
        Some(DelayKind::Fixed(d)) if !d.as_std().is_zero() => d,
        Some(DelayKind::Fixed(_)) => {
            problems.push("fault.delay.fixedDelay must be greater than 0; delay dropped");
            return None;
        }
        Some(DelayKind::Exponential(_)) => {
            problems.push("fault.delay.exponentialDelay is not supported; delay dropped");
            return None;
        }
        None => return None,
    };
    let percentage = match &delay.percentage {
        Some(p) => percent_per_million(p),
        None => hundredths(u32::try_from(delay.percent).unwrap_or(0)),
    };
    Some(FaultDelay {
        percentage: Some(percentage),
        fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(wkt::istio_duration(&fixed))),
    })
}

fn translate_abort(abort: &Abort, problems: &mut Problems) -> Option<FaultAbort> {
    let error_type = match &abort.error {
        Some(AbortError::HttpStatus(code)) => match u32::try_from(*code) {
            Ok(code) if (200..600).contains(&code) => ErrorType::HttpStatus(code),
            _ => {
                problems.push(format!(
                    "fault.abort.httpStatus {code} is outside [200, 600); abort dropped"
                ));
                return None;
            }
        },
        Some(AbortError::GrpcStatus(name)) => match grpc_status_code(name) {
            Some(code) => ErrorType::GrpcStatus(code),
            None => {
                problems.push(format!(
                    "fault.abort.grpcStatus {name:?} is unknown; abort dropped"
                ));
                return None;
            }
        },
        Some(AbortError::Http2Error(_)) => {
            problems.push("fault.abort.http2Error is not supported; abort dropped");
            return None;
        }
        None => return None,
    };
    Some(FaultAbort {
        percentage: abort.percentage.as_ref().map(percent_per_million),
        error_type: Some(error_type),
        ..Default::default()
    })
}

/// Istio percentages allow fractions: 0.1% is sent as 1000 per million.
pub fn percent_per_million(p: &Percent) -> FractionalPercent {
    let value = (p.value.clamp(0.0, 100.0) * 10000.0).round();
    FractionalPercent {
        // Clamped to [0, 1e6] above, so the conversion is exact.
        numerator: value as u32,
        denominator: DenominatorType::Million as i32,
    }
}

pub fn hundredths(percent: u32) -> FractionalPercent {
    FractionalPercent {
        numerator: percent.min(100),
        denominator: DenominatorType::Hundred as i32,
    }
}

/// gRPC status names as Istio's validation accepts them (upper case).
fn grpc_status_code(name: &str) -> Option<u32> {
    const CODES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    let upper = name.to_ascii_uppercase();
    CODES
        .iter()
        .position(|c| *c == upper)
        .and_then(|i| u32::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::istio::Duration;

    #[test]
    fn delay_and_abort_translate() {
        let fault = HttpFaultInjection {
            delay: Some(Delay {
                percent: 0,
                delay: Some(DelayKind::Fixed(Duration::from_secs(7))),
                percentage: Some(Percent { value: 100.0 }),
            }),
            abort: Some(Abort {
                error: Some(AbortError::HttpStatus(500)),
                percentage: Some(Percent { value: 50.0 }),
            }),
        };
        let mut problems = Problems::default();
        let f = translate_fault(&fault, &mut problems).unwrap();
        let delay = f.delay.unwrap();
        assert_eq!(delay.percentage.unwrap().numerator, 1_000_000);
        assert_eq!(
            delay.fault_delay_secifier,
            Some(FaultDelaySecifier::FixedDelay(wkt::duration(
                std::time::Duration::from_secs(7)
            )))
        );
        let abort = f.abort.unwrap();
        assert_eq!(abort.error_type, Some(ErrorType::HttpStatus(500)));
        assert_eq!(abort.percentage.unwrap().numerator, 500_000);
        assert!(problems.is_empty());
    }

    #[test]
    fn unusable_parts_are_dropped_and_reported() {
        let fault = HttpFaultInjection {
            delay: Some(Delay {
                delay: Some(DelayKind::Exponential(Duration::from_secs(1))),
                ..Default::default()
            }),
            abort: Some(Abort {
                error: Some(AbortError::HttpStatus(700)),
                percentage: None,
            }),
        };
        let mut problems = Problems::default();
        assert!(translate_fault(&fault, &mut problems).is_none());
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn grpc_abort_and_legacy_percent() {
        let fault = HttpFaultInjection {
            delay: Some(Delay {
                percent: 10,
                delay: Some(DelayKind::Fixed(Duration::from_millis(5))),
                percentage: None,
            }),
            abort: Some(Abort {
                error: Some(AbortError::GrpcStatus("UNAVAILABLE".into())),
                percentage: Some(Percent { value: 0.1 }),
            }),
        };
        let f = translate_fault(&fault, &mut Problems::default()).unwrap();
        let p = f.delay.unwrap().percentage.unwrap();
        assert_eq!(
            (p.numerator, p.denominator),
            (10, DenominatorType::Hundred as i32)
        );
        let abort = f.abort.unwrap();
        assert_eq!(abort.error_type, Some(ErrorType::GrpcStatus(14)));
        assert_eq!(abort.percentage.unwrap().numerator, 1000);
    }
}
