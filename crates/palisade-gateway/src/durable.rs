//! Governance records that outlive the process: tool pins, approvals and the audit log of admin
//! actions, kept in the records' store (SQLite or PostgreSQL).
//!
//! Each wraps the in-memory implementation, which stays the one that answers: reads never touch
//! the database, and a waiting held call still wakes in-process when its approval is decided.
//! Every change is then handed to one persister thread through a bounded queue, in order, and
//! written there (write-behind): the async runtime never waits on SQL, and a database that is
//! down loses nothing already in memory. What was stored is loaded into memory at start.
//! The price: a change made in the last moments before a crash, or while the database was
//! unreachable, may be missing after a restart; failed writes are logged and counted
//! ([`Persister::failed`]).
//!
//! With `state.redis`, Redis holds pins and approvals (shared by replicas) and only the audit log
//! comes here: call [`audit`] alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use palisade_engine::govern::state::{
    Approval, ApprovalDecision, ApprovalStatus, ApprovalStore, AuditEntry, AuditLog, PinStore,
    StateError, StateFuture, ToolPin,
};
use palisade_engine::govern::Stores;
use palisade_store::{ApprovalRecord, AuditRecord, Store};

/// Changes waiting for the persister beyond which they are dropped (and logged).
const QUEUE: usize = 4_096;
/// Approvals loaded at start, newest first.
const LOAD_APPROVALS: usize = 10_000;
/// A pin whose only change is `last_seen_ms` is written again at most this often.
const LAST_SEEN_EVERY_MS: u64 = 60_000;

/// One change to write.
#[derive(Debug)]
enum Op {
    Pin {
        scope: String,
        pin: Box<ToolPin>,
    },
    NewApproval(Box<Approval>),
    Decided {
        approval: Box<Approval>,
        was: ApprovalStatus,
    },
    Audit(AuditEntry),
}

/// The thread that writes governance changes to the store, in order.
#[derive(Debug)]
pub struct Persister {
    tx: SyncSender<Op>,
    failed: Arc<AtomicU64>,
}

impl Persister {
    fn start(store: Arc<Store>) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = sync_channel(QUEUE);
        let failed = Arc::new(AtomicU64::new(0));
        let f = failed.clone();
        std::thread::Builder::new()
            .name("palisade-governance-store".into())
            .spawn(move || persist(&rx, &store, &f))?;
        Ok(Arc::new(Persister { tx, failed }))
    }

    fn send(&self, op: Op) {
        if let Err(e) = self.tx.try_send(op) {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let why = match e {
                TrySendError::Full(_) => "queue full",
                TrySendError::Disconnected(_) => "persister stopped",
            };
            tracing::warn!(
                why,
                "governance: a change was not stored; it lives in memory only"
            );
        }
    }

    /// Changes that could not be stored (queue full, or the database refused).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

fn status_str(s: ApprovalStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn approval_record(a: &Approval) -> ApprovalRecord {
    ApprovalRecord {
        id: a.id.clone(),
        status: status_str(a.status),
        agent: a.agent.clone(),
        action: a.action.clone(),
        fingerprint: a.fingerprint.clone(),
        scope: serde_json::to_value(a.scope)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        used: a.used,
        created_ms: i64::try_from(a.created_ms).unwrap_or(i64::MAX),
        expires_ms: i64::try_from(a.expires_ms).unwrap_or(i64::MAX),
        doc: serde_json::to_value(a).unwrap_or_default(),
    }
}

fn write(store: &Store, op: Op) -> Result<(), palisade_store::StoreError> {
    match op {
        Op::Pin { scope, pin } => {
            let state = serde_json::to_value(pin.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let doc = serde_json::to_value(&*pin).unwrap_or_default();
            store.put_pin(&scope, &pin.tool, &state, &doc)
        }
        Op::NewApproval(a) => store.create_approval(&approval_record(&a)),
        Op::Decided { approval, was } => {
            if !store.update_approval(&approval_record(&approval), &status_str(was))? {
                tracing::warn!(
                    id = %approval.id,
                    "governance: the stored approval had moved on; not overwritten"
                );
            }
            Ok(())
        }
        Op::Audit(e) => store.append_audit(&[AuditRecord {
            at_ms: i64::try_from(e.at_ms).unwrap_or(i64::MAX),
            actor: e.actor,
            action: e.action,
            target: e.target,
            reason: e.reason,
            detail: e.detail,
        }]),
    }
}

fn persist(rx: &Receiver<Op>, store: &Store, failed: &AtomicU64) {
    while let Ok(op) = rx.recv() {
        // One retry after a pause covers a database restarting; beyond that the change stays in
        // memory only, and the next change of the same record writes it whole again.
        let mut result = write(store, clone_op(&op));
        if matches!(&result, Err(e) if e.is_transient()) {
            std::thread::sleep(std::time::Duration::from_millis(500));
            result = write(store, op);
        }
        if let Err(e) = result {
            failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "governance: a change could not be stored");
        }
    }
}

fn clone_op(op: &Op) -> Op {
    match op {
        Op::Pin { scope, pin } => Op::Pin {
            scope: scope.clone(),
            pin: pin.clone(),
        },
        Op::NewApproval(a) => Op::NewApproval(a.clone()),
        Op::Decided { approval, was } => Op::Decided {
            approval: approval.clone(),
            was: *was,
        },
        Op::Audit(e) => Op::Audit(e.clone()),
    }
}

fn unavailable(e: impl std::fmt::Display) -> String {
    format!("cannot load governance records from the store: {e}")
}

/// Keeps the audit log in `store`: entries stored, and the newest ones loaded into memory.
pub fn audit(stores: &mut Stores, store: &Arc<Store>, p: &Arc<Persister>) -> Result<(), String> {
    let loaded = store.audit(1_000).map_err(unavailable)?;
    stores.audit = Arc::new(DurableAudit {
        front: stores.audit.clone(),
        persister: p.clone(),
        loaded,
    });
    Ok(())
}

/// Keeps tool pins and approvals in `store`, loading what was stored into the memory front.
/// Blocks while it loads (at start-up).
pub fn pins_and_approvals(
    stores: &mut Stores,
    store: &Arc<Store>,
    p: &Arc<Persister>,
) -> Result<(), String> {
    let pins = store.pins(None).map_err(unavailable)?;
    let approvals = store.approvals(None, LOAD_APPROVALS).map_err(unavailable)?;
    let front_pins = stores.pins.clone();
    let front_approvals = stores.approvals.clone();
    let mut persisted = HashMap::new();
    let (mut n_pins, mut n_approvals) = (0usize, 0usize);
    // The memory stores answer at once: their futures are ready when made.
    let now = futures_ready(async {
        for (scope, doc) in pins {
            if let Ok(pin) = serde_json::from_value::<ToolPin>(doc) {
                persisted.insert((scope.clone(), pin.tool.clone()), pin.last_seen_ms);
                front_pins.put(&scope, pin).await?;
                n_pins += 1;
            }
        }
        // Oldest first, so that the memory store's room-making keeps the newest.
        for rec in approvals.into_iter().rev() {
            if let Ok(mut a) = serde_json::from_value::<Approval>(rec.doc) {
                a.used = rec.used;
                front_approvals.create(a).await?;
                n_approvals += 1;
            }
        }
        Ok::<(), StateError>(())
    });
    now.map_err(unavailable)?;
    tracing::info!(
        pins = n_pins,
        approvals = n_approvals,
        "governance: loaded from the store"
    );
    stores.pins = Arc::new(DurablePins {
        front: front_pins,
        persister: p.clone(),
        persisted: Mutex::new(persisted),
    });
    stores.approvals = Arc::new(DurableApprovals {
        front: front_approvals,
        persister: p.clone(),
    });
    Ok(())
}

/// Starts the persister over `store`.
pub fn persister(store: &Arc<Store>) -> Result<Arc<Persister>, String> {
    Persister::start(store.clone()).map_err(|e| format!("cannot start the governance store: {e}"))
}

/// Runs a future that is ready at once (the memory stores'), without a runtime.
fn futures_ready<T>(
    f: impl std::future::Future<Output = Result<T, StateError>>,
) -> Result<T, StateError> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => Err(StateError::Unavailable(
            "the memory store did not answer at once".into(),
        )),
    }
}

/// The audit log: memory for this process's entries, the store for what came before.
#[derive(Debug)]
struct DurableAudit {
    front: Arc<dyn AuditLog>,
    persister: Arc<Persister>,
    /// The newest stored entries at start, newest first.
    loaded: Vec<AuditRecord>,
}

impl AuditLog for DurableAudit {
    fn record(&self, entry: AuditEntry) -> StateFuture<'_, ()> {
        self.persister.send(Op::Audit(entry.clone()));
        self.front.record(entry)
    }

    fn recent(&self, limit: usize) -> StateFuture<'_, Vec<AuditEntry>> {
        Box::pin(async move {
            let mut out = self.front.recent(limit).await?;
            let more = limit.saturating_sub(out.len());
            out.extend(self.loaded.iter().take(more).map(|r| AuditEntry {
                at_ms: u64::try_from(r.at_ms).unwrap_or(0),
                actor: r.actor.clone(),
                action: r.action.clone(),
                target: r.target.clone(),
                reason: r.reason.clone(),
                detail: r.detail.clone(),
            }));
            Ok(out)
        })
    }
}

/// Tool pins: memory answers, the store keeps.
#[derive(Debug)]
struct DurablePins {
    front: Arc<dyn PinStore>,
    persister: Arc<Persister>,
    /// The `last_seen_ms` last written per (scope, tool).
    persisted: Mutex<HashMap<(String, String), u64>>,
}

impl PinStore for DurablePins {
    fn get(&self, scope: &str, tool: &str) -> StateFuture<'_, Option<ToolPin>> {
        self.front.get(scope, tool)
    }

    fn put(&self, scope: &str, pin: ToolPin) -> StateFuture<'_, ()> {
        let scope = scope.to_owned();
        Box::pin(async move {
            let before = self.front.get(&scope, &pin.tool).await?;
            self.front.put(&scope, pin.clone()).await?;
            // A list seen again only moves `last_seen_ms`: write that at most once a minute.
            let key = (scope.clone(), pin.tool.clone());
            let only_seen = before.is_some_and(|b| {
                ToolPin {
                    last_seen_ms: pin.last_seen_ms,
                    ..b
                } == pin
            });
            let mut persisted = self
                .persisted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let last = persisted.get(&key).copied().unwrap_or(0);
            if only_seen && pin.last_seen_ms.saturating_sub(last) < LAST_SEEN_EVERY_MS {
                return Ok(());
            }
            persisted.insert(key, pin.last_seen_ms);
            drop(persisted);
            self.persister.send(Op::Pin {
                scope,
                pin: Box::new(pin),
            });
            Ok(())
        })
    }

    fn list(&self, scope: Option<&str>) -> StateFuture<'_, Vec<(String, ToolPin)>> {
        self.front.list(scope)
    }
}

/// Approvals: memory answers and wakes waiters, the store keeps.
#[derive(Debug)]
struct DurableApprovals {
    front: Arc<dyn ApprovalStore>,
    persister: Arc<Persister>,
}

impl ApprovalStore for DurableApprovals {
    fn create(&self, approval: Approval) -> StateFuture<'_, ()> {
        Box::pin(async move {
            self.front.create(approval.clone()).await?;
            self.persister.send(Op::NewApproval(Box::new(approval)));
            Ok(())
        })
    }

    fn get(&self, id: &str, now_ms: u64) -> StateFuture<'_, Option<Approval>> {
        self.front.get(id, now_ms)
    }

    fn decide(&self, id: &str, decision: ApprovalDecision) -> StateFuture<'_, Approval> {
        let id = id.to_owned();
        Box::pin(async move {
            let a = self.front.decide(&id, decision).await?;
            self.persister.send(Op::Decided {
                approval: Box::new(a.clone()),
                was: ApprovalStatus::Pending,
            });
            Ok(a)
        })
    }

    fn list(&self, status: Option<ApprovalStatus>, now_ms: u64) -> StateFuture<'_, Vec<Approval>> {
        self.front.list(status, now_ms)
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
            let got = self
                .front
                .take_grant(&agent, &action, &fingerprint, now_ms)
                .await?;
            if let Some(a) = got.as_ref().filter(|a| a.used) {
                self.persister.send(Op::Decided {
                    approval: Box::new(a.clone()),
                    was: ApprovalStatus::Approved,
                });
            }
            Ok(got)
        })
    }

    fn wait(&self, id: &str) -> StateFuture<'_, ApprovalStatus> {
        self.front.wait(id)
    }
}
