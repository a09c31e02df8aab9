//! Network namespaces for the tests, and small TCP responders inside them.
//! Every namespace is made here with `ip netns add` and deleted on drop;
//! nothing ever runs against the root namespace.

// Test scaffolding: a failed setup step should stop the test loudly.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

const PREFIX: &str = "strait-init-";

pub const BIN: &str = env!("CARGO_BIN_EXE_strait-init");

/// What Istio's injector passes by default.
pub const INJECTOR: &[&str] = &[
    "-p",
    "15001",
    "-z",
    "15006",
    "-u",
    "1337",
    "-m",
    "REDIRECT",
    "-i",
    "*",
    "-x",
    "",
    "-b",
    "*",
    "-d",
    "15090,15021,15020",
];

/// `ip netns add` mounts /run/netns on first use; parallel first uses race.
static LOCK: Mutex<()> = Mutex::new(());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace with lo up.
    pub fn new(role: &str) -> Self {
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        sweep_stale();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NAME program args...`
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    pub fn run(&self, argv: &[&str]) -> Output {
        let mut cmd = self.command(argv[0]);
        cmd.args(&argv[1..]);
        cmd.output().expect("spawn")
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, argv: &[&str]) -> String {
        let out = self.run(argv);
        assert!(
            out.status.success(),
            "{argv:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs strait-init in this namespace.
    pub fn init(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(BIN);
        cmd.args(args).env_remove("RUST_LOG");
        cmd.output().expect("spawn strait-init")
    }

    /// Runs strait-init and asserts it succeeded.
    pub fn init_ok(&self, args: &[&str]) -> Output {
        let out = self.init(args);
        assert!(
            out.status.success(),
            "strait-init {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// iptables-save without comments (they carry timestamps).
    pub fn save(&self, tool: &str) -> String {
        self.ok(&[tool])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Both families, for comparing whole states.
    pub fn save_all(&self) -> String {
        format!(
            "{}---\n{}",
            self.save("iptables-save"),
            self.save("ip6tables-save")
        )
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it
    /// creates live here.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).expect("open netns");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in netns panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Removes namespaces left by earlier test processes that died.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces joined by a veth pair: `a` (the workload) at 10.250.0.1,
/// `b` (the outside world) at 10.250.0.2.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
}

pub const A_IP: &str = "10.250.0.1";
pub const B_IP: &str = "10.250.0.2";

impl Pair {
    pub fn new() -> Self {
        let a = Netns::new("wl");
        let b = Netns::new("ext");
        a.ok(&[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b.name,
        ]);
        for (ns, ip) in [(&a, A_IP), (&b, B_IP)] {
            ns.ok(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            ns.ok(&["ip", "link", "set", "eth0", "up"]);
        }
        Self { a, b }
    }
}

/// A listener that answers every connection with one line:
/// `<name> <original destination>` and closes it.
pub struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    pub fn start(ns: &Netns, addr: &str, name: &'static str) -> Self {
        let addr: SocketAddr = addr.parse().expect("addr");
        let listener = ns.within(move || TcpListener::bind(addr).expect("bind responder"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            while !thread_stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let original = strait_init::validation::original_destination(&stream)
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "none".into());
                        let _ = stream.set_nonblocking(false);
                        let _ = writeln!(stream, "{name} {original}");
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from inside `ns` (as this process's user, root) and returns the
/// line the far end answers with.
pub fn ask(ns: &Netns, addr: &str) -> String {
    let addr: SocketAddr = addr.parse().expect("addr");
    ns.within(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut stream = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("connect {addr}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connect {addr}: {e}"),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read answer");
        answer.trim().to_owned()
    })
}

/// Connects from inside `ns` as uid/gid 1337 (the proxy's identity), using
/// bash's /dev/tcp in a child process dropped to that user.
pub fn ask_as_proxy_user(ns: &Netns, ip: &str, port: u16) -> String {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port} && head -n1 <&3");
    let out = ns.run(&[
        "setpriv",
        "--reuid",
        "1337",
        "--regid",
        "1337",
        "--clear-groups",
        "timeout",
        "10",
        "bash",
        "-c",
        &script,
    ]);
    assert!(
        out.status.success(),
        "connection as uid 1337 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
