//! Palisade's records: one event per exchange (proxy) or guard call, and its findings with
//! redacted snippets, kept in SQLite (embedded, one file).
//!
//! Writes never block a request: [`Writer::record`] puts the event on a bounded queue and returns
//! at once; a background thread drains it in batches of up to [`BATCH`] events, one transaction
//! each. When the queue is full the event is dropped and counted ([`Writer::dropped`]), since a
//! guardrail that stalls traffic because its records are slow would be worse than a gap in the
//! records. Old rows are pruned by the same thread, at most once a minute, after
//! `retention_days`.
//!
//! The schema is versioned: [`MIGRATIONS`] are applied in order, each once, inside a transaction,
//! and the version reached is kept in `schema_migrations`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// Most events written in one transaction.
pub const BATCH: usize = 512;

/// The schema, one migration a step.
pub const MIGRATIONS: &[&str] = &[
    // 1: events and findings.
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        source TEXT NOT NULL,
        route TEXT,
        collector TEXT,
        agent_id TEXT,
        client_ip TEXT,
        method TEXT,
        path TEXT,
        mcp_method TEXT,
        tool TEXT,
        status INTEGER,
        decision TEXT NOT NULL,
        risk INTEGER NOT NULL DEFAULT 0,
        latency_ms REAL,
        reasons TEXT NOT NULL DEFAULT '[]',
        body TEXT
    );
    CREATE INDEX events_time ON events(time_ms);
    CREATE INDEX events_route_time ON events(route, time_ms);
    CREATE TABLE findings (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_seq INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
        request_id TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        detector TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        action TEXT NOT NULL,
        location TEXT,
        snippet TEXT
    );
    CREATE INDEX findings_time ON findings(time_ms);
    CREATE INDEX findings_detector_time ON findings(detector, time_ms);",
    // 2: discovery: the path with its ids folded, and the model called.
    "ALTER TABLE events ADD COLUMN path_template TEXT;
    ALTER TABLE events ADD COLUMN model TEXT;
    CREATE INDEX events_endpoint ON events(route, method, path_template);",
];

/// `path` with its identifiers folded to `{id}`: numbers, UUIDs, long hex and base64-ish tokens
/// (`/users/42/orders/9f1c…` → `/users/{id}/orders/{id}`), so one endpoint is one row.
pub fn path_template(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let fold = |seg: &str| -> bool {
        if seg.is_empty() {
            return false;
        }
        let digits = seg.bytes().filter(u8::is_ascii_digit).count();
        let all_digits = digits == seg.len();
        let hexish = seg.len() >= 16 && seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        let uuid = seg.len() == 36 && seg.bytes().filter(|&b| b == b'-').count() == 4 && hexish;
        let token = seg.len() >= 20
            && digits > 0
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        all_digits || uuid || hexish || token
    };
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if fold(seg) { "{id}" } else { seg });
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A cursor that this store did not hand out.
    #[error("bad cursor `{0}`")]
    Cursor(String),
    /// The store's lock was poisoned by a panic elsewhere.
    #[error("store: lock poisoned")]
    Poisoned,
}

/// One finding of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// Detector id.
    pub detector: String,
    /// Kind within the detector.
    pub kind: String,
    /// `low` … `critical`.
    pub severity: String,
    /// What the policy did.
    pub action: String,
    /// Where in the body (a JSON Pointer, `query`, `body`, `stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The text around the finding, personal data and secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

/// One exchange or guard call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The store's sequence number (set when read back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// Palisade's request id.
    pub request_id: String,
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// `proxy` or `guard`.
    pub source: String,
    /// The route (proxy) or `guard:<collector>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The collector (guard calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
    /// The agent, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// MCP method, when the body was MCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_method: Option<String>,
    /// MCP tool or LLM tool called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// HTTP status answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `allow`, `redact`, `block`, `deny`, `hold`, `error`.
    pub decision: String,
    /// 0–100.
    pub risk: u8,
    /// Time Palisade took, upstream included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Why, in short sentences.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The model called, for LLM traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The body, redacted, when the route or collector logs `full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Its findings.
    #[serde(default)]
    pub findings: Vec<FindingRecord>,
}

/// Filters for reading events back. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Query {
    /// Only this route.
    pub route: Option<String>,
    /// Only this decision.
    pub decision: Option<String>,
    /// Only this agent.
    pub agent_id: Option<String>,
    /// Only events with a finding of this detector.
    pub detector: Option<String>,
    /// Not before this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Page size (at most 500; default 50).
    pub limit: Option<usize>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
}

/// One page of events, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    /// The events.
    pub items: Vec<Event>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One endpoint row of the inventory query: route, method, template, calls, first and last seen,
/// statuses and decisions (comma-separated).
type EndpointRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
);

/// The SQLite store.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// `:memory:` gives a private in-memory database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        // WAL lets readers (the admin API) run while the writer commits; NORMAL sync is
        // durable across a process crash, which is what a record needs.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let store = Store {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Applies the migrations not applied yet; returns the schema version.
    pub fn migrate(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
            [],
        )?;
        let current: i64 = conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= current {
                continue;
            }
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)",
                params![version, now_ms()],
            )?;
            tx.commit()?;
            tracing::info!(version, "store: schema migrated");
        }
        Ok(MIGRATIONS.len())
    }

    /// Writes events and their findings in one transaction.
    pub fn write(&self, events: &[Event]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        {
            let mut ev = tx.prepare_cached(
                "INSERT INTO events (request_id, time_ms, source, route, collector, agent_id, client_ip, method, path, mcp_method, tool, status, decision, risk, latency_ms, reasons, body, path_template, model)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?;
            let mut fi = tx.prepare_cached(
                "INSERT INTO findings (event_seq, request_id, time_ms, detector, kind, severity, action, location, snippet)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for e in events {
                let reasons = serde_json::to_string(&e.reasons).unwrap_or_else(|_| "[]".into());
                ev.execute(params![
                    e.request_id,
                    e.time_ms,
                    e.source,
                    e.route,
                    e.collector,
                    e.agent_id,
                    e.client_ip,
                    e.method,
                    e.path,
                    e.mcp_method,
                    e.tool,
                    e.status,
                    e.decision,
                    e.risk,
                    e.latency_ms,
                    reasons,
                    e.body,
                    e.path.as_deref().map(path_template),
                    e.model,
                ])?;
                let seq = tx.last_insert_rowid();
                for f in &e.findings {
                    fi.execute(params![
                        seq,
                        e.request_id,
                        e.time_ms,
                        f.detector,
                        f.kind,
                        f.severity,
                        f.action,
                        f.location,
                        f.snippet,
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes events (and their findings) older than `before_ms`; returns how many events.
    pub fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let conn = self.conn()?;
        Ok(conn.execute("DELETE FROM events WHERE time_ms < ?1", params![before_ms])?)
    }

    /// Events matching `q`, newest first, a page at a time.
    pub fn events(&self, q: &Query) -> Result<Page, StoreError> {
        let limit = q.limit.unwrap_or(50).clamp(1, 500);
        let mut sql = String::from(
            "SELECT seq, request_id, time_ms, source, route, collector, agent_id, client_ip, method, path, mcp_method, tool, status, decision, risk, latency_ms, reasons, body, model FROM events e WHERE 1=1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut push = |clause: &str, v: rusqlite::types::Value| {
            sql.push_str(clause);
            args.push(v);
        };
        if let Some(r) = &q.route {
            push(" AND route = ?", r.clone().into());
        }
        if let Some(d) = &q.decision {
            push(" AND decision = ?", d.clone().into());
        }
        if let Some(a) = &q.agent_id {
            push(" AND agent_id = ?", a.clone().into());
        }
        if let Some(d) = &q.detector {
            push(
                " AND EXISTS (SELECT 1 FROM findings f WHERE f.event_seq = e.seq AND f.detector = ?)",
                d.clone().into(),
            );
        }
        if let Some(t) = q.since_ms {
            push(" AND time_ms >= ?", t.into());
        }
        if let Some(c) = &q.cursor {
            let seq: i64 = c
                .strip_prefix("s")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StoreError::Cursor(c.clone()))?;
            push(" AND seq < ?", seq.into());
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        args.push((limit as i64 + 1).into());
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&sql)?;
        let mut items: Vec<Event> = stmt
            .query_map(params_from_iter(args.iter()), |r| {
                let reasons: String = r.get(16)?;
                Ok(Event {
                    seq: Some(r.get(0)?),
                    request_id: r.get(1)?,
                    time_ms: r.get(2)?,
                    source: r.get(3)?,
                    route: r.get(4)?,
                    collector: r.get(5)?,
                    agent_id: r.get(6)?,
                    client_ip: r.get(7)?,
                    method: r.get(8)?,
                    path: r.get(9)?,
                    mcp_method: r.get(10)?,
                    tool: r.get(11)?,
                    status: r.get(12)?,
                    decision: r.get(13)?,
                    risk: r.get(14)?,
                    latency_ms: r.get(15)?,
                    reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                    body: r.get(17)?,
                    model: r.get(18)?,
                    findings: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().and_then(|e| e.seq).map(|s| format!("s{s}"))
        } else {
            None
        };
        let mut fstmt = conn.prepare_cached(
            "SELECT detector, kind, severity, action, location, snippet FROM findings WHERE event_seq = ?1 ORDER BY seq",
        )?;
        for e in &mut items {
            e.findings = fstmt
                .query_map(params![e.seq], |r| {
                    Ok(FindingRecord {
                        detector: r.get(0)?,
                        kind: r.get(1)?,
                        severity: r.get(2)?,
                        action: r.get(3)?,
                        location: r.get(4)?,
                        snippet: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
        }
        Ok(Page { items, next })
    }

    /// The event with this request id, if recorded.
    pub fn event(&self, request_id: &str) -> Result<Option<Event>, StoreError> {
        let seq: Option<i64> = {
            let conn = self.conn()?;
            conn.query_row(
                "SELECT seq FROM events WHERE request_id = ?1 ORDER BY seq DESC LIMIT 1",
                params![request_id],
                |r| r.get(0),
            )
            .optional()?
        };
        let Some(seq) = seq else { return Ok(None) };
        let page = self.events(&Query {
            cursor: Some(format!("s{}", seq + 1)),
            limit: Some(1),
            ..Query::default()
        })?;
        Ok(page.items.into_iter().next())
    }

    /// Whether the database answers a trivial query.
    pub fn ping(&self) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }

    /// What the recorded traffic reveals: endpoints (path templates) with their methods, statuses,
    /// first and last sight and the personal data they carried; MCP tools per route with their
    /// call counts; models in use.
    pub fn inventory(&self) -> Result<serde_json::Value, StoreError> {
        let conn = self.conn()?;
        let mut endpoints = Vec::new();
        let mut stmt = conn.prepare(
            "SELECT route, method, path_template, COUNT(*), MIN(time_ms), MAX(time_ms),
                    GROUP_CONCAT(DISTINCT status), GROUP_CONCAT(DISTINCT decision)
             FROM events WHERE source = 'proxy' AND path_template IS NOT NULL
             GROUP BY route, method, path_template ORDER BY COUNT(*) DESC LIMIT 1000",
        )?;
        let mut pii = conn.prepare_cached(
            "SELECT DISTINCT f.kind FROM findings f JOIN events e ON e.seq = f.event_seq
             WHERE f.detector = 'pii' AND e.route IS ?1 AND e.method IS ?2 AND e.path_template IS ?3",
        )?;
        let rows: Vec<EndpointRow> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        for (route, method, template, calls, first, last, statuses, decisions) in rows {
            let kinds: Vec<String> = pii
                .query_map(params![route, method, template], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let split = |s: Option<String>| -> Vec<String> {
                s.map(|s| s.split(',').map(str::to_owned).collect())
                    .unwrap_or_default()
            };
            endpoints.push(serde_json::json!({
                "route": route, "method": method, "path": template, "calls": calls,
                "first_seen_ms": first, "last_seen_ms": last,
                "statuses": split(statuses), "decisions": split(decisions), "pii": kinds,
            }));
        }
        let mut tools = Vec::new();
        let mut stmt = conn.prepare(
            "SELECT route, tool, COUNT(*), MIN(time_ms), MAX(time_ms),
                    SUM(CASE WHEN decision IN ('block', 'deny') THEN 1 ELSE 0 END)
             FROM events WHERE tool IS NOT NULL AND mcp_method = 'tools/call'
             GROUP BY route, tool ORDER BY COUNT(*) DESC LIMIT 1000",
        )?;
        let rows: Vec<(Option<String>, String, i64, i64, i64, i64)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        for (route, tool, calls, first, last, refused) in rows {
            tools.push(serde_json::json!({
                "route": route, "tool": tool, "calls": calls, "refused": refused,
                "first_seen_ms": first, "last_seen_ms": last,
            }));
        }
        let mut models = Vec::new();
        let mut stmt = conn.prepare(
            "SELECT route, model, COUNT(*), MAX(time_ms) FROM events WHERE model IS NOT NULL
             GROUP BY route, model ORDER BY COUNT(*) DESC LIMIT 1000",
        )?;
        let rows: Vec<(Option<String>, String, i64, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        for (route, model, calls, last) in rows {
            models.push(serde_json::json!({"route": route, "model": model, "calls": calls, "last_seen_ms": last}));
        }
        Ok(serde_json::json!({ "endpoints": endpoints, "tools": tools, "models": models }))
    }

    /// How many events are stored.
    pub fn count(&self) -> Result<i64, StoreError> {
        let conn = self.conn()?;
        Ok(conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?)
    }
}

/// The bounded, batching writer in front of a [`Store`].
#[derive(Debug)]
pub struct Writer {
    tx: SyncSender<Event>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    store: Arc<Store>,
}

impl Writer {
    /// Starts the writer thread over `store`, with room for `queue` events, pruning events older
    /// than `retention_days` (0 keeps everything).
    pub fn start(store: Arc<Store>, queue: usize, retention_days: u32) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(queue.max(1));
        let written = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (w, f, s) = (written.clone(), failed.clone(), store.clone());
        std::thread::Builder::new()
            .name("palisade-store".into())
            .spawn(move || drain(rx, &s, &w, &f, retention_days))?;
        Ok(Writer {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            written,
            failed,
            store,
        })
    }

    /// Queues `event` for writing; never waits. A full queue drops it and counts the drop.
    pub fn record(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events written.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Events lost because a write failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The store, for reading.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

fn drain(rx: Receiver<Event>, store: &Store, written: &AtomicU64, failed: &AtomicU64, days: u32) {
    let mut last_prune: Option<Instant> = None;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(e) => batch.push(e),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                flush(store, &mut batch, written, failed);
                return;
            }
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        flush(store, &mut batch, written, failed);
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

fn flush(store: &Store, batch: &mut Vec<Event>, written: &AtomicU64, failed: &AtomicU64) {
    if batch.is_empty() {
        return;
    }
    match store.write(batch) {
        Ok(()) => {
            written.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(error = %e, events = batch.len(), "store: a batch could not be written; dropped");
        }
    }
    batch.clear();
}

#[cfg(test)]
mod tests;
