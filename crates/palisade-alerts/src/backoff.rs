//! Retry delays: exponential back-off with jitter.
//!
//! Attempt `n` (1 for the first retry) waits `d = min(max, initial × 2^(n-1))`, drawn down by up
//! to `jitter × d` at random, so alerts that failed together (a webhook that was down for
//! everyone) do not all retry in the same millisecond. The random draw is passed in, so the
//! arithmetic is testable; [`Rng`] is a small xorshift generator seeded per process, which is
//! all jitter needs.

use palisade_policy::alerts::RetryConfig;

/// The wait before retry `attempt` (1-based), with `draw` in `[0, 1)`.
pub fn delay_ms(cfg: &RetryConfig, attempt: u32, draw: f64) -> u64 {
    let exp = attempt.saturating_sub(1).min(62);
    let full = cfg
        .initial_ms
        .saturating_mul(1u64 << exp)
        .min(cfg.max_ms)
        .max(1);
    let cut = (full as f64 * cfg.jitter.clamp(0.0, 1.0) * draw.clamp(0.0, 1.0)) as u64;
    full.saturating_sub(cut).max(1)
}

/// A xorshift64* generator: fast, not cryptographic, seeded from the process's hasher keys and
/// the clock.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from this process's randomness.
    pub fn seeded() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        Rng(h.finish() | 1)
    }

    /// A generator with a fixed seed (tests).
    pub fn with_seed(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A draw in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(jitter: f64) -> RetryConfig {
        RetryConfig {
            initial_ms: 1_000,
            max_ms: 30_000,
            jitter,
        }
    }

    #[test]
    fn doubles_up_to_the_cap_without_jitter() {
        let c = cfg(0.0);
        let waits: Vec<u64> = (1..=7).map(|n| delay_ms(&c, n, 0.9)).collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(delay_ms(&c, u32::MAX, 0.5), 30_000, "no overflow");
    }

    #[test]
    fn jitter_draws_down_within_its_share() {
        let c = cfg(0.5);
        assert_eq!(delay_ms(&c, 3, 0.0), 4_000);
        assert_eq!(delay_ms(&c, 3, 0.5), 3_000);
        assert_eq!(
            delay_ms(&c, 3, 0.999_999),
            2_001,
            "never below (1 - jitter) × d"
        );
        let mut rng = Rng::with_seed(42);
        let waits: Vec<u64> = (0..1_000).map(|_| delay_ms(&c, 3, rng.unit())).collect();
        assert!(waits.iter().all(|w| (2_000..=4_000).contains(w)));
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 500, "spread: {}", distinct.len());
    }

    #[test]
    fn draws_are_uniform_enough() {
        let mut rng = Rng::with_seed(7);
        let n = 10_000;
        let low = (0..n).filter(|_| rng.unit() < 0.5).count();
        assert!((4_500..5_500).contains(&low), "{low}");
    }
}
