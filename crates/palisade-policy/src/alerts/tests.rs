use super::*;
use crate::load::parse_str;

const SINKS: &str = "alerts:\n  sinks:\n    - { name: hook, url: 'http://127.0.0.1:9/x' }\n    - { name: slack, url_env: SLACK_URL, kind: slack, headers: [{ name: Authorization, value_env: TOKEN, value_prefix: 'Bearer ' }] }\n";

fn refused(rules: &str) -> crate::ConfigError {
    parse_str(&format!("{SINKS}  rules:\n{rules}"), "a.yaml")
        .err()
        .unwrap_or_else(|| panic!("accepted: {rules}"))
}

#[test]
fn every_trigger_parses_with_its_settings() {
    let src = format!(
        "{SINKS}  rules:
    - {{ name: f, on: finding, sinks: [hook], min_severity: critical, detectors: [secrets, tool_pinning], kinds: [aws_access_key] }}
    - {{ name: b, on: block, sinks: [hook, slack], decisions: [block, deny], routes: [openai] }}
    - {{ name: t, on: tool_change, sinks: [slack], changes: [quarantined, held] }}
    - {{ name: a, on: approval_request, sinks: [hook], dedupe: {{ by: [action, agent], window_seconds: 60, wait_seconds: 0 }} }}
    - {{ name: r, on: rate_limit, sinks: [hook], threshold: {{ refusals: 5, window_seconds: 10, per: route }}, throttle: {{ max_alerts: 2, per_seconds: 5 }}, retry: {{ initial_ms: 100, max_ms: 1000, jitter: 0 }} }}
"
    );
    let c = parse_str(&src, "a.yaml").unwrap_or_else(|e| panic!("{e}"));
    let a = &c.alerts;
    assert_eq!(a.rules.len(), 5);
    assert_eq!(a.sinks[1].kind, SinkKind::Slack);
    assert_eq!(a.rules[0].min_severity, Some(Severity::Critical));
    assert_eq!(
        a.rules[0].dedupe_fields(),
        [AlertField::Route, AlertField::Detector, AlertField::Kind]
    );
    assert_eq!(
        a.rules[3].dedupe_fields(),
        [AlertField::Action, AlertField::Agent]
    );
    assert_eq!(
        a.rules[0].dedupe_wait_seconds(),
        DEFAULT_DEDUPE_WAIT_SECONDS
    );
    let approvals = parse_str(
        &format!("{SINKS}  rules:\n    - {{ name: a, on: approval_request, sinks: [hook] }}\n"),
        "a.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        approvals.alerts.rules[0].dedupe_wait_seconds(),
        0,
        "someone is waiting"
    );
    assert_eq!(
        a.rules[4].threshold.as_ref().map(|t| t.per),
        Some(RatePer::Route)
    );
}

#[test]
fn a_setting_of_another_trigger_is_refused() {
    let e = refused("    - { name: x, on: block, sinks: [hook], min_severity: high }\n");
    assert_eq!(e.field, "alerts.rules[0].min_severity", "{e}");
    assert!(e.message.contains("`finding` rules, not `block`"), "{e}");
    let e = refused("    - { name: x, on: finding, sinks: [hook], changes: [held] }\n");
    assert_eq!(e.field, "alerts.rules[0].changes", "{e}");
}

#[test]
fn unknown_sinks_detectors_and_kinds_are_refused() {
    let e = refused("    - { name: x, on: block, sinks: [pager] }\n");
    assert_eq!(e.field, "alerts.rules[0].sinks", "{e}");
    assert!(e.message.contains("no sink called `pager`"), "{e}");
    assert_eq!(e.line, Some(6), "{e}");
    let e = refused("    - { name: x, on: finding, sinks: [hook], detectors: [magic] }\n");
    assert!(e.message.contains("not a detector"), "{e}");
    let e = refused(
        "    - { name: x, on: finding, sinks: [hook], detectors: [pii], kinds: [ssn_typo] }\n",
    );
    assert_eq!(e.field, "alerts.rules[0].kinds", "{e}");
    assert_eq!(e.line, Some(6), "{e}");
}

#[test]
fn a_rate_limit_rule_needs_a_threshold_and_windows_are_checked() {
    let e = refused("    - { name: x, on: rate_limit, sinks: [hook] }\n");
    assert_eq!(e.field, "alerts.rules[0].threshold", "{e}");
    let e = refused(
        "    - { name: x, on: block, sinks: [hook], dedupe: { window_seconds: 5, wait_seconds: 6 } }\n",
    );
    assert_eq!(e.field, "alerts.rules[0].dedupe.wait_seconds", "{e}");
    let e = refused("    - { name: x, on: block, sinks: [hook], throttle: { max_alerts: 0 } }\n");
    assert_eq!(e.field, "alerts.rules[0].throttle", "{e}");
    let e = refused("    - { name: x, on: block, sinks: [hook], retry: { jitter: 2 } }\n");
    assert_eq!(e.field, "alerts.rules[0].retry.jitter", "{e}");
}

#[test]
fn sinks_need_one_url_and_header_values() {
    let e = parse_str(
        "alerts:\n  sinks:\n    - { name: s, url: 'ftp://x' }\n",
        "a.yaml",
    )
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.field, "alerts.sinks[0].url", "{e}");
    let e = parse_str(
        "alerts:\n  sinks:\n    - { name: s, url: 'http://x', url_env: U }\n",
        "a.yaml",
    )
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert!(
        e.message.contains("exactly one of `url` and `url_env`"),
        "{e}"
    );
    let e = parse_str(
        "alerts:\n  sinks:\n    - { name: s, url: 'http://x', headers: [{ name: 'bad header', value: v }] }\n",
        "a.yaml",
    )
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.field, "alerts.sinks[0].headers[0].name", "{e}");
    let e = parse_str(
        "alerts:\n  sinks:\n    - { name: s, url: 'http://x', colour: red }\n",
        "a.yaml",
    )
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert!(e.message.contains("unknown field `colour`"), "{e}");
}
