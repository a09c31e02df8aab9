//! Routing against what pilot-discovery really sends: bookinfo's route configuration
//! `9080`, generated for the productpage sidecar and converted.

use std::path::Path;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use strait_pilot::config::file::FileSource;
use strait_pilot::environment::Environment;
use strait_pilot::model::{Locality, Proxy};
use strait_proto::istio::MeshConfig;
use strait_proto::xds::type_url;

use crate::config::route::RouteConfig;
use crate::convert::{self, Resource};

use super::decide::{RouteTable, RouterOptions};
use super::decision::Outcome;
use super::request::RequestView;
use super::retry::{ResetKind, RetryDecision};
use super::testutil::parts;

const REVIEWS: &str = "reviews.default.svc.cluster.local";

fn bookinfo_9080() -> RouteConfig {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bookinfo");
    let scan = FileSource::new(&src).scan();
    assert!(scan.errors.is_empty(), "bookinfo config errors");
    let env = Environment::new(Arc::new(MeshConfig::default()), "cluster.local");
    env.apply_scan(scan);
    let push = env.build_push_context();
    let meta = serde_json::json!({"NAMESPACE": "default", "LABELS": {"app": "productpage", "version": "v1"}});
    let mut proxy = Proxy::from_node(
        "sidecar~10.77.0.10~productpage-v1.default~default.svc.cluster.local",
        meta.as_object().cloned().unwrap(),
        Locality::default(),
    )
    .unwrap();
    proxy.service_targets = push.service_targets(&proxy);
    let generated = strait_pilot::xds::generate(type_url::ROUTE, &proxy, &push, &["9080".into()]);
    let rds = generated
        .iter()
        .find(|r| r.name == "9080")
        .expect("pilot generates route 9080");
    match convert::decode(type_url::ROUTE, &rds.body.value).expect("route 9080 converts") {
        Resource::RouteConfig(rc) => rc,
        _ => panic!("not a route configuration"),
    }
}

fn cluster_for(
    table: &RouteTable,
    host: &str,
    headers: &[(&str, &str)],
    rng: &mut StdRng,
) -> String {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    let p = parts("GET", "/reviews/0", &all);
    let view = RequestView::from_parts(&p, false, None);
    match table
        .route_request(&view, &RouterOptions::default(), rng)
        .outcome
    {
        Outcome::Forward(f) => f.cluster.to_string(),
        other => panic!("{host}: {other:?}"),
    }
}

#[test]
fn bookinfo_reviews_as_pilot_configures_it() {
    let table = RouteTable::new(Arc::new(bookinfo_9080()));
    let mut rng = StdRng::seed_from_u64(9080);

    for host in [
        "reviews",
        "reviews:9080",
        "reviews.default.svc.cluster.local:9080",
    ] {
        assert_eq!(
            cluster_for(&table, host, &[("end-user", "jason")], &mut rng),
            format!("outbound|9080|v2|{REVIEWS}"),
            "{host}"
        );
    }

    let n = 10_000;
    let v3 = (0..n)
        .filter(|_| {
            let c = cluster_for(&table, "reviews:9080", &[], &mut rng);
            assert!(c.contains("|v1|") || c.contains("|v3|"), "{c}");
            c.contains("|v3|")
        })
        .count();
    let share = v3 as f64 / n as f64;
    assert!((0.18..0.22).contains(&share), "v3 share {share}");

    // Unknown hosts take the catch-all to the original destination.
    assert_eq!(
        cluster_for(&table, "example.org:9080", &[], &mut rng),
        "PassthroughCluster"
    );

    // details has no VirtualService: Istio's default retries apply.
    let p = parts("GET", "/details/0", &[("host", "details:9080")]);
    let view = RequestView::from_parts(&p, false, None);
    let decision = table.route_request(&view, &RouterOptions::default(), &mut rng);
    let Outcome::Forward(f) = decision.outcome else {
        panic!("details is not forwarded")
    };
    assert_eq!(
        f.cluster,
        "outbound|9080||details.default.svc.cluster.local"
    );
    let mut retry = f.retry_state(StdRng::seed_from_u64(1)).expect("retries");
    assert!(matches!(
        retry.on_response(503, None, &Default::default()),
        RetryDecision::RetryAfter(_)
    ));
    assert!(matches!(
        retry.on_reset(ResetKind::ConnectFailure),
        RetryDecision::RetryAfter(_)
    ));
    assert!(matches!(
        retry.on_response(503, None, &Default::default()),
        RetryDecision::NoRetry(_)
    ));
    let mut upstream = p.clone();
    f.apply_to_parts(&mut upstream).unwrap();
    assert_eq!(upstream.headers["x-envoy-attempt-count"], "1");
}
