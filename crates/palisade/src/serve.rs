//! `palisade serve` and `palisade demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use palisade_gateway::State;
use palisade_policy::config::Config;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (YAML). Default: the built-in configuration (listen on 127.0.0.1:8080,
    /// the generic proxy enabled, the default policy).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen on this address instead of the configuration's `listen`.
    #[arg(long)]
    listen: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Worker threads, each serving its own share of connections. Default: one per core.
    #[arg(long)]
    workers: Option<usize>,
}

/// One worker per available core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn load(config: Option<&PathBuf>) -> anyhow::Result<Config> {
    match config {
        Some(path) => palisade_policy::load_file(path).map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(palisade_policy::load::default_config()),
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

pub async fn start(config: Config) -> anyhow::Result<(tokio::net::TcpListener, Arc<State>)> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let state = Arc::new(State::new(config)?);
    Ok((listener, state))
}

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = load(args.config.as_ref())?;
    if let Some(l) = &args.listen {
        config.listen = l.clone();
    }
    init_logging(args.log_json);
    let routes = config.routes.len();
    let workers = args.workers.unwrap_or_else(default_workers);
    let admin = config.admin.clone();
    palisade_gateway::traces::install(&config).map_err(|e| anyhow::anyhow!(e))?;
    let server = palisade_gateway::Server::start(config, workers)?;
    tracing::info!(addr = %server.local_addr(), routes, workers, "palisade listening");
    let (admin_stop, admin_thread) = match admin {
        Some(a) => {
            let (stop, thread) = start_admin(&a, server.live(), server.records())?;
            (Some(stop), Some(thread))
        }
        None => (None, None),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?
        .block_on(shutdown_signal());
    tracing::info!("palisade stopping");
    if let (Some(stop), Some(thread)) = (admin_stop, admin_thread) {
        let _ = stop.send(());
        let _ = thread.join();
    }
    server.shutdown();
    Ok(ExitCode::SUCCESS)
}

type AdminHandle = (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
);

/// Starts the admin API on its own thread and listener; returns once it listens.
fn start_admin(
    config: &palisade_policy::govern::AdminConfig,
    live: Arc<palisade_gateway::live::Live>,
    records: Option<Arc<palisade_store::Writer>>,
) -> anyhow::Result<AdminHandle> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the admin runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&config.listen))
        .with_context(|| format!("cannot listen on {} (admin)", config.listen))?;
    let addr = listener.local_addr().ok();
    let governance = live.current().governance.clone();
    let admin = Arc::new(
        palisade_console::Admin::new(config, governance)
            .with_records(records)
            .with_control(Arc::new(LiveControl(live))),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("palisade-admin".into())
        .spawn(move || {
            let _ = rt.block_on(palisade_console::serve(listener, admin, async {
                let _ = stopped.await;
            }));
        })
        .context("cannot start the admin thread")?;
    tracing::info!(addr = ?addr, keys = config.keys.len(), "admin API listening");
    Ok((stop, thread))
}

/// The gateway's live configuration, as the admin API drives it.
#[derive(Debug)]
struct LiveControl(Arc<palisade_gateway::live::Live>);

impl palisade_console::Control for LiveControl {
    fn current(&self) -> (u64, Config) {
        let g = self.0.current();
        (g.version, g.config.clone())
    }

    fn governance(&self) -> Arc<palisade_engine::govern::Governance> {
        self.0.current().governance.clone()
    }

    fn apply(&self, config: Config) -> Result<u64, String> {
        self.0.apply(config).map_err(|e| e.to_string())
    }
}
