//! Inspecting whole bodies: decode into parts, detect per part, decide once, write edits back.

use std::panic::{catch_unwind, AssertUnwindSafe};

use palisade_detect::redact::Edit;
use palisade_policy::config::{Action, FailureMode};
use palisade_policy::{CompiledPolicy, Direction, MatchedFinding};
use palisade_protocol::{decode, write_back, Decoded, Location, Meta, Protocol, Role, Side};
use serde::Serialize;

/// A finding in a body: which part, where in it, what the policy made of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocatedFinding {
    /// The finding and its action; its span is a byte range of the part's text.
    #[serde(flatten)]
    pub matched: MatchedFinding,
    /// Where the part is in the body.
    pub location: Location,
    /// What the part is.
    pub role: Role,
    /// The text around the finding, with personal data and secrets masked, for records.
    #[serde(skip)]
    pub snippet: Option<String>,
}

/// Bytes of context kept on each side of a finding in its snippet.
const SNIPPET_CONTEXT: usize = 40;

/// The text around `span` in `text`, every personal-data and secret value in it masked (the
/// finding's own value too, whatever its detector, when it is one of those).
pub fn snippet(
    text: &str,
    span: palisade_detect::Span,
    sensitive: &[palisade_detect::Span],
) -> String {
    let floor = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let ceil = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    let start = floor(span.start.saturating_sub(SNIPPET_CONTEXT));
    let end = ceil(span.end.saturating_add(SNIPPET_CONTEXT));
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    for (i, c) in text[start..end].char_indices() {
        let at = start + i;
        let masked = sensitive.iter().any(|s| s.start <= at && at < s.end);
        out.push(if masked && !c.is_whitespace() { '*' } else { c });
    }
    if end < text.len() {
        out.push('…');
    }
    out
}

/// The outcome of inspecting one body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BodyVerdict {
    /// `allow`, `redact` or `block`.
    pub action: Action,
    /// 0–100.
    pub risk_score: u8,
    /// The findings the policy covered, in body order.
    pub findings: Vec<LocatedFinding>,
    /// Why, in short sentences.
    pub reasons: Vec<String>,
    /// The rewritten body when the action is `redact`; every byte outside the edited strings is
    /// the original's.
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
    /// What the adapter learned (protocol, method, tool, model).
    pub meta: Meta,
    /// Set when inspection failed and the failure mode decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureMode>,
}

fn side(direction: Direction) -> Side {
    match direction {
        Direction::Request => Side::Request,
        Direction::Response => Side::Response,
    }
}

/// Inspects a decoded body under `policy`.
pub(crate) fn inspect_decoded(
    policy: &CompiledPolicy,
    direction: Direction,
    decoded: &Decoded,
) -> (palisade_policy::Decision, Vec<(Location, Role)>) {
    let detectors = policy.detectors(direction);
    let mut matched = Vec::new();
    let mut places = Vec::new();
    for part in &decoded.parts {
        for f in detectors.scan(&part.text) {
            // The application's own system prompt is trusted: it is not where injections come
            // from, and it is full of "you are …" that reads like a role reassignment.
            if part.role == Role::SystemPrompt
                && f.detector == palisade_detect::DetectorId::PromptInjection
            {
                continue;
            }
            if let Some((action, redaction)) = policy.classify(direction, &f) {
                matched.push(MatchedFinding {
                    finding: f,
                    action,
                    redaction,
                });
                places.push((part.location.clone(), part.role));
            }
        }
    }
    (policy.conclude(matched), places)
}

/// Decodes, detects, decides and applies. Any failure (an undecodable body, a defect in a
/// detector) resolves through the policy's failure mode, with a reason saying so.
pub(crate) fn inspect_body(
    policy: &CompiledPolicy,
    direction: Direction,
    protocol: Protocol,
    body: &[u8],
    method: Option<&str>,
) -> BodyVerdict {
    if policy.detectors(direction).is_empty() {
        // Nothing to look for: skip decoding too.
        return BodyVerdict {
            action: Action::Allow,
            risk_score: 0,
            findings: Vec::new(),
            reasons: Vec::new(),
            body: None,
            meta: Meta {
                protocol: Some(protocol),
                ..Meta::default()
            },
            failure: None,
        };
    }
    let run = catch_unwind(AssertUnwindSafe(|| -> Result<BodyVerdict, String> {
        let decoded = decode(protocol, side(direction), body, method).map_err(|e| e.to_string())?;
        let (decision, places) = inspect_decoded(policy, direction, &decoded);
        let mut rewritten = None;
        if decision.action == Action::Redact {
            let mut edits: Vec<(Location, String)> = Vec::new();
            for part in &decoded.parts {
                let mut in_part: Vec<&MatchedFinding> = decision
                    .findings
                    .iter()
                    .zip(&places)
                    .filter(|(_, (loc, _))| *loc == part.location)
                    .map(|(m, _)| m)
                    .collect();
                // Most severe first, so it wins where findings cover the same bytes.
                in_part.sort_by_key(|m| std::cmp::Reverse(m.finding.severity));
                let part_edits: Vec<Edit> = in_part
                    .into_iter()
                    .filter_map(|m| {
                        m.redaction.as_ref().map(|r| Edit {
                            span: m.finding.span,
                            kind: m.finding.kind.to_string(),
                            redaction: r.clone(),
                        })
                    })
                    .collect();
                if !part_edits.is_empty() {
                    edits.push((
                        part.location.clone(),
                        policy.redactor().apply(&part.text, &part_edits),
                    ));
                }
            }
            rewritten = Some(write_back(body, &edits).map_err(|e| e.to_string())?);
        }
        // Personal data and secrets are masked wherever they show in a snippet.
        let sensitive_spans: Vec<(Location, palisade_detect::Span)> = decision
            .findings
            .iter()
            .zip(&places)
            .filter(|(m, _)| {
                matches!(
                    m.finding.detector,
                    palisade_detect::DetectorId::Pii | palisade_detect::DetectorId::Secrets
                )
            })
            .map(|(m, (l, _))| (l.clone(), m.finding.span))
            .collect();
        let findings = decision
            .findings
            .into_iter()
            .zip(places)
            .map(|(matched, (location, role))| {
                let part = decoded.parts.iter().find(|p| p.location == location);
                let snippet = part.map(|p| {
                    let sensitive: Vec<palisade_detect::Span> = sensitive_spans
                        .iter()
                        .filter(|(l, _)| *l == location)
                        .map(|(_, s)| *s)
                        .collect();
                    snippet(&p.text, matched.finding.span, &sensitive)
                });
                LocatedFinding {
                    matched,
                    location,
                    role,
                    snippet,
                }
            })
            .collect();
        Ok(BodyVerdict {
            action: decision.action,
            risk_score: decision.risk_score,
            findings,
            reasons: decision.reasons,
            body: rewritten,
            meta: decoded.meta,
            failure: None,
        })
    }));
    let problem = match run {
        Ok(Ok(v)) => return v,
        Ok(Err(e)) => e,
        Err(_) => "inspection failed".to_owned(),
    };
    let mode = policy.failure_mode();
    let (action, what) = match mode {
        FailureMode::FailClosed => (Action::Block, "blocked (fail_closed)"),
        FailureMode::FailOpen => (Action::Allow, "allowed uninspected (fail_open)"),
    };
    BodyVerdict {
        action,
        risk_score: 0,
        findings: Vec::new(),
        reasons: vec![format!("{problem}; {what}")],
        body: None,
        meta: Meta::default(),
        failure: Some(mode),
    }
}
