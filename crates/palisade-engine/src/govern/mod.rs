//! Governance: who may do what, how often, in what order, and with whose approval; and whether
//! the MCP tools an agent sees are the ones that were approved.
//!
//! [`Governance`] holds each policy's governance settings, compiled, and the state stores behind
//! the traits of [`state`]. The proxy calls it at three points of an exchange:
//!
//! 1. [`Governance::decide_request`] before detection: excluded paths, agent identity, the action
//!    type, the decision cache (agent + action + normalised path), tool quarantine, rate limits,
//!    session flow rules and holds. It returns a [`GovDecision`] saying go on, refuse, or hold.
//! 2. [`Governance::await_hold`] when a call is held and the policy waits for a decision.
//! 3. [`Governance::review_list`] on each MCP `tools/list` (and `prompts/list`,
//!    `resources/list`) result: pins, rug pulls, removed and renamed tools, tool poisoning and
//!    name collisions across servers; it says which entries to hide, or to refuse the list.
//!
//! Every store error goes through the route's failure mode, and the decision says which way it
//! went. Nothing here does I/O except through the store traits; the in-memory stores are
//! [`memory::MemoryState`].

pub mod action;
pub mod fallback;
pub mod gcra;
pub mod memory;
pub mod pins;
pub mod state;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use palisade_detect::Severity;
use palisade_policy::authz::{Attributes, RuleOutcome, RuleSet};
use palisade_policy::config::{Config, FailureMode, PolicyConfig};
use palisade_policy::govern::{
    compile_regex, ApprovalMode, FirstSight, FlowAction, FlowRuleConfig, GovernanceConfig,
    OnChange, PoisoningAction, RateKey, RateLimitConfig, RuleEffect, ToolLabel, ToolsConfig,
};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use action::RiskLevel;
use state::*;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The state stores governance uses.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Rate counters.
    pub rates: Arc<dyn RateStore>,
    /// The decision cache.
    pub cache: Arc<dyn DecisionCache>,
    /// Tool pins.
    pub pins: Arc<dyn PinStore>,
    /// Approvals.
    pub approvals: Arc<dyn ApprovalStore>,
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// This replica's in-memory stores, when the ones above are shared (Redis): `fail_open`
    /// routes fall back to them while a shared store is unavailable (see [`fallback`]);
    /// `fail_closed` routes never do. `None` for in-process stores.
    pub fallback: Option<Box<Stores>>,
    /// Whether a shared store answers, for readiness; `None` for in-process stores.
    pub probe: Option<Arc<dyn StateProbe>>,
}

impl Stores {
    /// In-memory stores of `max_keys` keys a table.
    pub fn memory(max_keys: usize) -> Self {
        let m = memory::MemoryState::new(max_keys);
        Stores {
            rates: m.rates,
            cache: m.cache,
            pins: m.pins,
            approvals: m.approvals,
            sessions: m.sessions,
            audit: m.audit,
            fallback: None,
            probe: None,
        }
    }
}

/// A governance finding: a rug pull, a poisoned tool, a crossed rate limit, a toxic flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GovFinding {
    /// `tool_pinning`, `tool_poisoning`, `rate_limit`, `session_flow`, `governance`.
    pub detector: &'static str,
    /// `rug_pull`, `tool_removed`, `tool_renamed`, `new_tool_held`, a poisoning kind,
    /// `rate_limit_exceeded`, `toxic_flow`, `risk_threshold`, …
    pub kind: String,
    /// How bad it is.
    pub severity: Severity,
    /// The tool, prompt or resource concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// What exactly.
    pub detail: String,
}

/// What governance says about a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum GovOutcome {
    /// Not governed (an excluded path, or governance disabled).
    Excluded,
    /// Go on to detection and the upstream.
    Continue,
    /// No agent id where one is required: 401.
    Unauthenticated,
    /// Refused with the policy's deny status (MCP: a JSON-RPC error).
    Deny,
    /// A rate limit refused it: 429 with `Retry-After` (MCP: a JSON-RPC error).
    RateLimited {
        /// Seconds until one more request fits.
        retry_after_seconds: u64,
    },
    /// Held for approval `approval_id`.
    Hold {
        /// The approval to wait for or to report.
        approval_id: String,
        /// Whether to wait (and how long) or answer at once with the pending status.
        wait_ms: Option<u64>,
    },
    /// The state store failed and the failure mode is `fail_closed`.
    Error,
}

/// Governance's decision on a request, with everything the response headers and the decision
/// log carry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GovDecision {
    /// What to do.
    #[serde(flatten)]
    pub outcome: GovOutcome,
    /// The agent id (or `-` when none).
    pub agent: String,
    /// The action type.
    pub action: String,
    /// This decision's id.
    pub action_id: String,
    /// 0–100.
    pub risk_score: u8,
    /// From the score.
    pub risk_level: RiskLevel,
    /// Whether the static part came from the decision cache.
    pub cache_hit: bool,
    /// Why.
    pub reasons: Vec<String>,
    /// What was found.
    pub findings: Vec<GovFinding>,
    /// Set when a store failed and the failure mode decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureMode>,
}

impl GovDecision {
    /// The value of `x-palisade-decision`.
    pub fn label(&self) -> &'static str {
        match self.outcome {
            GovOutcome::Excluded | GovOutcome::Continue => "allow",
            GovOutcome::Unauthenticated | GovOutcome::Deny | GovOutcome::RateLimited { .. } => {
                "deny"
            }
            GovOutcome::Hold { .. } => "pending",
            GovOutcome::Error => "error",
        }
    }
}

/// What the proxy knows about a request, for governance.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts<'a> {
    /// The request id (the action id derives from it).
    pub request_id: &'a str,
    /// The route's name.
    pub route: &'a str,
    /// The pin scope: route and upstream.
    pub scope: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The request path.
    pub path: &'a str,
    /// The client's IP address.
    pub client_ip: String,
    /// The agent id header's value.
    pub agent_header: Option<String>,
    /// The user id (header, else JWT `sub`).
    pub user: Option<String>,
    /// The tenant id.
    pub tenant: Option<String>,
    /// The API key the client sent, when any (hashed before use).
    pub api_key: Option<String>,
    /// The MCP session id, when any.
    pub mcp_session: Option<String>,
    /// The MCP method, when the body is a JSON-RPC request.
    pub mcp_method: Option<String>,
    /// The tool of a `tools/call`.
    pub tool: Option<String>,
    /// The request body (for the fingerprint of a held call).
    pub body: &'a [u8],
    /// Request headers, names in lower case; gathered only when an authorization rule reads
    /// `request` (see [`Governance::rules_read`]).
    pub headers: Vec<(String, String)>,
    /// The claims of a bearer JWT, decoded without verification; only when a rule reads `jwt`.
    pub jwt_claims: Option<Value>,
    /// The arguments of a `tools/call`; only when a rule reads `mcp`.
    pub arguments: Option<Value>,
    /// The failure mode in force.
    pub failure_mode: FailureMode,
    /// Monitor mode: decide what would happen without holding anyone. Counters and session
    /// paths still advance (so a monitored limit or flow is reported when it would bite), but a
    /// hold creates no approval and uses no grant.
    pub observe: bool,
}

#[derive(Debug)]
struct PolicyGovern {
    name: String,
    cfg: GovernanceConfig,
    excluded: Vec<regex::Regex>,
    actions: Vec<(regex::Regex, String, Option<u8>)>,
    hold_actions: Vec<regex::Regex>,
    deny_actions: Vec<regex::Regex>,
    tools: ToolsConfig,
    rate_limits: Vec<RateLimitConfig>,
    flows: Vec<FlowRuleConfig>,
    authz: RuleSet,
}

fn compile_all(patterns: &[palisade_policy::govern::Pattern]) -> Result<Vec<regex::Regex>, String> {
    patterns.iter().map(|p| compile_regex(&p.0)).collect()
}

impl PolicyGovern {
    fn new(name: &str, p: &PolicyConfig) -> Result<Self, String> {
        let g = &p.governance;
        Ok(PolicyGovern {
            name: name.to_owned(),
            excluded: compile_all(&g.excluded_paths)?,
            actions: g
                .actions
                .iter()
                .map(|a| Ok((compile_regex(&a.pattern.0)?, a.action.clone(), a.risk)))
                .collect::<Result<_, String>>()?,
            hold_actions: compile_all(&g.hold_actions)?,
            deny_actions: compile_all(&g.deny_actions)?,
            tools: p.tools.clone(),
            rate_limits: p.rate_limits.clone(),
            flows: p.flows.clone(),
            authz: RuleSet::new(&g.authorization)?,
            cfg: g.clone(),
        })
    }

    fn labels(&self, tool: &str) -> &[ToolLabel] {
        self.tools.labels.get(tool).map_or(&[], Vec::as_slice)
    }
}

/// Session state lives this long after a session's last labelled call.
const SESSION_TTL_MS: u64 = 24 * 3_600 * 1_000;

/// Governance for every policy of a configuration. See the module documentation.
#[derive(Debug)]
pub struct Governance {
    stores: Stores,
    /// What `fail_open` routes use when `stores` has a fallback.
    degraded: Option<Stores>,
    policies: HashMap<String, PolicyGovern>,
    /// Part of every decision-cache key, so decisions cached under an earlier configuration are
    /// never served under a later one (they expire on their own).
    generation: u64,
}

/// The base action, its risk, and the static verdict for one request, before state.
struct Static {
    action: String,
    decision: CachedDecision,
}

impl Governance {
    /// Compiles every policy's governance settings over `stores`.
    pub fn new(config: &Config, stores: Stores) -> Result<Self, String> {
        let mut policies = HashMap::new();
        for (name, p) in &config.policies {
            policies.insert(
                name.clone(),
                PolicyGovern::new(name, p).map_err(|e| format!("policy `{name}`: {e}"))?,
            );
        }
        let degraded = stores
            .fallback
            .as_deref()
            .map(|local| fallback::with_local_fallback(&stores, local.clone()));
        Ok(Governance {
            stores,
            degraded,
            policies,
            generation: 0,
        })
    }

    /// The same governance, tagged as configuration `generation`: the decision cache keeps
    /// decisions of different generations apart.
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    /// The stores a route with failure mode `mode` uses.
    fn stores_for(&self, mode: FailureMode) -> &Stores {
        match (mode, &self.degraded) {
            (FailureMode::FailOpen, Some(s)) => s,
            _ => &self.stores,
        }
    }

    /// In-memory stores sized by the configuration's `state`.
    pub fn in_memory(config: &Config) -> Result<Self, String> {
        Self::new(config, Stores::memory(config.state.memory.max_keys))
    }

    /// The stores.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The governance settings of policy `name`.
    pub fn settings(&self, policy: &str) -> Option<&GovernanceConfig> {
        self.policies.get(policy).map(|p| &p.cfg)
    }

    /// The tool settings of policy `name`.
    pub fn tool_settings(&self, policy: &str) -> Option<&ToolsConfig> {
        self.policies.get(policy).map(|p| &p.tools)
    }

    /// Whether an authorization rule of policy `policy` reads top-level variable `name`
    /// (`request`, `jwt`, `mcp`), so the proxy gathers headers, claims or arguments only then.
    pub fn rules_read(&self, policy: &str, name: &str) -> bool {
        self.policies
            .get(policy)
            .is_some_and(|p| p.authz.reads(name))
    }

    /// Whether policy `name` governs requests to `path` at all.
    pub fn excluded(&self, policy: &str, path: &str) -> bool {
        self.policies
            .get(policy)
            .is_none_or(|p| !p.cfg.enabled || p.excluded.iter().any(|r| r.is_match(path)))
    }

    fn static_decision(&self, p: &PolicyGovern, facts: &RequestFacts<'_>) -> Static {
        let g = &p.cfg;
        let subject = match (&facts.mcp_method, &facts.tool) {
            (Some(m), Some(t)) if m == "tools/call" => format!("tools/call:{t}"),
            (Some(m), _) => m.clone(),
            (None, _) => format!("{} {}", facts.method, facts.path),
        };
        let mut reasons = Vec::new();
        let custom = p.actions.iter().find(|(re, _, _)| re.is_match(&subject));
        let (action, base) = match (custom, &facts.mcp_method) {
            (Some((_, name, risk)), _) => {
                let base = risk.unwrap_or(match &facts.mcp_method {
                    Some(m) if m == "tools/call" => g.risk.tool_call,
                    Some(_) => g.risk.mcp_other,
                    None => verb_risk(g, action::verb(facts.method)),
                });
                (name.clone(), base)
            }
            (None, Some(m)) if m == "tools/call" => (subject.clone(), g.risk.tool_call),
            (None, Some(_)) => (subject.clone(), g.risk.mcp_other),
            (None, None) => {
                let a = action::http_action(facts.method, facts.path);
                let r = verb_risk(g, action::verb(facts.method));
                (a, r)
            }
        };
        let risk_score = base.min(100);
        let mut verdict = StaticVerdict::Allow;
        if p.deny_actions.iter().any(|r| r.is_match(&action)) {
            verdict = StaticVerdict::Deny;
            reasons.push(format!(
                "action `{action}` is denied by policy `{}`",
                p.name
            ));
        } else if g.deny_risk_score.is_some_and(|t| risk_score >= t) {
            verdict = StaticVerdict::Deny;
            reasons.push(format!(
                "risk score {risk_score} ≥ deny threshold {}",
                g.deny_risk_score.unwrap_or_default()
            ));
        } else if p.hold_actions.iter().any(|r| r.is_match(&action)) {
            verdict = StaticVerdict::Hold;
            reasons.push(format!("action `{action}` needs approval"));
        } else if g.hold_risk_score.is_some_and(|t| risk_score >= t) {
            verdict = StaticVerdict::Hold;
            reasons.push(format!(
                "risk score {risk_score} ≥ hold threshold {}",
                g.hold_risk_score.unwrap_or_default()
            ));
        }
        Static {
            action,
            decision: CachedDecision {
                verdict,
                risk_score,
                reasons,
            },
        }
    }

    /// Decides a request under policy `policy`. See the module documentation.
    pub async fn decide_request(&self, policy: &str, facts: &RequestFacts<'_>) -> GovDecision {
        let now = now_ms();
        let stores = self.stores_for(facts.failure_mode);
        let action_id = format!("act_{}", facts.request_id);
        let Some(p) = self.policies.get(policy) else {
            return excluded(action_id);
        };
        if !p.cfg.enabled || p.excluded.iter().any(|r| r.is_match(facts.path)) {
            return excluded(action_id);
        }
        let g = &p.cfg;
        let agent = facts
            .agent_header
            .clone()
            .filter(|a| !a.is_empty())
            .or_else(|| g.default_agent_id.clone());
        let mut d = GovDecision {
            outcome: GovOutcome::Continue,
            agent: agent.clone().unwrap_or_else(|| "-".into()),
            action: String::new(),
            action_id,
            risk_score: 0,
            risk_level: RiskLevel::Low,
            cache_hit: false,
            reasons: Vec::new(),
            findings: Vec::new(),
            failure: None,
        };
        if agent.is_none() && g.require_agent_id {
            d.outcome = GovOutcome::Unauthenticated;
            d.reasons
                .push(format!("no agent id (header `{}`)", g.agent_id_header));
            return d;
        }
        let agent = d.agent.clone();

        // The static part: action type, risk, deny/hold by action or score; cached.
        let cache_key = format!(
            "{}|{}|{}|{}|{} {}",
            self.generation,
            p.name,
            agent,
            facts
                .tool
                .as_deref()
                .map(|t| format!("tools/call:{t}"))
                .or_else(|| facts.mcp_method.clone())
                .unwrap_or_default(),
            facts.method,
            action::normalize_path(facts.path)
        );
        let cached = if g.decision_cache.enabled {
            match stores.cache.get(&cache_key, now).await {
                Ok(c) => c,
                Err(e) => return self.failed(d, facts.failure_mode, &e),
            }
        } else {
            None
        };
        let (stat, hit) = match cached {
            Some(c) => {
                // The action type is cheap and not cached, so that the key stays small.
                let s = self.static_decision(p, facts);
                (
                    Static {
                        action: s.action,
                        decision: c,
                    },
                    true,
                )
            }
            None => {
                let s = self.static_decision(p, facts);
                if g.decision_cache.enabled {
                    let ttl = g.decision_cache.ttl_seconds.saturating_mul(1_000);
                    if let Err(e) = stores
                        .cache
                        .put(&cache_key, s.decision.clone(), ttl, now)
                        .await
                    {
                        return self.failed(d, facts.failure_mode, &e);
                    }
                }
                (s, false)
            }
        };
        d.cache_hit = hit;
        d.action = stat.action;
        d.risk_score = stat.decision.risk_score;
        d.risk_level = RiskLevel::of(d.risk_score);
        d.reasons.extend(stat.decision.reasons.iter().cloned());
        let mut verdict = stat.decision.verdict;
        if verdict == StaticVerdict::Deny {
            d.outcome = GovOutcome::Deny;
            d.findings.push(GovFinding {
                detector: "governance",
                kind: "action_denied".into(),
                severity: Severity::High,
                tool: facts.tool.clone(),
                detail: d.reasons.join("; "),
            });
            return d;
        }

        // Authorization rules: evaluated on every request, after the cache, because they read
        // what its key leaves out (headers, claims, arguments, the client's address).
        if !p.authz.is_empty() {
            let attrs = Attributes {
                route: facts.route,
                method: facts.method,
                path: facts.path,
                headers: &facts.headers,
                client_ip: &facts.client_ip,
                agent: if agent == "-" { "" } else { &agent },
                user: facts.user.as_deref().unwrap_or(""),
                tenant: facts.tenant.as_deref().unwrap_or(""),
                jwt: facts.jwt_claims.as_ref(),
                mcp_method: facts.mcp_method.as_deref().unwrap_or(""),
                tool: facts.tool.as_deref().unwrap_or(""),
                arguments: facts.arguments.as_ref(),
            };
            let denied = |d: &mut GovDecision, kind: &str, detail: String| {
                d.outcome = GovOutcome::Deny;
                d.reasons.push(detail.clone());
                d.findings.push(GovFinding {
                    detector: "authorization",
                    kind: kind.into(),
                    severity: Severity::High,
                    tool: facts.tool.clone(),
                    detail,
                });
            };
            match p.authz.evaluate(&attrs) {
                RuleOutcome::NoMatch => {}
                RuleOutcome::Matched {
                    rule,
                    effect,
                    message,
                } => {
                    let said = message.map(|m| format!(": {m}")).unwrap_or_default();
                    match effect {
                        RuleEffect::Allow => {
                            d.reasons.push(format!("allowed by rule `{rule}`"));
                        }
                        RuleEffect::Deny => {
                            denied(
                                &mut d,
                                "rule_denied",
                                format!("denied by authorization rule `{rule}`{said}"),
                            );
                            return d;
                        }
                        RuleEffect::Hold => {
                            verdict = StaticVerdict::Hold;
                            d.reasons
                                .push(format!("held by authorization rule `{rule}`{said}"));
                        }
                    }
                }
                RuleOutcome::DefaultDeny => {
                    denied(
                        &mut d,
                        "default_denied",
                        format!(
                            "no authorization rule of policy `{}` allows this request (default: deny)",
                            p.name
                        ),
                    );
                    return d;
                }
                RuleOutcome::Error { rule, error } => match facts.failure_mode {
                    FailureMode::FailClosed => {
                        d.failure = Some(FailureMode::FailClosed);
                        denied(
                            &mut d,
                            "rule_error",
                            format!(
                                "authorization rule `{rule}` could not be evaluated ({error}); refused (fail_closed)"
                            ),
                        );
                        return d;
                    }
                    FailureMode::FailOpen => {
                        d.failure = Some(FailureMode::FailOpen);
                        d.reasons.push(format!(
                            "authorization rule `{rule}` could not be evaluated ({error}); rules skipped (fail_open)"
                        ));
                    }
                },
            }
        }

        // A quarantined or held tool is refused whatever else holds.
        if let (Some(tool), true) = (&facts.tool, p.tools.pin) {
            match stores.pins.get(facts.scope, tool).await {
                Ok(Some(pin)) if pin.state.blocks() => {
                    d.outcome = GovOutcome::Deny;
                    let what = match pin.state {
                        PinState::Held => "held for a first approval",
                        _ => "quarantined: its definition changed since it was approved",
                    };
                    d.reasons.push(format!(
                        "tool `{tool}` is {what} (Palisade tool quarantine); an approver can release it through the admin API"
                    ));
                    d.findings.push(GovFinding {
                        detector: "tool_pinning",
                        kind: "quarantined_tool_call".into(),
                        severity: Severity::High,
                        tool: Some(tool.clone()),
                        detail: pin.note.clone(),
                    });
                    return d;
                }
                Ok(None) if p.tools.on_first_sight == FirstSight::Hold => {
                    d.outcome = GovOutcome::Deny;
                    d.reasons.push(format!(
                        "tool `{tool}` has not been approved yet (Palisade tool quarantine: new tools are held)"
                    ));
                    return d;
                }
                Ok(_) => {}
                Err(e) => return self.failed(d, facts.failure_mode, &e),
            }
        }

        // Rate limits.
        for (i, rl) in p.rate_limits.iter().enumerate() {
            let Some(values) = rate_key_values(rl, facts, &agent) else {
                continue;
            };
            let max = rl
                .overrides
                .iter()
                .find(|o| {
                    o.matches.iter().all(|(k, want)| {
                        rl.key
                            .iter()
                            .position(|x| x == k)
                            .and_then(|j| values.get(j))
                            .is_some_and(|v| v == want)
                    })
                })
                .map_or(rl.max_requests, |o| o.max_requests);
            let name = rl.name.clone().unwrap_or_else(|| {
                rl.key
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join("+")
            });
            let key = format!("rl|{}|{i}|{}", p.name, values.join("|"));
            let quota = Quota {
                max_requests: max,
                period_ms: rl.period_seconds.saturating_mul(1_000),
            };
            match stores.rates.check(&key, quota, now).await {
                Ok(o) if !o.allowed => {
                    crate::metrics::rate_limited(&p.name, &name);
                    let secs = o.retry_after_ms.div_ceil(1_000).max(1);
                    d.outcome = GovOutcome::RateLimited {
                        retry_after_seconds: secs,
                    };
                    d.reasons.push(format!(
                        "rate limit `{name}` ({max} per {} s) exceeded; retry after {secs} s",
                        rl.period_seconds
                    ));
                    d.findings.push(GovFinding {
                        detector: "rate_limit",
                        kind: "rate_limit_exceeded".into(),
                        severity: Severity::Medium,
                        tool: facts.tool.clone(),
                        detail: format!("{name}: {}", values.join(", ")),
                    });
                    return d;
                }
                Ok(_) => {}
                Err(e) => return self.failed(d, facts.failure_mode, &e),
            }
        }

        // Session flow rules over tool labels.
        let session = facts
            .mcp_session
            .as_ref()
            .map(|s| format!("mcp:{s}"))
            .unwrap_or_else(|| format!("agent:{agent}"));
        if let Some(tool) = &facts.tool {
            let labels = p.labels(tool);
            if !labels.is_empty() {
                let steps = match stores.sessions.steps(&session, now).await {
                    Ok(s) => s,
                    Err(e) => return self.failed(d, facts.failure_mode, &e),
                };
                for rule in &p.flows {
                    if !labels.contains(&rule.then) {
                        continue;
                    }
                    let Some(first) = steps
                        .iter()
                        .position(|s| s.labels.iter().any(|l| l == rule.after.as_str()))
                    else {
                        continue;
                    };
                    let mut path: Vec<String> = steps[first..]
                        .iter()
                        .map(|s| format!("{}({})", s.tool, s.labels.join(",")))
                        .collect();
                    path.push(format!(
                        "{tool}({})",
                        labels
                            .iter()
                            .map(|l| l.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    ));
                    let path = path.join(" → ");
                    d.findings.push(GovFinding {
                        detector: "session_flow",
                        kind: "toxic_flow".into(),
                        severity: Severity::High,
                        tool: Some(tool.clone()),
                        detail: format!(
                            "{} after {} in session {session}: {path}",
                            rule.then.as_str(),
                            rule.after.as_str()
                        ),
                    });
                    d.reasons.push(format!(
                        "toxic flow: `{}` after `{}` ({path})",
                        rule.then.as_str(),
                        rule.after.as_str()
                    ));
                    match rule.action {
                        FlowAction::Deny => {
                            d.outcome = GovOutcome::Deny;
                            return d;
                        }
                        FlowAction::Hold => verdict = StaticVerdict::Hold,
                    }
                }
            }
        }

        if verdict == StaticVerdict::Hold && facts.observe {
            d.outcome = GovOutcome::Hold {
                approval_id: String::new(),
                wait_ms: None,
            };
            return d;
        }
        if verdict == StaticVerdict::Hold {
            let fingerprint = fingerprint(&agent, &d.action, facts);
            match stores
                .approvals
                .take_grant(&agent, &d.action, &fingerprint, now)
                .await
            {
                Ok(Some(grant)) => {
                    d.reasons.push(format!(
                        "approved by {} (approval {})",
                        grant.decided_by.as_deref().unwrap_or("?"),
                        grant.id
                    ));
                }
                Ok(None) => {
                    let id = format!("apr_{}", facts.request_id);
                    let a = Approval {
                        id: id.clone(),
                        status: ApprovalStatus::Pending,
                        agent: agent.clone(),
                        action: d.action.clone(),
                        route: facts.route.to_owned(),
                        fingerprint,
                        reasons: d.reasons.clone(),
                        risk_score: d.risk_score,
                        created_ms: now,
                        expires_ms: now
                            .saturating_add(g.approval.pending_ttl_seconds.saturating_mul(1_000)),
                        scope: ApprovalScope::Call,
                        used: false,
                        decided_by: None,
                        decided_ms: None,
                        decision_reason: None,
                    };
                    if let Err(e) = stores.approvals.create(a).await {
                        return self.failed(d, facts.failure_mode, &e);
                    }
                    self.audit(
                        "palisade",
                        "approval.requested",
                        &id,
                        Some(d.reasons.join("; ")),
                        serde_json::json!({"agent": agent, "action": d.action, "route": facts.route}),
                    )
                    .await;
                    d.outcome = GovOutcome::Hold {
                        approval_id: id,
                        wait_ms: match g.approval.mode {
                            ApprovalMode::Wait => Some(g.approval.wait_ms),
                            ApprovalMode::Async => None,
                        },
                    };
                    return d;
                }
                Err(e) => return self.failed(d, facts.failure_mode, &e),
            }
        }

        // The call goes ahead: remember its labels for later flow checks.
        if let Some(tool) = &facts.tool {
            let labels = p.labels(tool);
            if !labels.is_empty() {
                let step = SessionStep {
                    tool: tool.clone(),
                    labels: labels.iter().map(|l| l.as_str().to_owned()).collect(),
                    at_ms: now,
                };
                if let Err(e) = stores
                    .sessions
                    .append(&session, step, SESSION_TTL_MS, now)
                    .await
                {
                    return self.failed(d, facts.failure_mode, &e);
                }
            }
        }
        d
    }

    /// Waits for held decision `d`'s approval; `timed_out` is the caller's timer. Returns the
    /// decision with its outcome settled: `Continue` when approved, `Deny` otherwise.
    pub async fn await_hold(
        &self,
        mut d: GovDecision,
        approval_id: &str,
        timer: impl std::future::Future<Output = ()>,
        failure_mode: FailureMode,
    ) -> GovDecision {
        let stores = self.stores_for(failure_mode);
        let waited = tokio::select! {
            s = stores.approvals.wait(approval_id) => Some(s),
            () = timer => None,
        };
        match waited {
            Some(Ok(ApprovalStatus::Approved)) => {
                // Consume a call-scoped grant so the retry of the same call does not reuse it.
                let now = now_ms();
                if let Ok(Some(a)) = stores.approvals.get(approval_id, now).await {
                    if a.scope == ApprovalScope::Call {
                        let _ = stores
                            .approvals
                            .take_grant(&a.agent, &a.action, &a.fingerprint, now)
                            .await;
                    }
                    d.reasons.push(format!(
                        "approved by {} (approval {approval_id})",
                        a.decided_by.as_deref().unwrap_or("?")
                    ));
                }
                d.outcome = GovOutcome::Continue;
            }
            Some(Ok(s)) => {
                d.outcome = GovOutcome::Deny;
                d.reasons.push(format!(
                    "approval {approval_id} {}",
                    match s {
                        ApprovalStatus::Denied => "was denied",
                        _ => "expired",
                    }
                ));
            }
            None => {
                d.outcome = GovOutcome::Deny;
                d.reasons.push(format!(
                    "approval {approval_id} was not decided in time; denied"
                ));
            }
            Some(Err(e)) => return self.failed(d, failure_mode, &e),
        }
        d
    }

    fn failed(&self, mut d: GovDecision, mode: FailureMode, e: &StateError) -> GovDecision {
        d.failure = Some(mode);
        match mode {
            FailureMode::FailClosed => {
                d.outcome = GovOutcome::Error;
                d.reasons.push(format!(
                    "governance state failed ({e}); refused (fail_closed)"
                ));
            }
            FailureMode::FailOpen => {
                d.outcome = GovOutcome::Continue;
                d.reasons.push(format!(
                    "governance state failed ({e}); let through ungoverned (fail_open)"
                ));
            }
        }
        d
    }

    /// Appends to the audit log; an audit failure is logged by the caller's tracing, never fatal.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        reason: Option<String>,
        detail: Value,
    ) {
        let _ = self
            .stores
            .audit
            .record(AuditEntry {
                at_ms: now_ms(),
                actor: actor.to_owned(),
                action: action.to_owned(),
                target: target.to_owned(),
                reason,
                detail,
            })
            .await;
    }

    /// Reviews an MCP list result (`result` of `tools/list`, `prompts/list` or
    /// `resources/list`) seen through `scope` under `policy`. See [`ListReview`].
    pub async fn review_list(
        &self,
        policy: &str,
        scope: &str,
        method: &str,
        result: &Value,
        failure_mode: FailureMode,
    ) -> ListReview {
        let stores = self.stores_for(failure_mode);
        let mut review = ListReview::default();
        let Some(p) = self.policies.get(policy) else {
            return review;
        };
        let key = match method {
            "tools/list" => "tools",
            "prompts/list" => "prompts",
            "resources/list" => "resources",
            _ => return review,
        };
        let Some(items) = result.get(key).and_then(Value::as_array) else {
            return review;
        };
        // Poisoning first: a poisoned definition is dropped whatever its pin says.
        if p.tools.poisoning.enabled {
            for item in items {
                let name = item.get("name").and_then(Value::as_str).unwrap_or("");
                let found: Vec<_> = palisade_detect::tools::analyze_definition(item)
                    .into_iter()
                    .filter(|f| f.severity >= p.tools.poisoning.min_severity)
                    .collect();
                if found.is_empty() {
                    continue;
                }
                for f in &found {
                    review.findings.push(GovFinding {
                        detector: "tool_poisoning",
                        kind: f.kind.to_owned(),
                        severity: f.severity,
                        tool: Some(name.to_owned()),
                        detail: format!("{}: {}", f.field, f.evidence),
                    });
                }
                match p.tools.poisoning.action {
                    PoisoningAction::Drop => {
                        review.hide.insert(name.to_owned());
                    }
                    PoisoningAction::Block => review.block = true,
                    PoisoningAction::Alert => {}
                }
            }
        }
        if key != "tools" || !p.tools.pin {
            return review;
        }
        let now = now_ms();
        let pins = match stores.pins.list(Some(scope)).await {
            Ok(v) => v,
            Err(e) => return review.failed(failure_mode, &e),
        };
        let pinned: HashMap<&str, &ToolPin> = pins
            .iter()
            .map(|(_, pin)| (pin.tool.as_str(), pin))
            .collect();
        let mut seen = BTreeSet::new();
        let mut new_tools: Vec<&Value> = Vec::new();
        for tool in items {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            seen.insert(name);
            let hash = pins::tool_hash(tool);
            let visible = pins::visible(tool);
            let next = match pinned.get(name) {
                None => {
                    new_tools.push(tool);
                    let held = p.tools.on_first_sight == FirstSight::Hold;
                    if held {
                        review.hide.insert(name.to_owned());
                        review.findings.push(GovFinding {
                            detector: "tool_pinning",
                            kind: "new_tool_held".into(),
                            severity: Severity::Low,
                            tool: Some(name.to_owned()),
                            detail: "first seen; held for approval".into(),
                        });
                    }
                    Some((
                        ToolPin {
                            tool: name.to_owned(),
                            pinned_hash: (!held).then(|| hash.clone()),
                            pinned: (!held).then(|| visible.clone()),
                            pending_hash: held.then(|| hash.clone()),
                            pending: held.then(|| visible.clone()),
                            state: if held {
                                PinState::Held
                            } else {
                                PinState::Pinned
                            },
                            first_seen_ms: now,
                            last_seen_ms: now,
                            note: if held {
                                "new tool held for approval".into()
                            } else {
                                "pinned on first sight".into()
                            },
                        },
                        if held { "tool.held" } else { "tool.pinned" },
                    ))
                }
                Some(pin) => self.review_pinned(p, pin, name, &hash, &visible, now, &mut review),
            };
            if let Some((pin, event)) = next {
                let detail = serde_json::json!({"state": pin.state, "hash": hash});
                let note = pin.note.clone();
                if let Err(e) = stores.pins.put(scope, pin).await {
                    return review.failed(failure_mode, &e);
                }
                self.audit(
                    "palisade",
                    event,
                    &format!("{scope} {name}"),
                    Some(note),
                    detail,
                )
                .await;
            }
        }
        // Removed tools, and renames: a removed tool whose body reappears under a new name.
        for (_, pin) in &pins {
            if seen.contains(pin.tool.as_str()) || pin.state == PinState::Removed {
                continue;
            }
            let renamed_to = pin.pinned.as_ref().and_then(|old| {
                let old_body = pins::body_hash(old);
                new_tools
                    .iter()
                    .find(|t| pins::body_hash(t) == old_body)
                    .and_then(|t| t.get("name").and_then(Value::as_str))
            });
            let (kind, detail) = match renamed_to {
                Some(n) => ("tool_renamed", format!("renamed to `{n}`")),
                None => ("tool_removed", "no longer listed".to_owned()),
            };
            review.findings.push(GovFinding {
                detector: "tool_pinning",
                kind: kind.into(),
                severity: Severity::Medium,
                tool: Some(pin.tool.clone()),
                detail: detail.clone(),
            });
            let mut gone = pin.clone();
            gone.state = PinState::Removed;
            gone.note = detail.clone();
            if let Err(e) = stores.pins.put(scope, gone).await {
                return review.failed(failure_mode, &e);
            }
            self.audit(
                "palisade",
                &format!("tool.{}", &kind[5..]),
                &format!("{scope} {}", pin.tool),
                Some(detail),
                Value::Null,
            )
            .await;
        }
        // Name collisions with tools other servers expose.
        if let Ok(all) = stores.pins.list(None).await {
            for (other_scope, pin) in &all {
                if other_scope != scope
                    && pin.state != PinState::Removed
                    && seen.contains(pin.tool.as_str())
                {
                    review.findings.push(GovFinding {
                        detector: "tool_poisoning",
                        kind: "tool_name_collision".into(),
                        severity: Severity::Medium,
                        tool: Some(pin.tool.clone()),
                        detail: format!("also offered by {other_scope}"),
                    });
                }
            }
        }
        review
    }

    #[allow(clippy::too_many_arguments)]
    fn review_pinned(
        &self,
        p: &PolicyGovern,
        pin: &ToolPin,
        name: &str,
        hash: &str,
        visible: &Value,
        now: u64,
        review: &mut ListReview,
    ) -> Option<(ToolPin, &'static str)> {
        let mut next = pin.clone();
        next.last_seen_ms = now;
        if pin.pinned_hash.as_deref() == Some(hash) {
            // As approved. A tool that came back, or a change that was reverted, is served again;
            // one quarantined by hand stays so.
            let reverted = pin.state == PinState::Quarantined && pin.pending_hash.is_some();
            if pin.state == PinState::Removed || reverted {
                next.state = PinState::Pinned;
                next.pending = None;
                next.pending_hash = None;
                next.note = "definition matches its pin again".into();
                return Some((next, "tool.restored"));
            }
            if pin.state.blocks() {
                review.hide.insert(name.to_owned());
            }
            return None;
        }
        if pin.state == PinState::Held {
            review.hide.insert(name.to_owned());
            if pin.pending_hash.as_deref() == Some(hash) {
                return None;
            }
            next.pending_hash = Some(hash.to_owned());
            next.pending = Some(visible.clone());
            return Some((next, "tool.held"));
        }
        // Changed since it was approved: a rug pull.
        let fields = pin
            .pinned
            .as_ref()
            .map(|old| pins::changed_fields(old, visible))
            .unwrap_or_default();
        let detail = format!(
            "definition changed since it was pinned ({})",
            fields.join(", ")
        );
        review.findings.push(GovFinding {
            detector: "tool_pinning",
            kind: "rug_pull".into(),
            severity: Severity::High,
            tool: Some(name.to_owned()),
            detail: detail.clone(),
        });
        let already = pin.pending_hash.as_deref() == Some(hash);
        match p.tools.on_change {
            OnChange::Quarantine => {
                review.hide.insert(name.to_owned());
                if already && pin.state == PinState::Quarantined {
                    return None;
                }
                next.state = PinState::Quarantined;
                next.pending_hash = Some(hash.to_owned());
                next.pending = Some(visible.clone());
                next.note = detail;
                Some((next, "tool.quarantined"))
            }
            OnChange::Alert => {
                if pin.state.blocks() {
                    review.hide.insert(name.to_owned());
                }
                if already {
                    return None;
                }
                next.pending_hash = Some(hash.to_owned());
                next.pending = Some(visible.clone());
                next.note = detail;
                Some((next, "tool.changed"))
            }
            OnChange::Allow => {
                next.pinned_hash = Some(hash.to_owned());
                next.pinned = Some(visible.clone());
                next.pending = None;
                next.pending_hash = None;
                next.state = PinState::Pinned;
                next.note = detail;
                Some((next, "tool.repinned"))
            }
        }
    }

    /// Approves tool `tool` in `scope`: its latest definition becomes the pin and it is served
    /// again. Audited under `actor`.
    pub async fn approve_tool(
        &self,
        scope: &str,
        tool: &str,
        actor: &str,
        reason: Option<String>,
    ) -> Result<ToolPin, StateError> {
        let mut pin = self
            .stores
            .pins
            .get(scope, tool)
            .await?
            .ok_or_else(|| StateError::NotFound(format!("tool `{tool}` in `{scope}`")))?;
        if let (Some(h), Some(v)) = (pin.pending_hash.take(), pin.pending.take()) {
            pin.pinned_hash = Some(h);
            pin.pinned = Some(v);
        }
        if pin.pinned_hash.is_none() {
            return Err(StateError::Conflict(format!(
                "tool `{tool}` has no definition to approve"
            )));
        }
        pin.state = PinState::Pinned;
        pin.note = format!("approved by {actor}");
        self.stores.pins.put(scope, pin.clone()).await?;
        self.audit(
            actor,
            "tool.approved",
            &format!("{scope} {tool}"),
            reason,
            serde_json::json!({"hash": pin.pinned_hash}),
        )
        .await;
        Ok(pin)
    }

    /// Quarantines (`on = true`) or releases a tool by hand.
    pub async fn set_quarantine(
        &self,
        scope: &str,
        tool: &str,
        on: bool,
        actor: &str,
        reason: Option<String>,
    ) -> Result<ToolPin, StateError> {
        let mut pin = self
            .stores
            .pins
            .get(scope, tool)
            .await?
            .ok_or_else(|| StateError::NotFound(format!("tool `{tool}` in `{scope}`")))?;
        if on {
            pin.state = PinState::Quarantined;
            pin.note = format!("quarantined by {actor}");
        } else {
            if pin.pinned_hash.is_none() {
                return Err(StateError::Conflict(format!(
                    "tool `{tool}` was never approved; approve it instead"
                )));
            }
            pin.state = PinState::Pinned;
            pin.pending = None;
            pin.pending_hash = None;
            pin.note = format!("released by {actor}");
        }
        self.stores.pins.put(scope, pin.clone()).await?;
        self.audit(
            actor,
            if on {
                "tool.quarantined"
            } else {
                "tool.released"
            },
            &format!("{scope} {tool}"),
            reason,
            Value::Null,
        )
        .await;
        Ok(pin)
    }

    /// Decides approval `id`, audited under `decision.by`.
    pub async fn decide_approval(
        &self,
        id: &str,
        decision: ApprovalDecision,
    ) -> Result<Approval, StateError> {
        let by = decision.by.clone();
        let reason = decision.reason.clone();
        let a = self.stores.approvals.decide(id, decision).await?;
        let action = match a.status {
            ApprovalStatus::Approved => "approval.approved",
            _ => "approval.denied",
        };
        self.audit(
            &by,
            action,
            id,
            reason,
            serde_json::json!({"scope": a.scope, "expires_ms": a.expires_ms, "agent": a.agent, "action": a.action}),
        )
        .await;
        Ok(a)
    }
}

fn excluded(action_id: String) -> GovDecision {
    GovDecision {
        outcome: GovOutcome::Excluded,
        agent: "-".into(),
        action: String::new(),
        action_id,
        risk_score: 0,
        risk_level: RiskLevel::Low,
        cache_hit: false,
        reasons: Vec::new(),
        findings: Vec::new(),
        failure: None,
    }
}

fn verb_risk(g: &GovernanceConfig, verb: &str) -> u8 {
    match verb {
        "read" => g.risk.read,
        "create" => g.risk.create,
        "update" => g.risk.update,
        "delete" => g.risk.delete,
        _ => g.risk.update,
    }
}

fn short_hash(s: &str) -> String {
    pins::hex(&Sha256::digest(s.as_bytes())[..8])
}

fn rate_key_values(rl: &RateLimitConfig, f: &RequestFacts<'_>, agent: &str) -> Option<Vec<String>> {
    rl.key
        .iter()
        .map(|k| match k {
            RateKey::ClientIp => Some(f.client_ip.clone()),
            RateKey::Agent => (agent != "-").then(|| agent.to_owned()),
            RateKey::User => f.user.clone(),
            RateKey::Tenant => f.tenant.clone(),
            RateKey::Route => Some(f.route.to_owned()),
            RateKey::Tool => f.tool.clone(),
            RateKey::ApiKey => f.api_key.as_deref().map(short_hash),
        })
        .collect()
}

fn fingerprint(agent: &str, action: &str, f: &RequestFacts<'_>) -> String {
    let mut h = Sha256::new();
    for part in [
        agent.as_bytes(),
        action.as_bytes(),
        f.method.as_bytes(),
        f.path.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(f.body);
    pins::hex(&h.finalize()[..16])
}

/// What [`Governance::review_list`] found in one list result.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ListReview {
    /// Names of entries to remove from the list the client sees.
    pub hide: BTreeSet<String>,
    /// Refuse the whole response.
    pub block: bool,
    /// What was found.
    pub findings: Vec<GovFinding>,
    /// Why the review could not complete, when a store failed.
    pub failure: Option<String>,
}

impl ListReview {
    fn failed(mut self, mode: FailureMode, e: &StateError) -> Self {
        self.failure = Some(e.to_string());
        if mode == FailureMode::FailClosed {
            self.block = true;
        }
        self
    }
}
