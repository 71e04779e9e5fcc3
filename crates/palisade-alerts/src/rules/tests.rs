use palisade_policy::alerts::AlertsConfig;

use super::*;

fn config(rules: &str) -> AlertsConfig {
    let src = format!(
        "alerts:\n  sinks:\n    - {{ name: hook, url: 'http://127.0.0.1:9/h' }}\n  rules:\n{rules}"
    );
    palisade_policy::parse_str(&src, "t.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
        .alerts
}

fn rules(yaml: &str) -> Rules {
    Rules::new(&config(yaml), &["hook".to_owned()])
}

fn exchange(route: &str, decision: &str, findings: &[(&str, &str, Severity)]) -> Signal {
    Signal::Exchange(Box::new(Exchange {
        request_id: "req-1".into(),
        at_ms: 1_000,
        route: route.into(),
        decision: decision.into(),
        agent: Some("agent-7".into()),
        reasons: vec!["secrets/aws_access_key (critical) → block".into()],
        findings: findings
            .iter()
            .map(|(d, k, s)| ((*d).to_owned(), (*k).to_owned(), *s))
            .collect(),
        ..Exchange::default()
    }))
}

fn audit(action: &str, target: &str, detail: serde_json::Value) -> Signal {
    Signal::Audit(Box::new(AuditEntry {
        at_ms: 2_000,
        actor: "palisade".into(),
        action: action.into(),
        target: target.into(),
        reason: Some("definition changed since it was pinned (description)".into()),
        detail,
    }))
}

fn fire(r: &mut Rules, s: &Signal, now: u64) -> Vec<Trigger> {
    let mut out = Vec::new();
    r.triggers(s, now, &mut out);
    out
}

#[test]
fn a_finding_rule_triggers_once_per_detector_and_kind_at_its_worst() {
    let mut r = rules("    - { name: sev, on: finding, sinks: [hook] }\n");
    let s = exchange(
        "openai",
        "block",
        &[
            ("pii", "email", Severity::Low),
            ("secrets", "aws_access_key", Severity::High),
            ("secrets", "aws_access_key", Severity::Critical),
            ("prompt_injection", "instruction_override", Severity::High),
        ],
    );
    let t = fire(&mut r, &s, 1_000);
    assert_eq!(t.len(), 2, "{t:?}");
    let aws = t
        .iter()
        .find(|t| t.facts["kind"] == "aws_access_key")
        .unwrap_or_else(|| panic!("{t:?}"));
    assert_eq!(aws.severity, Severity::Critical);
    assert_eq!(aws.key, "sev|openai|secrets|aws_access_key");
    assert_eq!(aws.facts["agent"], "agent-7");
    assert_eq!(aws.title, "secrets/aws_access_key (critical) on openai");
    assert!(
        t.iter().all(|t| t.facts["kind"] != "email"),
        "low is below the default high"
    );
}

#[test]
fn finding_filters_on_severity_detector_kind_and_route() {
    let mut r = rules(
        "    - { name: f, on: finding, sinks: [hook], min_severity: low, detectors: [pii], kinds: [email], routes: [mcp] }\n",
    );
    let hit = exchange("mcp", "redact", &[("pii", "email", Severity::Low)]);
    assert_eq!(fire(&mut r, &hit, 1).len(), 1);
    for miss in [
        exchange("openai", "redact", &[("pii", "email", Severity::Low)]),
        exchange("mcp", "redact", &[("pii", "phone", Severity::Low)]),
        exchange("mcp", "redact", &[("secrets", "email", Severity::Low)]),
    ] {
        assert!(fire(&mut r, &miss, 1).is_empty(), "{miss:?}");
    }
}

#[test]
fn a_block_rule_covers_the_decisions_it_names() {
    let mut r = rules("    - { name: b, on: block, sinks: [hook] }\n");
    let blocked = exchange(
        "openai",
        "block",
        &[("secrets", "aws_access_key", Severity::Critical)],
    );
    let t = fire(&mut r, &blocked, 1);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].severity, Severity::Critical);
    assert_eq!(t[0].key, "b|openai|block");
    assert!(
        t[0].title
            .starts_with("Blocked on openai: secrets/aws_access_key"),
        "{}",
        t[0].title
    );
    assert_eq!(t[0].facts["findings"], "secrets/aws_access_key");
    assert!(
        fire(&mut r, &exchange("gov", "deny", &[]), 1).is_empty(),
        "deny is not listed"
    );
    let mut r = rules("    - { name: b, on: block, sinks: [hook], decisions: [deny] }\n");
    let t = fire(&mut r, &exchange("gov", "deny", &[]), 1);
    assert_eq!((t.len(), t[0].severity), (1, Severity::Medium));
}

#[test]
fn tool_changes_read_route_and_tool_from_the_pin_target() {
    let mut r = rules("    - { name: t, on: tool_change, sinks: [hook] }\n");
    let q = audit(
        "tool.quarantined",
        "rug|http://127.0.0.1:1/mcp weather",
        serde_json::Value::Null,
    );
    let t = fire(&mut r, &q, 2_000);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].facts["route"], "rug");
    assert_eq!(t[0].facts["tool"], "weather");
    assert_eq!(t[0].facts["upstream"], "http://127.0.0.1:1/mcp");
    assert_eq!(t[0].severity, Severity::High);
    assert_eq!(t[0].title, "MCP tool `weather` quarantined on rug");
    assert_eq!(t[0].key, "t|rug|http://127.0.0.1:1/mcp weather|quarantined");
    let pinned = audit("tool.pinned", "rug|u weather", serde_json::Value::Null);
    assert!(
        fire(&mut r, &pinned, 1).is_empty(),
        "first pins are not alerted by default"
    );
    let approval = audit("approval.requested", "apr_1", serde_json::Value::Null);
    assert!(fire(&mut r, &approval, 1).is_empty());
}

#[test]
fn approval_requests_carry_agent_action_and_route() {
    let mut r = rules("    - { name: a, on: approval_request, sinks: [hook], routes: [gov] }\n");
    let detail =
        serde_json::json!({"agent": "agent-7", "action": "delete_customers", "route": "gov"});
    let t = fire(
        &mut r,
        &audit("approval.requested", "apr_9", detail.clone()),
        1,
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].key, "a|apr_9");
    assert_eq!(
        t[0].title,
        "Approval requested: `delete_customers` by agent-7 on gov"
    );
    let elsewhere = serde_json::json!({"agent": "a", "action": "x", "route": "other"});
    assert!(fire(&mut r, &audit("approval.requested", "apr_8", elsewhere), 1).is_empty());
}

fn refusal(route: &str, key: &str, at: u64) -> Signal {
    Signal::RateLimited(Box::new(RateLimited {
        request_id: format!("req-{at}"),
        at_ms: at,
        route: route.into(),
        limit_key: key.into(),
        ..RateLimited::default()
    }))
}

#[test]
fn rate_limit_rules_count_refusals_in_a_sliding_window_per_key() {
    let mut r = rules(
        "    - { name: r, on: rate_limit, sinks: [hook], threshold: { refusals: 3, window_seconds: 10 } }\n",
    );
    // Two, then a pause longer than the window: the count starts again.
    assert!(fire(&mut r, &refusal("mcp", "ip: 1", 0), 0).is_empty());
    assert!(fire(&mut r, &refusal("mcp", "ip: 1", 1_000), 1_000).is_empty());
    assert!(fire(&mut r, &refusal("mcp", "ip: 1", 11_500), 11_500).is_empty());
    // Another key does not add to this one's count.
    assert!(fire(&mut r, &refusal("mcp", "ip: 2", 11_600), 11_600).is_empty());
    assert!(fire(&mut r, &refusal("mcp", "ip: 1", 12_000), 12_000).is_empty());
    let t = fire(&mut r, &refusal("mcp", "ip: 1", 13_000), 13_000);
    assert_eq!(t.len(), 1, "third within 10 s");
    assert_eq!(t[0].facts["limit_key"], "ip: 1");
    assert_eq!(t[0].facts["first_refusal_ms"], "11500");
    assert_eq!(t[0].key, "r|mcp|ip: 1");
    assert_eq!(
        t[0].title,
        "3 rate-limit refusals within 10 s on mcp (ip: 1)"
    );
    // The count restarts after a trigger.
    assert!(fire(&mut r, &refusal("mcp", "ip: 1", 13_100), 13_100).is_empty());
}

#[test]
fn rate_limit_rules_per_route_add_every_key_up() {
    let mut r = rules(
        "    - { name: r, on: rate_limit, sinks: [hook], threshold: { refusals: 2, window_seconds: 5, per: route } }\n",
    );
    assert!(fire(&mut r, &refusal("mcp", "ip: 1", 0), 0).is_empty());
    let t = fire(&mut r, &refusal("mcp", "ip: 2", 10), 10);
    assert_eq!(t.len(), 1);
    assert!(!t[0].facts.contains_key("limit_key"));
    assert_eq!(t[0].key, "r|mcp|-", "no limit key in the default key");
}

#[test]
fn rate_windows_are_bounded_and_swept() {
    let mut cfg = config(
        "    - { name: r, on: rate_limit, sinks: [hook], threshold: { refusals: 5, window_seconds: 1 } }\n",
    );
    cfg.max_pending = 2;
    let mut r = Rules::new(&cfg, &["hook".to_owned()]);
    fire(&mut r, &refusal("mcp", "a", 0), 0);
    fire(&mut r, &refusal("mcp", "b", 0), 0);
    fire(&mut r, &refusal("mcp", "c", 0), 0);
    assert_eq!(
        r.windows.len(),
        2,
        "a third key is refused while both are live"
    );
    fire(&mut r, &refusal("mcp", "c", 2_000), 2_000);
    assert_eq!(r.windows.len(), 1, "expired windows were swept for it");
}
