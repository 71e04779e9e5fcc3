//! The outbox: a SQLite file of its own holding what must survive a restart.
//!
//! - `deliveries`: one row per alert and sink, `pending` (due at `due_ms`, with its attempts and
//!   last error) or `held` (throttled, waiting for its summary). A row is deleted only when its
//!   webhook accepted it, or when a summary that stands for it is written in the same
//!   transaction.
//! - `groups`: open de-duplication groups, as JSON, so triggers counted but not yet sent are not
//!   lost either.
//!
//! Its own file rather than a table in the records' store: records may live in PostgreSQL, and
//! the outbox is this process's own queue. WAL with `synchronous=NORMAL` survives a crash of the
//! process, which is what a restart needs. Only the alert thread touches it.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::dedupe::Group;
use crate::Alert;

/// The schema, one migration a step; `PRAGMA user_version` says how many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE deliveries (
        id TEXT NOT NULL,
        sink TEXT NOT NULL,
        rule TEXT NOT NULL,
        state TEXT NOT NULL,
        alert TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        due_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        PRIMARY KEY (id, sink)
    );
    CREATE INDEX deliveries_due ON deliveries(sink, state, due_ms);
    CREATE TABLE groups (
        rule TEXT NOT NULL,
        key TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (rule, key)
    );"];

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// To be sent when due.
    Pending,
    /// Held back by throttling, to be summarised.
    Held,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Held => "held",
        }
    }
}

/// One delivery read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The alert.
    pub alert: Alert,
    /// The sink's name.
    pub sink: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When it is due.
    pub due_ms: u64,
}

/// The outbox.
#[derive(Debug)]
pub struct Outbox {
    conn: Connection,
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Outbox {
    /// Opens (creating if needed) the outbox at `path`; `:memory:` keeps it in memory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, rusqlite::Error> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let v = i as i64 + 1;
            if v <= version {
                continue;
            }
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", v)?;
            tx.commit()?;
        }
        Ok(Outbox { conn })
    }

    /// Runs `f` in one transaction.
    pub fn tx<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, rusqlite::Error> {
        let tx = self.conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Writes (or rewrites) an open group.
    pub fn put_group(c: &Connection, key: &str, g: &Group) -> Result<(), rusqlite::Error> {
        let data = serde_json::to_string(g)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        c.prepare_cached("INSERT OR REPLACE INTO groups (rule, key, data) VALUES (?1, ?2, ?3)")?
            .execute(params![g.rule, key, data])?;
        Ok(())
    }

    /// Deletes a group.
    pub fn delete_group(c: &Connection, rule: &str, key: &str) -> Result<(), rusqlite::Error> {
        c.prepare_cached("DELETE FROM groups WHERE rule = ?1 AND key = ?2")?
            .execute(params![rule, key])?;
        Ok(())
    }

    /// Adds a delivery of `alert` to `sink`.
    pub fn insert(
        c: &Connection,
        alert: &Alert,
        sink: &str,
        state: State,
        due_ms: u64,
    ) -> Result<(), rusqlite::Error> {
        let data = serde_json::to_string(alert)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        c.prepare_cached(
            "INSERT OR IGNORE INTO deliveries (id, sink, rule, state, alert, created_ms, due_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            alert.id,
            sink,
            alert.rule,
            state.as_str(),
            data,
            ms(alert.created_ms),
            ms(due_ms)
        ])?;
        Ok(())
    }

    /// Deletes the held deliveries of `rule` to `sink` (their summary is being written).
    pub fn delete_held(c: &Connection, rule: &str, sink: &str) -> Result<usize, rusqlite::Error> {
        c.prepare_cached("DELETE FROM deliveries WHERE rule = ?1 AND sink = ?2 AND state = 'held'")?
            .execute(params![rule, sink])
    }

    /// Every open group: `(key, group)`.
    pub fn groups(&self) -> Result<Vec<(String, Group)>, rusqlite::Error> {
        let mut stmt = self.conn.prepare("SELECT rule, key, data FROM groups")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(rule, key, data)| match serde_json::from_str::<Group>(&data) {
                Ok(g) => Some((key, g)),
                Err(e) => {
                    tracing::warn!(rule, key, error = %e, "alerts: an unreadable group in the outbox was skipped");
                    None
                }
            })
            .collect())
    }

    /// Held deliveries per `(rule, sink)`.
    pub fn held_counts(&self) -> Result<Vec<(String, String, u64)>, rusqlite::Error> {
        let mut stmt = self.conn.prepare(
            "SELECT rule, sink, COUNT(*) FROM deliveries WHERE state = 'held' GROUP BY rule, sink",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
            })?
            .collect();
        rows
    }

    /// The alerts held for `rule` towards `sink`, oldest first.
    pub fn held(&self, rule: &str, sink: &str) -> Result<Vec<Alert>, rusqlite::Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT alert FROM deliveries WHERE rule = ?1 AND sink = ?2 AND state = 'held'
             ORDER BY created_ms, id",
        )?;
        let rows = stmt
            .query_map(params![rule, sink], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    /// The oldest pending delivery to `sink` that is due at `now`: first made, first sent, so a
    /// delivery that failed is the one that probes its sink again when its back-off ends.
    pub fn next_due(&self, sink: &str, now: u64) -> Result<Option<Row>, rusqlite::Error> {
        loop {
            let row = self
                .conn
                .prepare_cached(
                    "SELECT id, alert, attempts, due_ms FROM deliveries
                     WHERE sink = ?1 AND state = 'pending' AND due_ms <= ?2
                     ORDER BY created_ms, id LIMIT 1",
                )?
                .query_row(params![sink, ms(now)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .optional()?;
            let Some((id, data, attempts, due)) = row else {
                return Ok(None);
            };
            match serde_json::from_str::<Alert>(&data) {
                Ok(alert) => {
                    return Ok(Some(Row {
                        alert,
                        sink: sink.to_owned(),
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        due_ms: u64::try_from(due).unwrap_or(0),
                    }))
                }
                Err(e) => {
                    // A row this version cannot read would block its sink forever.
                    tracing::warn!(id, sink, error = %e, "alerts: an unreadable delivery in the outbox was dropped");
                    palisade_engine::metrics::alert(
                        palisade_engine::metrics::AlertCount::Dropped,
                        "outbox_error",
                        1,
                    );
                    self.delivered(&id, sink)?;
                }
            }
        }
    }

    /// Deletes a delivery: its webhook accepted it.
    pub fn delivered(&self, id: &str, sink: &str) -> Result<(), rusqlite::Error> {
        self.conn
            .prepare_cached("DELETE FROM deliveries WHERE id = ?1 AND sink = ?2")?
            .execute(params![id, sink])?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub fn retry_at(
        &self,
        id: &str,
        sink: &str,
        attempts: u32,
        due_ms: u64,
        error: &str,
    ) -> Result<(), rusqlite::Error> {
        self.conn
            .prepare_cached(
                "UPDATE deliveries SET attempts = ?3, due_ms = ?4, last_error = ?5 WHERE id = ?1 AND sink = ?2",
            )?
            .execute(params![id, sink, attempts, ms(due_ms), error])?;
        Ok(())
    }

    /// Deliveries waiting (pending and held).
    pub fn depth(&self) -> Result<u64, rusqlite::Error> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Deletes deliveries to sinks not in `keep` (removed from the configuration); returns how
    /// many.
    pub fn drop_other_sinks(&mut self, keep: &[String]) -> Result<u64, rusqlite::Error> {
        self.drop_unlisted("deliveries", "sink", keep)
    }

    /// Deletes open groups of rules not in `keep`; returns how many.
    pub fn drop_other_rules(&mut self, keep: &[String]) -> Result<u64, rusqlite::Error> {
        self.drop_unlisted("groups", "rule", keep)
    }

    fn drop_unlisted(
        &mut self,
        table: &'static str,
        column: &'static str,
        keep: &[String],
    ) -> Result<u64, rusqlite::Error> {
        let names: Vec<String> = self
            .conn
            .prepare(&format!("SELECT DISTINCT {column} FROM {table}"))?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut dropped = 0;
        for name in names.iter().filter(|n| !keep.contains(n)) {
            let n = self.conn.execute(
                &format!("DELETE FROM {table} WHERE {column} = ?1"),
                params![name],
            )?;
            tracing::warn!(%table, %column, %name, rows = n, "alerts: rows of a sink or rule no longer configured were dropped");
            dropped += n as u64;
        }
        Ok(dropped)
    }
}
