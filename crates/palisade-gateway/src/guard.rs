//! The guard API: gateways (Kong, Cloudflare Workers, Envoy, nginx) ask Palisade about an exchange
//! they carry themselves, before forwarding a request and before returning a response, or send a
//! copy afterwards.
//!
//! | endpoint | what |
//! | --- | --- |
//! | `POST /v1/guard/request` | judge a request: allow, redact (with the new body) or block (with the answer to send) |
//! | `POST /v1/guard/response` | the same for a response |
//! | `POST /v1/guard/exchange` | both at once, for copies sent after the fact |
//! | `GET /v1/openapi.json` | the OpenAPI document of these endpoints, generated from the types below |
//!
//! Every call carries a collector's API key (`Authorization: Bearer <key>`, or `x-api-key`). A
//! collector names the policy its traffic is judged by and how much of it is logged. Keys are
//! kept only as SHA-256 digests and compared digest to digest.
//!
//! A verdict here is the one the inline proxy would reach for the same bytes under the same
//! policy: both go through the engine's [`Inspector`](palisade_engine::Inspector).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use palisade_engine::blocked::block_body;
use palisade_engine::{action_name, BodyVerdict};
use palisade_policy::config::{Action, Config, FailureMode, LoggingLevel};
use palisade_policy::Direction;
use palisade_protocol::{Location, Protocol};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::body::{full, Body};
use crate::State;

/// Paths the guard API answers; they take precedence over routes.
pub fn is_guard_path(path: &str) -> bool {
    path.starts_with("/v1/guard/") || path == "/v1/openapi.json" || crate::compat::handles(path)
}

/// A configured collector, ready to authenticate.
#[derive(Debug)]
pub struct Collector {
    /// Its name.
    pub name: String,
    /// Its policy.
    pub policy: String,
    /// How much of its traffic is logged.
    pub logging: LoggingLevel,
}

/// The collectors, by the SHA-256 of their keys.
#[derive(Debug, Default)]
pub struct Collectors {
    by_digest: HashMap<[u8; 32], Arc<Collector>>,
    /// Networks whose keyless calls count as a collector's.
    trusted: Vec<(String, Arc<Collector>)>,
}

impl Collectors {
    /// Reads every collector's key (from its environment variable, or its digest as given).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut by_digest = HashMap::new();
        let mut trusted = Vec::new();
        for c in &config.collectors {
            let digest: [u8; 32] = match (&c.api_key_env, &c.api_key_sha256) {
                (Some(env), _) => {
                    let key = std::env::var(env).map_err(|_| {
                        format!(
                            "collector `{}`: environment variable `{env}` (its API key) is not set",
                            c.name
                        )
                    })?;
                    if key.len() < 16 {
                        return Err(format!(
                            "collector `{}`: the API key in `{env}` is shorter than 16 characters",
                            c.name
                        ));
                    }
                    Sha256::digest(key.as_bytes()).into()
                }
                (None, Some(hex)) => parse_hex32(hex)
                    .ok_or_else(|| format!("collector `{}`: api_key_sha256 is not hex", c.name))?,
                (None, None) => {
                    return Err(format!("collector `{}` has no API key", c.name));
                }
            };
            let collector = Arc::new(Collector {
                name: c.name.clone(),
                policy: c.policy.clone(),
                logging: c.logging,
            });
            for net in &c.trusted_networks {
                trusted.push((net.clone(), collector.clone()));
            }
            if by_digest.insert(digest, collector).is_some() {
                return Err(format!(
                    "collector `{}` has the same API key as another collector",
                    c.name
                ));
            }
        }
        Ok(Collectors { by_digest, trusted })
    }

    /// The collector whose key the request carries; without a key, and only when
    /// `trust_network` (the compatible endpoints, whose plugins may not send one), the collector
    /// that trusts the caller's network.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: std::net::IpAddr,
        trust_network: bool,
    ) -> Result<Arc<Collector>, GuardError> {
        self.authenticate_from(headers, peer, trust_network, false)
    }

    /// As [`Collectors::authenticate`]; with `own_header_only`, the key is read from
    /// `x-palisade-key` alone (Envoy's `ext_authz` forwards the client's own `Authorization`,
    /// which is not a collector's key).
    pub fn authenticate_from(
        &self,
        headers: &HeaderMap,
        peer: std::net::IpAddr,
        trust_network: bool,
        own_header_only: bool,
    ) -> Result<Arc<Collector>, GuardError> {
        let own = headers.get("x-palisade-key").and_then(|v| v.to_str().ok());
        let key = if own_header_only {
            own
        } else {
            own.or_else(|| {
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                            // Some connectors of the compatible endpoints send the bare key.
                            .or_else(|| (trust_network && !v.contains(' ')).then_some(v))
                    })
            })
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        }
        .map(str::trim)
        .filter(|k| !k.is_empty());
        let Some(key) = key else {
            if !trust_network {
                return Err(GuardError::MissingKey);
            }
            return self
                .trusted
                .iter()
                .find(|(net, _)| palisade_policy::config::in_network(net, peer) == Some(true))
                .map(|(_, c)| c.clone())
                .ok_or(GuardError::MissingKey);
        };
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_digest
            .get(&digest)
            .cloned()
            .ok_or(GuardError::UnknownKey)
    }
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// How a body should be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolHint {
    /// Guess from the body (and its content type).
    #[default]
    Auto,
    /// Plain text.
    Text,
    /// Any JSON.
    Json,
    /// MCP JSON-RPC.
    Mcp,
    /// OpenAI Chat Completions or Responses (also Azure OpenAI, Kong `llm/v1/chat`).
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini.
    Gemini,
    /// Cohere v2 chat.
    Cohere,
    /// Bedrock Converse.
    Bedrock,
}

impl From<ProtocolHint> for Protocol {
    fn from(p: ProtocolHint) -> Self {
        match p {
            ProtocolHint::Auto => Protocol::Auto,
            ProtocolHint::Text => Protocol::Text,
            ProtocolHint::Json => Protocol::Json,
            ProtocolHint::Mcp => Protocol::Mcp,
            ProtocolHint::Openai => Protocol::Openai,
            ProtocolHint::Anthropic => Protocol::Anthropic,
            ProtocolHint::Gemini => Protocol::Gemini,
            ProtocolHint::Cohere => Protocol::Cohere,
            ProtocolHint::Bedrock => Protocol::Bedrock,
        }
    }
}

/// Who and what the traffic is about; recorded with the verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The calling agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// The end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The agent or MCP session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The model called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The model provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Anything else, as strings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// One side of an exchange, as the gateway saw it.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// HTTP method of the request.
    #[serde(default)]
    pub method: Option<String>,
    /// Request path, without the query.
    #[serde(default)]
    pub path: Option<String>,
    /// Query string, without `?`.
    #[serde(default)]
    pub query: Option<String>,
    /// Headers (names in any case). Only `content-type` is used to read the body; none is
    /// logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body as UTF-8 text.
    #[serde(default)]
    pub body: Option<String>,
    /// Or the body in base64, when it is not UTF-8.
    #[serde(default)]
    pub body_base64: Option<String>,
    /// For a response: the upstream's status.
    #[serde(default)]
    pub status: Option<u16>,
    /// The client's IP address.
    #[serde(default)]
    pub client_ip: Option<String>,
    /// How to read the body.
    #[serde(default)]
    pub protocol: ProtocolHint,
    /// The policy to judge by, instead of the collector's.
    #[serde(default)]
    pub policy: Option<String>,
    /// For an MCP response: the method of the request it answers (`tools/list`, `tools/call`).
    #[serde(default)]
    pub mcp_method: Option<String>,
    /// Who and what.
    #[serde(default)]
    pub metadata: Metadata,
}

/// `POST /v1/guard/exchange`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// The request.
    pub request: Message,
    /// The response, when there was one.
    #[serde(default)]
    pub response: Option<Message>,
    /// Who and what, for both sides (a side's own metadata wins).
    #[serde(default)]
    pub metadata: Metadata,
}

/// What to answer instead of the real thing.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BlockedAnswer {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// Body, shaped for the client's protocol (a JSON-RPC error, an OpenAI error, …).
    pub body: String,
}

/// One finding, as the guard API reports it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GuardFinding {
    /// Detector id (`pii`, `secrets`, `prompt_injection`, …).
    pub detector: String,
    /// Kind within the detector (`us_ssn`, `instruction_override`, …).
    pub kind: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// 0 to 1.
    pub confidence: f32,
    /// What the policy did about it.
    pub action: String,
    /// Where: a JSON Pointer into the body, `query`, or `body` for the whole body.
    pub location: String,
    /// What the text was: `user_prompt`, `tool_arguments`, `tool_result`, …
    pub role: String,
    /// Byte range within that text.
    pub start: usize,
    /// End of the byte range.
    pub end: usize,
}

/// The answer to `/v1/guard/request` and `/v1/guard/response`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Verdict {
    /// This decision's id (also in `headers`).
    pub request_id: String,
    /// Whether the gateway may forward (possibly with `body` instead of the original).
    pub allowed: bool,
    /// `allow`, `redact` or `block`.
    pub action: String,
    /// When blocked: what to answer the client with.
    pub blocked: Option<BlockedAnswer>,
    /// When redacted: the body to forward instead, as text.
    pub body: Option<String>,
    /// When redacted and the body is not UTF-8: the body to forward, in base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Headers to add to what is forwarded or answered.
    pub headers: BTreeMap<String, String>,
    /// 0–100.
    pub risk_score: u8,
    /// What was found.
    pub findings: Vec<GuardFinding>,
    /// Why, in short sentences.
    pub reasons: Vec<String>,
    /// The protocol the body was read as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The collector that asked.
    pub collector: String,
}

/// The answer to `/v1/guard/exchange`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ExchangeVerdict {
    /// The request's verdict.
    pub request: Verdict,
    /// The response's verdict, when a response was sent.
    pub response: Option<Verdict>,
}

/// Why a guard call was refused.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// No API key.
    #[error("an API key is required: send `Authorization: Bearer <key>`")]
    MissingKey,
    /// A key no collector has.
    #[error("unknown API key")]
    UnknownKey,
    /// The JSON does not parse or has the wrong shape.
    #[error("{0}")]
    BadRequest(String),
    /// The call is larger than the request limit.
    #[error("request body over {0} bytes")]
    TooLarge(usize),
    /// No such endpoint.
    #[error("no guard endpoint at this path")]
    NotFound,
    /// Wrong method.
    #[error("use {0}")]
    Method(&'static str),
    /// Palisade failed; the gateway's own failure mode applies.
    #[error("{0}")]
    Internal(String),
}

impl GuardError {
    fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            GuardError::MissingKey => (StatusCode::UNAUTHORIZED, "missing_api_key"),
            GuardError::UnknownKey => (StatusCode::UNAUTHORIZED, "unknown_api_key"),
            GuardError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            GuardError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
            GuardError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            GuardError::Method(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            GuardError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The JSON error answer.
    pub fn response(&self, request_id: &str) -> Response<Body> {
        let (status, code) = self.status_code();
        let body = json!({
            "error": {
                "code": code,
                "message": self.to_string(),
                "status": status.as_u16(),
                "request_id": request_id,
            }
        });
        let mut r = Response::new(full(body.to_string()));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"palisade\""),
            );
        }
        r
    }
}

/// Parses a JSON call, naming the field that is wrong.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, GuardError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            GuardError::BadRequest(format!("the body is not valid JSON: {inner}"))
        } else if path == "." || path.is_empty() {
            GuardError::BadRequest(format!("the body is not a valid call: {inner}"))
        } else {
            GuardError::BadRequest(format!("field `{path}`: {inner}"))
        }
    })
}

/// Judges one side of an exchange. `direction` says which.
pub fn judge(
    state: &State,
    collector: &Collector,
    request_id: &str,
    direction: Direction,
    message: &Message,
    shared: &Metadata,
) -> Result<Verdict, GuardError> {
    let policy = message.policy.as_deref().unwrap_or(&collector.policy);
    if state.inspector.policy(policy).is_err() {
        return Err(GuardError::BadRequest(format!(
            "field `policy`: no policy called `{policy}`"
        )));
    }
    let body: Vec<u8> = match (&message.body, &message.body_base64) {
        (Some(_), Some(_)) => {
            return Err(GuardError::BadRequest(
                "give `body` or `body_base64`, not both".into(),
            ))
        }
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| GuardError::BadRequest(format!("field `body_base64`: {e}")))?,
        (None, None) => Vec::new(),
    };
    let content_type = message
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    let protocol = read_as(message.protocol.into(), content_type, &body);

    let mut findings = Vec::new();
    let mut reasons = Vec::new();
    let mut risk = 0u8;
    // The query string is judged as text, for attacks in URLs, as the proxy does.
    if direction == Direction::Request {
        if let Some(q) = message.query.as_deref().filter(|q| !q.is_empty()) {
            let text = format!("{}?{q}", message.path.as_deref().unwrap_or("/"));
            if let Ok(v) = state.inspector.inspect_text(policy, direction, &text) {
                risk = risk.max(v.risk_score);
                for m in &v.findings {
                    findings.push(GuardFinding {
                        detector: m.finding.detector.to_string(),
                        kind: m.finding.kind.to_string(),
                        severity: m.finding.severity.to_string(),
                        confidence: m.finding.confidence,
                        action: action_name(m.action).to_owned(),
                        location: "query".into(),
                        role: "url".into(),
                        start: m.finding.span.start,
                        end: m.finding.span.end,
                    });
                }
                if v.action == Action::Block {
                    reasons.extend(v.reasons);
                    let verdict = finish(
                        request_id,
                        collector,
                        Action::Block,
                        protocol,
                        None,
                        None,
                        risk,
                        findings,
                        reasons,
                    );
                    log(collector, request_id, direction, message, shared, &verdict);
                    record(
                        state, collector, request_id, direction, message, shared, &verdict,
                    );
                    return Ok(verdict);
                }
            }
        }
    }

    let bv: BodyVerdict = if body.is_empty() {
        BodyVerdict {
            action: Action::Allow,
            risk_score: 0,
            findings: Vec::new(),
            reasons: Vec::new(),
            body: None,
            meta: Default::default(),
            failure: None,
        }
    } else {
        state
            .inspector
            .inspect_body(
                policy,
                direction,
                protocol,
                &body,
                message.mcp_method.as_deref(),
            )
            .map_err(|e| GuardError::BadRequest(e.to_string()))?
    };
    risk = risk.max(bv.risk_score);
    for f in &bv.findings {
        findings.push(GuardFinding {
            detector: f.matched.finding.detector.to_string(),
            kind: f.matched.finding.kind.to_string(),
            severity: f.matched.finding.severity.to_string(),
            confidence: f.matched.finding.confidence,
            action: action_name(f.matched.action).to_owned(),
            location: match &f.location {
                Location::Pointer(p) => p.clone(),
                _ => "body".into(),
            },
            role: serde_json::to_value(f.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            start: f.matched.finding.span.start,
            end: f.matched.finding.span.end,
        });
    }
    reasons.extend(bv.reasons.iter().cloned());
    if let Some(mode) = bv.failure {
        let what = match mode {
            FailureMode::FailClosed => "fail_closed",
            FailureMode::FailOpen => "fail_open",
        };
        tracing::warn!(request_id, collector = %collector.name, failure_mode = what, reasons = ?bv.reasons, "guard: body could not be inspected");
    }
    let read = bv.meta.protocol.unwrap_or(protocol);
    let verdict = finish(
        request_id,
        collector,
        bv.action,
        read,
        bv.meta.id.as_deref(),
        bv.body,
        risk,
        findings,
        reasons,
    );
    log(collector, request_id, direction, message, shared, &verdict);
    record(
        state, collector, request_id, direction, message, shared, &verdict,
    );
    Ok(verdict)
}

/// How to read a body: a JSON protocol's body labelled as something else is text.
///
/// A body that opens like JSON (`{` or `[`) is read with the protocol whatever its label:
/// clients such as `curl -d` send JSON labelled `application/x-www-form-urlencoded`.
pub fn read_as(protocol: Protocol, content_type: Option<&str>, body: &[u8]) -> Protocol {
    let labelled_other = content_type.is_some_and(|ct| !ct.to_ascii_lowercase().contains("json"));
    let looks_json = matches!(body.trim_ascii_start().first(), Some(b'{' | b'['));
    if protocol != Protocol::Text && labelled_other && !looks_json {
        Protocol::Text
    } else {
        protocol
    }
}

fn protocol_name(p: Protocol) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn finish(
    request_id: &str,
    collector: &Collector,
    action: Action,
    protocol: Protocol,
    mcp_id: Option<&str>,
    rewritten: Option<Vec<u8>>,
    risk_score: u8,
    findings: Vec<GuardFinding>,
    reasons: Vec<String>,
) -> Verdict {
    let mut headers = BTreeMap::new();
    headers.insert("x-palisade-request-id".to_owned(), request_id.to_owned());
    headers.insert(
        "x-palisade-decision".to_owned(),
        action_name(action).to_owned(),
    );
    headers.insert("x-palisade-risk-score".to_owned(), risk_score.to_string());
    let blocked = (action == Action::Block).then(|| {
        let (status, body) = block_body(protocol, request_id, &reasons, mcp_id);
        let mut h = BTreeMap::new();
        h.insert("content-type".to_owned(), "application/json".to_owned());
        BlockedAnswer {
            status,
            headers: h,
            body: body.to_string(),
        }
    });
    let (body, body_base64) = match rewritten {
        Some(b) if action == Action::Redact => match String::from_utf8(b) {
            Ok(s) => (Some(s), None),
            Err(e) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
            ),
        },
        _ => (None, None),
    };
    Verdict {
        request_id: request_id.to_owned(),
        allowed: action != Action::Block,
        action: action_name(action).to_owned(),
        blocked,
        body,
        body_base64,
        headers,
        risk_score,
        findings,
        reasons,
        protocol: (protocol != Protocol::Auto).then(|| protocol_name(protocol)),
        collector: collector.name.clone(),
    }
}

fn log(
    collector: &Collector,
    request_id: &str,
    direction: Direction,
    message: &Message,
    shared: &Metadata,
    verdict: &Verdict,
) {
    let pick = |own: &Option<String>, other: &Option<String>| -> String {
        own.clone().or_else(|| other.clone()).unwrap_or_default()
    };
    let m = &message.metadata;
    let side = match direction {
        Direction::Request => "request",
        Direction::Response => "response",
    };
    let kinds: Vec<String> = verdict
        .findings
        .iter()
        .map(|f| format!("{}/{}", f.detector, f.kind))
        .collect();
    // Bodies only for a collector logging `full`, and only after redaction: a blocked body is
    // never logged, a redacted one is logged as rewritten, an allowed one as sent (nothing in it
    // met the policy). `None` adds no field at all.
    let body = match (collector.logging, verdict.action.as_str()) {
        (LoggingLevel::Metadata, _) | (LoggingLevel::Full, "block") => None,
        (LoggingLevel::Full, "redact") => verdict.body.clone(),
        (LoggingLevel::Full, _) => message.body.clone(),
    };
    tracing::info!(
        target: "palisade::decision",
        request_id,
        collector = %collector.name,
        side,
        method = message.method.as_deref().unwrap_or(""),
        path = message.path.as_deref().unwrap_or(""),
        status = message.status.unwrap_or(0),
        client_ip = message.client_ip.as_deref().unwrap_or(""),
        agent_id = %pick(&m.agent_id, &shared.agent_id),
        tenant_id = %pick(&m.tenant_id, &shared.tenant_id),
        session_id = %pick(&m.session_id, &shared.session_id),
        decision = %verdict.action,
        risk_score = verdict.risk_score,
        findings = ?kinds,
        reasons = ?verdict.reasons,
        body = body.as_deref(),
        "guard"
    );
}

/// Queues the guard call's record: metadata always; the body only when the collector logs
/// `full`, and then as forwarded (redacted), never when blocked.
fn record(
    state: &State,
    collector: &Collector,
    request_id: &str,
    direction: Direction,
    message: &Message,
    shared: &Metadata,
    verdict: &Verdict,
) {
    if !crate::records::wanted(state) {
        return;
    }
    let m = &message.metadata;
    let body = match (collector.logging, verdict.action.as_str()) {
        (LoggingLevel::Full, "redact") => verdict.body.clone(),
        (LoggingLevel::Full, "allow") => message.body.clone(),
        _ => None,
    };
    crate::records::emit(
        state,
        palisade_store::Event {
            seq: None,
            request_id: request_id.to_owned(),
            time_ms: palisade_store::now_ms(),
            source: match direction {
                Direction::Request => "guard_request".into(),
                Direction::Response => "guard_response".into(),
            },
            route: Some(format!("guard:{}", collector.name)),
            collector: Some(collector.name.clone()),
            agent_id: m.agent_id.clone().or_else(|| shared.agent_id.clone()),
            client_ip: message.client_ip.clone(),
            method: message.method.clone(),
            path: message.path.clone(),
            mcp_method: message.mcp_method.clone(),
            tool: None,
            status: message.status,
            decision: verdict.action.clone(),
            risk: verdict.risk_score,
            latency_ms: None,
            reasons: verdict.reasons.clone(),
            body,
            model: m.model.clone().or_else(|| shared.model.clone()),
            findings: verdict
                .findings
                .iter()
                .map(|f| palisade_store::FindingRecord {
                    detector: f.detector.clone(),
                    kind: f.kind.clone(),
                    severity: f.severity.clone(),
                    action: f.action.clone(),
                    location: Some(f.location.clone()),
                    snippet: None,
                })
                .collect(),
        },
    );
}

/// Counts a guard call (native or compatible) under its collector, for the metrics.
pub(crate) fn count(collector: &Collector, decision: &str, started: std::time::Instant) {
    palisade_engine::metrics::request(
        &format!("guard:{}", collector.name),
        "guard",
        crate::proxy::decision_static(decision),
        started.elapsed(),
    );
}

pub(crate) fn json_answer<T: Serialize>(
    status: StatusCode,
    value: &T,
    request_id: &str,
) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(full(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-palisade-request-id", v);
    }
    r
}

/// Answers a guard API call whose body has been read.
#[allow(clippy::too_many_arguments)]
pub fn answer(
    state: &State,
    request_id: &str,
    peer: std::net::IpAddr,
    started: std::time::Instant,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    match answer_inner(
        state, request_id, peer, started, method, path, query, headers, body,
    ) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(request_id, path, error = %e, "guard call refused");
            let mut r = e.response(request_id);
            if let Ok(v) = HeaderValue::from_str(request_id) {
                r.headers_mut().insert("x-palisade-request-id", v);
            }
            r
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn answer_inner(
    state: &State,
    request_id: &str,
    peer: std::net::IpAddr,
    started: std::time::Instant,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response<Body>, GuardError> {
    if crate::compat::handles(path) {
        return crate::compat::answer(
            state, request_id, peer, started, method, path, query, headers, body,
        );
    }
    if path == "/v1/openapi.json" {
        if method != Method::GET {
            return Err(GuardError::Method("GET"));
        }
        return Ok(json_answer(StatusCode::OK, openapi(), request_id));
    }
    let direction = match path {
        "/v1/guard/request" => Some(Direction::Request),
        "/v1/guard/response" => Some(Direction::Response),
        "/v1/guard/exchange" => None,
        _ => return Err(GuardError::NotFound),
    };
    if method != Method::POST {
        return Err(GuardError::Method("POST"));
    }
    let collector = state.collectors.authenticate(headers, peer, false)?;
    match direction {
        Some(d) => {
            let message: Message = parse(body)?;
            let v = judge(
                state,
                &collector,
                request_id,
                d,
                &message,
                &Metadata::default(),
            )?;
            count(&collector, &v.action, started);
            Ok(json_answer(StatusCode::OK, &v, request_id))
        }
        None => {
            let ex: Exchange = parse(body)?;
            let request = judge(
                state,
                &collector,
                request_id,
                Direction::Request,
                &ex.request,
                &ex.metadata,
            )?;
            let response = match &ex.response {
                Some(resp) => {
                    let mut resp = resp.clone();
                    if resp.mcp_method.is_none() {
                        resp.mcp_method = mcp_method_of(&ex.request);
                    }
                    Some(judge(
                        state,
                        &collector,
                        request_id,
                        Direction::Response,
                        &resp,
                        &ex.metadata,
                    )?)
                }
                None => None,
            };
            let worst =
                response
                    .as_ref()
                    .map_or(crate::proxy::decision_static(&request.action), |r| {
                        worse(
                            crate::proxy::decision_static(&request.action),
                            crate::proxy::decision_static(&r.action),
                        )
                    });
            count(&collector, worst, started);
            Ok(json_answer(
                StatusCode::OK,
                &ExchangeVerdict { request, response },
                request_id,
            ))
        }
    }
}

fn worse(a: &'static str, b: &'static str) -> &'static str {
    let rank = |d: &str| match d {
        "block" => 2,
        "redact" => 1,
        _ => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// The MCP method of a request body, so its response is read right.
fn mcp_method_of(request: &Message) -> Option<String> {
    let body = request.body.as_deref()?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("method")?.as_str().map(str::to_owned)
}

/// The OpenAPI document of the guard API, built once from the types' JSON schemas.
pub fn openapi() -> &'static serde_json::Value {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOC.get_or_init(build_openapi)
}

fn build_openapi() -> serde_json::Value {
    let mut components = serde_json::Map::new();
    let mut add = |name: &str, schema: schemars::Schema| {
        let mut v = schema.to_value();
        // Nested definitions are written under the root's `components/schemas`: lift them into
        // the document's.
        if let Some(defs) = v
            .as_object_mut()
            .and_then(|o| o.remove("components"))
            .and_then(|mut c| c.get_mut("schemas").map(serde_json::Value::take))
        {
            if let Some(defs) = defs.as_object() {
                for (k, d) in defs {
                    components.insert(k.clone(), d.clone());
                }
            }
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("$schema");
        }
        components.insert(name.to_owned(), v);
    };
    let generator = || {
        schemars::generate::SchemaSettings::draft2020_12()
            .with(|s| s.definitions_path = "/components/schemas/".into())
            .into_generator()
    };
    add("Message", generator().into_root_schema_for::<Message>());
    add("Exchange", generator().into_root_schema_for::<Exchange>());
    add("Verdict", generator().into_root_schema_for::<Verdict>());
    add(
        "ExchangeVerdict",
        generator().into_root_schema_for::<ExchangeVerdict>(),
    );
    let error = json!({
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": { "type": "string" },
                    "message": { "type": "string" },
                    "status": { "type": "integer" },
                    "request_id": { "type": "string" }
                },
                "required": ["code", "message", "status", "request_id"]
            }
        }
    });
    components.insert("Error".into(), error);
    let errors = json!({
        "400": { "description": "Malformed JSON or a field of the wrong shape; the message names the field.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "401": { "description": "Missing or unknown API key.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "413": { "description": "The call is larger than `limits.max_request_body_bytes`.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
    });
    let op = |summary: &str, input: &str, output: &str| {
        let mut responses = errors.clone();
        if let Some(o) = responses.as_object_mut() {
            o.insert(
                "200".into(),
                json!({ "description": "The verdict.", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{output}") } } } }),
            );
        }
        json!({
            "post": {
                "summary": summary,
                "security": [{ "collectorKey": [] }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{input}") } } } },
                "responses": responses
            }
        })
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Palisade guard API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Ask Palisade about a request or response a gateway carries: allow, redact (with the body to forward) or block (with the answer to send)."
        },
        "paths": {
            "/v1/guard/request": op("Judge a request before forwarding it", "Message", "Verdict"),
            "/v1/guard/response": op("Judge a response before returning it", "Message", "Verdict"),
            "/v1/guard/exchange": op("Judge a request and its response at once (copies sent after the fact)", "Exchange", "ExchangeVerdict")
        },
        "components": {
            "schemas": components,
            "securitySchemes": { "collectorKey": { "type": "http", "scheme": "bearer" } }
        }
    })
}
