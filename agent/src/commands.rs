//! The small subcommands: `wait` (until the proxy is ready, for postStart hooks) and
//! `request` (one call to a local port, e.g. `request --debug-port=15020 POST drain`
//! in a native sidecar's preStop hook).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;

use crate::cli::{RequestArgs, WaitArgs};
use crate::http::{Call, send};

/// `http://host[:port]/path` → (host, port, path).
pub fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>()
                .map_err(|_| format!("--url {url:?}: bad port {p:?}"))?,
        ),
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("--url {url:?}: no host"));
    }
    Ok((host.to_owned(), port, path.to_owned()))
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolving {host}: no address"))
}

/// Polls the URL until it answers 200; `Err` with the last failure on timeout.
pub async fn wait(args: &WaitArgs) -> Result<(), String> {
    let (host, port, path) = split_url(&args.url)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    let request_timeout = Duration::from_millis(args.request_timeout_millis);
    let period = Duration::from_millis(args.period_millis);
    loop {
        let attempt = async {
            let addr = resolve(&host, port).await?;
            send(addr, &Call::get(path.clone()).timeout(request_timeout))
                .await
                .map_err(|e| e.to_string())
        };
        let last = match attempt.await {
            Ok(r) if r.status == 200 => {
                tracing::info!("{} is ready", args.url);
                return Ok(());
            }
            Ok(r) => format!("{} answered {}", args.url, r.status),
            Err(e) => e,
        };
        if Instant::now() + period > deadline {
            return Err(format!(
                "timed out after {}s waiting for {}: {last}",
                args.timeout_seconds, args.url
            ));
        }
        tokio::time::sleep(period).await;
    }
}

/// Sends one request to `localhost:<debug-port>` and returns the body; a non-2xx
/// answer is an error.
pub async fn request(args: &RequestArgs) -> Result<String, String> {
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("bad method {:?}", args.method))?;
    let path = if args.path.starts_with('/') {
        args.path.clone()
    } else {
        format!("/{}", args.path)
    };
    let mut call = Call::get(path).timeout(Duration::from_secs(10));
    call.method = method;
    if let Some(body) = &args.body {
        call.body = bytes::Bytes::from(body.clone());
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], args.debug_port));
    let reply = send(addr, &call).await.map_err(|e| e.to_string())?;
    if !(200..300).contains(&reply.status) {
        return Err(format!(
            "{} {} answered {}: {}",
            args.method,
            args.path,
            reply.status,
            reply.text().trim()
        ));
    }
    Ok(reply.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://localhost:15021/healthz/ready").unwrap(),
            ("localhost".into(), 15021, "/healthz/ready".into())
        );
        assert_eq!(split_url("http://a").unwrap(), ("a".into(), 80, "/".into()));
        assert_eq!(
            split_url("http://[::1]:15021/x").unwrap(),
            ("::1".into(), 15021, "/x".into())
        );
        assert!(split_url("https://a/").is_err());
        assert!(split_url("http://a:port/").is_err());
    }

    #[tokio::test]
    async fn wait_gives_up_with_the_last_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = wait(&WaitArgs {
            timeout_seconds: 0,
            request_timeout_millis: 200,
            period_millis: 10,
            url: format!("http://127.0.0.1:{port}/healthz/ready"),
        })
        .await
        .unwrap_err();
        assert!(
            err.contains("timed out") && err.contains(&port.to_string()),
            "{err}"
        );
    }
}
