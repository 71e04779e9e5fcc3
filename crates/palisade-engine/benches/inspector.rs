//! The whole inspection path under the built-in default policy: normalise, detect, decide and
//! redact, for requests and responses of typical sizes.
//!
//! `cargo bench -p palisade-engine --bench inspector`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use palisade_detect::sample::realistic_text;
use palisade_engine::stream::{Framing, StreamInspector, StreamLimits};
use palisade_engine::Inspector;
use palisade_policy::Direction;
use palisade_protocol::Protocol;

fn inspector(c: &mut Criterion) {
    let config = palisade_policy::load::default_config();
    let Ok(inspector) = Inspector::new(&config) else {
        return;
    };
    for (label, size) in [("200B", 200), ("4KiB", 4096), ("64KiB", 64 * 1024)] {
        let text = realistic_text(size);
        let mut group = c.benchmark_group(format!("inspect_default_policy/{label}"));
        group.throughput(Throughput::Bytes(text.len() as u64));
        for (name, direction) in [
            ("request", Direction::Request),
            ("response", Direction::Response),
        ] {
            group.bench_function(name, |b| {
                b.iter(|| inspector.inspect_text("default", direction, black_box(&text)))
            });
        }
        group.finish();
    }
    // The proxy's load-test body: a 2 KiB MCP `tools/call`, decoded into parts and inspected.
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"summarise","arguments":{{"text":"{}"}}}}}}"#,
        "Summarise the quarterly numbers for the board meeting. ".repeat(34)
    );
    let mut group = c.benchmark_group("inspect_default_policy/mcp_tools_call_2KiB");
    group.throughput(Throughput::Bytes(call.len() as u64));
    group.bench_function("request", |b| {
        b.iter(|| {
            inspector.inspect_body(
                "default",
                Direction::Request,
                Protocol::Mcp,
                black_box(call.as_bytes()),
                None,
            )
        })
    });
    // The same call after the caches were flushed by other work, as at a low request rate where
    // other processes run between calls.
    let mut thrash = vec![0u8; 8 << 20];
    group.bench_function("request_cold_cache", |b| {
        b.iter_batched(
            || {
                for i in (0..thrash.len()).step_by(64) {
                    thrash[i] = thrash[i].wrapping_add(1);
                }
            },
            |()| {
                inspector.inspect_body(
                    "default",
                    Direction::Request,
                    Protocol::Mcp,
                    black_box(call.as_bytes()),
                    None,
                )
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();

    // The proxy's load-test stream: an OpenAI chat completion of 21 SSE events, in one read.
    let sse = include_str!("../../../scripts/load/chat_stream.sse");
    let Ok(policy) = inspector.policy_arc("default") else {
        return;
    };
    let mut group = c.benchmark_group("inspect_default_policy/chat_stream");
    group.throughput(Throughput::Bytes(sse.len() as u64));
    group.bench_function("response", |b| {
        b.iter(|| {
            let mut s = StreamInspector::new(
                policy.clone(),
                Direction::Response,
                Protocol::Openai,
                Framing::Sse,
                StreamLimits::default(),
                "bench",
                None,
                None,
            );
            let mut out = s.push(black_box(sse.as_bytes())).unwrap_or_default();
            out.extend(s.finish().unwrap_or_default());
            out
        })
    });
    group.finish();
}

criterion_group!(benches, inspector);
criterion_main!(benches);
