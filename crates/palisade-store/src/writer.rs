//! The bounded, batching writer in front of a [`Store`].
//!
//! [`Writer::record`] never waits: it puts the event on a bounded queue, or drops and counts it
//! when the queue is full. One thread drains the queue. When an event arrives it lingers up to
//! [`LINGER`] for more (or until [`BATCH`] are in hand) and writes them in one transaction, so a
//! busy proxy costs one commit per batch rather than one wake-up per event, and an idle one adds
//! at most a few milliseconds before an event is visible.
//!
//! When the database is unreachable (PostgreSQL stopped, the SQLite file locked by someone
//! else), the batch in hand is kept and retried with back-off, from 100 ms up to 5 s; meanwhile
//! the queue fills to its bound and what does not fit is dropped and counted. When the database
//! answers again the batch is written and the queue drains. A batch the database refuses for
//! good (not a transient error) is dropped and counted as failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{now_ms, Event, Store};

/// Most events written in one transaction.
pub const BATCH: usize = 512;

/// How long the writer waits for more events after the first one, before writing.
pub const LINGER: Duration = Duration::from_millis(5);

/// The counters a writer keeps; shared with its thread.
#[derive(Debug, Default)]
struct Counters {
    /// Events queued or in hand, not yet written or given up.
    pending: AtomicU64,
    dropped: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    /// Write attempts that failed (a batch retried five times counts five).
    errors: AtomicU64,
    batches: AtomicU64,
}

/// The bounded, batching writer. See the module documentation.
#[derive(Debug)]
pub struct Writer {
    tx: SyncSender<Event>,
    counters: Arc<Counters>,
    store: Arc<Store>,
    capacity: usize,
}

impl Writer {
    /// Starts the writer thread over `store`, with room for `queue` events, pruning events older
    /// than `retention_days` (0 keeps everything).
    pub fn start(store: Arc<Store>, queue: usize, retention_days: u32) -> std::io::Result<Self> {
        let capacity = queue.max(1);
        let (tx, rx) = sync_channel(capacity);
        let counters = Arc::new(Counters::default());
        let (c, s) = (counters.clone(), store.clone());
        std::thread::Builder::new()
            .name("palisade-store".into())
            .spawn(move || drain(&rx, &s, &c, retention_days, capacity.min(BATCH)))?;
        Ok(Writer {
            tx,
            counters,
            store,
            capacity,
        })
    }

    /// Queues `event` for writing; never waits. A full queue drops it and counts the drop.
    pub fn record(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.counters.pending.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Events written.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Events lost because the database refused their batch for good.
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Write attempts that failed, retried ones included.
    pub fn write_errors(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// Transactions committed.
    pub fn batches(&self) -> u64 {
        self.counters.batches.load(Ordering::Relaxed)
    }

    /// Events accepted and not yet written: the queue and the batch in hand.
    pub fn queue_depth(&self) -> u64 {
        self.counters.pending.load(Ordering::Relaxed)
    }

    /// The queue's bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The store, for reading.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

/// Waits for a first event (up to `idle`), then lingers for more; returns false when every
/// sender is gone and nothing more will come.
fn collect(rx: &Receiver<Event>, batch: &mut Vec<Event>, max: usize, idle: Duration) -> bool {
    match rx.recv_timeout(idle) {
        Ok(e) => batch.push(e),
        Err(RecvTimeoutError::Timeout) => return true,
        Err(RecvTimeoutError::Disconnected) => return false,
    }
    let deadline = Instant::now() + LINGER;
    while batch.len() < max {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) => batch.push(e),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
    true
}

/// The writer thread. A batch is at most `max` events (the queue's bound, up to [`BATCH`]), so
/// what is held in memory is at most twice the bound.
fn drain(rx: &Receiver<Event>, store: &Store, c: &Counters, days: u32, max: usize) {
    let mut last_prune: Option<Instant> = None;
    let mut batch = Vec::with_capacity(BATCH);
    let mut backoff = Duration::from_millis(100);
    loop {
        let open = if batch.is_empty() {
            collect(rx, &mut batch, max, Duration::from_millis(200))
        } else {
            true
        };
        if !batch.is_empty() {
            match store.write(&batch) {
                Ok(()) => {
                    let n = batch.len() as u64;
                    c.written.fetch_add(n, Ordering::Relaxed);
                    c.pending.fetch_sub(n, Ordering::Relaxed);
                    c.batches.fetch_add(1, Ordering::Relaxed);
                    batch.clear();
                    backoff = Duration::from_millis(100);
                }
                Err(e) if e.is_transient() && open => {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, events = batch.len(), retry_ms = backoff.as_millis() as u64, "store: database unavailable; keeping the batch and retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(e) => {
                    let n = batch.len() as u64;
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    c.failed.fetch_add(n, Ordering::Relaxed);
                    c.pending.fetch_sub(n, Ordering::Relaxed);
                    tracing::warn!(error = %e, events = n, "store: a batch could not be written; dropped");
                    batch.clear();
                }
            }
        }
        if !open {
            return;
        }
        if days > 0 && last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            let cutoff = now_ms() - i64::from(days) * 86_400_000;
            match store.prune(cutoff) {
                Ok(n) if n > 0 => tracing::info!(events = n, "store: pruned old events"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "store: pruning failed"),
            }
            last_prune = Some(Instant::now());
        }
    }
}
