//! The `Inspector`: detect, decide and apply, for one text under one policy.
//!
//! Every way into Palisade (the `scan` command today; the proxy, the guard APIs and ingestion as
//! they arrive) goes through [`Inspector`], so the same bytes under the same policy always get the
//! same verdict. The inspector owns the compiled configuration and does no I/O.
//!
//! Failure is explicit. Detectors are pure and are not expected to fail, but a defect in one must
//! not take the process down or let traffic through unannounced: a panic during inspection is
//! caught, and the policy's failure mode decides the verdict (`fail_closed` blocks, `fail_open`
//! allows), with a reason saying which happened.

use std::panic::{catch_unwind, AssertUnwindSafe};

pub use body::{BodyVerdict, LocatedFinding};
pub use palisade_protocol::{Location, Protocol, Role};

pub mod blocked;
mod body;
pub mod govern;
pub mod metrics;
pub mod stream;

use palisade_detect::Finding;
use palisade_policy::config::{Action, Config, FailureMode};
use palisade_policy::{CompiledConfig, CompiledPolicy, Decision, Direction, MatchedFinding};
use serde::Serialize;

/// Why inspection could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// No policy has that name.
    #[error("no policy called `{0}`")]
    UnknownPolicy(String),
    /// A policy failed to compile.
    #[error("{0}")]
    Compile(String),
}

/// The outcome of inspecting one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// `allow`, `redact` or `block`.
    pub action: Action,
    /// 0–100.
    pub risk_score: u8,
    /// The findings the policy covered, in text order.
    pub findings: Vec<MatchedFinding>,
    /// Why, in short sentences.
    pub reasons: Vec<String>,
    /// The rewritten text when the action is `redact`.
    pub redacted: Option<String>,
    /// Set when inspection failed and the failure mode decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureMode>,
}

/// Detect, decide, apply. See the crate documentation.
#[derive(Debug)]
pub struct Inspector {
    config: CompiledConfig,
}

impl Inspector {
    /// Compiles `config`.
    pub fn new(config: &Config) -> Result<Self, EngineError> {
        Ok(Inspector {
            config: CompiledConfig::new(config).map_err(EngineError::Compile)?,
        })
    }

    /// The policy called `name`, shared, for work that outlives a borrow (streams).
    pub fn policy_arc(&self, name: &str) -> Result<std::sync::Arc<CompiledPolicy>, EngineError> {
        self.config
            .policy(name)
            .cloned()
            .ok_or_else(|| EngineError::UnknownPolicy(name.to_owned()))
    }

    /// The policy called `name`.
    pub fn policy(&self, name: &str) -> Result<&CompiledPolicy, EngineError> {
        self.config
            .policy(name)
            .map(|p| p.as_ref())
            .ok_or_else(|| EngineError::UnknownPolicy(name.to_owned()))
    }

    /// Inspects `text` travelling in `direction` under the policy called `policy`.
    pub fn inspect_text(
        &self,
        policy: &str,
        direction: Direction,
        text: &str,
    ) -> Result<Verdict, EngineError> {
        let policy = self.policy(policy)?;
        let v = inspect_with(policy, direction, text);
        for m in &v.findings {
            metrics::finding(
                m.finding.detector.as_str(),
                &m.finding.kind,
                action_name(m.action),
            );
        }
        Ok(v)
    }

    /// Inspects a body of `protocol` travelling in `direction`: decodes it into parts, runs the
    /// policy's detectors over each part, decides once for the whole body, and writes redactions
    /// back in place. `method` is, for an MCP response, the method of the request it answers.
    pub fn inspect_body(
        &self,
        policy: &str,
        direction: Direction,
        protocol: Protocol,
        body: &[u8],
        method: Option<&str>,
    ) -> Result<BodyVerdict, EngineError> {
        let policy = self.policy(policy)?;
        let v = body::inspect_body(policy, direction, protocol, body, method);
        for f in &v.findings {
            metrics::finding(
                f.matched.finding.detector.as_str(),
                &f.matched.finding.kind,
                action_name(f.matched.action),
            );
        }
        Ok(v)
    }
}

/// The lowercase name of an action, for logs and metrics.
pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Redact => "redact",
        Action::Block => "block",
    }
}

fn inspect_with(policy: &CompiledPolicy, direction: Direction, text: &str) -> Verdict {
    let run = catch_unwind(AssertUnwindSafe(|| {
        let findings: Vec<Finding> = policy.detectors(direction).scan(text);
        let decision: Decision = policy.decide(direction, findings);
        let redacted = (decision.action == Action::Redact)
            .then(|| policy.redactor().apply(text, &decision.edits()));
        (decision, redacted)
    }));
    match run {
        Ok((d, redacted)) => Verdict {
            action: d.action,
            risk_score: d.risk_score,
            findings: d.findings,
            reasons: d.reasons,
            redacted,
            failure: None,
        },
        Err(_) => {
            let mode = policy.failure_mode();
            let (action, what) = match mode {
                FailureMode::FailClosed => (Action::Block, "blocked (fail_closed)"),
                FailureMode::FailOpen => (Action::Allow, "allowed uninspected (fail_open)"),
            };
            Verdict {
                action,
                risk_score: 0,
                findings: Vec::new(),
                reasons: vec![format!("inspection failed; {what}")],
                redacted: None,
                failure: Some(mode),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspector(yaml: &str) -> Inspector {
        let c = palisade_policy::parse_str(yaml, "<test>").unwrap_or_else(|e| panic!("{e}"));
        Inspector::new(&c).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn redact_rewrites_and_block_does_not() {
        let i = inspector(
            "policies:\n  p:\n    input:\n      - { detector: custom, kinds: [word], action: redact, redaction: replace }\n      - { detector: custom, kinds: [bad], action: block }\n    custom:\n      - { name: word, keywords: [falcon] }\n      - { name: bad, keywords: [forbidden] }\n",
        );
        let v = i
            .inspect_text("p", Direction::Request, "falcon and Falcon")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.action, Action::Redact);
        assert_eq!(v.redacted.as_deref(), Some("[WORD_1] and [WORD_2]"));
        let v = i
            .inspect_text("p", Direction::Request, "falcon is forbidden")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.action, Action::Block);
        assert_eq!(v.redacted, None);
        // Output rules are separate: this policy has none.
        let v = i
            .inspect_text("p", Direction::Response, "forbidden")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.action, Action::Allow);
    }

    const BODY_RULES: &str = "policies:\n  p:\n    input:\n      - { detector: custom, kinds: [stop], action: block }\n    output:\n      - { detector: custom, kinds: [ssn], action: redact, redaction: mask }\n    custom:\n      - { name: ssn, regex: '\\b\\d{3}-\\d{2}-\\d{4}\\b' }\n      - { name: stop, keywords: [forbidden] }\n  open:\n    failure_mode: fail_open\n    input:\n      - { detector: custom, action: block }\n    custom:\n      - { name: stop, keywords: [forbidden] }\n";

    #[test]
    fn body_redaction_keeps_other_bytes_and_locates_findings() {
        let i = inspector(BODY_RULES);
        let body = br#"{"jsonrpc":"2.0", "id":7,"result":{"content":[{"type":"text","text":"SSN 078-05-1120"}],"isError":false}}"#;
        let v = i
            .inspect_body(
                "p",
                Direction::Response,
                Protocol::Mcp,
                body,
                Some("tools/call"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.action, Action::Redact);
        assert_eq!(
            v.body.as_deref().map(String::from_utf8_lossy).as_deref(),
            Some(
                r#"{"jsonrpc":"2.0", "id":7,"result":{"content":[{"type":"text","text":"SSN ***-**-1120"}],"isError":false}}"#
            )
        );
        assert_eq!(
            v.findings[0].location,
            Location::Pointer("/result/content/0/text".into())
        );
        assert_eq!(v.findings[0].role, Role::ToolResult);
        assert_eq!(v.meta.method.as_deref(), Some("tools/call"));
    }

    #[test]
    fn body_block_and_failure_modes() {
        let i = inspector(BODY_RULES);
        let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"q":"forbidden"}}}"#;
        let v = i
            .inspect_body("p", Direction::Request, Protocol::Mcp, call, None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.action, Action::Block);
        assert_eq!(v.meta.tool.as_deref(), Some("x"));
        let malformed = b"{\"jsonrpc\": \"2.0\", ";
        let v = i
            .inspect_body("p", Direction::Request, Protocol::Mcp, malformed, None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (v.action, v.failure),
            (Action::Block, Some(FailureMode::FailClosed))
        );
        assert!(v.reasons[0].contains("not valid JSON"), "{:?}", v.reasons);
        let v = i
            .inspect_body("open", Direction::Request, Protocol::Mcp, malformed, None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (v.action, v.failure),
            (Action::Allow, Some(FailureMode::FailOpen))
        );
    }

    #[test]
    fn unknown_policy_is_an_error() {
        let i = inspector("");
        assert_eq!(
            i.inspect_text("nope", Direction::Request, "x"),
            Err(EngineError::UnknownPolicy("nope".into()))
        );
    }
}
