//! Round trips of the Redis stores against a local Redis, for docs/state.md.
//!
//!   ./scripts/redis.sh cargo run --release -p palisade-redis --example roundtrip
//!
//! Prints the median and 99th percentile of sequential calls (one at a time: the latency a
//! request pays) and the throughput of 64 concurrent callers on one connection pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_engine::govern::state::*;
use palisade_engine::govern::{now_ms, Governance, RequestFacts, Stores};
use palisade_policy::config::FailureMode;

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.5), at(0.99))
}

async fn time<F, Fut>(n: usize, mut f: F) -> (Duration, Duration)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i).await;
        took.push(t.elapsed());
    }
    percentiles(took)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let url = std::env::var("PALISADE_TEST_REDIS_URL")
        .map_err(|_| "set PALISADE_TEST_REDIS_URL (scripts/redis.sh does)".to_owned())?;
    let cfg = serde_json::from_value(serde_json::json!({"url": url, "key_prefix": "bench:"}))
        .map_err(|e| e.to_string())?;
    let stores = palisade_redis::open(&cfg, Stores::memory(1_000_000))?;
    let n = 5_000;
    let q = Quota {
        max_requests: 1_000_000,
        period_ms: 60_000,
    };
    let rates = stores.rates.clone();
    let (p50, p99) = time(n, |i| {
        let rates = rates.clone();
        async move {
            let _ = rates.check(&format!("k{}", i % 100), q, now_ms()).await;
        }
    })
    .await;
    println!("| rate check (GCRA script) | {p50:.1?} | {p99:.1?} |");
    let cache = stores.cache.clone();
    let d = CachedDecision {
        verdict: StaticVerdict::Allow,
        risk_score: 10,
        reasons: vec![],
    };
    let _ = cache.put("hot", d, 60_000, now_ms()).await;
    let (p50, p99) = time(n, |_| {
        let cache = cache.clone();
        async move {
            let _ = cache.get("hot", now_ms()).await;
        }
    })
    .await;
    println!("| decision cache get (hit) | {p50:.1?} | {p99:.1?} |");

    let config = palisade_policy::load::parse_str(
        "listen: 127.0.0.1:0\npolicies:\n  p:\n    rate_limits:\n      - { key: [agent], max_requests: 1000000, period_seconds: 60 }\n",
        "<bench>",
    )
    .map_err(|e| e.to_string())?;
    let g = Arc::new(Governance::new(&config, stores).map_err(|e| e.to_string())?);
    let facts = RequestFacts {
        request_id: "r",
        route: "r",
        scope: "r|u",
        method: "GET",
        path: "/customers/1",
        client_ip: "127.0.0.1".into(),
        agent_header: Some("bot".into()),
        failure_mode: FailureMode::FailClosed,
        ..Default::default()
    };
    let (p50, p99) = time(n, |_| {
        let (g, facts) = (g.clone(), facts.clone());
        async move {
            let _ = g.decide_request("p", &facts).await;
        }
    })
    .await;
    println!(
        "| governance decision, cache hit + rate check (2 round trips) | {p50:.1?} | {p99:.1?} |"
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..64 {
        let rates = rates.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let _ = rates.check(&format!("c{t}-{i}"), q, now_ms()).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "| rate checks, 64 concurrent callers | {:.0} / s | |",
        64.0 * 200.0 / secs
    );
    Ok(())
}
