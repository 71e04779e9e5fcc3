//! Rate counters, the decision cache, tool pins and sessions in Redis.
//!
//! Keys (after the configured prefix, `palisade:` by default):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `rate:{key}` | string | a GCRA theoretical arrival time (µs), expiring when it passes |
//! | `cache:{key}` | string | a cached decision (JSON) with `PX` = its TTL |
//! | `pins:{scope}` | hash | tool name → pin (JSON) |
//! | `pin_scopes` | set | every scope with pins |
//! | `session:{id}` | list | the session's labelled steps (JSON), expiring 24 h after the last |
//! | `session:{id}:folded` | set | labels of steps dropped past the step bound |
//!
//! Every read-modify-write is one Lua script, so replicas never interleave inside one.

use std::collections::HashMap;
use std::sync::LazyLock;

use palisade_engine::govern::memory::MAX_STEPS;
use palisade_engine::govern::state::*;
use redis::{AsyncCommands, Script};

use crate::client::Redis;

fn corrupt(what: &str, e: serde_json::Error) -> StateError {
    StateError::Unavailable(format!("unreadable {what} in the shared state store: {e}"))
}

/// GCRA over one stored number, the same arithmetic as
/// [`palisade_engine::govern::gcra::check`], done atomically in
/// Redis. ARGV: emission interval (µs), period (µs), now (µs). Returns allowed (0/1), remaining,
/// and the wait (µs) when refused. Microsecond times since the epoch stay below 2^53, so Lua's
/// doubles hold them exactly.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > period then
  return {0, 0, ahead - period}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor(ahead / 1000) + 1)
return {1, math.floor((period - ahead) / interval), 0}
",
    )
});

/// Rate counters: GCRA in a Lua script.
#[derive(Debug)]
pub struct RedisRates {
    pub(crate) redis: Redis,
}

impl RateStore for RedisRates {
    fn check(&self, key: &str, quota: Quota, now_ms: u64) -> StateFuture<'_, RateOutcome> {
        let k = self.redis.key(&format!("rate:{key}"));
        // The same integer arithmetic as the in-memory store, so both answer alike.
        let max = u64::from(quota.max_requests.max(1));
        let period_us = quota.period_ms.saturating_mul(1_000).max(1);
        let interval_us = (period_us / max).max(1);
        let now_us = now_ms.saturating_mul(1_000);
        Box::pin(async move {
            let (allowed, remaining, wait_us): (i64, i64, i64) = self
                .redis
                .run(move |mut c| {
                    let k = k.clone();
                    async move {
                        GCRA.key(&k)
                            .arg(interval_us)
                            .arg(period_us)
                            .arg(now_us)
                            .invoke_async(&mut c)
                            .await
                    }
                })
                .await?;
            Ok(RateOutcome {
                allowed: allowed == 1,
                remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
                retry_after_ms: (wait_us.max(0) as u64).div_ceil(1_000),
            })
        })
    }
}

/// A cached decision with the time it stops counting (the caller's clock, as in memory).
#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    d: CachedDecision,
    until: u64,
}

/// The decision cache: `SET … PX`.
#[derive(Debug)]
pub struct RedisCache {
    pub(crate) redis: Redis,
}

impl DecisionCache for RedisCache {
    fn get(&self, key: &str, now_ms: u64) -> StateFuture<'_, Option<CachedDecision>> {
        let k = self.redis.key(&format!("cache:{key}"));
        Box::pin(async move {
            let raw: Option<String> = self
                .redis
                .run(move |mut c| {
                    let k = k.clone();
                    async move { c.get(&k).await }
                })
                .await?;
            // An entry that does not parse is a miss: the cache is rebuilt from the policy.
            Ok(raw
                .and_then(|s| serde_json::from_str::<Cached>(&s).ok())
                .filter(|c| c.until > now_ms)
                .map(|c| c.d))
        })
    }

    fn put(
        &self,
        key: &str,
        value: CachedDecision,
        ttl_ms: u64,
        now_ms: u64,
    ) -> StateFuture<'_, ()> {
        let k = self.redis.key(&format!("cache:{key}"));
        Box::pin(async move {
            if ttl_ms == 0 {
                return Ok(());
            }
            let json = serde_json::to_string(&Cached {
                d: value,
                until: now_ms.saturating_add(ttl_ms),
            })
            .map_err(|e| corrupt("decision", e))?;
            self.redis
                .run(move |mut c| {
                    let (k, json) = (k.clone(), json.clone());
                    async move { c.pset_ex::<_, _, ()>(&k, &json, ttl_ms).await }
                })
                .await
        })
    }
}

/// Tool pins: a hash per scope, and a set of scopes.
#[derive(Debug)]
pub struct RedisPins {
    pub(crate) redis: Redis,
}

impl RedisPins {
    fn parse(scope: &str, fields: HashMap<String, String>) -> Vec<(String, ToolPin)> {
        fields
            .into_values()
            // A pin that does not parse is skipped rather than failing every list.
            .filter_map(|v| serde_json::from_str::<ToolPin>(&v).ok())
            .map(|p| (scope.to_owned(), p))
            .collect()
    }
}

impl PinStore for RedisPins {
    fn get(&self, scope: &str, tool: &str) -> StateFuture<'_, Option<ToolPin>> {
        let k = self.redis.key(&format!("pins:{scope}"));
        let tool = tool.to_owned();
        Box::pin(async move {
            let raw: Option<String> = self
                .redis
                .run(move |mut c| {
                    let (k, tool) = (k.clone(), tool.clone());
                    async move { c.hget(&k, &tool).await }
                })
                .await?;
            raw.map(|s| serde_json::from_str(&s).map_err(|e| corrupt("pin", e)))
                .transpose()
        })
    }

    fn put(&self, scope: &str, pin: ToolPin) -> StateFuture<'_, ()> {
        let k = self.redis.key(&format!("pins:{scope}"));
        let scopes = self.redis.key("pin_scopes");
        let scope = scope.to_owned();
        Box::pin(async move {
            let json = serde_json::to_string(&pin).map_err(|e| corrupt("pin", e))?;
            let tool = pin.tool;
            self.redis
                .run(move |mut c| {
                    let mut p = redis::pipe();
                    p.atomic()
                        .hset(&k, &tool, &json)
                        .ignore()
                        .sadd(&scopes, &scope)
                        .ignore();
                    async move { p.query_async::<()>(&mut c).await }
                })
                .await
        })
    }

    fn list(&self, scope: Option<&str>) -> StateFuture<'_, Vec<(String, ToolPin)>> {
        let scope = scope.map(str::to_owned);
        Box::pin(async move {
            let scopes: Vec<String> = match scope {
                Some(s) => vec![s],
                None => {
                    let k = self.redis.key("pin_scopes");
                    self.redis
                        .run(move |mut c| {
                            let k = k.clone();
                            async move { c.smembers(&k).await }
                        })
                        .await?
                }
            };
            if scopes.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = scopes
                .iter()
                .map(|s| self.redis.key(&format!("pins:{s}")))
                .collect();
            let all: Vec<HashMap<String, String>> = self
                .redis
                .run(move |mut c| {
                    let mut p = redis::pipe();
                    for k in &keys {
                        p.hgetall(k);
                    }
                    async move { p.query_async(&mut c).await }
                })
                .await?;
            let mut out: Vec<(String, ToolPin)> = scopes
                .iter()
                .zip(all)
                .flat_map(|(s, fields)| Self::parse(s, fields))
                .collect();
            out.sort_by(|a, b| (&a.0, &a.1.tool).cmp(&(&b.0, &b.1.tool)));
            Ok(out)
        })
    }
}

/// Appends a step, folding the labels of steps dropped past the bound into a set, and renews
/// the session's expiry. KEYS: the list, the folded set. ARGV: step JSON, bound, TTL (ms).
static APPEND_STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('RPUSH', KEYS[1], ARGV[1])
local n = redis.call('LLEN', KEYS[1])
local max = tonumber(ARGV[2])
while n > max do
  local old = redis.call('LPOP', KEYS[1])
  local ok, s = pcall(cjson.decode, old)
  if ok and type(s) == 'table' and type(s.labels) == 'table' then
    for _, l in ipairs(s.labels) do redis.call('SADD', KEYS[2], l) end
  end
  n = n - 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return n
",
    )
});

/// Sessions: a list of steps per session.
#[derive(Debug)]
pub struct RedisSessions {
    pub(crate) redis: Redis,
}

impl SessionStore for RedisSessions {
    fn steps(&self, session: &str, _now_ms: u64) -> StateFuture<'_, Vec<SessionStep>> {
        let list = self.redis.key(&format!("session:{session}"));
        let folded = format!("{list}:folded");
        Box::pin(async move {
            let (raw, labels): (Vec<String>, Vec<String>) = self
                .redis
                .run(move |mut c| {
                    let mut p = redis::pipe();
                    p.lrange(&list, 0, -1).smembers(&folded);
                    async move { p.query_async(&mut c).await }
                })
                .await?;
            let mut steps = raw
                .iter()
                .map(|s| serde_json::from_str::<SessionStep>(s).map_err(|e| corrupt("step", e)))
                .collect::<Result<Vec<_>, _>>()?;
            // As in memory: the labels of dropped steps count as the first kept step's.
            if let Some(first) = steps.first_mut() {
                let mut labels = labels;
                labels.sort();
                for l in labels {
                    if !first.labels.contains(&l) {
                        first.labels.push(l);
                    }
                }
            }
            Ok(steps)
        })
    }

    fn append(
        &self,
        session: &str,
        step: SessionStep,
        ttl_ms: u64,
        _now_ms: u64,
    ) -> StateFuture<'_, ()> {
        let list = self.redis.key(&format!("session:{session}"));
        let folded = format!("{list}:folded");
        Box::pin(async move {
            let json = serde_json::to_string(&step).map_err(|e| corrupt("step", e))?;
            self.redis
                .run(move |mut c| {
                    let (list, folded, json) = (list.clone(), folded.clone(), json.clone());
                    async move {
                        APPEND_STEP
                            .key(&list)
                            .key(&folded)
                            .arg(&json)
                            .arg(MAX_STEPS)
                            .arg(ttl_ms.max(1))
                            .invoke_async::<i64>(&mut c)
                            .await
                    }
                })
                .await
                .map(|_| ())
        })
    }
}
