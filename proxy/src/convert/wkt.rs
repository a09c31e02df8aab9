//! Well-known protobuf types (durations, wrappers, percentages) read the way Envoy reads
//! them: protoc-gen-validate's range rules applied, defaults where the field is unset.

use std::time::Duration;

use strait_proto::envoy::r#type::v3::{FractionalPercent, Percent};
use strait_proto::google::protobuf as pb;

use crate::config::common::PartsPerMillion;
use crate::config::error::{Ctx, Result};

/// The largest duration protobuf allows (10,000 years); larger ones are rejected so that
/// nothing downstream overflows adding them to an `Instant`.
const MAX_SECONDS: i64 = 315_576_000_000;

/// A protobuf duration as a `std` one; negative or malformed ones are rejected.
pub fn duration(d: &pb::Duration, ctx: &Ctx) -> Result<Duration> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(ctx.error("duration must not be negative"));
    }
    if d.seconds > MAX_SECONDS || d.nanos >= 1_000_000_000 {
        return Err(ctx.error("duration is out of range"));
    }
    let secs = u64::try_from(d.seconds).map_err(|_| ctx.error("duration is out of range"))?;
    let nanos = u32::try_from(d.nanos).map_err(|_| ctx.error("duration is out of range"))?;
    Ok(Duration::new(secs, nanos))
}

/// An optional duration, `None` when unset.
pub fn opt_duration(d: Option<&pb::Duration>, ctx: &Ctx) -> Result<Option<Duration>> {
    d.map(|d| duration(d, ctx)).transpose()
}

/// A timeout where unset means `default` and an explicit zero means "disabled" (`None`).
pub fn timeout(
    d: Option<&pb::Duration>,
    default: Option<Duration>,
    ctx: &Ctx,
) -> Result<Option<Duration>> {
    match d {
        None => Ok(default),
        Some(d) => Ok(crate::config::common::nonzero(duration(d, ctx)?)),
    }
}

/// A duration that must be strictly positive when set (PGV `gt: {}`).
pub fn positive_duration(d: &pb::Duration, ctx: &Ctx) -> Result<Duration> {
    let v = duration(d, ctx)?;
    if v.is_zero() {
        return Err(ctx.error("duration must be greater than zero"));
    }
    Ok(v)
}

pub fn bool_or(v: Option<&pb::BoolValue>, default: bool) -> bool {
    v.map_or(default, |b| b.value)
}

pub fn u32_or(v: Option<&pb::UInt32Value>, default: u32) -> u32 {
    v.map_or(default, |n| n.value)
}

pub fn u64_or(v: Option<&pb::UInt64Value>, default: u64) -> u64 {
    v.map_or(default, |n| n.value)
}

/// A port number: 1..=65535 (0 is accepted only where `allow_zero`).
pub fn port(value: u32, allow_zero: bool, ctx: &Ctx) -> Result<u16> {
    match u16::try_from(value) {
        Ok(0) if !allow_zero => Err(ctx.error("port must be between 1 and 65535")),
        Ok(p) => Ok(p),
        Err(_) => Err(ctx.error(format!("port {value} is out of range (max 65535)"))),
    }
}

/// `FractionalPercent` normalised to parts per million. Numerators above the denominator
/// mean 100 %, as in Envoy; an unknown denominator is an error.
pub fn fraction(f: &FractionalPercent, ctx: &Ctx) -> Result<PartsPerMillion> {
    let scale: u64 = match f.denominator {
        0 => 10_000, // HUNDRED
        1 => 100,    // TEN_THOUSAND
        2 => 1,      // MILLION
        other => {
            return Err(ctx.field("denominator").error(format!(
                "unknown denominator {other} (expected HUNDRED, TEN_THOUSAND or MILLION)"
            )));
        }
    };
    let ppm = (u64::from(f.numerator) * scale).min(1_000_000);
    // At most 1,000,000: the conversion cannot fail.
    Ok(PartsPerMillion(u32::try_from(ppm).unwrap_or(1_000_000)))
}

/// An optional `FractionalPercent`, with the given default when unset.
pub fn fraction_or(
    f: Option<&FractionalPercent>,
    default: PartsPerMillion,
    ctx: &Ctx,
) -> Result<PartsPerMillion> {
    f.map_or(Ok(default), |f| fraction(f, ctx))
}

/// `Percent` (0..=100, PGV-checked) as a float.
pub fn percent(p: &Percent, ctx: &Ctx) -> Result<f64> {
    if !(0.0..=100.0).contains(&p.value) {
        return Err(ctx.error(format!("percent {} must be between 0 and 100", p.value)));
    }
    Ok(p.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx::new("Test", "t")
    }

    #[test]
    fn fractions_normalise_to_ppm() {
        let f = |numerator, denominator| FractionalPercent {
            numerator,
            denominator,
        };
        assert_eq!(
            fraction(&f(50, 0), &ctx()).unwrap(),
            PartsPerMillion(500_000)
        );
        assert_eq!(fraction(&f(25, 1), &ctx()).unwrap(), PartsPerMillion(2_500));
        assert_eq!(fraction(&f(7, 2), &ctx()).unwrap(), PartsPerMillion(7));
        assert_eq!(fraction(&f(200, 0), &ctx()).unwrap(), PartsPerMillion::ALL);
        assert_eq!(
            fraction(&f(u32::MAX, 0), &ctx()).unwrap(),
            PartsPerMillion::ALL
        );
        let e = fraction(&f(1, 9), &ctx().field("percentage")).unwrap_err();
        assert_eq!(e.field, "percentage.denominator");
        assert!(e.reason.contains("unknown denominator 9"), "{e}");
    }

    #[test]
    fn durations_are_checked() {
        let d = |seconds, nanos| pb::Duration { seconds, nanos };
        assert_eq!(
            duration(&d(1, 500_000_000), &ctx()).unwrap(),
            Duration::from_millis(1500)
        );
        assert!(duration(&d(-1, 0), &ctx()).is_err());
        assert!(duration(&d(0, -1), &ctx()).is_err());
        assert!(duration(&d(0, 1_000_000_000), &ctx()).is_err());
        assert!(duration(&d(i64::MAX, 0), &ctx()).is_err());
        assert_eq!(
            timeout(Some(&d(0, 0)), Some(Duration::from_secs(5)), &ctx()).unwrap(),
            None
        );
        assert_eq!(
            timeout(None, Some(Duration::from_secs(5)), &ctx()).unwrap(),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn ports_are_ranged() {
        assert_eq!(port(80, false, &ctx()).unwrap(), 80);
        assert!(port(0, false, &ctx()).is_err());
        assert_eq!(port(0, true, &ctx()).unwrap(), 0);
        assert!(port(70_000, true, &ctx()).is_err());
    }
}
