//! Palisade's governance state in Redis, shared by every replica: rate counters, the decision
//! cache, tool pins, approvals and sessions, behind the same traits as the in-memory stores
//! (`palisade_engine::govern::state`), so nothing that calls them changes.
//!
//! A crate of its own, so that the engine builds and tests without a network client, and a
//! deployment of one replica compiles nothing it does not use beyond this crate.
//!
//! - [`client`]: connections (pooled, multiplexed, on an I/O thread of their own), timeouts,
//!   reconnection, and a breaker that logs an outage once when it starts and once when it ends.
//! - [`stores`]: counters (a GCRA Lua script), the cache (`SET … PX`), pins (hashes), sessions.
//! - [`approvals`]: approvals, with compare-and-set scripts and pub/sub wake-ups.
//!
//! [`open`] returns the Redis stores with this replica's in-memory stores set as their fallback:
//! `fail_open` routes use those while Redis is unreachable, `fail_closed` routes refuse.
//! The audit log is not in Redis: it stays wherever the caller keeps it.

pub mod approvals;
pub mod client;
pub mod stores;

use std::sync::Arc;

use palisade_engine::govern::state::{StateFuture, StateProbe};
use palisade_engine::govern::Stores;
use palisade_policy::govern::RedisStateConfig;

pub use client::Redis;

/// The Redis stores of `cfg`, with `local` (this replica's memory) behind them for `fail_open`
/// routes. The audit log is `local`'s. Connections open on first use; an unreachable Redis at
/// start is logged, and the failure modes apply until it answers.
pub fn open(cfg: &RedisStateConfig, local: Stores) -> Result<Stores, String> {
    let url = cfg.resolve_url()?;
    let redis = Redis::connect(&url, cfg)?;
    let waiters = Arc::new(approvals::Waiters::default());
    redis.spawn(approvals::listen(
        redis.client(),
        redis.key("approvals:decided"),
        redis.connect_timeout(),
        redis.retry_interval(),
        waiters.clone(),
    ));
    let probe = Arc::new(RedisProbe {
        redis: redis.clone(),
        required: cfg.required_for_readiness,
    });
    let at_start = redis.clone();
    redis.spawn(async move {
        match ping(&at_start).await {
            Ok(()) => tracing::info!("governance state in redis"),
            Err(e) => tracing::warn!(error = %e, "redis does not answer at start"),
        }
    });
    Ok(Stores {
        rates: Arc::new(stores::RedisRates {
            redis: redis.clone(),
        }),
        cache: Arc::new(stores::RedisCache {
            redis: redis.clone(),
        }),
        pins: Arc::new(stores::RedisPins {
            redis: redis.clone(),
        }),
        approvals: Arc::new(approvals::RedisApprovals {
            redis: redis.clone(),
            waiters,
            retention_ms: cfg.approval_retention_seconds.saturating_mul(1_000),
        }),
        sessions: Arc::new(stores::RedisSessions { redis }),
        audit: local.audit.clone(),
        fallback: Some(Box::new(local)),
        probe: Some(probe),
    })
}

async fn ping(redis: &Redis) -> Result<(), palisade_engine::govern::state::StateError> {
    redis
        .run_now(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
        .await
}

/// Readiness: PING, past the breaker, so a probe also notices that Redis is back.
#[derive(Debug)]
struct RedisProbe {
    redis: Redis,
    required: bool,
}

impl StateProbe for RedisProbe {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn ping(&self) -> StateFuture<'_, ()> {
        Box::pin(ping(&self.redis))
    }

    fn required_for_readiness(&self) -> bool {
        self.required
    }
}
