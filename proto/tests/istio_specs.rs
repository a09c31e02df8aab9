//! Istio manifests from the documentation (Bookinfo samples and reference examples) decode and
//! validate; malformed ones are rejected with the path of the bad field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use strait_proto::istio::{
    AbortError, DelayKind, DestinationRule, Duration, HashAlgorithm, HashKey, Kind, LbPolicy,
    SimpleLb, Spec, StringMatch, VirtualService, parse_spec,
};

/// Every document of a fixture file as JSON (empty documents skipped).
fn documents(name: &str) -> Vec<Value> {
    let path = format!(
        "{}/tests/fixtures/bookinfo/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Decodes and validates one object the way the config store will.
fn load(object: &Value) -> Spec {
    let kind = Kind::from_name(object["kind"].as_str().unwrap_or_default())
        .unwrap_or_else(|| panic!("unknown kind in {object}"));
    assert!(kind.serves_api_version(object["apiVersion"].as_str().unwrap_or_default()));
    let spec = kind
        .parse_spec(object["spec"].clone())
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    if let Err(errs) = spec.validate() {
        panic!("{kind} invalid: {errs:?}");
    }
    spec
}

fn one(name: &str) -> Spec {
    let docs = documents(name);
    assert_eq!(docs.len(), 1, "{name}");
    load(&docs[0])
}

fn vs(spec: Spec) -> VirtualService {
    match spec {
        Spec::VirtualService(v) => *v,
        other => panic!("expected a VirtualService, got {:?}", other.kind()),
    }
}

#[test]
fn reviews_80_20() {
    let v = vs(one("virtual-service-reviews-80-20.yaml"));
    assert_eq!(v.hosts, vec!["reviews"]);
    let route = &v.http[0].route;
    assert_eq!(route.len(), 2);
    assert_eq!(
        (route[0].destination.subset.as_str(), route[0].weight),
        ("v1", 80)
    );
    assert_eq!(
        (route[1].destination.subset.as_str(), route[1].weight),
        ("v2", 20)
    );
}

#[test]
fn reviews_jason_v2() {
    let v = vs(one("virtual-service-reviews-jason-v2.yaml"));
    assert_eq!(v.http.len(), 2);
    let m = &v.http[0].matches[0];
    assert_eq!(m.headers["end-user"], StringMatch::Exact("jason".into()));
    assert_eq!(v.http[0].route[0].destination.subset, "v2");
    assert!(v.http[1].matches.is_empty());
}

#[test]
fn ratings_fault_delay() {
    let v = vs(one("virtual-service-ratings-test-delay.yaml"));
    let delay = v.http[0]
        .fault
        .as_ref()
        .and_then(|f| f.delay.as_ref())
        .unwrap();
    assert_eq!(delay.delay, Some(DelayKind::Fixed(Duration::from_secs(7))));
    assert_eq!(delay.percentage.unwrap().value, 100.0);
}

#[test]
fn ratings_fault_abort() {
    let v = vs(one("virtual-service-ratings-test-abort.yaml"));
    let abort = v.http[0]
        .fault
        .as_ref()
        .and_then(|f| f.abort.as_ref())
        .unwrap();
    assert_eq!(abort.error, Some(AbortError::HttpStatus(500)));
}

#[test]
fn destination_rule_all() {
    let docs = documents("destination-rule-all.yaml");
    assert_eq!(docs.len(), 4);
    let subsets: Vec<usize> = docs
        .iter()
        .map(|d| match load(d) {
            Spec::DestinationRule(dr) => dr.subsets.len(),
            other => panic!("{:?}", other.kind()),
        })
        .collect();
    assert_eq!(subsets, vec![1, 3, 4, 2]);
}

#[test]
fn destination_rule_mtls() {
    let Spec::DestinationRule(dr) = one("destination-rule-all-mtls.yaml") else {
        panic!("not a DestinationRule");
    };
    let tls = dr.traffic_policy.unwrap().tls.unwrap();
    assert_eq!(
        serde_json::to_value(tls.mode).unwrap(),
        json!("ISTIO_MUTUAL")
    );
}

#[test]
fn service_entry_workload_entry_sidecar() {
    let kinds: Vec<Kind> = documents("egress-and-sidecar.yaml")
        .iter()
        .map(|d| load(d).kind())
        .collect();
    assert_eq!(
        kinds,
        vec![Kind::ServiceEntry, Kind::WorkloadEntry, Kind::Sidecar]
    );
}

#[test]
fn every_fixture_round_trips_through_serde() {
    for name in [
        "virtual-service-reviews-80-20.yaml",
        "virtual-service-reviews-jason-v2.yaml",
        "virtual-service-ratings-test-delay.yaml",
        "virtual-service-ratings-test-abort.yaml",
        "destination-rule-all.yaml",
        "destination-rule-all-mtls.yaml",
        "egress-and-sidecar.yaml",
    ] {
        for doc in documents(name) {
            let kind = Kind::from_name(doc["kind"].as_str().unwrap()).unwrap();
            let spec = kind.parse_spec(doc["spec"].clone()).unwrap();
            let back = match &spec {
                Spec::VirtualService(s) => serde_json::to_value(s),
                Spec::DestinationRule(s) => serde_json::to_value(s),
                Spec::ServiceEntry(s) => serde_json::to_value(s),
                Spec::WorkloadEntry(s) => serde_json::to_value(s),
                Spec::Sidecar(s) => serde_json::to_value(s),
            }
            .unwrap();
            assert_eq!(kind.parse_spec(back).unwrap(), spec, "{name}");
        }
    }
}

fn vs_json(http: Value) -> Value {
    json!({ "hosts": ["reviews"], "http": [http] })
}

fn route_to(host: &str) -> Value {
    json!([{ "destination": { "host": host } }])
}

#[test]
fn unknown_field_is_rejected_with_path() {
    let mut http = json!({ "route": route_to("reviews") });
    http["route"][0]["destination"]["subsett"] = json!("v1");
    let err = parse_spec::<VirtualService>(vs_json(http)).unwrap_err();
    assert_eq!(err.path(), "spec.http[0].route[0].destination.subsett");
    assert!(err.to_string().contains("unknown field `subsett`"), "{err}");
}

#[test]
fn wrong_type_is_rejected_with_path() {
    let err = parse_spec::<DestinationRule>(json!({
        "host": "reviews",
        "trafficPolicy": { "connectionPool": { "tcp": { "maxConnections": "lots" } } }
    }))
    .unwrap_err();
    assert_eq!(
        err.path(),
        "spec.trafficPolicy.connectionPool.tcp.maxConnections"
    );
    let err = parse_spec::<DestinationRule>(json!({
        "host": "reviews",
        "trafficPolicy": { "loadBalancer": { "simple": "FASTEST" } }
    }))
    .unwrap_err();
    assert_eq!(err.path(), "spec.trafficPolicy.loadBalancer.simple");
    assert!(err.message().contains("unknown variant `FASTEST`"), "{err}");
}

#[test]
fn two_oneof_members_are_rejected() {
    let http = json!({
        "match": [{ "uri": { "exact": "/a", "prefix": "/b" } }],
        "route": route_to("reviews")
    });
    let err = parse_spec::<VirtualService>(vs_json(http)).unwrap_err();
    assert_eq!(err.path(), "spec.http[0].match[0].uri");
    assert!(
        err.message()
            .contains("only one of `exact`, `prefix`, `regex`"),
        "{err}"
    );

    let http = json!({
        "fault": { "abort": { "httpStatus": 500, "grpcStatus": "UNAVAILABLE" } },
        "route": route_to("reviews")
    });
    let err = parse_spec::<VirtualService>(vs_json(http)).unwrap_err();
    assert_eq!(err.path(), "spec.http[0].fault.abort");

    let err = parse_spec::<DestinationRule>(json!({
        "host": "reviews",
        "trafficPolicy": { "loadBalancer": {
            "simple": "ROUND_ROBIN",
            "consistentHash": { "httpHeaderName": "x-user" }
        }}
    }))
    .unwrap_err();
    assert_eq!(err.path(), "spec.trafficPolicy.loadBalancer");

    let err = parse_spec::<DestinationRule>(json!({
        "host": "reviews",
        "trafficPolicy": { "loadBalancer": { "consistentHash": {
            "useSourceIp": true, "httpHeaderName": "x-user"
        }}}
    }))
    .unwrap_err();
    assert_eq!(err.path(), "spec.trafficPolicy.loadBalancer.consistentHash");
}

#[test]
fn oneof_members_decode_to_enums() {
    let dr: DestinationRule = parse_spec(json!({
        "host": "reviews",
        "trafficPolicy": { "loadBalancer": { "consistentHash": {
            "httpCookie": { "name": "user", "ttl": "0s" },
            "ringHash": { "minimumRingSize": 2048 }
        }}},
        "subsets": [{ "name": "v1", "labels": { "version": "v1" },
                      "trafficPolicy": { "loadBalancer": { "simple": "LEAST_REQUEST" } } }]
    }))
    .unwrap();
    assert!(dr.validate().is_ok(), "{:?}", dr.validate());
    let lb = dr
        .traffic_policy
        .as_ref()
        .and_then(|t| t.load_balancer.as_ref())
        .unwrap();
    let Some(LbPolicy::ConsistentHash(ch)) = &lb.policy else {
        panic!("{lb:?}");
    };
    assert!(matches!(&ch.hash_key, Some(HashKey::HttpCookie(c)) if c.name == "user"));
    assert!(
        matches!(ch.hash_algorithm, Some(HashAlgorithm::RingHash(r)) if r.minimum_ring_size == 2048)
    );
    let sub_lb = dr.subsets[0]
        .traffic_policy
        .as_ref()
        .and_then(|t| t.load_balancer.as_ref())
        .unwrap();
    assert_eq!(
        sub_lb.policy,
        Some(LbPolicy::Simple(SimpleLb::LeastRequest))
    );
    let back = serde_json::to_value(&dr).unwrap();
    assert_eq!(
        back["trafficPolicy"]["loadBalancer"]["consistentHash"]["httpCookie"]["ttl"],
        "0s"
    );
}

fn reasons(v: &VirtualService) -> Vec<String> {
    v.validate()
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn invalid_regex_is_reported_with_path() {
    let http = json!({
        "match": [{ "uri": { "regex": "/api/(v1" }, "headers": { "x-user": { "regex": "[a-" } } }],
        "route": route_to("reviews")
    });
    let v: VirtualService = parse_spec(vs_json(http)).unwrap();
    let errs = reasons(&v);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("spec.http[0].match[0].uri.regex: invalid regex"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("spec.http[0].match[0].headers.x-user.regex: invalid regex"),
        "{errs:?}"
    );
}

#[test]
fn weights_follow_istios_current_rule() {
    let two = |a: i32, b: i32| {
        vs_json(json!({ "route": [
            { "destination": { "host": "reviews", "subset": "v1" }, "weight": a },
            { "destination": { "host": "reviews", "subset": "v2" }, "weight": b }
        ]}))
    };
    let zero: VirtualService = parse_spec(two(0, 0)).unwrap();
    assert_eq!(
        reasons(&zero),
        vec!["spec.http[0].route: total destination weight = 0"]
    );
    let negative: VirtualService = parse_spec(two(-1, 50)).unwrap();
    assert_eq!(
        reasons(&negative),
        vec!["spec.http[0].route[0].weight: weight -1 < 0"]
    );
    // Weights are relative: they need not add up to 100.
    let relative: VirtualService = parse_spec(two(1, 3)).unwrap();
    assert!(relative.validate().is_ok());
}

#[test]
fn validation_reports_paths_for_common_mistakes() {
    let v: VirtualService = parse_spec(json!({
        "hosts": ["reviews", "Bad_Host"],
        "http": [{
            "route": route_to("reviews"),
            "timeout": "0s",
            "retries": { "attempts": 3, "perTryTimeout": "500us", "retryOn": "5xx,sometimes" },
            "fault": { "abort": { "httpStatus": 99 } },
            "redirect": { "uri": "/x", "redirectCode": 200 }
        }]
    }))
    .unwrap();
    let errs = reasons(&v);
    for expected in [
        "spec.hosts[1]: domain name \"Bad_Host\" invalid",
        "spec.http[0]: HTTP route cannot contain both route and redirect",
        "spec.http[0]: HTTP route cannot contain both fault and redirect",
        "spec.http[0].fault.abort.httpStatus: HTTP status 99 is not in range 200-599",
        "spec.http[0].redirect.redirectCode: 200 is not a valid redirect code, must be 3xx",
        "spec.http[0].retries.perTryTimeout: duration must be greater than 1ms",
        "spec.http[0].retries.retryOn: \"sometimes\" is not a valid retryOn policy",
        "spec.http[0].timeout: duration must be greater than 1ms",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(expected)),
            "missing {expected:?} in {errs:#?}"
        );
    }
}

#[test]
fn destination_rule_subset_rules() {
    let dr: DestinationRule = parse_spec(json!({
        "host": "reviews",
        "subsets": [
            { "name": "v1", "labels": { "version": "v1" } },
            { "name": "v1", "labels": { "version": "v1b" } },
            { "name": "V2" }
        ],
        "trafficPolicy": { "loadBalancer": { "consistentHash": {
            "httpHeaderName": "x-user", "maglev": { "tableSize": 1000 }
        }}}
    }))
    .unwrap();
    let errs: Vec<String> = dr
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        vec![
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize must be a prime number for maglev",
            "spec.subsets[1].name: duplicate subset names: v1",
            "spec.subsets[2].name: subset name is invalid: V2",
        ]
    );
}

#[test]
fn service_entry_and_sidecar_rules() {
    let se = Kind::ServiceEntry
        .parse_spec(json!({
            "hosts": ["*.example.com"],
            "ports": [
                { "number": 443, "name": "https", "protocol": "HTTPS" },
                { "number": 443, "name": "https", "protocol": "SPDY" },
                { "number": 70000, "name": "big" }
            ],
            "resolution": "DNS"
        }))
        .unwrap();
    let errs: Vec<String> = se
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    for expected in [
        "spec.ports[1].name: service entry port name \"https\" already defined",
        "spec.ports[1].number: service entry port 443 already defined",
        "spec.ports[1].protocol: unsupported protocol: SPDY",
        "spec.ports[2].number: port number 70000 must be in the range 1..65535",
        "spec.hosts[0]: hosts must be FQDN if no endpoints are provided for DNS resolution",
    ] {
        assert!(
            errs.contains(&expected.to_owned()),
            "missing {expected:?} in {errs:#?}"
        );
    }

    let sc = Kind::Sidecar
        .parse_spec(json!({ "egress": [{ "hosts": ["reviews"] }, { "hosts": ["./*"] }] }))
        .unwrap();
    let errs: Vec<String> = sc
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        vec![
            "spec.egress[0]: sidecar: the egress listener with empty port should be the last listener in the list",
            "spec.egress[0].hosts[0]: host must be of form namespace/dnsName",
            "spec.egress[1]: sidecar: egress can have only one listener with empty port",
        ]
    );
}

#[test]
fn durations_accept_protobuf_and_go_forms() {
    for (text, ms) in [
        ("10s", 10_000),
        ("0.5s", 500),
        ("1.500s", 1_500),
        ("30ms", 30),
        ("1m", 60_000),
    ] {
        let dr: DestinationRule = parse_spec(json!({
            "host": "reviews",
            "trafficPolicy": { "connectionPool": { "tcp": { "connectTimeout": text } } }
        }))
        .unwrap();
        let t = dr
            .traffic_policy
            .unwrap()
            .connection_pool
            .unwrap()
            .tcp
            .unwrap()
            .connect_timeout;
        assert_eq!(t, Some(Duration::from_millis(ms)), "{text}");
    }
    let err = parse_spec::<DestinationRule>(json!({
        "host": "reviews",
        "trafficPolicy": { "outlierDetection": { "interval": "ten seconds" } }
    }))
    .unwrap_err();
    assert_eq!(err.path(), "spec.trafficPolicy.outlierDetection.interval");
}

#[test]
fn direct_response_body_bytes_are_base64() {
    let v: VirtualService = parse_spec(vs_json(json!({
        "directResponse": { "status": 503, "body": { "bytes": "aGVsbG8=" } }
    })))
    .unwrap();
    assert!(v.validate().is_ok(), "{:?}", v.validate());
    let body = v.http[0]
        .direct_response
        .as_ref()
        .and_then(|d| d.body.as_ref())
        .unwrap();
    assert_eq!(body.as_bytes(), b"hello");
    let err = parse_spec::<VirtualService>(vs_json(json!({
        "directResponse": { "status": 503, "body": { "bytes": "%%%" } }
    })))
    .unwrap_err();
    assert_eq!(err.path(), "spec.http[0].directResponse.body");
}
