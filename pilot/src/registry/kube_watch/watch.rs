//! Driving one watch: retries with [`WatchBackoff`], re-lists accounted for by
//! [`Relist`], failures logged once per outage rather than once per retry.

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tracing::{debug, info, warn};

use super::backoff::WatchBackoff;
use super::relist::{Delta, Relist};
use crate::metrics::K8sEvents;

/// Feeds `on_delta` until the stream ends or `on_delta` returns false (its receiver
/// is gone), counting events in `events` (`pilot_k8s_*_events`) when given.
pub async fn drive<K, S, F>(
    stream_name: &str,
    stream: S,
    events: Option<K8sEvents>,
    mut on_delta: F,
) where
    K: Resource,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    F: FnMut(Delta<K>) -> bool,
{
    let stream = stream.backoff(WatchBackoff::default());
    futures::pin_mut!(stream);
    let mut relist = Relist::default();
    let mut failing = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                // `Init` comes before every list attempt, failing ones too.
                if failing && !matches!(event, Event::Init) {
                    info!(watch = stream_name, "Kubernetes watch delivering again");
                    failing = false;
                }
                for delta in relist.handle(event, events.as_ref()) {
                    if !on_delta(delta) {
                        return;
                    }
                }
            }
            Err(error) if failing => {
                debug!(watch = stream_name, %error, "Kubernetes watch still failing");
            }
            Err(error) => {
                warn!(watch = stream_name, %error, "Kubernetes watch failed; retrying");
                failing = true;
            }
        }
    }
}
