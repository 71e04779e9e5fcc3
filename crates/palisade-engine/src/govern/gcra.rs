//! The generic cell rate algorithm (GCRA), as a pure function over one stored number per key.
//!
//! A key's state is its theoretical arrival time (TAT), in microseconds since the epoch. Each
//! request moves it one emission interval `T = period / max_requests` forward from
//! `max(TAT, now)`, and fits when the TAT stays within one period of now. The burst is
//! `max_requests`: a quiet key may make `max_requests` calls at once, then one more every `T`.
//! So 100 per 300 s lets 100 calls through at once and refuses the 101st with a retry after 3 s,
//! the time until one more fits, which is what `Retry-After` should say. Compared with a sliding
//! window, GCRA needs one integer per key and one atomic read-modify-write, which is what makes
//! a shared (Redis) counter cheap.

use super::state::{Quota, RateOutcome};

/// Checks one request at `now_ms` against `quota` for a key whose TAT is `tat_us` (0 when new).
/// Returns the outcome and the TAT to store when the request is allowed.
pub fn check(tat_us: u64, quota: Quota, now_ms: u64) -> (RateOutcome, u64) {
    let max = u64::from(quota.max_requests.max(1));
    let period_us = quota.period_ms.saturating_mul(1_000).max(1);
    let interval_us = (period_us / max).max(1);
    let now_us = now_ms.saturating_mul(1_000);
    let new_tat = tat_us.max(now_us).saturating_add(interval_us);
    let ahead = new_tat - now_us;
    if ahead > period_us {
        let wait_us = ahead - period_us;
        let outcome = RateOutcome {
            allowed: false,
            remaining: 0,
            retry_after_ms: wait_us.div_ceil(1_000),
        };
        return (outcome, tat_us);
    }
    let remaining = ((period_us - ahead) / interval_us).min(u64::from(u32::MAX)) as u32;
    (
        RateOutcome {
            allowed: true,
            remaining,
            retry_after_ms: 0,
        },
        new_tat,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_interval() {
        let q = Quota {
            max_requests: 100,
            period_ms: 300_000,
        };
        let mut tat = 0;
        let now = 1_700_000_000_000;
        for i in 0..100 {
            let (o, t) = check(tat, q, now);
            assert!(o.allowed, "call {i}");
            assert_eq!(o.remaining, 99 - i);
            tat = t;
        }
        let (o, t) = check(tat, q, now);
        assert!(!o.allowed);
        assert_eq!(o.retry_after_ms, 3_000);
        assert_eq!(t, tat, "a refused call does not move the TAT");
        // Just before the interval passes: still refused; at it: one more fits.
        assert!(!check(tat, q, now + 2_999).0.allowed);
        assert!(check(tat, q, now + 3_000).0.allowed);
    }
}
