//! Palisade's alerts: webhooks (generic JSON or Slack-compatible) on a finding at or above a
//! severity, a block, an MCP tool change, an approval request, or a burst of rate-limit
//! refusals.
//!
//! ```text
//! request path ──try_send──► [bounded queue] ──► alert thread: rules ─► de-duplicate ─► throttle
//!  (never waits;                                   │                                     │
//!   a full queue drops                             └── outbox (SQLite): open groups, ◄───┘
//!   and counts)                                        deliveries, held alerts
//!                                                          │
//!                                      webhooks ◄── deliver (one at a time per sink; retries
//!                                                   with exponential back-off and jitter)
//! ```
//!
//! The request path only ever calls [`Emitter`]: a cheap check of whether any rule could care,
//! then a non-blocking channel send. Everything else happens on one thread of its own:
//!
//! - [`rules`] turns a signal into triggers (and counts rate-limit refusals in sliding windows);
//! - [`dedupe`] collapses same-key triggers into one alert with a count;
//! - [`throttle`] caps alerts per rule and sink per period, and summarises the excess;
//! - [`outbox`] keeps every open group and undelivered alert in a SQLite file of its own, so a
//!   webhook that is down, or a restart, loses nothing: a delivery is deleted only once its
//!   webhook answered 2xx;
//! - [`backoff`] spaces retries; [`payload`] renders an alert for its sink.
//!
//! Delivery is **at least once**: an alert whose webhook answered but whose answer was lost (a
//! timeout, a crash before the outbox was updated) is sent again. Every alert carries an id
//! (`id` in the JSON payload, the `Idempotency-Key` header on every request, and the context
//! line of a Slack message) that a receiver uses to drop a repeat.
//!
//! HTTP itself is the caller's: a [`Transport`] posts bytes (the gateway's implementation uses its
//! pooled hyper client with rustls), so this crate has no HTTP stack and its logic is tested with
//! a fake one. Time is passed in everywhere below [`dispatch`], so the logic is tested with a
//! clock the test moves.

pub mod backoff;
pub mod dedupe;
pub mod dispatch;
pub mod outbox;
pub mod payload;
pub mod pipeline;
pub mod rules;
pub mod throttle;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_detect::Severity;
use palisade_engine::govern::state::{AuditEntry, AuditLog, StateFuture};
use palisade_engine::metrics::{self, AlertCount};
use palisade_policy::alerts::{AlertTrigger, AlertsConfig, BlockDecision};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// One alert: what goes to a sink, and what the outbox keeps until it is delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique, stable across retries and restarts: a receiver drops a repeat by it.
    pub id: String,
    /// The rule.
    pub rule: String,
    /// `finding`, `block`, `tool_change`, `approval_request`, `rate_limit`, or
    /// `throttle_summary`.
    pub trigger: String,
    /// The worst severity it covers.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// How many triggers it stands for.
    pub count: u64,
    /// A follow-up: the same key already alerted in this de-duplication window.
    pub repeat: bool,
    /// The first trigger it covers (ms since the epoch).
    pub first_seen_ms: u64,
    /// The last trigger it covers.
    pub last_seen_ms: u64,
    /// The de-duplication key.
    pub dedupe_key: String,
    /// When the de-duplication window ends.
    pub window_end_ms: u64,
    /// What is known of the latest trigger: route, detector, kind, agent, tool, …
    pub facts: BTreeMap<String, String>,
    /// For a throttling summary: the alerts it stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// When the alert was made.
    pub created_ms: u64,
}

/// What a throttling summary stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Alerts held back.
    pub alerts: u64,
    /// Triggers they stood for.
    pub triggers: u64,
    /// The period they were held back in, in seconds.
    pub period_seconds: u64,
    /// The first of them (at most [`payload::SUMMARY_ITEMS`]).
    pub items: Vec<SummaryItem>,
    /// How many more were not listed.
    pub omitted: u64,
}

/// One alert held back by throttling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryItem {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its severity.
    pub severity: Severity,
    /// Its count.
    pub count: u64,
    /// Its first trigger.
    pub first_seen_ms: u64,
}

/// What happened, as the alert thread receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An exchange or guard call with findings or a refusal.
    Exchange(Box<Exchange>),
    /// A governance change from the audit log (tool pins, approvals).
    Audit(Box<AuditEntry>),
    /// A rate limit refused a request.
    RateLimited(Box<RateLimited>),
}

/// An exchange or guard call, reduced to what alert rules read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exchange {
    /// Request id.
    pub request_id: String,
    /// When.
    pub at_ms: u64,
    /// Route, or `guard:<collector>`.
    pub route: String,
    /// `allow`, `redact`, `block`, `deny`, `error`, …
    pub decision: String,
    /// The agent.
    pub agent: Option<String>,
    /// The client's address.
    pub client_ip: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// Path.
    pub path: Option<String>,
    /// MCP tool.
    pub tool: Option<String>,
    /// Why, in short sentences.
    pub reasons: Vec<String>,
    /// `(detector, kind, severity)` of each finding.
    pub findings: Vec<(String, String, Severity)>,
}

/// A rate-limit refusal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimited {
    /// Request id.
    pub request_id: String,
    /// When.
    pub at_ms: u64,
    /// Route.
    pub route: String,
    /// The limit's name and the key's values (`per-ip-tool: 10.0.0.7, echo`).
    pub limit_key: String,
    /// The agent.
    pub agent: Option<String>,
    /// The client's address.
    pub client_ip: Option<String>,
    /// MCP tool.
    pub tool: Option<String>,
}

/// The severity named in a record (`low` … `critical`); unknown names read as `low`.
pub fn severity(name: &str) -> Severity {
    match name {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        _ => Severity::Low,
    }
}

/// What some rule could care about, checked on the request path before anything is copied.
#[derive(Debug, Default)]
struct Wants {
    min_finding: Option<Severity>,
    decisions: Vec<&'static str>,
    audits: bool,
    rate_limits: bool,
}

impl Wants {
    fn of(config: &AlertsConfig) -> Self {
        let mut w = Wants::default();
        for r in &config.rules {
            match r.on {
                AlertTrigger::Finding => {
                    let s = r.min_severity.unwrap_or(rules::DEFAULT_MIN_SEVERITY);
                    w.min_finding = Some(w.min_finding.map_or(s, |m| m.min(s)));
                }
                AlertTrigger::Block => {
                    let ds = r
                        .decisions
                        .clone()
                        .unwrap_or_else(|| vec![BlockDecision::Block]);
                    w.decisions.extend(ds.iter().map(|d| d.as_str()));
                }
                AlertTrigger::ToolChange | AlertTrigger::ApprovalRequest => w.audits = true,
                AlertTrigger::RateLimit => w.rate_limits = true,
            }
        }
        w
    }
}

/// The request path's handle: checks whether any rule could care, and hands the signal to the
/// alert thread without ever waiting. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Emitter {
    tx: Option<mpsc::Sender<Signal>>,
    wants: Arc<Wants>,
}

impl Emitter {
    /// An emitter that sends nothing (alerts off).
    pub fn disabled() -> Self {
        Emitter::default()
    }

    /// Whether alerts are on.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    fn send(&self, s: Signal) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(s) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::alert(AlertCount::Dropped, "queue_full", 1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::alert(AlertCount::Dropped, "stopped", 1);
            }
        }
    }

    /// An exchange or guard call as recorded: sent on when it has a finding or a refusal that
    /// some rule covers.
    pub fn exchange(&self, e: &palisade_store::Event) {
        if self.tx.is_none() {
            return;
        }
        let w = &self.wants;
        let finding = w
            .min_finding
            .is_some_and(|min| e.findings.iter().any(|f| severity(&f.severity) >= min));
        let refused = w.decisions.contains(&e.decision.as_str());
        if !finding && !refused {
            return;
        }
        self.send(Signal::Exchange(Box::new(Exchange {
            request_id: e.request_id.clone(),
            at_ms: u64::try_from(e.time_ms).unwrap_or(0),
            route: e.route.clone().unwrap_or_default(),
            decision: e.decision.clone(),
            agent: e.agent_id.clone(),
            client_ip: e.client_ip.clone(),
            method: e.method.clone(),
            path: e.path.clone(),
            tool: e.tool.clone(),
            reasons: e.reasons.clone(),
            findings: e
                .findings
                .iter()
                .map(|f| (f.detector.clone(), f.kind.clone(), severity(&f.severity)))
                .collect(),
        })));
    }

    /// A rate-limit refusal; `make` runs only when a rule counts them.
    pub fn rate_limited(&self, make: impl FnOnce() -> RateLimited) {
        if self.tx.is_some() && self.wants.rate_limits {
            self.send(Signal::RateLimited(Box::new(make())));
        }
    }

    /// An audit entry: tool changes and approval requests are sent on.
    pub fn audit(&self, e: &AuditEntry) {
        let relevant = e.action.starts_with("tool.") || e.action == "approval.requested";
        if self.tx.is_some() && self.wants.audits && relevant {
            self.send(Signal::Audit(Box::new(e.clone())));
        }
    }

    /// `inner`, with every entry also offered to [`Emitter::audit`]: governance writes its
    /// audit log wherever tools change state and approvals are requested, so this one wrapper
    /// sees them all, whichever store is behind it.
    pub fn watch_audit(&self, inner: Arc<dyn AuditLog>) -> Arc<dyn AuditLog> {
        if !self.enabled() {
            return inner;
        }
        Arc::new(Audited {
            inner,
            emitter: self.clone(),
        })
    }
}

/// An audit log that also feeds the alerts.
#[derive(Debug)]
struct Audited {
    inner: Arc<dyn AuditLog>,
    emitter: Emitter,
}

impl AuditLog for Audited {
    fn record(&self, entry: AuditEntry) -> StateFuture<'_, ()> {
        self.emitter.audit(&entry);
        self.inner.record(entry)
    }

    fn recent(&self, limit: usize) -> StateFuture<'_, Vec<AuditEntry>> {
        self.inner.recent(limit)
    }
}

/// A webhook's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` it asked for, in milliseconds.
    pub retry_after_ms: Option<u64>,
}

/// A boxed future of a delivery attempt.
pub type PostFuture<'a> = Pin<Box<dyn Future<Output = Result<Answer, String>> + Send + 'a>>;

/// Posts a payload to a webhook. The error is why no answer came (connect, TLS, timeout).
pub trait Transport: Send + Sync + Debug + 'static {
    /// POSTs `body` to `url` with `headers`, giving up after `timeout`.
    fn post<'a>(
        &'a self,
        url: &'a str,
        headers: &'a [(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> PostFuture<'a>;
}

/// Why alerts could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// The outbox could not be opened or read.
    #[error("alert outbox: {0}")]
    Outbox(#[from] rusqlite::Error),
    /// A sink's URL or header is in an environment variable that is not set.
    #[error("alert sink `{sink}`: environment variable `{var}` is not set")]
    Env {
        /// The sink.
        sink: String,
        /// The variable.
        var: String,
    },
    /// A sink's URL (from the environment) is not an http:// or https:// URL, or a header
    /// value holds characters a header cannot carry.
    #[error("alert sink `{sink}`: {message}")]
    Sink {
        /// The sink.
        sink: String,
        /// What is wrong.
        message: String,
    },
    /// The alert thread could not start.
    #[error("alert thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The running alerts: the request path's [`Emitter`], and the alert thread, stopped by
/// [`Alerts::shutdown`] or on drop.
#[derive(Debug, Default)]
pub struct Alerts {
    emitter: Emitter,
    runner: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            std::thread::JoinHandle<()>,
        )>,
    >,
}

impl Alerts {
    /// Alerts off: the emitter sends nothing and no thread runs.
    pub fn disabled() -> Self {
        Alerts::default()
    }

    /// Opens the outbox and starts the alert thread, or gives [`Alerts::disabled`] when
    /// `config` is off or has no rules.
    pub fn start(
        config: &AlertsConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, AlertsError> {
        if !config.enabled || config.rules.is_empty() {
            return Ok(Alerts::disabled());
        }
        let clock = Arc::new(dispatch::SystemClock);
        let pipeline = pipeline::Pipeline::open(config, dispatch::now_ms())?;
        let (tx, rx) = mpsc::channel(config.queue_signals.max(1));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("palisade-alerts".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "alerts: cannot start the alert runtime; alerts are off");
                        return;
                    }
                };
                rt.block_on(dispatch::run(pipeline, rx, transport, clock, stopped));
            })?;
        tracing::info!(
            rules = config.rules.len(),
            sinks = config.sinks.len(),
            outbox = %config.outbox_path,
            "alerts on"
        );
        Ok(Alerts {
            emitter: Emitter {
                tx: Some(tx),
                wants: Arc::new(Wants::of(config)),
            },
            runner: Mutex::new(Some((stop, thread))),
        })
    }

    /// The request path's handle.
    pub fn emitter(&self) -> &Emitter {
        &self.emitter
    }

    /// Stops the alert thread and waits for it. What waits in the outbox is sent after the
    /// next start.
    pub fn shutdown(&self) {
        let runner = self.runner.lock().map(|mut r| r.take()).unwrap_or(None);
        if let Some((stop, thread)) = runner {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

impl Drop for Alerts {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use palisade_engine::govern::memory::MemoryState;
    use palisade_store::{Event, FindingRecord};

    use super::*;

    fn emitter(cap: usize, rules: &str) -> (Emitter, mpsc::Receiver<Signal>) {
        let src = format!(
            "alerts:\n  sinks: [{{ name: h, url: 'http://127.0.0.1:9/' }}]\n  rules:\n{rules}"
        );
        let cfg = palisade_policy::parse_str(&src, "t.yaml")
            .unwrap_or_else(|e| panic!("{e}"))
            .alerts;
        let (tx, rx) = mpsc::channel(cap);
        (
            Emitter {
                tx: Some(tx),
                wants: Arc::new(Wants::of(&cfg)),
            },
            rx,
        )
    }

    fn event(decision: &str, severity: &str) -> Event {
        Event {
            request_id: "r".into(),
            route: Some("openai".into()),
            decision: decision.into(),
            findings: vec![FindingRecord {
                detector: "pii".into(),
                kind: "email".into(),
                severity: severity.into(),
                action: "redact".into(),
                location: None,
                snippet: None,
            }],
            ..Event::default()
        }
    }

    fn dropped_queue_full() -> u64 {
        metrics::render()
            .lines()
            .find_map(|l| l.strip_prefix("palisade_alerts_dropped_total{reason=\"queue_full\"} "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn only_what_a_rule_covers_is_sent() {
        let (e, mut rx) = emitter(
            8,
            "    - { name: f, on: finding, sinks: [h], min_severity: medium }\n",
        );
        e.exchange(&event("redact", "low"));
        e.exchange(&event("block", "low"));
        e.rate_limited(|| panic!("no rate_limit rule: not even built"));
        e.exchange(&event("allow", "high"));
        let Ok(Signal::Exchange(x)) = rx.try_recv() else {
            panic!("nothing sent")
        };
        assert_eq!(x.findings, [("pii".into(), "email".into(), Severity::High)]);
        assert!(rx.try_recv().is_err(), "one signal only");
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_never_waits() {
        let (e, _rx) = emitter(1, "    - { name: b, on: block, sinks: [h] }\n");
        let before = dropped_queue_full();
        let started = std::time::Instant::now();
        for _ in 0..3 {
            e.exchange(&event("block", "low"));
        }
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(dropped_queue_full() >= before + 2);
    }

    #[test]
    fn the_audit_wrapper_keeps_the_log_and_sends_tool_changes_and_approvals() {
        let (e, mut rx) = emitter(8, "    - { name: t, on: tool_change, sinks: [h] }\n");
        let inner: Arc<dyn AuditLog> = MemoryState::new(100).audit;
        let log = e.watch_audit(inner);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        for action in ["tool.quarantined", "policy.applied", "approval.requested"] {
            let entry = AuditEntry {
                at_ms: 1,
                actor: "palisade".into(),
                action: action.into(),
                target: "x".into(),
                reason: None,
                detail: serde_json::Value::Null,
            };
            rt.block_on(log.record(entry))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let kept = rt.block_on(log.recent(10)).unwrap_or_default();
        assert_eq!(kept.len(), 3, "the log itself is untouched");
        let sent: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|s| match s {
                Signal::Audit(a) => Some(a.action),
                _ => None,
            })
            .collect();
        assert_eq!(sent, ["tool.quarantined", "approval.requested"]);
        assert!(!Emitter::disabled().enabled());
    }
}
