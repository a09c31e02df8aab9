//! Small shared pieces of config: matchers, fractions, header operations.

use std::time::Duration;

use regex::Regex;

/// Envoy's `StringMatcher` (exact, prefix, suffix, contains, safe_regex), with
/// `ignore_case` applying to all but regex.
#[derive(Clone, Debug)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Regex),
}

#[derive(Clone, Debug)]
pub struct StringMatcher {
    pub pattern: StringMatch,
    pub ignore_case: bool,
}

/// How a header is matched (Envoy's `HeaderMatcher`).
#[derive(Clone, Debug)]
pub enum HeaderMatch {
    /// `string_match` (and the legacy exact/prefix/suffix/contains/safe_regex fields).
    String(StringMatcher),
    /// `present_match`: the header is there (true) or not (false).
    Present(bool),
    /// `range_match`: the value is an integer in `[start, end)`.
    Range { start: i64, end: i64 },
}

#[derive(Clone, Debug)]
pub struct HeaderMatcher {
    /// Lowercased; may be a pseudo-header such as `:method` or `:authority`.
    pub name: String,
    pub matcher: HeaderMatch,
    pub invert: bool,
    /// `treat_missing_header_as_empty`.
    pub treat_missing_as_empty: bool,
}

#[derive(Clone, Debug)]
pub struct QueryParameterMatcher {
    pub name: String,
    /// `None`: `present_match`.
    pub matcher: Option<StringMatcher>,
}

/// A fraction as parts per million (Envoy's `FractionalPercent` normalised).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartsPerMillion(pub u32);

impl PartsPerMillion {
    pub const ALL: PartsPerMillion = PartsPerMillion(1_000_000);
    pub const NONE: PartsPerMillion = PartsPerMillion(0);
}

/// `append_action` of a header to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendAction {
    AppendIfExistsOrAdd,
    AddIfAbsent,
    OverwriteIfExistsOrAdd,
    OverwriteIfExists,
}

#[derive(Clone, Debug)]
pub struct HeaderValueOption {
    pub name: http::HeaderName,
    pub value: http::HeaderValue,
    pub action: AppendAction,
    /// `keep_empty_value`.
    pub keep_empty: bool,
}

/// Headers to add and remove, at route config, virtual host, route or weighted-cluster level.
#[derive(Clone, Debug, Default)]
pub struct HeaderMutations {
    pub add: Vec<HeaderValueOption>,
    pub remove: Vec<http::HeaderName>,
}

impl HeaderMutations {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// An optional timeout where zero means "disabled", as Envoy reads most timeouts.
pub fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}
