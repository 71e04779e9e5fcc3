//! The alert thread's loop: take signals in, tick, and deliver.
//!
//! Each sink has at most one delivery in flight, so alerts reach it in order and a slow webhook
//! holds up only itself. When an attempt fails, the sink is left alone until that delivery is
//! due again (its back-off), so a webhook that is down gets one probe per back-off period rather
//! than one per waiting alert; the first success lets the rest through. Deliveries run as tasks
//! on this thread's runtime and report back on a channel, so signals keep being taken in while a
//! webhook is slow.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::pipeline::{Delivery, Pipeline};
use crate::{Answer, Signal, Transport};

/// How often the pipeline ticks (writes what signals changed, sends out due groups, summarises)
/// and due deliveries are looked for: at most this late, and never more often, however many
/// signals arrive.
pub const TICK: Duration = Duration::from_millis(100);

/// Signals taken in one transaction, at most.
const BATCH: usize = 512;

/// Where the time comes from.
pub trait Clock: Send + Sync + Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs until `stop` fires (or its sender is dropped).
pub async fn run(
    mut pipeline: Pipeline,
    mut signals: mpsc::Receiver<Signal>,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    mut stop: oneshot::Receiver<()>,
) {
    let sinks = pipeline.sinks.len();
    let (done_tx, mut done) = mpsc::channel::<(Delivery, Result<Answer, String>)>(sinks.max(1));
    let mut busy = vec![false; sinks];
    let mut resting_until = vec![0u64; sinks];
    let mut open = true;
    let mut batch = Vec::with_capacity(BATCH);
    let tick_ms = TICK.as_millis() as u64;
    let mut next_tick = 0u64;
    let mut look = false;
    loop {
        let now = clock.now_ms();
        if now >= next_tick {
            pipeline.tick(now);
            next_tick = now.saturating_add(tick_ms);
            look = true;
        }
        for s in (0..sinks).filter(|_| look) {
            if busy[s] || resting_until[s] > now {
                continue;
            }
            let Some(mut d) = pipeline.next_due(s, now) else {
                continue;
            };
            busy[s] = true;
            let transport = transport.clone();
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                let body = std::mem::take(&mut d.body);
                let answer = transport.post(&d.url, &d.headers, body, d.timeout).await;
                let _ = done_tx.send((d, answer)).await;
            });
        }
        look = false;
        let until_tick = Duration::from_millis(next_tick.saturating_sub(clock.now_ms()));
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some((d, answer)) = done.recv() => {
                let now = clock.now_ms();
                if let Some(b) = busy.get_mut(d.sink) {
                    *b = false;
                }
                look = true;
                let failed = match answer {
                    Ok(a) if (200..300).contains(&a.status) => {
                        pipeline.delivered(&d);
                        None
                    }
                    Ok(a) => Some((format!("HTTP {}", a.status), a.retry_after_ms)),
                    Err(e) => Some((e, None)),
                };
                if let Some((why, retry_after)) = failed {
                    let due = pipeline.failed(&d, &why, retry_after, now);
                    if let Some(r) = resting_until.get_mut(d.sink) {
                        *r = due;
                    }
                }
            }
            n = signals.recv_many(&mut batch, BATCH), if open => {
                if n == 0 {
                    // Every emitter is gone; deliveries go on until stopped.
                    open = false;
                } else {
                    pipeline.on_signals(&batch, clock.now_ms());
                    batch.clear();
                }
            }
            () = tokio::time::sleep(until_tick) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    use palisade_detect::Severity;

    use super::*;
    use crate::{Exchange, PostFuture};

    /// Refuses the first `fail` posts (no answer), then answers 200; keeps every post.
    #[derive(Debug, Default)]
    struct Flaky {
        fail: AtomicU32,
        posts: Mutex<Vec<(String, bool)>>,
    }

    impl Transport for Flaky {
        fn post<'a>(
            &'a self,
            _url: &'a str,
            headers: &'a [(String, String)],
            _body: Vec<u8>,
            _timeout: Duration,
        ) -> PostFuture<'a> {
            let id = headers
                .iter()
                .find(|(k, _)| k == "idempotency-key")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let failing = self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if let Ok(mut p) = self.posts.lock() {
                p.push((id, !failing));
            }
            Box::pin(async move {
                if failing {
                    Err("connection refused".to_owned())
                } else {
                    Ok(Answer {
                        status: 200,
                        retry_after_ms: None,
                    })
                }
            })
        }
    }

    #[test]
    fn a_webhook_that_is_down_gets_one_probe_per_back_off_and_then_everything_in_order() {
        let path = std::env::temp_dir().join(format!(
            "palisade-alerts-dispatch-{}-{}.db",
            std::process::id(),
            now_ms()
        ));
        let src = format!(
            "alerts:\n  outbox_path: '{}'\n  sinks: [{{ name: hook, url: 'http://127.0.0.1:9/h' }}]\n  rules:\n    - {{ name: b, on: block, sinks: [hook], dedupe: {{ wait_seconds: 0 }}, retry: {{ initial_ms: 100, max_ms: 300, jitter: 0 }} }}\n",
            path.display()
        );
        let cfg = palisade_policy::parse_str(&src, "t.yaml")
            .unwrap_or_else(|e| panic!("{e}"))
            .alerts;
        let pipeline = Pipeline::open(&cfg, now_ms()).unwrap_or_else(|e| panic!("{e}"));
        let transport = Arc::new(Flaky {
            fail: AtomicU32::new(2),
            ..Flaky::default()
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let posts = rt.block_on(async {
            let (tx, rx) = mpsc::channel(16);
            let (stop, stopped) = oneshot::channel();
            let task = tokio::spawn(run(
                pipeline,
                rx,
                transport.clone(),
                Arc::new(SystemClock),
                stopped,
            ));
            for route in ["r1", "r2", "r3"] {
                let e = Exchange {
                    request_id: format!("req-{route}"),
                    at_ms: now_ms(),
                    route: route.into(),
                    decision: "block".into(),
                    findings: vec![("secrets".into(), "aws_access_key".into(), Severity::High)],
                    ..Exchange::default()
                };
                let _ = tx.send(Signal::Exchange(Box::new(e))).await;
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let ok = transport
                    .posts
                    .lock()
                    .map_or(0, |p| p.iter().filter(|p| p.1).count());
                if ok >= 3 || std::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = stop.send(());
            let _ = task.await;
            transport
                .posts
                .lock()
                .map(|p| p.clone())
                .unwrap_or_default()
        });
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        assert_eq!(
            posts.len(),
            5,
            "two failed probes, then three deliveries: {posts:?}"
        );
        assert!(!posts[0].1 && !posts[1].1);
        assert_eq!(posts[0].0, posts[1].0, "the same alert probes the sink");
        assert_eq!(posts[2].0, posts[0].0, "and goes first once it is back");
        let ids: std::collections::BTreeSet<&String> = posts[2..].iter().map(|p| &p.0).collect();
        assert_eq!(ids.len(), 3, "each alert once");
    }
}
