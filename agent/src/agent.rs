//! One `pilot-agent proxy sidecar` run: resolve the configuration, serve status, write
//! the bootstrap and start the proxy (retrying with backoff while either fails, so the
//! container stays up with its logs and says why it is not ready), then supervise:
//! signals are passed on, the proxy's exit ends the agent with the same status, and
//! SIGTERM drains the proxy before stopping it.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};
use tracing::{error, info, warn};

use crate::admin::{ACTIVE_CONNECTIONS_STATS, AdminClient, active_connections};
use crate::backoff::Backoff;
use crate::bootstrap::{self, BootstrapParams};
use crate::cli::ProxyArgs;
use crate::config::{self, AgentConfig, Inputs};
use crate::metrics::AgentMetrics;
use crate::podinfo::{POD_INFO_DIR, PodInfo};
use crate::proxy::{self, ProxyProcess};
use crate::readiness::Readiness;
use crate::status::{self, StatusState};
use crate::{discovery, drain, env};

/// Exit code for configuration errors the agent cannot recover from.
pub const CONFIG_ERROR: u8 = 2;
/// Exit code for runtime failures (e.g. the status port is taken).
pub const RUNTIME_ERROR: u8 = 1;

const STARTUP_BACKOFF_FIRST: Duration = Duration::from_millis(500);
const STARTUP_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Reads the inputs from the process and its files, then resolves them.
fn load_config(args: &ProxyArgs) -> Result<AgentConfig, String> {
    let env = env::from_process();
    let mesh = match std::fs::read_to_string(&args.mesh_config) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(format!("--meshConfig {}: {e}", args.mesh_config.display()));
        }
    };
    let pod = PodInfo::read(Path::new(POD_INFO_DIR)).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().ok();
    let host_ips = host_ips();
    config::resolve(&Inputs {
        args,
        env: &env,
        mesh_config: mesh.as_deref(),
        pod: &pod,
        host_ips: &host_ips,
        agent_dir: exe.as_deref().and_then(Path::parent),
    })
    .map_err(|e| e.to_string())
}

/// The machine's non-loopback addresses, for a pod without `INSTANCE_IP`.
fn host_ips() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = addrs
        .filter_map(|a| {
            let addr = a.address?;
            if let Some(v4) = addr.as_sockaddr_in() {
                return Some(IpAddr::V4(v4.ip()));
            }
            addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
        })
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
            IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local(),
        })
        .collect();
    // IPv4 first: the node ID carries the first address.
    ips.sort_by_key(IpAddr::is_ipv6);
    ips.dedup();
    ips
}

struct Signals {
    term: SignalStream,
    int: SignalStream,
    hup: SignalStream,
    usr1: SignalStream,
    usr2: SignalStream,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    async fn next(&mut self) -> Received {
        tokio::select! {
            _ = self.term.recv() => Received::Stop("SIGTERM"),
            _ = self.int.recv() => Received::Stop("SIGINT"),
            _ = self.hup.recv() => Received::Forward(Signal::SIGHUP),
            _ = self.usr1.recv() => Received::Forward(Signal::SIGUSR1),
            _ = self.usr2.recv() => Received::Forward(Signal::SIGUSR2),
        }
    }
}

enum Received {
    /// SIGTERM or SIGINT: drain and stop.
    Stop(&'static str),
    /// A signal the proxy gets as it is (log reopening and the like).
    Forward(Signal),
}

/// Runs the agent; returns the process exit code.
pub async fn run(args: ProxyArgs) -> u8 {
    let cfg = match load_config(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            error!("{e}");
            eprintln!("pilot-agent: {e}");
            return CONFIG_ERROR;
        }
    };
    for w in &cfg.warnings {
        warn!("{w}");
    }
    info!(
        node = %cfg.node.id,
        discovery = %cfg.discovery_address,
        proxy = %cfg.binary.display(),
        bootstrap = %cfg.bootstrap_path.display(),
        "starting pilot-agent"
    );
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            error!("installing signal handlers: {e}");
            return RUNTIME_ERROR;
        }
    };
    let listener = match status::bind(cfg.ports.status).await {
        Ok(l) => l,
        Err(e) => {
            error!("cannot listen on the status port {}: {e}", cfg.ports.status);
            return RUNTIME_ERROR;
        }
    };
    let admin = AdminClient::new(cfg.localhost(), cfg.ports.admin);
    let state = Arc::new(StatusState {
        readiness: Readiness::new(admin, &cfg.discovery_address),
        metrics: AgentMetrics::default(),
        admin,
        localhost: cfg.localhost(),
        prometheus_port: cfg.ports.prometheus,
        scrape: cfg.scrape.clone(),
        probers: cfg.probers.clone(),
        probe_destination: cfg.probe_destination,
        drained: AtomicBool::new(false),
        quit: tokio::sync::Notify::new(),
    });
    info!("status server listening on port {}", cfg.ports.status);
    let status_task = tokio::spawn(status::serve(listener, state.clone()));
    let discovery_task = tokio::spawn(discovery::watch(
        cfg.discovery_host.clone(),
        cfg.discovery_port,
    ));

    let code = match start_proxy(&cfg, &state, &mut signals).await {
        Some(proxy) => supervise(&cfg, proxy, &state, &admin, &mut signals).await,
        None => 0,
    };
    status_task.abort();
    discovery_task.abort();
    code
}

/// Writes the bootstrap and starts the proxy, retrying with backoff. `None` when a
/// stop signal or `/quitquitquit` came first.
async fn start_proxy(
    cfg: &AgentConfig,
    state: &StatusState,
    signals: &mut Signals,
) -> Option<ProxyProcess> {
    let mut backoff = Backoff::new(STARTUP_BACKOFF_FIRST, STARTUP_BACKOFF_MAX);
    let bootstrap = bootstrap::render(&BootstrapParams::from_config(cfg));
    loop {
        let attempt = bootstrap::check(&bootstrap)
            .and_then(|_| bootstrap::write(&cfg.bootstrap_path, &bootstrap))
            .map_err(|e| e.to_string())
            .and_then(|()| {
                let args = proxy::command_line(cfg, &cfg.bootstrap_path);
                ProxyProcess::spawn(&cfg.binary, &args, &cfg.env)
                    .map_err(|e| format!("cannot start the proxy {}: {e}", cfg.binary.display()))
            });
        match attempt {
            Ok(p) => {
                info!(
                    pid = p.pid().unwrap_or(0),
                    "proxy started: {} -c {}",
                    cfg.binary.display(),
                    cfg.bootstrap_path.display()
                );
                state.readiness.set_startup_problem(None);
                return Some(p);
            }
            Err(e) => {
                let delay = backoff.next_delay();
                error!(
                    "{e} (attempt {}); retrying in {delay:?}",
                    backoff.attempts()
                );
                state.readiness.set_startup_problem(Some(e));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    received = signals.next() => {
                        if let Received::Stop(s) = received {
                            info!("{s} while the proxy was not running; exiting");
                            return None;
                        }
                    }
                    _ = state.quit.notified() => return None,
                }
            }
        }
    }
}

async fn supervise(
    cfg: &AgentConfig,
    mut proxy: ProxyProcess,
    state: &StatusState,
    admin: &AdminClient,
    signals: &mut Signals,
) -> u8 {
    loop {
        tokio::select! {
            status = proxy.wait() => {
                return match status {
                    Ok(s) => {
                        let code = proxy::exit_code(s);
                        if code == 0 {
                            info!("the proxy exited normally");
                        } else {
                            if code == 137 {
                                warn!("the proxy was killed (SIGKILL); it may have run out of memory");
                            }
                            error!("the proxy exited: {s}; exiting with {code}");
                        }
                        code
                    }
                    Err(e) => {
                        error!("waiting for the proxy: {e}");
                        RUNTIME_ERROR
                    }
                };
            }
            received = signals.next() => match received {
                Received::Stop(s) => {
                    info!("{s}: terminating");
                    return terminate(cfg, proxy, state, admin, signals).await;
                }
                Received::Forward(sig) => {
                    info!("passing {sig} to the proxy");
                    proxy.signal(sig);
                }
            },
            _ = state.quit.notified() => {
                info!("/quitquitquit: stopping the proxy without draining");
                proxy.kill().await;
                return 0;
            }
        }
    }
}

/// Drains the proxy's inbound listeners, waits as configured, then stops it.
async fn terminate(
    cfg: &AgentConfig,
    mut proxy: ProxyProcess,
    state: &StatusState,
    admin: &AdminClient,
    signals: &mut Signals,
) -> u8 {
    if state.drained.load(Ordering::SeqCst) {
        info!("already drained by /drain; stopping the proxy now");
        proxy.kill().await;
        return 0;
    }
    info!("draining the proxy's inbound listeners");
    if let Err(e) = admin.drain_listeners(true, false).await {
        warn!("asking the proxy to drain: {e}");
    }
    let excluded = [
        cfg.ports.envoy_status,
        cfg.ports.prometheus,
        cfg.ports.admin,
    ];
    let waiting = drain::wait(&cfg.drain, || async move {
        admin
            .stats(ACTIVE_CONNECTIONS_STATS)
            .await
            .map(|s| active_connections(&s, &excluded))
            .map_err(|e| e.to_string())
    });
    tokio::pin!(waiting);
    loop {
        tokio::select! {
            end = &mut waiting => {
                info!("drain over ({end:?}); stopping the proxy");
                break;
            }
            status = proxy.wait() => {
                info!("the proxy exited while draining ({status:?})");
                return 0;
            }
            received = signals.next() => match received {
                Received::Stop(s) => {
                    info!("{s} again: stopping the proxy now");
                    break;
                }
                Received::Forward(sig) => proxy.signal(sig),
            },
            _ = state.quit.notified() => {
                info!("/quitquitquit: stopping the proxy now");
                break;
            }
        }
    }
    proxy.kill().await;
    info!("proxy stopped; agent exiting");
    0
}
