//! LDS against a bookinfo mesh: listener names, filter chains, and what runs in them.

use strait_proto::envoy::config::core::v3::{address, socket_address::PortSpecifier};
use strait_proto::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use strait_proto::envoy::config::route::v3::RouteConfiguration;
use strait_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use strait_proto::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier,
};
use strait_proto::istio::MeshOutboundMode;
use strait_proto::xds::{any, json};

use super::outbound::CONFLICT_OUTBOUND_LISTENER_TCP_OVER_TCP;
use crate::model::{Protocol, metric};
use crate::xds::lds::build_listeners;
use crate::xds::route::fixture::*;
use crate::xds::route::wkt;

fn listeners(mode: MeshOutboundMode) -> Vec<Listener> {
    let push = bookinfo_push(mode);
    let proxy = productpage_proxy(&push);
    build_listeners(&proxy, &push)
}

fn find<'a>(ls: &'a [Listener], name: &str) -> &'a Listener {
    ls.iter().find(|l| l.name == name).unwrap_or_else(|| {
        panic!(
            "no listener {name} in {:?}",
            ls.iter().map(|l| &l.name).collect::<Vec<_>>()
        )
    })
}

fn chain<'a>(l: &'a Listener, name: &str) -> &'a FilterChain {
    l.filter_chains
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no chain {name} in {:?}",
                l.filter_chains.iter().map(|c| &c.name).collect::<Vec<_>>()
            )
        })
}

fn typed(f: &Filter) -> &strait_proto::google::protobuf::Any {
    match &f.config_type {
        Some(filter::ConfigType::TypedConfig(a)) => a,
        other => panic!("{other:?}"),
    }
}

fn tcp(f: &Filter) -> TcpProxy {
    assert_eq!(f.name, "envoy.filters.network.tcp_proxy");
    any::unpack(typed(f)).unwrap()
}

fn hcm(f: &Filter) -> HttpConnectionManager {
    assert_eq!(f.name, "envoy.filters.network.http_connection_manager");
    any::unpack(typed(f)).unwrap()
}

fn tcp_cluster(f: &Filter) -> String {
    match tcp(f).cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => c,
        other => panic!("{other:?}"),
    }
}

fn port_of(l: &Listener) -> (String, u32) {
    match &l.address.as_ref().unwrap().address {
        Some(address::Address::SocketAddress(s)) => match s.port_specifier {
            Some(PortSpecifier::PortValue(p)) => (s.address.clone(), p),
            _ => panic!(),
        },
        _ => panic!(),
    }
}

#[test]
fn listener_names_and_order() {
    let ls = listeners(MeshOutboundMode::AllowAny);
    let names: Vec<_> = ls.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "10.96.0.20_3306",
            "0.0.0.0_9080",
            "10.96.0.30_9999",
            "virtualOutbound",
            "virtualInbound"
        ]
    );
}

#[test]
fn http_port_listener_uses_rds_and_passthrough_default() {
    let ls = listeners(MeshOutboundMode::AllowAny);
    let l = find(&ls, "0.0.0.0_9080");
    assert_eq!(port_of(l), ("0.0.0.0".to_string(), 9080));
    assert_eq!(l.bind_to_port, Some(wkt::bool_value(false)));
    assert!(l.continue_on_listener_filters_timeout);
    let filters: Vec<_> = l.listener_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    assert_eq!(l.filter_chains.len(), 1);
    let m = l.filter_chains[0].filter_chain_match.as_ref().unwrap();
    assert_eq!(m.application_protocols, ["http/1.1", "h2c"]);
    assert_eq!(m.transport_protocol, "raw_buffer");
    let h = hcm(&l.filter_chains[0].filters[0]);
    assert_eq!(h.stat_prefix, "outbound_0.0.0.0_9080;");
    assert!(!h.use_remote_address.unwrap().value);
    match h.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => assert_eq!(rds.route_config_name, "9080"),
        other => panic!("{other:?}"),
    }
    let default = l.default_filter_chain.as_ref().unwrap();
    assert_eq!(default.name, "PassthroughFilterChain");
    assert_eq!(tcp_cluster(&default.filters[0]), "PassthroughCluster");
}

#[test]
fn tcp_service_gets_vip_listener() {
    let ls = listeners(MeshOutboundMode::AllowAny);
    let l = find(&ls, "10.96.0.30_9999");
    assert_eq!(port_of(l), ("10.96.0.30".to_string(), 9999));
    assert!(l.listener_filters.is_empty());
    assert_eq!(l.listener_filters_timeout, Some(wkt::zero_duration()));
    assert!(l.default_filter_chain.is_none());
    assert_eq!(l.filter_chains.len(), 1);
    assert!(l.filter_chains[0].filter_chain_match.is_none());
    let t = tcp(&l.filter_chains[0].filters[0]);
    assert_eq!(
        t.stat_prefix,
        "outbound|9999||productpage.default.svc.cluster.local"
    );
    assert_eq!(
        tcp_cluster(&l.filter_chains[0].filters[0]),
        "outbound|9999||productpage.default.svc.cluster.local"
    );
}

#[test]
fn tcp_virtual_service_splits_by_weight() {
    let ls = listeners(MeshOutboundMode::AllowAny);
    let l = find(&ls, "10.96.0.20_3306");
    let t = tcp(&l.filter_chains[0].filters[0]);
    assert_eq!(t.stat_prefix, "mysqldb.default");
    match t.cluster_specifier {
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            let got: Vec<_> = w
                .clusters
                .iter()
                .map(|c| (c.name.as_str(), c.weight))
                .collect();
            assert_eq!(
                got,
                [
                    ("outbound|3306|v1|mysqldb.default.svc.cluster.local", 90),
                    ("outbound|3306|v2|mysqldb.default.svc.cluster.local", 10)
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(l.filter_chains[0].metadata.is_some());
}

#[test]
fn virtual_outbound_follows_outbound_policy() {
    for (mode, cluster) in [
        (MeshOutboundMode::AllowAny, "PassthroughCluster"),
        (MeshOutboundMode::RegistryOnly, "BlackHoleCluster"),
    ] {
        let ls = listeners(mode);
        let l = find(&ls, "virtualOutbound");
        assert_eq!(port_of(l), ("0.0.0.0".to_string(), 15001));
        assert_eq!(l.use_original_dst, Some(wkt::bool_value(true)));
        assert!(l.bind_to_port.is_none());
        let blackhole = chain(l, "virtualOutbound-blackhole");
        assert_eq!(
            blackhole
                .filter_chain_match
                .as_ref()
                .unwrap()
                .destination_port,
            Some(wkt::u32_value(15001))
        );
        assert_eq!(tcp_cluster(&blackhole.filters[0]), "BlackHoleCluster");
        let catch_all = chain(l, "virtualOutbound-catchall-tcp");
        assert!(catch_all.filter_chain_match.is_none());
        assert_eq!(tcp_cluster(&catch_all.filters[0]), cluster);
        // The per-port listeners pass unknown TCP the same way.
        let http = find(&ls, "0.0.0.0_9080");
        assert_eq!(
            tcp_cluster(&http.default_filter_chain.as_ref().unwrap().filters[0]),
            cluster
        );
    }
}

#[test]
fn virtual_inbound_chains_per_served_port() {
    let ls = listeners(MeshOutboundMode::AllowAny);
    let l = find(&ls, "virtualInbound");
    assert_eq!(port_of(l), ("0.0.0.0".to_string(), 15006));
    assert!(l.use_original_dst.is_none());
    let names: Vec<_> = l.filter_chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "virtualInbound-blackhole",
            "virtualInbound-catchall-http",
            "virtualInbound",
            "0.0.0.0_9080",
            "0.0.0.0_9999"
        ]
    );
    let filters: Vec<_> = l.listener_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.http_inspector"
        ]
    );
    assert!(l.listener_filters[1].filter_disabled.is_some());

    let http = chain(l, "0.0.0.0_9080");
    let m = http.filter_chain_match.as_ref().unwrap();
    assert_eq!(m.destination_port, Some(wkt::u32_value(9080)));
    assert_eq!(m.transport_protocol, "raw_buffer");
    assert!(m.application_protocols.is_empty());
    let h = hcm(&http.filters[0]);
    assert_eq!(h.stat_prefix, "inbound_0.0.0.0_9080;");
    assert_eq!(h.server_name, "istio-envoy");
    let rc: RouteConfiguration = match h.route_specifier {
        Some(RouteSpecifier::RouteConfig(rc)) => rc,
        other => panic!("{other:?}"),
    };
    assert_eq!(rc.name, "inbound|9080||");
    assert_eq!(rc.virtual_hosts[0].name, "inbound|http|9080");
    assert_eq!(rc.virtual_hosts[0].routes[0].name, "default");

    let tcp_chain = chain(l, "0.0.0.0_9999");
    assert_eq!(tcp_cluster(&tcp_chain.filters[0]), "inbound|9999||");
    assert_eq!(tcp(&tcp_chain.filters[0]).stat_prefix, "inbound|9999||");

    let passthrough = chain(l, "virtualInbound");
    assert_eq!(
        tcp_cluster(&passthrough.filters[0]),
        "InboundPassthroughCluster"
    );
    let catch_all_http = chain(l, "virtualInbound-catchall-http");
    assert_eq!(
        catch_all_http
            .filter_chain_match
            .as_ref()
            .unwrap()
            .application_protocols,
        ["http/1.1", "h2c"]
    );
}

#[test]
fn sniffed_service_gets_two_chains_on_its_vip() {
    let svc = service(
        "legacy",
        "default",
        Some("10.96.0.40"),
        vec![port("web", 8000, Protocol::Unsupported)],
    );
    let push = push_with(
        vec![svc],
        Vec::new(),
        Vec::new(),
        MeshOutboundMode::AllowAny,
    );
    let ls = build_listeners(&client_proxy(), &push);
    let l = find(&ls, "10.96.0.40_8000");
    assert_eq!(l.filter_chains.len(), 1);
    let h = hcm(&l.filter_chains[0].filters[0]);
    match h.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            assert_eq!(
                rds.route_config_name,
                "legacy.default.svc.cluster.local:8000"
            )
        }
        other => panic!("{other:?}"),
    }
    // The TCP chain matches everything else.
    let default = l.default_filter_chain.as_ref().unwrap();
    assert_eq!(
        tcp_cluster(&default.filters[0]),
        "outbound|8000||legacy.default.svc.cluster.local"
    );
}

#[test]
fn tcp_without_vip_merges_into_http_port_listener() {
    let web = service(
        "web",
        "default",
        Some("10.96.0.50"),
        vec![port("http", 8080, Protocol::Http)],
    );
    let mut db = (*service(
        "db",
        "default",
        None,
        vec![port("tcp", 8080, Protocol::Tcp)],
    ))
    .clone();
    db.provider = crate::model::Provider::External;
    let db2 = {
        let mut s = db.clone();
        s.hostname = "db2.default.svc.cluster.local".into();
        s
    };
    let push = push_with(
        vec![web, std::sync::Arc::new(db), std::sync::Arc::new(db2)],
        Vec::new(),
        Vec::new(),
        MeshOutboundMode::AllowAny,
    );
    let ls = build_listeners(&client_proxy(), &push);
    let l = find(&ls, "0.0.0.0_8080");
    // The HTTP chain is sniffed, the first TCP service takes the rest.
    assert_eq!(l.filter_chains.len(), 1);
    let default = l.default_filter_chain.as_ref().unwrap();
    assert_eq!(
        tcp_cluster(&default.filters[0]),
        "outbound|8080||db.default.svc.cluster.local"
    );
    // The second TCP service would match the very same connections: dropped and reported.
    assert_eq!(
        push.status.count(CONFLICT_OUTBOUND_LISTENER_TCP_OVER_TCP),
        1
    );
}

#[test]
fn headless_tcp_service_gets_a_listener_per_endpoint() {
    let svc = service(
        "cassandra",
        "default",
        None,
        vec![port("tcp", 9042, Protocol::Tcp)],
    );
    let push = push_with(
        vec![svc.clone()],
        Vec::new(),
        Vec::new(),
        MeshOutboundMode::AllowAny,
    );
    add_endpoints(
        &push,
        &svc,
        vec![
            endpoint("10.1.0.7", 9042, "tcp"),
            endpoint("10.1.0.8", 9042, "tcp"),
            endpoint("10.1.0.5", 9042, "tcp"),
        ],
    );
    let ls = build_listeners(&client_proxy(), &push);
    let names: Vec<_> = ls
        .iter()
        .map(|l| l.name.as_str())
        .filter(|n| n.ends_with("_9042"))
        .collect();
    // The proxy's own address (10.1.0.5) is left out.
    assert_eq!(names, ["10.1.0.7_9042", "10.1.0.8_9042"]);
}

#[test]
fn service_ports_on_capture_ports_are_skipped() {
    let svc = service(
        "odd",
        "default",
        Some("10.96.0.60"),
        vec![port("http", 15001, Protocol::Http)],
    );
    let push = push_with(
        vec![svc],
        Vec::new(),
        Vec::new(),
        MeshOutboundMode::AllowAny,
    );
    let mut proxy = client_proxy();
    let target = push.all_services()[0].clone();
    proxy.service_targets = vec![crate::model::ServiceTarget {
        port: target.ports[0].clone(),
        service: target,
        target_port: 15006,
    }];
    let ls = build_listeners(&proxy, &push);
    let names: Vec<_> = ls.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["virtualOutbound", "virtualInbound"]);
    assert_eq!(find(&ls, "virtualInbound").filter_chains.len(), 3);
}

#[test]
fn no_capture_means_bound_localhost_listeners_only() {
    let push = bookinfo_push(MeshOutboundMode::AllowAny);
    let mut proxy = productpage_proxy(&push);
    proxy.metadata.interception_mode = Some("NONE".into());
    let ls = build_listeners(&proxy, &push);
    let names: Vec<_> = ls.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["127.0.0.1_3306", "127.0.0.1_9080", "127.0.0.1_9999"]
    );
    assert!(ls.iter().all(|l| l.bind_to_port.is_none()));
}

#[test]
fn inbound_protocol_conflicts_are_reported() {
    let push = bookinfo_push(MeshOutboundMode::AllowAny);
    let mut proxy = productpage_proxy(&push);
    let ratings = push
        .all_services()
        .iter()
        .find(|s| s.name == "ratings")
        .unwrap()
        .clone();
    proxy.service_targets.push(crate::model::ServiceTarget {
        port: port("tcp", 9080, Protocol::Tcp),
        service: ratings,
        target_port: 9080,
    });
    build_listeners(&proxy, &push);
    assert_eq!(push.status.count(metric::CONFLICT_INBOUND_LISTENER), 1);
}

#[test]
fn every_listener_renders_as_json() {
    for mode in [MeshOutboundMode::AllowAny, MeshOutboundMode::RegistryOnly] {
        for l in listeners(mode) {
            let value = json::to_json(&l).unwrap_or_else(|e| panic!("{}: {e}", l.name));
            assert_eq!(value["name"], l.name.as_str());
        }
    }
}

#[test]
fn tls_ports_match_on_sni() {
    let with_vip = service(
        "secure",
        "default",
        Some("10.96.0.41"),
        vec![port("https", 443, Protocol::Https)],
    );
    let without_vip = {
        let mut s = (*service(
            "ext",
            "default",
            None,
            vec![port("tls", 8443, Protocol::Tls)],
        ))
        .clone();
        s.provider = crate::model::Provider::External;
        std::sync::Arc::new(s)
    };
    let vs = config(
        "secure",
        "default",
        r#"
hosts: [secure]
tls:
- match:
  - sniHosts: [secure.default.svc.cluster.local, alt.example.com]
  route: [{destination: {host: secure, port: {number: 443}}}]
"#,
    );
    let push = push_with(
        vec![with_vip, without_vip],
        vec![vs],
        Vec::new(),
        MeshOutboundMode::AllowAny,
    );
    let ls = build_listeners(&client_proxy(), &push);

    let l = find(&ls, "10.96.0.41_443");
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let m = l.filter_chains[0].filter_chain_match.as_ref().unwrap();
    assert_eq!(
        m.server_names,
        ["alt.example.com", "secure.default.svc.cluster.local"]
    );
    assert_eq!(
        tcp_cluster(&l.filter_chains[0].filters[0]),
        "outbound|443||secure.default.svc.cluster.local"
    );
    assert_eq!(
        l.default_filter_chain.as_ref().unwrap().name,
        "PassthroughFilterChain"
    );

    // Without a VIP of its own, the service is told apart by its hostname as SNI.
    let l = find(&ls, "0.0.0.0_8443");
    let m = l.filter_chains[0].filter_chain_match.as_ref().unwrap();
    assert_eq!(m.server_names, ["ext.default.svc.cluster.local"]);
}
