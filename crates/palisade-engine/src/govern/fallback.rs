//! Shared state with this replica's memory behind it, for `fail_open` routes.
//!
//! [`with_local_fallback`] wraps every store of a shared (network) [`Stores`] so that an
//! operation the shared store answers with [`StateError::Unavailable`] is done on the local
//! store instead. [`super::Governance`] gives the wrapped stores to routes whose failure mode is
//! `fail_open` (when [`Stores::fallback`] is set); `fail_closed` routes use the shared stores bare, so an outage refuses
//! their governed requests. The trade-off of degrading rather than letting everything through:
//! while the shared store is down, each replica counts, caches and pins on its own (a limit of
//! 100 becomes 100 per replica), and an approval asked for during the outage lives only on the
//! replica that asked. Pins are written through to the local store whenever the shared store
//! answers, so a tool quarantined before the outage stays hidden during it. Telling operators
//! about an outage is the shared store's job (it knows when one starts and ends); this module
//! does no I/O of its own.

use std::sync::Arc;

use super::state::*;
use super::Stores;

/// The stores `fail_open` routes use: each of `shared`'s, falling back to `local`'s while the
/// shared one is unavailable. The audit log and the probe are `shared`'s.
pub fn with_local_fallback(shared: &Stores, local: Stores) -> Stores {
    Stores {
        rates: Arc::new(Fallback {
            shared: shared.rates.clone(),
            local: local.rates,
        }),
        cache: Arc::new(Fallback {
            shared: shared.cache.clone(),
            local: local.cache,
        }),
        pins: Arc::new(Fallback {
            shared: shared.pins.clone(),
            local: local.pins,
        }),
        approvals: Arc::new(Fallback {
            shared: shared.approvals.clone(),
            local: local.approvals,
        }),
        sessions: Arc::new(Fallback {
            shared: shared.sessions.clone(),
            local: local.sessions,
        }),
        audit: shared.audit.clone(),
        fallback: None,
        probe: shared.probe.clone(),
    }
}

/// One store of each kind: try `shared`, fall back to `local` when it is unavailable.
#[derive(Debug)]
struct Fallback<T: ?Sized> {
    shared: Arc<T>,
    local: Arc<T>,
}

/// Whether `r` sends the operation to the local store (and counts it when it does).
fn unavailable<T>(r: &Result<T, StateError>) -> bool {
    let down = matches!(r, Err(StateError::Unavailable(_)));
    if down {
        crate::metrics::state_fallback();
    }
    down
}

impl RateStore for Fallback<dyn RateStore> {
    fn check(&self, key: &str, quota: Quota, now_ms: u64) -> StateFuture<'_, RateOutcome> {
        let key = key.to_owned();
        Box::pin(async move {
            let r = self.shared.check(&key, quota, now_ms).await;
            if unavailable(&r) {
                return self.local.check(&key, quota, now_ms).await;
            }
            r
        })
    }
}

impl DecisionCache for Fallback<dyn DecisionCache> {
    fn get(&self, key: &str, now_ms: u64) -> StateFuture<'_, Option<CachedDecision>> {
        let key = key.to_owned();
        Box::pin(async move {
            let r = self.shared.get(&key, now_ms).await;
            if unavailable(&r) {
                return self.local.get(&key, now_ms).await;
            }
            r
        })
    }

    fn put(
        &self,
        key: &str,
        value: CachedDecision,
        ttl_ms: u64,
        now_ms: u64,
    ) -> StateFuture<'_, ()> {
        let key = key.to_owned();
        Box::pin(async move {
            let r = self.shared.put(&key, value.clone(), ttl_ms, now_ms).await;
            if unavailable(&r) {
                return self.local.put(&key, value, ttl_ms, now_ms).await;
            }
            r
        })
    }
}

impl PinStore for Fallback<dyn PinStore> {
    fn get(&self, scope: &str, tool: &str) -> StateFuture<'_, Option<ToolPin>> {
        let (scope, tool) = (scope.to_owned(), tool.to_owned());
        Box::pin(async move {
            let r = self.shared.get(&scope, &tool).await;
            if unavailable(&r) {
                return self.local.get(&scope, &tool).await;
            }
            r
        })
    }

    fn put(&self, scope: &str, pin: ToolPin) -> StateFuture<'_, ()> {
        let scope = scope.to_owned();
        Box::pin(async move {
            let r = self.shared.put(&scope, pin.clone()).await;
            if r.is_ok() || unavailable(&r) {
                // Written through: the local copy is what this replica serves during an outage.
                let local = self.local.put(&scope, pin).await;
                if r.is_err() {
                    return local;
                }
            }
            r
        })
    }

    fn list(&self, scope: Option<&str>) -> StateFuture<'_, Vec<(String, ToolPin)>> {
        let scope = scope.map(str::to_owned);
        Box::pin(async move {
            let r = self.shared.list(scope.as_deref()).await;
            match &r {
                Ok(pins) => {
                    for (s, pin) in pins {
                        // A full local table only means a smaller fallback; the shared answer stands.
                        let _ = self.local.put(s, pin.clone()).await;
                    }
                }
                Err(StateError::Unavailable(_)) => {
                    return self.local.list(scope.as_deref()).await;
                }
                Err(_) => {}
            }
            r
        })
    }
}

impl ApprovalStore for Fallback<dyn ApprovalStore> {
    fn create(&self, approval: Approval) -> StateFuture<'_, ()> {
        Box::pin(async move {
            let r = self.shared.create(approval.clone()).await;
            if unavailable(&r) {
                return self.local.create(approval).await;
            }
            r
        })
    }

    fn get(&self, id: &str, now_ms: u64) -> StateFuture<'_, Option<Approval>> {
        let id = id.to_owned();
        Box::pin(async move {
            match self.shared.get(&id, now_ms).await {
                // Asked for during an outage: only here.
                Ok(None) | Err(StateError::Unavailable(_)) => self.local.get(&id, now_ms).await,
                r => r,
            }
        })
    }

    fn decide(&self, id: &str, decision: ApprovalDecision) -> StateFuture<'_, Approval> {
        let id = id.to_owned();
        Box::pin(async move {
            match self.shared.decide(&id, decision.clone()).await {
                Err(StateError::NotFound(_) | StateError::Unavailable(_)) => {
                    self.local.decide(&id, decision).await
                }
                r => r,
            }
        })
    }

    fn list(&self, status: Option<ApprovalStatus>, now_ms: u64) -> StateFuture<'_, Vec<Approval>> {
        Box::pin(async move {
            let r = self.shared.list(status, now_ms).await;
            if unavailable(&r) {
                return self.local.list(status, now_ms).await;
            }
            r
        })
    }

    fn take_grant(
        &self,
        agent: &str,
        action: &str,
        fingerprint: &str,
        now_ms: u64,
    ) -> StateFuture<'_, Option<Approval>> {
        let (agent, action, fingerprint) =
            (agent.to_owned(), action.to_owned(), fingerprint.to_owned());
        Box::pin(async move {
            let r = self
                .shared
                .take_grant(&agent, &action, &fingerprint, now_ms)
                .await;
            if unavailable(&r) {
                return self
                    .local
                    .take_grant(&agent, &action, &fingerprint, now_ms)
                    .await;
            }
            r
        })
    }

    fn wait(&self, id: &str) -> StateFuture<'_, ApprovalStatus> {
        let id = id.to_owned();
        Box::pin(async move {
            match self.shared.wait(&id).await {
                Err(StateError::NotFound(_) | StateError::Unavailable(_)) => {
                    self.local.wait(&id).await
                }
                r => r,
            }
        })
    }
}

impl SessionStore for Fallback<dyn SessionStore> {
    fn steps(&self, session: &str, now_ms: u64) -> StateFuture<'_, Vec<SessionStep>> {
        let session = session.to_owned();
        Box::pin(async move {
            let r = self.shared.steps(&session, now_ms).await;
            if unavailable(&r) {
                return self.local.steps(&session, now_ms).await;
            }
            r
        })
    }

    fn append(
        &self,
        session: &str,
        step: SessionStep,
        ttl_ms: u64,
        now_ms: u64,
    ) -> StateFuture<'_, ()> {
        let session = session.to_owned();
        Box::pin(async move {
            let r = self
                .shared
                .append(&session, step.clone(), ttl_ms, now_ms)
                .await;
            if unavailable(&r) {
                return self.local.append(&session, step, ttl_ms, now_ms).await;
            }
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::govern::memory::MemoryState;

    /// A shared store that is down, or up and forwarding to memory.
    #[derive(Debug)]
    struct Flaky {
        down: std::sync::atomic::AtomicBool,
        inner: Arc<dyn RateStore>,
    }

    impl RateStore for Flaky {
        fn check(&self, key: &str, quota: Quota, now_ms: u64) -> StateFuture<'_, RateOutcome> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Box::pin(std::future::ready(Err(StateError::Unavailable(
                    "down".into(),
                ))));
            }
            self.inner.check(key, quota, now_ms)
        }
    }

    fn block_on<T>(f: StateFuture<'_, T>) -> Result<T, StateError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(f)
    }

    #[test]
    fn fail_open_counts_locally_while_the_shared_store_is_down_and_goes_back_after() {
        let flaky = Arc::new(Flaky {
            down: false.into(),
            inner: MemoryState::new(10).rates,
        });
        let mut shared = Stores::memory(10);
        shared.rates = flaky.clone();
        let open = with_local_fallback(&shared, Stores::memory(10));
        let closed = &shared;
        let q = Quota {
            max_requests: 2,
            period_ms: 60_000,
        };
        assert!(block_on(open.rates.check("k", q, 0)).is_ok_and(|o| o.allowed));
        flaky.down.store(true, std::sync::atomic::Ordering::SeqCst);
        // Closed routes see the outage; open ones count on the local store, with its own quota.
        assert!(matches!(
            block_on(closed.rates.check("k", q, 0)),
            Err(StateError::Unavailable(_))
        ));
        assert!(block_on(open.rates.check("k", q, 0)).is_ok_and(|o| o.allowed));
        assert!(block_on(open.rates.check("k", q, 0)).is_ok_and(|o| o.allowed));
        assert!(block_on(open.rates.check("k", q, 0)).is_ok_and(|o| !o.allowed));
        // Back: the shared counter (one used) answers again.
        flaky.down.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(block_on(open.rates.check("k", q, 0)).is_ok_and(|o| o.allowed && o.remaining == 0));
    }
}
