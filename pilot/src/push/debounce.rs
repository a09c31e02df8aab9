//! The debouncer: merges change events into one push after a quiet period
//! (`PILOT_DEBOUNCE_AFTER`, 100 ms) or a maximum delay (`PILOT_DEBOUNCE_MAX`, 10 s),
//! with at most one push in flight. A plain state machine; the loop below drives it.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::request::PushRequest;

/// What the driver should do next.
#[derive(Debug)]
pub enum Action {
    /// Nothing pending.
    Idle,
    /// Call `tick` at this time.
    WakeAt(Instant),
    /// Start this push now; call `push_done` when it has been handed to the queue.
    Push(PushRequest),
}

#[derive(Debug)]
pub struct Debouncer {
    after: Duration,
    max: Duration,
    pending: Option<PushRequest>,
    first_event: Option<Instant>,
    last_event: Option<Instant>,
    push_in_flight: bool,
}

impl Debouncer {
    pub fn new(after: Duration, max: Duration) -> Debouncer {
        Debouncer {
            after,
            max,
            pending: None,
            first_event: None,
            last_event: None,
            push_in_flight: false,
        }
    }

    pub fn event(&mut self, req: PushRequest, now: Instant) -> Action {
        self.pending = Some(match self.pending.take() {
            Some(p) => p.merge(req),
            None => req,
        });
        self.first_event.get_or_insert(now);
        self.last_event = Some(now);
        self.next(now)
    }

    pub fn tick(&mut self, now: Instant) -> Action {
        self.next(now)
    }

    pub fn push_done(&mut self, now: Instant) -> Action {
        self.push_in_flight = false;
        self.next(now)
    }

    /// When the pending request became due, for `pilot_debounce_time`.
    pub fn first_event(&self) -> Option<Instant> {
        self.first_event
    }

    fn next(&mut self, now: Instant) -> Action {
        let (Some(first), Some(last)) = (self.first_event, self.last_event) else {
            return Action::Idle;
        };
        let quiet_until = last + self.after;
        let max_until = first + self.max;
        if now < quiet_until && now < max_until {
            return Action::WakeAt(quiet_until.min(max_until));
        }
        if self.push_in_flight {
            // Keep merging until the running push is handed off; `push_done` resumes.
            return Action::Idle;
        }
        let Some(req) = self.pending.take() else {
            return Action::Idle;
        };
        self.first_event = None;
        self.last_event = None;
        self.push_in_flight = true;
        Action::Push(req)
    }
}

/// Drives a debouncer: reads events from `events`, and runs `push` for each merged
/// request (one at a time, as its own task so events keep merging meanwhile).
/// `on_pushed` gets the time from the first merged event to the hand-off.
pub async fn run<F, Fut>(
    mut debouncer: Debouncer,
    mut events: mpsc::UnboundedReceiver<PushRequest>,
    push: F,
    on_pushed: impl Fn(Duration) + Send + 'static,
) where
    F: Fn(PushRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Duration>();
    let mut wake: Option<Instant> = None;
    let push = std::sync::Arc::new(push);
    loop {
        let action = tokio::select! {
            event = events.recv() => match event {
                Some(req) => debouncer.event(req, Instant::now()),
                None => return,
            },
            Some(waited) = done_rx.recv() => {
                on_pushed(waited);
                debouncer.push_done(Instant::now())
            }
            _ = sleep_until(wake) => debouncer.tick(Instant::now()),
        };
        wake = None;
        match action {
            Action::Idle => {}
            Action::WakeAt(at) => wake = Some(at),
            Action::Push(req) => {
                let started = req.start;
                let push = push.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    push(req).await;
                    let _ = done.send(started.elapsed());
                });
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::request::TriggerReason;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn req() -> PushRequest {
        PushRequest::full(TriggerReason::Config, [])
    }

    #[test]
    fn waits_for_quiet_period_and_merges() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(100), ms(10_000));
        assert!(matches!(d.event(req(), t0), Action::WakeAt(t) if t == t0 + ms(100)));
        // A second event 50 ms later extends the quiet period.
        assert!(matches!(d.event(req(), t0 + ms(50)), Action::WakeAt(t) if t == t0 + ms(150)));
        assert!(matches!(d.tick(t0 + ms(100)), Action::WakeAt(_)));
        match d.tick(t0 + ms(150)) {
            Action::Push(r) => assert_eq!(r.reason[&TriggerReason::Config], 2),
            other => panic!("expected a push, got {other:?}"),
        }
        assert!(matches!(d.tick(t0 + ms(500)), Action::Idle));
    }

    #[test]
    fn max_delay_forces_a_push_under_constant_churn() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(100), ms(1000));
        let mut pushed = None;
        for i in 0..30 {
            let now = t0 + ms(i * 50);
            if let Action::Push(_) = d.event(req(), now) {
                pushed = Some(i * 50);
                break;
            }
        }
        assert_eq!(pushed, Some(1000));
    }

    #[test]
    fn one_push_in_flight() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(100), ms(10_000));
        d.event(req(), t0);
        assert!(matches!(d.tick(t0 + ms(100)), Action::Push(_)));
        d.event(req(), t0 + ms(110));
        // Due, but the first push has not been handed off yet.
        assert!(matches!(d.tick(t0 + ms(300)), Action::Idle));
        assert!(matches!(d.push_done(t0 + ms(310)), Action::Push(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn loop_pushes_merged_requests() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(
            Debouncer::new(ms(100), ms(10_000)),
            rx,
            move |r: PushRequest| {
                let out = out_tx.clone();
                async move {
                    let _ = out.send(r);
                }
            },
            |_| {},
        ));
        for _ in 0..3 {
            tx.send(req()).unwrap();
            tokio::time::sleep(ms(20)).await;
        }
        let merged = out_rx.recv().await.unwrap();
        assert_eq!(merged.reason[&TriggerReason::Config], 3);
    }
}
