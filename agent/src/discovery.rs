//! Watches the discovery address until it answers. The proxy connects to it by
//! itself (and retries on its own); this only makes the agent's log say plainly,
//! with backoff rather than a flood, when the control plane cannot be reached.

use std::time::Duration;

use tracing::{info, warn};

use crate::backoff::Backoff;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Returns once a TCP connection to `host:port` succeeds.
pub async fn watch(host: String, port: u16) {
    let address = format!("{host}:{port}");
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        let failure = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => {
                if backoff.attempts() > 0 {
                    info!(
                        "discovery address {address} answers now (after {} failed attempts)",
                        backoff.attempts()
                    );
                } else {
                    info!("discovery address {address} answers");
                }
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
        };
        let delay = backoff.next_delay();
        warn!("discovery address {address} does not answer: {failure}; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
    }
}
