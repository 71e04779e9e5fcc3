use super::*;

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

#[test]
fn events_round_trip_with_filters_and_cursor_pagination() {
    let path = temp_db("roundtrip");
    let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
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
    assert_eq!(with_pii.items[0].reasons, vec!["reason 20".to_owned()]);
    assert!(store
        .events(&Query {
            cursor: Some("nonsense".into()),
            ..Query::default()
        })
        .is_err());
    let one = store.event("req-7").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.map(|e| e.time_ms), Some(1_700_000_000_007));
}

#[test]
fn reopening_keeps_the_records_and_migrates_once() {
    let path = temp_db("reopen");
    {
        let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
        store
            .write(&[event(1, "a", "allow")])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.count().unwrap_or(0), 1);
    let conn = store.conn().unwrap_or_else(|e| panic!("{e}"));
    let versions: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap_or(0);
    assert_eq!(versions as usize, MIGRATIONS.len());
}

#[test]
fn pruning_removes_old_events_and_their_findings() {
    let store = Store::open(":memory:").unwrap_or_else(|e| panic!("{e}"));
    store
        .write(&(0..10).map(|i| event(i, "a", "redact")).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("{e}"));
    let removed = store.prune(1_700_000_000_005).unwrap_or(0);
    assert_eq!(removed, 5);
    let conn = store.conn().unwrap_or_else(|e| panic!("{e}"));
    let findings: i64 = conn
        .query_row("SELECT COUNT(*) FROM findings", [], |r| r.get(0))
        .unwrap_or(-1);
    assert_eq!(findings, 5);
}

#[test]
fn the_writer_batches_and_counts_what_it_drops() {
    let path = temp_db("writer");
    let store = Arc::new(Store::open(&path).unwrap_or_else(|e| panic!("{e}")));
    // A queue of 8 filled faster than the thread drains it: some events are dropped, counted,
    // and everything not dropped is written.
    let writer = Writer::start(store.clone(), 8, 0).unwrap_or_else(|e| panic!("{e}"));
    let hold = store.conn().unwrap_or_else(|e| panic!("{e}"));
    for i in 0..100 {
        writer.record(event(i, "a", "allow"));
    }
    drop(hold);
    let deadline = Instant::now() + Duration::from_secs(10);
    while writer.written() + writer.dropped() < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(writer.dropped() > 0, "a full queue drops");
    assert_eq!(writer.written() + writer.dropped(), 100);
    assert_eq!(store.count().unwrap_or(0) as u64, writer.written());
    assert_eq!(writer.failed(), 0);
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

#[test]
fn inventory_groups_endpoints_tools_and_models() {
    let store = Store::open(":memory:").unwrap_or_else(|e| panic!("{e}"));
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
