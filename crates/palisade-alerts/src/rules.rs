//! Alert rules, compiled: which signals set which rule off, with what facts and key.
//!
//! A signal can set off several rules, and one exchange several triggers of a `finding` rule
//! (one per distinct detector and kind in it, at its worst severity). `rate_limit` rules count
//! refusals in a sliding window per limit key or route and trigger once per `refusals`
//! refusals; their windows live in memory (bounded by `max_pending` keys), so a restart starts
//! the counts again.

use std::collections::{BTreeMap, HashMap, VecDeque};

use palisade_detect::Severity;
use palisade_engine::govern::state::AuditEntry;
use palisade_engine::metrics::{self, AlertCount};
use palisade_policy::alerts::{
    AlertField, AlertTrigger, AlertsConfig, BlockDecision, RatePer, RateThresholdConfig,
    RetryConfig, DEFAULT_TOOL_CHANGES,
};

use crate::dedupe::Trigger;
use crate::{Exchange, RateLimited, Signal};

/// The `min_severity` of a `finding` rule that names none.
pub const DEFAULT_MIN_SEVERITY: Severity = Severity::High;

/// Longest text kept of a fact (reasons, details), in bytes.
const FACT_BYTES: usize = 500;

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// Its trigger.
    pub on: AlertTrigger,
    /// Indexes of its sinks.
    pub sinks: Vec<usize>,
    /// The facts of its de-duplication key.
    pub fields: Vec<AlertField>,
    /// De-duplication window.
    pub window_ms: u64,
    /// De-duplication wait.
    pub wait_ms: u64,
    /// Throttle: alerts per sink per period.
    pub throttle_max: u32,
    /// Throttle period.
    pub throttle_ms: u64,
    /// Retries.
    pub retry: RetryConfig,
    min_severity: Severity,
    detectors: Option<Vec<String>>,
    kinds: Option<Vec<String>>,
    routes: Option<Vec<String>>,
    decisions: Vec<&'static str>,
    changes: Vec<&'static str>,
    threshold: Option<RateThresholdConfig>,
}

/// Every rule, and the rate-limit windows.
#[derive(Debug)]
pub struct Rules {
    /// The rules, in configuration order.
    pub rules: Vec<Rule>,
    windows: HashMap<(usize, String), VecDeque<u64>>,
    max_windows: usize,
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Facts, skipping absent and empty values.
fn facts<'a>(
    pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| (k.to_owned(), clip(v, FACT_BYTES)))
        })
        .collect()
}

impl Rules {
    /// Compiles the rules of `config`; `sinks` are the sinks' names, in order.
    pub fn new(config: &AlertsConfig, sinks: &[String]) -> Self {
        let rules = config
            .rules
            .iter()
            .map(|r| Rule {
                name: r.name.clone(),
                on: r.on,
                sinks: r
                    .sinks
                    .iter()
                    .filter_map(|s| sinks.iter().position(|n| n == s))
                    .collect(),
                fields: r.dedupe_fields(),
                window_ms: r.dedupe.window_seconds.saturating_mul(1_000),
                wait_ms: r.dedupe_wait_seconds().saturating_mul(1_000),
                throttle_max: r.throttle.max_alerts,
                throttle_ms: r.throttle.per_seconds.saturating_mul(1_000),
                retry: r.retry.clone(),
                min_severity: r.min_severity.unwrap_or(DEFAULT_MIN_SEVERITY),
                detectors: r.detectors.clone(),
                kinds: r.kinds.clone(),
                routes: r.routes.clone(),
                decisions: r
                    .decisions
                    .as_deref()
                    .unwrap_or(&[BlockDecision::Block])
                    .iter()
                    .map(|d| d.as_str())
                    .collect(),
                changes: r
                    .changes
                    .as_deref()
                    .unwrap_or(&DEFAULT_TOOL_CHANGES)
                    .iter()
                    .map(|c| c.as_str())
                    .collect(),
                threshold: r.threshold.clone(),
            })
            .collect();
        Rules {
            rules,
            windows: HashMap::new(),
            max_windows: config.max_pending.max(1),
        }
    }

    /// The index of rule `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.name == name)
    }

    /// Adds to `out` the triggers `signal` sets off; `now` ages the rate-limit windows.
    pub fn triggers(&mut self, signal: &Signal, now: u64, out: &mut Vec<Trigger>) {
        let before = out.len();
        for i in 0..self.rules.len() {
            match (self.rules[i].on, signal) {
                (AlertTrigger::Finding, Signal::Exchange(e)) => self.findings(i, e, out),
                (AlertTrigger::Block, Signal::Exchange(e)) => self.block(i, e, out),
                (AlertTrigger::ToolChange, Signal::Audit(a)) => self.tool_change(i, a, out),
                (AlertTrigger::ApprovalRequest, Signal::Audit(a)) => self.approval(i, a, out),
                (AlertTrigger::RateLimit, Signal::RateLimited(r)) => self.rate(i, r, now, out),
                _ => {}
            }
        }
        for t in &mut out[before..] {
            let rule = &self.rules[t.rule];
            let mut key = rule.name.clone();
            for f in &rule.fields {
                key.push('|');
                key.push_str(t.facts.get(f.as_str()).map_or("-", String::as_str));
            }
            t.key = key;
        }
    }

    fn route_ok(&self, i: usize, route: &str) -> bool {
        self.rules[i]
            .routes
            .as_ref()
            .is_none_or(|rs| rs.iter().any(|r| r == route))
    }

    fn exchange_facts(e: &Exchange) -> BTreeMap<String, String> {
        let reasons = e.reasons.join("; ");
        facts([
            ("route", Some(e.route.as_str())),
            ("decision", Some(e.decision.as_str())),
            ("agent", e.agent.as_deref()),
            ("client_ip", e.client_ip.as_deref()),
            ("method", e.method.as_deref()),
            ("path", e.path.as_deref()),
            ("tool", e.tool.as_deref()),
            ("request_id", Some(e.request_id.as_str())),
            ("reasons", Some(reasons.as_str())),
        ])
    }

    fn findings(&self, i: usize, e: &Exchange, out: &mut Vec<Trigger>) {
        let r = &self.rules[i];
        if !self.route_ok(i, &e.route) {
            return;
        }
        // One trigger per detector and kind, at its worst severity in this exchange.
        let mut worst: BTreeMap<(&str, &str), Severity> = BTreeMap::new();
        for (detector, kind, sev) in &e.findings {
            let wanted = *sev >= r.min_severity
                && r.detectors.as_ref().is_none_or(|d| d.contains(detector))
                && r.kinds.as_ref().is_none_or(|k| k.contains(kind));
            if wanted {
                let w = worst.entry((detector, kind)).or_insert(*sev);
                *w = (*w).max(*sev);
            }
        }
        for ((detector, kind), sev) in worst {
            let mut f = Self::exchange_facts(e);
            f.insert("detector".into(), detector.to_owned());
            f.insert("kind".into(), kind.to_owned());
            f.insert("severity".into(), sev.to_string());
            out.push(Trigger::new(
                i,
                "finding",
                sev,
                format!("{detector}/{kind} ({sev}) on {}", e.route),
                f,
                e.at_ms,
            ));
        }
    }

    fn block(&self, i: usize, e: &Exchange, out: &mut Vec<Trigger>) {
        let r = &self.rules[i];
        if !r.decisions.contains(&e.decision.as_str()) || !self.route_ok(i, &e.route) {
            return;
        }
        let sev = e
            .findings
            .iter()
            .map(|f| f.2)
            .max()
            .unwrap_or(Severity::Medium);
        let mut f = Self::exchange_facts(e);
        let found: Vec<String> = e
            .findings
            .iter()
            .take(10)
            .map(|(d, k, _)| format!("{d}/{k}"))
            .collect();
        if !found.is_empty() {
            f.insert("findings".into(), found.join(", "));
        }
        let what = match e.decision.as_str() {
            "block" => "Blocked",
            "deny" => "Refused by governance",
            _ => "Refused after a failure",
        };
        let why = e
            .reasons
            .first()
            .map(|r| format!(": {}", clip(r, 120)))
            .unwrap_or_default();
        out.push(Trigger::new(
            i,
            "block",
            sev,
            format!("{what} on {}{why}", e.route),
            f,
            e.at_ms,
        ));
    }

    fn tool_change(&self, i: usize, a: &AuditEntry, out: &mut Vec<Trigger>) {
        let r = &self.rules[i];
        let Some(change) = a.action.strip_prefix("tool.") else {
            return;
        };
        if !r.changes.contains(&change) {
            return;
        }
        // The target is `route|upstream tool`.
        let (scope, tool) = a.target.rsplit_once(' ').unwrap_or((a.target.as_str(), ""));
        let (route, upstream) = scope.split_once('|').unwrap_or((scope, ""));
        if !self.route_ok(i, route) {
            return;
        }
        let sev = match change {
            "quarantined" | "changed" => Severity::High,
            "held" | "removed" | "renamed" => Severity::Medium,
            _ => Severity::Low,
        };
        let f = facts([
            ("change", Some(change)),
            ("target", Some(a.target.as_str())),
            ("route", Some(route)),
            ("upstream", Some(upstream)),
            ("tool", Some(tool)),
            ("actor", Some(a.actor.as_str())),
            ("detail", a.reason.as_deref()),
        ]);
        out.push(Trigger::new(
            i,
            "tool_change",
            sev,
            format!("MCP tool `{tool}` {change} on {route}"),
            f,
            a.at_ms,
        ));
    }

    fn approval(&self, i: usize, a: &AuditEntry, out: &mut Vec<Trigger>) {
        if a.action != "approval.requested" {
            return;
        }
        let field = |k: &str| a.detail.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let (agent, action, route) = (field("agent"), field("action"), field("route"));
        if !self.route_ok(i, route) {
            return;
        }
        let f = facts([
            ("target", Some(a.target.as_str())),
            ("agent", Some(agent)),
            ("action", Some(action)),
            ("route", Some(route)),
            ("reasons", a.reason.as_deref()),
        ]);
        out.push(Trigger::new(
            i,
            "approval_request",
            Severity::Medium,
            format!("Approval requested: `{action}` by {agent} on {route}"),
            f,
            a.at_ms,
        ));
    }

    fn rate(&mut self, i: usize, r: &RateLimited, now: u64, out: &mut Vec<Trigger>) {
        if !self.route_ok(i, &r.route) {
            return;
        }
        let Some(t) = self.rules[i].threshold.clone() else {
            return;
        };
        let window_ms = t.window_seconds.saturating_mul(1_000);
        let group = match t.per {
            RatePer::Key => format!("{}|{}", r.route, r.limit_key),
            RatePer::Route => r.route.clone(),
        };
        let k = (i, group);
        if !self.windows.contains_key(&k) && self.windows.len() >= self.max_windows {
            self.sweep(now);
            if self.windows.len() >= self.max_windows {
                metrics::alert(AlertCount::Dropped, "rate_keys_full", 1);
                return;
            }
        }
        let times = self.windows.entry(k.clone()).or_default();
        let at = r.at_ms.min(now);
        while times
            .front()
            .is_some_and(|&f| f.saturating_add(window_ms) <= at)
        {
            times.pop_front();
        }
        times.push_back(at);
        if times.len() < t.refusals as usize {
            return;
        }
        let first = times.front().copied().unwrap_or(at);
        self.windows.remove(&k);
        let n = t.refusals.to_string();
        let w = t.window_seconds.to_string();
        let per_key = t.per == RatePer::Key;
        let f = facts([
            ("route", Some(r.route.as_str())),
            ("limit_key", per_key.then_some(r.limit_key.as_str())),
            ("refusals", Some(n.as_str())),
            ("window_seconds", Some(w.as_str())),
            ("agent", r.agent.as_deref()),
            ("client_ip", r.client_ip.as_deref()),
            ("tool", r.tool.as_deref()),
            ("request_id", Some(r.request_id.as_str())),
            ("first_refusal_ms", Some(first.to_string().as_str())),
        ]);
        let of = if per_key {
            format!(" ({})", r.limit_key)
        } else {
            String::new()
        };
        out.push(Trigger::new(
            i,
            "rate_limit",
            Severity::Medium,
            format!("{n} rate-limit refusals within {w} s on {}{of}", r.route),
            f,
            at,
        ));
    }

    /// Forgets rate-limit windows with nothing left in them.
    pub fn sweep(&mut self, now: u64) {
        let rules = &self.rules;
        self.windows.retain(|(i, _), times| {
            let window_ms = rules
                .get(*i)
                .and_then(|r| r.threshold.as_ref())
                .map_or(0, |t| t.window_seconds.saturating_mul(1_000));
            times
                .back()
                .is_some_and(|&last| last.saturating_add(window_ms) > now)
        });
    }
}

#[cfg(test)]
mod tests;
