//! Palisade's records: one event per exchange (proxy) or guard call with its findings and their
//! redacted snippets, what the traffic reveals (inventory), and the governance records that must
//! outlive a process: tool pins, approvals and the admin audit log.
//!
//! One interface, [`Store`], over two databases:
//! - **SQLite** (the default): one file, embedded, for one replica. Migrations run inside a
//!   `BEGIN IMMEDIATE` transaction, so two processes opening the same file migrate it once.
//! - **PostgreSQL**: the shared store of several replicas. Migrations run under a session-level
//!   advisory lock (`pg_advisory_lock`) and a `schema_migrations` table, so replicas that start
//!   together migrate once and the others wait, then find nothing to do. Sequence numbers come
//!   from one database sequence, so replicas never collide and cursors (`s<seq>`) mean the same
//!   on every replica.
//!
//! Every method is synchronous and blocks the calling thread for one statement or transaction;
//! the PostgreSQL backend runs its statements on its own connection threads (see [`pg`]), so it
//! is safe, though blocking, to call from inside an async runtime. Callers on a request path go
//! through [`Writer`], which never waits.
//!
//! Writes never block a request: [`Writer::record`] puts the event on a bounded queue and returns
//! at once; a background thread writes it in batches of up to [`BATCH`] events, one transaction
//! each. When the database is down, the thread keeps the batch in hand and retries with back-off
//! while the queue fills; beyond the bound, events are dropped and counted ([`Writer::dropped`]),
//! since a guardrail that stalls traffic because its records are slow would be worse than a gap
//! in the records. Old rows are pruned by the same thread, at most once a minute, after
//! `retention_days`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub mod pg;
mod sqlite;
mod writer;

pub use pg::PostgresOptions;
pub use writer::{Writer, BATCH};

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
    /// PostgreSQL said no, or could not be reached.
    #[error("store: {0}")]
    Postgres(#[from] postgres::Error),
    /// PostgreSQL did not answer within the configured time.
    #[error("store: no answer from PostgreSQL within {0:?}")]
    Timeout(Duration),
    /// The configuration or the connection settings are wrong.
    #[error("store: {0}")]
    Config(String),
    /// A cursor that this store did not hand out.
    #[error("bad cursor `{0}`")]
    Cursor(String),
    /// The database could not be reached (no connection right now).
    #[error("store: database unreachable")]
    Unreachable,
    /// The store's lock was poisoned by a panic elsewhere.
    #[error("store: lock poisoned")]
    Poisoned,
}

impl StoreError {
    /// Whether trying again later may succeed: the database was unreachable, busy, restarting or
    /// out of resources, as opposed to refusing the data itself. The writer keeps a batch that
    /// failed this way and retries it; other failures drop the batch and count it.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Timeout(_) | StoreError::Unreachable => true,
            StoreError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::CannotOpen
                )
            ),
            StoreError::Postgres(e) => pg::is_transient(e),
            StoreError::Config(_) | StoreError::Cursor(_) | StoreError::Poisoned => false,
        }
    }
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

/// One audited change or decision: who did what to what, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// An admin key's name, or `palisade` for automatic changes.
    pub actor: String,
    /// `tool.pinned`, `approval.approved`, …
    pub action: String,
    /// A tool's scope and name, an approval id.
    pub target: String,
    /// Why.
    pub reason: Option<String>,
    /// Anything else worth keeping.
    pub detail: serde_json::Value,
}

/// One approval request as stored: the columns the store queries on, and the whole record as
/// JSON. Reading back, the columns win over the same fields in `doc` (`used` is set by
/// [`Store::take_grant`] without rewriting the document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Its id.
    pub id: String,
    /// `pending`, `approved`, `denied`, `expired`.
    pub status: String,
    /// The agent that made the held call.
    pub agent: String,
    /// The action type.
    pub action: String,
    /// What a `call`-scoped grant matches.
    pub fingerprint: String,
    /// `call` or `action`.
    pub scope: String,
    /// Whether a `call`-scoped grant was used.
    pub used: bool,
    /// Created (ms since the epoch).
    pub created_ms: i64,
    /// Pending until, or granted until (ms since the epoch).
    pub expires_ms: i64,
    /// The whole record.
    pub doc: serde_json::Value,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The sequence number a cursor stands for.
fn cursor_seq(cursor: &str) -> Result<i64, StoreError> {
    cursor
        .strip_prefix('s')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Cursor(cursor.to_owned()))
}

/// A value bound to a query built at run time.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

/// The `WHERE` clauses and values of an events query, with placeholders made by `mark` (SQLite
/// `?1`, PostgreSQL `$1`), and the page size asked for.
fn events_filter(q: &Query, mark: fn(usize) -> String) -> Result<(String, Vec<Arg>), StoreError> {
    let mut sql = String::from(" WHERE 1=1");
    let mut args = Vec::new();
    let mut push = |clause: &str, v: Arg| {
        args.push(v);
        sql.push_str(&clause.replace('#', &mark(args.len())));
    };
    if let Some(r) = &q.route {
        push(" AND route = #", Arg::Text(r.clone()));
    }
    if let Some(d) = &q.decision {
        push(" AND decision = #", Arg::Text(d.clone()));
    }
    if let Some(a) = &q.agent_id {
        push(" AND agent_id = #", Arg::Text(a.clone()));
    }
    if let Some(d) = &q.detector {
        push(
            " AND EXISTS (SELECT 1 FROM findings f WHERE f.event_seq = e.seq AND f.detector = #)",
            Arg::Text(d.clone()),
        );
    }
    if let Some(t) = q.since_ms {
        push(" AND time_ms >= #", Arg::Int(t));
    }
    if let Some(c) = &q.cursor {
        push(" AND seq < #", Arg::Int(cursor_seq(c)?));
    }
    Ok((sql, args))
}

/// The page size of `q`.
fn page_size(q: &Query) -> usize {
    q.limit.unwrap_or(50).clamp(1, 500)
}

/// The columns of an event, in the order both backends select them.
const EVENT_COLUMNS: &str = "seq, request_id, time_ms, source, route, collector, agent_id, client_ip, method, path, mcp_method, tool, status, decision, risk, latency_ms, reasons, body, model";

/// Cuts `items` (fetched with one row more than `limit`) to a page and its `next` cursor.
fn page(mut items: Vec<Event>, limit: usize) -> Page {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().and_then(|e| e.seq).map(|s| format!("s{s}"))
    } else {
        None
    };
    Page { items, next }
}

/// The inventory's queries, with `agg(col)` the backend's comma-joined distinct aggregate.
fn inventory_sql(agg: fn(&str) -> String) -> [String; 3] {
    [
        format!(
            "SELECT e.route, e.method, e.path_template, COUNT(DISTINCT e.seq), MIN(e.time_ms), MAX(e.time_ms), {}, {}, {}
             FROM events e LEFT JOIN findings f ON f.event_seq = e.seq AND f.detector = 'pii'
             WHERE e.source = 'proxy' AND e.path_template IS NOT NULL
             GROUP BY e.route, e.method, e.path_template ORDER BY COUNT(DISTINCT e.seq) DESC LIMIT 1000",
            agg("e.status"),
            agg("e.decision"),
            agg("f.kind"),
        ),
        "SELECT route, tool, COUNT(*), MIN(time_ms), MAX(time_ms),
                SUM(CASE WHEN decision IN ('block', 'deny') THEN 1 ELSE 0 END)
         FROM events WHERE tool IS NOT NULL AND mcp_method = 'tools/call'
         GROUP BY route, tool ORDER BY COUNT(*) DESC LIMIT 1000"
            .to_owned(),
        "SELECT route, model, COUNT(*), MAX(time_ms) FROM events WHERE model IS NOT NULL
         GROUP BY route, model ORDER BY COUNT(*) DESC LIMIT 1000"
            .to_owned(),
    ]
}

/// One endpoint row of the inventory: route, method, template, calls, first and last seen, and
/// the statuses, decisions and personal-data kinds seen (comma-joined).
type EndpointRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);
/// One tool row: route, tool, calls, first and last seen, calls refused.
type ToolRow = (Option<String>, String, i64, i64, i64, i64);
/// One model row: route, model, calls, last seen.
type ModelRow = (Option<String>, String, i64, i64);
/// The inventory's rows: endpoints, tools, models.
type InventoryRows = (Vec<EndpointRow>, Vec<ToolRow>, Vec<ModelRow>);

/// The inventory document from its rows.
fn inventory_json(
    endpoints: Vec<EndpointRow>,
    tools: Vec<ToolRow>,
    models: Vec<ModelRow>,
) -> serde_json::Value {
    let split = |s: Option<String>| -> Vec<String> {
        let mut v: Vec<String> = s
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let endpoints: Vec<_> = endpoints
        .into_iter()
        .map(
            |(route, method, template, calls, first, last, statuses, decisions, pii)| {
                serde_json::json!({
                    "route": route, "method": method, "path": template, "calls": calls,
                    "first_seen_ms": first, "last_seen_ms": last,
                    "statuses": split(statuses), "decisions": split(decisions), "pii": split(pii),
                })
            },
        )
        .collect();
    let tools: Vec<_> = tools
        .into_iter()
        .map(|(route, tool, calls, first, last, refused)| {
            serde_json::json!({
                "route": route, "tool": tool, "calls": calls, "refused": refused,
                "first_seen_ms": first, "last_seen_ms": last,
            })
        })
        .collect();
    let models: Vec<_> = models
        .into_iter()
        .map(|(route, model, calls, last)| {
            serde_json::json!({"route": route, "model": model, "calls": calls, "last_seen_ms": last})
        })
        .collect();
    serde_json::json!({ "endpoints": endpoints, "tools": tools, "models": models })
}

/// The events' reasons as stored (a JSON array).
fn reasons_json(reasons: &[String]) -> String {
    serde_json::to_string(reasons).unwrap_or_else(|_| "[]".into())
}

/// The database behind a [`Store`].
#[derive(Debug)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(pg::Postgres),
}

/// Calls the same method on whichever backend holds the data.
macro_rules! on_backend {
    ($self:ident, $b:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

/// The store: SQLite or PostgreSQL, one interface. See the crate documentation.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to date.
    /// `:memory:` gives a private in-memory database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::Sqlite::open(path.as_ref())?),
        })
    }

    /// Connects to PostgreSQL and brings its schema up to date, under the migration lock.
    pub fn postgres(options: &PostgresOptions) -> Result<Self, StoreError> {
        Ok(Store {
            backend: Backend::Postgres(pg::Postgres::open(options)?),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Applies the migrations not applied yet (once, whoever else migrates at the same time);
    /// returns the schema version this build knows.
    pub fn migrate(&self) -> Result<usize, StoreError> {
        on_backend!(self, b => b.migrate())
    }

    /// The schema versions applied, in order.
    pub fn schema_versions(&self) -> Result<Vec<i64>, StoreError> {
        on_backend!(self, b => b.schema_versions())
    }

    /// Writes events and their findings in one transaction.
    pub fn write(&self, events: &[Event]) -> Result<(), StoreError> {
        on_backend!(self, b => b.write(events))
    }

    /// Deletes events (and their findings) older than `before_ms`, and approvals that stopped
    /// mattering before then; returns how many events.
    pub fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        on_backend!(self, b => b.prune(before_ms))
    }

    /// Events matching `q`, newest first, a page at a time.
    pub fn events(&self, q: &Query) -> Result<Page, StoreError> {
        on_backend!(self, b => b.events(q))
    }

    /// The event with this request id, if recorded.
    pub fn event(&self, request_id: &str) -> Result<Option<Event>, StoreError> {
        let Some(seq) = on_backend!(self, b => b.seq_of(request_id))? else {
            return Ok(None);
        };
        let page = self.events(&Query {
            cursor: Some(format!("s{}", seq + 1)),
            limit: Some(1),
            ..Query::default()
        })?;
        Ok(page.items.into_iter().next())
    }

    /// Whether the database answers a trivial query.
    pub fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, b => b.ping())
    }

    /// What the recorded traffic reveals: endpoints (path templates) with their methods, statuses,
    /// first and last sight and the personal data they carried; MCP tools per route with their
    /// call counts; models in use.
    pub fn inventory(&self) -> Result<serde_json::Value, StoreError> {
        let (endpoints, tools, models) = on_backend!(self, b => b.inventory_rows())?;
        Ok(inventory_json(endpoints, tools, models))
    }

    /// How many events are stored.
    pub fn count(&self) -> Result<i64, StoreError> {
        on_backend!(self, b => b.count("events"))
    }

    /// How many findings are stored.
    pub fn count_findings(&self) -> Result<i64, StoreError> {
        on_backend!(self, b => b.count("findings"))
    }

    /// Appends entries to the audit log, in one transaction.
    pub fn append_audit(&self, entries: &[AuditRecord]) -> Result<(), StoreError> {
        on_backend!(self, b => b.append_audit(entries))
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        on_backend!(self, b => b.audit(limit.clamp(1, 100_000)))
    }

    /// Writes (inserts or replaces) the pin of `tool` in `scope`.
    pub fn put_pin(
        &self,
        scope: &str,
        tool: &str,
        state: &str,
        doc: &serde_json::Value,
    ) -> Result<(), StoreError> {
        on_backend!(self, b => b.put_pin(scope, tool, state, doc))
    }

    /// The pin of `tool` in `scope`.
    pub fn pin(&self, scope: &str, tool: &str) -> Result<Option<serde_json::Value>, StoreError> {
        on_backend!(self, b => b.pin(scope, tool))
    }

    /// Every pin of `scope`, or of every scope, with its scope, ordered by scope and tool.
    pub fn pins(
        &self,
        scope: Option<&str>,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        on_backend!(self, b => b.pins(scope))
    }

    /// Stores a new approval; an id already stored is an error.
    pub fn create_approval(&self, a: &ApprovalRecord) -> Result<(), StoreError> {
        on_backend!(self, b => b.create_approval(a))
    }

    /// One approval.
    pub fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        on_backend!(self, b => b.approval(id))
    }

    /// Approvals, newest first, optionally only those stored with `status`; at most `limit`.
    pub fn approvals(
        &self,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        on_backend!(self, b => b.approvals(status, limit.clamp(1, 100_000)))
    }

    /// Replaces approval `a.id` only if it is still stored with status `expected`; returns whether
    /// it was. Two replicas deciding the same approval: one wins, the other learns it lost.
    pub fn update_approval(&self, a: &ApprovalRecord, expected: &str) -> Result<bool, StoreError> {
        on_backend!(self, b => b.update_approval(a, expected))
    }

    /// Takes a grant covering this call, atomically: an approved, unexpired approval that is
    /// `action`-scoped for this agent and action, or `call`-scoped for this fingerprint and
    /// unused (which is then marked used, so only one caller on any replica gets it).
    pub fn take_grant(
        &self,
        agent: &str,
        action: &str,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        on_backend!(self, b => b.take_grant(agent, action, fingerprint, now_ms))
    }
}

#[cfg(test)]
mod tests;
