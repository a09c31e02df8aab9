//! LDS: the listeners of a sidecar, in Istio's order: per-port outbound listeners, then
//! `virtualOutbound`, then `virtualInbound`.

use strait_proto::envoy::config::listener::v3::Listener;

use super::listener::ListenerContext;
use super::listener::access_log::{attach, mesh_access_log};
use super::listener::outbound::build_outbound_listeners;
use super::listener::virtual_inbound::build_virtual_inbound;
use super::listener::virtual_outbound::build_virtual_outbound;
use crate::model::{Proxy, PushContext};

pub fn build_listeners(proxy: &Proxy, push: &PushContext) -> Vec<Listener> {
    // As in Istio, a mesh without a capture port configures no sidecar listeners at all.
    let Some(outbound_port) = capture_port(push.mesh.proxy_listen_port) else {
        return Vec::new();
    };
    let ctx = ListenerContext::new(proxy, push);
    let virtual_services = push.virtual_services_for_proxy(proxy);
    let mut out = build_outbound_listeners(&ctx, &virtual_services);
    // Without traffic capture (interception mode NONE) the outbound listeners bind to
    // localhost themselves and nothing arrives on the capture ports.
    if proxy.captures_traffic() {
        out.push(build_virtual_outbound(&ctx, outbound_port));
        if let Some(inbound_port) = capture_port(push.mesh.proxy_inbound_listen_port) {
            out.push(build_virtual_inbound(&ctx, inbound_port));
        }
    }
    if let Some(log) = mesh_access_log(&push.mesh) {
        attach(&mut out, &log);
    }
    out
}

fn capture_port(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p > 0)
}
