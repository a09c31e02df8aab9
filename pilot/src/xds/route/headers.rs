//! `headers.request/response.{set,add,remove}` → Envoy header mutations. Pseudo-headers and
//! `host` cannot be mutated in Envoy; a `:authority`/`host` value becomes a host rewrite.

use std::collections::BTreeMap;

use strait_proto::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};
use strait_proto::istio::{HeaderOperations, Headers};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderOps {
    pub request_to_add: Vec<HeaderValueOption>,
    pub request_to_remove: Vec<String>,
    pub response_to_add: Vec<HeaderValueOption>,
    pub response_to_remove: Vec<String>,
    /// A request `:authority`/`host` set or add (set wins).
    pub authority: Option<String>,
}

pub fn translate_headers(headers: &Headers) -> HeaderOps {
    let empty = HeaderOperations::default();
    let req = headers.request.as_ref().unwrap_or(&empty);
    let resp = headers.response.as_ref().unwrap_or(&empty);
    let (mut request_to_add, set_authority) =
        to_add(&req.set, HeaderAppendAction::OverwriteIfExistsOrAdd);
    let (req_add, add_authority) = to_add(&req.add, HeaderAppendAction::AppendIfExistsOrAdd);
    request_to_add.extend(req_add);
    let (mut response_to_add, _) = to_add(&resp.set, HeaderAppendAction::OverwriteIfExistsOrAdd);
    response_to_add.extend(to_add(&resp.add, HeaderAppendAction::AppendIfExistsOrAdd).0);
    HeaderOps {
        request_to_add,
        request_to_remove: drop_internal(&req.remove),
        response_to_add,
        response_to_remove: drop_internal(&resp.remove),
        authority: set_authority.or(add_authority),
    }
}

/// The options for one map, sorted by key (BTreeMap order), and the authority it sets.
fn to_add(
    headers: &BTreeMap<String, String>,
    action: HeaderAppendAction,
) -> (Vec<HeaderValueOption>, Option<String>) {
    let mut authority = None;
    let mut out = Vec::new();
    for (key, value) in headers {
        if is_authority(key) {
            authority = Some(value.clone());
        }
        if is_internal(key) {
            continue;
        }
        out.push(HeaderValueOption {
            header: Some(HeaderValue {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            }),
            append_action: action as i32,
            ..Default::default()
        });
    }
    (out, authority)
}

fn is_internal(key: &str) -> bool {
    key.starts_with(':') || key.eq_ignore_ascii_case("host")
}

fn is_authority(key: &str) -> bool {
    key.eq_ignore_ascii_case(":authority") || key.eq_ignore_ascii_case("host")
}

fn drop_internal(keys: &[String]) -> Vec<String> {
    keys.iter().filter(|k| !is_internal(k)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_add_remove() {
        let headers = Headers {
            request: Some(HeaderOperations {
                set: BTreeMap::from([
                    ("x-b".into(), "1".into()),
                    ("x-a".into(), "2".into()),
                    ("host".into(), "rewritten.example".into()),
                ]),
                add: BTreeMap::from([("x-c".into(), "3".into())]),
                remove: vec!["x-d".into(), ":path".into()],
            }),
            response: Some(HeaderOperations {
                remove: vec!["server".into()],
                ..Default::default()
            }),
        };
        let ops = translate_headers(&headers);
        let keys: Vec<_> = ops
            .request_to_add
            .iter()
            .map(|h| h.header.as_ref().unwrap().key.as_str())
            .collect();
        assert_eq!(keys, ["x-a", "x-b", "x-c"]);
        assert_eq!(
            ops.request_to_add[0].append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        );
        assert_eq!(
            ops.request_to_add[2].append_action,
            HeaderAppendAction::AppendIfExistsOrAdd as i32
        );
        assert_eq!(ops.request_to_remove, ["x-d"]);
        assert_eq!(ops.response_to_remove, ["server"]);
        assert_eq!(ops.authority.as_deref(), Some("rewritten.example"));
    }
}
