//! `HTTPRoute.redirect` and `HTTPRoute.directResponse`: routes answered by the proxy itself.

use strait_proto::envoy::config::core::v3::{DataSource, data_source::Specifier};
use strait_proto::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
};
use strait_proto::istio::{
    HttpBody, HttpDirectResponse, HttpRedirect, RedirectPort, RedirectPortSelection,
};

pub fn translate_redirect(
    redirect: &HttpRedirect,
    listener_port: u16,
) -> Result<RedirectAction, String> {
    let response_code = match redirect.redirect_code {
        0 | 301 => RedirectResponseCode::MovedPermanently,
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        other => return Err(format!("redirect code {other} is not supported")),
    };
    let path = if redirect.prefix_rewrite.is_empty() {
        PathRewriteSpecifier::PathRedirect(redirect.uri.clone())
    } else {
        PathRewriteSpecifier::PrefixRewrite(redirect.prefix_rewrite.clone())
    };
    let mut out = RedirectAction {
        host_redirect: redirect.authority.clone(),
        response_code: response_code as i32,
        path_rewrite_specifier: Some(path),
        ..Default::default()
    };
    if !redirect.scheme.is_empty() {
        out.scheme_rewrite_specifier = Some(SchemeRewriteSpecifier::SchemeRedirect(
            redirect.scheme.clone(),
        ));
    }
    if let Some(port) = redirect.redirect_port {
        out.port_redirect = redirect_port(port, listener_port);
        let scheme = if redirect.scheme.is_empty() {
            "http"
        } else {
            redirect.scheme.as_str()
        };
        // The scheme's default port is left implicit.
        if (out.port_redirect == 80 && scheme == "http")
            || (out.port_redirect == 443 && scheme == "https")
        {
            out.port_redirect = 0;
        }
    }
    Ok(out)
}

/// Envoy cannot take the port from the request; routes are built per listener port, so
/// "the request's port" is that port.
fn redirect_port(port: RedirectPort, listener_port: u16) -> u32 {
    match port {
        RedirectPort::Port(p) => p,
        RedirectPort::Derive(RedirectPortSelection::FromRequestPort) => u32::from(listener_port),
        RedirectPort::Derive(RedirectPortSelection::FromProtocolDefault) => 0,
    }
}

pub fn translate_direct_response(
    resp: &HttpDirectResponse,
) -> Result<DirectResponseAction, String> {
    if !(100..600).contains(&resp.status) {
        return Err(format!(
            "directResponse.status {} is outside [100, 600)",
            resp.status
        ));
    }
    let body = resp.body.as_ref().map(|b| DataSource {
        specifier: Some(match b {
            HttpBody::String(s) => Specifier::InlineString(s.clone()),
            HttpBody::Bytes(b) => Specifier::InlineBytes(b.clone()),
        }),
        ..Default::default()
    });
    Ok(DirectResponseAction {
        status: resp.status,
        body,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_fields() {
        let r = HttpRedirect {
            uri: "/v1/bookRatings".into(),
            authority: "newratings.default.svc.cluster.local".into(),
            redirect_port: Some(RedirectPort::Derive(RedirectPortSelection::FromRequestPort)),
            scheme: "https".into(),
            redirect_code: 302,
            prefix_rewrite: String::new(),
        };
        let out = translate_redirect(&r, 9080).unwrap();
        assert_eq!(out.host_redirect, "newratings.default.svc.cluster.local");
        assert_eq!(out.port_redirect, 9080);
        assert_eq!(out.response_code, RedirectResponseCode::Found as i32);
        assert_eq!(
            out.path_rewrite_specifier,
            Some(PathRewriteSpecifier::PathRedirect("/v1/bookRatings".into()))
        );
        assert_eq!(
            out.scheme_rewrite_specifier,
            Some(SchemeRewriteSpecifier::SchemeRedirect("https".into()))
        );
    }

    #[test]
    fn default_ports_are_implicit_and_bad_codes_rejected() {
        let r = HttpRedirect {
            redirect_port: Some(RedirectPort::Port(80)),
            ..Default::default()
        };
        assert_eq!(translate_redirect(&r, 80).unwrap().port_redirect, 0);
        let bad = HttpRedirect {
            redirect_code: 305,
            ..Default::default()
        };
        assert!(translate_redirect(&bad, 80).is_err());
    }

    #[test]
    fn direct_response_body() {
        let d = HttpDirectResponse {
            status: 503,
            body: Some(HttpBody::String("unknown".into())),
        };
        let out = translate_direct_response(&d).unwrap();
        assert_eq!(out.status, 503);
        assert_eq!(
            out.body.unwrap().specifier,
            Some(Specifier::InlineString("unknown".into()))
        );
        assert!(
            translate_direct_response(&HttpDirectResponse {
                status: 42,
                body: None
            })
            .is_err()
        );
    }
}
