//! Throttling: at most `max_alerts` alerts of one rule to one sink per period.
//!
//! A period opens with the first alert admitted after the previous one ended (a fixed window
//! anchored on traffic, not on the wall clock). Alerts over the budget are *held*, not dropped:
//! the caller keeps them, and when the period ends [`Throttle::summary_due`] says so, and one
//! summary (how many, which) goes out in their place, taking the first place of the next period.

/// The throttle of one rule towards one sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Throttle {
    started_ms: Option<u64>,
    admitted: u32,
    /// Alerts held back in the current period, waiting for their summary.
    pub held: u64,
}

impl Throttle {
    /// Whether one more alert may go out at `now`; if not, it is counted as held.
    pub fn admit(&mut self, now: u64, max: u32, period_ms: u64) -> bool {
        let ended = self
            .started_ms
            .is_none_or(|s| now >= s.saturating_add(period_ms));
        if ended && self.held == 0 {
            self.started_ms = Some(now);
            self.admitted = 0;
        }
        if !ended && self.admitted < max {
            self.admitted += 1;
            return true;
        }
        if ended && self.held == 0 {
            self.admitted = 1;
            return true;
        }
        self.held += 1;
        false
    }

    /// Whether the period has ended with alerts held back, so their summary is due now.
    pub fn summary_due(&self, now: u64, period_ms: u64) -> bool {
        self.held > 0
            && self
                .started_ms
                .is_none_or(|s| now >= s.saturating_add(period_ms))
    }

    /// The summary went out: it opens the next period, as its first alert.
    pub fn summarised(&mut self, now: u64) {
        self.held = 0;
        self.started_ms = Some(now);
        self.admitted = 1;
    }

    /// A throttle that finds `held` alerts already held (after a restart): their summary is due
    /// one period from `now`.
    pub fn resumed(held: u64, now: u64) -> Self {
        Throttle {
            started_ms: Some(now),
            admitted: 0,
            held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    #[test]
    fn admits_the_budget_then_holds_then_summarises_once_per_period() {
        let mut t = Throttle::default();
        let admitted: Vec<bool> = (0..5).map(|i| t.admit(1_000 + i, 3, MIN)).collect();
        assert_eq!(admitted, [true, true, true, false, false]);
        assert_eq!(t.held, 2);
        assert!(!t.summary_due(1_000 + MIN - 1, MIN));
        assert!(t.summary_due(1_000 + MIN, MIN));
        // Held alerts keep being held until the summary is out, even past the period's end.
        assert!(!t.admit(1_000 + MIN + 5, 3, MIN));
        assert_eq!(t.held, 3);
        t.summarised(1_000 + MIN + 10);
        assert!(!t.summary_due(1_000 + 2 * MIN, MIN));
        // The summary took one place of the new period.
        let next: Vec<bool> = (0..3)
            .map(|i| t.admit(1_000 + MIN + 20 + i, 3, MIN))
            .collect();
        assert_eq!(next, [true, true, false]);
    }

    #[test]
    fn a_quiet_period_resets_the_budget() {
        let mut t = Throttle::default();
        assert!(t.admit(0, 1, MIN));
        assert!(!t.admit(10, 1, MIN));
        t.summarised(MIN);
        assert!(t.admit(MIN * 3, 1, MIN), "a new period after silence");
        assert!(!t.admit(MIN * 3 + 1, 1, MIN));
        assert_eq!(t.held, 1);
    }

    #[test]
    fn resumed_throttles_summarise_after_one_period() {
        let t = Throttle::resumed(4, 500);
        assert!(!t.summary_due(500 + MIN - 1, MIN));
        assert!(t.summary_due(500 + MIN, MIN));
    }
}
