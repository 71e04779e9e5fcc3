//! Streams inspected as they flow: SSE (MCP streamable HTTP, OpenAI, Anthropic, Gemini, Cohere)
//! and newline-delimited JSON.
//!
//! Each unit of the stream (an SSE event or an NDJSON line) is decoded with the protocol adapter,
//! and the texts it carries (model output deltas, tool-call argument deltas, tool results) are
//! appended to one running text. After every unit the detectors run over a **window**: the text
//! not yet sent plus an **overlap** of the text already sent (`overlap_bytes`), so a secret or an
//! SSN split across two, three or twenty chunks is seen whole.
//!
//! Units are held back until the text they carry ends at least `hold_bytes` before the end of
//! what has arrived. Any value that *starts* in held text can still be redacted or blocked when
//! its end arrives; that is the delay the stream pays, bounded by `hold_bytes` of text (and, in
//! time, by the gateway calling [`StreamInspector::flush`] when the upstream goes idle).
//!
//! # What cannot be retracted
//!
//! Bytes already sent to the client are gone. Concretely:
//! - a value that starts in text already flushed (more than `hold_bytes` before the end of the
//!   stream so far when it is completed) is redacted only from its first unsent byte on; its sent
//!   beginning stays with the client;
//! - a block ends the stream with a protocol error event, but what was flushed before it stays;
//!   held units are dropped, never sent. MCP over SSE is the exception: each event is a whole
//!   JSON-RPC message and one stream may carry a whole session, so a blocked message is replaced
//!   by a JSON-RPC error for its id (a blocked notification is dropped) and the stream goes on;
//! - [`StreamInspector::flush`] sends held units early, so a value completed after an idle flush is
//!   redacted only from its first unsent byte.
//!
//! Units with no text (role headers, `[DONE]`, keep-alive comments) keep their place in order and
//! are sent unchanged; units nobody edited are sent as their exact original bytes; an edited unit
//! is re-encoded with the same event fields and only the edited JSON strings changed.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use palisade_detect::redact::{Edit, Redaction};
use palisade_detect::{Finding, Span};
use palisade_policy::config::{Action, FailureMode};
use palisade_policy::{CompiledPolicy, Direction, MatchedFinding};
use palisade_protocol::sse::{NdjsonDecoder, SseDecoder, SseEvent, StreamError};
use palisade_protocol::{decode, write_back, Location, Protocol, Role, Side};

use crate::blocked::block_event;
use crate::body::LocatedFinding;

/// How a stream is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `text/event-stream`.
    Sse,
    /// `application/x-ndjson` and friends: one JSON document a line.
    Ndjson,
}

/// Window sizes of a stream inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Text held back from the client so a value starting in it can still be redacted.
    pub hold_bytes: usize,
    /// Text already sent that is scanned again with new text, so values split across units are
    /// seen whole.
    pub overlap_bytes: usize,
    /// Largest single event or line accepted.
    pub max_event_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            hold_bytes: 128,
            overlap_bytes: 512,
            max_event_bytes: 4 << 20,
        }
    }
}

/// What to send to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutput {
    /// Bytes to forward, in order.
    Data(Vec<u8>),
    /// The stream was blocked: send these bytes (a protocol error event), then end the stream.
    Blocked(Vec<u8>),
}

enum Unit {
    Sse(SseEvent),
    Line(Vec<u8>),
}

const LIST_CHANGED: &str = "notifications/tools/list_changed";

fn is_list_changed(unit: &Unit) -> bool {
    let data: &[u8] = match unit {
        Unit::Sse(ev) => ev.data.as_bytes(),
        Unit::Line(l) => l,
    };
    // The substring test keeps the parse off every other event.
    data.windows(LIST_CHANGED.len())
        .any(|w| w == LIST_CHANGED.as_bytes())
        && serde_json::from_slice::<serde_json::Value>(data)
            .ok()
            .and_then(|v| {
                v.get("method")
                    .and_then(|m| m.as_str())
                    .map(|m| m == LIST_CHANGED)
            })
            .unwrap_or(false)
}

struct Piece {
    pointer: String,
    role: Role,
    range: Range<usize>,
}

struct Pending {
    unit: Unit,
    /// The JSON document the unit carries (SSE data or the line).
    json: Option<Vec<u8>>,
    pieces: Vec<Piece>,
    /// What to send instead of the unit (an MCP message blocked on its own).
    replace: Option<Vec<u8>>,
}

struct Redact {
    range: Range<usize>,
    kind: String,
    redaction: Redaction,
    /// The replacement for the whole value, computed when its first byte is flushed.
    replacement: Option<String>,
    /// Whether a placeholder of a different length than the value has been sent already.
    placed: bool,
}

/// Inspects one stream. See the module documentation.
pub struct StreamInspector {
    policy: Arc<CompiledPolicy>,
    direction: Direction,
    protocol: Protocol,
    method: Option<String>,
    request_id: String,
    mcp_id: Option<String>,
    framing: Framing,
    limits: StreamLimits,
    sse: SseDecoder,
    ndjson: NdjsonDecoder,
    /// The running text from absolute offset `base` on.
    text: String,
    base: usize,
    /// Absolute offset up to which text has been sent.
    flushed: usize,
    pending: VecDeque<Pending>,
    redactions: Vec<Redact>,
    findings: Vec<LocatedFinding>,
    reasons: Vec<String>,
    blocked: bool,
    endpoint_prefix: Option<String>,
    /// The message endpoint an MCP SSE stream announced, as the client sees it.
    endpoint: Option<String>,
    failure_mode: FailureMode,
    /// A unit that could not be decoded under `fail_closed`: the stream ends at the next scan.
    undecodable: Option<String>,
    /// An MCP `notifications/tools/list_changed` passed since the last
    /// [`StreamInspector::take_list_changed`].
    list_changed: bool,
}

impl std::fmt::Debug for StreamInspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamInspector")
            .field("protocol", &self.protocol)
            .field("flushed", &self.flushed)
            .field("pending", &self.pending.len())
            .field("blocked", &self.blocked)
            .finish()
    }
}

impl StreamInspector {
    /// A new inspection of a stream travelling in `direction`. `method` is the MCP method of the
    /// request the stream answers; `mcp_id` its JSON-RPC id (as JSON text), used in a block.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        policy: Arc<CompiledPolicy>,
        direction: Direction,
        protocol: Protocol,
        framing: Framing,
        limits: StreamLimits,
        request_id: impl Into<String>,
        method: Option<String>,
        mcp_id: Option<String>,
    ) -> Self {
        StreamInspector {
            policy,
            direction,
            protocol,
            method,
            request_id: request_id.into(),
            mcp_id,
            framing,
            limits,
            sse: SseDecoder::new(limits.max_event_bytes),
            ndjson: NdjsonDecoder::new(limits.max_event_bytes),
            text: String::new(),
            base: 0,
            flushed: 0,
            pending: VecDeque::new(),
            redactions: Vec::new(),
            findings: Vec::new(),
            reasons: Vec::new(),
            blocked: false,
            endpoint_prefix: None,
            endpoint: None,
            failure_mode: FailureMode::FailClosed,
            undecodable: None,
            list_changed: false,
        }
        .with_failure_mode(None)
    }

    /// The failure mode for undecodable units: the route's when given, else the policy's.
    /// `fail_closed` ends the stream with an error event; `fail_open` passes the unit through.
    pub fn with_failure_mode(mut self, mode: Option<FailureMode>) -> Self {
        self.failure_mode = mode.unwrap_or_else(|| self.policy.failure_mode());
        self
    }

    /// For MCP's SSE transport behind a path prefix: the server's `endpoint` event names a path
    /// on the server's root (`/messages/?session_id=…`), which the client resolves against the
    /// proxy. Prefixing it with the route's path keeps the client's POSTs on the route.
    pub fn with_endpoint_prefix(mut self, prefix: impl Into<String>) -> Self {
        let p: String = prefix.into();
        self.endpoint_prefix = (!p.is_empty()).then(|| p.trim_end_matches('/').to_owned());
        self
    }

    /// The message endpoint an MCP SSE stream announced (`/route/messages/?session_id=…`), as the
    /// client will POST to it; `None` until the `endpoint` event has been sent.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Every finding so far (spans are byte ranges of the stream's running text).
    pub fn findings(&self) -> &[LocatedFinding] {
        &self.findings
    }

    /// Why the stream was blocked or redacted.
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// Whether the stream was blocked.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Feeds bytes from upstream; returns what to send now.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<StreamOutput>, StreamError> {
        if self.blocked {
            return Ok(Vec::new());
        }
        let units: Vec<Unit> = match self.framing {
            Framing::Sse => self.sse.push(chunk)?.into_iter().map(Unit::Sse).collect(),
            Framing::Ndjson => self
                .ndjson
                .push(chunk)?
                .into_iter()
                .map(Unit::Line)
                .collect(),
        };
        let mut out = Vec::new();
        if units.is_empty() {
            return Ok(out);
        }
        if self.protocol == Protocol::Mcp {
            self.list_changed |= units.iter().any(is_list_changed);
        }
        // One scan per read, not per unit: nothing is sent between the units of one read, so
        // scanning after each would only rescan a growing window.
        for unit in units {
            self.add(unit);
        }
        if let Some(b) = self.scan() {
            out.push(b);
            return Ok(out);
        }
        self.emit(false, &mut out);
        Ok(out)
    }

    /// Whether an MCP `notifications/tools/list_changed` passed since the last call: the gateway
    /// then re-checks the server's tools without waiting for the client to list them.
    pub fn take_list_changed(&mut self) -> bool {
        std::mem::take(&mut self.list_changed)
    }

    /// Sends everything held now (the upstream went idle). Values completed later are redacted
    /// only from their first unsent byte.
    pub fn flush(&mut self) -> Vec<StreamOutput> {
        let mut out = Vec::new();
        if !self.blocked {
            self.emit(true, &mut out);
        }
        out
    }

    /// The upstream ended: decode what is left, scan once more, send everything.
    pub fn finish(&mut self) -> Result<Vec<StreamOutput>, StreamError> {
        if self.blocked {
            return Ok(Vec::new());
        }
        let last = match self.framing {
            Framing::Sse => self.sse.finish()?.map(Unit::Sse),
            Framing::Ndjson => self.ndjson.finish().map(Unit::Line),
        };
        let mut out = Vec::new();
        if let Some(unit) = last {
            self.add(unit);
            if let Some(b) = self.scan() {
                out.push(b);
                return Ok(out);
            }
        }
        self.emit(true, &mut out);
        Ok(out)
    }

    fn end(&self) -> usize {
        self.base + self.text.len()
    }

    fn add(&mut self, unit: Unit) {
        if self.policy.detectors(self.direction).is_empty() {
            // Nothing to look for: the unit passes as it came.
            self.pending.push_back(Pending {
                unit,
                json: None,
                pieces: Vec::new(),
                replace: None,
            });
            return;
        }
        let json: Option<Vec<u8>> = match &unit {
            Unit::Sse(ev) if ev.has_data && ev.data.trim() != "[DONE]" => {
                Some(ev.data.clone().into_bytes())
            }
            Unit::Line(line) if !line.iter().all(u8::is_ascii_whitespace) => Some(line.clone()),
            _ => None,
        };
        let mut pieces = Vec::new();
        if let Some(doc) = &json {
            let side = match self.direction {
                Direction::Request => Side::Request,
                Direction::Response => Side::Response,
            };
            let decoded = decode(self.protocol, side, doc, self.method.as_deref());
            if let Err(e) = &decoded {
                // MCP's SSE transport announces its endpoint as a plain path, not JSON.
                let endpoint =
                    matches!(&unit, Unit::Sse(ev) if ev.event.as_deref() == Some("endpoint"));
                if !endpoint {
                    let why = format!("a stream event could not be decoded ({e})");
                    match self.failure_mode {
                        FailureMode::FailClosed => self.undecodable = Some(why),
                        FailureMode::FailOpen => {
                            let why = format!("{why}; passed uninspected (fail_open)");
                            if !self.reasons.contains(&why) {
                                self.reasons.push(why);
                            }
                        }
                    }
                }
            }
            if let Ok(decoded) = decoded {
                for part in decoded.parts {
                    let Location::Pointer(pointer) = part.location else {
                        continue;
                    };
                    if self.protocol == Protocol::Mcp && !self.text.is_empty() {
                        // MCP messages are whole documents, not deltas of one text: keep their
                        // texts apart, or words at their seams would run together.
                        self.text.push('\n');
                    }
                    let start = self.end();
                    self.text.push_str(&part.text);
                    pieces.push(Piece {
                        pointer,
                        role: part.role,
                        range: start..self.end(),
                    });
                }
            }
        }
        self.pending.push_back(Pending {
            unit,
            json,
            pieces,
            replace: None,
        });
    }

    /// Scans the window; records findings; returns the block event if the stream must end.
    fn scan(&mut self) -> Option<StreamOutput> {
        if let Some(why) = self.undecodable.take() {
            self.blocked = true;
            self.reasons.push(format!("{why}; blocked (fail_closed)"));
            self.pending.clear();
            return Some(StreamOutput::Blocked(block_event(
                self.protocol,
                &self.request_id,
                &self.reasons,
                self.mcp_id.as_deref(),
            )));
        }
        let window_start = self
            .flushed
            .saturating_sub(self.limits.overlap_bytes)
            .max(self.base);
        let mut from = window_start - self.base;
        while !self.text.is_char_boundary(from) {
            from += 1;
        }
        if from >= self.text.len() {
            return None;
        }
        let window = &self.text[from..];
        let offset = self.base + from;
        let found: Vec<Finding> = self.policy.detectors(self.direction).scan(window);
        for f in found {
            let abs = (offset + f.span.start)..(offset + f.span.end);
            if abs.end <= self.flushed {
                continue;
            }
            let Some((action, redaction)) = self.policy.classify(self.direction, &f) else {
                continue;
            };
            // The same value is seen again on every rescan, growing as it arrives.
            let role = self.role_at(abs.start);
            let snippet = self.snippet(&f, abs.clone());
            let known = self.findings.iter_mut().find(|l| {
                l.matched.finding.detector == f.detector
                    && l.matched.finding.kind == f.kind
                    && l.matched.finding.span.start == abs.start
            });
            let located = LocatedFinding {
                snippet,
                matched: MatchedFinding {
                    finding: Finding {
                        span: Span::new(abs.start, abs.end),
                        ..f.clone()
                    },
                    action,
                    redaction: redaction.clone(),
                },
                location: Location::Body,
                role,
            };
            match known {
                Some(k) => *k = located,
                None => {
                    crate::metrics::finding(
                        f.detector.as_str(),
                        &f.kind,
                        crate::action_name(action),
                    );
                    self.findings.push(located);
                }
            }
            match action {
                Action::Block => {
                    let reason = format!("{}/{} ({}) → block", f.detector, f.kind, f.severity);
                    if self.block_one_message(abs.start, &reason) {
                        continue;
                    }
                    self.blocked = true;
                    self.reasons.push(reason);
                    self.pending.clear();
                    return Some(StreamOutput::Blocked(block_event(
                        self.protocol,
                        &self.request_id,
                        &self.reasons,
                        self.mcp_id.as_deref(),
                    )));
                }
                Action::Redact => {
                    let Some(redaction) = redaction else { continue };
                    let reason = format!("{}/{} ({}) → redact", f.detector, f.kind, f.severity);
                    if !self.reasons.contains(&reason) {
                        self.reasons.push(reason);
                    }
                    match self
                        .redactions
                        .iter_mut()
                        .find(|r| r.range.start == abs.start && r.kind == f.kind)
                    {
                        Some(r) if r.replacement.is_none() => {
                            r.range.end = r.range.end.max(abs.end)
                        }
                        Some(_) => {}
                        None => self.redactions.push(Redact {
                            range: abs,
                            kind: f.kind.to_string(),
                            redaction,
                            replacement: None,
                            placed: false,
                        }),
                    }
                }
                Action::Allow => {}
            }
        }
        None
    }

    /// MCP over SSE carries whole JSON-RPC messages, and one SSE stream may carry a whole
    /// session: a blocked message is replaced by a JSON-RPC error for its id (a notification is
    /// dropped), and the stream goes on. True when the message holding `at` was handled so.
    fn block_one_message(&mut self, at: usize, reason: &str) -> bool {
        if self.protocol != Protocol::Mcp || self.framing != Framing::Sse {
            return false;
        }
        let request_id = self.request_id.clone();
        let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.pieces.iter().any(|pc| pc.range.contains(&at)))
        else {
            return false;
        };
        if p.replace.is_none() {
            let id = p
                .json
                .as_deref()
                .and_then(|d| serde_json::from_slice::<serde_json::Value>(d).ok())
                .and_then(|v| v.get("id").filter(|i| !i.is_null()).map(|i| i.to_string()));
            let reasons = [reason.to_owned()];
            p.replace = Some(match id {
                Some(id) => block_event(self.protocol, &request_id, &reasons, Some(&id)),
                None => Vec::new(),
            });
        }
        if !self.reasons.iter().any(|r| r == reason) {
            self.reasons.push(reason.to_owned());
        }
        true
    }

    /// The text around a finding at `abs` (absolute offsets), with every personal-data and
    /// secret value known so far masked; `None` when the text has already been let go.
    fn snippet(&self, f: &Finding, abs: Range<usize>) -> Option<String> {
        let local = |r: &Range<usize>| -> Option<Span> {
            let s = r.start.checked_sub(self.base)?;
            let e = r.end.checked_sub(self.base)?.min(self.text.len());
            (s < e).then(|| Span::new(s, e))
        };
        let span = local(&abs)?;
        let sensitive_detector = |d: palisade_detect::DetectorId| {
            matches!(
                d,
                palisade_detect::DetectorId::Pii | palisade_detect::DetectorId::Secrets
            )
        };
        let mut sensitive: Vec<Span> = self
            .findings
            .iter()
            .filter(|l| sensitive_detector(l.matched.finding.detector))
            .filter_map(|l| {
                let s = l.matched.finding.span;
                local(&(s.start..s.end))
            })
            .collect();
        if sensitive_detector(f.detector) {
            sensitive.push(span);
        }
        Some(crate::body::snippet(&self.text, span, &sensitive))
    }

    fn role_at(&self, at: usize) -> Role {
        self.pending
            .iter()
            .flat_map(|p| p.pieces.iter())
            .find(|p| p.range.contains(&at))
            .map_or(Role::ModelOutput, |p| p.role)
    }

    /// Sends every unit whose text ends before the hold (all of them when `all`).
    fn emit(&mut self, all: bool, out: &mut Vec<StreamOutput>) {
        let safe_end = if all {
            self.end()
        } else {
            self.end().saturating_sub(self.limits.hold_bytes)
        };
        while let Some(front) = self.pending.front() {
            let last = front
                .pieces
                .iter()
                .map(|p| p.range.end)
                .max()
                .unwrap_or(self.flushed);
            if last > safe_end {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            out.push(StreamOutput::Data(self.render(p)));
            self.flushed = self.flushed.max(last);
        }
        // Keep only the overlap of sent text.
        let keep_from = self.flushed.saturating_sub(self.limits.overlap_bytes);
        if keep_from > self.base + 4096 {
            let mut cut = keep_from - self.base;
            while !self.text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.drain(..cut);
            self.base += cut;
        }
        self.redactions.retain(|r| r.range.end > self.flushed);
    }

    /// The bytes of one unit, with redactions applied to its pieces.
    fn render(&mut self, p: Pending) -> Vec<u8> {
        if let Some(replacement) = p.replace {
            return replacement;
        }
        let mut edits: Vec<(Location, String)> = Vec::new();
        for piece in &p.pieces {
            let mut touched = false;
            let mut new_text = String::new();
            let mut pos = piece.range.start;
            let mut hits: Vec<usize> = (0..self.redactions.len())
                .filter(|&i| {
                    let r = &self.redactions[i].range;
                    r.start < piece.range.end && piece.range.start < r.end
                })
                .collect();
            hits.sort_by_key(|&i| self.redactions[i].range.start);
            for i in hits {
                let r_range = self.redactions[i].range.clone();
                let from = r_range.start.max(pos);
                let to = r_range.end.min(piece.range.end);
                if from >= to {
                    continue;
                }
                new_text.push_str(self.slice(pos, from));
                let replacement = self.replacement(i);
                let value_len = r_range.end - r_range.start;
                if replacement.len() == value_len
                    && replacement.is_char_boundary(from - r_range.start)
                    && replacement.is_char_boundary(to - r_range.start)
                {
                    // Same length (a mask): each piece gets its own slice.
                    new_text.push_str(&replacement[from - r_range.start..to - r_range.start]);
                } else if !self.redactions[i].placed {
                    // The piece holding the value's first unsent byte carries the placeholder;
                    // the rest of the value is dropped from later pieces.
                    new_text.push_str(&replacement);
                    self.redactions[i].placed = true;
                }
                pos = to;
                touched = true;
            }
            if touched {
                new_text.push_str(self.slice(pos, piece.range.end));
                edits.push((Location::Pointer(piece.pointer.clone()), new_text));
            }
        }
        if let Unit::Sse(ev) = &p.unit {
            if ev.event.as_deref() == Some("endpoint") && ev.data.starts_with('/') {
                match &self.endpoint_prefix {
                    Some(prefix) if !ev.data.starts_with(prefix.as_str()) => {
                        let mut ev = ev.clone();
                        ev.data = format!("{prefix}{}", ev.data);
                        self.endpoint = Some(ev.data.trim().to_owned());
                        return ev.encode();
                    }
                    _ => self.endpoint = Some(ev.data.trim().to_owned()),
                }
            }
        }
        if edits.is_empty() {
            return match p.unit {
                Unit::Sse(ev) => ev.raw,
                Unit::Line(line) => line,
            };
        }
        let Some(doc) = p.json else {
            return Vec::new();
        };
        let rewritten = write_back(&doc, &edits).unwrap_or(doc);
        match p.unit {
            Unit::Sse(mut ev) => {
                ev.data = String::from_utf8(rewritten).unwrap_or_default();
                ev.encode()
            }
            Unit::Line(line) => {
                let mut out = rewritten;
                if line.ends_with(b"\n") {
                    out.push(b'\n');
                }
                out
            }
        }
    }

    fn slice(&self, from: usize, to: usize) -> &str {
        let a = from.saturating_sub(self.base);
        let b = to.saturating_sub(self.base);
        self.text.get(a..b).unwrap_or("")
    }

    fn replacement(&mut self, i: usize) -> String {
        if let Some(r) = &self.redactions[i].replacement {
            return r.clone();
        }
        let range = self.redactions[i].range.clone();
        let value = self.slice(range.start, range.end).to_owned();
        let edit = Edit {
            span: Span::new(0, value.len()),
            kind: self.redactions[i].kind.clone(),
            redaction: self.redactions[i].redaction.clone(),
        };
        let replacement = self.policy.redactor().apply(&value, &[edit]);
        self.redactions[i].replacement = Some(replacement.clone());
        replacement
    }
}

#[cfg(test)]
mod tests;
