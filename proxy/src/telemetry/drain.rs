//! Draining: a listener (or one of its filter chains) that LDS removed or changed, or
//! every listener at shutdown, asks its open connections to finish. HTTP/1 connections
//! answer their next response with `connection: close`, HTTP/2 connections get a
//! GOAWAY, and whatever is still open at the deadline is closed.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

/// Started once, by whoever decides the connections must go; read by every connection
/// accepted under it.
#[derive(Clone, Debug)]
pub struct Drain {
    deadline: Arc<watch::Sender<Option<Instant>>>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            deadline: Arc::new(watch::Sender::new(None)),
        }
    }
}

impl Drain {
    /// Starts draining; connections close at `deadline` at the latest. A drain already
    /// under way keeps its earlier deadline.
    pub fn start(&self, deadline: Instant) {
        self.deadline.send_if_modified(|d| match d {
            Some(earlier) if *earlier <= deadline => false,
            _ => {
                *d = Some(deadline);
                true
            }
        });
    }

    pub fn is_draining(&self) -> bool {
        self.deadline.borrow().is_some()
    }

    pub fn watch(&self) -> DrainWatch {
        DrainWatch {
            rx: self.deadline.subscribe(),
        }
    }
}

/// One connection's view of its drain.
#[derive(Clone, Debug)]
pub struct DrainWatch {
    rx: watch::Receiver<Option<Instant>>,
}

impl DrainWatch {
    /// A watch that never fires, for connections outside any listener (tests).
    pub fn never() -> DrainWatch {
        Drain::default().watch()
    }

    /// The deadline, once draining started.
    pub fn deadline(&self) -> Option<Instant> {
        *self.rx.borrow()
    }

    /// Resolves with the deadline when draining starts (at once if it has).
    pub async fn started(&mut self) -> Instant {
        // An error means nobody can start the drain any more.
        let deadline = self
            .rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|d| *d);
        match deadline {
            Some(deadline) => deadline,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn watchers_see_the_earliest_deadline() {
        let drain = Drain::default();
        let mut before = drain.watch();
        assert!(before.deadline().is_none());
        let soon = Instant::now() + Duration::from_secs(5);
        let waiter = tokio::spawn(async move { before.started().await });
        drain.start(soon);
        drain.start(soon + Duration::from_secs(10));
        assert_eq!(waiter.await.unwrap(), soon);
        let mut after = drain.watch();
        assert_eq!(after.started().await, soon);
        assert!(drain.is_draining());
        let mut never = DrainWatch::never();
        assert!(
            tokio::time::timeout(Duration::from_secs(1), never.started())
                .await
                .is_err()
        );
    }
}
