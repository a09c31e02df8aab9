//! Worker threads, as Envoy's: `--concurrency N` single-threaded runtimes, each on its
//! own OS thread. A connection accepted by a worker lives on it until it closes, so the
//! request path needs no locks; shared state is read through atomics and `ArcSwap`.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

#[derive(Debug)]
pub struct Worker {
    pub index: usize,
    handle: Handle,
    // Dropping the sender lets the thread's runtime finish.
    _stop: oneshot::Sender<()>,
}

impl Worker {
    /// Runs a future on this worker; tasks it spawns stay on this worker.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut)
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

#[derive(Debug)]
pub struct Workers {
    workers: Vec<Arc<Worker>>,
}

impl Workers {
    /// Starts `count` workers (at least one).
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let mut workers = Vec::new();
        for index in 0..count.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("worker_{index}"))
                .spawn(move || {
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            workers.push(Arc::new(Worker {
                index,
                handle,
                _stop: stop,
            }));
        }
        Ok(Workers { workers })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Worker>> {
        self.workers.iter()
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_stay_on_their_worker_thread() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let names: Vec<String> = workers
            .iter()
            .map(|w| {
                let (tx, rx) = std::sync::mpsc::channel();
                w.spawn(async move {
                    // A task spawned from a worker task runs on the same thread.
                    let inner = tokio::spawn(async {
                        std::thread::current()
                            .name()
                            .unwrap_or_default()
                            .to_string()
                    });
                    let outer = std::thread::current()
                        .name()
                        .unwrap_or_default()
                        .to_string();
                    let inner = inner.await.unwrap_or_default();
                    let _ = tx.send((outer, inner));
                });
                let (outer, inner) = rx.recv().unwrap();
                assert_eq!(outer, inner);
                outer
            })
            .collect();
        assert_eq!(names, vec!["worker_0", "worker_1"]);
    }
}
