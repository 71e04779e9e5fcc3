//! The PostgreSQL backend: the shared store of several replicas.
//!
//! Two connections, each owned by a thread of its own: one for writes (the writer's batches,
//! governance records, pruning, migrations), one for reads (the admin API), so a read never waits
//! behind a batch. Callers hand a connection's thread a closure and wait for its answer at most
//! the configured timeout; the `postgres` client's own small runtime never runs on a caller's
//! thread, so calling from inside an async runtime is safe (if blocking: async callers use
//! `spawn_blocking`). A connection that breaks is dropped and made again on the next call, so a
//! database that restarts is picked up without a restart of Palisade.
//!
//! Migrations run under a session-level `pg_advisory_lock`: replicas starting together queue on
//! the lock, the first applies the steps, the others then find them applied.

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;
use std::time::Duration;

use postgres::{Client, NoTls, Row};

use crate::{
    events_filter, inventory_sql, page, page_size, reasons_json, ApprovalRecord, Arg, AuditRecord,
    Event, FindingRecord, InventoryRows, Page, Query, StoreError, EVENT_COLUMNS,
};

/// The advisory lock key migrations hold (`palisade` in ASCII, as a number).
pub const MIGRATION_LOCK: i64 = 0x7061_6c69_7361_6465;

/// How long a replica waits for another's migration.
const MIGRATION_WAIT: Duration = Duration::from_secs(120);

/// The schema, one migration a step. Never edit a released step; add one. The same tables and
/// columns as SQLite's, in PostgreSQL's types.
pub const MIGRATIONS: &[&str] = &[
    // 1: events and findings.
    "CREATE TABLE events (
        seq BIGSERIAL PRIMARY KEY,
        request_id TEXT NOT NULL,
        time_ms BIGINT NOT NULL,
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
        latency_ms DOUBLE PRECISION,
        reasons TEXT NOT NULL DEFAULT '[]',
        body TEXT
    );
    CREATE INDEX events_time ON events(time_ms);
    CREATE INDEX events_route_time ON events(route, time_ms);
    CREATE TABLE findings (
        seq BIGSERIAL PRIMARY KEY,
        event_seq BIGINT NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
        request_id TEXT NOT NULL,
        time_ms BIGINT NOT NULL,
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
    // 3: lookups by request id and by event (cascading deletes), and the governance records.
    "CREATE INDEX events_request ON events(request_id);
    CREATE INDEX findings_event ON findings(event_seq);
    CREATE TABLE audit_log (
        seq BIGSERIAL PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT,
        detail TEXT NOT NULL DEFAULT 'null'
    );
    CREATE TABLE tool_pins (
        scope TEXT NOT NULL,
        tool TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_ms BIGINT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (scope, tool)
    );
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        agent TEXT NOT NULL,
        action TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        scope TEXT NOT NULL,
        used BOOLEAN NOT NULL DEFAULT FALSE,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        doc TEXT NOT NULL
    );
    CREATE INDEX approvals_created ON approvals(created_ms);
    CREATE INDEX approvals_grant ON approvals(status, expires_ms);",
];

/// How to reach PostgreSQL.
#[derive(Clone)]
pub struct PostgresOptions {
    /// A libpq-style URL or key/value string (`postgres://user:pass@host:5432/db`).
    pub url: String,
    /// How long to wait for a connection, and for any one statement's answer.
    pub timeout: Duration,
}

impl std::fmt::Debug for PostgresOptions {
    // The URL may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Whether a PostgreSQL error is worth retrying: no connection, a closed one, a timeout, or a
/// server that is starting, stopping or short of resources (SQLSTATE classes 08, 53, 57).
pub fn is_transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("53") || c.starts_with("57") || c == "40001"
        }
        // No SQLSTATE: an I/O error, a refused connection, a timeout.
        None => true,
    }
}

type Job = Box<dyn FnOnce(&mut Option<Client>) + Send>;

/// One connection, owned by its thread.
struct Conn {
    jobs: Mutex<Sender<Job>>,
    timeout: Duration,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Conn {
    fn start(name: &str, config: postgres::Config, timeout: Duration) -> Result<Self, StoreError> {
        // The server gives up on a statement before the caller does, and rolls it back, so a
        // write the caller counts as timed out has not committed behind its back.
        let statement_ms = timeout.as_millis().max(1);
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name(format!("palisade-pg-{name}"))
            .spawn(move || {
                let mut client: Option<Client> = None;
                while let Ok(job) = rx.recv() {
                    if client.as_ref().is_some_and(Client::is_closed) {
                        client = None;
                    }
                    if client.is_none() {
                        match config.connect(NoTls).and_then(|mut c| {
                            c.batch_execute(&format!("SET statement_timeout = {statement_ms}"))?;
                            Ok(c)
                        }) {
                            Ok(c) => client = Some(c),
                            Err(e) => tracing::debug!(error = %e, "store: postgres connect failed"),
                        }
                    }
                    job(&mut client);
                }
            })
            .map_err(|e| StoreError::Config(format!("cannot start a connection thread: {e}")))?;
        Ok(Conn {
            jobs: Mutex::new(tx),
            timeout,
        })
    }

    /// Runs `f` on the connection's thread, connecting first when needed; waits at most the
    /// timeout for the answer. An error that leaves the connection unusable drops it.
    fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    {
        // Connecting and the statement each take up to the timeout; then a margin.
        self.run_within(self.timeout * 2 + Duration::from_secs(1), f)
    }

    fn run_within<T, F>(&self, wait: Duration, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    {
        let (tx, rx) = channel();
        let job: Job = Box::new(move |client: &mut Option<Client>| {
            let out = match client.as_mut() {
                None => Err(StoreError::Unreachable),
                Some(c) => f(c).map_err(|e| {
                    if e.is_closed() || e.code().is_none() {
                        *client = None;
                    }
                    StoreError::Postgres(e)
                }),
            };
            let _ = tx.send(out);
        });
        self.jobs
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .send(job)
            .map_err(|_| StoreError::Unreachable)?;
        match rx.recv_timeout(wait) {
            Ok(out) => out,
            Err(_) => Err(StoreError::Timeout(wait)),
        }
    }
}

fn mark(n: usize) -> String {
    format!("${n}")
}

fn agg(col: &str) -> String {
    format!("STRING_AGG(DISTINCT {col}::text, ',')")
}

const APPROVAL_COLUMNS: &str =
    "id, status, agent, action, fingerprint, scope, used, created_ms, expires_ms, doc";

fn approval_row(r: &Row) -> Result<ApprovalRecord, postgres::Error> {
    let doc: String = r.try_get(9)?;
    Ok(ApprovalRecord {
        id: r.try_get(0)?,
        status: r.try_get(1)?,
        agent: r.try_get(2)?,
        action: r.try_get(3)?,
        fingerprint: r.try_get(4)?,
        scope: r.try_get(5)?,
        used: r.try_get(6)?,
        created_ms: r.try_get(7)?,
        expires_ms: r.try_get(8)?,
        doc: serde_json::from_str(&doc).unwrap_or_default(),
    })
}

fn event_row(r: &Row) -> Result<Event, postgres::Error> {
    let reasons: String = r.try_get(16)?;
    let status: Option<i32> = r.try_get(12)?;
    let risk: i32 = r.try_get(14)?;
    Ok(Event {
        seq: Some(r.try_get(0)?),
        request_id: r.try_get(1)?,
        time_ms: r.try_get(2)?,
        source: r.try_get(3)?,
        route: r.try_get(4)?,
        collector: r.try_get(5)?,
        agent_id: r.try_get(6)?,
        client_ip: r.try_get(7)?,
        method: r.try_get(8)?,
        path: r.try_get(9)?,
        mcp_method: r.try_get(10)?,
        tool: r.try_get(11)?,
        status: status.and_then(|s| u16::try_from(s).ok()),
        decision: r.try_get(13)?,
        risk: u8::try_from(risk.clamp(0, 100)).unwrap_or(0),
        latency_ms: r.try_get(15)?,
        reasons: serde_json::from_str(&reasons).unwrap_or_default(),
        body: r.try_get(17)?,
        model: r.try_get(18)?,
        findings: Vec::new(),
    })
}

/// The PostgreSQL store.
#[derive(Debug)]
pub(crate) struct Postgres {
    write: Conn,
    read: Conn,
}

impl Postgres {
    pub(crate) fn open(options: &PostgresOptions) -> Result<Self, StoreError> {
        let mut config: postgres::Config = options
            .url
            .parse()
            .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?;
        config.connect_timeout(options.timeout);
        config.application_name("palisade");
        config.keepalives_idle(Duration::from_secs(30));
        let store = Postgres {
            write: Conn::start("write", config.clone(), options.timeout)?,
            read: Conn::start("read", config, options.timeout)?,
        };
        store.migrate()?;
        Ok(store)
    }

    pub(crate) fn migrate(&self) -> Result<usize, StoreError> {
        // A migration may wait for another replica's; give it longer than one statement.
        let timeout = self.write.timeout.as_millis().max(1);
        self.write
            .run_within(MIGRATION_WAIT + Duration::from_secs(5), move |c| {
                c.batch_execute(&format!(
                    "SET statement_timeout = {}",
                    MIGRATION_WAIT.as_millis()
                ))?;
                c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
                let out = apply_migrations(c);
                let unlocked = c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
                c.batch_execute(&format!("SET statement_timeout = {timeout}"))?;
                let n = out?;
                unlocked?;
                Ok(n)
            })
    }

    pub(crate) fn schema_versions(&self) -> Result<Vec<i64>, StoreError> {
        self.read.run(|c| {
            c.query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect()
        })
    }

    pub(crate) fn write(&self, events: &[Event]) -> Result<(), StoreError> {
        let events = events.to_vec();
        self.write.run(move |c| write_events(c, &events))
    }

    pub(crate) fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write.run(move |c| {
            c.execute(
                "DELETE FROM approvals WHERE expires_ms < $1 AND created_ms < $1",
                &[&before_ms],
            )?;
            let n = c.execute("DELETE FROM events WHERE time_ms < $1", &[&before_ms])?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    pub(crate) fn events(&self, q: &Query) -> Result<Page, StoreError> {
        let limit = page_size(q);
        let (filter, mut args) = events_filter(q, mark)?;
        args.push(Arg::Int(limit as i64 + 1));
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e{filter} ORDER BY seq DESC LIMIT ${}",
            args.len()
        );
        let items = self.read.run(move |c| {
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args
                .iter()
                .map(|a| match a {
                    Arg::Text(s) => s as &(dyn postgres::types::ToSql + Sync),
                    Arg::Int(i) => i as &(dyn postgres::types::ToSql + Sync),
                })
                .collect();
            let mut items: Vec<Event> = c
                .query(&sql, &params)?
                .iter()
                .map(event_row)
                .collect::<Result<_, _>>()?;
            items.truncate(limit + 1);
            let seqs: Vec<i64> = items.iter().take(limit).filter_map(|e| e.seq).collect();
            let rows = c.query(
                "SELECT event_seq, detector, kind, severity, action, location, snippet FROM findings
                 WHERE event_seq = ANY($1) ORDER BY seq",
                &[&seqs],
            )?;
            for r in &rows {
                let seq: i64 = r.try_get(0)?;
                if let Some(e) = items.iter_mut().find(|e| e.seq == Some(seq)) {
                    e.findings.push(FindingRecord {
                        detector: r.try_get(1)?,
                        kind: r.try_get(2)?,
                        severity: r.try_get(3)?,
                        action: r.try_get(4)?,
                        location: r.try_get(5)?,
                        snippet: r.try_get(6)?,
                    });
                }
            }
            Ok(items)
        })?;
        Ok(page(items, limit))
    }

    pub(crate) fn seq_of(&self, request_id: &str) -> Result<Option<i64>, StoreError> {
        let id = request_id.to_owned();
        self.read.run(move |c| {
            c.query_opt(
                "SELECT seq FROM events WHERE request_id = $1 ORDER BY seq DESC LIMIT 1",
                &[&id],
            )?
            .map(|r| r.try_get(0))
            .transpose()
        })
    }

    pub(crate) fn ping(&self) -> Result<(), StoreError> {
        self.read.run(|c| c.simple_query("SELECT 1").map(|_| ()))
    }

    pub(crate) fn inventory_rows(&self) -> Result<InventoryRows, StoreError> {
        let [endpoints, tools, models] = inventory_sql(agg);
        self.read.run(move |c| {
            let endpoints = c
                .query(&endpoints, &[])?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                        r.try_get(6)?,
                        r.try_get(7)?,
                        r.try_get(8)?,
                    ))
                })
                .collect::<Result<_, postgres::Error>>()?;
            let tools = c
                .query(&tools, &[])?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                    ))
                })
                .collect::<Result<_, postgres::Error>>()?;
            let models = c
                .query(&models, &[])?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                .collect::<Result<_, postgres::Error>>()?;
            Ok((endpoints, tools, models))
        })
    }

    pub(crate) fn count(&self, table: &'static str) -> Result<i64, StoreError> {
        self.read.run(move |c| {
            c.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])?
                .try_get(0)
        })
    }

    pub(crate) fn append_audit(&self, entries: &[AuditRecord]) -> Result<(), StoreError> {
        let entries = entries.to_vec();
        self.write.run(move |c| {
            let mut tx = c.transaction()?;
            let stmt = tx.prepare(
                "INSERT INTO audit_log (at_ms, actor, action, target, reason, detail) VALUES ($1, $2, $3, $4, $5, $6)",
            )?;
            for a in &entries {
                let detail = a.detail.to_string();
                tx.execute(
                    &stmt,
                    &[&a.at_ms, &a.actor, &a.action, &a.target, &a.reason, &detail],
                )?;
            }
            tx.commit()
        })
    }

    pub(crate) fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = limit as i64;
        self.read.run(move |c| {
            c.query(
                "SELECT at_ms, actor, action, target, reason, detail FROM audit_log ORDER BY seq DESC LIMIT $1",
                &[&limit],
            )?
            .iter()
            .map(|r| {
                let detail: String = r.try_get(5)?;
                Ok(AuditRecord {
                    at_ms: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    target: r.try_get(3)?,
                    reason: r.try_get(4)?,
                    detail: serde_json::from_str(&detail).unwrap_or_default(),
                })
            })
            .collect()
        })
    }

    pub(crate) fn put_pin(
        &self,
        scope: &str,
        tool: &str,
        state: &str,
        doc: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (scope, tool, state, doc) = (
            scope.to_owned(),
            tool.to_owned(),
            state.to_owned(),
            doc.to_string(),
        );
        self.write.run(move |c| {
            c.execute(
                "INSERT INTO tool_pins (scope, tool, state, updated_ms, doc) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (scope, tool) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms, doc = excluded.doc",
                &[&scope, &tool, &state, &crate::now_ms(), &doc],
            )
            .map(|_| ())
        })
    }

    pub(crate) fn pin(
        &self,
        scope: &str,
        tool: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let (scope, tool) = (scope.to_owned(), tool.to_owned());
        let doc: Option<String> = self.read.run(move |c| {
            c.query_opt(
                "SELECT doc FROM tool_pins WHERE scope = $1 AND tool = $2",
                &[&scope, &tool],
            )?
            .map(|r| r.try_get(0))
            .transpose()
        })?;
        Ok(doc.and_then(|d| serde_json::from_str(&d).ok()))
    }

    pub(crate) fn pins(
        &self,
        scope: Option<&str>,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let scope = scope.map(str::to_owned);
        let rows: Vec<(String, String)> = self.read.run(move |c| {
            c.query(
                "SELECT scope, doc FROM tool_pins WHERE $1::text IS NULL OR scope = $1 ORDER BY scope, tool",
                &[&scope],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, d)| serde_json::from_str(&d).ok().map(|d| (s, d)))
            .collect())
    }

    pub(crate) fn create_approval(&self, a: &ApprovalRecord) -> Result<(), StoreError> {
        let a = a.clone();
        self.write.run(move |c| {
            let doc = a.doc.to_string();
            c.execute(
                &format!("INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                &[
                    &a.id,
                    &a.status,
                    &a.agent,
                    &a.action,
                    &a.fingerprint,
                    &a.scope,
                    &a.used,
                    &a.created_ms,
                    &a.expires_ms,
                    &doc,
                ],
            )
            .map(|_| ())
        })
    }

    pub(crate) fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        let id = id.to_owned();
        self.read.run(move |c| {
            c.query_opt(
                &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1"),
                &[&id],
            )?
            .as_ref()
            .map(approval_row)
            .transpose()
        })
    }

    pub(crate) fn approvals(
        &self,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let status = status.map(str::to_owned);
        let limit = limit as i64;
        self.read.run(move |c| {
            c.query(
                &format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE $1::text IS NULL OR status = $1
                     ORDER BY created_ms DESC, id DESC LIMIT $2"
                ),
                &[&status, &limit],
            )?
            .iter()
            .map(approval_row)
            .collect()
        })
    }

    pub(crate) fn update_approval(
        &self,
        a: &ApprovalRecord,
        expected: &str,
    ) -> Result<bool, StoreError> {
        let (a, expected) = (a.clone(), expected.to_owned());
        self.write.run(move |c| {
            let doc = a.doc.to_string();
            let n = c.execute(
                "UPDATE approvals SET status = $2, scope = $3, used = $4, expires_ms = $5, doc = $6
                 WHERE id = $1 AND status = $7",
                &[
                    &a.id,
                    &a.status,
                    &a.scope,
                    &a.used,
                    &a.expires_ms,
                    &doc,
                    &expected,
                ],
            )?;
            Ok(n == 1)
        })
    }

    pub(crate) fn take_grant(
        &self,
        agent: &str,
        action: &str,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let (agent, action, fingerprint) =
            (agent.to_owned(), action.to_owned(), fingerprint.to_owned());
        self.write.run(move |c| {
            let mut tx = c.transaction()?;
            // FOR UPDATE: another replica taking the same call grant waits, then sees it used.
            let found = tx
                .query_opt(
                    &format!(
                        "SELECT {APPROVAL_COLUMNS} FROM approvals
                         WHERE status = 'approved' AND expires_ms > $1
                           AND ((scope = 'action' AND agent = $2 AND action = $3)
                                OR (scope = 'call' AND fingerprint = $4 AND NOT used))
                         ORDER BY created_ms LIMIT 1 FOR UPDATE"
                    ),
                    &[&now_ms, &agent, &action, &fingerprint],
                )?
                .as_ref()
                .map(approval_row)
                .transpose()?;
            let Some(mut a) = found else {
                return Ok(None);
            };
            if a.scope == "call" {
                tx.execute("UPDATE approvals SET used = TRUE WHERE id = $1", &[&a.id])?;
                a.used = true;
            }
            tx.commit()?;
            Ok(Some(a))
        })
    }
}

/// Applies the steps not applied yet, each in its own transaction; the caller holds the lock.
fn apply_migrations(c: &mut Client) -> Result<usize, postgres::Error> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    )?;
    let current: i64 = c
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::bigint FROM schema_migrations",
            &[],
        )?
        .try_get(0)?;
    if current > MIGRATIONS.len() as i64 {
        tracing::warn!(
            version = current,
            known = MIGRATIONS.len(),
            "store: the schema is newer than this build; carrying on"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= current {
            continue;
        }
        let mut tx = c.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
            &[&version, &crate::now_ms()],
        )?;
        tx.commit()?;
        tracing::info!(version, "store: schema migrated (postgres)");
    }
    Ok(MIGRATIONS.len())
}

/// One batch in one transaction and three statements: sequence numbers reserved first, so each
/// finding knows its event's, then every event and every finding as arrays (`unnest`).
fn write_events(c: &mut Client, events: &[Event]) -> Result<(), postgres::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut tx = c.transaction()?;
    let n = events.len() as i64;
    let seqs: Vec<i64> = tx
        .query(
            "SELECT nextval(pg_get_serial_sequence('events', 'seq')) FROM generate_series(1, $1::bigint)",
            &[&n],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let col =
        |f: fn(&Event) -> Option<String>| -> Vec<Option<String>> { events.iter().map(f).collect() };
    let request_id = col(|e| Some(e.request_id.clone()));
    let time_ms: Vec<i64> = events.iter().map(|e| e.time_ms).collect();
    let source = col(|e| Some(e.source.clone()));
    let route = col(|e| e.route.clone());
    let collector = col(|e| e.collector.clone());
    let agent = col(|e| e.agent_id.clone());
    let ip = col(|e| e.client_ip.clone());
    let method = col(|e| e.method.clone());
    let path = col(|e| e.path.clone());
    let mcp = col(|e| e.mcp_method.clone());
    let tool = col(|e| e.tool.clone());
    let status: Vec<Option<i32>> = events.iter().map(|e| e.status.map(i32::from)).collect();
    let decision = col(|e| Some(e.decision.clone()));
    let risk: Vec<i32> = events.iter().map(|e| i32::from(e.risk)).collect();
    let latency: Vec<Option<f64>> = events.iter().map(|e| e.latency_ms).collect();
    let reasons = col(|e| Some(reasons_json(&e.reasons)));
    let body = col(|e| e.body.clone());
    let template = col(|e| e.path.as_deref().map(crate::path_template));
    let model = col(|e| e.model.clone());
    tx.execute(
        "INSERT INTO events (seq, request_id, time_ms, source, route, collector, agent_id, client_ip, method, path, mcp_method, tool, status, decision, risk, latency_ms, reasons, body, path_template, model)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int[], $14::text[], $15::int[], $16::float8[], $17::text[], $18::text[], $19::text[], $20::text[])",
        &[
            &seqs, &request_id, &time_ms, &source, &route, &collector, &agent, &ip, &method,
            &path, &mcp, &tool, &status, &decision, &risk, &latency, &reasons, &body, &template,
            &model,
        ],
    )?;
    let mut f_event = Vec::new();
    let mut f_request = Vec::new();
    let mut f_time = Vec::new();
    let mut f_detector = Vec::new();
    let mut f_kind = Vec::new();
    let mut f_severity = Vec::new();
    let mut f_action = Vec::new();
    let mut f_location = Vec::new();
    let mut f_snippet = Vec::new();
    for (e, seq) in events.iter().zip(&seqs) {
        for f in &e.findings {
            f_event.push(*seq);
            f_request.push(e.request_id.as_str());
            f_time.push(e.time_ms);
            f_detector.push(f.detector.as_str());
            f_kind.push(f.kind.as_str());
            f_severity.push(f.severity.as_str());
            f_action.push(f.action.as_str());
            f_location.push(f.location.as_deref());
            f_snippet.push(f.snippet.as_deref());
        }
    }
    if !f_event.is_empty() {
        tx.execute(
            "INSERT INTO findings (event_seq, request_id, time_ms, detector, kind, severity, action, location, snippet)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])",
            &[
                &f_event, &f_request, &f_time, &f_detector, &f_kind, &f_severity, &f_action,
                &f_location, &f_snippet,
            ],
        )?;
    }
    tx.commit()
}
