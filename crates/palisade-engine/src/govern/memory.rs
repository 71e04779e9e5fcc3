//! In-memory implementations of the state traits, for one replica.
//!
//! Each table is a `HashMap` behind a `std::sync::Mutex`; no lock is held across an `.await`, and
//! every critical section is a few hash operations. Tables are bounded by `max_keys`: when a new
//! key would pass the bound, expired entries are swept first, and if the table is still full the
//! write fails with [`StateError::Full`] and the caller's failure mode decides. That is the
//! honest answer to a flood of distinct keys (one per spoofed agent id, say): refuse or let
//! through, as configured, rather than grow without limit or silently forget counters.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::gcra;
use super::state::*;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ready<'a, T: Send + 'a>(v: Result<T, StateError>) -> StateFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

/// Every in-memory store, sharing one bound.
#[derive(Debug, Clone)]
pub struct MemoryState {
    /// Rate counters.
    pub rates: Arc<MemoryRates>,
    /// The decision cache.
    pub cache: Arc<MemoryCache>,
    /// Tool pins.
    pub pins: Arc<MemoryPins>,
    /// Approvals.
    pub approvals: Arc<MemoryApprovals>,
    /// Sessions.
    pub sessions: Arc<MemorySessions>,
    /// The audit log.
    pub audit: Arc<MemoryAudit>,
}

impl MemoryState {
    /// Stores holding at most `max_keys` keys a table.
    pub fn new(max_keys: usize) -> Self {
        MemoryState {
            rates: Arc::new(MemoryRates::new(max_keys)),
            cache: Arc::new(MemoryCache::new(max_keys)),
            pins: Arc::new(MemoryPins::new(max_keys)),
            approvals: Arc::new(MemoryApprovals::new(max_keys)),
            sessions: Arc::new(MemorySessions::new(max_keys)),
            audit: Arc::new(MemoryAudit::new(max_keys.min(100_000))),
        }
    }
}

/// Makes room for one more key in `map`, sweeping entries `expired` says are gone.
fn make_room<V>(
    map: &mut HashMap<String, V>,
    key: &str,
    max: usize,
    table: &'static str,
    expired: impl Fn(&V) -> bool,
) -> Result<(), StateError> {
    if map.len() < max || map.contains_key(key) {
        return Ok(());
    }
    map.retain(|_, v| !expired(v));
    if map.len() < max {
        Ok(())
    } else {
        Err(StateError::Full(table))
    }
}

/// GCRA counters: one theoretical arrival time per key.
#[derive(Debug)]
pub struct MemoryRates {
    max: usize,
    tat: Mutex<HashMap<String, u64>>,
}

impl MemoryRates {
    fn new(max: usize) -> Self {
        MemoryRates {
            max,
            tat: Mutex::new(HashMap::new()),
        }
    }
}

impl RateStore for MemoryRates {
    fn check(&self, key: &str, quota: Quota, now_ms: u64) -> StateFuture<'_, RateOutcome> {
        let mut map = lock(&self.tat);
        // A key whose arrival time is in the past holds no state worth keeping.
        // TATs are in microseconds.
        let now_us = now_ms.saturating_mul(1_000);
        let r = make_room(&mut map, key, self.max, "rate_counters", |tat| {
            *tat <= now_us
        })
        .map(|()| {
            let tat = map.get(key).copied().unwrap_or(0);
            let (outcome, new_tat) = gcra::check(tat, quota, now_ms);
            if outcome.allowed {
                map.insert(key.to_owned(), new_tat);
            }
            outcome
        });
        ready(r)
    }
}

/// The decision cache.
#[derive(Debug)]
pub struct MemoryCache {
    max: usize,
    map: Mutex<HashMap<String, (CachedDecision, u64)>>,
}

impl MemoryCache {
    fn new(max: usize) -> Self {
        MemoryCache {
            max,
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl DecisionCache for MemoryCache {
    fn get(&self, key: &str, now_ms: u64) -> StateFuture<'_, Option<CachedDecision>> {
        let map = lock(&self.map);
        let v = map
            .get(key)
            .filter(|(_, until)| *until > now_ms)
            .map(|(d, _)| d.clone());
        ready(Ok(v))
    }

    fn put(
        &self,
        key: &str,
        value: CachedDecision,
        ttl_ms: u64,
        now_ms: u64,
    ) -> StateFuture<'_, ()> {
        let mut map = lock(&self.map);
        let r = make_room(&mut map, key, self.max, "decision_cache", |(_, until)| {
            *until <= now_ms
        })
        .map(|()| {
            map.insert(key.to_owned(), (value, now_ms.saturating_add(ttl_ms)));
        });
        ready(r)
    }
}

/// Tool pins, per scope.
#[derive(Debug)]
pub struct MemoryPins {
    max: usize,
    map: Mutex<HashMap<String, HashMap<String, ToolPin>>>,
}

impl MemoryPins {
    fn new(max: usize) -> Self {
        MemoryPins {
            max,
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl PinStore for MemoryPins {
    fn get(&self, scope: &str, tool: &str) -> StateFuture<'_, Option<ToolPin>> {
        let map = lock(&self.map);
        ready(Ok(map.get(scope).and_then(|s| s.get(tool)).cloned()))
    }

    fn put(&self, scope: &str, pin: ToolPin) -> StateFuture<'_, ()> {
        let mut map = lock(&self.map);
        let total: usize = map.values().map(HashMap::len).sum();
        let exists = map.get(scope).is_some_and(|s| s.contains_key(&pin.tool));
        if !exists && total >= self.max {
            return ready(Err(StateError::Full("tool_pins")));
        }
        map.entry(scope.to_owned())
            .or_default()
            .insert(pin.tool.clone(), pin);
        ready(Ok(()))
    }

    fn list(&self, scope: Option<&str>) -> StateFuture<'_, Vec<(String, ToolPin)>> {
        let map = lock(&self.map);
        let mut out: Vec<(String, ToolPin)> = map
            .iter()
            .filter(|(s, _)| scope.is_none_or(|want| want == s.as_str()))
            .flat_map(|(s, tools)| tools.values().map(move |p| (s.clone(), p.clone())))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1.tool).cmp(&(&b.0, &b.1.tool)));
        ready(Ok(out))
    }
}

/// Approvals, each with a channel that wakes its waiters.
#[derive(Debug)]
pub struct MemoryApprovals {
    max: usize,
    map: Mutex<HashMap<String, (Approval, watch::Sender<ApprovalStatus>)>>,
}

impl MemoryApprovals {
    fn new(max: usize) -> Self {
        MemoryApprovals {
            max,
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// The approval as of `now_ms`: pending past its expiry is expired; a grant past its expiry too.
pub fn effective(a: &Approval, now_ms: u64) -> Approval {
    let mut a = a.clone();
    if matches!(a.status, ApprovalStatus::Pending | ApprovalStatus::Approved)
        && now_ms >= a.expires_ms
    {
        a.status = ApprovalStatus::Expired;
    }
    a
}

impl ApprovalStore for MemoryApprovals {
    fn create(&self, approval: Approval) -> StateFuture<'_, ()> {
        let mut map = lock(&self.map);
        let now = approval.created_ms;
        let r = make_room(&mut map, &approval.id, self.max, "approvals", |(a, _)| {
            effective(a, now).status != ApprovalStatus::Pending && a.expires_ms <= now
        })
        .map(|()| {
            let (tx, _) = watch::channel(approval.status);
            map.insert(approval.id.clone(), (approval, tx));
        });
        ready(r)
    }

    fn get(&self, id: &str, now_ms: u64) -> StateFuture<'_, Option<Approval>> {
        let map = lock(&self.map);
        ready(Ok(map.get(id).map(|(a, _)| effective(a, now_ms))))
    }

    fn decide(&self, id: &str, d: ApprovalDecision) -> StateFuture<'_, Approval> {
        let mut map = lock(&self.map);
        let Some((a, tx)) = map.get_mut(id) else {
            return ready(Err(StateError::NotFound(format!("approval `{id}`"))));
        };
        let now = effective(a, d.now_ms);
        if now.status != ApprovalStatus::Pending {
            let status = now.status;
            if status == ApprovalStatus::Expired && a.status == ApprovalStatus::Pending {
                a.status = ApprovalStatus::Expired;
                tx.send_replace(ApprovalStatus::Expired);
            }
            return ready(Err(StateError::Conflict(format!(
                "approval `{id}` is {}, not pending",
                serde_json::to_value(status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ))));
        }
        a.status = d.status;
        a.decided_by = Some(d.by);
        a.decided_ms = Some(d.now_ms);
        a.decision_reason = d.reason;
        a.scope = d.scope;
        a.expires_ms = d.expires_ms;
        tx.send_replace(d.status);
        ready(Ok(a.clone()))
    }

    fn list(&self, status: Option<ApprovalStatus>, now_ms: u64) -> StateFuture<'_, Vec<Approval>> {
        let map = lock(&self.map);
        let mut out: Vec<Approval> = map
            .values()
            .map(|(a, _)| effective(a, now_ms))
            .filter(|a| status.is_none_or(|s| s == a.status))
            .collect();
        out.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        ready(Ok(out))
    }

    fn take_grant(
        &self,
        agent: &str,
        action: &str,
        fingerprint: &str,
        now_ms: u64,
    ) -> StateFuture<'_, Option<Approval>> {
        let mut map = lock(&self.map);
        let found = map.values_mut().find_map(|(a, _)| {
            let live = a.status == ApprovalStatus::Approved && now_ms < a.expires_ms;
            let covers = match a.scope {
                ApprovalScope::Action => a.agent == agent && a.action == action,
                ApprovalScope::Call => a.fingerprint == fingerprint && !a.used,
            };
            (live && covers).then(|| {
                if a.scope == ApprovalScope::Call {
                    a.used = true;
                }
                a.clone()
            })
        });
        ready(Ok(found))
    }

    fn wait(&self, id: &str) -> StateFuture<'_, ApprovalStatus> {
        let rx = {
            let map = lock(&self.map);
            map.get(id).map(|(_, tx)| tx.subscribe())
        };
        let id = id.to_owned();
        Box::pin(async move {
            let Some(mut rx) = rx else {
                return Err(StateError::NotFound(format!("approval `{id}`")));
            };
            loop {
                let s = *rx.borrow_and_update();
                if s != ApprovalStatus::Pending {
                    return Ok(s);
                }
                if rx.changed().await.is_err() {
                    return Err(StateError::Unavailable("approval store dropped".into()));
                }
            }
        })
    }
}

/// Sessions.
#[derive(Debug)]
pub struct MemorySessions {
    max: usize,
    map: Mutex<HashMap<String, (Vec<SessionStep>, u64)>>,
}

impl MemorySessions {
    fn new(max: usize) -> Self {
        MemorySessions {
            max,
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// Steps kept per session; older ones are dropped first (a flow needs its earliest labelled step,
/// so labels seen are folded into the first kept step's list).
pub const MAX_STEPS: usize = 256;

impl SessionStore for MemorySessions {
    fn steps(&self, session: &str, now_ms: u64) -> StateFuture<'_, Vec<SessionStep>> {
        let map = lock(&self.map);
        let v = map
            .get(session)
            .filter(|(_, until)| *until > now_ms)
            .map(|(s, _)| s.clone())
            .unwrap_or_default();
        ready(Ok(v))
    }

    fn append(
        &self,
        session: &str,
        step: SessionStep,
        ttl_ms: u64,
        now_ms: u64,
    ) -> StateFuture<'_, ()> {
        let mut map = lock(&self.map);
        let r = make_room(&mut map, session, self.max, "sessions", |(_, until)| {
            *until <= now_ms
        })
        .map(|()| {
            let entry = map
                .entry(session.to_owned())
                .or_insert_with(|| (Vec::new(), 0));
            if entry.1 <= now_ms {
                entry.0.clear();
            }
            entry.0.push(step);
            if entry.0.len() > MAX_STEPS {
                let dropped = entry.0.remove(0);
                if let Some(first) = entry.0.first_mut() {
                    for l in dropped.labels {
                        if !first.labels.contains(&l) {
                            first.labels.push(l);
                        }
                    }
                }
            }
            entry.1 = now_ms.saturating_add(ttl_ms);
        });
        ready(r)
    }
}

/// The audit log: a bounded ring, newest last.
#[derive(Debug)]
pub struct MemoryAudit {
    max: usize,
    ring: Mutex<VecDeque<AuditEntry>>,
}

impl MemoryAudit {
    fn new(max: usize) -> Self {
        MemoryAudit {
            max: max.max(1),
            ring: Mutex::new(VecDeque::new()),
        }
    }
}

impl AuditLog for MemoryAudit {
    fn record(&self, entry: AuditEntry) -> StateFuture<'_, ()> {
        let mut ring = lock(&self.ring);
        if ring.len() >= self.max {
            ring.pop_front();
        }
        ring.push_back(entry);
        ready(Ok(()))
    }

    fn recent(&self, limit: usize) -> StateFuture<'_, Vec<AuditEntry>> {
        let ring = lock(&self.ring);
        ready(Ok(ring.iter().rev().take(limit).cloned().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(f: StateFuture<'_, T>) -> Result<T, StateError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(f)
    }

    #[test]
    fn full_tables_refuse_new_keys_until_something_expires() {
        let s = MemoryState::new(2);
        let q = Quota {
            max_requests: 1,
            period_ms: 1_000,
        };
        assert!(block_on(s.rates.check("a", q, 0)).is_ok());
        assert!(block_on(s.rates.check("b", q, 0)).is_ok());
        assert_eq!(
            block_on(s.rates.check("c", q, 0)),
            Err(StateError::Full("rate_counters"))
        );
        // Known keys still answer, and once the counters expire there is room again.
        assert!(block_on(s.rates.check("a", q, 10)).is_ok_and(|o| !o.allowed));
        assert!(block_on(s.rates.check("c", q, 5_000)).is_ok_and(|o| o.allowed));
    }

    #[test]
    fn waiters_wake_on_a_decision_and_call_grants_are_used_once() {
        let s = MemoryState::new(10);
        let a = Approval {
            id: "ap1".into(),
            status: ApprovalStatus::Pending,
            agent: "bot".into(),
            action: "tools/call:x".into(),
            route: "r".into(),
            fingerprint: "fp".into(),
            reasons: vec![],
            risk_score: 50,
            created_ms: 0,
            expires_ms: 1_000,
            scope: ApprovalScope::Call,
            used: false,
            decided_by: None,
            decided_ms: None,
            decision_reason: None,
        };
        assert!(block_on(s.approvals.create(a)).is_ok());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let approvals = s.approvals.clone();
        let status = rt.block_on(async move {
            let waiter = approvals.wait("ap1");
            let decided = approvals.decide(
                "ap1",
                ApprovalDecision {
                    status: ApprovalStatus::Approved,
                    by: "alice".into(),
                    reason: Some("ok".into()),
                    scope: ApprovalScope::Call,
                    expires_ms: 10_000,
                    now_ms: 500,
                },
            );
            assert!(decided.await.is_ok());
            waiter.await
        });
        assert_eq!(status, Ok(ApprovalStatus::Approved));
        let g = block_on(s.approvals.take_grant("bot", "tools/call:x", "fp", 600));
        assert!(g.is_ok_and(|g| g.is_some()));
        let g = block_on(s.approvals.take_grant("bot", "tools/call:x", "fp", 700));
        assert_eq!(g, Ok(None));
    }
}
