use super::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn event(i: i64, route: &str, decision: &str) -> Event {
    Event {
        request_id: format!("req-{i}"),
        time_ms: 1_700_000_000_000 + i,
        source: "proxy".into(),
        route: Some(route.into()),
        decision: decision.into(),
        risk: 10,
        reasons: vec![format!("reason {i}")],
        findings: if decision == "redact" {
            vec![FindingRecord {
                detector: "pii".into(),
                kind: "us_ssn".into(),
                severity: "high".into(),
                action: "redact".into(),
                location: Some("/messages/0/content".into()),
                snippet: Some("my SSN is ***-**-****".into()),
            }]
        } else {
            Vec::new()
        },
        ..Event::default()
    }
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir.join("palisade.db")
}

/// A database under test: the same suite runs on a SQLite file and on a PostgreSQL server.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, base: String },
}

/// Where the test PostgreSQL is; without it the PostgreSQL half is skipped, except in CI.
fn postgres_base() -> Option<String> {
    match std::env::var("PALISADE_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but PALISADE_TEST_POSTGRES_URL is not set: start one with scripts/pg.sh"
            )
        }
        _ => {
            eprintln!("PALISADE_TEST_POSTGRES_URL not set: PostgreSQL store tests skipped");
            None
        }
    }
}

impl Db {
    fn sqlite(name: &str) -> Db {
        Db::Sqlite(temp_db(name))
    }

    /// A fresh schema of its own on the test server, so tests run in parallel.
    fn postgres(name: &str) -> Option<Db> {
        let base = postgres_base()?;
        let schema = format!("t_{name}_{}", std::process::id());
        let mut c = postgres::Client::connect(&base, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect {base}: {e}"));
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        Some(Db::Postgres { url, base })
    }

    fn open(&self) -> Store {
        match self {
            Db::Sqlite(path) => Store::open(path),
            Db::Postgres { url, .. } => Store::postgres(&PostgresOptions {
                url: url.clone(),
                timeout: Duration::from_secs(5),
            }),
        }
        .unwrap_or_else(|e| panic!("open: {e}"))
    }

    /// Holds the events table's write lock (from another connection) until dropped.
    fn block_writes(&self) -> Blocker {
        match self {
            Db::Sqlite(path) => {
                let c = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("{e}"));
                c.execute_batch("BEGIN IMMEDIATE")
                    .unwrap_or_else(|e| panic!("{e}"));
                Blocker::Sqlite(c)
            }
            Db::Postgres { url, .. } => {
                let mut c = postgres::Client::connect(url, postgres::NoTls)
                    .unwrap_or_else(|e| panic!("{e}"));
                c.batch_execute("BEGIN; LOCK TABLE events IN EXCLUSIVE MODE")
                    .unwrap_or_else(|e| panic!("{e}"));
                Blocker::Postgres(c)
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres { .. } => "postgres",
        }
    }
}

enum Blocker {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Drop for Blocker {
    fn drop(&mut self) {
        let _ = match self {
            Blocker::Sqlite(c) => c.execute_batch("COMMIT").map_err(|e| e.to_string()),
            Blocker::Postgres(c) => c.batch_execute("COMMIT").map_err(|e| e.to_string()),
        };
    }
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Each function below runs once per backend.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $( #[test] fn $name() { super::$name(super::Db::sqlite(stringify!($name))) } )*
        }
        mod postgres_backend {
            $( #[test] fn $name() {
                if let Some(db) = super::Db::postgres(stringify!($name)) { super::$name(db) }
            } )*
        }
    };
}

suite!(
    events_round_trip_with_filters_and_cursor_pagination,
    reopening_keeps_the_records_and_migrates_once,
    two_processes_migrating_together_both_succeed,
    pruning_removes_old_events_and_their_findings,
    the_writer_bounds_its_queue_counts_drops_and_never_blocks,
    the_writer_keeps_its_batch_while_the_database_is_locked_and_resumes,
    writes_under_load_are_batched_and_complete,
    inventory_groups_endpoints_tools_and_models,
    governance_records_survive_a_restart,
    a_call_grant_is_taken_once,
);

fn events_round_trip_with_filters_and_cursor_pagination(db: Db) {
    let store = db.open();
    let events: Vec<Event> = (0..25)
        .map(|i| {
            event(
                i,
                if i % 2 == 0 { "a" } else { "b" },
                if i % 5 == 0 { "redact" } else { "allow" },
            )
        })
        .collect();
    store.write(&events).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.count().unwrap_or(0), 25);
    assert_eq!(store.count_findings().unwrap_or(0), 5);

    // Newest first, ten at a time, every event exactly once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .events(&Query {
                limit: Some(10),
                cursor: cursor.clone(),
                ..Query::default()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        seen.extend(page.items.iter().map(|e| e.request_id.clone()));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("req-{i}")).collect();
    assert_eq!(seen, expected);

    let route_a = store
        .events(&Query {
            route: Some("a".into()),
            limit: Some(500),
            ..Query::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(route_a.items.len(), 13);
    let with_pii = store
        .events(&Query {
            detector: Some("pii".into()),
            ..Query::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(with_pii.items.len(), 5);
    assert_eq!(with_pii.items[0].findings[0].kind, "us_ssn");
    assert_eq!(
        with_pii.items[0].findings[0].snippet.as_deref(),
        Some("my SSN is ***-**-****")
    );
    assert_eq!(with_pii.items[0].reasons, vec!["reason 20".to_owned()]);
    assert!(store
        .events(&Query {
            cursor: Some("nonsense".into()),
            ..Query::default()
        })
        .is_err());
    let one = store.event("req-7").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.map(|e| e.time_ms), Some(1_700_000_000_007));
    assert!(store
        .event("nope")
        .unwrap_or_else(|e| panic!("{e}"))
        .is_none());
    store.ping().unwrap_or_else(|e| panic!("{e}"));
}

fn reopening_keeps_the_records_and_migrates_once(db: Db) {
    {
        let store = db.open();
        store
            .write(&[event(1, "a", "allow")])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let store = db.open();
    assert_eq!(store.count().unwrap_or(0), 1);
    assert_eq!(store.migrate().unwrap_or(0), known_migrations(&db));
    let versions = store.schema_versions().unwrap_or_else(|e| panic!("{e}"));
    let expected: Vec<i64> = (1..=known_migrations(&db) as i64).collect();
    assert_eq!(versions, expected);
}

fn known_migrations(db: &Db) -> usize {
    match db {
        Db::Sqlite(_) => sqlite::MIGRATIONS.len(),
        Db::Postgres { .. } => pg::MIGRATIONS.len(),
    }
}

fn two_processes_migrating_together_both_succeed(db: Db) {
    // Two stores opening a fresh database at the same moment (as two replicas starting together
    // do): both succeed and every step is applied once.
    let db = Arc::new(db);
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let store = db.open();
                store.schema_versions().unwrap_or_else(|e| panic!("{e}"))
            })
        })
        .collect();
    let expected: Vec<i64> = (1..=known_migrations(&db) as i64).collect();
    for h in handles {
        let versions = h.join().unwrap_or_else(|_| panic!("a migrator panicked"));
        assert_eq!(versions, expected);
    }
    if let Db::Postgres { base, .. } = &*db {
        // The lock is released: another session takes it at once.
        let mut c =
            postgres::Client::connect(base, postgres::NoTls).unwrap_or_else(|e| panic!("{e}"));
        // Other tests migrate their own schemas in parallel and take the same lock briefly:
        // it must come free within a few seconds, not stay held.
        wait_for("the migration lock to be free", 10, || {
            c.query_one("SELECT pg_try_advisory_lock($1)", &[&pg::MIGRATION_LOCK])
                .and_then(|r| r.try_get(0))
                .unwrap_or_else(|e| panic!("{e}"))
        });
    }
}

fn pruning_removes_old_events_and_their_findings(db: Db) {
    let store = db.open();
    store
        .write(&(0..10).map(|i| event(i, "a", "redact")).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{e}"));
    let removed = store.prune(1_700_000_000_005).unwrap_or(0);
    assert_eq!(removed, 5);
    assert_eq!(store.count().unwrap_or(-1), 5);
    assert_eq!(store.count_findings().unwrap_or(-1), 5);

    // The writer prunes by itself when it starts, after `retention_days`.
    let writer = Writer::start(Arc::new(store), 16, 1).unwrap_or_else(|e| panic!("{e}"));
    let mut fresh = event(100, "a", "allow");
    fresh.time_ms = now_ms();
    writer.record(fresh);
    wait_for("pruning by the writer", 10, || {
        writer.store().count().unwrap_or(-1) == 1
    });
    assert_eq!(writer.store().count_findings().unwrap_or(-1), 0);
}

fn the_writer_bounds_its_queue_counts_drops_and_never_blocks(db: Db) {
    let store = Arc::new(db.open());
    let writer = Writer::start(store.clone(), 8, 0).unwrap_or_else(|e| panic!("{e}"));
    let blocker = db.block_writes();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..200 {
        let t = Instant::now();
        writer.record(event(i, "a", "allow"));
        slowest = slowest.max(t.elapsed());
    }
    let took = started.elapsed();
    // With the database locked, the queue (8) and the batch in hand (≤ 8) hold what fits.
    assert!(writer.dropped() >= 200 - 16, "dropped {}", writer.dropped());
    assert!(writer.queue_depth() <= 16, "depth {}", writer.queue_depth());
    assert!(
        slowest < Duration::from_millis(20) && took < Duration::from_millis(100),
        "record() waited: slowest {slowest:?}, all {took:?}"
    );
    drop(blocker);
    wait_for("the writer to drain", 30, || {
        writer.written() + writer.dropped() == 200
    });
    assert_eq!(writer.failed(), 0);
    assert_eq!(writer.queue_depth(), 0);
    assert_eq!(store.count().unwrap_or(0) as u64, writer.written());
}

fn the_writer_keeps_its_batch_while_the_database_is_locked_and_resumes(db: Db) {
    let store = Arc::new(db.open());
    let writer = Writer::start(store.clone(), 1024, 0).unwrap_or_else(|e| panic!("{e}"));
    let blocker = db.block_writes();
    for i in 0..300 {
        writer.record(event(i, "a", "allow"));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(writer.written(), 0);
    assert_eq!(writer.queue_depth(), 300);
    drop(blocker);
    wait_for("the writer to resume", 30, || writer.written() == 300);
    assert_eq!((writer.dropped(), writer.failed()), (0, 0));
    assert_eq!(store.count().unwrap_or(0), 300);
}

fn writes_under_load_are_batched_and_complete(db: Db) {
    const N: i64 = 20_000;
    let store = Arc::new(db.open());
    let writer =
        Arc::new(Writer::start(store.clone(), 32_768, 0).unwrap_or_else(|e| panic!("{e}")));
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                for i in 0..N / 4 {
                    let n = t * (N / 4) + i;
                    writer.record(event(
                        n,
                        "load",
                        if n % 10 == 0 { "redact" } else { "allow" },
                    ));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap_or_else(|_| panic!("a recorder panicked"));
    }
    wait_for("the load to be written", 120, || {
        writer.written() + writer.dropped() + writer.failed() == N as u64
    });
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{}: {N} events written in {secs:.2}s ({:.0} events/s) in {} transactions",
        db.name(),
        N as f64 / secs,
        writer.batches()
    );
    assert_eq!((writer.dropped(), writer.failed()), (0, 0));
    assert_eq!(store.count().unwrap_or(0), N);
    assert_eq!(store.count_findings().unwrap_or(0), N / 10);
    // Coalesced: far fewer transactions than events.
    assert!(
        writer.batches() <= (N as u64) / 20,
        "{} batches",
        writer.batches()
    );
}

fn governance_records_survive_a_restart(db: Db) {
    {
        let store = db.open();
        store
            .append_audit(&[AuditRecord {
                at_ms: 1,
                actor: "alice".into(),
                action: "tool.quarantined".into(),
                target: "github|https://x tool".into(),
                reason: Some("looked odd".into()),
                detail: serde_json::json!({"k": 1}),
            }])
            .unwrap_or_else(|e| panic!("{e}"));
        let pin = serde_json::json!({"tool": "delete_repo", "state": "quarantined"});
        store
            .put_pin("github", "delete_repo", "quarantined", &pin)
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .create_approval(&approval("ap-1", "pending", "call"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut decided = approval("ap-1", "approved", "call");
        decided.doc = serde_json::json!({"decided_by": "bob"});
        assert!(store
            .update_approval(&decided, "pending")
            .unwrap_or_else(|e| panic!("{e}")));
        // Deciding it again from `pending` loses: it is no longer pending.
        assert!(!store
            .update_approval(&decided, "pending")
            .unwrap_or_else(|e| panic!("{e}")));
        assert!(store
            .create_approval(&approval("ap-1", "pending", "call"))
            .is_err());
    }
    let store = db.open();
    let audit = store.audit(10).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "alice");
    assert_eq!(audit[0].detail, serde_json::json!({"k": 1}));
    let pin = store
        .pin("github", "delete_repo")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pin.map(|p| p["state"].clone()), Some("quarantined".into()));
    let pins = store.pins(None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pins.len(), 1);
    assert!(store.pins(Some("other")).unwrap_or_default().is_empty());
    let a = store.approval("ap-1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.as_ref().map(|a| a.status.as_str()), Some("approved"));
    assert_eq!(
        a.map(|a| a.doc),
        Some(serde_json::json!({"decided_by": "bob"}))
    );
    assert_eq!(
        store
            .approvals(Some("approved"), 10)
            .unwrap_or_default()
            .len(),
        1
    );
    assert!(store
        .approvals(Some("pending"), 10)
        .unwrap_or_default()
        .is_empty());
}

fn approval(id: &str, status: &str, scope: &str) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        status: status.into(),
        agent: "agent-1".into(),
        action: "tools/call:delete_repo".into(),
        fingerprint: format!("fp-{id}"),
        scope: scope.into(),
        used: false,
        created_ms: now_ms(),
        expires_ms: now_ms() + 60_000,
        doc: serde_json::json!({}),
    }
}

fn a_call_grant_is_taken_once(db: Db) {
    let store = db.open();
    store
        .create_approval(&approval("call", "approved", "call"))
        .unwrap_or_else(|e| panic!("{e}"));
    let take = |fp: &str| {
        store
            .take_grant("agent-1", "tools/call:other", fp, now_ms())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(take("fp-nope").is_none());
    assert_eq!(take("fp-call").map(|a| a.used), Some(true));
    assert!(take("fp-call").is_none(), "a call grant is used once");
    store
        .create_approval(&approval("act", "approved", "action"))
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..3 {
        let got = store
            .take_grant("agent-1", "tools/call:delete_repo", "x", now_ms())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.map(|a| a.id), Some("act".to_owned()));
    }
}

#[test]
fn paths_fold_their_ids() {
    assert_eq!(
        path_template("/users/42/orders/7"),
        "/users/{id}/orders/{id}"
    );
    assert_eq!(
        path_template("/v1/items/3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f?x=1"),
        "/v1/items/{id}"
    );
    assert_eq!(
        path_template("/v1/chat/completions"),
        "/v1/chat/completions"
    );
    assert_eq!(
        path_template("/files/9f86d081884c7d659a2feaa0c55ad015"),
        "/files/{id}"
    );
    assert_eq!(
        path_template("/sessions/sess_4Jd8slQ02kfD9aaZ03"),
        "/sessions/{id}"
    );
    assert_eq!(
        path_template("/api/user_preferences_settings"),
        "/api/user_preferences_settings"
    );
    assert_eq!(path_template("/tok/abcDEF123456ghiJKL789"), "/tok/{id}");
    assert_eq!(path_template(""), "/");
}

fn inventory_groups_endpoints_tools_and_models(db: Db) {
    let store = db.open();
    let mut events = Vec::new();
    for i in 0..6 {
        let mut e = event(i, "api", if i == 0 { "redact" } else { "allow" });
        e.method = Some("GET".into());
        e.path = Some(format!("/customers/{}", 100 + i));
        e.status = Some(200);
        events.push(e);
    }
    let mut call = event(10, "mcp", "deny");
    call.mcp_method = Some("tools/call".into());
    call.tool = Some("delete_repo".into());
    call.model = None;
    events.push(call);
    let mut chat = event(11, "openai", "allow");
    chat.model = Some("gpt-4o".into());
    events.push(chat);
    store.write(&events).unwrap_or_else(|e| panic!("{e}"));
    let inv = store.inventory().unwrap_or_else(|e| panic!("{e}"));
    let endpoints = inv["endpoints"].as_array().cloned().unwrap_or_default();
    let customers = endpoints
        .iter()
        .find(|e| e["path"] == "/customers/{id}")
        .unwrap_or_else(|| panic!("{inv}"));
    assert_eq!(customers["calls"], 6);
    assert_eq!(customers["method"], "GET");
    assert_eq!(customers["pii"], serde_json::json!(["us_ssn"]));
    assert_eq!(inv["tools"][0]["tool"], "delete_repo");
    assert_eq!(inv["tools"][0]["refused"], 1);
    assert_eq!(inv["models"][0]["model"], "gpt-4o");
}
