//! Route actions that answer without an upstream: redirects and direct responses.

use strait_proto::envoy::config::route::v3::{
    DirectResponseAction as PbDirect, RedirectAction as PbRedirect,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
};

use super::{data_source, route_action, wkt};
use crate::config::error::{Ctx, Result};
use crate::config::route::{DirectResponseAction, RedirectAction, RedirectPath, RedirectScheme};

pub fn redirect(r: &PbRedirect, ctx: &Ctx) -> Result<RedirectAction> {
    let scheme = match &r.scheme_rewrite_specifier {
        None | Some(SchemeRewriteSpecifier::HttpsRedirect(false)) => RedirectScheme::Keep,
        Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => RedirectScheme::Https,
        Some(SchemeRewriteSpecifier::SchemeRedirect(s)) => match s.to_ascii_lowercase().as_str() {
            "" => RedirectScheme::Keep,
            "https" => RedirectScheme::Https,
            "http" => RedirectScheme::Http,
            other => RedirectScheme::Other(other.to_string()),
        },
    };
    let path = match &r.path_rewrite_specifier {
        None => RedirectPath::Keep,
        Some(PathRewriteSpecifier::PathRedirect(p)) => RedirectPath::Path(p.clone()),
        Some(PathRewriteSpecifier::PrefixRewrite(p)) => RedirectPath::PrefixRewrite(p.clone()),
        Some(PathRewriteSpecifier::RegexRewrite(rr)) => {
            let (re, sub) = route_action::regex_rewrite(rr, &ctx.field("regex_rewrite"))?;
            RedirectPath::RegexRewrite(re, sub)
        }
        Some(PathRewriteSpecifier::PathRewrite(_)) => {
            return Err(ctx
                .field("path_rewrite")
                .error("URI template rewrites are not supported"));
        }
    };
    let status = match RedirectResponseCode::try_from(r.response_code) {
        Ok(RedirectResponseCode::MovedPermanently) => 301,
        Ok(RedirectResponseCode::Found) => 302,
        Ok(RedirectResponseCode::SeeOther) => 303,
        Ok(RedirectResponseCode::TemporaryRedirect) => 307,
        Ok(RedirectResponseCode::PermanentRedirect) => 308,
        Err(_) => {
            return Err(ctx.field("response_code").error(format!(
                "unknown redirect response code {}",
                r.response_code
            )));
        }
    };
    let port = match r.port_redirect {
        0 => None,
        p => Some(wkt::port(p, false, &ctx.field("port_redirect"))?),
    };
    // The host ends up in a Location header: it must be a valid header value.
    if http::HeaderValue::from_str(&r.host_redirect).is_err() {
        return Err(ctx.field("host_redirect").error("invalid host"));
    }
    Ok(RedirectAction {
        scheme,
        host: (!r.host_redirect.is_empty()).then(|| r.host_redirect.clone()),
        port,
        path,
        status,
        strip_query: r.strip_query,
    })
}

pub fn direct_response(d: &PbDirect, max_body: u32, ctx: &Ctx) -> Result<DirectResponseAction> {
    let status = u16::try_from(d.status)
        .ok()
        .filter(|s| (200..600).contains(s))
        .ok_or_else(|| {
            ctx.field("status")
                .error(format!("status {} must be in [200, 600)", d.status))
        })?;
    if d.body_format.is_some() {
        return Err(ctx
            .field("body_format")
            .error("formatted direct response bodies are not supported"));
    }
    let body = match &d.body {
        None => None,
        Some(ds) => {
            let bytes = data_source::inline_bytes(ds, &ctx.field("body"))?;
            if bytes.len() > max_body as usize {
                return Err(ctx.field("body").error(format!(
                    "response body size is {} bytes; maximum is {max_body}",
                    bytes.len()
                )));
            }
            Some(bytes::Bytes::from(bytes))
        }
    };
    Ok(DirectResponseAction { status, body })
}
