//! Header additions and removals (`*_headers_to_add` / `*_headers_to_remove`).

use strait_proto::envoy::config::core::v3::{HeaderValueOption as PbOption, header_value_option};

use crate::config::common::{AppendAction, HeaderMutations, HeaderValueOption};
use crate::config::error::{Ctx, Result};

pub fn header_value_option(o: &PbOption, ctx: &Ctx) -> Result<HeaderValueOption> {
    let header = o
        .header
        .as_ref()
        .ok_or_else(|| ctx.field("header").error("header is required"))?;
    let hctx = ctx.field("header");
    let name = writable_name(&header.key, &hctx.field("key"))?;
    let raw: &[u8] = if header.raw_value.is_empty() {
        header.value.as_bytes()
    } else {
        &header.raw_value
    };
    let value = http::HeaderValue::from_bytes(raw).map_err(|_| {
        hctx.field("value")
            .error(format!("invalid value for header '{}'", header.key))
    })?;
    let action = append_action(o, ctx)?;
    Ok(HeaderValueOption {
        name,
        value,
        action,
        keep_empty: o.keep_empty_value,
    })
}

/// The legacy `append` wrapper wins when set (true: append, false: overwrite); setting it
/// together with a non-default `append_action` is an error, as in Envoy.
fn append_action(o: &PbOption, ctx: &Ctx) -> Result<AppendAction> {
    use header_value_option::HeaderAppendAction as A;
    let action = match A::try_from(o.append_action) {
        Ok(A::AppendIfExistsOrAdd) => AppendAction::AppendIfExistsOrAdd,
        Ok(A::AddIfAbsent) => AppendAction::AddIfAbsent,
        Ok(A::OverwriteIfExistsOrAdd) => AppendAction::OverwriteIfExistsOrAdd,
        Ok(A::OverwriteIfExists) => AppendAction::OverwriteIfExists,
        Err(_) => {
            return Err(ctx
                .field("append_action")
                .error(format!("unknown append_action {}", o.append_action)));
        }
    };
    match &o.append {
        None => Ok(action),
        Some(_) if o.append_action != A::AppendIfExistsOrAdd as i32 => Err(ctx
            .field("append")
            .error("append and append_action are both set; use append_action only")),
        Some(b) if b.value => Ok(AppendAction::AppendIfExistsOrAdd),
        Some(_) => Ok(AppendAction::OverwriteIfExistsOrAdd),
    }
}

/// A header a config may set or remove: not a pseudo-header, not `host`.
fn writable_name(name: &str, ctx: &Ctx) -> Result<http::HeaderName> {
    if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        return Err(ctx.error(format!(
            "'{name}': ':'-prefixed headers and host may not be modified"
        )));
    }
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ctx.error(format!("'{name}' is not a valid header name")))
}

/// Additions and removals of one level (route config, virtual host, route, cluster weight).
pub fn mutations(
    add: &[PbOption],
    remove: &[String],
    ctx: &Ctx,
    add_field: &str,
    remove_field: &str,
) -> Result<HeaderMutations> {
    let add = add
        .iter()
        .enumerate()
        .map(|(i, o)| header_value_option(o, &ctx.field(add_field).index(i)))
        .collect::<Result<Vec<_>>>()?;
    let remove = remove
        .iter()
        .enumerate()
        .map(|(i, n)| writable_name(n, &ctx.field(remove_field).index(i)))
        .collect::<Result<Vec<_>>>()?;
    Ok(HeaderMutations { add, remove })
}

/// The request-side mutations of a level (`request_headers_to_add/remove`).
pub fn request(add: &[PbOption], remove: &[String], ctx: &Ctx) -> Result<HeaderMutations> {
    mutations(
        add,
        remove,
        ctx,
        "request_headers_to_add",
        "request_headers_to_remove",
    )
}

/// The response-side mutations of a level (`response_headers_to_add/remove`).
pub fn response(add: &[PbOption], remove: &[String], ctx: &Ctx) -> Result<HeaderMutations> {
    mutations(
        add,
        remove,
        ctx,
        "response_headers_to_add",
        "response_headers_to_remove",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_proto::envoy::config::core::v3::HeaderValue;
    use strait_proto::google::protobuf::BoolValue;

    fn opt(key: &str, value: &str) -> PbOption {
        PbOption {
            header: Some(HeaderValue {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn append_rules() {
        let ctx = Ctx::new("RouteConfiguration", "r");
        let o = header_value_option(&opt("X-A", "1"), &ctx).unwrap();
        assert_eq!(o.name.as_str(), "x-a");
        assert_eq!(o.action, AppendAction::AppendIfExistsOrAdd);
        let mut legacy = opt("x-a", "1");
        legacy.append = Some(BoolValue { value: false });
        assert_eq!(
            header_value_option(&legacy, &ctx).unwrap().action,
            AppendAction::OverwriteIfExistsOrAdd
        );
        legacy.append_action = header_value_option::HeaderAppendAction::AddIfAbsent as i32;
        assert_eq!(
            header_value_option(&legacy, &ctx).unwrap_err().field,
            "append"
        );
        let mut action = opt("x-a", "1");
        action.append_action = 3;
        assert_eq!(
            header_value_option(&action, &ctx).unwrap().action,
            AppendAction::OverwriteIfExists
        );
        action.append_action = 9;
        assert!(header_value_option(&action, &ctx).is_err());
    }

    #[test]
    fn pseudo_headers_and_host_are_refused() {
        let ctx = Ctx::new("RouteConfiguration", "r");
        let e = request(&[opt(":path", "/x")], &[], &ctx).unwrap_err();
        assert_eq!(e.field, "request_headers_to_add[0].header.key");
        let e = response(&[], &["Host".into()], &ctx).unwrap_err();
        assert_eq!(e.field, "response_headers_to_remove[0]");
        assert!(request(&[opt("x-a", "bad\nvalue")], &[], &ctx).is_err());
        let m = request(
            &[opt("x-a", "%DOWNSTREAM_REMOTE_ADDRESS%")],
            &["x-b".into()],
            &ctx,
        )
        .unwrap();
        assert_eq!(m.add.len(), 1);
        assert_eq!(m.remove[0].as_str(), "x-b");
    }
}
