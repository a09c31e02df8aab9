//! `%START_TIME(...)%`: a strftime subset in UTC, with Envoy's additions (`%s`, `%f`,
//! `%3f`...) and absl's `%E#S`/`%E*S`/`%Ez`. Parsed once per format string.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Envoy's default `%START_TIME%`: `2016-04-15T20:17:00.310Z`.
pub const DEFAULT: &str = "%Y-%m-%dT%H:%M:%E3SZ";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// A conversion character, with the digit count of `%Nf` / `%E#S` where given.
    Spec(char, Option<u8>),
    /// `%E*S`: seconds with as many fractional digits as needed.
    SecondsShortest,
    /// `%Ez`: `+00:00`.
    OffsetColon,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeFormat(Vec<Piece>);

impl Default for TimeFormat {
    fn default() -> Self {
        TimeFormat::parse(DEFAULT)
    }
}

/// A moment broken down in UTC.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    weekday: u32,
    yday: u32,
    epoch_secs: i64,
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn civil(t: SystemTime) -> Civil {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            // Before 1970: step back to the previous whole second.
            let d = e.duration();
            let s = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                (s, 0)
            } else {
                (s - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    };
    let days = secs.div_euclid(86_400);
    let rem = u32::try_from(secs.rem_euclid(86_400)).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap_extra = u32::from(month > 2 && is_leap(year));
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        nanos,
        weekday: u32::try_from((days + 4).rem_euclid(7)).unwrap_or(0),
        yday: CUMULATIVE[(month as usize).saturating_sub(1).min(11)] + day + leap_extra,
        epoch_secs: secs,
    }
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn fraction(nanos: u32, digits: u8) -> String {
    let digits = usize::from(digits.clamp(1, 9));
    format!("{nanos:09}")[..digits].to_string()
}

impl TimeFormat {
    pub fn parse(format: &str) -> TimeFormat {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let piece = match chars.next() {
                None => {
                    literal.push('%');
                    break;
                }
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some(d @ '1'..='9') if chars.peek() == Some(&'f') => {
                    chars.next();
                    Piece::Spec('f', d.to_digit(10).and_then(|n| u8::try_from(n).ok()))
                }
                Some('E') => match chars.next() {
                    Some('z') => Piece::OffsetColon,
                    Some('*') if chars.peek() == Some(&'S') => {
                        chars.next();
                        Piece::SecondsShortest
                    }
                    Some(d @ '0'..='9') if chars.peek() == Some(&'S') => {
                        chars.next();
                        Piece::Spec('S', d.to_digit(10).and_then(|n| u8::try_from(n).ok()))
                    }
                    other => {
                        literal.push_str("%E");
                        literal.extend(other);
                        continue;
                    }
                },
                Some(spec) => Piece::Spec(spec, None),
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        TimeFormat(pieces)
    }

    pub fn format(&self, t: SystemTime) -> String {
        let c = civil(t);
        let mut out = String::with_capacity(32);
        for piece in &self.0 {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::OffsetColon => out.push_str("+00:00"),
                Piece::SecondsShortest => {
                    let _ = write!(out, "{:02}", c.second);
                    if c.nanos != 0 {
                        let f = format!("{:09}", c.nanos);
                        let _ = write!(out, ".{}", f.trim_end_matches('0'));
                    }
                }
                Piece::Spec(spec, digits) => write_spec(&mut out, &c, *spec, *digits),
            }
        }
        out
    }
}

fn write_spec(out: &mut String, c: &Civil, spec: char, digits: Option<u8>) {
    let wd = c.weekday as usize % 7;
    let mon = (c.month as usize).saturating_sub(1).min(11);
    let hour12 = if c.hour.is_multiple_of(12) {
        12
    } else {
        c.hour % 12
    };
    let _ = match spec {
        'Y' => write!(out, "{}", c.year),
        'y' => write!(out, "{:02}", c.year.rem_euclid(100)),
        'C' => write!(out, "{:02}", c.year.div_euclid(100)),
        'm' => write!(out, "{:02}", c.month),
        'd' => write!(out, "{:02}", c.day),
        'e' => write!(out, "{:2}", c.day),
        'H' => write!(out, "{:02}", c.hour),
        'I' => write!(out, "{hour12:02}"),
        'p' => write!(out, "{}", if c.hour < 12 { "AM" } else { "PM" }),
        'M' => write!(out, "{:02}", c.minute),
        'S' => match digits {
            Some(0) | None => write!(out, "{:02}", c.second),
            Some(n) => write!(out, "{:02}.{}", c.second, fraction(c.nanos, n)),
        },
        'j' => write!(out, "{:03}", c.yday),
        'a' => write!(out, "{}", &DAYS[wd][..3]),
        'A' => write!(out, "{}", DAYS[wd]),
        'b' | 'h' => write!(out, "{}", &MONTHS[mon][..3]),
        'B' => write!(out, "{}", MONTHS[mon]),
        'u' => write!(out, "{}", if wd == 0 { 7 } else { wd }),
        'w' => write!(out, "{wd}"),
        'z' => write!(out, "+0000"),
        'Z' => write!(out, "UTC"),
        's' => write!(out, "{}", c.epoch_secs),
        'f' => write!(out, "{}", fraction(c.nanos, digits.unwrap_or(9))),
        'T' => write!(out, "{:02}:{:02}:{:02}", c.hour, c.minute, c.second),
        'R' => write!(out, "{:02}:{:02}", c.hour, c.minute),
        'F' => write!(out, "{}-{:02}-{:02}", c.year, c.month, c.day),
        'D' => write!(
            out,
            "{:02}/{:02}/{:02}",
            c.month,
            c.day,
            c.year.rem_euclid(100)
        ),
        'n' => writeln!(out),
        't' => write!(out, "\t"),
        other => write!(out, "%{other}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn default_is_envoys_iso8601_with_millis() {
        // 2016-04-15T20:17:00.310Z, the example in Envoy's docs.
        let t = at(1_460_751_420, 310_000_000);
        assert_eq!(TimeFormat::default().format(t), "2016-04-15T20:17:00.310Z");
        assert_eq!(
            TimeFormat::default().format(UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn strftime_subset() {
        let t = at(1_709_210_096, 123_456_789); // 2024-02-29T12:34:56 (leap day), Thursday
        let f = |s: &str| TimeFormat::parse(s).format(t);
        assert_eq!(f("%Y-%m-%dT%H:%M:%S%z"), "2024-02-29T12:34:56+0000");
        assert_eq!(f("%s.%3f"), "1709210096.123");
        assert_eq!(f("%s.%6f"), "1709210096.123456");
        assert_eq!(f("%f"), "123456789");
        assert_eq!(f("%E6S|%E*S|%Ez"), "56.123456|56.123456789|+00:00");
        assert_eq!(
            f("%a %A %b %B %j %y %e"),
            "Thu Thursday Feb February 060 24 29"
        );
        assert_eq!(f("%T %F %D %I%p %%"), "12:34:56 2024-02-29 02/29/24 12PM %");
        assert_eq!(
            f("%Y/%m/%dT%H:%M:%S%z %s"),
            "2024/02/29T12:34:56+0000 1709210096"
        );
        assert_eq!(
            TimeFormat::parse("%Y").format(at(951_782_400, 0)),
            "2000",
            "2000-02-29"
        );
        assert_eq!(
            TimeFormat::parse("%F %j").format(at(951_782_400, 0)),
            "2000-02-29 060"
        );
    }
}
