//! Governance cost in process: a decision served from the decision cache, and a full decision
//! (governance + detection under the default policy) for a 2 KiB MCP `tools/call`; both again
//! with six CEL authorization rules (over agent, tool, arguments, headers, client IP and JWT
//! claims), which are evaluated on every request, cache hit or not.
//!
//! `cargo bench -p palisade-engine --bench govern`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_detect::sample::realistic_text;
use palisade_engine::govern::{GovOutcome, Governance, RequestFacts};
use palisade_engine::{Inspector, Protocol};
use palisade_policy::Direction;

fn govern(c: &mut Criterion) {
    let mut config = palisade_policy::load::default_config();
    // The default 100 per 300 s would refuse the bench after 100 iterations; keep the same key
    // path (client IP + tool) with a quota it never reaches.
    if let Some(p) = config.policies.get_mut("default") {
        for rl in &mut p.rate_limits {
            rl.max_requests = u32::MAX;
        }
    }
    if let Some(mut p) = config.policies.get("default").cloned() {
        let rules = r#"
unverified_jwt_claims: true
rules:
  - { when: "agent == 'ops-bot'", effect: allow }
  - { when: "mcp.tool == 'delete_repo' && !('admins' in jwt.groups)", effect: deny }
  - { when: "mcp.tool == 'lookup_customer' && !inCidr(source.ip, '10.0.0.0/8')", effect: deny }
  - { when: "mcp.tool == 'summarise' && mcp.arguments.text.contains('BEGIN PRIVATE KEY')", effect: deny }
  - { when: "request.method == 'DELETE' && request.headers['x-role'] != 'admin'", effect: hold }
  - { when: "tenant != '' && tenant != 'acme'", effect: deny }
"#;
        match serde_yaml_ng::from_str(rules) {
            Ok(a) => p.governance.authorization = a,
            Err(e) => panic!("bench rules: {e}"),
        }
        config.policies.insert("rules".into(), p);
    }
    let (Ok(inspector), Ok(gov)) = (Inspector::new(&config), Governance::in_memory(&config)) else {
        return;
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };

    let http = RequestFacts {
        request_id: "bench",
        route: "api",
        scope: "api|http://upstream/",
        method: "GET",
        path: "/customers/123",
        client_ip: "10.0.0.1".into(),
        agent_header: Some("agent-1".into()),
        ..RequestFacts::default()
    };
    // Warm the cache, then every iteration is a hit.
    let first = rt.block_on(gov.decide_request("default", &http));
    assert_eq!(first.outcome, GovOutcome::Continue);
    c.bench_function("govern/cached_decision", |b| {
        b.iter(|| {
            let d = rt.block_on(gov.decide_request("default", black_box(&http)));
            assert!(d.cache_hit);
        })
    });

    let headers = vec![
        ("accept".to_owned(), "application/json".to_owned()),
        ("x-role".to_owned(), "admin".to_owned()),
        ("user-agent".to_owned(), "bench/1.0".to_owned()),
    ];
    let claims = serde_json::json!({"sub": "u1", "groups": ["admins", "dev"]});
    let http_rules = RequestFacts {
        headers: headers.clone(),
        jwt_claims: Some(claims.clone()),
        ..http.clone()
    };
    let first = rt.block_on(gov.decide_request("rules", &http_rules));
    assert_eq!(first.outcome, GovOutcome::Continue);
    c.bench_function("govern/cached_decision_6_rules", |b| {
        b.iter(|| {
            let d = rt.block_on(gov.decide_request("rules", black_box(&http_rules)));
            assert!(d.cache_hit);
        })
    });

    let text = realistic_text(1_900);
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "summarise", "arguments": {"text": text}}
    })
    .to_string();
    let call = RequestFacts {
        request_id: "bench",
        route: "mcp",
        scope: "mcp|http://upstream/mcp",
        method: "POST",
        path: "/mcp",
        client_ip: "10.0.0.2".into(),
        agent_header: Some("agent-1".into()),
        mcp_session: Some("s1".into()),
        mcp_method: Some("tools/call".into()),
        tool: Some("summarise".into()),
        body: body.as_bytes(),
        ..RequestFacts::default()
    };
    c.bench_function(
        &format!("govern/full_decision_tools_call_{}B", body.len()),
        |b| {
            b.iter(|| {
                let d = rt.block_on(gov.decide_request("default", black_box(&call)));
                assert_eq!(d.outcome, GovOutcome::Continue);
                let v = inspector.inspect_body(
                    "default",
                    Direction::Request,
                    Protocol::Mcp,
                    black_box(body.as_bytes()),
                    None,
                );
                black_box(v)
            })
        },
    );
    let rpc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    c.bench_function(
        &format!("govern/full_decision_tools_call_{}B_6_rules", body.len()),
        |b| {
            b.iter(|| {
                // As the proxy does: the arguments are taken out of the parsed call, per request.
                let facts = RequestFacts {
                    headers: headers.clone(),
                    jwt_claims: Some(claims.clone()),
                    arguments: rpc.pointer("/params/arguments").cloned(),
                    ..call.clone()
                };
                let d = rt.block_on(gov.decide_request("rules", black_box(&facts)));
                assert_eq!(d.outcome, GovOutcome::Continue);
                let v = inspector.inspect_body(
                    "rules",
                    Direction::Request,
                    Protocol::Mcp,
                    black_box(body.as_bytes()),
                    None,
                );
                black_box(v)
            })
        },
    );
}

criterion_group!(benches, govern);
criterion_main!(benches);
