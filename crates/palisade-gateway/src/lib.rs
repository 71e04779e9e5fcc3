//! Palisade's HTTP data plane: the inline proxy.
//!
//! One listener serves HTTP/1.1 and HTTP/2 (cleartext, with prior knowledge or upgrade) and
//! WebSocket upgrades. Named routes and the generic `/proxy/{scheme}/{host}/{path}` lead to
//! upstreams over HTTP/1.1 or HTTP/2, with TLS by rustls. Every request and response goes through
//! the engine's [`Inspector`]; the handler in [`proxy`] is the whole flow, step by step.
//!
//! Per-request state lives in the handler's stack frame and the tasks it spawns; the shared
//! [`State`] is immutable (configuration, compiled policies, the pooled client), so requests never
//! contend on a lock.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use palisade_engine::Inspector;
use palisade_policy::config::Config;
use tokio::net::TcpListener;

pub mod body;
pub mod error;
pub mod proxy;
pub mod route;
pub mod upstream;

/// What every request shares.
#[derive(Debug)]
pub struct State {
    /// The configuration as loaded.
    pub config: Config,
    /// The compiled policies.
    pub inspector: Arc<Inspector>,
    /// The pooled upstream client.
    pub client: upstream::UpstreamClient,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The policies did not compile.
    #[error("{0}")]
    Engine(#[from] palisade_engine::EngineError),
    /// The upstream client could not be built.
    #[error("{0}")]
    Client(#[from] upstream::ClientError),
}

impl State {
    /// Compiles `config` into a ready state.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let inspector = Arc::new(Inspector::new(&config)?);
        let client = upstream::client(&config)?;
        Ok(State {
            config,
            inspector,
            client,
        })
    }
}

/// Serves connections from `listener` until `shutdown` resolves; then stops accepting and lets
/// open connections finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
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
        let state = state.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
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
