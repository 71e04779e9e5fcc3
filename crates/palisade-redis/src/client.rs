//! The connection to Redis: a pool of multiplexed connections driven by one I/O thread, a
//! timeout on every command, reconnection, and a circuit breaker that notices outages.
//!
//! Palisade's workers each run a single-threaded runtime. The `redis` crate spawns its
//! connection drivers and reconnections on whatever runtime is current, which would tie every
//! worker's Redis traffic to the one worker that happened to connect. So the connections live on
//! a runtime of their own, on a thread named `palisade-redis`, and every command runs there as a
//! task that the calling worker awaits: the same two cross-thread wake-ups a multiplexed
//! connection costs anyway, and no worker ever drives another's I/O.
//!
//! Each of the `connections` is a [`ConnectionManager`]: one TCP connection that pipelines every
//! concurrent command and reconnects after an I/O error. While Redis is unreachable the breaker
//! fails commands at once (no waiting for a timeout per request) and lets one probe through each
//! `retry_interval_ms`; the first failure and the first success after it are logged once each,
//! so an outage is two log lines, not one per request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_engine::govern::state::StateError;
use palisade_policy::govern::RedisStateConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;

/// A handle on the Redis connections; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    handle: tokio::runtime::Handle,
    client: redis::Client,
    pool: Vec<ConnectionManager>,
    next: AtomicUsize,
    command_timeout: Duration,
    connect_timeout: Duration,
    retry_interval: Duration,
    breaker: Breaker,
    prefix: String,
    /// Dropping it stops the I/O thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("connections", &self.inner.pool.len())
            .field("prefix", &self.inner.prefix)
            .field("down", &self.inner.breaker.is_down())
            .finish()
    }
}

impl Redis {
    /// Starts the I/O thread and sets up the connections, which open on first use: Palisade
    /// starts whether or not Redis answers yet, and the failure modes apply until it does.
    pub fn connect(url: &str, cfg: &RedisStateConfig) -> Result<Redis, String> {
        let client = redis::Client::open(url).map_err(|e| format!("state.redis: {e}"))?;
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("palisade-redis".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                // Runs the connections' tasks until the last handle is dropped.
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
            })
            .map_err(|e| format!("state.redis: cannot start the I/O thread: {e}"))?;
        let handle = handle_rx
            .recv()
            .map_err(|_| "state.redis: the I/O thread died at start".to_owned())?
            .map_err(|e| format!("state.redis: cannot start the I/O runtime: {e}"))?;
        let command_timeout = Duration::from_millis(cfg.command_timeout_ms);
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(command_timeout))
            // One attempt per reconnection: the breaker paces the attempts.
            .set_number_of_retries(0);
        let pool = {
            let _in_runtime = handle.enter();
            (0..cfg.connections.max(1))
                .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), manager.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("state.redis: {e}"))?
        };
        Ok(Redis {
            inner: Arc::new(Inner {
                handle,
                client,
                pool,
                next: AtomicUsize::new(0),
                command_timeout,
                connect_timeout,
                retry_interval: Duration::from_millis(cfg.retry_interval_ms),
                breaker: Breaker::new(cfg.retry_interval_ms),
                prefix: cfg.key_prefix.clone(),
                _stop: stop_tx,
            }),
        })
    }

    /// `prefix` + `name`: every key and channel goes through here.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.inner.prefix)
    }

    /// Whether the breaker counts Redis as down right now.
    pub fn is_down(&self) -> bool {
        self.inner.breaker.is_down()
    }

    /// Runs `op` on a pooled connection, on the I/O thread, within the command timeout.
    /// An operation that fails because the connection broke is tried once more on the
    /// reconnected one (a restarted Redis is then used at once). Every failure is
    /// [`StateError::Unavailable`], and the route's failure mode decides.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, StateError>
    where
        F: Fn(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        if !self.inner.breaker.admit() {
            return Err(StateError::Unavailable(UNREACHABLE.into()));
        }
        self.run_now(op).await
    }

    /// [`Redis::run`] without asking the breaker first (readiness probes).
    pub async fn run_now<T, F, Fut>(&self, op: F) -> Result<T, StateError>
    where
        F: Fn(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let inner = &self.inner;
        let i = inner.next.fetch_add(1, Ordering::Relaxed) % inner.pool.len().max(1);
        let Some(conn) = inner.pool.get(i).cloned() else {
            return Err(StateError::Unavailable(UNREACHABLE.into()));
        };
        let timeout = inner.command_timeout;
        let task = inner.handle.spawn(async move {
            match tokio::time::timeout(timeout, op(conn.clone())).await {
                Ok(Err(e)) if connection_broke(&e) => tokio::time::timeout(timeout, op(conn)).await,
                r => r,
            }
        });
        match task.await {
            Ok(Ok(Ok(v))) => {
                inner.breaker.succeeded();
                Ok(v)
            }
            Ok(Ok(Err(e))) if connection_broke(&e) => {
                inner.breaker.failed(&e.to_string());
                Err(StateError::Unavailable(UNREACHABLE.into()))
            }
            Ok(Ok(Err(e))) => {
                // Redis answered, with an error: it is up, and the detail is for the log only.
                inner.breaker.succeeded();
                tracing::warn!(error = %e, "redis command failed");
                Err(StateError::Unavailable(FAILED.into()))
            }
            Ok(Err(_elapsed)) => {
                inner.breaker.failed(&format!(
                    "no answer within {} ms (command_timeout_ms)",
                    timeout.as_millis()
                ));
                Err(StateError::Unavailable(
                    "the shared state store did not answer in time".into(),
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis task failed");
                Err(StateError::Unavailable(FAILED.into()))
            }
        }
    }

    /// Spawns `fut` on the I/O thread (long-lived tasks such as the pub/sub listener).
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, fut: F) {
        self.inner.handle.spawn(fut);
    }

    /// The client, for connections of their own (pub/sub).
    pub fn client(&self) -> redis::Client {
        self.inner.client.clone()
    }

    /// Time allowed to open a connection.
    pub fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// How often an unreachable Redis is tried again.
    pub fn retry_interval(&self) -> Duration {
        self.inner.retry_interval
    }
}

/// What a caller (and, through the decision's reasons, a client) is told; the detail goes to
/// the log, once per outage.
const UNREACHABLE: &str = "the shared state store is unreachable";
const FAILED: &str = "the shared state store failed";

/// Whether `e` means the connection is gone (rather than Redis answering with an error).
fn connection_broke(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Counts Redis as down after a connection failure, and lets one probe through per interval.
#[derive(Debug)]
struct Breaker {
    down: AtomicBool,
    /// Whether a success was reported to the metrics yet.
    seen_up: AtomicBool,
    /// When the next probe may go, in ms since `epoch`.
    next_probe_ms: AtomicU64,
    retry_ms: u64,
    epoch: Instant,
}

impl Breaker {
    fn new(retry_ms: u64) -> Self {
        Breaker {
            down: AtomicBool::new(false),
            seen_up: AtomicBool::new(false),
            next_probe_ms: AtomicU64::new(0),
            retry_ms,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Whether a command may go: always while up; one per interval while down.
    fn admit(&self) -> bool {
        if !self.is_down() {
            return true;
        }
        let now = self.now_ms();
        let next = self.next_probe_ms.load(Ordering::Acquire);
        now >= next
            && self
                .next_probe_ms
                .compare_exchange(
                    next,
                    now + self.retry_ms,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn failed(&self, why: &str) {
        palisade_engine::metrics::state_reachable(false);
        self.next_probe_ms
            .store(self.now_ms() + self.retry_ms, Ordering::Release);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                error = %why,
                "redis unreachable: fail_closed routes refuse governed requests and fail_open routes use this replica's local state until it answers again"
            );
        }
    }

    fn succeeded(&self) {
        if self.down.load(Ordering::Acquire) || !self.seen_up.swap(true, Ordering::AcqRel) {
            palisade_engine::metrics::state_reachable(true);
        }
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!("redis reachable again: governance state is shared again");
        }
    }
}
