//! Approvals in Redis, with pub/sub so that a call held on one replica wakes as soon as any
//! replica decides.
//!
//! Keys (after the prefix): `approvals` (hash: id → approval JSON), `approvals:created` (sorted
//! set: id by creation time, for listing newest first and for pruning), `grant:a:{agent,action}`
//! and `grant:c:{fingerprint}` (sets of granted ids, expiring with the longest grant in them), and
//! the channel `approvals:decided`, which carries the id of each approval that stopped pending.
//!
//! Decisions and the use of a `call` grant are compare-and-set scripts over the stored JSON: the
//! logic stays in Rust (the same as the in-memory store), and Redis only checks that nobody
//! changed the approval in between, so two replicas can never both use one `call` grant or both
//! decide one approval. A waiter subscribes before it reads, wakes on the channel, and also
//! re-reads twice a second, so a message lost while the pub/sub connection was down costs at
//! most that. While Redis is unreachable a waiter keeps waiting (until the caller's timer), so a
//! held call is denied for want of a decision rather than let through.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use palisade_engine::govern::memory::effective;
use palisade_engine::govern::now_ms;
use palisade_engine::govern::state::*;
use redis::{AsyncCommands, Script};
use tokio::sync::watch;

use crate::client::Redis;

/// How often a waiter re-reads its approval, whatever pub/sub says.
const POLL: Duration = Duration::from_millis(500);
/// Tries of a compare-and-set before giving up (each loses only to another writer).
const CAS_TRIES: usize = 8;
/// Old approvals looked at for pruning per create.
const PRUNE_BATCH: isize = 100;

/// KEYS: the approvals hash, optionally a grant index. ARGV: id, the JSON expected, the new
/// JSON, the channel ('' for none), the index's expiry (ms since the epoch).
static CAS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if KEYS[2] then
  redis.call('SADD', KEYS[2], ARGV[1])
  if redis.call('PTTL', KEYS[2]) == -1 then
    redis.call('PEXPIREAT', KEYS[2], ARGV[5])
  else
    redis.call('PEXPIREAT', KEYS[2], ARGV[5], 'GT')
  end
end
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[1]) end
return 1
",
    )
});

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn corrupt(e: serde_json::Error) -> StateError {
    StateError::Unavailable(format!(
        "unreadable approval in the shared state store: {e}"
    ))
}

/// Who waits on which approval in this process; the pub/sub listener bumps their counters.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    map: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Waiters {
    fn subscribe(&self, id: &str) -> watch::Receiver<u64> {
        lock(&self.map)
            .entry(id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn release(&self, id: &str) {
        let mut map = lock(&self.map);
        if map.get(id).is_some_and(|tx| tx.receiver_count() == 0) {
            map.remove(id);
        }
    }

    pub(crate) fn notify(&self, id: &str) {
        if let Some(tx) = lock(&self.map).get(id) {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// After the listener (re)connects: whatever was decided meanwhile is re-read.
    pub(crate) fn notify_all(&self) {
        for tx in lock(&self.map).values() {
            tx.send_modify(|n| *n += 1);
        }
    }
}

/// Removes a waiter's entry when its wait ends, however it ends.
struct Release<'a>(&'a Waiters, &'a str);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// Listens on `channel` for this process's waiters, reconnecting after `retry` whenever the
/// connection drops. Runs on the I/O thread until it stops; it holds no [`Redis`] handle, so it
/// does not keep the I/O thread alive.
pub(crate) async fn listen(
    client: redis::Client,
    channel: String,
    connect_timeout: Duration,
    retry: Duration,
    waiters: Arc<Waiters>,
) {
    use futures_util::StreamExt;
    loop {
        if let Ok(Ok(mut ps)) =
            tokio::time::timeout(connect_timeout, client.get_async_pubsub()).await
        {
            if ps.subscribe(&channel).await.is_ok() {
                waiters.notify_all();
                let mut messages = ps.on_message();
                while let Some(msg) = messages.next().await {
                    if let Ok(id) = msg.get_payload::<String>() {
                        waiters.notify(&id);
                    }
                }
            }
        }
        waiters.notify_all();
        tokio::time::sleep(retry).await;
    }
}

/// Approvals in Redis.
#[derive(Debug)]
pub struct RedisApprovals {
    pub(crate) redis: Redis,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) retention_ms: u64,
}

impl RedisApprovals {
    fn hash(&self) -> String {
        self.redis.key("approvals")
    }

    /// The stored JSON of `id`, as stored (for compare-and-set), and parsed.
    async fn load(&self, id: &str) -> Result<Option<(String, Approval)>, StateError> {
        let (k, id) = (self.hash(), id.to_owned());
        let raw: Option<String> = self
            .redis
            .run(move |mut c| {
                let (k, id) = (k.clone(), id.clone());
                async move { c.hget(&k, &id).await }
            })
            .await?;
        match raw {
            None => Ok(None),
            Some(s) => {
                let a = serde_json::from_str(&s).map_err(corrupt)?;
                Ok(Some((s, a)))
            }
        }
    }

    /// Replaces `id`'s JSON `old` with `new`'s; false when someone changed it in between.
    /// `publish`: tell waiters everywhere. `index`: add it to this grant index.
    async fn cas(
        &self,
        old: String,
        new: &Approval,
        publish: bool,
        index: Option<String>,
    ) -> Result<bool, StateError> {
        let json = serde_json::to_string(new).map_err(corrupt)?;
        let hash = self.hash();
        let channel = if publish {
            self.redis.key("approvals:decided")
        } else {
            String::new()
        };
        let (id, expires) = (new.id.clone(), new.expires_ms);
        let done: i64 = self
            .redis
            .run(move |mut c| {
                let mut inv = CAS.key(&hash);
                if let Some(ix) = &index {
                    inv.key(ix);
                }
                inv.arg(&id).arg(&old).arg(&json).arg(&channel).arg(expires);
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        Ok(done == 1)
    }

    fn action_index(&self, agent: &str, action: &str) -> String {
        // JSON keeps the two parts apart whatever they contain.
        let parts = serde_json::json!([agent, action]).to_string();
        self.redis.key(&format!("grant:a:{parts}"))
    }

    fn call_index(&self, fingerprint: &str) -> String {
        self.redis.key(&format!("grant:c:{fingerprint}"))
    }

    /// Deletes approvals created more than the retention ago that no longer pend or cover.
    async fn prune(&self, now: u64) -> Result<(), StateError> {
        let (hash, by_created) = (self.hash(), self.redis.key("approvals:created"));
        let before = now.saturating_sub(self.retention_ms);
        let (h, z) = (hash.clone(), by_created.clone());
        let old: Vec<String> = self
            .redis
            .run(move |mut c| {
                let z = z.clone();
                async move {
                    c.zrangebyscore_limit(&z, 0u64, before, 0, PRUNE_BATCH)
                        .await
                }
            })
            .await?;
        if old.is_empty() {
            return Ok(());
        }
        let ids = old.clone();
        let raw: Vec<Option<String>> = self
            .redis
            .run(move |mut c| {
                let mut p = redis::pipe();
                for id in &ids {
                    p.hget(&h, id);
                }
                async move { p.query_async(&mut c).await }
            })
            .await?;
        let gone: Vec<String> = old
            .into_iter()
            .zip(raw)
            .filter(|(_, r)| {
                r.as_deref()
                    .and_then(|s| serde_json::from_str::<Approval>(s).ok())
                    .is_none_or(|a| {
                        effective(&a, now).status != ApprovalStatus::Pending && a.expires_ms <= now
                    })
            })
            .map(|(id, _)| id)
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        self.redis
            .run(move |mut c| {
                let mut p = redis::pipe();
                p.atomic()
                    .hdel(&hash, &gone)
                    .ignore()
                    .zrem(&by_created, &gone)
                    .ignore();
                async move { p.query_async::<()>(&mut c).await }
            })
            .await
    }
}

impl ApprovalStore for RedisApprovals {
    fn create(&self, approval: Approval) -> StateFuture<'_, ()> {
        Box::pin(async move {
            let json = serde_json::to_string(&approval).map_err(corrupt)?;
            let (hash, by_created) = (self.hash(), self.redis.key("approvals:created"));
            let (id, created) = (approval.id.clone(), approval.created_ms);
            self.redis
                .run(move |mut c| {
                    let mut p = redis::pipe();
                    p.atomic()
                        .hset(&hash, &id, &json)
                        .ignore()
                        .zadd(&by_created, &id, created)
                        .ignore();
                    async move { p.query_async::<()>(&mut c).await }
                })
                .await?;
            // Pruning is housekeeping: a failure here does not undo the approval.
            let _ = self.prune(approval.created_ms).await;
            Ok(())
        })
    }

    fn get(&self, id: &str, now_ms: u64) -> StateFuture<'_, Option<Approval>> {
        let id = id.to_owned();
        Box::pin(async move { Ok(self.load(&id).await?.map(|(_, a)| effective(&a, now_ms))) })
    }

    fn decide(&self, id: &str, d: ApprovalDecision) -> StateFuture<'_, Approval> {
        let id = id.to_owned();
        Box::pin(async move {
            for _ in 0..CAS_TRIES {
                let Some((raw, a)) = self.load(&id).await? else {
                    return Err(StateError::NotFound(format!("approval `{id}`")));
                };
                let now = effective(&a, d.now_ms);
                if now.status != ApprovalStatus::Pending {
                    if now.status == ApprovalStatus::Expired && a.status == ApprovalStatus::Pending
                    {
                        let mut expired = a.clone();
                        expired.status = ApprovalStatus::Expired;
                        if !self.cas(raw, &expired, true, None).await? {
                            continue;
                        }
                    }
                    return Err(StateError::Conflict(format!(
                        "approval `{id}` is {}, not pending",
                        status_name(now.status)
                    )));
                }
                let mut next = a;
                next.status = d.status;
                next.decided_by = Some(d.by.clone());
                next.decided_ms = Some(d.now_ms);
                next.decision_reason = d.reason.clone();
                next.scope = d.scope;
                next.expires_ms = d.expires_ms;
                let index = (d.status == ApprovalStatus::Approved).then(|| match d.scope {
                    ApprovalScope::Action => self.action_index(&next.agent, &next.action),
                    ApprovalScope::Call => self.call_index(&next.fingerprint),
                });
                if self.cas(raw, &next, true, index).await? {
                    return Ok(next);
                }
            }
            Err(StateError::Conflict(format!(
                "approval `{id}` is being changed by someone else; try again"
            )))
        })
    }

    fn list(&self, status: Option<ApprovalStatus>, now_ms: u64) -> StateFuture<'_, Vec<Approval>> {
        Box::pin(async move {
            let (hash, by_created) = (self.hash(), self.redis.key("approvals:created"));
            // Newest first; equal times by id, descending, as in memory.
            let raw: Vec<Option<String>> = self
                .redis
                .run(move |mut c| {
                    let (hash, by_created) = (hash.clone(), by_created.clone());
                    async move {
                        let ids: Vec<String> = c.zrevrange(&by_created, 0, -1).await?;
                        if ids.is_empty() {
                            return Ok(Vec::new());
                        }
                        redis::cmd("HMGET")
                            .arg(&hash)
                            .arg(&ids)
                            .query_async(&mut c)
                            .await
                    }
                })
                .await?;
            Ok(raw
                .into_iter()
                .flatten()
                .filter_map(|s| serde_json::from_str::<Approval>(&s).ok())
                .map(|a| effective(&a, now_ms))
                .filter(|a| status.is_none_or(|s| s == a.status))
                .collect())
        })
    }

    fn take_grant(
        &self,
        agent: &str,
        action: &str,
        fingerprint: &str,
        now_ms: u64,
    ) -> StateFuture<'_, Option<Approval>> {
        let by_action = self.action_index(agent, action);
        let by_call = self.call_index(fingerprint);
        let (agent, action, fingerprint) =
            (agent.to_owned(), action.to_owned(), fingerprint.to_owned());
        Box::pin(async move {
            for _ in 0..CAS_TRIES {
                let hash = self.hash();
                let (a_ix, c_ix) = (by_action.clone(), by_call.clone());
                let rows: Vec<(String, Option<String>)> = self
                    .redis
                    .run(move |mut c| {
                        let (hash, a_ix, c_ix) = (hash.clone(), a_ix.clone(), c_ix.clone());
                        async move {
                            let mut ids: Vec<String> = c.smembers(&a_ix).await?;
                            let calls: Vec<String> = c.smembers(&c_ix).await?;
                            ids.extend(calls);
                            if ids.is_empty() {
                                return Ok(Vec::new());
                            }
                            let raw: Vec<Option<String>> = redis::cmd("HMGET")
                                .arg(&hash)
                                .arg(&ids)
                                .query_async(&mut c)
                                .await?;
                            Ok(ids.into_iter().zip(raw).collect())
                        }
                    })
                    .await?;
                let found = rows.into_iter().find_map(|(_, raw)| {
                    let raw = raw?;
                    let a: Approval = serde_json::from_str(&raw).ok()?;
                    let live = a.status == ApprovalStatus::Approved && now_ms < a.expires_ms;
                    let covers = match a.scope {
                        ApprovalScope::Action => a.agent == agent && a.action == action,
                        ApprovalScope::Call => a.fingerprint == fingerprint && !a.used,
                    };
                    (live && covers).then_some((raw, a))
                });
                let Some((raw, a)) = found else {
                    return Ok(None);
                };
                if a.scope == ApprovalScope::Action {
                    return Ok(Some(a));
                }
                let mut used = a;
                used.used = true;
                if self.cas(raw, &used, false, None).await? {
                    return Ok(Some(used));
                }
                // Someone used or changed it first: look again.
            }
            Ok(None)
        })
    }

    fn wait(&self, id: &str) -> StateFuture<'_, ApprovalStatus> {
        let id = id.to_owned();
        Box::pin(async move {
            // Subscribe before the first read, so a decision between the two is not missed.
            let _release = Release(&self.waiters, &id);
            let mut woken = self.waiters.subscribe(&id);
            loop {
                match self.load(&id).await {
                    Ok(Some((_, a))) => {
                        let s = effective(&a, now_ms()).status;
                        if s != ApprovalStatus::Pending {
                            return Ok(s);
                        }
                    }
                    Ok(None) => return Err(StateError::NotFound(format!("approval `{id}`"))),
                    // An outage is waited out: the caller's timer bounds the wait, and a held
                    // call that nobody could approve ends denied, never let through.
                    Err(_) => {}
                }
                tokio::select! {
                    r = woken.changed() => {
                        if r.is_err() {
                            tokio::time::sleep(POLL).await;
                        }
                    }
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        })
    }
}

fn status_name(s: ApprovalStatus) -> &'static str {
    match s {
        ApprovalStatus::Pending => "pending",
        ApprovalStatus::Approved => "approved",
        ApprovalStatus::Denied => "denied",
        ApprovalStatus::Expired => "expired",
    }
}
