//! Which governance state stores a configuration asks for.
//!
//! Kept apart from where governance is assembled (`alerts::governance`) so that choosing the
//! stores stays one small function: in memory (one replica), or in Redis with this replica's
//! memory behind it for `fail_open` routes. Records stores other than these (SQL pins, approvals
//! or audit) are chosen by the caller after this.

use palisade_engine::govern::Stores;
use palisade_policy::config::Config;

/// The rate counters, decision cache, pins, approvals and sessions `config.state` names.
pub fn stores(config: &Config) -> Result<Stores, crate::StartError> {
    let local = Stores::memory(config.state.memory.max_keys);
    match &config.state.redis {
        None => Ok(local),
        Some(redis) => palisade_redis::open(redis, local).map_err(crate::StartError::State),
    }
}

/// What `/health/ready` says of the state store: `ok`, or `unreachable` (and whether that makes
/// the replica not ready).
pub async fn readiness(stores: &Stores, timeout: std::time::Duration) -> (&'static str, bool) {
    let Some(probe) = &stores.probe else {
        return ("ok", false);
    };
    match tokio::time::timeout(timeout, probe.ping()).await {
        Ok(Ok(())) => ("ok", false),
        Ok(Err(e)) => {
            tracing::warn!(store = probe.kind(), error = %e, "readiness: the state store does not answer");
            ("unreachable", probe.required_for_readiness())
        }
        Err(_) => {
            tracing::warn!(
                store = probe.kind(),
                "readiness: the state store did not answer in time"
            );
            ("unreachable", probe.required_for_readiness())
        }
    }
}
