//! The SQLite backend: one file, two connections.
//!
//! Writes (the writer's batches, governance records, pruning) share one connection; reads (the
//! admin API, the inventory) use another, so that in WAL mode a read never waits for a batch to
//! commit. `:memory:` has one connection for both, since two would be two databases.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};

use crate::{
    events_filter, inventory_sql, page, page_size, reasons_json, ApprovalRecord, Arg, AuditRecord,
    Event, FindingRecord, InventoryRows, Page, Query, StoreError, EVENT_COLUMNS,
};

/// The schema, one migration a step. Never edit a released step; add one.
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
    // 3: lookups by request id and by event (cascading deletes), and the governance records.
    "CREATE INDEX events_request ON events(request_id);
    CREATE INDEX findings_event ON findings(event_seq);
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
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
        updated_ms INTEGER NOT NULL,
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
        used INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        doc TEXT NOT NULL
    );
    CREATE INDEX approvals_created ON approvals(created_ms);
    CREATE INDEX approvals_grant ON approvals(status, expires_ms);",
];

fn mark(n: usize) -> String {
    format!("?{n}")
}

fn agg(col: &str) -> String {
    format!("GROUP_CONCAT(DISTINCT {col})")
}

#[derive(Debug)]
pub(crate) struct Sqlite {
    write: Mutex<Connection>,
    /// `None` for `:memory:`, where reads use the write connection.
    read: Option<Mutex<Connection>>,
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // A second process opening the same file waits for the first one's migration rather than
    // failing at once.
    conn.busy_timeout(Duration::from_secs(10))?;
    // WAL lets readers (the admin API) run while the writer commits; NORMAL sync is durable
    // across a process crash, which is what a record needs.
    // Switching a fresh file to WAL needs it to itself, and SQLite answers "database is locked"
    // at once, without the busy handler, when another process is doing the same: retry.
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => break,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < Duration::from_secs(10) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn lock(m: &Mutex<Connection>) -> Result<MutexGuard<'_, Connection>, StoreError> {
    m.lock().map_err(|_| StoreError::Poisoned)
}

fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    let doc: String = r.get(9)?;
    Ok(ApprovalRecord {
        id: r.get(0)?,
        status: r.get(1)?,
        agent: r.get(2)?,
        action: r.get(3)?,
        fingerprint: r.get(4)?,
        scope: r.get(5)?,
        used: r.get(6)?,
        created_ms: r.get(7)?,
        expires_ms: r.get(8)?,
        doc: serde_json::from_str(&doc).unwrap_or_default(),
    })
}

const APPROVAL_COLUMNS: &str =
    "id, status, agent, action, fingerprint, scope, used, created_ms, expires_ms, doc";

impl Sqlite {
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let memory = path.as_os_str() == ":memory:";
        let write = connect(path)?;
        let store = Sqlite {
            write: Mutex::new(write),
            read: None,
        };
        store.migrate()?;
        let read = if memory { None } else { Some(connect(path)?) };
        Ok(Sqlite {
            read: read.map(Mutex::new),
            ..store
        })
    }

    fn writer(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        lock(&self.write)
    }

    fn reader(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        lock(self.read.as_ref().unwrap_or(&self.write))
    }

    /// Each step in its own `BEGIN IMMEDIATE` transaction that first reads the version: the
    /// write lock is taken before the read, so of two processes migrating one file, the second
    /// waits, then sees the step done.
    pub(crate) fn migrate(&self) -> Result<usize, StoreError> {
        let mut conn = self.writer()?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
            [],
        )?;
        loop {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: i64 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )?;
            let Some(sql) = usize::try_from(current)
                .ok()
                .and_then(|c| MIGRATIONS.get(c))
            else {
                if current > MIGRATIONS.len() as i64 {
                    tracing::warn!(
                        version = current,
                        known = MIGRATIONS.len(),
                        "store: the schema is newer than this build; carrying on"
                    );
                }
                return Ok(MIGRATIONS.len());
            };
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)",
                params![current + 1, crate::now_ms()],
            )?;
            tx.commit()?;
            tracing::info!(version = current + 1, "store: schema migrated (sqlite)");
        }
    }

    pub(crate) fn schema_versions(&self) -> Result<Vec<i64>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare("SELECT version FROM schema_migrations ORDER BY version")?;
        let v = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub(crate) fn write(&self, events: &[Event]) -> Result<(), StoreError> {
        let mut conn = self.writer()?;
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
                    reasons_json(&e.reasons),
                    e.body,
                    e.path.as_deref().map(crate::path_template),
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

    pub(crate) fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let conn = self.writer()?;
        conn.execute(
            "DELETE FROM approvals WHERE expires_ms < ?1 AND created_ms < ?1",
            params![before_ms],
        )?;
        Ok(conn.execute("DELETE FROM events WHERE time_ms < ?1", params![before_ms])?)
    }

    pub(crate) fn events(&self, q: &Query) -> Result<Page, StoreError> {
        let limit = page_size(q);
        let (filter, mut args) = events_filter(q, mark)?;
        args.push(Arg::Int(limit as i64 + 1));
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e{filter} ORDER BY seq DESC LIMIT ?{}",
            args.len()
        );
        let values = args.into_iter().map(|a| match a {
            Arg::Text(s) => rusqlite::types::Value::Text(s),
            Arg::Int(i) => rusqlite::types::Value::Integer(i),
        });
        let conn = self.reader()?;
        let mut stmt = conn.prepare(&sql)?;
        let mut items: Vec<Event> = stmt
            .query_map(params_from_iter(values), |r| {
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
        items.truncate(limit + 1);
        let mut fstmt = conn.prepare_cached(
            "SELECT detector, kind, severity, action, location, snippet FROM findings WHERE event_seq = ?1 ORDER BY seq",
        )?;
        for e in items.iter_mut().take(limit) {
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
        Ok(page(items, limit))
    }

    pub(crate) fn seq_of(&self, request_id: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.reader()?;
        Ok(conn
            .query_row(
                "SELECT seq FROM events WHERE request_id = ?1 ORDER BY seq DESC LIMIT 1",
                params![request_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub(crate) fn ping(&self) -> Result<(), StoreError> {
        let conn = self.reader()?;
        conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }

    pub(crate) fn inventory_rows(&self) -> Result<InventoryRows, StoreError> {
        let [endpoints, tools, models] = inventory_sql(agg);
        let conn = self.reader()?;
        let endpoints = conn
            .prepare(&endpoints)?
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
                    r.get(8)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let tools = conn
            .prepare(&tools)?
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
        let models = conn
            .prepare(&models)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        Ok((endpoints, tools, models))
    }

    pub(crate) fn count(&self, table: &'static str) -> Result<i64, StoreError> {
        let conn = self.reader()?;
        Ok(conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    }

    pub(crate) fn append_audit(&self, entries: &[AuditRecord]) -> Result<(), StoreError> {
        let mut conn = self.writer()?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO audit_log (at_ms, actor, action, target, reason, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for a in entries {
                stmt.execute(params![
                    a.at_ms,
                    a.actor,
                    a.action,
                    a.target,
                    a.reason,
                    a.detail.to_string()
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT at_ms, actor, action, target, reason, detail FROM audit_log ORDER BY seq DESC LIMIT ?1",
        )?;
        let v = stmt
            .query_map(params![limit as i64], |r| {
                let detail: String = r.get(5)?;
                Ok(AuditRecord {
                    at_ms: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    reason: r.get(4)?,
                    detail: serde_json::from_str(&detail).unwrap_or_default(),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub(crate) fn put_pin(
        &self,
        scope: &str,
        tool: &str,
        state: &str,
        doc: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let conn = self.writer()?;
        conn.prepare_cached(
            "INSERT INTO tool_pins (scope, tool, state, updated_ms, doc) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (scope, tool) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms, doc = excluded.doc",
        )?
        .execute(params![scope, tool, state, crate::now_ms(), doc.to_string()])?;
        Ok(())
    }

    pub(crate) fn pin(
        &self,
        scope: &str,
        tool: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let conn = self.reader()?;
        let doc: Option<String> = conn
            .prepare_cached("SELECT doc FROM tool_pins WHERE scope = ?1 AND tool = ?2")?
            .query_row(params![scope, tool], |r| r.get(0))
            .optional()?;
        Ok(doc.and_then(|d| serde_json::from_str(&d).ok()))
    }

    pub(crate) fn pins(
        &self,
        scope: Option<&str>,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT scope, doc FROM tool_pins WHERE ?1 IS NULL OR scope = ?1 ORDER BY scope, tool",
        )?;
        let rows: Vec<(String, String)> = stmt
            .query_map(params![scope], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, d)| serde_json::from_str(&d).ok().map(|d| (s, d)))
            .collect())
    }

    pub(crate) fn create_approval(&self, a: &ApprovalRecord) -> Result<(), StoreError> {
        let conn = self.writer()?;
        conn.prepare_cached(&format!(
            "INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?
        .execute(params![
            a.id,
            a.status,
            a.agent,
            a.action,
            a.fingerprint,
            a.scope,
            a.used,
            a.created_ms,
            a.expires_ms,
            a.doc.to_string()
        ])?;
        Ok(())
    }

    pub(crate) fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        let conn = self.reader()?;
        let found = conn
            .prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"
            ))?
            .query_row(params![id], approval_row)
            .optional()?;
        Ok(found)
    }

    pub(crate) fn approvals(
        &self,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE ?1 IS NULL OR status = ?1
             ORDER BY created_ms DESC, id DESC LIMIT ?2"
        ))?;
        let v = stmt
            .query_map(params![status, limit as i64], approval_row)?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    pub(crate) fn update_approval(
        &self,
        a: &ApprovalRecord,
        expected: &str,
    ) -> Result<bool, StoreError> {
        let conn = self.writer()?;
        let n = conn
            .prepare_cached(
                "UPDATE approvals SET status = ?2, scope = ?3, used = ?4, expires_ms = ?5, doc = ?6
                 WHERE id = ?1 AND status = ?7",
            )?
            .execute(params![
                a.id,
                a.status,
                a.scope,
                a.used,
                a.expires_ms,
                a.doc.to_string(),
                expected
            ])?;
        Ok(n == 1)
    }

    pub(crate) fn take_grant(
        &self,
        agent: &str,
        action: &str,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let mut conn = self.writer()?;
        // IMMEDIATE: another process sharing the file cannot take the same call grant between
        // our read and our update.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = tx
            .prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals
                 WHERE status = 'approved' AND expires_ms > ?1
                   AND ((scope = 'action' AND agent = ?2 AND action = ?3)
                        OR (scope = 'call' AND fingerprint = ?4 AND used = 0))
                 ORDER BY created_ms LIMIT 1"
            ))?
            .query_row(params![now_ms, agent, action, fingerprint], approval_row)
            .optional()?;
        let Some(mut a) = found else {
            return Ok(None);
        };
        if a.scope == "call" {
            tx.execute("UPDATE approvals SET used = 1 WHERE id = ?1", params![a.id])?;
            a.used = true;
        }
        tx.commit()?;
        Ok(Some(a))
    }
}
