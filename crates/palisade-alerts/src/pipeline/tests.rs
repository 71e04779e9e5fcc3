use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade_detect::Severity;
use serde_json::Value;

use super::*;
use crate::Exchange;

/// A fresh outbox path, removed with its WAL files on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        TempDb(std::env::temp_dir().join(format!(
            "palisade-alerts-test-{}-{}-{}.db",
            std::process::id(),
            crate::dispatch::now_ms(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

fn config(db: &TempDb, extra: &str, rules: &str) -> AlertsConfig {
    let src = format!(
        "alerts:\n  outbox_path: '{}'\n{extra}  sinks:\n    - {{ name: hook, url: 'http://127.0.0.1:9/h', headers: [{{ name: X-Token, value: t0k }}] }}\n    - {{ name: slack, url: 'http://127.0.0.1:9/s', kind: slack }}\n  rules:\n{rules}",
        db.0.display()
    );
    palisade_policy::parse_str(&src, "t.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
        .alerts
}

fn open(cfg: &AlertsConfig, now: u64) -> Pipeline {
    Pipeline::open(cfg, now)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_rng(Rng::with_seed(9))
}

fn blocked(route: &str, kind: &str, at: u64) -> Signal {
    Signal::Exchange(Box::new(Exchange {
        request_id: format!("req-{at}"),
        at_ms: at,
        route: route.into(),
        decision: "block".into(),
        findings: vec![("secrets".into(), kind.into(), Severity::Critical)],
        ..Exchange::default()
    }))
}

/// Every delivery due to `sink` at `now`, delivered.
fn drain(p: &mut Pipeline, sink: usize, now: u64) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(d) = p.next_due(sink, now) {
        out.push(serde_json::from_slice(&d.body).unwrap_or(Value::Null));
        p.delivered(&d);
    }
    out
}

const ONE_RULE: &str = "    - { name: leak, on: finding, sinks: [hook, slack], dedupe: { window_seconds: 60, wait_seconds: 5 } }\n";

#[test]
fn identical_triggers_are_one_delivery_per_sink_with_their_count() {
    let db = TempDb::new();
    let mut p = open(&config(&db, "", ONE_RULE), 0);
    let burst: Vec<Signal> = (0..10)
        .map(|i| blocked("openai", "aws_access_key", 100 + i))
        .collect();
    p.on_signals(&burst[..4], 200);
    p.on_signals(&burst[4..], 300);
    assert_eq!(p.open_groups(), 1);
    p.tick(4_000);
    assert!(p.next_due(0, 4_000).is_none(), "still waiting");
    p.tick(5_100);
    let json = drain(&mut p, 0, 5_100);
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["count"], 10);
    assert_eq!(json[0]["facts"]["request_id"], "req-109");
    let slack = drain(&mut p, 1, 5_100);
    assert_eq!(slack.len(), 1);
    assert!(slack[0]["blocks"].is_array() && slack[0]["text"].is_string());
    assert_eq!(p.rows(), 0);
    // Later ones in the window are one follow-up at its end; then the group goes.
    p.on_signals(&[blocked("openai", "aws_access_key", 20_000)], 20_000);
    p.tick(59_000);
    assert!(p.next_due(0, 59_000).is_none());
    p.tick(60_100);
    let follow = drain(&mut p, 0, 60_100);
    assert_eq!(
        (follow[0]["count"].clone(), follow[0]["repeat"].clone()),
        (1.into(), true.into())
    );
    assert_eq!(p.open_groups(), 0);
}

#[test]
fn deliveries_carry_the_idempotency_key_and_sink_headers() {
    let db = TempDb::new();
    let mut p = open(&config(&db, "", ONE_RULE), 0);
    p.on_signals(&[blocked("openai", "aws_access_key", 1)], 1);
    p.tick(10_000);
    let d = p
        .next_due(0, 10_000)
        .unwrap_or_else(|| panic!("nothing due"));
    let body: Value = serde_json::from_slice(&d.body).unwrap_or(Value::Null);
    assert!(d
        .headers
        .contains(&("idempotency-key".into(), d.id.clone())));
    assert!(d.headers.contains(&("X-Token".into(), "t0k".into())));
    assert_eq!(body["id"], d.id.as_str());
    assert_eq!(d.url, "http://127.0.0.1:9/h");
}

#[test]
fn throttled_alerts_are_summarised_not_dropped() {
    let db = TempDb::new();
    let rule = "    - { name: leak, on: finding, sinks: [hook], dedupe: { wait_seconds: 0 }, throttle: { max_alerts: 2, per_seconds: 10 } }\n";
    let mut p = open(&config(&db, "", rule), 0);
    let kinds = [
        "aws_access_key",
        "github_token",
        "slack_token",
        "stripe_key",
        "openai_key",
    ];
    let signals: Vec<Signal> = kinds.iter().map(|k| blocked("openai", k, 1_000)).collect();
    p.on_signals(&signals, 1_000);
    p.tick(1_000);
    let first = drain(&mut p, 0, 1_000);
    assert_eq!(first.len(), 2, "the budget");
    assert_eq!(p.rows(), 3, "three held");
    p.tick(10_999);
    assert!(drain(&mut p, 0, 10_999).is_empty());
    p.tick(11_000);
    let summary = drain(&mut p, 0, 11_000);
    assert_eq!(summary.len(), 1);
    let s = &summary[0];
    assert_eq!(s["trigger"], "throttle_summary");
    assert_eq!(s["summary"]["alerts"], 3);
    assert_eq!(s["summary"]["items"].as_array().map(Vec::len), Some(3));
    let listed: Vec<&str> = s["summary"]["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["title"].as_str()).collect())
        .unwrap_or_default();
    let sent: Vec<&str> = first.iter().filter_map(|a| a["title"].as_str()).collect();
    for k in kinds {
        let n = listed.iter().chain(&sent).filter(|t| t.contains(k)).count();
        assert_eq!(n, 1, "{k} is sent or summarised, once");
    }
    assert_eq!(p.rows(), 0);
}

#[test]
fn a_failed_delivery_waits_its_back_off_and_keeps_its_attempts() {
    let db = TempDb::new();
    let rule = "    - { name: leak, on: finding, sinks: [hook], dedupe: { wait_seconds: 0 }, retry: { initial_ms: 1000, max_ms: 8000, jitter: 0 } }\n";
    let mut p = open(&config(&db, "", rule), 0);
    p.on_signals(&[blocked("openai", "aws_access_key", 0)], 0);
    p.tick(0);
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..5 {
        let d = p
            .next_due(0, now)
            .unwrap_or_else(|| panic!("nothing due at {now}"));
        let due = p.failed(&d, "HTTP 500", None, now);
        assert!(p.next_due(0, due - 1).is_none(), "not before its time");
        waits.push(due - now);
        now = due;
    }
    assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 8_000]);
    let d = p.next_due(0, now).unwrap_or_else(|| panic!("lost"));
    assert_eq!(d.attempts, 5);
    // A longer Retry-After wins, within the rule's cap.
    let due = p.failed(&d, "HTTP 429", Some(7_500), now);
    assert_eq!(due - now, 8_000);
    let d = p.next_due(0, due).unwrap_or_else(|| panic!("lost"));
    p.delivered(&d);
    assert_eq!(p.rows(), 0);
}

#[test]
fn a_restart_keeps_open_groups_deliveries_and_held_alerts() {
    let db = TempDb::new();
    let rules = "    - { name: leak, on: finding, sinks: [hook], dedupe: { window_seconds: 60, wait_seconds: 5 }, throttle: { max_alerts: 1, per_seconds: 30 } }\n";
    let cfg = config(&db, "", rules);
    {
        let mut p = open(&cfg, 0);
        // One alert goes out of the budget and fails; one is held; one group is still open.
        p.on_signals(
            &[
                blocked("a", "aws_access_key", 0),
                blocked("b", "aws_access_key", 0),
            ],
            0,
        );
        p.tick(5_000);
        let d = p
            .next_due(0, 5_000)
            .unwrap_or_else(|| panic!("nothing due"));
        p.failed(&d, "connection refused", None, 5_000);
        p.on_signals(
            &[
                blocked("c", "aws_access_key", 6_000),
                blocked("c", "aws_access_key", 6_500),
            ],
            6_500,
        );
        assert_eq!((p.rows(), p.open_groups()), (2, 3));
        // The tick writes the counts the signals made.
        p.tick(6_500);
    }
    let mut p = open(&cfg, 100_000);
    assert_eq!((p.rows(), p.open_groups()), (2, 3), "all of it came back");
    p.tick(100_000);
    let mut got = drain(&mut p, 0, 100_000);
    // The held alert's summary is due one period after the restart.
    p.tick(130_000);
    got.extend(drain(&mut p, 0, 130_000));
    let routes: Vec<String> = got
        .iter()
        .map(|a| match a["summary"]["items"].as_array() {
            Some(items) => format!("summary:{}", items.len()),
            None => format!(
                "{}x{}",
                a["facts"]["route"].as_str().unwrap_or("?"),
                a["count"]
            ),
        })
        .collect();
    // The failed one is retried, c goes out with both of its triggers, and the held one
    // (a or b, whichever was second) is summarised.
    assert_eq!(routes.len(), 3, "{routes:?}");
    assert!(
        routes.contains(&"ax1".to_owned()) || routes.contains(&"bx1".to_owned()),
        "{routes:?}"
    );
    assert!(routes.contains(&"cx2".to_owned()), "{routes:?}");
    assert!(routes.contains(&"summary:1".to_owned()), "{routes:?}");
    assert_eq!(p.rows(), 0);
}

#[test]
fn a_full_outbox_drops_new_alerts_and_keeps_the_old() {
    let db = TempDb::new();
    let cfg = config(
        &db,
        "  max_pending: 2\n",
        "    - { name: leak, on: finding, sinks: [hook], dedupe: { wait_seconds: 0 } }\n",
    );
    let mut p = open(&cfg, 0);
    let s: Vec<Signal> = ["r1", "r2", "r3"]
        .iter()
        .map(|r| blocked(r, "aws_access_key", 0))
        .collect();
    p.on_signals(&s, 0);
    assert_eq!(p.open_groups(), 2, "the third is dropped");
    // Counting into an open group needs no room.
    p.on_signals(&[blocked("r1", "aws_access_key", 1)], 1);
    p.tick(1);
    let got = drain(&mut p, 0, 1);
    assert_eq!(got.len(), 2);
    assert!(got
        .iter()
        .any(|a| a["facts"]["route"] == "r1" && a["count"] == 2));
}

#[test]
fn deliveries_to_a_removed_sink_are_dropped_on_open() {
    let db = TempDb::new();
    let mut p = open(&config(&db, "", ONE_RULE), 0);
    p.on_signals(&[blocked("openai", "aws_access_key", 0)], 0);
    p.tick(10_000);
    assert_eq!(p.rows(), 2);
    drop(p);
    let only_hook = "    - { name: leak, on: finding, sinks: [hook] }\n";
    let mut cfg = config(&db, "", only_hook);
    cfg.sinks.retain(|s| s.name == "hook");
    let p = open(&cfg, 20_000);
    assert_eq!(p.rows(), 1);
}

#[test]
fn unset_environment_variables_are_refused_at_start() {
    let db = TempDb::new();
    let mut cfg = config(&db, "", ONE_RULE);
    cfg.sinks[0].url = None;
    cfg.sinks[0].url_env = Some("PALISADE_TEST_SURELY_UNSET_URL".into());
    match Pipeline::open(&cfg, 0) {
        Err(AlertsError::Env { sink, var }) => {
            assert_eq!(
                (sink.as_str(), var.as_str()),
                ("hook", "PALISADE_TEST_SURELY_UNSET_URL")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn urls_and_header_values_from_the_environment_are_checked_at_start() {
    let db = TempDb::new();
    let mut cfg = config(&db, "", ONE_RULE);
    // `PATH` is set everywhere and is not a URL.
    cfg.sinks[0].url = None;
    cfg.sinks[0].url_env = Some("PATH".into());
    match Pipeline::open(&cfg, 0) {
        Err(AlertsError::Sink { sink, message }) => {
            assert_eq!(sink, "hook");
            assert!(message.contains("not an http"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let mut cfg = config(&db, "", ONE_RULE);
    cfg.sinks[0].headers[0].value = Some("line\nbreak".into());
    assert!(matches!(
        Pipeline::open(&cfg, 0),
        Err(AlertsError::Sink { .. })
    ));
}
