//! Tuning knobs read from the environment, named and defaulted as Istio's.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Features {
    /// `PILOT_DEBOUNCE_AFTER`: quiet period before a merged push (100ms).
    pub debounce_after: Duration,
    /// `PILOT_DEBOUNCE_MAX`: longest a change waits for a push (10s).
    pub debounce_max: Duration,
    /// `PILOT_PUSH_THROTTLE`: pushes in flight at once (0 = min(15 + 5 × cores, 100)).
    pub push_throttle: usize,
}

impl Features {
    pub fn from_env() -> Result<Features, String> {
        Features::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Features, String> {
        let duration = |key: &str, default: Duration| -> Result<Duration, String> {
            match get(key) {
                None => Ok(default),
                Some(v) => humantime::parse_duration(v.trim())
                    .map_err(|e| format!("{key}={v:?}: not a duration like 100ms or 10s: {e}")),
            }
        };
        let push_throttle = match get("PILOT_PUSH_THROTTLE") {
            None => 0,
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| format!("PILOT_PUSH_THROTTLE={v:?}: not a number: {e}"))?,
        };
        Ok(Features {
            debounce_after: duration("PILOT_DEBOUNCE_AFTER", Duration::from_millis(100))?,
            debounce_max: duration("PILOT_DEBOUNCE_MAX", Duration::from_secs(10))?,
            push_throttle,
        })
    }

    /// The throttle in effect: Istio's automatic value when unset.
    pub fn effective_push_throttle(&self) -> usize {
        if self.push_throttle > 0 {
            return self.push_throttle;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (15 + 5 * cores).min(100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let f = Features::from_lookup(|_| None).unwrap();
        assert_eq!(f.debounce_after, Duration::from_millis(100));
        assert_eq!(f.debounce_max, Duration::from_secs(10));
        assert!(f.effective_push_throttle() >= 20);
        let f = Features::from_lookup(|k| match k {
            "PILOT_DEBOUNCE_AFTER" => Some("5ms".into()),
            "PILOT_PUSH_THROTTLE" => Some("3".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(f.debounce_after, Duration::from_millis(5));
        assert_eq!(f.effective_push_throttle(), 3);
        let err = Features::from_lookup(|k| (k == "PILOT_DEBOUNCE_MAX").then(|| "soon".into()))
            .unwrap_err();
        assert!(err.contains("PILOT_DEBOUNCE_MAX"));
    }
}
