//! Governance state behind traits: rate counters, the decision cache, tool pins, approvals,
//! sessions and the audit log.
//!
//! Every method is fallible and returns a boxed future, so that an implementation over the network
//! (Redis: `EVAL` of a GCRA script for counters, `SET … PX` for the cache, hashes for pins and
//! approvals, pub/sub for approval decisions) fits the same traits as the in-memory one, and
//! callers never change. Callers apply the route's failure mode to every [`StateError`]. Values
//! are plain serde types so they can be stored as JSON anywhere. Time is passed in (`now_ms`,
//! milliseconds since the Unix epoch), so expiry is the caller's clock, testable and the same on
//! every replica that shares a store.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// A future returned by a state store.
pub type StateFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// Why a state store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The store is at its configured capacity and nothing in it has expired.
    #[error("state store `{0}` is full")]
    Full(&'static str),
    /// The store could not be reached or failed (network stores).
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// A record that must exist does not.
    #[error("{0} not found")]
    NotFound(String),
    /// The operation does not apply to the record's current state.
    #[error("{0}")]
    Conflict(String),
}

/// A rate: `max_requests` per `period_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Requests allowed per period (the burst).
    pub max_requests: u32,
    /// The period in milliseconds.
    pub period_ms: u64,
}

/// What a rate check answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateOutcome {
    /// Whether the request fits in the quota (and was counted).
    pub allowed: bool,
    /// Requests still allowed right now, after this one.
    pub remaining: u32,
    /// When refused: how long until one more request fits.
    pub retry_after_ms: u64,
}

/// Rate counters.
pub trait RateStore: Send + Sync + Debug {
    /// Checks one request against `quota` for `key` and counts it when it fits; atomic per key.
    fn check(&self, key: &str, quota: Quota, now_ms: u64) -> StateFuture<'_, RateOutcome>;
}

/// A governance decision that can be reused for the same agent, action and normalised path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedDecision {
    /// `allow`, `deny` or `hold`.
    pub verdict: StaticVerdict,
    /// 0–100.
    pub risk_score: u8,
    /// Why.
    pub reasons: Vec<String>,
}

/// The part of a governance decision that depends only on who does what where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaticVerdict {
    /// Go on to rate limits, flows and detection.
    Allow,
    /// Refuse.
    Deny,
    /// Hold for approval.
    Hold,
}

/// The decision cache.
pub trait DecisionCache: Send + Sync + Debug {
    /// The cached decision for `key`, when one has not expired.
    fn get(&self, key: &str, now_ms: u64) -> StateFuture<'_, Option<CachedDecision>>;
    /// Caches `value` under `key` until `now_ms + ttl_ms`.
    fn put(
        &self,
        key: &str,
        value: CachedDecision,
        ttl_ms: u64,
        now_ms: u64,
    ) -> StateFuture<'_, ()>;
}

/// Where a pinned tool stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinState {
    /// Served as pinned.
    Pinned,
    /// Changed after it was pinned; hidden and refused until approved.
    Quarantined,
    /// New, and held for a first approval; hidden and refused until approved.
    Held,
    /// Was in a list and is no longer.
    Removed,
}

impl PinState {
    /// Whether the tool is hidden from lists and refused at calls.
    pub fn blocks(self) -> bool {
        matches!(self, PinState::Quarantined | PinState::Held)
    }
}

/// One tool's pin, per scope (route + upstream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolPin {
    /// The tool's name.
    pub tool: String,
    /// The approved definition's hash (hex SHA-256 of its canonical form); `None` while a new
    /// tool is held.
    pub pinned_hash: Option<String>,
    /// The approved definition.
    pub pinned: Option<serde_json::Value>,
    /// The last definition seen, when it differs from the pinned one.
    pub pending_hash: Option<String>,
    /// The definition awaiting approval.
    pub pending: Option<serde_json::Value>,
    /// Where it stands.
    pub state: PinState,
    /// First seen (ms since the epoch).
    pub first_seen_ms: u64,
    /// Last seen in a list.
    pub last_seen_ms: u64,
    /// Why it is in its state (the finding, or who quarantined it).
    pub note: String,
}

/// Tool pins.
pub trait PinStore: Send + Sync + Debug {
    /// The pin of `tool` in `scope`.
    fn get(&self, scope: &str, tool: &str) -> StateFuture<'_, Option<ToolPin>>;
    /// Writes a pin.
    fn put(&self, scope: &str, pin: ToolPin) -> StateFuture<'_, ()>;
    /// Every pin of `scope`, or of every scope, with its scope.
    fn list(&self, scope: Option<&str>) -> StateFuture<'_, Vec<(String, ToolPin)>>;
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a decision.
    Pending,
    /// Granted.
    Approved,
    /// Refused.
    Denied,
    /// Not decided in time, or a grant past its expiry.
    Expired,
}

/// What a grant covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalScope {
    /// This one call (the same agent, action, path and body), once.
    Call,
    /// This action for this agent, until the grant expires.
    Action,
}

/// One approval request and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Its id.
    pub id: String,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// The agent that made the held call.
    pub agent: String,
    /// The action type (`tools/call:delete_repo`).
    pub action: String,
    /// The route.
    pub route: String,
    /// Hash of agent, action, path and body: what `call` scope matches.
    pub fingerprint: String,
    /// Why the call was held.
    pub reasons: Vec<String>,
    /// The risk score of the held call.
    pub risk_score: u8,
    /// Created (ms since the epoch).
    pub created_ms: u64,
    /// A pending approval expires at this time; a grant stops covering calls at this time.
    pub expires_ms: u64,
    /// What the grant covers, once decided.
    pub scope: ApprovalScope,
    /// Whether a `call`-scoped grant was used.
    pub used: bool,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_ms: Option<u64>,
    /// Why.
    pub decision_reason: Option<String>,
}

/// A decision on an approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// `approved` or `denied`.
    pub status: ApprovalStatus,
    /// Who decided.
    pub by: String,
    /// Why.
    pub reason: Option<String>,
    /// What a grant covers.
    pub scope: ApprovalScope,
    /// When a grant stops covering calls (ms since the epoch).
    pub expires_ms: u64,
    /// When the decision was made.
    pub now_ms: u64,
}

/// Approvals, with waiting for a decision.
pub trait ApprovalStore: Send + Sync + Debug {
    /// Stores a new pending approval.
    fn create(&self, approval: Approval) -> StateFuture<'_, ()>;
    /// One approval, with pending ones past their expiry reported as expired.
    fn get(&self, id: &str, now_ms: u64) -> StateFuture<'_, Option<Approval>>;
    /// Decides a pending approval and wakes whoever waits on it.
    fn decide(&self, id: &str, decision: ApprovalDecision) -> StateFuture<'_, Approval>;
    /// Every approval, newest first, optionally only those with `status`.
    fn list(&self, status: Option<ApprovalStatus>, now_ms: u64) -> StateFuture<'_, Vec<Approval>>;
    /// A grant covering this call: approved, not expired, and either `action`-scoped for this
    /// agent and action, or `call`-scoped for this fingerprint and unused. A `call` grant found is
    /// marked used.
    fn take_grant(
        &self,
        agent: &str,
        action: &str,
        fingerprint: &str,
        now_ms: u64,
    ) -> StateFuture<'_, Option<Approval>>;
    /// Resolves when approval `id` is no longer pending, with its status. Callers bound the wait
    /// with their own timer.
    fn wait(&self, id: &str) -> StateFuture<'_, ApprovalStatus>;
}

/// One step of a session's path, for flow rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStep {
    /// The tool called.
    pub tool: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// When.
    pub at_ms: u64,
}

/// Sessions: the labelled tools each session called.
pub trait SessionStore: Send + Sync + Debug {
    /// The steps of `session` so far.
    fn steps(&self, session: &str, now_ms: u64) -> StateFuture<'_, Vec<SessionStep>>;
    /// Appends a step; the session expires `ttl_ms` after its last step.
    fn append(
        &self,
        session: &str,
        step: SessionStep,
        ttl_ms: u64,
        now_ms: u64,
    ) -> StateFuture<'_, ()>;
}

/// One audited change or decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// Who: an admin key's name, or `palisade` for automatic changes.
    pub actor: String,
    /// What: `tool.pinned`, `tool.quarantined`, `approval.approved`, …
    pub action: String,
    /// On what: `route|upstream tool`, an approval id.
    pub target: String,
    /// Why.
    pub reason: Option<String>,
    /// Anything else worth keeping.
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// The audit log.
pub trait AuditLog: Send + Sync + Debug {
    /// Appends an entry.
    fn record(&self, entry: AuditEntry) -> StateFuture<'_, ()>;
    /// The newest `limit` entries, newest first.
    fn recent(&self, limit: usize) -> StateFuture<'_, Vec<AuditEntry>>;
}

/// Whether a shared state store answers, for readiness.
pub trait StateProbe: Send + Sync + Debug {
    /// What the store is (`redis`).
    fn kind(&self) -> &'static str;
    /// Resolves when the store answers; an error says why it does not.
    fn ping(&self) -> StateFuture<'_, ()>;
    /// Whether an unreachable store makes this replica not ready.
    fn required_for_readiness(&self) -> bool {
        true
    }
}
