//! The alerts part of the configuration: webhook sinks (generic JSON or Slack-compatible), and
//! rules that send to them on a finding, a block, a tool change, an approval request or a burst
//! of rate-limit refusals, each with its de-duplication, throttling and retries.
//!
//! Kept apart from [`crate::config`] like the governance model; it hangs off
//! [`crate::config::Config`] by one field. [`check`] refuses what the types cannot: unknown sink
//! names, settings that do not apply to a rule's trigger, zero windows.

use palisade_detect::{DetectorId, Severity};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Alerts: where they go and what is worth one. Read at start (not hot-reloaded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Send alerts at all. Off: rules are checked but nothing is sent or stored.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The outbox, a SQLite file of its own: every alert waits there until its webhook accepted
    /// it, so neither a webhook that is down nor a restart of Palisade loses one. `:memory:`
    /// keeps it in memory only (a restart then loses what was waiting).
    #[serde(default = "default_outbox_path")]
    pub outbox_path: String,
    /// Most alerts waiting at once: deliveries not yet accepted plus open de-duplication groups.
    /// At the cap, new alerts are dropped and counted
    /// (`palisade_alerts_dropped_total{reason="outbox_full"}`); waiting ones are kept.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Signals (findings, blocks, tool changes, …) waiting between the request path and the
    /// alert thread. When full, a signal is dropped and counted
    /// (`reason="queue_full"`) rather than slowing a request down.
    #[serde(default = "default_queue_signals")]
    pub queue_signals: usize,
    /// Where alerts go.
    #[serde(default)]
    pub sinks: Vec<AlertSinkConfig>,
    /// What is worth an alert.
    #[serde(default)]
    pub rules: Vec<AlertRuleConfig>,
}

fn default_true() -> bool {
    true
}
fn default_outbox_path() -> String {
    "palisade-alerts.db".to_owned()
}
fn default_max_pending() -> usize {
    10_000
}
fn default_queue_signals() -> usize {
    10_000
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            outbox_path: default_outbox_path(),
            max_pending: default_max_pending(),
            queue_signals: default_queue_signals(),
            sinks: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// A webhook alerts are POSTed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSinkConfig {
    /// Its name, which rules send to.
    pub name: String,
    /// The webhook URL (`http://` or `https://`). Give this or `url_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the URL, for webhooks whose URL is itself the secret
    /// (Slack's). Read at start; unset is an error.
    #[serde(default)]
    pub url_env: Option<String>,
    /// The payload's shape.
    #[serde(default)]
    pub kind: SinkKind,
    /// Extra request headers, such as credentials.
    #[serde(default)]
    pub headers: Vec<AlertHeaderConfig>,
    /// One delivery attempt gives up after this long (and is retried).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5_000
}

/// The shape of the payload a sink receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Palisade's own JSON: `id`, `rule`, `trigger`, `severity`, `title`, `text`, `count`,
    /// first and last seen, `facts`, and for throttling summaries `summary`.
    #[default]
    Json,
    /// A Slack incoming-webhook message: `text` (the fallback) and Block Kit `blocks`. Mattermost
    /// and Rocket.Chat accept it too.
    Slack,
}

/// One extra header of a sink's requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertHeaderConfig {
    /// The header's name (`Authorization`, `X-Api-Key`).
    pub name: String,
    /// Its value, written here. Give this or `value_env`.
    #[serde(default)]
    pub value: Option<String>,
    /// The environment variable holding its value, so a credential is never written down. Read
    /// at start; unset is an error.
    #[serde(default)]
    pub value_env: Option<String>,
    /// Text put before the value (`Bearer `).
    #[serde(default)]
    pub value_prefix: String,
}

/// What sets a rule off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertTrigger {
    /// A finding (detection or governance) at or above `min_severity`, in any exchange or
    /// guard call, whatever was done about it.
    Finding,
    /// An exchange or guard call refused (`decisions`).
    Block,
    /// An MCP tool's pin changed state (`changes`): a rug pull quarantined or flagged, a new
    /// tool held, a tool removed or renamed, or an approver's decision about one.
    ToolChange,
    /// A call held for approval.
    ApprovalRequest,
    /// `threshold.refusals` rate-limit refusals within `threshold.window_seconds`, per limit key
    /// or per route.
    RateLimit,
}

impl AlertTrigger {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertTrigger::Finding => "finding",
            AlertTrigger::Block => "block",
            AlertTrigger::ToolChange => "tool_change",
            AlertTrigger::ApprovalRequest => "approval_request",
            AlertTrigger::RateLimit => "rate_limit",
        }
    }
}

/// A refusal a `block` rule alerts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockDecision {
    /// The policy's detection rules blocked it.
    Block,
    /// Governance refused it (authorization, quarantine, rate limit, toxic flow, no agent id).
    Deny,
    /// Inspection or governance failed and the failure mode refused it.
    Error,
}

impl BlockDecision {
    /// The decision as events record it.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockDecision::Block => "block",
            BlockDecision::Deny => "deny",
            BlockDecision::Error => "error",
        }
    }
}

/// A change of an MCP tool's pin, as the audit log names it (`tool.<change>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolChange {
    /// Its definition changed since it was pinned and it is refused until approved (a rug pull
    /// under `on_change: quarantine`), or an approver quarantined it.
    Quarantined,
    /// Its definition changed since it was pinned and it is still served (`on_change: alert`).
    Changed,
    /// First seen and held until approved (`on_first_sight: hold`).
    Held,
    /// No longer listed.
    Removed,
    /// Its definition reappeared under another name.
    Renamed,
    /// Its changed definition was pinned automatically (`on_change: allow`).
    Repinned,
    /// Its definition matches its pin again.
    Restored,
    /// First seen and pinned (`on_first_sight: pin`).
    Pinned,
    /// An approver approved its definition.
    Approved,
    /// An approver released it from quarantine.
    Released,
}

impl ToolChange {
    /// Every change, in declaration order.
    pub const ALL: [ToolChange; 10] = [
        ToolChange::Quarantined,
        ToolChange::Changed,
        ToolChange::Held,
        ToolChange::Removed,
        ToolChange::Renamed,
        ToolChange::Repinned,
        ToolChange::Restored,
        ToolChange::Pinned,
        ToolChange::Approved,
        ToolChange::Released,
    ];

    /// The name after `tool.` in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolChange::Quarantined => "quarantined",
            ToolChange::Changed => "changed",
            ToolChange::Held => "held",
            ToolChange::Removed => "removed",
            ToolChange::Renamed => "renamed",
            ToolChange::Repinned => "repinned",
            ToolChange::Restored => "restored",
            ToolChange::Pinned => "pinned",
            ToolChange::Approved => "approved",
            ToolChange::Released => "released",
        }
    }
}

/// What a `rate_limit` rule counts refusals per.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RatePer {
    /// Per rate limit and key value (the limit's name and, say, the client IP and tool): one
    /// client hammering.
    #[default]
    Key,
    /// Per route: many clients refused at once.
    Route,
}

/// How many rate-limit refusals, in how long, make an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateThresholdConfig {
    /// Refusals that set the rule off.
    pub refusals: u32,
    /// Within this many seconds (a sliding window).
    pub window_seconds: u64,
    /// Counted per limit key or per route.
    #[serde(default)]
    pub per: RatePer,
}

/// A fact of an alert that de-duplication can key on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertField {
    /// The route (or `guard:<collector>`).
    Route,
    /// The detector of a finding.
    Detector,
    /// The kind of a finding.
    Kind,
    /// The severity.
    Severity,
    /// The decision of a refused exchange.
    Decision,
    /// The agent.
    Agent,
    /// The client's IP address.
    ClientIp,
    /// The MCP tool.
    Tool,
    /// The request path.
    Path,
    /// The change of a tool (`quarantined`, …).
    Change,
    /// The pin scope and tool of a tool change, or the approval of an approval request.
    Target,
    /// The action type of an approval request.
    Action,
    /// The rate limit and key values of a rate-limit burst.
    LimitKey,
    /// The request id: every exchange its own alert.
    RequestId,
}

impl AlertField {
    /// The snake_case name, as alerts' `facts` carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertField::Route => "route",
            AlertField::Detector => "detector",
            AlertField::Kind => "kind",
            AlertField::Severity => "severity",
            AlertField::Decision => "decision",
            AlertField::Agent => "agent",
            AlertField::ClientIp => "client_ip",
            AlertField::Tool => "tool",
            AlertField::Path => "path",
            AlertField::Change => "change",
            AlertField::Target => "target",
            AlertField::Action => "action",
            AlertField::LimitKey => "limit_key",
            AlertField::RequestId => "request_id",
        }
    }
}

/// De-duplication: triggers of a rule with the same key collapse into one alert with a count.
/// The first trigger opens a window of `window_seconds`; the alert goes out `wait_seconds` after
/// it, counting every same-key trigger until then; later triggers in the window are counted into
/// one follow-up alert sent when the window ends. Then the next trigger opens a new window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    /// The facts the key is made of (the rule's name is always part of it). Absent: by trigger:
    /// `finding` [route, detector, kind]; `block` [route, decision]; `tool_change` [target,
    /// change]; `approval_request` [target] (every request its own alert); `rate_limit`
    /// [route, limit_key].
    #[serde(default)]
    pub by: Option<Vec<AlertField>>,
    /// How long a key stays collapsed after its first trigger.
    #[serde(default = "default_dedupe_window")]
    pub window_seconds: u64,
    /// How long the first alert of a window waits, collecting same-key triggers into its count
    /// (at most `window_seconds`). 0 sends it at once. Absent: 10, and 0 for
    /// `approval_request` rules (each request is its own alert, and someone is waiting).
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

fn default_dedupe_window() -> u64 {
    300
}
/// The `dedupe.wait_seconds` of rules that name none, but `approval_request` ones.
pub const DEFAULT_DEDUPE_WAIT_SECONDS: u64 = 10;

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            by: None,
            window_seconds: default_dedupe_window(),
            wait_seconds: None,
        }
    }
}

/// Throttling: at most `max_alerts` alerts of the rule to each sink per `per_seconds`. The
/// excess is not sent one by one and not dropped: it is summarised into one alert (how many,
/// which) sent when the period ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Alerts per sink per period.
    #[serde(default = "default_throttle_max")]
    pub max_alerts: u32,
    /// The period, in seconds (60: per minute).
    #[serde(default = "default_throttle_period")]
    pub per_seconds: u64,
}

fn default_throttle_max() -> u32 {
    20
}
fn default_throttle_period() -> u64 {
    60
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_alerts: default_throttle_max(),
            per_seconds: default_throttle_period(),
        }
    }
}

/// Retries of a delivery a webhook did not accept (no answer, or not 2xx). An alert is retried
/// until delivered; it is never given up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The first retry waits about this long; each next one twice as long.
    #[serde(default = "default_retry_initial")]
    pub initial_ms: u64,
    /// The longest wait between two attempts.
    #[serde(default = "default_retry_max")]
    pub max_ms: u64,
    /// Random part of each wait, 0–1: the wait is drawn between `(1 - jitter) × d` and `d`, so
    /// replicas and alerts that failed together do not retry together.
    #[serde(default = "default_retry_jitter")]
    pub jitter: f64,
}

fn default_retry_initial() -> u64 {
    1_000
}
fn default_retry_max() -> u64 {
    300_000
}
fn default_retry_jitter() -> f64 {
    0.5
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_ms: default_retry_initial(),
            max_ms: default_retry_max(),
            jitter: default_retry_jitter(),
        }
    }
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleConfig {
    /// Its name, in alerts and metrics.
    pub name: String,
    /// What sets it off.
    pub on: AlertTrigger,
    /// The sinks (by name) it sends to.
    pub sinks: Vec<String>,
    /// `finding` rules: only findings at or above this severity. Default: `high`.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// `finding` rules: only these detectors (`pii`, `secrets`, … and governance's
    /// `tool_pinning`, `tool_poisoning`, `rate_limit`, `session_flow`, `authorization`,
    /// `governance`). Absent: every detector.
    #[serde(default)]
    pub detectors: Option<Vec<String>>,
    /// `finding` rules: only these kinds (`us_ssn`, `aws_access_key`, `rug_pull`, …). Absent:
    /// every kind.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// Only on these routes (route names, or `guard:<collector>` for guard calls). Absent: every
    /// route.
    #[serde(default)]
    pub routes: Option<Vec<String>>,
    /// `block` rules: which refusals. Default: `[block]`.
    #[serde(default)]
    pub decisions: Option<Vec<BlockDecision>>,
    /// `tool_change` rules: which changes. Default: `[quarantined, changed, held, removed,
    /// renamed]`.
    #[serde(default)]
    pub changes: Option<Vec<ToolChange>>,
    /// `rate_limit` rules (required there): how many refusals in how long.
    #[serde(default)]
    pub threshold: Option<RateThresholdConfig>,
    /// De-duplication.
    #[serde(default)]
    pub dedupe: DedupeConfig,
    /// Throttling, per sink.
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// Detectors of governance findings, beside the built-in [`DetectorId`]s.
pub const GOVERNANCE_DETECTORS: [&str; 6] = [
    "tool_pinning",
    "tool_poisoning",
    "rate_limit",
    "session_flow",
    "authorization",
    "governance",
];

/// The tool changes a `tool_change` rule without `changes` alerts on.
pub const DEFAULT_TOOL_CHANGES: [ToolChange; 5] = [
    ToolChange::Quarantined,
    ToolChange::Changed,
    ToolChange::Held,
    ToolChange::Removed,
    ToolChange::Renamed,
];

impl AlertRuleConfig {
    /// How long the first alert of a de-duplication window waits.
    pub fn dedupe_wait_seconds(&self) -> u64 {
        self.dedupe.wait_seconds.unwrap_or(match self.on {
            AlertTrigger::ApprovalRequest => 0,
            _ => DEFAULT_DEDUPE_WAIT_SECONDS,
        })
    }

    /// The facts the de-duplication key is made of.
    pub fn dedupe_fields(&self) -> Vec<AlertField> {
        if let Some(by) = &self.dedupe.by {
            return by.clone();
        }
        match self.on {
            AlertTrigger::Finding => {
                vec![AlertField::Route, AlertField::Detector, AlertField::Kind]
            }
            AlertTrigger::Block => vec![AlertField::Route, AlertField::Decision],
            AlertTrigger::ToolChange => vec![AlertField::Target, AlertField::Change],
            AlertTrigger::ApprovalRequest => vec![AlertField::Target],
            AlertTrigger::RateLimit => vec![AlertField::Route, AlertField::LimitKey],
        }
    }
}

/// Checks that span fields of `alerts`. Errors are `(field path, offending value, message)`.
pub(crate) fn check(a: &AlertsConfig) -> Result<(), (String, String, String)> {
    let err = |at: String, v: &str, m: String| Err((at, v.to_owned(), m));
    if a.max_pending == 0 {
        return err(
            "alerts.max_pending".into(),
            "0",
            "must be at least 1".into(),
        );
    }
    if a.queue_signals == 0 {
        return err(
            "alerts.queue_signals".into(),
            "0",
            "must be at least 1".into(),
        );
    }
    let mut sinks = std::collections::BTreeSet::new();
    for (i, s) in a.sinks.iter().enumerate() {
        let at = format!("alerts.sinks[{i}]");
        if s.name.trim().is_empty() || !sinks.insert(s.name.as_str()) {
            return err(
                format!("{at}.name"),
                &s.name,
                "a sink needs a name of its own".into(),
            );
        }
        match (&s.url, &s.url_env) {
            (Some(u), None) => {
                let host = u
                    .strip_prefix("http://")
                    .or_else(|| u.strip_prefix("https://"))
                    .and_then(|rest| rest.split(['/', '?', '#']).next());
                let ok = host.is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace));
                if !ok {
                    return err(
                        format!("{at}.url"),
                        u,
                        format!("`{u}` is not an http:// or https:// URL"),
                    );
                }
            }
            (None, Some(_)) => {}
            _ => {
                return err(
                    format!("{at}.url"),
                    &s.name,
                    "give exactly one of `url` and `url_env`".into(),
                )
            }
        }
        if s.timeout_ms == 0 {
            return err(format!("{at}.timeout_ms"), "0", "must be at least 1".into());
        }
        for (j, h) in s.headers.iter().enumerate() {
            let hat = format!("{at}.headers[{j}]");
            if crate::govern::http_token(&h.name).is_none() {
                return err(
                    format!("{hat}.name"),
                    &h.name,
                    "not an HTTP header name".into(),
                );
            }
            if h.value.is_some() == h.value_env.is_some() {
                return err(
                    format!("{hat}.value"),
                    &h.name,
                    "give exactly one of `value` and `value_env`".into(),
                );
            }
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in a.rules.iter().enumerate() {
        let at = format!("alerts.rules[{i}]");
        if r.name.trim().is_empty() || !names.insert(r.name.as_str()) {
            return err(
                format!("{at}.name"),
                &r.name,
                "a rule needs a name of its own".into(),
            );
        }
        if r.sinks.is_empty() {
            return err(
                format!("{at}.sinks"),
                "",
                "a rule needs at least one sink".into(),
            );
        }
        for s in &r.sinks {
            if !sinks.contains(s.as_str()) {
                return err(format!("{at}.sinks"), s, format!("no sink called `{s}`"));
            }
        }
        let on = r.on.as_str();
        let only = |field: &str, set: bool, trigger: AlertTrigger| {
            if set && r.on != trigger {
                Err((
                    format!("{at}.{field}"),
                    String::new(),
                    format!(
                        "`{field}` applies to `{}` rules, not `{on}` ones",
                        trigger.as_str()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        only(
            "min_severity",
            r.min_severity.is_some(),
            AlertTrigger::Finding,
        )?;
        only("detectors", r.detectors.is_some(), AlertTrigger::Finding)?;
        only("kinds", r.kinds.is_some(), AlertTrigger::Finding)?;
        only("decisions", r.decisions.is_some(), AlertTrigger::Block)?;
        only("changes", r.changes.is_some(), AlertTrigger::ToolChange)?;
        only("threshold", r.threshold.is_some(), AlertTrigger::RateLimit)?;
        for (field, list) in [
            ("detectors", &r.detectors),
            ("kinds", &r.kinds),
            ("routes", &r.routes),
        ] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                return err(
                    format!("{at}.{field}"),
                    "",
                    format!("an empty list matches nothing; leave `{field}` out to match all"),
                );
            }
        }
        if let Some(ds) = &r.detectors {
            for d in ds {
                if DetectorId::parse(d).is_none() && !GOVERNANCE_DETECTORS.contains(&d.as_str()) {
                    let all: Vec<&str> = DetectorId::ALL
                        .iter()
                        .map(|d| d.as_str())
                        .chain(GOVERNANCE_DETECTORS)
                        .collect();
                    return err(
                        format!("{at}.detectors"),
                        d,
                        format!(
                            "`{d}` is not a detector; expected one of: {}",
                            all.join(", ")
                        ),
                    );
                }
            }
            // Kinds of built-in detectors are a closed set: a typo would never match.
            let builtin: Option<Vec<DetectorId>> = ds
                .iter()
                .map(|d| DetectorId::parse(d).filter(|d| *d != DetectorId::Custom))
                .collect();
            if let (Some(builtin), Some(kinds)) = (builtin, &r.kinds) {
                for k in kinds {
                    if !builtin
                        .iter()
                        .any(|d| palisade_detect::known_kinds(*d).contains(&k.as_str()))
                    {
                        return err(
                            format!("{at}.kinds"),
                            k,
                            format!("`{k}` is not a kind of {}", ds.join(", ")),
                        );
                    }
                }
            }
        }
        if r.on == AlertTrigger::RateLimit {
            match &r.threshold {
                None => {
                    return err(
                        format!("{at}.threshold"),
                        "",
                        "a `rate_limit` rule needs `threshold: { refusals, window_seconds }`"
                            .into(),
                    )
                }
                Some(t) if t.refusals == 0 || t.window_seconds == 0 => {
                    return err(
                        format!("{at}.threshold"),
                        "",
                        "`refusals` and `window_seconds` must be at least 1".into(),
                    )
                }
                Some(_) => {}
            }
        }
        let d = &r.dedupe;
        if d.window_seconds == 0 {
            return err(
                format!("{at}.dedupe.window_seconds"),
                "0",
                "must be at least 1".into(),
            );
        }
        if r.dedupe_wait_seconds() > d.window_seconds {
            return err(
                format!("{at}.dedupe.wait_seconds"),
                &r.dedupe_wait_seconds().to_string(),
                format!(
                    "must not be longer than `window_seconds` ({})",
                    d.window_seconds
                ),
            );
        }
        if d.by.as_ref().is_some_and(Vec::is_empty) {
            return err(
                format!("{at}.dedupe.by"),
                "",
                "name at least one fact, or leave `by` out for the trigger's default".into(),
            );
        }
        if r.throttle.max_alerts == 0 || r.throttle.per_seconds == 0 {
            return err(
                format!("{at}.throttle"),
                "",
                "`max_alerts` and `per_seconds` must be at least 1".into(),
            );
        }
        let rt = &r.retry;
        if rt.initial_ms == 0 || rt.max_ms < rt.initial_ms {
            return err(
                format!("{at}.retry"),
                "",
                "`initial_ms` must be at least 1 and `max_ms` at least `initial_ms`".into(),
            );
        }
        if !(0.0..=1.0).contains(&rt.jitter) {
            return err(
                format!("{at}.retry.jitter"),
                &rt.jitter.to_string(),
                "must be between 0 and 1".into(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
