//! De-duplication: triggers of one rule with the same key collapse into one alert with a count.
//!
//! ```text
//! first trigger ─► window opens ─── wait ───► alert (count = triggers so far) ─── … ───► window ends
//!                                               later triggers are counted ─────────► one follow-up
//!                                                                                     (count = them)
//! ```
//!
//! The first alert of a window waits `wait` (at most the window) so that a burst is one alert
//! rather than an alert and a follow-up; what comes after it is held for the end of the window,
//! so a key sends at most two alerts a window however hot it runs. A trigger after the window
//! opens a new one. A group is plain data (serde), so the outbox keeps open groups across a
//! restart and none of what they counted is lost. Time is passed in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Alert;

/// One trigger, as de-duplication sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// The rule's index.
    pub rule: usize,
    /// The de-duplication key (rule name and the chosen facts).
    pub key: String,
    /// `finding`, `block`, …
    pub trigger: &'static str,
    /// How bad.
    pub severity: palisade_detect::Severity,
    /// One line.
    pub title: String,
    /// What is known about it (route, detector, agent, …).
    pub facts: BTreeMap<String, String>,
    /// When it happened.
    pub at_ms: u64,
}

impl Trigger {
    /// A trigger of rule `rule`; its key is made by the rules once its facts are known.
    pub fn new(
        rule: usize,
        trigger: &'static str,
        severity: palisade_detect::Severity,
        title: String,
        facts: BTreeMap<String, String>,
        at_ms: u64,
    ) -> Self {
        Trigger {
            rule,
            key: String::new(),
            trigger,
            severity,
            title,
            facts,
            at_ms,
        }
    }
}

/// The state of one key: its window, and the triggers not yet sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The window's end.
    pub window_end_ms: u64,
    /// When the triggers counted so far go out.
    pub flush_at_ms: u64,
    /// Triggers counted and not yet sent.
    pub count: u64,
    /// The first of them.
    pub first_ms: u64,
    /// The last of them.
    pub last_ms: u64,
    /// Alerts this window already sent.
    pub sent: u64,
    /// The rule's name.
    pub rule: String,
    /// `finding`, `block`, …
    pub trigger: String,
    /// The worst severity counted.
    pub severity: palisade_detect::Severity,
    /// The latest trigger's title.
    pub title: String,
    /// The latest trigger's facts.
    pub facts: BTreeMap<String, String>,
}

impl Group {
    /// Opens a window with its first trigger.
    pub fn open(t: &Trigger, rule: &str, window_ms: u64, wait_ms: u64) -> Self {
        Group {
            window_end_ms: t.at_ms.saturating_add(window_ms),
            flush_at_ms: t.at_ms.saturating_add(wait_ms.min(window_ms)),
            count: 1,
            first_ms: t.at_ms,
            last_ms: t.at_ms,
            sent: 0,
            rule: rule.to_owned(),
            trigger: t.trigger.to_owned(),
            severity: t.severity,
            title: t.title.clone(),
            facts: t.facts.clone(),
        }
    }

    /// Whether a trigger at `at` belongs to this window.
    pub fn covers(&self, at: u64) -> bool {
        at < self.window_end_ms
    }

    /// Counts one more trigger in the window.
    pub fn add(&mut self, t: &Trigger) {
        if self.count == 0 {
            // After the first alert, what follows waits for the window's end.
            self.first_ms = t.at_ms;
            self.flush_at_ms = self.window_end_ms;
            self.severity = t.severity;
        }
        self.count += 1;
        self.last_ms = self.last_ms.max(t.at_ms);
        self.severity = self.severity.max(t.severity);
        self.title.clone_from(&t.title);
        self.facts.clone_from(&t.facts);
    }

    /// Whether triggers are waiting and their time has come.
    pub fn due(&self, now: u64) -> bool {
        self.count > 0 && now >= self.flush_at_ms
    }

    /// Whether the window is over with nothing left to send: the group can go.
    pub fn spent(&self, now: u64) -> bool {
        self.count == 0 && now >= self.window_end_ms
    }

    /// The alert for the triggers counted so far, which are then no longer waiting.
    pub fn take(&mut self, id: String, key: &str, now: u64) -> Alert {
        let alert = Alert {
            id,
            rule: self.rule.clone(),
            trigger: self.trigger.clone(),
            severity: self.severity,
            title: self.title.clone(),
            count: self.count,
            repeat: self.sent > 0,
            first_seen_ms: self.first_ms,
            last_seen_ms: self.last_ms,
            dedupe_key: key.to_owned(),
            window_end_ms: self.window_end_ms,
            facts: self.facts.clone(),
            summary: None,
            created_ms: now,
        };
        self.count = 0;
        self.sent += 1;
        alert
    }
}

#[cfg(test)]
mod tests {
    use palisade_detect::Severity;

    use super::*;

    fn trig(at: u64, sev: Severity) -> Trigger {
        Trigger {
            rule: 0,
            key: "r|openai|pii|email".into(),
            trigger: "finding",
            severity: sev,
            title: format!("pii/email at {at}"),
            facts: BTreeMap::from([("request_id".to_owned(), format!("req-{at}"))]),
            at_ms: at,
        }
    }

    /// Runs `triggers` through one key's groups, ticking every millisecond up to `until`;
    /// returns the alerts sent, with when.
    fn run(triggers: &[(u64, Severity)], window: u64, wait: u64, until: u64) -> Vec<(u64, Alert)> {
        let mut group: Option<Group> = None;
        let mut out = Vec::new();
        let mut next = triggers.iter().peekable();
        for now in 0..=until {
            while let Some((at, sev)) = next.next_if(|(at, _)| *at == now) {
                let t = trig(*at, *sev);
                match group.as_mut() {
                    Some(g) if g.covers(now) => g.add(&t),
                    _ => {
                        if let Some(g) = group.as_mut().filter(|g| g.count > 0) {
                            out.push((now, g.take(format!("a{}", out.len()), &t.key, now)));
                        }
                        group = Some(Group::open(&t, "r", window, wait));
                    }
                }
            }
            if let Some(g) = group.as_mut().filter(|g| g.due(now)) {
                out.push((now, g.take(format!("a{}", out.len()), "k", now)));
            }
            if group.as_ref().is_some_and(|g| g.spent(now)) {
                group = None;
            }
        }
        out
    }

    #[test]
    fn n_identical_triggers_within_the_wait_are_one_alert_with_count_n() {
        let burst: Vec<(u64, Severity)> = (0..25).map(|i| (100 + i * 3, Severity::Low)).collect();
        let sent = run(&burst, 1_000, 200, 3_000);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let (at, a) = &sent[0];
        assert_eq!(*at, 300, "sent when the wait ended");
        assert_eq!(a.count, 25);
        assert!(!a.repeat);
        assert_eq!((a.first_seen_ms, a.last_seen_ms), (100, 172));
        assert_eq!(a.facts["request_id"], "req-172", "the latest example");
    }

    #[test]
    fn later_triggers_in_the_window_are_one_follow_up_at_its_end() {
        let mut ts: Vec<(u64, Severity)> = vec![(0, Severity::Medium)];
        ts.extend((0..10).map(|i| (400 + i * 10, Severity::Medium)));
        ts.push((450, Severity::Critical));
        ts.sort_by_key(|t| t.0);
        let sent = run(&ts, 1_000, 100, 3_000);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!((sent[0].0, sent[0].1.count), (100, 1));
        let (at, follow) = &sent[1];
        assert_eq!(*at, 1_000, "at the window's end");
        assert_eq!(follow.count, 11);
        assert!(follow.repeat);
        assert_eq!(follow.severity, Severity::Critical, "the worst counted");
        assert_eq!(follow.first_seen_ms, 400);
    }

    #[test]
    fn a_trigger_after_the_window_opens_a_new_one() {
        let sent = run(
            &[(0, Severity::High), (1_500, Severity::High)],
            1_000,
            0,
            3_000,
        );
        assert_eq!(sent.len(), 2);
        assert_eq!((sent[0].0, sent[1].0), (0, 1_500), "wait 0 sends at once");
        assert!(!sent[1].1.repeat, "a new window");
    }

    #[test]
    fn wait_is_capped_by_the_window() {
        let g = Group::open(&trig(10, Severity::Low), "r", 100, 500);
        assert_eq!((g.flush_at_ms, g.window_end_ms), (110, 110));
    }

    #[test]
    fn groups_survive_a_round_trip_through_json() {
        let mut g = Group::open(&trig(10, Severity::High), "r", 100, 50);
        g.add(&trig(20, Severity::Low));
        let back: Group = serde_json::from_str(&serde_json::to_string(&g).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, g);
        assert_eq!(back.count, 2);
    }
}
