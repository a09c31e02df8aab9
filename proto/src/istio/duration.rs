//! `google.protobuf.Duration` as Istio reads it from YAML/JSON.
//!
//! Istio decodes its config with golang/protobuf's `jsonpb`, which parses durations with Go's
//! `time.ParseDuration`: `"10s"`, `"0.5s"`, `"1.500s"`, `"10ms"`, `"1h30m"`, `"250us"` are all
//! accepted (the CRDs' CEL rules use the same grammar). We accept exactly that grammar, minus
//! negative values, which no Istio duration field allows. We write durations back in canonical
//! protobuf JSON form (`"1.500s"`), which every reader accepts.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration as written in Istio config (`"5s"`, `"0.5s"`, `"100ms"`, `"1h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

// Go's time.Duration is an int64 of nanoseconds; larger values are errors there too.
const MAX_NANOS: u128 = i64::MAX as u128;

impl Duration {
    /// The zero duration (`"0s"`).
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// Wraps a standard duration.
    pub const fn new(d: std::time::Duration) -> Self {
        Duration(d)
    }

    /// Whole seconds plus nanoseconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// Milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// The value as a standard duration.
    pub const fn as_std(&self) -> std::time::Duration {
        self.0
    }

    /// Parses Go `time.ParseDuration` syntax (non-negative values only).
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let fail = |reason| DurationError {
            input: input.to_owned(),
            reason,
        };
        let (negative, body) = match input.as_bytes().first() {
            Some(b'-') => (true, &input[1..]),
            Some(b'+') => (false, &input[1..]),
            _ => (false, input),
        };
        if body == "0" {
            return Ok(Duration::ZERO);
        }
        if body.is_empty() {
            return Err(fail("empty duration"));
        }
        let mut total: u128 = 0;
        let mut rest = body;
        while !rest.is_empty() {
            let (nanos, tail) = parse_component(rest).map_err(fail)?;
            total = total.saturating_add(nanos);
            if total > MAX_NANOS {
                return Err(fail("duration out of range"));
            }
            rest = tail;
        }
        if negative && total != 0 {
            return Err(fail("negative durations are not allowed"));
        }
        let secs =
            u64::try_from(total / 1_000_000_000).map_err(|_| fail("duration out of range"))?;
        let nanos =
            u32::try_from(total % 1_000_000_000).map_err(|_| fail("duration out of range"))?;
        Ok(Duration(std::time::Duration::new(secs, nanos)))
    }
}

/// One `<number><unit>` component; returns its value in nanoseconds and the remaining input.
fn parse_component(s: &str) -> Result<(u128, &str), &'static str> {
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, after_int) = s.split_at(int_len);
    let (frac_part, after_num) = match after_int.strip_prefix('.') {
        Some(f) => {
            let n = f.bytes().take_while(u8::is_ascii_digit).count();
            f.split_at(n)
        }
        None => ("", after_int),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err("expected a number");
    }
    let unit_len = after_num
        .char_indices()
        .find(|(_, c)| c.is_ascii_digit() || *c == '.')
        .map_or(after_num.len(), |(i, _)| i);
    let (unit, tail) = after_num.split_at(unit_len);
    let scale: u128 = match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "" => return Err("missing unit (use one of ns, us, ms, s, m, h)"),
        _ => return Err("unknown unit (use one of ns, us, ms, s, m, h)"),
    };
    let mut int_value: u128 = 0;
    for b in int_part.bytes() {
        int_value = int_value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(b - b'0')))
            .filter(|v| *v <= MAX_NANOS)
            .ok_or("duration out of range")?;
    }
    let mut nanos = int_value
        .checked_mul(scale)
        .filter(|v| *v <= MAX_NANOS)
        .ok_or("duration out of range")?;
    // Fractions below a nanosecond are dropped, as Go does.
    let mut frac_scale = scale;
    for b in frac_part.bytes() {
        frac_scale /= 10;
        if frac_scale == 0 {
            break;
        }
        nanos += u128::from(b - b'0') * frac_scale;
    }
    Ok((nanos, tail))
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

/// Canonical protobuf JSON: seconds with 0, 3, 6 or 9 fractional digits and an `s` suffix.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if nanos == 0 {
            write!(f, "{secs}s")
        } else if nanos.is_multiple_of(1_000_000) {
            write!(f, "{secs}.{:03}s", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            write!(f, "{secs}.{:06}s", nanos / 1_000)
        } else {
            write!(f, "{secs}.{nanos:09}s")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"5s\", \"0.5s\" or \"100ms\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn parses_protobuf_and_go_forms() {
        assert_eq!(Duration::parse("10s").unwrap(), ms(10_000));
        assert_eq!(Duration::parse("0.5s").unwrap(), ms(500));
        assert_eq!(Duration::parse("1.500s").unwrap(), ms(1_500));
        assert_eq!(Duration::parse("10ms").unwrap(), ms(10));
        assert_eq!(Duration::parse("1h30m").unwrap(), ms(5_400_000));
        assert_eq!(Duration::parse("2m").unwrap(), ms(120_000));
        assert_eq!(Duration::parse("250us").unwrap().as_std().as_micros(), 250);
        assert_eq!(Duration::parse("7ns").unwrap().as_std().as_nanos(), 7);
        assert_eq!(Duration::parse(".25s").unwrap(), ms(250));
        assert_eq!(Duration::parse("0").unwrap(), Duration::ZERO);
        assert_eq!(Duration::parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(Duration::parse("+3s").unwrap(), ms(3_000));
        assert_eq!(
            Duration::parse("1.000000001s")
                .unwrap()
                .as_std()
                .subsec_nanos(),
            1
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "", "10", "1x", "s", "-1s", ".s", "1..5s", "1s2", "abc", "1e3s",
        ] {
            assert!(Duration::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Duration::parse("9999999999999999h").is_err());
    }

    #[test]
    fn displays_canonical_protobuf_json() {
        assert_eq!(ms(1_500).to_string(), "1.500s");
        assert_eq!(ms(10_000).to_string(), "10s");
        assert_eq!(Duration::parse("250us").unwrap().to_string(), "0.000250s");
        assert_eq!(Duration::parse("7ns").unwrap().to_string(), "0.000000007s");
        for d in ["1.500s", "0.000250s", "3s"] {
            assert_eq!(Duration::parse(d).unwrap().to_string(), d);
        }
    }

    #[test]
    fn serde_round_trip_and_type_errors() {
        let d: Duration = serde_json::from_value(serde_json::json!("100ms")).unwrap();
        assert_eq!(d, ms(100));
        assert_eq!(
            serde_json::to_value(d).unwrap(),
            serde_json::json!("0.100s")
        );
        let err = serde_json::from_value::<Duration>(serde_json::json!(5)).unwrap_err();
        assert!(err.to_string().contains("duration string"), "{err}");
        let err = serde_json::from_value::<Duration>(serde_json::json!("5")).unwrap_err();
        assert!(err.to_string().contains("missing unit"), "{err}");
    }
}
