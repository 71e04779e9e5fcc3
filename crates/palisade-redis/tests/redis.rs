//! Every store against a real Redis (`scripts/redis.sh` starts one and sets
//! `PALISADE_TEST_REDIS_URL`). Without it these tests skip, except under `CI=true`, where they
//! fail. Each test uses a key prefix of its own, so they run in parallel on one server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_engine::govern::state::*;
use palisade_engine::govern::{gcra, now_ms, Governance, RequestFacts, Stores};
use palisade_policy::config::FailureMode;
use palisade_policy::govern::RedisStateConfig;

fn url() -> Option<String> {
    match std::env::var("PALISADE_TEST_REDIS_URL") {
        Ok(u) => Some(u),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PALISADE_TEST_REDIS_URL is not set: run the tests through scripts/redis.sh")
        }
        Err(_) => {
            eprintln!("skipped: PALISADE_TEST_REDIS_URL is not set (see scripts/redis.sh)");
            None
        }
    }
}

fn config(url: &str, test: &str) -> RedisStateConfig {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    serde_json::from_value(serde_json::json!({
        "url": url,
        "key_prefix": format!("test:{}:{test}:{run}:", std::process::id()),
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Two "replicas": separate connections and waiters over the same keys.
fn pair(cfg: &RedisStateConfig) -> (Stores, Stores) {
    let a = palisade_redis::open(cfg, Stores::memory(1_000)).unwrap_or_else(|e| panic!("{e}"));
    let b = palisade_redis::open(cfg, Stores::memory(1_000)).unwrap_or_else(|e| panic!("{e}"));
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_script_answers_like_the_pure_function() {
    let Some(url) = url() else { return };
    let (s, _) = pair(&config(&url, "gcra"));
    let q = Quota {
        max_requests: 100,
        period_ms: 300_000,
    };
    let now = now_ms();
    let mut tat = 0;
    for i in 0..102u64 {
        let at = now + i / 2; // a few distinct times, as in real traffic
        let (want, next) = gcra::check(tat, q, at);
        tat = next;
        let got = s
            .rates
            .check("k", q, at)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, want, "call {i}");
    }
    let refused = s
        .rates
        .check("k", q, now + 60)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!refused.allowed);
    assert!(refused.retry_after_ms > 2_900 && refused.retry_after_ms <= 3_000);
    assert!(s
        .rates
        .check("k", q, now + 3_100)
        .await
        .is_ok_and(|o| o.allowed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_the_quota_passes_under_concurrency_across_two_replicas() {
    let Some(url) = url() else { return };
    let (a, b) = pair(&config(&url, "concurrent"));
    let q = Quota {
        max_requests: 100,
        period_ms: 300_000,
    };
    let now = now_ms();
    let allowed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..40 {
        let rates = if t % 2 == 0 {
            a.rates.clone()
        } else {
            b.rates.clone()
        };
        let allowed = allowed.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let o = rates
                    .check("ip|tool", q, now)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                if o.allowed {
                    allowed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 100, "400 tries, quota 100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_entries_live_for_their_ttl() {
    let Some(url) = url() else { return };
    let (a, b) = pair(&config(&url, "cache"));
    let d = CachedDecision {
        verdict: StaticVerdict::Hold,
        risk_score: 70,
        reasons: vec!["needs approval".into()],
    };
    let now = now_ms();
    a.cache
        .put("agent|act|GET /x/{id}", d.clone(), 300, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        b.cache.get("agent|act|GET /x/{id}", now + 10).await,
        Ok(Some(d.clone()))
    );
    assert_eq!(
        b.cache.get("agent|act|GET /x/{id}", now + 300).await,
        Ok(None)
    );
    assert_eq!(b.cache.get("other", now).await, Ok(None));
    // Redis forgets it too, by its own clock.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        b.cache.get("agent|act|GET /x/{id}", now + 10).await,
        Ok(None)
    );
}

fn pin(tool: &str, state: PinState) -> ToolPin {
    ToolPin {
        tool: tool.into(),
        pinned_hash: Some("ab".into()),
        pinned: Some(serde_json::json!({"name": tool, "description": "d"})),
        pending_hash: None,
        pending: None,
        state,
        first_seen_ms: 1,
        last_seen_ms: 2,
        note: "n".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_are_shared_per_scope() {
    let Some(url) = url() else { return };
    let (a, b) = pair(&config(&url, "pins"));
    a.pins
        .put("rug|http://u", pin("weather", PinState::Pinned))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    a.pins
        .put("rug|http://u", pin("echo", PinState::Pinned))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    a.pins
        .put("other|http://v", pin("echo", PinState::Pinned))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Quarantined on A, seen on B.
    a.pins
        .put("rug|http://u", pin("weather", PinState::Quarantined))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = b
        .pins
        .get("rug|http://u", "weather")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.map(|p| p.state), Some(PinState::Quarantined));
    assert_eq!(b.pins.get("rug|http://u", "nope").await, Ok(None));
    let scoped: Vec<String> = b
        .pins
        .list(Some("rug|http://u"))
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(_, p)| p.tool)
        .collect();
    assert_eq!(scoped, ["echo", "weather"]);
    let all: Vec<(String, String)> = b
        .pins
        .list(None)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(s, p)| (s, p.tool))
        .collect();
    assert_eq!(
        all,
        [
            ("other|http://v".to_owned(), "echo".to_owned()),
            ("rug|http://u".to_owned(), "echo".to_owned()),
            ("rug|http://u".to_owned(), "weather".to_owned())
        ]
    );
}

fn approval(id: &str, created: u64, expires: u64) -> Approval {
    Approval {
        id: id.into(),
        status: ApprovalStatus::Pending,
        agent: "bot".into(),
        action: "tools/call:delete_repo".into(),
        route: "r".into(),
        fingerprint: format!("fp-{id}"),
        reasons: vec!["held".into()],
        risk_score: 80,
        created_ms: created,
        expires_ms: expires,
        scope: ApprovalScope::Call,
        used: false,
        decided_by: None,
        decided_ms: None,
        decision_reason: None,
    }
}

fn grant(now: u64, scope: ApprovalScope) -> ApprovalDecision {
    ApprovalDecision {
        status: ApprovalStatus::Approved,
        by: "alice".into(),
        reason: Some("ok".into()),
        scope,
        expires_ms: now + 60_000,
        now_ms: now,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_one_replica_wakes_when_another_decides() {
    let Some(url) = url() else { return };
    let (a, b) = pair(&config(&url, "wake"));
    let now = now_ms();
    b.approvals
        .create(approval("ap1", now, now + 60_000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waiter = {
        let b = b.approvals.clone();
        tokio::spawn(async move {
            let s = b.wait("ap1").await;
            (s, Instant::now())
        })
    };
    // Let the waiter subscribe and see it pending first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    let decided_at = Instant::now();
    let decided = a
        .approvals
        .decide("ap1", grant(now_ms(), ApprovalScope::Call))
        .await;
    assert_eq!(decided.map(|d| d.decided_by), Ok(Some("alice".to_owned())));
    let (status, woke_at) = waiter.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, Ok(ApprovalStatus::Approved));
    let took = woke_at.duration_since(decided_at);
    // Pub/sub, not the half-second re-read.
    assert!(took < Duration::from_millis(250), "woke after {took:?}");
    // Decided once only.
    let again = b
        .approvals
        .decide("ap1", grant(now_ms(), ApprovalScope::Call))
        .await;
    assert!(matches!(again, Err(StateError::Conflict(_))));
    assert!(matches!(
        a.approvals
            .decide("missing", grant(now, ApprovalScope::Call))
            .await,
        Err(StateError::NotFound(_))
    ));
    assert!(matches!(
        b.approvals.wait("missing").await,
        Err(StateError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_grant_is_used_exactly_once_and_an_action_grant_until_it_expires() {
    let Some(url) = url() else { return };
    let (a, b) = pair(&config(&url, "grants"));
    let now = now_ms();
    a.approvals
        .create(approval("c1", now, now + 60_000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    a.approvals
        .decide("c1", grant(now, ApprovalScope::Call))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let taken = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..20 {
        let s = if t % 2 == 0 {
            a.approvals.clone()
        } else {
            b.approvals.clone()
        };
        let taken = taken.clone();
        tasks.push(tokio::spawn(async move {
            if let Ok(Some(g)) = s
                .take_grant("bot", "tools/call:delete_repo", "fp-c1", now + 1)
                .await
            {
                assert!(g.used);
                taken.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(taken.load(Ordering::Relaxed), 1);

    a.approvals
        .create(approval("a1", now + 1, now + 60_000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut d = grant(now, ApprovalScope::Action);
    d.expires_ms = now + 1_000;
    a.approvals
        .decide("a1", d)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for at in [now + 10, now + 500] {
        let g = b
            .approvals
            .take_grant("bot", "tools/call:delete_repo", "any", at)
            .await;
        assert_eq!(g.map(|g| g.map(|g| g.id)), Ok(Some("a1".to_owned())));
    }
    assert_eq!(
        b.approvals
            .take_grant("bot", "tools/call:delete_repo", "any", now + 1_000)
            .await,
        Ok(None)
    );
    assert_eq!(
        b.approvals
            .take_grant("eve", "tools/call:delete_repo", "any", now + 10)
            .await,
        Ok(None)
    );

    // Newest first, with expiry applied as of the time asked.
    a.approvals
        .create(approval("p1", now + 2, now + 5_000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = b
        .approvals
        .list(None, now + 10)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["p1", "a1", "c1"]);
    let pending = b
        .approvals
        .list(Some(ApprovalStatus::Pending), now + 10)
        .await
        .unwrap_or_default();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        b.approvals
            .get("p1", now + 5_000)
            .await
            .map(|a| a.map(|a| a.status)),
        Ok(Some(ApprovalStatus::Expired))
    );
    let mut late = grant(now + 6_000, ApprovalScope::Call);
    late.now_ms = now + 6_000;
    assert!(matches!(
        a.approvals.decide("p1", late).await,
        Err(StateError::Conflict(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_their_steps_and_fold_dropped_labels() {
    let Some(url) = url() else { return };
    let (a, b) = pair(&config(&url, "sessions"));
    let now = now_ms();
    let step = |tool: &str, label: &str| SessionStep {
        tool: tool.into(),
        labels: vec![label.into()],
        at_ms: now,
    };
    a.sessions
        .append("mcp:s1", step("lookup", "private_data"), 60_000, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..palisade_engine::govern::memory::MAX_STEPS {
        a.sessions
            .append("mcp:s1", step("fetch", "untrusted_content"), 60_000, now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let steps = b
        .sessions
        .steps("mcp:s1", now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(steps.len(), palisade_engine::govern::memory::MAX_STEPS);
    assert_eq!(steps[0].tool, "fetch");
    assert!(
        steps[0].labels.contains(&"private_data".to_owned()),
        "{:?}",
        steps[0]
    );
    assert_eq!(b.sessions.steps("mcp:none", now).await, Ok(vec![]));
    a.sessions
        .append("mcp:short", step("x", "egress"), 200, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.sessions.steps("mcp:short", now).await, Ok(vec![]));
}

const POLICY: &str = "
listen: 127.0.0.1:0
policies:
  p:
    rate_limits:
      - { key: [agent], max_requests: 2, period_seconds: 60 }
";

fn facts(mode: FailureMode) -> RequestFacts<'static> {
    RequestFacts {
        request_id: "r1",
        route: "r",
        scope: "r|u",
        method: "GET",
        path: "/x",
        client_ip: "127.0.0.1".into(),
        agent_header: Some("bot".into()),
        failure_mode: mode,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_refuses_fail_closed_and_degrades_fail_open_to_local_state() {
    if url().is_none() {
        return;
    }
    // Nothing listens on port 1.
    let cfg = config("redis://127.0.0.1:1/", "down");
    let stores = palisade_redis::open(&cfg, Stores::memory(100)).unwrap_or_else(|e| panic!("{e}"));
    let probe = stores.probe.clone();
    let config =
        palisade_policy::load::parse_str(POLICY, "<test>").unwrap_or_else(|e| panic!("{e}"));
    let g = Governance::new(&config, stores).unwrap_or_else(|e| panic!("{e}"));
    let closed = g.decide_request("p", &facts(FailureMode::FailClosed)).await;
    assert_eq!(closed.outcome, palisade_engine::govern::GovOutcome::Error);
    // The breaker is open now: the next refusals do not wait for a connection.
    let started = Instant::now();
    let closed = g.decide_request("p", &facts(FailureMode::FailClosed)).await;
    assert_eq!(closed.outcome, palisade_engine::govern::GovOutcome::Error);
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    // fail_open: governed on local state, whose limit of 2 still bites.
    for _ in 0..2 {
        let d = g.decide_request("p", &facts(FailureMode::FailOpen)).await;
        assert_eq!(
            d.outcome,
            palisade_engine::govern::GovOutcome::Continue,
            "{d:?}"
        );
    }
    let d = g.decide_request("p", &facts(FailureMode::FailOpen)).await;
    assert!(
        matches!(
            d.outcome,
            palisade_engine::govern::GovOutcome::RateLimited { .. }
        ),
        "{d:?}"
    );
    // A waiter does not give up (nor let the call through) because Redis is down: it waits
    // until the caller's timer ends it.
    let waited = tokio::time::timeout(
        Duration::from_millis(1_200),
        g.stores().approvals.wait("apr_1"),
    )
    .await;
    assert!(waited.is_err(), "{waited:?}");
    let ping = probe.map(|p| async move { p.ping().await });
    match ping {
        Some(f) => assert!(matches!(f.await, Err(StateError::Unavailable(_)))),
        None => panic!("a redis store has a probe"),
    }
}
