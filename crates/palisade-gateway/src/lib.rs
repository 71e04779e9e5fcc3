//! Palisade's HTTP data plane: the inline proxy.
//!
//! One listener serves HTTP/1.1 and HTTP/2 (cleartext, with prior knowledge or upgrade) and
//! WebSocket upgrades. Named routes and the generic `/proxy/{scheme}/{host}/{path}` lead to
//! upstreams over HTTP/1.1 or HTTP/2, with TLS by rustls. Every request and response goes through
//! the engine's [`Inspector`]; the handler in [`proxy`] is the whole flow, step by step.
//!
//! Per-request state lives in the handler's stack frame and the tasks it spawns; the shared
//! [`State`] is immutable (configuration, compiled policies, the pooled client), so requests never
//! contend on a lock. A new configuration is a new `State` ([`live`]): a request keeps the one it
//! started with.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use palisade_engine::govern::Governance;
use palisade_engine::Inspector;
use palisade_policy::config::Config;
use tokio::net::TcpListener;

pub mod alerts;
pub mod body;
pub mod compat;
pub mod durable;
pub mod error;
mod govern;
pub mod guard;
pub mod live;
pub mod proxy;
pub mod records;
pub mod route;
pub mod sse_sessions;
pub mod state;
pub mod traces;
pub mod upstream;
mod ws;

/// What every request shares.
#[derive(Debug)]
pub struct State {
    /// The configuration as loaded.
    pub config: Config,
    /// The compiled policies.
    pub inspector: Arc<Inspector>,
    /// The pooled upstream client.
    pub client: upstream::UpstreamClient,
    /// Open MCP SSE sessions, shared by every worker.
    pub sse_sessions: Arc<sse_sessions::SseSessions>,
    /// Who may call the guard API.
    pub collectors: guard::Collectors,
    /// Governance and its state, shared by every worker.
    pub governance: Arc<Governance>,
    /// The records' writer, shared by every worker; `None` when recording is off.
    pub records: Option<Arc<palisade_store::Writer>>,
    /// The alerts, shared by every worker (disabled when none are configured).
    pub alerts: Arc<palisade_alerts::Alerts>,
    /// The Kafka publisher, shared by every worker; `None` when no stream is configured.
    pub kafka: Option<Arc<palisade_kafka::Publisher>>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The policies did not compile.
    #[error(transparent)]
    Engine(#[from] palisade_engine::EngineError),
    /// The upstream client could not be built.
    #[error(transparent)]
    Client(#[from] upstream::ClientError),
    /// A collector's API key could not be read.
    #[error("{0}")]
    Collectors(String),
    /// The governance settings did not compile.
    #[error("{0}")]
    Governance(String),
    /// The store could not be opened.
    #[error("{0}")]
    Store(String),
    /// The governance state store could not be set up.
    #[error("{0}")]
    State(String),
    /// The alerts could not start.
    #[error("{0}")]
    Alerts(String),
    /// The Kafka publisher could not start.
    #[error(transparent)]
    Kafka(#[from] palisade_kafka::StartError),
}

impl State {
    /// Compiles `config` into a ready state.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let inspector = Arc::new(Inspector::new(&config)?);
        let alerts = alerts::open(&config)?;
        let records = records::open(&config.storage).map_err(StartError::Store)?;
        let kafka = records::kafka(&config)?;
        let governance = Arc::new(alerts::governance(
            &config,
            alerts.emitter(),
            records.as_ref(),
        )?);
        Self::with_parts(
            config,
            inspector,
            governance,
            Arc::default(),
            records,
            alerts,
            kafka,
        )
    }

    /// A state sharing compiled policies, governance state and the SSE session registry with
    /// other workers.
    pub fn with_parts(
        config: Config,
        inspector: Arc<Inspector>,
        governance: Arc<Governance>,
        sse_sessions: Arc<sse_sessions::SseSessions>,
        records: Option<Arc<palisade_store::Writer>>,
        alerts: Arc<palisade_alerts::Alerts>,
        kafka: Option<Arc<palisade_kafka::Publisher>>,
    ) -> Result<Self, StartError> {
        let client = upstream::client(&config)?;
        let collectors = guard::Collectors::from_config(&config).map_err(StartError::Collectors)?;
        Ok(State {
            config,
            inspector,
            client,
            sse_sessions,
            collectors,
            governance,
            records,
            alerts,
            kafka,
        })
    }
}

/// A running server: one single-threaded runtime per worker, each with its own listening socket
/// on the same address (`SO_REUSEPORT`), its own upstream connection pool, and the compiled
/// policies shared. Requests stay on the thread that accepted them, so no work crosses threads:
/// the shape nginx and pingora use, and on few cores it avoids the wake-ups a work-stealing
/// scheduler pays per request.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    live: Arc<live::Live>,
    records: Option<Arc<palisade_store::Writer>>,
    alerts: Arc<palisade_alerts::Alerts>,
    kafka: Option<Arc<palisade_kafka::Publisher>>,
}

impl Server {
    /// Starts `workers` threads serving `config`. Returns once every worker listens.
    pub fn start(config: Config, workers: usize) -> Result<Server, ServeError> {
        let inspector = Arc::new(Inspector::new(&config).map_err(StartError::from)?);
        let alerts = alerts::open(&config)?;
        let records = records::open(&config.storage).map_err(StartError::Store)?;
        let kafka = records::kafka(&config).map_err(StartError::from)?;
        let governance = Arc::new(alerts::governance(
            &config,
            alerts.emitter(),
            records.as_ref(),
        )?);
        let wanted: SocketAddr = config
            .listen
            .parse()
            .map_err(|_| ServeError::Listen(config.listen.clone(), "not an address".into()))?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut threads = Vec::new();
        let mut addr = wanted;
        let sse_sessions: Arc<sse_sessions::SseSessions> = Arc::default();
        let live = Arc::new(live::Live::new(
            config,
            inspector,
            governance,
            sse_sessions,
            records.clone(),
            alerts.clone(),
            kafka.clone(),
        ));
        for i in 0..workers.max(1) {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SocketAddr, ServeError>>();
            let live = live.clone();
            let mut stop_rx = stop_rx.clone();
            let bind_to = addr;
            let handle = std::thread::Builder::new()
                .name(format!("palisade-worker-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx
                                .send(Err(ServeError::Listen(bind_to.to_string(), e.to_string())));
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let listener = match reuseport_listener(bind_to) {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready_tx.send(Err(ServeError::Listen(
                                    bind_to.to_string(),
                                    e.to_string(),
                                )));
                                return;
                            }
                        };
                        let worker = match live::Worker::following(live) {
                            Ok(w) => Arc::new(w),
                            Err(e) => {
                                let _ = ready_tx.send(Err(ServeError::Start(e)));
                                return;
                            }
                        };
                        let local = listener.local_addr().unwrap_or(bind_to);
                        let _ = ready_tx.send(Ok(local));
                        let stopped = async move {
                            while !*stop_rx.borrow() {
                                if stop_rx.changed().await.is_err() {
                                    break;
                                }
                            }
                        };
                        if let Err(e) = serve_worker(listener, worker, stopped).await {
                            tracing::error!(error = %e, "worker stopped with an error");
                        }
                    });
                })
                .map_err(|e| ServeError::Listen(addr.to_string(), e.to_string()))?;
            threads.push(handle);
            match ready_rx.recv() {
                Ok(Ok(local)) => addr = local,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(ServeError::Listen(
                        addr.to_string(),
                        "worker died at start".into(),
                    ))
                }
            }
        }
        Ok(Server {
            addr,
            stop,
            threads,
            live,
            records,
            alerts,
            kafka,
        })
    }

    /// The records' writer every worker shares (for the admin API); `None` when recording is off.
    pub fn records(&self) -> Option<Arc<palisade_store::Writer>> {
        self.records.clone()
    }

    /// The governance of the current configuration (for the admin API).
    pub fn governance(&self) -> Arc<Governance> {
        self.live.current().governance.clone()
    }

    /// The live configuration every worker follows (for the admin API's hot reload).
    pub fn live(&self) -> Arc<live::Live> {
        self.live.clone()
    }

    /// The address every worker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open connections finish, and waits for the workers; then stops
    /// the alert thread (what it has not delivered waits in its outbox for the next start) and
    /// gives the Kafka publisher up to its `timeout_ms` to flush.
    pub fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.threads {
            let _ = t.join();
        }
        self.alerts.shutdown();
        if let Some(k) = &self.kafka {
            k.shutdown();
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Compiling the configuration failed.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Listen(String, String),
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Serves connections from `listener` until `shutdown` resolves; then stops accepting and lets
/// open connections finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    serve_worker(listener, Arc::new(live::Worker::fixed(state)), shutdown).await
}

/// Serves connections from `listener` with the state `worker` gives each request, until
/// `shutdown` resolves; then stops accepting and lets open connections finish.
pub async fn serve_worker(
    listener: TcpListener,
    worker: Arc<live::Worker>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: log, breathe, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let worker = worker.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                // Per request, not per connection: a keep-alive connection follows applies too.
                let state = worker.state();
                async move { Ok::<_, std::convert::Infallible>(proxy::handle(state, peer, req).await) }
            });
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}
