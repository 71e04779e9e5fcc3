//! Hot reload: the configuration a request is served under, swapped without a restart.
//!
//! [`Live`] holds the current [`Generation`] (configuration, compiled policies, governance rules)
//! behind a lock that is only written when a new configuration is applied. Each worker keeps its
//! own [`State`] (with its own upstream connection pool) in a [`Worker`] and, at the start of
//! every request, compares its generation with the live one: one atomic load on the hot path,
//! and a rebuild of the worker's state on the first request after an apply. A request holds the
//! `Arc<State>` it started with to its end, so in-flight requests (held calls, open streams,
//! WebSockets) finish under the configuration they began with; new requests see the new one.
//!
//! What survives an apply and what is rebuilt:
//!
//! - kept: governance *state* (rate counters, the decision cache, tool pins, approvals, sessions,
//!   the audit log: the same [`palisade_engine::govern::Stores`] are handed to the new rules),
//!   the records' writer, the alerts, open MCP SSE sessions, metrics, and the upstream client
//!   (unless `tls` or `timeouts` changed);
//! - rebuilt: the compiled policies ([`Inspector`]), the governance rules, the routes and the
//!   collectors' keys, and the decision cache's view (its keys carry the version, so a decision
//!   cached under the old rules is never served under the new ones).
//!
//! Sections that own listeners, stores or background threads (`listen`, `admin`, `state`,
//! `storage`, `traces`, `alerts`, `events`) cannot change this way: [`Live::apply`] refuses them by name.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use palisade_engine::govern::Governance;
use palisade_engine::Inspector;
use palisade_policy::config::Config;

use crate::{guard, sse_sessions, upstream, StartError, State};

/// One applied configuration, compiled.
#[derive(Debug)]
pub struct Generation {
    /// 1 for the configuration the process started with, then one more per apply.
    pub version: u64,
    /// The configuration.
    pub config: Config,
    /// Its compiled policies.
    pub inspector: Arc<Inspector>,
    /// Its governance rules over the shared state stores.
    pub governance: Arc<Governance>,
}

/// Why a configuration was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Sections that only a restart can change.
    #[error("these sections need a restart to change: {}", .0.join(", "))]
    NeedsRestart(Vec<&'static str>),
    /// It did not compile.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// The live configuration every worker follows. See the module documentation.
#[derive(Debug)]
pub struct Live {
    version: AtomicU64,
    current: RwLock<Arc<Generation>>,
    /// Serialises applies, so versions are handed out in order.
    applying: Mutex<()>,
    sse_sessions: Arc<sse_sessions::SseSessions>,
    records: Option<Arc<palisade_store::Writer>>,
    alerts: Arc<palisade_alerts::Alerts>,
    kafka: Option<Arc<palisade_kafka::Publisher>>,
}

impl Live {
    /// The first generation (version 1).
    pub fn new(
        config: Config,
        inspector: Arc<Inspector>,
        governance: Arc<Governance>,
        sse_sessions: Arc<sse_sessions::SseSessions>,
        records: Option<Arc<palisade_store::Writer>>,
        alerts: Arc<palisade_alerts::Alerts>,
        kafka: Option<Arc<palisade_kafka::Publisher>>,
    ) -> Self {
        Live {
            version: AtomicU64::new(1),
            current: RwLock::new(Arc::new(Generation {
                version: 1,
                config,
                inspector,
                governance,
            })),
            applying: Mutex::new(()),
            sse_sessions,
            records,
            alerts,
            kafka,
        }
    }

    /// The current generation.
    pub fn current(&self) -> Arc<Generation> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The current version.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Compiles `config` completely (policies, governance, collectors' keys, upstream client),
    /// then makes it current for new requests. Returns the new version. On any error nothing
    /// changes.
    pub fn apply(&self, config: Config) -> Result<u64, ApplyError> {
        let _one_at_a_time = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current();
        let restart = restart_sections(&old.config, &config);
        if !restart.is_empty() {
            return Err(ApplyError::NeedsRestart(restart));
        }
        let inspector = Arc::new(Inspector::new(&config).map_err(StartError::from)?);
        let version = old.version + 1;
        let governance = Arc::new(
            Governance::new(&config, old.governance.stores().clone())
                .map_err(StartError::Governance)?
                .with_generation(version),
        );
        // Build a whole state once here, so a worker's rebuild cannot fail on what we accepted.
        guard::Collectors::from_config(&config).map_err(StartError::Collectors)?;
        if client_changes(&old.config, &config) {
            upstream::client(&config).map_err(StartError::from)?;
        }
        let next = Arc::new(Generation {
            version,
            config,
            inspector,
            governance,
        });
        match self.current.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        self.version.store(version, Ordering::Release);
        Ok(version)
    }

    fn state(
        &self,
        g: &Generation,
        client: Option<&upstream::UpstreamClient>,
    ) -> Result<State, StartError> {
        let client = match client {
            Some(c) => c.clone(),
            None => upstream::client(&g.config)?,
        };
        Ok(State {
            config: g.config.clone(),
            inspector: g.inspector.clone(),
            client,
            sse_sessions: self.sse_sessions.clone(),
            collectors: guard::Collectors::from_config(&g.config)
                .map_err(StartError::Collectors)?,
            governance: g.governance.clone(),
            records: self.records.clone(),
            alerts: self.alerts.clone(),
            kafka: self.kafka.clone(),
        })
    }
}

/// Sections that differ between `a` and `b` and that only a restart can change.
pub fn restart_sections(a: &Config, b: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.listen != b.listen {
        out.push("listen");
    }
    if a.admin != b.admin {
        out.push("admin");
    }
    if a.state != b.state {
        out.push("state");
    }
    if a.storage != b.storage {
        out.push("storage");
    }
    if a.traces != b.traces {
        out.push("traces");
    }
    if a.alerts != b.alerts {
        out.push("alerts");
    }
    if a.events != b.events {
        out.push("events");
    }
    out
}

fn client_changes(a: &Config, b: &Config) -> bool {
    a.tls != b.tls || a.timeouts != b.timeouts
}

/// What one worker serves from: a fixed state, or the live configuration.
#[derive(Debug)]
pub struct Worker {
    live: Option<Arc<Live>>,
    local: Mutex<(u64, Arc<State>)>,
}

impl Worker {
    /// A worker that always serves `state`.
    pub fn fixed(state: Arc<State>) -> Self {
        Worker {
            live: None,
            local: Mutex::new((0, state)),
        }
    }

    /// A worker following `live`, with its own upstream client.
    pub fn following(live: Arc<Live>) -> Result<Self, StartError> {
        let g = live.current();
        let state = Arc::new(live.state(&g, None)?);
        Ok(Worker {
            live: Some(live),
            local: Mutex::new((g.version, state)),
        })
    }

    /// The state a new request is served under.
    pub fn state(&self) -> Arc<State> {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = &self.live {
            if live.version() != local.0 {
                let g = live.current();
                let old = &local.1;
                let keep = (!client_changes(&old.config, &g.config)).then_some(&old.client);
                match live.state(&g, keep) {
                    Ok(s) => *local = (g.version, Arc::new(s)),
                    // Checked by `apply`; should it still fail, keep serving the old one.
                    Err(e) => {
                        tracing::error!(error = %e, version = g.version, "worker kept the previous configuration");
                        local.0 = g.version;
                    }
                }
            }
        }
        local.1.clone()
    }
}
