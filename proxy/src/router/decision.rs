//! What routing decided, as data the HTTP connection manager carries out.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use rand::Rng;

use crate::config::common::HeaderMutations;
use crate::config::route::{ForwardAction, RetryPolicy, Route, VirtualHost};

use super::headers::{self, names};
use super::local_reply::LocalReply;
use super::retry::{RetryOverrides, RetryState};
use super::timeout::{Timeouts, format_grpc_timeout};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouterError {
    #[error("rewritten path '{0}' is not a valid request target")]
    InvalidPath(String),
    #[error("rewritten authority '{0}' is not valid")]
    InvalidAuthority(String),
}

/// Why a request is answered locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectReason {
    /// No virtual host or route matched (response flag `NR`).
    NoRoute,
    /// The route's `direct_response`.
    DirectResponse,
    /// The fault filter aborted the request (`FI`).
    FaultAbort,
    /// A CORS preflight answered by the CORS filter.
    CorsPreflight,
    /// The route's weighted clusters could not pick one (`NC`).
    NoCluster,
}

impl DirectReason {
    /// Envoy's response flag for access logs, if any.
    pub fn response_flag(self) -> Option<&'static str> {
        match self {
            DirectReason::NoRoute => Some("NR"),
            DirectReason::FaultAbort => Some("FI"),
            DirectReason::NoCluster => Some("NC"),
            DirectReason::DirectResponse | DirectReason::CorsPreflight => None,
        }
    }
}

/// The outcome of routing one request.
#[derive(Debug)]
pub struct RoutingDecision<'c> {
    pub vhost: Option<&'c VirtualHost>,
    pub route: Option<&'c Route>,
    /// Injected fault delay: wait this long before carrying out `outcome` (`DI`).
    pub delay: Option<Duration>,
    /// The request counts as an active fault until it completes (fault filter gauge).
    pub fault_active: bool,
    pub outcome: Outcome<'c>,
}

#[derive(Debug)]
pub enum Outcome<'c> {
    Forward(Box<ForwardDecision<'c>>),
    Redirect {
        status: u16,
        location: String,
        reply: LocalReply,
    },
    Direct {
        reason: DirectReason,
        reply: LocalReply,
    },
}

/// Everything needed to send a request upstream and shape its response.
#[derive(Debug)]
pub struct ForwardDecision<'c> {
    pub route: &'c Route,
    pub vhost: &'c VirtualHost,
    pub action: &'c ForwardAction,
    /// The chosen cluster (after any weighted pick).
    pub cluster: &'c str,
    pub timeouts: Timeouts,
    /// The route's retry policy, else the virtual host's.
    pub retry_policy: Option<&'c RetryPolicy>,
    /// Retry settings from the request's `x-envoy-*` headers.
    pub retry_overrides: RetryOverrides,
    /// The upstream `:path` when rewritten.
    pub path: Option<String>,
    /// The value of `x-envoy-original-path`, set when the path is rewritten.
    pub original_path: Option<String>,
    /// The upstream authority from `host_rewrite_literal`.
    pub authority: Option<String>,
    /// Replace the authority with the upstream host's hostname once one is chosen.
    pub auto_host_rewrite: bool,
    /// Header operations for the upstream request, in application order.
    pub request_headers: Vec<&'c HeaderMutations>,
    /// Header operations for the response, in application order.
    pub response_headers: Vec<&'c HeaderMutations>,
    /// Clusters to mirror the request to (fire and forget).
    pub mirrors: Vec<&'c str>,
    /// CORS headers to set on the response.
    pub cors_response_headers: Option<HeaderMap>,
    /// Send `x-envoy-attempt-count` upstream.
    pub include_attempt_count: bool,
    /// Write the attempt's timeout into `grpc-timeout` (gRPC with `max_grpc_timeout`).
    pub set_grpc_timeout: bool,
    /// The router's `suppress_envoy_headers`: no `x-envoy-*` headers of its own.
    pub suppress_envoy_headers: bool,
}

impl<'c> ForwardDecision<'c> {
    /// Retry state for this request, if anything is retriable.
    pub fn retry_state<R: Rng>(&self, rng: R) -> Option<RetryState<'c, R>> {
        RetryState::new(self.retry_policy, &self.retry_overrides, rng)
    }

    /// Per-request header changes, once before the first attempt: the consumed
    /// `x-envoy-*` controls are stripped, configured operations applied, and
    /// `x-envoy-original-path` set. Path and authority are in `path` / `authority` (see
    /// [`Self::apply_to_parts`]).
    pub fn apply_to_request(&self, headers: &mut HeaderMap) {
        if super::downstream::RemovableHeaders::scan(headers).envoy {
            for name in &headers::CONSUMED_REQUEST_HEADERS {
                headers.remove(name);
            }
        }
        headers::apply_all(headers, &self.request_headers);
        if let Some(original) = &self.original_path
            && let Ok(v) = HeaderValue::from_str(original)
        {
            headers.insert(names::X_ENVOY_ORIGINAL_PATH, v);
        }
    }

    /// Per-attempt headers: the attempt's timeout (`x-envoy-expected-rq-timeout-ms`,
    /// `grpc-timeout`) for an attempt starting `elapsed` after the request, and
    /// `x-envoy-attempt-count` (from 1).
    pub fn apply_attempt_headers(&self, headers: &mut HeaderMap, attempt: u32, elapsed: Duration) {
        if let Some(ms) = self.timeouts.expected_ms(elapsed) {
            if !self.suppress_envoy_headers {
                headers::set_expected_timeout(headers, ms);
            }
            if self.set_grpc_timeout
                && let Ok(v) =
                    HeaderValue::from_str(&format_grpc_timeout(Duration::from_millis(ms)))
            {
                headers.insert(names::GRPC_TIMEOUT, v);
            }
        }
        if self.include_attempt_count {
            headers::set_attempt_count(headers, attempt);
        }
    }

    /// Everything for the first attempt on a request head: headers, then the rewritten
    /// path and authority into the URI (and `Host`).
    pub fn apply_to_parts(&self, parts: &mut http::request::Parts) -> Result<(), RouterError> {
        self.apply_to_request(&mut parts.headers);
        self.apply_attempt_headers(&mut parts.headers, 1, Duration::ZERO);
        if let Some(path) = &self.path {
            set_path(parts, path)?;
        }
        if let Some(authority) = &self.authority {
            set_authority(parts, authority)?;
        }
        Ok(())
    }

    /// `auto_host_rewrite` once the upstream host is known.
    pub fn apply_auto_host(
        &self,
        parts: &mut http::request::Parts,
        upstream_hostname: Option<&str>,
    ) -> Result<(), RouterError> {
        match super::rewrite::auto_host(self.action, upstream_hostname) {
            Some(host) => set_authority(parts, &host),
            None => Ok(()),
        }
    }

    /// The response's headers as they go downstream: `x-envoy-upstream-service-time`,
    /// then the configured operations (which may remove it), then CORS.
    pub fn apply_to_response(
        &self,
        headers: &mut HeaderMap,
        upstream_service_time: Option<Duration>,
    ) {
        if let Some(t) = upstream_service_time
            && !self.suppress_envoy_headers
        {
            headers::set_upstream_service_time(headers, t);
        }
        headers::apply_all(headers, &self.response_headers);
        if let Some(cors) = &self.cors_response_headers {
            for (name, value) in cors {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

fn set_path(parts: &mut http::request::Parts, path: &str) -> Result<(), RouterError> {
    let mut uri = parts.uri.clone().into_parts();
    uri.path_and_query = Some(
        path.parse()
            .map_err(|_| RouterError::InvalidPath(path.to_string()))?,
    );
    parts.uri =
        http::Uri::from_parts(uri).map_err(|_| RouterError::InvalidPath(path.to_string()))?;
    Ok(())
}

fn set_authority(parts: &mut http::request::Parts, authority: &str) -> Result<(), RouterError> {
    let bad = || RouterError::InvalidAuthority(authority.to_string());
    if parts.uri.authority().is_some() {
        let mut uri = parts.uri.clone().into_parts();
        uri.authority = Some(authority.parse().map_err(|_| bad())?);
        parts.uri = http::Uri::from_parts(uri).map_err(|_| bad())?;
    }
    if parts.headers.contains_key(http::header::HOST) || parts.uri.authority().is_none() {
        let v = HeaderValue::from_str(authority).map_err(|_| bad())?;
        parts.headers.insert(http::header::HOST, v);
    }
    Ok(())
}
