//! The alert thread's state, without I/O other than the outbox: signals in, deliveries out.
//!
//! ```text
//! on_signals: rules ─► triggers ─► open or count into groups (memory)
//! tick:       groups changed since the last tick ──────────────────────────┐ (one transaction)
//!             due groups ─► alerts ─► per sink: throttle ─► pending | held ─┤
//!             periods ended with held alerts ─► one summary, held deleted ──┘
//! next_due / delivered / failed: one delivery at a time, per sink
//! ```
//!
//! Every step takes `now`, so tests drive it with their own clock. Memory holds the open groups
//! and throttles; the outbox holds the same groups and every delivery. A tick writes, in one
//! transaction, the groups the signals since the previous tick changed and the deliveries it
//! made of them, so a burst of signals costs one commit per tick rather than one per signal;
//! what a crash can lose is the signals of the last tick (like those still in the queue), never
//! an alert already made. [`Pipeline::open`] reads it all back.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use palisade_engine::metrics::{self, AlertCount};
use palisade_policy::alerts::{AlertSinkConfig, AlertsConfig, RetryConfig, SinkKind};

use crate::backoff::{self, Rng};
use crate::dedupe::{Group, Trigger};
use crate::outbox::{Outbox, State};
use crate::rules::Rules;
use crate::throttle::Throttle;
use crate::{payload, Alert, AlertsError, Signal, Summary, SummaryItem};

/// The throttle period of held alerts whose rule is no longer configured.
const ORPHAN_PERIOD_MS: u64 = 60_000;

/// A sink, ready to post to: its URL and headers resolved from the environment.
#[derive(Debug, Clone)]
pub struct Sink {
    /// Its name.
    pub name: String,
    /// The webhook URL.
    pub url: String,
    /// The payload's shape.
    pub kind: SinkKind,
    /// Its extra headers.
    pub headers: Vec<(String, String)>,
    /// One attempt's time limit.
    pub timeout: Duration,
}

fn env(sink: &str, var: &str) -> Result<String, AlertsError> {
    std::env::var(var).map_err(|_| AlertsError::Env {
        sink: sink.to_owned(),
        var: var.to_owned(),
    })
}

impl Sink {
    /// Resolves `cfg`: its URL and header values from the environment where it says so.
    pub fn resolve(cfg: &AlertSinkConfig) -> Result<Sink, AlertsError> {
        let url = match (&cfg.url, &cfg.url_env) {
            (Some(u), _) => u.clone(),
            (None, Some(var)) => env(&cfg.name, var)?,
            (None, None) => String::new(),
        };
        let headers: Vec<(String, String)> = cfg
            .headers
            .iter()
            .map(|h| {
                let value = match (&h.value, &h.value_env) {
                    (Some(v), _) => v.clone(),
                    (None, Some(var)) => env(&cfg.name, var)?,
                    (None, None) => String::new(),
                };
                Ok((h.name.clone(), format!("{}{value}", h.value_prefix)))
            })
            .collect::<Result<_, AlertsError>>()?;
        let bad = |message: String| AlertsError::Sink {
            sink: cfg.name.clone(),
            message,
        };
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .and_then(|rest| rest.split(['/', '?', '#']).next());
        if host.is_none_or(str::is_empty) || url.contains(char::is_whitespace) {
            return Err(bad("its URL is not an http:// or https:// URL".into()));
        }
        // Visible ASCII, spaces and tabs: what a header value can carry.
        for (name, value) in &headers {
            if !value
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
            {
                return Err(bad(format!("the value of header `{name}` cannot be sent")));
            }
        }
        Ok(Sink {
            name: cfg.name.clone(),
            url,
            kind: cfg.kind,
            headers,
            timeout: Duration::from_millis(cfg.timeout_ms),
        })
    }
}

/// One delivery attempt to make.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The alert's id.
    pub id: String,
    /// The sink's index.
    pub sink: usize,
    /// The alert's rule.
    pub rule: String,
    /// Attempts before this one.
    pub attempts: u32,
    /// Where to.
    pub url: String,
    /// Headers, `Idempotency-Key` included.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub body: Vec<u8>,
    /// The attempt's time limit.
    pub timeout: Duration,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Pipeline {
    /// The sinks, in configuration order.
    pub sinks: Vec<Sink>,
    rules: Rules,
    outbox: Outbox,
    groups: HashMap<String, (usize, Group)>,
    throttles: HashMap<(String, usize), Throttle>,
    rows: u64,
    max_pending: u64,
    rng: Rng,
    scratch: Vec<Trigger>,
    /// Groups changed since the last tick.
    dirty: HashSet<String>,
    /// Alerts of windows that closed since the last tick.
    closed: Vec<(usize, Alert)>,
}

impl Pipeline {
    /// Opens the outbox of `config` and takes up what it holds.
    pub fn open(config: &AlertsConfig, now: u64) -> Result<Self, AlertsError> {
        let sinks = config
            .sinks
            .iter()
            .map(Sink::resolve)
            .collect::<Result<Vec<_>, _>>()?;
        let names: Vec<String> = sinks.iter().map(|s| s.name.clone()).collect();
        let rules = Rules::new(config, &names);
        let rule_names: Vec<String> = rules.rules.iter().map(|r| r.name.clone()).collect();
        let mut outbox = Outbox::open(&config.outbox_path)?;
        let gone = outbox.drop_other_sinks(&names)?;
        metrics::alert(AlertCount::Dropped, "sink_removed", gone);
        let gone = outbox.drop_other_rules(&rule_names)?;
        metrics::alert(AlertCount::Dropped, "rule_removed", gone);
        let groups = outbox
            .groups()?
            .into_iter()
            .filter_map(|(key, g)| rules.index(&g.rule).map(|i| (key, (i, g))))
            .collect();
        let mut throttles = HashMap::new();
        for (rule, sink, held) in outbox.held_counts()? {
            if let Some(s) = names.iter().position(|n| *n == sink) {
                throttles.insert((rule, s), Throttle::resumed(held, now));
            }
        }
        let rows = outbox.depth()?;
        metrics::alert_outbox_depth(rows);
        let mut p = Pipeline {
            sinks,
            rules,
            outbox,
            groups,
            throttles,
            rows,
            max_pending: config.max_pending as u64,
            rng: Rng::seeded(),
            scratch: Vec::new(),
            dirty: HashSet::new(),
            closed: Vec::new(),
        };
        if p.rows > 0 || !p.groups.is_empty() {
            tracing::info!(
                deliveries = p.rows,
                groups = p.groups.len(),
                "alerts: resuming what the outbox held"
            );
        }
        p.depth_changed(0);
        Ok(p)
    }

    /// Uses `rng` for ids and jitter (tests).
    pub fn with_rng(mut self, rng: Rng) -> Self {
        self.rng = rng;
        self
    }

    /// Deliveries waiting in the outbox.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Open de-duplication groups.
    pub fn open_groups(&self) -> usize {
        self.groups.len()
    }

    fn depth_changed(&mut self, delta: i64) {
        self.rows = self.rows.saturating_add_signed(delta);
        metrics::alert_outbox_depth(self.rows);
    }

    fn new_id(&mut self, now: u64) -> String {
        format!("alr_{now:011x}{:016x}", self.rng.next_u64())
    }

    /// Takes in a batch of signals: each trigger opens or counts into its group, in memory; the
    /// next [`Pipeline::tick`] writes what changed.
    pub fn on_signals(&mut self, signals: &[Signal], now: u64) {
        let mut triggers = std::mem::take(&mut self.scratch);
        for s in signals {
            self.rules.triggers(s, now, &mut triggers);
        }
        let mut counts = vec![0u64; self.rules.rules.len()];
        for t in triggers.drain(..) {
            if let Some(c) = counts.get_mut(t.rule) {
                *c += 1;
            }
            let rule = &self.rules.rules[t.rule];
            match self.groups.get_mut(&t.key) {
                Some((_, g)) if g.covers(t.at_ms) => g.add(&t),
                Some((_, g)) => {
                    // The window is over: what it still counted goes out, a new one opens.
                    if g.count > 0 {
                        let id = format!("alr_{now:011x}{:016x}", self.rng.next_u64());
                        self.closed.push((t.rule, g.take(id, &t.key, now)));
                    }
                    *g = Group::open(&t, &rule.name, rule.window_ms, rule.wait_ms);
                }
                None => {
                    if self.rows + self.groups.len() as u64 >= self.max_pending {
                        metrics::alert(AlertCount::Dropped, "outbox_full", 1);
                        tracing::warn!(rule = %rule.name, "alerts: the outbox is full; an alert was dropped");
                        continue;
                    }
                    let g = Group::open(&t, &rule.name, rule.window_ms, rule.wait_ms);
                    self.groups.insert(t.key.clone(), (t.rule, g));
                }
            }
            self.dirty.insert(t.key);
        }
        self.scratch = triggers;
        for (rule, n) in self.rules.rules.iter().zip(counts) {
            if n > 0 {
                metrics::alert(AlertCount::Triggered, &rule.name, n);
            }
        }
    }

    /// Writes, in one transaction, the groups `touched` (as they now are), deletes the `spent`
    /// ones (`(key, rule)`), and adds the deliveries of `alerts`, throttled per sink.
    fn commit(
        &mut self,
        alerts: &[(usize, Alert)],
        touched: &[String],
        spent: &[(String, String)],
        now: u64,
    ) {
        let plan = self.plan(alerts, now);
        let groups = &self.groups;
        let written = self.outbox.tx(|c| {
            for (key, rule) in spent {
                Outbox::delete_group(c, rule, key)?;
            }
            for key in touched {
                if let Some((_, g)) = groups.get(key) {
                    Outbox::put_group(c, key, g)?;
                }
            }
            for (alert, sink, state) in &plan {
                Outbox::insert(c, alert, sink, *state, now)?;
            }
            Ok(())
        });
        let rows = plan.len() as u64;
        match written {
            Ok(()) => self.depth_changed(rows as i64),
            Err(e) => {
                // Memory still holds the groups; the deliveries of this step are lost.
                metrics::alert(AlertCount::Dropped, "outbox_error", rows);
                tracing::error!(error = %e, "alerts: the outbox could not be written");
            }
        }
    }

    /// Decides, per sink of each alert's rule, whether it goes out now or is held by throttling.
    fn plan<'a>(
        &mut self,
        alerts: &'a [(usize, Alert)],
        now: u64,
    ) -> Vec<(&'a Alert, String, State)> {
        let mut plan = Vec::new();
        for (rule, alert) in alerts {
            let r = &self.rules.rules[*rule];
            for &s in &r.sinks {
                let Some(sink) = self.sinks.get(s) else {
                    continue;
                };
                let th = self.throttles.entry((r.name.clone(), s)).or_default();
                let state = if th.admit(now, r.throttle_max, r.throttle_ms) {
                    State::Pending
                } else {
                    metrics::alert(AlertCount::Throttled, &sink.name, 1);
                    State::Held
                };
                plan.push((alert, sink.name.clone(), state));
            }
        }
        plan
    }

    /// Sends out the groups whose time has come, forgets spent ones, writes what the signals
    /// since the last tick changed (one transaction), and summarises throttled alerts whose
    /// period ended.
    pub fn tick(&mut self, now: u64) {
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, (_, g))| g.due(now) || g.spent(now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut alerts = std::mem::take(&mut self.closed);
        let mut spent = Vec::new();
        for key in due {
            let id = self.new_id(now);
            let Some((rule, g)) = self.groups.get_mut(&key) else {
                continue;
            };
            if g.due(now) {
                alerts.push((*rule, g.take(id, &key, now)));
            }
            if g.spent(now) {
                spent.push((key.clone(), g.rule.clone()));
                self.groups.remove(&key);
                self.dirty.remove(&key);
            } else {
                self.dirty.insert(key);
            }
        }
        if !alerts.is_empty() || !spent.is_empty() || !self.dirty.is_empty() {
            let touched: Vec<String> = self.dirty.drain().collect();
            self.commit(&alerts, &touched, &spent, now);
        }
        self.summarise(now);
    }

    fn summarise(&mut self, now: u64) {
        let due: Vec<(String, usize, u64)> = self
            .throttles
            .iter()
            .filter_map(|((rule, s), th)| {
                let period = self
                    .rules
                    .index(rule)
                    .map_or(ORPHAN_PERIOD_MS, |i| self.rules.rules[i].throttle_ms);
                th.summary_due(now, period)
                    .then(|| (rule.clone(), *s, period))
            })
            .collect();
        for (rule, s, period) in due {
            let Some(sink) = self.sinks.get(s).map(|s| s.name.clone()) else {
                continue;
            };
            let held = match self.outbox.held(&rule, &sink) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(error = %e, "alerts: held alerts could not be read");
                    continue;
                }
            };
            let id = self.new_id(now);
            let summary = summary_of(id, &rule, &held, period, now);
            let written = self.outbox.tx(|c| {
                let n = Outbox::delete_held(c, &rule, &sink)?;
                Outbox::insert(c, &summary, &sink, State::Pending, now)?;
                Ok(n)
            });
            match written {
                Ok(n) => {
                    if let Some(th) = self.throttles.get_mut(&(rule.clone(), s)) {
                        th.summarised(now);
                    }
                    self.depth_changed(1 - n as i64);
                }
                Err(e) => tracing::error!(error = %e, "alerts: a summary could not be written"),
            }
        }
    }

    /// The next delivery due to sink `s` at `now`, rendered for it.
    pub fn next_due(&mut self, s: usize, now: u64) -> Option<Delivery> {
        let sink = self.sinks.get(s)?;
        let row = match self.outbox.next_due(&sink.name, now) {
            Ok(r) => r?,
            Err(e) => {
                tracing::error!(error = %e, "alerts: the outbox could not be read");
                return None;
            }
        };
        let body = match sink.kind {
            SinkKind::Json => payload::json_payload(&row.alert),
            SinkKind::Slack => payload::slack_payload(&row.alert),
        };
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("user-agent".to_owned(), "palisade-alerts".to_owned()),
            ("idempotency-key".to_owned(), row.alert.id.clone()),
        ];
        headers.extend(sink.headers.iter().cloned());
        Some(Delivery {
            id: row.alert.id,
            sink: s,
            rule: row.alert.rule,
            attempts: row.attempts,
            url: sink.url.clone(),
            headers,
            body: serde_json::to_vec(&body).unwrap_or_default(),
            timeout: sink.timeout,
        })
    }

    fn sink_name(&self, d: &Delivery) -> &str {
        self.sinks.get(d.sink).map_or("", |s| s.name.as_str())
    }

    /// The webhook accepted `d`.
    pub fn delivered(&mut self, d: &Delivery) {
        let sink = self.sink_name(d).to_owned();
        metrics::alert(AlertCount::Sent, &sink, 1);
        if d.attempts > 0 {
            metrics::alert(AlertCount::Retried, &sink, 1);
            tracing::info!(sink, id = %d.id, attempts = d.attempts + 1, "alerts: delivered after retries");
        }
        match self.outbox.delivered(&d.id, &sink) {
            Ok(()) => self.depth_changed(-1),
            // It will be sent again: at least once, and the receiver drops the repeat by its id.
            Err(e) => tracing::error!(error = %e, "alerts: a delivery could not be marked done"),
        }
    }

    /// `d` failed; returns when it is due again (back-off with jitter, or the webhook's
    /// `Retry-After` when longer).
    pub fn failed(
        &mut self,
        d: &Delivery,
        error: &str,
        retry_after_ms: Option<u64>,
        now: u64,
    ) -> u64 {
        let sink = self.sink_name(d).to_owned();
        metrics::alert(AlertCount::Failed, &sink, 1);
        if d.attempts > 0 {
            metrics::alert(AlertCount::Retried, &sink, 1);
        }
        let default = RetryConfig::default();
        let retry = self
            .rules
            .index(&d.rule)
            .map_or(&default, |i| &self.rules.rules[i].retry);
        let attempts = d.attempts.saturating_add(1);
        let wait = backoff::delay_ms(retry, attempts, self.rng.unit())
            .max(retry_after_ms.unwrap_or(0).min(retry.max_ms));
        let due = now.saturating_add(wait);
        tracing::warn!(sink, id = %d.id, attempts, error, retry_in_ms = wait, "alerts: delivery failed; will retry");
        if let Err(e) = self.outbox.retry_at(&d.id, &sink, attempts, due, error) {
            tracing::error!(error = %e, "alerts: a failed delivery could not be rescheduled");
        }
        due
    }
}

fn summary_of(id: String, rule: &str, held: &[Alert], period_ms: u64, now: u64) -> Alert {
    let severity = held
        .iter()
        .map(|a| a.severity)
        .max()
        .unwrap_or(palisade_detect::Severity::Low);
    let triggers = held.iter().map(|a| a.count).sum();
    let items: Vec<SummaryItem> = held
        .iter()
        .take(payload::SUMMARY_ITEMS)
        .map(|a| SummaryItem {
            id: a.id.clone(),
            title: a.title.clone(),
            severity: a.severity,
            count: a.count,
            first_seen_ms: a.first_seen_ms,
        })
        .collect();
    Alert {
        id,
        rule: rule.to_owned(),
        trigger: "throttle_summary".into(),
        severity,
        title: format!(
            "{} more `{rule}` alerts held back by throttling",
            held.len()
        ),
        count: triggers,
        repeat: false,
        first_seen_ms: held.iter().map(|a| a.first_seen_ms).min().unwrap_or(now),
        last_seen_ms: held.iter().map(|a| a.last_seen_ms).max().unwrap_or(now),
        dedupe_key: format!("{rule}|throttle_summary"),
        window_end_ms: now,
        facts: Default::default(),
        summary: Some(Summary {
            alerts: held.len() as u64,
            triggers,
            period_seconds: period_ms / 1_000,
            omitted: held.len().saturating_sub(items.len()) as u64,
            items,
        }),
        created_ms: now,
    }
}

#[cfg(test)]
mod tests;
