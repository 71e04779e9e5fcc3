//! Governance in the proxy: the HTTP side of [`palisade_engine::govern`].
//!
//! ```text
//! handle ─► [slot in request extensions] ─► enforce ─► on_request ─► (answer early | go on)
//!                                                   └► list_response (MCP tools/prompts/resources lists)
//! handle ◄─ finish: x-palisade-* headers and the JSON decision line, from the slot
//! ```
//!
//! The proxy calls three hooks; everything else lives here so the request flow in
//! [`crate::proxy`] stays one readable chain. Early answers are shaped for the client: an MCP
//! client gets a JSON-RPC error carrying the request's id (so its SDK raises a proper error
//! naming the reason), anything else a JSON error with the policy's status code.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use palisade_engine::govern::{GovDecision, GovOutcome, Governance, RequestFacts};
use palisade_policy::config::{Action, FailureMode};
use palisade_policy::Direction;
use palisade_protocol::Protocol;
use serde_json::{json, Value};

use crate::body::{full, Body};
use crate::proxy::Outcome;
use crate::route::Target;
use crate::State;

/// The client's address, put in the request's extensions by the handler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

/// Where the request's governance decision is left for [`finish`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Slot(Arc<Mutex<Option<GovDecision>>>);

impl Slot {
    fn put(&self, d: GovDecision) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
    }
    fn take(&self) -> Option<GovDecision> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
    /// The governance decision's agent, action, risk and findings, for the record.
    pub(crate) fn for_record(&self) -> Option<crate::records::Governed> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|d| record_of(d, false))
    }
}

/// A governance decision as the exchange's record keeps it; an observed (monitor mode) refusal
/// is recorded as what it would have been: `would_deny`, `would_hold`, `would_error`.
pub(crate) fn record_of(d: &GovDecision, observed: bool) -> crate::records::Governed {
    crate::records::Governed {
        agent: d.agent.clone(),
        action: d.action.clone(),
        risk: d.risk_score,
        outcome: if observed { would(d) } else { d.label() },
        findings: d
            .findings
            .iter()
            .map(|f| {
                (
                    f.detector.to_owned(),
                    f.kind.clone(),
                    f.severity.to_string(),
                )
            })
            .collect(),
    }
}

fn would(d: &GovDecision) -> &'static str {
    match d.label() {
        "deny" => "would_deny",
        "pending" => "would_hold",
        "error" => "would_error",
        other => other,
    }
}

/// Starts deciding, on a monitored request's copy (sent on `copy` once read), what governance
/// would have done; the decision is logged when it comes, and also returned.
pub(crate) fn spawn_observe(
    state: Arc<State>,
    target: Target,
    id: String,
    parts: &http::request::Parts,
    copy: tokio::sync::oneshot::Receiver<Bytes>,
    mode: FailureMode,
) -> tokio::task::JoinHandle<Option<GovDecision>> {
    // What governance reads of the request, copied: the request itself goes upstream.
    let mut head = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .body(())
        .map(|r| r.into_parts().0)
        .ok();
    if let Some(h) = head.as_mut() {
        h.headers = parts.headers.clone();
        if let Some(p) = parts.extensions.get::<Peer>() {
            h.extensions.insert(*p);
        }
    }
    tokio::spawn(async move {
        let head = head?;
        let body = copy.await.ok()?;
        let d = observe(&state, &target, &id, &head, &body, mode).await?;
        for f in &d.findings {
            palisade_engine::metrics::finding(f.detector, &f.kind, "monitor");
        }
        tracing::info!(
            target: "palisade::governance",
            route = %target.route,
            request_id = %id,
            mode = "monitor",
            action_id = %d.action_id,
            agent = %d.agent,
            action = %d.action,
            would = would(&d),
            risk_score = d.risk_score,
            risk_level = d.risk_level.as_str(),
            reasons = ?d.reasons,
            "governance decision (monitor: not enforced)"
        );
        Some(d)
    })
}

/// JSON-RPC error codes of governance answers.
const MCP_DENIED: i64 = -32003;
const MCP_PENDING: i64 = -32004;
const MCP_RATE_LIMITED: i64 = -32029;
const MCP_STATE_ERROR: i64 = -32005;

/// What the request hook learned, for the rest of the exchange.
#[derive(Debug, Default)]
pub(crate) struct Governed {
    /// The MCP method of the request.
    pub mcp_method: Option<String>,
    /// Its JSON-RPC id, as JSON text.
    pub mcp_id: Option<String>,
    /// A batch's requests: `(id as JSON text, method)`.
    pub batch: Vec<(String, String)>,
}

fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `sub` claim of a bearer JWT, decoded without verifying the signature: it is used to key
/// rate limits and name users in records, never to grant anything.
fn jwt_sub(parts: &http::request::Parts) -> Option<String> {
    let v = jwt_claims(parts)?;
    v.get("sub").and_then(Value::as_str).map(str::to_owned)
}

/// The claims of a bearer JWT, decoded, not verified (see `unverified_jwt_claims`).
fn jwt_claims(parts: &http::request::Parts) -> Option<Value> {
    let token = header(parts, "authorization")?.strip_prefix("Bearer ")?;
    let mut it = token.split('.');
    let (_, payload, _) = (it.next()?, it.next()?, it.next()?);
    let bytes = palisade_detect::normalize::base64_decode(payload.as_bytes())?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

/// The request path as the upstream API sees it, below the route's prefix (`/gov/customers/1` on
/// a route at `/gov` is `/customers/1`; `/proxy/https/host/x` is `/x`). Action types and excluded
/// paths are about the API, not about where Palisade mounts it.
fn route_path(state: &State, target: &Target, path: &str) -> String {
    let rest = if let Some(rest) = path.strip_prefix("/proxy/") {
        // scheme / host / rest
        rest.splitn(3, '/').nth(2).map(|r| format!("/{r}"))
    } else {
        state
            .config
            .routes
            .iter()
            .find(|r| r.name == target.route)
            .and_then(|r| path.strip_prefix(r.path_prefix.trim_end_matches('/')))
            .map(str::to_owned)
    };
    match rest {
        Some(r) if r.starts_with('/') => r,
        Some(r) => format!("/{r}"),
        None => path.to_owned(),
    }
}

/// The pin scope of a target: route and upstream URL (without the query).
pub(crate) fn scope(target: &Target) -> String {
    let url = target.url.split('?').next().unwrap_or("");
    format!("{}|{url}", target.route)
}

/// The JSON-RPC messages of a request body.
enum Rpc {
    /// Not JSON-RPC (or not an MCP route): governed as HTTP.
    None,
    /// One message.
    One(Value),
    /// A batch: each message is governed on its own.
    Batch(Vec<Value>),
}

fn rpc_of(target: &Target, body: &Bytes) -> Rpc {
    let mcp = target.protocol == Protocol::Mcp || target.protocol == Protocol::Auto;
    if !mcp || body.is_empty() {
        return Rpc::None;
    }
    let is_rpc = |v: &Value| v.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if is_rpc(&v) => Rpc::One(v),
        Ok(Value::Array(batch)) if !batch.is_empty() && batch.iter().all(is_rpc) => {
            Rpc::Batch(batch)
        }
        _ => Rpc::None,
    }
}

/// Governs one request before detection. `Err` is the answer to send at once.
///
/// A JSON-RPC batch is governed message by message, in order: each `tools/call` in it meets its
/// own rules, quarantine, rate limits and flows, so a batch cannot carry a call that would be
/// refused alone. The first message refused (after any wait for approval) refuses the whole
/// batch: every request in it gets a JSON-RPC error, the refused one its own reason, the others
/// `batch_refused`, and nothing reaches the upstream.
pub(crate) async fn on_request(
    state: &Arc<State>,
    target: &Target,
    id: &str,
    parts: &http::request::Parts,
    body: &Bytes,
    wants_sse: bool,
    mode: FailureMode,
) -> Result<Governed, (Response<Body>, Outcome)> {
    let gov: &Governance = &state.governance;
    let mut governed = Governed::default();
    let rpc = rpc_of(target, body);
    match &rpc {
        Rpc::One(v) => {
            governed.mcp_method = v.get("method").and_then(Value::as_str).map(str::to_owned);
            governed.mcp_id = v.get("id").map(Value::to_string);
        }
        Rpc::Batch(msgs) => governed.batch = batch_methods(msgs),
        Rpc::None => {}
    }
    let Some(g) = gov.settings(&target.policy) else {
        return Ok(governed);
    };
    let path = route_path(state, target, parts.uri.path());
    if gov.excluded(&target.policy, &path) {
        return Ok(governed);
    }
    let decided = match rpc {
        Rpc::None => decide(state, target, id, parts, &path, body, None, mode, false).await,
        Rpc::One(mut v) => {
            decide(
                state,
                target,
                id,
                parts,
                &path,
                body,
                Some(&mut v),
                mode,
                false,
            )
            .await
        }
        Rpc::Batch(mut msgs) => {
            let mut kept: Option<GovDecision> = None;
            for i in 0..msgs.len() {
                let Some(m) = msgs.get_mut(i) else { break };
                if m.get("method").is_none() {
                    continue;
                }
                let one = format!("{id}-{i}");
                let d = decide(
                    state,
                    target,
                    &one,
                    parts,
                    &path,
                    body,
                    Some(m),
                    mode,
                    false,
                )
                .await;
                let d = wait_if_held(gov, d, mode).await;
                if refuses(&d) {
                    let answer = batch_answer(&d, g, &msgs, i, id, wants_sse);
                    if let Some(slot) = parts.extensions.get::<Slot>() {
                        slot.put(d);
                    }
                    return Err(answer);
                }
                if kept.as_ref().is_none_or(|k| d.risk_score >= k.risk_score) {
                    kept = Some(d);
                }
            }
            if let (Some(d), Some(slot)) = (kept, parts.extensions.get::<Slot>()) {
                slot.put(d);
            }
            return Ok(governed);
        }
    };
    let d = wait_if_held(gov, decided, mode).await;
    let answer = answer(&d, g, &governed, id, wants_sse);
    if let Some(slot) = parts.extensions.get::<Slot>() {
        slot.put(d);
    }
    match answer {
        Some(a) => Err(a),
        None => Ok(governed),
    }
}

/// `(id, method)` of each request in a batch, for reviewing the lists in its answer.
fn batch_methods(msgs: &[Value]) -> Vec<(String, String)> {
    msgs.iter()
        .filter_map(|m| {
            Some((
                m.get("id")?.to_string(),
                m.get("method")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Waits for a decision on a call held in `wait` mode; any other decision passes unchanged.
async fn wait_if_held(gov: &Governance, d: GovDecision, mode: FailureMode) -> GovDecision {
    let GovOutcome::Hold {
        approval_id,
        wait_ms: Some(wait),
    } = &d.outcome
    else {
        return d;
    };
    let approval_id = approval_id.clone();
    let timer = tokio::time::sleep(Duration::from_millis(*wait));
    gov.await_hold(d, &approval_id, timer, mode).await
}

fn refuses(d: &GovDecision) -> bool {
    !matches!(d.outcome, GovOutcome::Excluded | GovOutcome::Continue)
}

/// Decides one message (or a plain HTTP request when `msg` is `None`) of a request.
#[allow(clippy::too_many_arguments)]
async fn decide(
    state: &Arc<State>,
    target: &Target,
    id: &str,
    parts: &http::request::Parts,
    path: &str,
    body: &Bytes,
    msg: Option<&mut Value>,
    mode: FailureMode,
    observe: bool,
) -> GovDecision {
    let gov: &Governance = &state.governance;
    let policy = target.policy.as_str();
    let g = gov.settings(policy);
    let header_of = |name: Option<&String>| name.and_then(|n| header(parts, n)).map(str::to_owned);
    let mcp_method = msg
        .as_ref()
        .and_then(|v| v.get("method"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let call = msg
        .filter(|_| mcp_method.as_deref() == Some("tools/call"))
        .and_then(|v| v.get_mut("params"));
    let tool = call
        .as_ref()
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    // What authorization rules read, gathered only when some rule reads it.
    let arguments = match call {
        Some(p) if gov.rules_read(policy, "mcp") => p.get_mut("arguments").map(Value::take),
        _ => None,
    };
    let headers = if gov.rules_read(policy, "request") {
        parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect()
    } else {
        Vec::new()
    };
    let jwt_claims = if gov.rules_read(policy, "jwt") {
        jwt_claims(parts)
    } else {
        None
    };
    let peer = parts.extensions.get::<Peer>().map(|p| p.0.ip().to_string());
    let api_key = header(parts, "x-api-key")
        .or_else(|| header(parts, "authorization"))
        .map(str::to_owned);
    let scope = scope(target);
    let facts = RequestFacts {
        request_id: id,
        route: &target.route,
        scope: &scope,
        method: parts.method.as_str(),
        path,
        client_ip: peer.unwrap_or_default(),
        agent_header: header_of(g.map(|g| &g.agent_id_header)),
        user: header_of(g.map(|g| &g.user_header)).or_else(|| jwt_sub(parts)),
        tenant: header_of(g.map(|g| &g.tenant_header)),
        api_key,
        mcp_session: header(parts, "mcp-session-id").map(str::to_owned),
        mcp_method,
        tool,
        body,
        headers,
        jwt_claims,
        arguments,
        failure_mode: mode,
        observe,
    };
    let d = gov.decide_request(policy, &facts).await;
    if !observe {
        crate::alerts::rate_limited(state.alerts.emitter(), &target.route, id, &d);
    }
    d
}

/// Monitor mode: what governance would decide on a request whose copy is `body`, without
/// refusing or holding it. Counters and session paths advance as they would in enforce mode;
/// a batch is decided message by message and reported by its first refusal.
pub(crate) async fn observe(
    state: &Arc<State>,
    target: &Target,
    id: &str,
    parts: &http::request::Parts,
    body: &Bytes,
    mode: FailureMode,
) -> Option<GovDecision> {
    let gov: &Governance = &state.governance;
    gov.settings(&target.policy)?;
    let path = route_path(state, target, parts.uri.path());
    if gov.excluded(&target.policy, &path) {
        return None;
    }
    let d = match rpc_of(target, body) {
        Rpc::None => decide(state, target, id, parts, &path, body, None, mode, true).await,
        Rpc::One(mut v) => {
            decide(
                state,
                target,
                id,
                parts,
                &path,
                body,
                Some(&mut v),
                mode,
                true,
            )
            .await
        }
        Rpc::Batch(mut msgs) => {
            let mut kept: Option<GovDecision> = None;
            for (i, m) in msgs.iter_mut().enumerate() {
                if m.get("method").is_none() {
                    continue;
                }
                let one = format!("{id}-{i}");
                let d = decide(state, target, &one, parts, &path, body, Some(m), mode, true).await;
                let worse = kept
                    .as_ref()
                    .is_none_or(|k| (refuses(&d), d.risk_score) > (refuses(k), k.risk_score));
                if worse {
                    kept = Some(d);
                }
            }
            kept?
        }
    };
    Some(d)
}

/// Why a decision refuses, in the terms of its answer.
struct Refusal {
    status: StatusCode,
    mcp_code: Option<i64>,
    body: Value,
    retry_after: Option<u64>,
    code: &'static str,
    message: String,
}

fn refusal(
    d: &GovDecision,
    g: &palisade_policy::govern::GovernanceConfig,
    id: &str,
) -> Option<Refusal> {
    let reasons = d.reasons.clone();
    let message = reasons.join("; ");
    let (status, mcp_code, code, extra, retry_after) = match &d.outcome {
        GovOutcome::Excluded | GovOutcome::Continue => return None,
        GovOutcome::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            None,
            "agent_id_required",
            json!({}),
            None,
        ),
        GovOutcome::Deny => (
            status(g.status.deny, StatusCode::FORBIDDEN),
            Some(MCP_DENIED),
            "palisade_denied",
            json!({}),
            None,
        ),
        GovOutcome::RateLimited {
            retry_after_seconds,
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            Some(MCP_RATE_LIMITED),
            "rate_limited",
            json!({ "retry_after_seconds": retry_after_seconds }),
            Some(*retry_after_seconds),
        ),
        GovOutcome::Hold { approval_id, .. } => (
            status(g.status.pending, StatusCode::ACCEPTED),
            Some(MCP_PENDING),
            "approval_pending",
            json!({ "approval_id": approval_id, "status": "pending" }),
            None,
        ),
        GovOutcome::Error => (
            status(g.status.error, StatusCode::SERVICE_UNAVAILABLE),
            Some(MCP_STATE_ERROR),
            "governance_unavailable",
            json!({}),
            None,
        ),
    };
    let mut body = json!({
        "code": code,
        "message": message,
        "request_id": id,
        "action_id": d.action_id,
        "reasons": reasons,
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    Some(Refusal {
        status,
        mcp_code,
        body,
        retry_after,
        code,
        message,
    })
}

/// The early answer a decision calls for, if any.
fn answer(
    d: &GovDecision,
    g: &palisade_policy::govern::GovernanceConfig,
    governed: &Governed,
    id: &str,
    wants_sse: bool,
) -> Option<(Response<Body>, Outcome)> {
    let r = refusal(d, g, id)?;
    let rpc_id = governed
        .mcp_id
        .as_deref()
        .filter(|_| governed.mcp_method.is_some())
        .map(|s| serde_json::from_str(s).unwrap_or(Value::Null));
    let response = match (r.mcp_code, rpc_id) {
        // A JSON-RPC request gets a JSON-RPC error, so the client's SDK raises it.
        (Some(c), Some(rpc_id)) => {
            let msg = json!({
                "jsonrpc": "2.0",
                "id": rpc_id,
                "error": { "code": c, "message": format!("{}: {}", r.code, r.message), "data": r.body },
            });
            rpc_response(&msg, r.status, wants_sse)
        }
        _ => http_refusal(&r),
    };
    Some(finish_refusal(response, &r, d))
}

/// The answer to a batch refused at message `refused`: a JSON-RPC error for every request in it.
fn batch_answer(
    d: &GovDecision,
    g: &palisade_policy::govern::GovernanceConfig,
    msgs: &[Value],
    refused: usize,
    id: &str,
    wants_sse: bool,
) -> (Response<Body>, Outcome) {
    let Some(r) = refusal(d, g, id) else {
        // Only refusals reach here; answer as a denial if that ever changes.
        let r = Refusal {
            status: StatusCode::FORBIDDEN,
            mcp_code: Some(MCP_DENIED),
            body: json!({ "code": "palisade_denied", "request_id": id }),
            retry_after: None,
            code: "palisade_denied",
            message: String::new(),
        };
        return finish_refusal(http_refusal(&r), &r, d);
    };
    let errors: Vec<Value> = msgs
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let rpc_id = m.get("id")?.clone();
            m.get("method")?;
            let error = if i == refused {
                json!({
                    "code": r.mcp_code.unwrap_or(MCP_DENIED),
                    "message": format!("{}: {}", r.code, r.message),
                    "data": r.body,
                })
            } else {
                json!({
                    "code": MCP_DENIED,
                    "message": format!(
                        "batch_refused: message {refused} of this batch was refused ({}), so none of it was forwarded",
                        r.code
                    ),
                    "data": { "code": "batch_refused", "request_id": id, "refused_index": refused },
                })
            };
            Some(json!({ "jsonrpc": "2.0", "id": rpc_id, "error": error }))
        })
        .collect();
    let response = if errors.is_empty() || r.mcp_code.is_none() {
        // Only notifications (no one to answer in JSON-RPC), or a missing identity: HTTP's error.
        http_refusal(&r)
    } else {
        rpc_response(&Value::Array(errors), r.status, wants_sse)
    };
    finish_refusal(response, &r, d)
}

/// A JSON-RPC answer, as JSON or one SSE event. It travels in a 200, except a missing
/// identity, which is HTTP's.
fn rpc_response(msg: &Value, status: StatusCode, wants_sse: bool) -> Response<Body> {
    let mut r = if wants_sse {
        let mut r = Response::new(full(format!("event: message\ndata: {msg}\n\n")));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r
    } else {
        json_body(msg)
    };
    *r.status_mut() = if status == StatusCode::UNAUTHORIZED {
        status
    } else {
        StatusCode::OK
    };
    r
}

fn http_refusal(r: &Refusal) -> Response<Body> {
    let mut resp = json_body(&json!({ "error": r.body }));
    *resp.status_mut() = r.status;
    resp
}

fn finish_refusal(
    mut response: Response<Body>,
    r: &Refusal,
    d: &GovDecision,
) -> (Response<Body>, Outcome) {
    if let Some(s) = r.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    let status = response.status().as_u16();
    (
        response,
        Outcome {
            decision: d.label(),
            reasons: d.reasons.clone(),
            status,
        },
    )
}

fn status(code: u16, fallback: StatusCode) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(fallback)
}

fn json_body(v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Adds the governance headers to the response and writes the decision line.
pub(crate) fn finish(slot: &Slot, response: &mut Response<Body>, route: &str) {
    let Some(d) = slot.take() else { return };
    if d.outcome == GovOutcome::Excluded {
        return;
    }
    let h = response.headers_mut();
    // The governance verdict replaces the detection one only when it refused or held.
    if d.label() != "allow" {
        h.insert(crate::proxy::DECISION, HeaderValue::from_static(d.label()));
    }
    for (name, value) in [
        ("x-palisade-action-id", d.action_id.clone()),
        ("x-palisade-risk-score", d.risk_score.to_string()),
        ("x-palisade-risk-level", d.risk_level.as_str().to_owned()),
        ("x-palisade-action", d.action.clone()),
        ("x-palisade-agent-id", d.agent.clone()),
        (
            "x-palisade-decision-cache",
            if d.cache_hit { "hit" } else { "miss" }.to_owned(),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    let line = serde_json::to_string(&d).unwrap_or_default();
    tracing::info!(
        target: "palisade::governance",
        route,
        action_id = %d.action_id,
        agent = %d.agent,
        action = %d.action,
        decision = d.label(),
        risk_score = d.risk_score,
        risk_level = d.risk_level.as_str(),
        cache_hit = d.cache_hit,
        governance = %line,
        "governance decision"
    );
}

/// Whether the response to `method` is a list governance reviews.
pub(crate) fn reviews(state: &State, target: &Target, method: Option<&str>) -> bool {
    let listed = method.is_some_and(is_list);
    listed
        && state
            .governance
            .tool_settings(&target.policy)
            .is_some_and(|t| t.pin || t.poisoning.enabled)
}

fn is_list(method: &str) -> bool {
    matches!(method, "tools/list" | "prompts/list" | "resources/list")
}

/// Which request method each answer in a response replies to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Methods<'a> {
    /// One request, one answer.
    One(&'a str),
    /// A batch: `(id as JSON text, method)` of each request.
    Batch(&'a [(String, String)]),
}

impl Methods<'_> {
    fn of(&self, msg: &Value) -> Option<&str> {
        match self {
            Methods::One(m) => Some(m),
            Methods::Batch(ids) => {
                let id = msg.get("id")?.to_string();
                ids.iter().find(|(i, _)| *i == id).map(|(_, m)| m.as_str())
            }
        }
    }
}

/// Whether a batch asks for a list governance reviews.
pub(crate) fn reviews_batch(state: &State, target: &Target, batch: &[(String, String)]) -> bool {
    batch.iter().any(|(_, m)| reviews(state, target, Some(m)))
}

/// What reviewing a list response found so far.
struct Review {
    decision: &'static str,
    reasons: Vec<String>,
    blocked: Option<Vec<String>>,
}

/// Reviews one JSON-RPC answer (pins, rug pulls, poisoning) and applies the policy's output
/// rules to what is left; returns its new text.
async fn review_message(
    state: &Arc<State>,
    target: &Target,
    id: &str,
    mut msg: Value,
    method: &str,
    mode: FailureMode,
    out: &mut Review,
) -> String {
    let result = msg.get("result").filter(|_| is_list(method));
    if let Some(result) = result {
        let r = state
            .governance
            .review_list(&target.policy, &scope(target), method, result, mode)
            .await;
        for f in &r.findings {
            tracing::warn!(
                target: "palisade::finding",
                request_id = %id,
                route = %target.route,
                detector = f.detector,
                kind = %f.kind,
                severity = %f.severity,
                tool = f.tool.as_deref().unwrap_or(""),
                detail = %f.detail,
                "governance finding"
            );
            out.reasons.push(format!(
                "{}/{} ({}) {}: {}",
                f.detector,
                f.kind,
                f.severity,
                f.tool.as_deref().unwrap_or(""),
                f.detail
            ));
        }
        if let Some(why) = &r.failure {
            out.reasons.push(format!("list review failed: {why}"));
        }
        if r.block {
            out.blocked = Some(out.reasons.clone());
        } else if !r.hide.is_empty() {
            let key = match method {
                "prompts/list" => "prompts",
                "resources/list" => "resources",
                _ => "tools",
            };
            if let Some(items) = msg
                .get_mut("result")
                .and_then(|r| r.get_mut(key))
                .and_then(Value::as_array_mut)
            {
                items.retain(|t| {
                    t.get("name")
                        .and_then(Value::as_str)
                        .is_none_or(|n| !r.hide.contains(n))
                });
            }
            out.decision = "redact";
        }
    }
    // The policy's output rules still apply to what is left.
    let body = msg.to_string();
    let verdict = state.inspector.inspect_body(
        &target.policy,
        Direction::Response,
        Protocol::Mcp,
        body.as_bytes(),
        Some(method),
    );
    match verdict {
        Ok(v) if v.failure.is_none() => match v.action {
            Action::Block => {
                out.reasons.extend(v.reasons);
                out.blocked = Some(out.reasons.clone());
                body
            }
            Action::Redact => {
                out.reasons.extend(v.reasons);
                out.decision = "redact";
                v.body
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or(body)
            }
            Action::Allow => body,
        },
        Ok(v) if mode == FailureMode::FailOpen => {
            out.reasons.extend(v.reasons);
            body
        }
        Ok(v) => {
            out.reasons.extend(v.reasons);
            out.blocked = Some(out.reasons.clone());
            body
        }
        Err(e) => {
            out.reasons.push(e.to_string());
            if mode == FailureMode::FailClosed {
                out.blocked = Some(out.reasons.clone());
            }
            body
        }
    }
}

/// Reads an MCP list response whole (JSON or an SSE stream that ends after the answer), reviews
/// it (pins, rug pulls, poisoning), removes hidden entries or refuses it, inspects what is left
/// under the policy's output rules, and answers. A batch answer is reviewed answer by answer,
/// each by the method of the request with its id.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn list_response(
    state: &Arc<State>,
    target: &Target,
    id: &str,
    resp: Response<Incoming>,
    methods: Methods<'_>,
    mcp_id: Option<&str>,
    mode: FailureMode,
    reasons: Vec<String>,
) -> Result<(Response<Body>, Outcome), crate::error::GatewayError> {
    let (rparts, rbody) = resp.into_parts();
    let limit = state.config.limits.max_response_body_bytes;
    let (bytes, rest) = crate::proxy::read_bounded(rbody, limit)
        .await
        .map_err(crate::error::GatewayError::UpstreamBroken)?;
    if rest.is_some() {
        return Err(crate::error::GatewayError::ResponseTooLarge(limit));
    }
    let sse = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut review = Review {
        decision: "allow",
        reasons,
        blocked: None,
    };
    // Split into messages: one JSON body, or the data of each SSE event.
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let events: Vec<(String, Option<Value>)> = if sse {
        text.split_inclusive("\n\n")
            .map(|ev| {
                let data: String = ev
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect::<Vec<_>>()
                    .join("\n");
                (ev.to_owned(), serde_json::from_str(&data).ok())
            })
            .collect()
    } else {
        vec![(text.clone(), serde_json::from_str(&text).ok())]
    };
    let mut out = String::new();
    for (raw, msg) in events {
        let final_body = match msg {
            None => {
                out.push_str(&raw);
                continue;
            }
            Some(Value::Array(answers)) => {
                let mut parts = Vec::with_capacity(answers.len());
                for a in answers {
                    let method = methods.of(&a).unwrap_or_default().to_owned();
                    parts.push(
                        review_message(state, target, id, a, &method, mode, &mut review).await,
                    );
                }
                format!("[{}]", parts.join(","))
            }
            Some(msg) => {
                let method = methods.of(&msg).unwrap_or_default().to_owned();
                review_message(state, target, id, msg, &method, mode, &mut review).await
            }
        };
        if sse {
            out.push_str(&format!("event: message\ndata: {final_body}\n\n"));
        } else {
            out.push_str(&final_body);
        }
    }
    if let Some(why) = review.blocked {
        let (status, body) = palisade_engine::blocked::block_body(Protocol::Mcp, id, &why, mcp_id);
        let mut r = if sse {
            let mut r = Response::new(full(format!("event: message\ndata: {body}\n\n")));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            r
        } else {
            json_body(&body)
        };
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let r = crate::proxy::with_ids(r, id, "block");
        let s = r.status().as_u16();
        return Ok((
            r,
            Outcome {
                decision: "block",
                reasons: why,
                status: s,
            },
        ));
    }
    let mut headers = crate::proxy::end_to_end(&rparts.headers, false);
    headers.remove(header::CONTENT_LENGTH);
    let mut r = Response::new(full(Bytes::from(out)));
    *r.status_mut() = rparts.status;
    *r.headers_mut() = headers;
    let decision = review.decision;
    let r = crate::proxy::with_ids(r, id, decision);
    let status = rparts.status.as_u16();
    Ok((
        r,
        Outcome {
            decision,
            reasons: review.reasons,
            status,
        },
    ))
}

/// Headers of a client's MCP session that a tools re-check sends again, so the upstream answers
/// in that session (streamable HTTP: `Mcp-Session-Id`; plus the protocol version and the
/// client's credentials).
#[derive(Debug, Clone)]
pub(crate) struct Recheck(Vec<(header::HeaderName, HeaderValue)>);

/// The session headers of a request whose response stream may announce a tools change; `None`
/// when the session cannot be addressed on its own (MCP's older SSE transport, where the answer
/// to a request travels on the client's stream).
pub(crate) fn recheck_for(
    state: &State,
    target: &Target,
    parts: &http::request::Parts,
) -> Option<Recheck> {
    let watched = state
        .governance
        .tool_settings(&target.policy)
        .is_some_and(|t| t.pin);
    if !watched || target.protocol != Protocol::Mcp {
        return None;
    }
    parts.headers.get("mcp-session-id")?;
    let keep = [
        "mcp-session-id",
        "mcp-protocol-version",
        "authorization",
        "x-api-key",
    ];
    Some(Recheck(
        parts
            .headers
            .iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
}

/// Whether responses on this target must pass through the stream inspector even when the policy
/// has no output rules: it is where `notifications/tools/list_changed` is noticed.
pub(crate) fn watches_streams(state: &State, target: &Target) -> bool {
    target.protocol == Protocol::Mcp
        && state
            .governance
            .tool_settings(&target.policy)
            .is_some_and(|t| t.pin)
}

/// A server said its tools changed: fetch `tools/list` from it in the client's session, now,
/// and review it as if the client had asked (pins, rug pulls, quarantine, poisoning), so a
/// changed tool is refused before the client lists again. Runs on its own task; the stream it
/// was noticed on is not held up.
pub(crate) fn spawn_recheck(
    state: Arc<State>,
    target: Target,
    recheck: Recheck,
    request_id: String,
    mode: FailureMode,
) {
    tokio::spawn(async move {
        let scope = scope(&target);
        match fetch_tools(&state, &target, &recheck, &request_id).await {
            Ok(result) => {
                let review = state
                    .governance
                    .review_list(&target.policy, &scope, "tools/list", &result, mode)
                    .await;
                for f in &review.findings {
                    tracing::warn!(
                        target: "palisade::finding",
                        request_id = %request_id,
                        route = %target.route,
                        detector = f.detector,
                        kind = %f.kind,
                        severity = %f.severity,
                        tool = f.tool.as_deref().unwrap_or(""),
                        detail = %f.detail,
                        "governance finding (tools re-checked after list_changed)"
                    );
                }
                state
                    .governance
                    .audit(
                        "palisade",
                        "tools.rechecked",
                        &scope,
                        Some("notifications/tools/list_changed".into()),
                        json!({ "findings": review.findings.len(), "hidden": review.hide }),
                    )
                    .await;
            }
            Err(why) => {
                tracing::warn!(request_id = %request_id, route = %target.route, error = %why, "tools re-check after list_changed failed; pins are checked at the next tools/list");
            }
        }
    });
}

async fn fetch_tools(
    state: &State,
    target: &Target,
    recheck: &Recheck,
    request_id: &str,
) -> Result<Value, String> {
    let rpc_id = format!("palisade-recheck-{request_id}");
    let body = json!({ "jsonrpc": "2.0", "id": rpc_id, "method": "tools/list" }).to_string();
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(&target.url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    for (k, v) in &recheck.0 {
        builder = builder.header(k, v);
    }
    let req = builder.body(full(body)).map_err(|e| e.to_string())?;
    let resp = crate::proxy::send(state, req)
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("upstream answered {}", resp.status()));
    }
    let limit = state.config.limits.max_response_body_bytes;
    let (bytes, rest) = tokio::time::timeout(
        Duration::from_millis(state.config.timeouts.total_ms),
        crate::proxy::read_bounded(resp.into_body(), limit),
    )
    .await
    .map_err(|_| "timed out".to_owned())??;
    if rest.is_some() {
        return Err(format!("tools/list over {limit} bytes"));
    }
    let text = String::from_utf8_lossy(&bytes);
    // One JSON body, or SSE events of which one answers our id.
    let candidates: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(v) => vec![v],
        Err(_) => text
            .split("\n\n")
            .filter_map(|ev| {
                let data: Vec<&str> = ev
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                serde_json::from_str(&data.join("\n")).ok()
            })
            .collect(),
    };
    candidates
        .into_iter()
        .find(|m| m.get("id").and_then(Value::as_str) == Some(rpc_id.as_str()))
        .and_then(|mut m| m.get_mut("result").map(Value::take))
        .ok_or_else(|| "no tools/list result in the answer".to_owned())
}
