use super::*;
use crate::govern::{AuthorizationConfig, AuthzRuleConfig, DefaultEffect, RuleEffect};

fn rule(when: &str, effect: RuleEffect) -> AuthzRuleConfig {
    AuthzRuleConfig {
        name: None,
        when: when.into(),
        effect,
        message: None,
    }
}

fn set(rules: Vec<AuthzRuleConfig>, default_effect: DefaultEffect) -> RuleSet {
    let cfg = AuthorizationConfig {
        default_effect,
        unverified_jwt_claims: true,
        rules,
    };
    match RuleSet::new(&cfg) {
        Ok(s) => s,
        Err(e) => panic!("rules did not compile: {e}"),
    }
}

fn compile_err(when: &str) -> String {
    let cfg = AuthorizationConfig::default();
    match Rule::compile(&cfg, 0, &rule(when, RuleEffect::Deny)) {
        Ok(_) => panic!("`{when}` compiled"),
        Err(e) => e,
    }
}

fn effect(o: &RuleOutcome) -> Option<RuleEffect> {
    match o {
        RuleOutcome::Matched { effect, .. } => Some(*effect),
        _ => None,
    }
}

#[test]
fn first_matching_rule_decides_in_order() {
    let rules = set(
        vec![
            rule("agent == 'ops-bot'", RuleEffect::Allow),
            rule("mcp.tool == 'delete_repo'", RuleEffect::Deny),
            rule("mcp.tool.startsWith('transfer_')", RuleEffect::Hold),
        ],
        DefaultEffect::Allow,
    );
    let mut a = Attributes {
        agent: "ops-bot",
        tool: "delete_repo",
        mcp_method: "tools/call",
        ..Attributes::default()
    };
    assert_eq!(effect(&rules.evaluate(&a)), Some(RuleEffect::Allow));
    a.agent = "intern";
    assert_eq!(effect(&rules.evaluate(&a)), Some(RuleEffect::Deny));
    a.tool = "transfer_funds";
    assert_eq!(effect(&rules.evaluate(&a)), Some(RuleEffect::Hold));
    a.tool = "echo";
    assert_eq!(rules.evaluate(&a), RuleOutcome::NoMatch);
}

#[test]
fn default_deny_applies_when_nothing_matches() {
    let rules = set(
        vec![rule("user == 'alice'", RuleEffect::Allow)],
        DefaultEffect::Deny,
    );
    let a = Attributes {
        user: "bob",
        ..Attributes::default()
    };
    assert_eq!(rules.evaluate(&a), RuleOutcome::DefaultDeny);
    let a = Attributes {
        user: "alice",
        ..Attributes::default()
    };
    assert_eq!(effect(&rules.evaluate(&a)), Some(RuleEffect::Allow));
}

#[test]
fn arguments_headers_claims_method_path_and_ip_are_readable() {
    let args = serde_json::json!({"path": "/etc/passwd", "count": 7, "tags": ["a", "b"]});
    let claims = serde_json::json!({"sub": "u1", "groups": ["admins"], "tenant": "acme"});
    let headers = vec![
        ("x-env".to_owned(), "prod".to_owned()),
        ("x-env".to_owned(), "eu".to_owned()),
    ];
    let a = Attributes {
        route: "files",
        method: "POST",
        path: "/files/3",
        headers: &headers,
        client_ip: "10.1.2.3",
        tool: "read_file",
        arguments: Some(&args),
        jwt: Some(&claims),
        ..Attributes::default()
    };
    for (when, want) in [
        ("mcp.arguments.path.startsWith('/etc/')", true),
        ("mcp.arguments.count > 5 && 'b' in mcp.arguments.tags", true),
        ("has(mcp.arguments.mode)", false),
        ("request.headers['x-env'] == 'prod, eu'", true),
        ("'admins' in jwt.groups && jwt.sub == 'u1'", true),
        (
            "request.method == 'POST' && request.path.startsWith('/files/')",
            true,
        ),
        ("request.route == 'files'", true),
        ("inCidr(source.ip, '10.0.0.0/8')", true),
        ("inCidr(source.ip, '10.1.2.0/25')", true),
        ("inCidr(source.ip, '192.168.0.0/16')", false),
        ("inCidr(source.ip, '::1/128')", false),
    ] {
        let rules = set(vec![rule(when, RuleEffect::Deny)], DefaultEffect::Allow);
        let got = effect(&rules.evaluate(&a)) == Some(RuleEffect::Deny);
        assert_eq!(got, want, "{when}");
    }
}

#[test]
fn cidr_matching() {
    let yes = |ip: &str, c: &str| in_cidr(Arc::new(ip.into()), Arc::new(c.into()));
    assert_eq!(yes("10.255.0.1", "10.0.0.0/8"), Ok(true));
    assert_eq!(yes("11.0.0.1", "10.0.0.0/8"), Ok(false));
    assert_eq!(yes("192.168.1.77", "192.168.1.64/27"), Ok(true));
    assert_eq!(yes("192.168.1.96", "192.168.1.64/27"), Ok(false));
    assert_eq!(yes("::ffff:127.0.0.1", "127.0.0.0/8"), Ok(true));
    assert_eq!(yes("2001:db8::1", "2001:db8::/32"), Ok(true));
    assert_eq!(yes("2001:db9::1", "2001:db8::/32"), Ok(false));
    assert_eq!(yes("127.0.0.1", "127.0.0.1"), Ok(true));
    assert_eq!(yes("0.0.0.1", "0.0.0.0/0"), Ok(true));
    assert_eq!(yes("not an ip", "0.0.0.0/0"), Ok(false));
    assert!(yes("1.2.3.4", "10.0.0.0/33").is_err());
    assert!(yes("1.2.3.4", "ten/8").is_err());
}

#[test]
fn evaluation_errors_are_reported_not_skipped() {
    // `path` is a number here: startsWith cannot apply. The deny rule must not be passed over.
    let args = serde_json::json!({"path": 5});
    let rules = set(
        vec![rule(
            "mcp.arguments.path.startsWith('/etc')",
            RuleEffect::Deny,
        )],
        DefaultEffect::Allow,
    );
    let a = Attributes {
        arguments: Some(&args),
        ..Attributes::default()
    };
    assert!(matches!(rules.evaluate(&a), RuleOutcome::Error { .. }));
    let bad = set(
        vec![rule("inCidr(source.ip, 'x/8')", RuleEffect::Deny)],
        DefaultEffect::Allow,
    );
    assert!(matches!(bad.evaluate(&a), RuleOutcome::Error { .. }));
}

#[test]
fn bad_rules_are_refused_when_read() {
    assert!(compile_err("mcp.tool ==").contains("not a valid CEL expression"));
    assert!(compile_err("mcp.tool == 'x' &&").contains("expression:1:"));
    assert!(compile_err("principal == 'x'").contains("unknown variable `principal`"));
    assert!(compile_err("mcp.tool").contains("must give a boolean"));
    assert!(compile_err("frobnicate(mcp.tool)").contains("frobnicate"));
    assert!(compile_err("jwt.sub == 'x'").contains("unverified_jwt_claims"));
    assert!(compile_err(&"a".repeat(5000)).contains("limit"));
}

#[test]
fn only_read_variables_are_built() {
    let rules = set(
        vec![rule("mcp.tool == 'x'", RuleEffect::Deny)],
        DefaultEffect::Allow,
    );
    assert!(rules.reads("mcp"));
    assert!(!rules.reads("request"));
    assert!(!rules.reads("jwt"));
}
