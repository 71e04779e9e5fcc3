//! Endpoints that speak existing gateway plugins' wire formats, so those plugins work unchanged
//! against Palisade. Each call is judged by [`crate::guard::judge`], the same path as the native
//! guard API, and answered in the plugin's own shape.
//!
//! **Akto's Kong plugin** (`akto-mcp-endpoint-shield`): `POST /process/request`,
//! `/process/response` and `/process/both`. The plugin posts `request_body` (the raw body as a
//! string), `request_headers` (Kong's header table: a string or a list of strings per name),
//! `query_params`, `ip`, `method`, `endpoint` (the path) and `mode`; for a response also
//! `response_body`, `response_headers` and `status_code`. It reads `is_blocked`,
//! `blocked_response` (a JSON object it answers the client with, status 403) and
//! `modified_payload` (the body to forward instead, when not empty); `/process/both` answers
//! `request_result`, `response_result` and `total_time_ms`. The plugin fails open on any status
//! but 200, so a refused call says so in its log, never silently.
//!
//! The stock plugin sends no key: a collector's `trusted_networks` admit its keyless calls from
//! the gateway's addresses; any other keyless call is refused with 401.

use std::collections::BTreeMap;

use http::header::HeaderMap;
use http::{Method, Response, StatusCode};
use palisade_policy::Direction;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::Body;
use crate::guard::{GuardError, Message, Metadata, Verdict};
use crate::State;

/// Where Envoy's HTTP `ext_authz` filter is pointed (`path_prefix`); Envoy appends the original
/// request's path.
pub const EXT_AUTHZ: &str = "/v1/guard/ext_authz";

/// Whether `path` is a compatible endpoint.
pub fn handles(path: &str) -> bool {
    matches!(
        path,
        "/process/request" | "/process/response" | "/process/both"
    ) || path == EXT_AUTHZ
        || path.starts_with("/v1/guard/ext_authz/")
        || path == "/api/http-proxy"
        || path == "/v1/guard_chat_completions"
}

/// CrowdStrike AIDR's guard API, as its Kong plugins (`crowdstrike-aidr-request`, `-response`)
/// call it: `POST /v1/guard_chat_completions` with a bearer key, `event_type` (`input` for a
/// request, `output` for a response), `guard_input.messages` (chat messages, `role` and
/// `content`) and metadata (`source_ip`, `app_id`, `user_id`, `tenant_id`, `llm_provider`,
/// `model`, …). The answer carries `result.blocked`, `result.transformed` and
/// `result.guard_output.messages` (the messages with redactions applied), and a `summary`.
fn aidr(
    state: &State,
    request_id: &str,
    peer: std::net::IpAddr,
    started: std::time::Instant,
    method: &Method,
    hdrs: &HeaderMap,
    body: &[u8],
) -> Result<Response<Body>, GuardError> {
    if method != Method::POST {
        return Err(GuardError::Method("POST"));
    }
    // The AIDR plugins always send their key: no network is trusted here.
    let collector = state.collectors.authenticate(hdrs, peer, false)?;
    #[derive(Deserialize)]
    struct GuardInput {
        messages: Vec<Value>,
    }
    #[derive(Deserialize)]
    struct Call {
        event_type: String,
        guard_input: GuardInput,
        #[serde(default)]
        source_ip: Option<String>,
        #[serde(default)]
        app_id: Option<String>,
        #[serde(default)]
        user_id: Option<String>,
        #[serde(default)]
        tenant_id: Option<String>,
        #[serde(default)]
        llm_provider: Option<String>,
        #[serde(default)]
        model: Option<String>,
    }
    let call: Call = crate::guard::parse(body)?;
    let (direction, doc) = match call.event_type.as_str() {
        "input" => (
            Direction::Request,
            json!({ "messages": call.guard_input.messages }),
        ),
        // The output event may carry the conversation before the answer too: only the model's
        // messages are model output; the others pass back as they came.
        "output" => (
            Direction::Response,
            json!({ "choices": call.guard_input.messages.iter().enumerate()
                .filter(|(_, m)| is_model_message(m))
                .map(|(i, m)| json!({ "index": i, "message": m }))
                .collect::<Vec<_>>() }),
        ),
        other => {
            return Err(GuardError::BadRequest(format!(
                "field `event_type`: `{other}` is neither `input` nor `output`"
            )))
        }
    };
    let message = Message {
        body: Some(doc.to_string()),
        client_ip: call.source_ip.clone(),
        protocol: crate::guard::ProtocolHint::Openai,
        metadata: Metadata {
            app_id: call.app_id,
            user_id: call.user_id,
            tenant_id: call.tenant_id,
            provider: call.llm_provider,
            model: call.model,
            ..Metadata::default()
        },
        ..Message::default()
    };
    let v = crate::guard::judge(
        state,
        &collector,
        request_id,
        direction,
        &message,
        &Metadata::default(),
    )?;
    let transformed = v.action == "redact";
    let messages: Vec<Value> = match v.body.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(new)) if transformed => match direction {
            Direction::Request => new["messages"].as_array().cloned().unwrap_or_default(),
            Direction::Response => {
                let mut messages = call.guard_input.messages;
                for c in new["choices"].as_array().into_iter().flatten() {
                    let slot = c["index"]
                        .as_u64()
                        .and_then(|i| usize::try_from(i).ok())
                        .and_then(|i| messages.get_mut(i));
                    if let Some(m) = slot {
                        *m = c["message"].clone();
                    }
                }
                messages
            }
        },
        _ => call.guard_input.messages,
    };
    crate::guard::count(&collector, &v.action, started);
    let answer = json!({
        "request_id": v.request_id,
        "status": "Success",
        "summary": if v.reasons.is_empty() { "no detections".to_owned() } else { v.reasons.join("; ") },
        "result": {
            "blocked": !v.allowed,
            "transformed": transformed,
            "guard_output": { "messages": messages },
            "detectors": v.findings.iter().map(|f| json!({
                "detector": f.detector, "kind": f.kind, "action": f.action, "location": f.location,
            })).collect::<Vec<_>>(),
        },
    });
    Ok(crate::guard::json_answer(
        StatusCode::OK,
        &answer,
        request_id,
    ))
}

/// Akto's ingestion format: `POST /api/http-proxy?akto_connector=…&guardrails=true&
/// response_guardrails=true&ingest_data=true`, a flat JSON record of strings (`path`,
/// `requestHeaders` and `responseHeaders` as JSON text, `method`, `requestPayload`,
/// `responsePayload`, `ip`, `time`, `statusCode`, …). `guardrails` judges the request,
/// `response_guardrails` the response; the answer is `{"success", "message", "data":
/// {"guardrailsResult": {"Allowed", "Modified", "ModifiedPayload", "Reason", "Behaviour",
/// "Metadata"}}}`, where `Behaviour` is `block`, `modify` or `allow` and the payload is the
/// judged side's, redacted. Every call is recorded (what `ingest_data` asks for).
#[allow(clippy::too_many_arguments)]
fn akto_ingest(
    state: &State,
    request_id: &str,
    peer: std::net::IpAddr,
    started: std::time::Instant,
    method: &Method,
    query: Option<&str>,
    hdrs: &HeaderMap,
    body: &[u8],
) -> Result<Response<Body>, GuardError> {
    if method != Method::POST {
        return Err(GuardError::Method("POST"));
    }
    let collector = state.collectors.authenticate(hdrs, peer, true)?;
    let flag = |name: &str| {
        query.is_some_and(|q| {
            q.split('&')
                .any(|kv| kv.eq_ignore_ascii_case(&format!("{name}=true")))
        })
    };
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err(GuardError::BadRequest(
            "the body must be a JSON object (one record)".into(),
        ));
    }
    let record: BTreeMap<String, Value> = crate::guard::parse(body)?;
    let text = |k: &str| -> Result<Option<String>, GuardError> {
        match record.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(GuardError::BadRequest(format!(
                "field `{k}`: expected a string (nested JSON is sent as text)"
            ))),
        }
    };
    let header_map = |k: &str| -> Result<BTreeMap<String, String>, GuardError> {
        let Some(raw) = text(k)? else {
            return Ok(BTreeMap::new());
        };
        let table: BTreeMap<String, Value> = serde_json::from_str(&raw)
            .map_err(|e| GuardError::BadRequest(format!("field `{k}`: not a JSON object: {e}")))?;
        Ok(headers(&table))
    };
    let path_full = text("path")?.unwrap_or_else(|| "/".into());
    let (path, q) = match path_full.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path_full.clone(), None),
    };
    let (request_payload, request_framing) = match text("requestPayload")? {
        Some(p) => {
            let (b, f) = unwrap_payload(&p);
            (Some(b), f)
        }
        None => (None, Framing::Raw),
    };
    let (response_payload, response_framing) = match text("responsePayload")? {
        Some(p) => {
            let (b, f) = unwrap_payload(&p);
            (Some(b), f)
        }
        None => (None, Framing::Raw),
    };
    let request = Message {
        method: text("method")?,
        path: Some(path.clone()),
        query: q,
        headers: header_map("requestHeaders")?,
        body: request_payload.clone().filter(|b| !b.is_empty()),
        client_ip: text("ip")?,
        ..Message::default()
    };
    let mcp_method = request_payload
        .as_deref()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|v| v.get("method").and_then(Value::as_str).map(str::to_owned));
    let response = Message {
        method: request.method.clone(),
        path: Some(path),
        headers: header_map("responseHeaders")?,
        body: response_payload.filter(|b| !b.is_empty()),
        status: text("statusCode")?.and_then(|s| s.parse().ok()),
        client_ip: request.client_ip.clone(),
        mcp_method,
        ..Message::default()
    };
    let none = Metadata::default();
    let judge = |d, m: &Message| crate::guard::judge(state, &collector, request_id, d, m, &none);
    // Without either flag the record is ingested (judged and recorded) and the answer allows.
    let check_request = flag("guardrails") || !flag("response_guardrails");
    let req = if check_request || flag("ingest_data") {
        Some(judge(Direction::Request, &request)?)
    } else {
        None
    };
    let resp = if flag("response_guardrails") || (flag("ingest_data") && response.body.is_some()) {
        Some(judge(Direction::Response, &response)?)
    } else {
        None
    };
    // The verdict reported: the request's when guardrails were asked for it and it did not
    // pass, else the response's when asked for, else the request's.
    let judged: Option<(&Verdict, Framing)> = match (&req, &resp) {
        (Some(r), _) if flag("guardrails") && r.action != "allow" => Some((r, request_framing)),
        (_, Some(r)) if flag("response_guardrails") => Some((r, response_framing)),
        (Some(r), _) if flag("guardrails") => Some((r, request_framing)),
        _ => None,
    };
    let (allowed, modified, payload, reason, behaviour, risk, rid) = match judged {
        Some((v, framing)) => (
            v.allowed,
            v.action == "redact",
            v.body
                .clone()
                .map(|b| rewrap_payload(b, framing))
                .unwrap_or_default(),
            v.reasons.join("; "),
            match v.action.as_str() {
                "block" => "block",
                "redact" => "modify",
                _ => "allow",
            },
            v.risk_score,
            v.request_id.clone(),
        ),
        None => (
            true,
            false,
            String::new(),
            String::new(),
            "allow",
            0,
            request_id.to_owned(),
        ),
    };
    let decision = if !allowed {
        "block"
    } else if modified {
        "redact"
    } else {
        "allow"
    };
    crate::guard::count(&collector, decision, started);
    let answer = json!({
        "success": true,
        "message": if allowed { "ingested" } else { "blocked by guardrails" },
        "data": { "guardrailsResult": {
            "Allowed": allowed,
            "Modified": modified,
            "ModifiedPayload": payload,
            "Reason": reason,
            "Behaviour": behaviour,
            "Metadata": {
                "request_id": rid,
                "risk_score": risk,
                "collector": collector.name,
                "connector": query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("akto_connector="))).unwrap_or(""),
            },
        }},
    });
    Ok(crate::guard::json_answer(
        StatusCode::OK,
        &answer,
        request_id,
    ))
}

/// Whether an AIDR message is the model's (`assistant`, or no role given).
fn is_model_message(m: &Value) -> bool {
    m.get("role")
        .and_then(Value::as_str)
        .is_none_or(|r| r == "assistant" || r == "model")
}

/// How an ingested payload was framed, so that a rewritten one is framed the same way. Some
/// connectors send the body itself; hook-based ones wrap it as `{"body": …}`, the body a string
/// (often JSON again) or a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// The payload is the body.
    Raw,
    /// `{"body": "<the body as a string>"}`.
    BodyString,
    /// `{"body": <the body as JSON>}`.
    BodyValue,
}

fn unwrap_payload(payload: &str) -> (String, Framing) {
    if payload.trim_start().starts_with('{') {
        if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(payload) {
            match (o.len(), o.get("body")) {
                (1, Some(Value::String(s))) => return (s.clone(), Framing::BodyString),
                (1, Some(v)) => return (v.to_string(), Framing::BodyValue),
                _ => {}
            }
        }
    }
    (payload.to_owned(), Framing::Raw)
}

fn rewrap_payload(body: String, framing: Framing) -> String {
    match framing {
        Framing::Raw => body,
        Framing::BodyString => json!({ "body": body }).to_string(),
        Framing::BodyValue => match serde_json::from_str::<Value>(&body) {
            Ok(v) => json!({ "body": v }).to_string(),
            Err(_) => json!({ "body": body }).to_string(),
        },
    }
}

/// Envoy's HTTP `ext_authz` check: Envoy sends the original request's method, its path after
/// [`EXT_AUTHZ`], the headers it is configured to forward and, with `with_request_body`, the
/// body. 200 lets the request through (the `x-palisade-*` headers can be passed upstream with
/// `allowed_upstream_headers`); any other status is what the client gets, with its body. An
/// `ext_authz` server cannot rewrite the body, so a verdict of `redact` is answered 403: the
/// data that would have been masked never reaches the upstream.
#[allow(clippy::too_many_arguments)]
fn ext_authz(
    state: &State,
    request_id: &str,
    peer: std::net::IpAddr,
    started: std::time::Instant,
    method: &Method,
    path: &str,
    query: Option<&str>,
    hdrs: &HeaderMap,
    body: &[u8],
) -> Result<Response<Body>, GuardError> {
    let collector = state.collectors.authenticate_from(hdrs, peer, true, true)?;
    let original = path
        .strip_prefix(EXT_AUTHZ)
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let headers: BTreeMap<String, String> = hdrs
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "x-palisade-key" | "content-length"))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let message = Message {
        method: Some(method.as_str().to_owned()),
        path: Some(original.to_owned()),
        query: query.map(str::to_owned),
        headers,
        body: (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned()),
        client_ip: hdrs
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned()),
        ..Message::default()
    };
    let v = crate::guard::judge(
        state,
        &collector,
        request_id,
        Direction::Request,
        &message,
        &Metadata::default(),
    )?;
    let (status, body, decision) = match (v.allowed, v.action.as_str(), &v.blocked) {
        (true, "allow", _) => (StatusCode::OK, String::new(), "allow"),
        // Envoy lets a 200 through, so a block is never 200, even where the protocol's own
        // block answer is (an MCP JSON-RPC error): 403 with the same body.
        (false, _, Some(b)) => (
            StatusCode::from_u16(b.status)
                .ok()
                .filter(|s| !s.is_success())
                .unwrap_or(StatusCode::FORBIDDEN),
            b.body.clone(),
            "block",
        ),
        _ => (
            StatusCode::FORBIDDEN,
            json!({"error": {
                "code": "palisade_redaction_required",
                "message": "blocked by Palisade: the body holds data the policy redacts, and ext_authz cannot rewrite bodies",
                "request_id": v.request_id,
                "reasons": v.reasons,
            }})
            .to_string(),
            "block",
        ),
    };
    crate::guard::count(&collector, decision, started);
    let mut r = Response::new(crate::body::full(body));
    *r.status_mut() = status;
    if status != StatusCode::OK {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    for (k, val) in &v.headers {
        if let (Ok(k), Ok(val)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(val),
        ) {
            r.headers_mut().insert(k, val);
        }
    }
    Ok(r)
}

/// A call from Akto's Kong plugin.
#[derive(Debug, Deserialize)]
struct AktoCall {
    #[serde(default)]
    request_body: Option<String>,
    #[serde(default)]
    request_headers: BTreeMap<String, Value>,
    #[serde(default)]
    query_params: Option<Value>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    response_body: Option<String>,
    #[serde(default)]
    response_headers: BTreeMap<String, Value>,
    #[serde(default)]
    status_code: Option<u16>,
}

/// Kong's header table: a value is a string, or a list of strings for a repeated header.
fn headers(table: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    table
        .iter()
        .filter_map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.to_ascii_lowercase(), v))
        })
        .collect()
}

/// `query_params` as a query string: Kong gives a table (a string or a list per name), or the
/// plugin may send the raw string.
fn query_string(q: &Option<Value>) -> Option<String> {
    match q {
        Some(Value::String(s)) if !s.is_empty() => Some(s.trim_start_matches('?').to_owned()),
        Some(Value::Object(map)) if !map.is_empty() => Some(
            map.iter()
                .flat_map(|(k, v)| match v {
                    Value::Array(items) => items
                        .iter()
                        .map(|i| format!("{k}={}", i.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>(),
                    Value::String(s) => vec![format!("{k}={s}")],
                    Value::Bool(true) => vec![k.clone()],
                    other => vec![format!("{k}={other}")],
                })
                .collect::<Vec<_>>()
                .join("&"),
        ),
        _ => None,
    }
}

/// One side's answer in the plugin's shape.
fn result(v: &Verdict) -> Value {
    let blocked_response = v.blocked.as_ref().map(|b| {
        // The plugin answers the client with this object as JSON (status 403).
        serde_json::from_str::<Value>(&b.body).unwrap_or_else(|_| json!({ "error": b.body }))
    });
    // No `null` anywhere: the plugin decodes with cjson, where null is a truthy value.
    let mut answer = json!({
        "is_blocked": !v.allowed,
        "modified_payload": v.body.clone().unwrap_or_default(),
        "action": v.action,
        "risk_score": v.risk_score,
        "reasons": v.reasons,
        "request_id": v.request_id,
    });
    if let (Some(b), Some(map)) = (blocked_response, answer.as_object_mut()) {
        map.insert("blocked_response".into(), b);
    }
    answer
}

/// Answers a compatible endpoint's call.
#[allow(clippy::too_many_arguments)]
pub fn answer(
    state: &State,
    request_id: &str,
    peer: std::net::IpAddr,
    started: std::time::Instant,
    method: &Method,
    path: &str,
    query: Option<&str>,
    hdrs: &HeaderMap,
    body: &[u8],
) -> Result<Response<Body>, GuardError> {
    if path == "/v1/guard_chat_completions" {
        return aidr(state, request_id, peer, started, method, hdrs, body);
    }
    if path == "/api/http-proxy" {
        return akto_ingest(state, request_id, peer, started, method, query, hdrs, body);
    }
    if path == EXT_AUTHZ || path.starts_with("/v1/guard/ext_authz/") {
        return ext_authz(
            state, request_id, peer, started, method, path, query, hdrs, body,
        );
    }
    if method != Method::POST {
        return Err(GuardError::Method("POST"));
    }
    let collector = state.collectors.authenticate(hdrs, peer, true)?;
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err(GuardError::BadRequest(
            "the body must be a JSON object (the plugin's call)".into(),
        ));
    }
    let call: AktoCall = crate::guard::parse(body)?;
    let request = Message {
        method: call.method.clone(),
        path: call.endpoint.clone(),
        query: query_string(&call.query_params),
        headers: headers(&call.request_headers),
        body: call.request_body.clone(),
        client_ip: call.ip.clone(),
        ..Message::default()
    };
    let mcp_method = call
        .request_body
        .as_deref()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|v| v.get("method").and_then(Value::as_str).map(str::to_owned));
    let response = || Message {
        method: call.method.clone(),
        path: call.endpoint.clone(),
        headers: headers(&call.response_headers),
        body: call.response_body.clone(),
        status: call.status_code,
        client_ip: call.ip.clone(),
        mcp_method: mcp_method.clone(),
        ..Message::default()
    };
    let none = Metadata::default();
    let judge = |d, m: &Message| crate::guard::judge(state, &collector, request_id, d, m, &none);
    let answer = match path {
        "/process/request" => result(&judge(Direction::Request, &request)?),
        "/process/response" => {
            if call.response_body.is_none() {
                return Err(GuardError::BadRequest(
                    "field `response_body`: required by /process/response".into(),
                ));
            }
            result(&judge(Direction::Response, &response())?)
        }
        _ => {
            let req = judge(Direction::Request, &request)?;
            let resp = match &call.response_body {
                Some(_) => Some(result(&judge(Direction::Response, &response())?)),
                None => None,
            };
            let mut both = json!({
                "request_result": result(&req),
                "total_time_ms": started.elapsed().as_millis() as u64,
            });
            if let (Some(r), Some(map)) = (resp, both.as_object_mut()) {
                map.insert("response_result".into(), r);
            }
            both
        }
    };
    let decision = if answer["is_blocked"] == true
        || answer["request_result"]["is_blocked"] == true
        || answer["response_result"]["is_blocked"] == true
    {
        "block"
    } else {
        "allow"
    };
    crate::guard::count(&collector, decision, started);
    Ok(crate::guard::json_answer(
        StatusCode::OK,
        &answer,
        request_id,
    ))
}
