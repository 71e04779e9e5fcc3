use super::*;
use crate::compile::{CompiledConfig, Direction};
use crate::config::Action;

#[test]
fn embedded_default_parses_and_compiles() {
    let c = parse_str("", "<empty>").unwrap_or_else(|e| panic!("{e}"));
    assert!(c.policies.contains_key("default"));
    let compiled = CompiledConfig::new(&c).unwrap_or_else(|e| panic!("{e}"));
    assert!(compiled.policy("default").is_some());
}

#[test]
fn unknown_key_names_file_line_and_field() {
    let src = "policies:\n  strict:\n    input:\n      - detector: pii\n        action: block\n        colour: red\n";
    let e = parse_str(src, "p.yaml")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.file, "p.yaml");
    assert_eq!(e.line, Some(6), "{e}");
    assert_eq!(e.field, "policies.strict.input[0].colour", "{e}");
    assert!(e.message.contains("unknown field `colour`"), "{e}");
    assert!(e.to_string().starts_with("p.yaml:6:"), "{e}");
}

#[test]
fn unknown_detector_and_action_are_refused() {
    let e = parse_str(
        "policies:\n  p:\n    input:\n      - { detector: magic, action: block }\n",
        "x.yaml",
    )
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.field.starts_with("policies.p.input[0]"), "{e}");
    let e = parse_str(
        "policies:\n  p:\n    input:\n      - { detector: pii, action: explode }\n",
        "x.yaml",
    )
    .err()
    .unwrap_or_else(|| panic!("accepted"));
    assert!(e.message.contains("explode"), "{e}");
}

#[test]
fn invalid_regex_is_refused_with_position() {
    let src = "policies:\n  p:\n    custom:\n      - name: ticket\n        regex: 'TCK-(\\d+'\n";
    let e = parse_str(src, "r.yaml")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.file, "r.yaml");
    assert!(e.line.is_some_and(|l| (4..=5).contains(&l)), "{e}");
    assert!(e.field.starts_with("policies.p.custom[0]"), "{e}");
    assert!(e.message.contains("invalid regex"), "{e}");
}

#[test]
fn oversized_pattern_is_refused() {
    let src = format!(
        "policies:\n  p:\n    custom:\n      - name: big\n        regex: '{}'\n",
        "a".repeat(5000)
    );
    let e = parse_str(&src, "big.yaml")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(e.message.contains("over the limit"), "{e}");
    assert!(e.line.is_some(), "{e}");
    let src = "policies:\n  p:\n    custom:\n      - name: rep\n        regex: '(\\w{100}){100}'\n";
    let e = parse_str(src, "rep.yaml")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(e.message.contains("invalid regex"), "{e}");
}

#[test]
fn unknown_kind_and_misplaced_redaction_are_refused() {
    let src = "policies:\n  p:\n    input:\n      - { detector: pii, kinds: [email, shoe_size], action: redact }\n";
    let e = parse_str(src, "k.yaml")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.field, "policies.p.input[0].kinds");
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("shoe_size"), "{e}");
    let src =
        "policies:\n  p:\n    input:\n      - { detector: pii, action: block, redaction: mask }\n";
    let e = parse_str(src, "k.yaml")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.field, "policies.p.input[0].redaction");
}

#[test]
fn custom_rules_drive_decisions() {
    let src = "policies:\n  p:\n    input:\n      - { detector: custom, kinds: [codename], action: block }\n    custom:\n      - { name: codename, keywords: [Project Falcon] }\n";
    let c = parse_str(src, "c.yaml").unwrap_or_else(|e| panic!("{e}"));
    let compiled = CompiledConfig::new(&c).unwrap_or_else(|e| panic!("{e}"));
    let p = compiled.policy("p").unwrap_or_else(|| panic!("no policy"));
    let findings = p
        .detectors(Direction::Request)
        .scan("tell me about project falcon");
    let d = p.decide(Direction::Request, findings);
    assert_eq!(d.action, Action::Block);
    assert!(d.risk_score > 0);
    let d = p.decide(
        Direction::Request,
        p.detectors(Direction::Request).scan("nothing here"),
    );
    assert_eq!(d.action, Action::Allow);
    assert_eq!(d.risk_score, 0);
}

#[test]
fn bad_authorization_rule_names_file_line_field_and_position() {
    let src = "policies:\n  p:\n    governance:\n      authorization:\n        rules:\n          - { when: \"mcp.tool == 'a'\", effect: deny }\n          - when: mcp.tool == 'b' &&\n            effect: deny\n";
    let e = parse_str(src, "rules.yaml")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.file, "rules.yaml");
    assert_eq!(e.line, Some(7), "{e}");
    assert_eq!(
        e.field, "policies.p.governance.authorization.rules[1].when",
        "{e}"
    );
    assert!(e.message.contains("not a valid CEL expression"), "{e}");
    assert!(e.message.contains("expression:1:"), "{e}");

    let src = "policies:\n  p:\n    governance:\n      authorization:\n        rules:\n          - { when: \"principal.id == 'x'\", effect: deny }\n";
    let e = parse_str(src, "rules.yaml")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.message.contains("unknown variable `principal`"), "{e}");
}

#[test]
fn redis_state_needs_one_url_of_a_supported_scheme() {
    let c = parse_str(
        "state:\n  redis: { url: 'redis://127.0.0.1:6379/0', command_timeout_ms: 100 }\n",
        "s.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = c.state.redis.unwrap_or_else(|| panic!("no redis"));
    assert_eq!(r.key_prefix, "palisade:");
    assert_eq!((r.connections, r.command_timeout_ms), (2, 100));
    assert!(r.required_for_readiness);
    for (src, field, says) in [
        (
            "state:\n  redis: { url: 'rediss://h:6380' }\n",
            "state.redis.url",
            "TLS and Cluster are not supported",
        ),
        (
            "state:\n  redis: { key_prefix: 'x:' }\n",
            "state.redis.url",
            "exactly one of `url` and `url_env`",
        ),
        (
            "state:\n  redis: { url: 'redis://h', url_env: R }\n",
            "state.redis.url",
            "exactly one",
        ),
        (
            "state:\n  redis: { url: 'redis://h', command_timeout_ms: 0 }\n",
            "state.redis.command_timeout_ms",
            "at least 1",
        ),
        (
            "state:\n  redis: { url: 'redis://h', pool: 3 }\n",
            "state.redis.pool",
            "unknown field",
        ),
    ] {
        let e = parse_str(src, "s.yaml")
            .err()
            .unwrap_or_else(|| panic!("accepted {src}"));
        assert_eq!(e.field, field, "{e}");
        assert!(e.message.contains(says), "{e}");
    }
}
