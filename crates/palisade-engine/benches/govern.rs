//! Governance cost in process: a decision served from the decision cache, and a full decision
//! (governance + detection under the default policy) for a 2 KiB MCP `tools/call`.
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
}

criterion_group!(benches, govern);
criterion_main!(benches);
