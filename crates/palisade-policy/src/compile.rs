//! Compiled policies and the decision logic.
//!
//! A [`CompiledPolicy`] holds, for each [`Direction`], the detectors its rules name (and no
//! others, so an unused detector costs nothing) and the rules themselves. [`CompiledPolicy::decide`]
//! turns findings into a [`Decision`]: each finding takes the strongest action among the rules
//! that cover it (`block` over `redact` over `allow`), findings no rule covers are dropped, and
//! the verdict is the strongest action taken. The risk score is independent of the rules: a
//! noisy-OR of severity × confidence over the findings kept, so that many weak signals add up
//! without ever passing 100.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use palisade_detect::custom::{CustomDetector, CustomLimits};
use palisade_detect::redact::{Edit, Redaction, Redactor};
use palisade_detect::{
    builtin_detector, Detector, DetectorId, DetectorSet, Finding, NormalizeOptions, Severity,
};
use serde::Serialize;

use crate::config::{Action, Config, FailureMode, PolicyConfig, RedactionOperator, RuleConfig};

/// Which way the inspected text travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the client: prompts, tool arguments, request bodies. Uses the policy's `input` rules.
    Request,
    /// Back to the client: model output, tool results, responses. Uses the `output` rules.
    Response,
}

/// A finding that a rule covered, with the action that rule gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedFinding {
    /// The finding.
    #[serde(flatten)]
    pub finding: Finding,
    /// The action the strongest covering rule gives it.
    pub action: Action,
    /// The redaction operator, when the action is `redact`.
    #[serde(skip)]
    pub redaction: Option<Redaction>,
}

/// What a policy makes of a set of findings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The verdict: the strongest action among the matched findings, or `block` when the risk
    /// score reaches the policy's `block_risk_score`.
    pub action: Action,
    /// 0–100.
    pub risk_score: u8,
    /// The findings some rule covered, in text order.
    pub findings: Vec<MatchedFinding>,
    /// Why, in short sentences (`prompt_injection/instruction_override (high) → block`).
    pub reasons: Vec<String>,
}

impl Decision {
    /// The redaction edits to apply, when the verdict is `redact`.
    pub fn edits(&self) -> Vec<Edit> {
        // Most severe first: where two findings cover the same bytes (an SSN that also reads as
        // a phone number), the redactor keeps the first, so the value gets the stronger treatment.
        let mut ordered: Vec<&MatchedFinding> = self.findings.iter().collect();
        ordered.sort_by_key(|m| std::cmp::Reverse(m.finding.severity));
        ordered
            .into_iter()
            .filter_map(|m| {
                m.redaction.as_ref().map(|r| Edit {
                    span: m.finding.span,
                    kind: m.finding.kind.to_string(),
                    redaction: r.clone(),
                })
            })
            .collect()
    }
}

#[derive(Debug)]
struct DirectionRules {
    detectors: DetectorSet,
    rules: Vec<RuleConfig>,
}

/// One policy, ready to run.
#[derive(Debug)]
pub struct CompiledPolicy {
    name: String,
    failure_mode: FailureMode,
    request: DirectionRules,
    response: DirectionRules,
    block_risk_score: Option<u8>,
    mask_keep_last: usize,
    redactor: Redactor,
}

/// Every policy of a configuration, compiled.
#[derive(Debug)]
pub struct CompiledConfig {
    policies: BTreeMap<String, Arc<CompiledPolicy>>,
}

impl CompiledConfig {
    /// Compiles every policy. The configuration must have passed [`crate::load`]'s checks.
    pub fn new(config: &Config) -> Result<Self, String> {
        let mut policies = BTreeMap::new();
        for (name, p) in &config.policies {
            policies.insert(name.clone(), Arc::new(CompiledPolicy::new(name, p)?));
        }
        Ok(CompiledConfig { policies })
    }

    /// The policy called `name`.
    pub fn policy(&self, name: &str) -> Option<&Arc<CompiledPolicy>> {
        self.policies.get(name)
    }

    /// The names of all policies.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }
}

fn hash_key(env: &str) -> Vec<u8> {
    match std::env::var(env) {
        Ok(v) if !v.is_empty() => v.into_bytes(),
        _ => {
            let mut key = Vec::with_capacity(32);
            for _ in 0..4 {
                let mut h = RandomState::new().build_hasher();
                h.write_u64(0x9e37_79b9_7f4a_7c15);
                key.extend_from_slice(&h.finish().to_le_bytes());
            }
            key
        }
    }
}

impl CompiledPolicy {
    /// Compiles one policy.
    pub fn new(name: &str, p: &PolicyConfig) -> Result<Self, String> {
        let normalize = NormalizeOptions {
            decode: p.normalization.decode,
            max_decode_depth: p.normalization.max_decode_depth,
            max_decoded_bytes: p.normalization.max_decoded_bytes,
            ..NormalizeOptions::default()
        };
        let custom_rules: Vec<_> = p.custom.iter().map(|c| c.to_rule()).collect();
        let build = |rules: &[RuleConfig]| -> Result<DirectionRules, String> {
            let ids: BTreeSet<DetectorId> = rules.iter().map(|r| r.detector).collect();
            let mut detectors: Vec<Box<dyn Detector>> = Vec::new();
            for id in ids {
                if id == DetectorId::Custom {
                    let d = CustomDetector::new(&custom_rules, &CustomLimits::default())
                        .map_err(|e| format!("policy `{name}`: {e}"))?;
                    if !d.is_empty() {
                        detectors.push(Box::new(d));
                    }
                } else if let Some(d) = builtin_detector(id) {
                    detectors.push(d);
                }
            }
            Ok(DirectionRules {
                detectors: DetectorSet::new(detectors, normalize.clone()),
                rules: rules.to_vec(),
            })
        };
        Ok(CompiledPolicy {
            name: name.to_owned(),
            failure_mode: p.failure_mode,
            request: build(&p.input)?,
            response: build(&p.output)?,
            block_risk_score: p.block_risk_score,
            mask_keep_last: p.redaction.mask_keep_last,
            redactor: Redactor::new(hash_key(&p.redaction.hash_key_env)),
        })
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What happens when inspection fails.
    pub fn failure_mode(&self) -> FailureMode {
        self.failure_mode
    }

    /// The detectors that run for `direction`.
    pub fn detectors(&self, direction: Direction) -> &DetectorSet {
        &self.side(direction).detectors
    }

    /// The redactor holding this policy's hash key.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    fn side(&self, direction: Direction) -> &DirectionRules {
        match direction {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    fn redaction(&self, op: Option<RedactionOperator>) -> Redaction {
        match op.unwrap_or(RedactionOperator::Mask) {
            RedactionOperator::Mask => Redaction::Mask {
                keep_last: self.mask_keep_last,
            },
            RedactionOperator::Replace => Redaction::Replace,
            RedactionOperator::Hash => Redaction::Hash,
            RedactionOperator::Remove => Redaction::Remove,
            RedactionOperator::Defang => Redaction::Defang,
        }
    }

    /// The action (and redaction) the strongest rule covering `f` gives it, or `None` when no
    /// rule for `direction` covers it.
    pub fn classify(
        &self,
        direction: Direction,
        f: &Finding,
    ) -> Option<(Action, Option<Redaction>)> {
        let rule = self
            .side(direction)
            .rules
            .iter()
            .filter(|r| covers(r, f))
            .max_by_key(|r| r.action)?;
        let redaction = (rule.action == Action::Redact).then(|| self.redaction(rule.redaction));
        Some((rule.action, redaction))
    }

    /// Turns findings into a decision under this policy's rules for `direction`. Findings no rule
    /// covers are dropped.
    pub fn decide(&self, direction: Direction, findings: Vec<Finding>) -> Decision {
        let matched = findings
            .into_iter()
            .filter_map(|f| {
                self.classify(direction, &f)
                    .map(|(action, redaction)| MatchedFinding {
                        finding: f,
                        action,
                        redaction,
                    })
            })
            .collect();
        self.conclude(matched)
    }

    /// The verdict, risk score and reasons for findings already classified; their order is kept.
    pub fn conclude(&self, matched: Vec<MatchedFinding>) -> Decision {
        let risk_score = risk_score(matched.iter().map(|m| &m.finding));
        let mut action = matched
            .iter()
            .map(|m| m.action)
            .max()
            .unwrap_or(Action::Allow);
        let mut reasons: Vec<String> = Vec::new();
        for m in &matched {
            if m.action == Action::Allow {
                continue;
            }
            let r = format!(
                "{}/{} ({}) → {}",
                m.finding.detector,
                m.finding.kind,
                m.finding.severity,
                m.action.as_str()
            );
            if !reasons.contains(&r) {
                reasons.push(r);
            }
        }
        if let Some(limit) = self.block_risk_score {
            if risk_score >= limit && action != Action::Block {
                action = Action::Block;
                reasons.push(format!("risk score {risk_score} ≥ {limit} → block"));
            }
        }
        Decision {
            action,
            risk_score,
            findings: matched,
            reasons,
        }
    }
}

fn covers(rule: &RuleConfig, f: &Finding) -> bool {
    rule.detector == f.detector
        && f.severity >= rule.min_severity
        && f.confidence >= rule.min_confidence
        && rule
            .kinds
            .as_ref()
            .is_none_or(|kinds| kinds.iter().any(|k| k == f.kind.as_ref()))
}

/// A noisy-OR of severity × confidence, 0–100.
pub fn risk_score<'a>(findings: impl Iterator<Item = &'a Finding>) -> u8 {
    let mut keep = 1.0f64;
    for f in findings {
        let w = match f.severity {
            Severity::Low => 0.2,
            Severity::Medium => 0.45,
            Severity::High => 0.75,
            Severity::Critical => 0.95,
        };
        keep *= 1.0 - w * f64::from(f.confidence.clamp(0.0, 1.0));
    }
    ((1.0 - keep) * 100.0).round().clamp(0.0, 100.0) as u8
}

/// Checks that span several fields. Errors are `(field path, offending value, message)`.
pub(crate) fn check(config: &Config) -> Result<(), (String, String, String)> {
    if config.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err((
            "listen".into(),
            config.listen.clone(),
            format!(
                "`{}` is not an address such as 127.0.0.1:8080",
                config.listen
            ),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, r) in config.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if !names.insert(r.name.as_str()) {
            return Err((
                format!("{at}.name"),
                r.name.clone(),
                format!("route `{}` is defined twice", r.name),
            ));
        }
        if !r.path_prefix.starts_with('/') {
            return Err((
                format!("{at}.path_prefix"),
                r.path_prefix.clone(),
                "must start with `/`".into(),
            ));
        }
        if r.path_prefix.starts_with("/proxy/") || r.path_prefix == "/proxy" {
            return Err((
                format!("{at}.path_prefix"),
                r.path_prefix.clone(),
                "`/proxy` is the generic proxy's".into(),
            ));
        }
        let scheme_ok = r.upstream.starts_with("http://") || r.upstream.starts_with("https://");
        if !scheme_ok || r.upstream.len() <= "https://".len() {
            return Err((
                format!("{at}.upstream"),
                r.upstream.clone(),
                format!("`{}` is not an http:// or https:// URL", r.upstream),
            ));
        }
        if !config.policies.contains_key(&r.policy) {
            return Err((
                format!("{at}.policy"),
                r.policy.clone(),
                format!("no policy called `{}`", r.policy),
            ));
        }
    }
    if let Some(r) = &config.state.redis {
        check_redis(r)?;
    }
    if let Some(pg) = &config.storage.postgres {
        let given = [&pg.url, &pg.url_env]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if given != 1 {
            return Err((
                "storage.postgres".into(),
                String::new(),
                "give exactly one of `url` and `url_env`".into(),
            ));
        }
        if pg.timeout_ms == 0 {
            return Err((
                "storage.postgres.timeout_ms".into(),
                "0".into(),
                "must be at least 1".into(),
            ));
        }
    }
    let mut collectors = BTreeSet::new();
    for (i, c) in config.collectors.iter().enumerate() {
        let at = format!("collectors[{i}]");
        if !collectors.insert(c.name.as_str()) {
            return Err((
                format!("{at}.name"),
                c.name.clone(),
                format!("collector `{}` is defined twice", c.name),
            ));
        }
        match (&c.api_key_env, &c.api_key_sha256) {
            (Some(_), None) => {}
            (None, Some(h)) => {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err((
                        format!("{at}.api_key_sha256"),
                        h.clone(),
                        "must be 64 hex digits (the SHA-256 of the key)".into(),
                    ));
                }
            }
            _ => {
                return Err((
                    format!("{at}.api_key_env"),
                    c.name.clone(),
                    "give exactly one of `api_key_env` and `api_key_sha256`".into(),
                ))
            }
        }
        if !config.policies.contains_key(&c.policy) {
            return Err((
                format!("{at}.policy"),
                c.policy.clone(),
                format!("no policy called `{}`", c.policy),
            ));
        }
        for (j, net) in c.trusted_networks.iter().enumerate() {
            if crate::config::in_network(net, std::net::Ipv4Addr::LOCALHOST.into()).is_none() {
                return Err((
                    format!("{at}.trusted_networks[{j}]"),
                    net.clone(),
                    format!("`{net}` is not an address or a network such as 10.0.0.0/8"),
                ));
            }
        }
    }
    for (j, net) in config.client_ip.trusted_proxies.iter().enumerate() {
        if crate::config::in_network(net, std::net::Ipv4Addr::LOCALHOST.into()).is_none() {
            return Err((
                format!("client_ip.trusted_proxies[{j}]"),
                net.clone(),
                format!("`{net}` is not an address or a network such as 10.0.0.0/8"),
            ));
        }
    }
    let h = &config.client_ip.header;
    if h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err((
            "client_ip.header".into(),
            config.client_ip.header.clone(),
            "not a valid header name".into(),
        ));
    }
    let t = &config.traces;
    if let Some(url) = &t.otlp_endpoint {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err((
                "traces.otlp_endpoint".into(),
                url.clone(),
                "an http:// or https:// URL, such as http://127.0.0.1:4318/v1/traces".into(),
            ));
        }
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        return Err((
            "traces.sample_ratio".into(),
            t.sample_ratio.to_string(),
            "a share between 0 and 1".into(),
        ));
    }
    crate::govern::check(config)?;
    crate::alerts::check(&config.alerts)?;
    crate::events::check(&config.events)?;
    if !config.policies.contains_key(&config.proxy.policy) {
        return Err((
            "proxy.policy".into(),
            config.proxy.policy.clone(),
            format!("no policy called `{}`", config.proxy.policy),
        ));
    }
    for (name, p) in &config.policies {
        let custom_names: Vec<&str> = p.custom.iter().map(|c| c.name.as_str()).collect();
        let mut seen = BTreeSet::new();
        for (i, c) in p.custom.iter().enumerate() {
            if !seen.insert(c.name.as_str()) {
                return Err((
                    format!("policies.{name}.custom[{i}].name"),
                    c.name.clone(),
                    format!("custom rule `{}` is defined twice", c.name),
                ));
            }
        }
        for (side, rules) in [("input", &p.input), ("output", &p.output)] {
            for (i, r) in rules.iter().enumerate() {
                let at = format!("policies.{name}.{side}[{i}]");
                if !(0.0..=1.0).contains(&r.min_confidence) {
                    return Err((
                        format!("{at}.min_confidence"),
                        r.min_confidence.to_string(),
                        format!("must be between 0 and 1, not {}", r.min_confidence),
                    ));
                }
                if r.redaction.is_some() && r.action != Action::Redact {
                    return Err((
                        format!("{at}.redaction"),
                        String::new(),
                        format!(
                            "a redaction operator needs `action: redact` (this rule says `{}`)",
                            r.action.as_str()
                        ),
                    ));
                }
                if let Some(kinds) = &r.kinds {
                    for k in kinds {
                        let known = if r.detector == DetectorId::Custom {
                            custom_names.contains(&k.as_str())
                        } else {
                            palisade_detect::known_kinds(r.detector).contains(&k.as_str())
                        };
                        if !known {
                            let choices = if r.detector == DetectorId::Custom {
                                custom_names.join(", ")
                            } else {
                                palisade_detect::known_kinds(r.detector).join(", ")
                            };
                            return Err((
                                format!("{at}.kinds"),
                                k.clone(),
                                format!(
                                    "`{k}` is not a kind of detector `{}`; expected one of: {choices}",
                                    r.detector
                                ),
                            ));
                        }
                    }
                }
                if r.detector == DetectorId::Custom && p.custom.is_empty() {
                    return Err((
                        format!("{at}.detector"),
                        String::new(),
                        format!(
                            "policy `{name}` uses detector `custom` but defines no `custom` rules"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `state.redis`: one URL source, a scheme this build speaks, and no zero where a zero would
/// mean "never" or "nothing".
fn check_redis(r: &crate::govern::RedisStateConfig) -> Result<(), (String, String, String)> {
    let err = |field: &str, value: String, message: String| {
        Err((format!("state.redis.{field}"), value, message))
    };
    match (&r.url, &r.url_env) {
        (Some(u), None) => {
            if !(u.starts_with("redis://") || u.starts_with("redis+unix://")) {
                let scheme = u.split("://").next().unwrap_or_default().to_owned();
                return err(
                    "url",
                    scheme,
                    "must start with `redis://` or `redis+unix://` (TLS and Cluster are not supported)"
                        .into(),
                );
            }
        }
        (None, Some(_)) => {}
        _ => {
            return err(
                "url",
                String::new(),
                "give exactly one of `url` and `url_env`".into(),
            )
        }
    }
    for (field, v) in [
        ("connections", r.connections as u64),
        ("connect_timeout_ms", r.connect_timeout_ms),
        ("command_timeout_ms", r.command_timeout_ms),
        ("retry_interval_ms", r.retry_interval_ms),
        ("approval_retention_seconds", r.approval_retention_seconds),
    ] {
        if v == 0 {
            return err(field, String::new(), "must be at least 1".into());
        }
    }
    if r.connections > 64 {
        return err(
            "connections",
            r.connections.to_string(),
            "at most 64: each connection multiplexes every concurrent command already".into(),
        );
    }
    Ok(())
}
