//! Recording exchanges: each request carries a [`Slot`] that the steps fill (findings, risk, MCP
//! method, tool); when the answer is ready, [`finish`] turns it into one event for the store's
//! writer, the alerts and the Kafka stream ([`emit`]). None waits: a full queue drops the event
//! and counts it.

use std::sync::{Arc, Mutex};

use palisade_engine::{action_name, BodyVerdict, LocatedFinding};
use palisade_protocol::Location;
use palisade_store::{Event, FindingRecord, Writer};

/// What the steps of one exchange learnt, for its record.
#[derive(Debug, Default, Clone)]
pub struct Slot(Arc<Mutex<Bits>>);

#[derive(Debug, Default)]
struct Bits {
    findings: Vec<FindingRecord>,
    risk: u8,
    mcp_method: Option<String>,
    tool: Option<String>,
    agent_id: Option<String>,
    model: Option<String>,
}

impl Slot {
    /// Adds what a body inspection found.
    pub fn add(&self, v: &BodyVerdict) {
        if let Ok(mut b) = self.0.lock() {
            b.risk = b.risk.max(v.risk_score);
            if b.mcp_method.is_none() {
                b.mcp_method.clone_from(&v.meta.method);
            }
            if b.tool.is_none() {
                b.tool.clone_from(&v.meta.tool);
            }
            if b.model.is_none() {
                b.model.clone_from(&v.meta.model);
            }
            b.findings.extend(v.findings.iter().map(record));
        }
    }

    /// Adds what governance decided: the agent, the tool of an MCP call, the risk, and its
    /// findings (rate limits, rug pulls, flows).
    pub fn governed(&self, g: Option<Governed>) {
        let (Ok(mut b), Some(g)) = (self.0.lock(), g) else {
            return;
        };
        if !g.agent.is_empty() {
            b.agent_id = Some(g.agent);
        }
        if let Some(tool) = g.action.strip_prefix("tools/call:") {
            b.mcp_method.get_or_insert_with(|| "tools/call".to_owned());
            b.tool.get_or_insert_with(|| tool.to_owned());
        }
        b.risk = b.risk.max(g.risk);
        let action = g.outcome;
        b.findings.extend(
            g.findings
                .into_iter()
                .map(|(detector, kind, severity)| FindingRecord {
                    detector,
                    kind,
                    severity,
                    action: action.to_owned(),
                    location: None,
                    snippet: None,
                }),
        );
    }
}

/// What governance decided about an exchange, for its record.
#[derive(Debug)]
pub struct Governed {
    /// The agent.
    pub agent: String,
    /// The action type (`read_customers`, `tools/call:echo`).
    pub action: String,
    /// Risk score.
    pub risk: u8,
    /// `allow`, `deny`, `hold`, …
    pub outcome: &'static str,
    /// `(detector, kind, severity)` of each governance finding.
    pub findings: Vec<(String, String, String)>,
}

/// One located finding as a record.
pub fn record(f: &LocatedFinding) -> FindingRecord {
    FindingRecord {
        detector: f.matched.finding.detector.to_string(),
        kind: f.matched.finding.kind.to_string(),
        severity: f.matched.finding.severity.to_string(),
        action: action_name(f.matched.action).to_owned(),
        location: Some(match &f.location {
            Location::Pointer(p) => p.clone(),
            _ => "stream".to_owned(),
        }),
        snippet: f.snippet.clone(),
    }
}

/// The facts of an exchange known when its answer is ready.
#[derive(Debug)]
pub struct Facts<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// Route name.
    pub route: &'a str,
    /// Client address.
    pub client_ip: String,
    /// HTTP method.
    pub method: &'a str,
    /// Path.
    pub path: &'a str,
    /// Status answered.
    pub status: u16,
    /// Decision.
    pub decision: &'a str,
    /// Why.
    pub reasons: &'a [String],
    /// Time taken.
    pub latency_ms: f64,
}

/// Hands an event to the alerts (which look at it only when a rule could care), to the Kafka
/// stream and to the store's writer; none waits.
pub fn emit(state: &crate::State, event: Event) {
    state.alerts.emitter().exchange(&event);
    if let Some(kafka) = state.kafka.as_deref() {
        kafka.publish(&event);
    }
    if let Some(writer) = state.records.as_deref() {
        writer.record(event);
    }
}

/// Whether anything takes events: the store, the alerts or the Kafka stream.
pub fn wanted(state: &crate::State) -> bool {
    state.records.is_some() || state.alerts.emitter().enabled() || state.kafka.is_some()
}

/// Queues the record of an exchange.
pub fn finish(state: &crate::State, slot: &Slot, facts: Facts<'_>) {
    if !wanted(state) {
        return;
    }
    let bits = match slot.0.lock() {
        Ok(mut b) => std::mem::take(&mut *b),
        Err(_) => Bits::default(),
    };
    emit(
        state,
        Event {
            seq: None,
            request_id: facts.request_id.to_owned(),
            time_ms: palisade_store::now_ms(),
            source: "proxy".into(),
            route: Some(facts.route.to_owned()),
            collector: None,
            agent_id: bits.agent_id,
            client_ip: Some(facts.client_ip),
            method: Some(facts.method.to_owned()),
            path: Some(facts.path.to_owned()),
            mcp_method: bits.mcp_method,
            tool: bits.tool,
            status: Some(facts.status),
            decision: facts.decision.to_owned(),
            risk: bits.risk,
            latency_ms: Some(facts.latency_ms),
            reasons: facts.reasons.to_vec(),
            body: None,
            model: bits.model,
            findings: bits.findings,
        },
    );
}

/// Queues the record of a streamed response's findings, once the stream has ended.
pub fn stream(
    state: &crate::State,
    request_id: &str,
    route: &str,
    decision: &str,
    reasons: &[String],
    findings: &[LocatedFinding],
) {
    if !wanted(state) {
        return;
    }
    emit(
        state,
        Event {
            request_id: request_id.to_owned(),
            time_ms: palisade_store::now_ms(),
            source: "stream".into(),
            route: Some(route.to_owned()),
            decision: decision.to_owned(),
            reasons: reasons.to_vec(),
            findings: findings.iter().map(record).collect(),
            ..Event::default()
        },
    );
}

/// Opens the configured store and starts its writer; `None` when recording is off.
pub fn open(
    config: &palisade_policy::config::StorageConfig,
) -> Result<Option<Arc<Writer>>, String> {
    if !config.enabled {
        return Ok(None);
    }
    let store = open_store(config)?;
    let writer = Writer::start(Arc::new(store), config.queue_events, config.retention_days)
        .map_err(|e| format!("cannot start the store writer: {e}"))?;
    Ok(Some(Arc::new(writer)))
}

/// Starts the Kafka publisher when `events.kafka` is configured.
pub fn kafka(
    config: &palisade_policy::config::Config,
) -> Result<Option<Arc<palisade_kafka::Publisher>>, palisade_kafka::StartError> {
    let Some(k) = &config.events.kafka else {
        return Ok(None);
    };
    palisade_kafka::Publisher::start(k).map(|p| Some(Arc::new(p)))
}

/// The configured database: PostgreSQL when `storage.postgres` is set, else the SQLite file.
/// Blocks while it connects and migrates (at start-up, before traffic).
pub fn open_store(
    config: &palisade_policy::config::StorageConfig,
) -> Result<palisade_store::Store, String> {
    let Some(pg) = &config.postgres else {
        return palisade_store::Store::open(&config.sqlite_path)
            .map_err(|e| format!("cannot open the store at {}: {e}", config.sqlite_path));
    };
    let url = match (&pg.url, &pg.url_env) {
        (Some(url), _) => url.clone(),
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| format!("storage.postgres.url_env: `{var}` is not set"))?,
        (None, None) => return Err("storage.postgres: give `url` or `url_env`".into()),
    };
    let options = palisade_store::PostgresOptions {
        url,
        timeout: std::time::Duration::from_millis(pg.timeout_ms.max(1)),
    };
    let store = palisade_store::Store::postgres(&options)
        .map_err(|e| format!("cannot open the PostgreSQL store: {e}"))?;
    tracing::info!("store: PostgreSQL, schema up to date");
    Ok(store)
}
