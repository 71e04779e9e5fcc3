//! The proxy handler: one exchange, step by step.
//!
//! ```text
//! route ─► read body (bounded) ─► inspect request ─► forward ─► inspect response ─► answer
//!                                   │ block: protocol-shaped error, upstream never called
//!                                   │ redact: forward the rewritten body
//! ```
//!
//! `enforce` routes check the request before forwarding and the response before returning it;
//! streamed responses (SSE, NDJSON) go through the engine's stream inspector, which holds a
//! bounded window. `monitor` routes forward at once and byte for byte, and inspect copies on the
//! side. Every failure of inspection resolves through the route's failure mode (`fail_closed`
//! blocks, `fail_open` forwards) and the decision log says which happened.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use palisade_engine::blocked::block_body;
use palisade_engine::stream::{Framing, StreamInspector, StreamLimits, StreamOutput};
use palisade_engine::{BodyVerdict, Inspector};
use palisade_policy::config::{Action, FailureMode, Mode};
use palisade_policy::Direction;
use palisade_protocol::{Meta, Protocol};
use tokio::sync::mpsc;

use crate::body::{empty, full, Body, ChannelBody, IdleTimeout, TeeBody};
use crate::error::GatewayError;
use crate::route::{self, Target};
use crate::State;

/// Header carrying the request id on every response.
pub const REQUEST_ID: &str = "x-palisade-request-id";
/// Header carrying the decision on every response.
pub const DECISION: &str = "x-palisade-decision";

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Bodies larger than this are inspected on the blocking pool, off the async executor.
const INLINE_INSPECTION_BYTES: usize = 64 * 1024;

fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        h.finish()
    });
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// What one exchange did, for the decision log.
pub(crate) struct Outcome {
    pub(crate) decision: &'static str,
    pub(crate) reasons: Vec<String>,
    pub(crate) status: u16,
}

/// Handles one request. Never fails: every error becomes a JSON answer. When traces are on and
/// the request is sampled, it is a server span.
pub(crate) async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let Some(trace) = crate::traces::begin(req.headers(), req.method().as_str(), req.uri().path())
    else {
        return exchange_and_log(state, peer, req).await;
    };
    req.extensions_mut().insert(trace.clone());
    let response = exchange_and_log(state, peer, req).await;
    let decision = response
        .headers()
        .get(DECISION)
        .and_then(|v| v.to_str().ok());
    trace.end(response.status().as_u16(), decision);
    response
}

async fn exchange_and_log(
    state: Arc<State>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let id = request_id();
    let governed = crate::govern::Slot::default();
    let recorded = crate::records::Slot::default();
    // Behind trusted proxies, the client is read from their forwarding header.
    let client = if state.config.client_ip.trusted_proxies.is_empty() {
        peer.ip()
    } else {
        // Every line of the header, in order, as one list.
        let hops: Vec<&str> = req
            .headers()
            .get_all(state.config.client_ip.header.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        state
            .config
            .client_ip
            .client(peer.ip(), Some(&hops.join(",")))
    };
    req.extensions_mut()
        .insert(crate::govern::Peer(SocketAddr::new(client, peer.port())));
    req.extensions_mut().insert(governed.clone());
    req.extensions_mut().insert(recorded.clone());
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if path == "/health/live" {
        return with_ids(
            json_response(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            &id,
            "allow",
        );
    }
    if path == "/health/ready" {
        // Ready: the configuration is loaded (it is, or this process would not serve), the
        // store answers, and so does a shared state store (Redis) unless told not to count it.
        // The ping runs on the blocking pool: a store that hangs holds no async worker.
        let ping = match &state.records {
            None => None,
            Some(w) => {
                let store = w.store().clone();
                Some(
                    tokio::task::spawn_blocking(move || store.ping())
                        .await
                        .unwrap_or(Err(palisade_store::StoreError::Poisoned)),
                )
            }
        };
        let store = match ping {
            None => "off",
            Some(ping) => match ping {
                Ok(()) => "ok",
                Err(e) => {
                    tracing::warn!(error = %e, "readiness: the store does not answer");
                    "unreachable"
                }
            },
        };
        let (state_check, state_blocks) =
            crate::state::readiness(state.governance.stores(), Duration::from_secs(1)).await;
        let ready = store != "unreachable" && !state_blocks;
        let body = serde_json::json!({
            "status": if ready { "ready" } else { "not_ready" },
            "checks": { "config": "ok", "store": store, "state": state_check },
        });
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return with_ids(json_response(status, &body), &id, "allow");
    }
    let trace = req.extensions().get::<crate::traces::Trace>().cloned();
    if let Some(t) = &trace {
        t.set("palisade.request_id", &id);
        t.set("client.address", &client.to_string());
    }
    if crate::guard::is_guard_path(&path) {
        if let Some(t) = &trace {
            t.route("guard");
        }
        return guard_call(&state, &id, peer.ip(), req).await;
    }
    let target = match route::resolve(&state.config, &path, req.uri().query()) {
        Ok(t) => t,
        Err(e) => return error_response(&e, &id, &path),
    };
    if let Some(t) = &trace {
        t.route(&target.route);
    }
    let total = Duration::from_millis(state.config.timeouts.total_ms);
    let result = match tokio::time::timeout(total, exchange(&state, &target, &id, req)).await {
        Ok(r) => r,
        Err(_) => Err(GatewayError::UpstreamTimeout(
            state.config.timeouts.total_ms,
        )),
    };
    let (mut response, outcome) = match result {
        Ok(r) => r,
        Err(e) => {
            let resp = error_response(&e, &id, &path);
            let status = resp.status().as_u16();
            let (_, code, side, _) = e.classify();
            if side == crate::error::Side::Upstream {
                palisade_engine::metrics::upstream_error(&target.route, code);
            }
            tracing::warn!(request_id = %id, route = %target.route, code, source = side.as_str(), detail = %e, "exchange failed");
            (
                resp,
                Outcome {
                    decision: "error",
                    reasons: vec![code.to_owned()],
                    status,
                },
            )
        }
    };
    palisade_engine::metrics::request(
        &target.route,
        target.protocol.as_str(),
        outcome.decision,
        started.elapsed(),
    );
    recorded.governed(governed.for_record());
    crate::records::finish(
        &state,
        &recorded,
        crate::records::Facts {
            request_id: &id,
            route: &target.route,
            client_ip: client.to_string(),
            method: method.as_str(),
            path: &path,
            status: outcome.status,
            decision: outcome.decision,
            reasons: &outcome.reasons,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        },
    );
    tracing::info!(
        target: "palisade::decision",
        request_id = %id,
        route = %target.route,
        client_ip = %client,
        method = %method,
        path = %path,
        mode = ?target.mode,
        decision = outcome.decision,
        reasons = ?outcome.reasons,
        status = outcome.status,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "exchange"
    );
    crate::govern::finish(&governed, &mut response, &target.route);
    response
}

/// A guard API call: read the call (bounded), answer it, log it.
async fn guard_call(
    state: &Arc<State>,
    id: &str,
    peer: std::net::IpAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let (parts, incoming) = req.into_parts();
    let limit = state.config.limits.max_request_body_bytes;
    let body = match read_bounded(incoming, limit).await {
        Ok((b, None)) => b,
        Ok((_, Some(_))) => return crate::guard::GuardError::TooLarge(limit).response(id),
        Err(e) => return crate::guard::GuardError::BadRequest(e).response(id),
    };
    let body_len = body.len();
    let state = state.clone();
    let id_owned = id.to_owned();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let answer = move || {
        crate::guard::answer(
            &state,
            &id_owned,
            peer,
            started,
            &parts.method,
            &path,
            query.as_deref(),
            &parts.headers,
            &body,
        )
    };
    // As in the proxy: small calls inline, large ones on the blocking pool.
    let response = if body_len <= INLINE_INSPECTION_BYTES {
        answer()
    } else {
        match tokio::task::spawn_blocking(answer).await {
            Ok(r) => r,
            Err(e) => crate::guard::GuardError::Internal(format!("inspection task failed: {e}"))
                .response(id),
        }
    };
    tracing::debug!(request_id = %id, latency_ms = started.elapsed().as_secs_f64() * 1000.0, status = response.status().as_u16(), "guard call");
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn with_ids(mut r: Response<Body>, id: &str, decision: &'static str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert(REQUEST_ID, v);
    }
    r.headers_mut()
        .insert(DECISION, HeaderValue::from_static(decision));
    r
}

fn error_response(e: &GatewayError, id: &str, path: &str) -> Response<Body> {
    let (status, code, side, _) = e.classify();
    if side != crate::error::Side::Client {
        tracing::debug!(request_id = %id, path, code, "error answer");
    }
    with_ids(json_response(status, &e.body(id)), id, "error")
}

fn blocked_response(
    protocol: Protocol,
    id: &str,
    reasons: &[String],
    mcp_id: Option<&str>,
    sse: bool,
) -> Response<Body> {
    let (status, body) = block_body(protocol, id, reasons, mcp_id);
    let mut r = if sse && protocol == Protocol::Mcp {
        // An MCP client that accepts SSE gets the error as an event, as the server would send it.
        let mut r = Response::new(full(format!("event: message\ndata: {body}\n\n")));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r
    } else {
        json_response(StatusCode::OK, &body)
    };
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    with_ids(r, id, "block")
}

fn is_textual(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.contains("json")
        || ct.contains("xml")
        || ct.contains("x-www-form-urlencoded")
        || ct.contains("graphql")
}

/// The protocol to read a body with: a JSON protocol's body labelled as something else (an MCP
/// server's `202 Accepted` in text/plain, an HTML error page from a load balancer) is read as
/// text, not refused as broken JSON.
fn body_protocol(protocol: Protocol, headers: &HeaderMap, body: &[u8]) -> Protocol {
    crate::guard::read_as(
        protocol,
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body,
    )
}

fn framing(headers: &HeaderMap) -> Option<Framing> {
    let ct = headers
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    if ct.starts_with("text/event-stream") {
        Some(Framing::Sse)
    } else if ct.contains("ndjson") || ct.contains("jsonl") || ct.contains("json-seq") {
        Some(Framing::Ndjson)
    } else {
        None
    }
}

/// Copies headers that are end-to-end, dropping hop-by-hop ones and those named by `Connection`.
pub(crate) fn end_to_end(headers: &HeaderMap, keep_upgrade: bool) -> HeaderMap {
    let mut named: Vec<String> = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            named.extend(s.split(',').map(|t| t.trim().to_ascii_lowercase()));
        }
    }
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        let upgrade_header = n == "upgrade" || (n == "connection" && keep_upgrade);
        if upgrade_header && keep_upgrade {
            out.append(name.clone(), value.clone());
            continue;
        }
        if HOP_BY_HOP.contains(&n) || n == "upgrade" || named.iter().any(|c| c == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Reads a body up to `limit` bytes. Returns the bytes, and the unread rest when over the limit.
pub(crate) async fn read_bounded<B>(mut body: B, limit: usize) -> Result<(Bytes, Option<B>), String>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > limit {
                return Ok((buf.freeze(), Some(body)));
            }
        }
    }
    Ok((buf.freeze(), None))
}

fn classify_send_error(e: &hyper_util::client::legacy::Error) -> GatewayError {
    let text = format!("{e:?}");
    if e.is_connect() {
        if text.contains("timed out") || text.contains("Timeout") {
            GatewayError::UpstreamTimeout(0)
        } else {
            GatewayError::UpstreamConnect(text)
        }
    } else {
        GatewayError::UpstreamBroken(text)
    }
}

async fn inspect_off_executor(
    inspector: Arc<Inspector>,
    policy: String,
    direction: Direction,
    protocol: Protocol,
    body: Bytes,
    method: Option<String>,
) -> Result<BodyVerdict, String> {
    if body.len() <= INLINE_INSPECTION_BYTES {
        // Small bodies cost microseconds: a hop to the blocking pool would cost more.
        return inspector
            .inspect_body(&policy, direction, protocol, &body, method.as_deref())
            .map_err(|e| e.to_string());
    }
    tokio::task::spawn_blocking(move || {
        inspector
            .inspect_body(&policy, direction, protocol, &body, method.as_deref())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("inspection task failed: {e}"))?
}

/// The failure mode in force for a target.
fn failure_mode(state: &State, target: &Target) -> FailureMode {
    target.failure_mode.unwrap_or_else(|| {
        state
            .inspector
            .policy(&target.policy)
            .map(|p| p.failure_mode())
            .unwrap_or_default()
    })
}

async fn exchange(
    state: &Arc<State>,
    target: &Target,
    id: &str,
    req: Request<Incoming>,
) -> Result<(Response<Body>, Outcome), GatewayError> {
    if is_upgrade(&req) {
        return websocket(state, target, id, req).await;
    }
    match target.mode {
        Mode::Enforce => enforce(state, target, id, req).await,
        Mode::Monitor => monitor(state, target, id, req).await,
    }
}

fn upstream_request(
    target: &Target,
    parts: &http::request::Parts,
    body: Body,
    identity: bool,
) -> Result<Request<Body>, GatewayError> {
    let mut headers = end_to_end(&parts.headers, false);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    if identity {
        // Inspection needs the plain body.
        headers.remove(header::ACCEPT_ENCODING);
    }
    // A traced request: the call upstream is a client span, and the upstream joins the trace.
    if let Some(t) = parts.extensions.get::<crate::traces::Trace>() {
        let (span, traceparent) = t.upstream(parts.method.as_str(), &target.url);
        headers.insert(
            http::header::HeaderName::from_static("traceparent"),
            traceparent,
        );
        headers.remove("tracestate");
        let mut builder = Request::builder()
            .method(parts.method.clone())
            .uri(&target.url)
            .extension(span);
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        return builder
            .body(body)
            .map_err(|e| GatewayError::BadTarget(e.to_string()));
    }
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(&target.url);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    builder
        .body(body)
        .map_err(|e| GatewayError::BadTarget(e.to_string()))
}

pub(crate) async fn send(
    state: &State,
    req: Request<Body>,
) -> Result<Response<Incoming>, GatewayError> {
    let header_ms = state.config.timeouts.header_ms;
    let span = req
        .extensions()
        .get::<crate::traces::UpstreamSpan>()
        .cloned();
    let sent =
        tokio::time::timeout(Duration::from_millis(header_ms), state.client.request(req)).await;
    if let Some(span) = span {
        match &sent {
            Ok(Ok(r)) => span.end(Some(r.status().as_u16()), None),
            Ok(Err(e)) => span.end(None, Some(&e.to_string())),
            Err(_) => span.end(None, Some("timed out waiting for the response head")),
        }
    }
    match sent {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => match classify_send_error(&e) {
            GatewayError::UpstreamTimeout(_) => Err(GatewayError::UpstreamTimeout(
                state.config.timeouts.connect_ms,
            )),
            other => Err(other),
        },
        Err(_) => Err(GatewayError::UpstreamTimeout(header_ms)),
    }
}

async fn enforce(
    state: &Arc<State>,
    target: &Target,
    id: &str,
    req: Request<Incoming>,
) -> Result<(Response<Body>, Outcome), GatewayError> {
    let (parts, incoming) = req.into_parts();
    let limit = state.config.limits.max_request_body_bytes;
    if incoming.size_hint().lower() > limit as u64 {
        return Err(GatewayError::RequestTooLarge(limit));
    }
    let (body, rest) = read_bounded(incoming, limit)
        .await
        .map_err(GatewayError::RequestBody)?;
    if rest.is_some() {
        return Err(GatewayError::RequestTooLarge(limit));
    }
    let wants_sse = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let mode = failure_mode(state, target);
    let governed =
        match crate::govern::on_request(state, target, id, &parts, &body, wants_sse, mode).await {
            Ok(g) => g,
            Err(answer) => return Ok(answer),
        };
    let mut reasons = Vec::new();
    let mut decision = "allow";
    let mut forward = body.clone();
    let mut protocol = target.protocol;
    let mut req_method: Option<String> = None;
    let mut mcp_id: Option<String> = None;

    // The query string is inspected as text, for attacks in URLs.
    if let Some(q) = parts.uri.query() {
        let text = format!("{}?{}", parts.uri.path(), q);
        if let Ok(v) = state
            .inspector
            .inspect_text(&target.policy, Direction::Request, &text)
        {
            if v.action == Action::Block {
                return Ok((
                    blocked_response(protocol, id, &v.reasons, None, wants_sse),
                    Outcome {
                        decision: "block",
                        reasons: v.reasons,
                        status: 403,
                    },
                ));
            }
        }
    }

    if !body.is_empty() && is_textual(&parts.headers) {
        let verdict = inspect_off_executor(
            state.inspector.clone(),
            target.policy.clone(),
            Direction::Request,
            body_protocol(target.protocol, &parts.headers, &body),
            body.clone(),
            None,
        )
        .await;
        if let (Ok(v), Some(slot)) = (&verdict, parts.extensions.get::<crate::records::Slot>()) {
            slot.add(v);
        }
        match judge(verdict, mode, id, &target.route, "request") {
            Judged::Block(block, meta) => {
                let (protocol, mcp_id) = match &meta {
                    Some(m) => (m.protocol.unwrap_or(protocol), m.id.clone()),
                    None => (protocol, None),
                };
                let pq = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                if protocol == Protocol::Mcp && state.sse_sessions.contains(pq) {
                    // MCP's SSE transport: the answer travels on the session's stream.
                    let (_, error) = block_body(protocol, id, &block, mcp_id.as_deref());
                    let event = Bytes::from(format!("event: message\ndata: {error}\n\n"));
                    if state.sse_sessions.send(pq, event).await {
                        let mut r = Response::new(full("Accepted"));
                        *r.status_mut() = StatusCode::ACCEPTED;
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; charset=utf-8"),
                        );
                        reasons.extend(block);
                        return Ok((
                            with_ids(r, id, "block"),
                            Outcome {
                                decision: "block",
                                reasons,
                                status: 202,
                            },
                        ));
                    }
                }
                let response = blocked_response(protocol, id, &block, mcp_id.as_deref(), wants_sse);
                let status = response.status().as_u16();
                reasons.extend(block);
                return Ok((
                    response,
                    Outcome {
                        decision: "block",
                        reasons,
                        status,
                    },
                ));
            }
            Judged::Pass {
                body: new_body,
                reasons: why,
                meta,
            } => {
                if let Some(m) = meta {
                    // A request read as plain text says nothing of how the answer is framed:
                    // the route's protocol still reads the response.
                    protocol = m
                        .protocol
                        .filter(|p| *p != Protocol::Text)
                        .unwrap_or(protocol);
                    req_method = m.method;
                    mcp_id = m.id;
                }
                if let Some(b) = new_body {
                    decision = "redact";
                    forward = Bytes::from(b);
                }
                reasons.extend(why);
            }
        }
    }

    let up = upstream_request(target, &parts, full(forward), true)?;
    let resp = send(state, up).await?;
    let list = req_method.clone().or(governed.mcp_method);
    let methods = if !governed.batch.is_empty() {
        crate::govern::reviews_batch(state, target, &governed.batch)
            .then_some(crate::govern::Methods::Batch(&governed.batch))
    } else {
        list.as_deref()
            .filter(|m| crate::govern::reviews(state, target, Some(m)))
            .map(crate::govern::Methods::One)
    };
    if let Some(methods) = methods {
        let mcp_id = mcp_id.or(governed.mcp_id);
        return crate::govern::list_response(
            state,
            target,
            id,
            resp,
            methods,
            mcp_id.as_deref(),
            mode,
            reasons,
        )
        .await;
    }
    let (rparts, rbody) = resp.into_parts();
    let mut headers = end_to_end(&rparts.headers, false);
    let policy = state
        .inspector
        .policy_arc(&target.policy)
        .map_err(|e| GatewayError::BadTarget(e.to_string()))?;

    if policy.detectors(Direction::Response).is_empty()
        && !crate::govern::watches_streams(state, target)
    {
        // Nothing to look for in responses: stream it through as it comes, like any proxy.
        let idle = Duration::from_millis(state.config.timeouts.idle_stream_ms);
        let mut r = Response::new(IdleTimeout::new(rbody, idle).boxed());
        *r.status_mut() = rparts.status;
        *r.headers_mut() = headers;
        let status = rparts.status.as_u16();
        return Ok((
            with_ids(r, id, decision_static(decision)),
            Outcome {
                decision,
                reasons,
                status,
            },
        ));
    }

    if let Some(fr) = framing(&rparts.headers) {
        // A stream: inspect as it flows.
        headers.remove(header::CONTENT_LENGTH);
        let s = &state.config.streaming;
        let inspector = StreamInspector::new(
            policy,
            Direction::Response,
            protocol,
            fr,
            if protocol == Protocol::Mcp {
                // Each MCP event is a whole JSON-RPC message, not a delta of one text: nothing
                // to hold back, nothing to join across events.
                StreamLimits {
                    hold_bytes: 0,
                    overlap_bytes: 0,
                    ..StreamLimits::default()
                }
            } else {
                StreamLimits {
                    hold_bytes: s.hold_bytes,
                    overlap_bytes: s.overlap_bytes,
                    ..StreamLimits::default()
                }
            },
            id,
            req_method.clone(),
            mcp_id.clone(),
        )
        .with_endpoint_prefix(route_prefix(&parts.uri, &target.url))
        .with_failure_mode(Some(mode));
        let (tx, body) = ChannelBody::new(16);
        tokio::spawn(pump_stream(
            state.clone(),
            target.clone(),
            id.to_owned(),
            rbody,
            inspector,
            tx,
            mode,
            crate::govern::recheck_for(state, target, &parts),
        ));
        let mut r = Response::new(http_body_util::BodyExt::boxed(body));
        *r.status_mut() = rparts.status;
        *r.headers_mut() = headers;
        let status = rparts.status.as_u16();
        return Ok((
            with_ids(r, id, decision_static(decision)),
            Outcome {
                decision,
                reasons,
                status,
            },
        ));
    }

    let limit = state.config.limits.max_response_body_bytes;
    let (rbytes, rest) = read_bounded(rbody, limit)
        .await
        .map_err(GatewayError::UpstreamBroken)?;
    let status = rparts.status.as_u16();
    headers.remove(header::CONTENT_LENGTH);
    let mut out = rbytes.clone();
    if let Some(rest) = rest {
        // Too large to inspect: the failure mode decides.
        match resolve_failure(
            mode,
            "response body over the inspection limit",
            id,
            &target.route,
            "response",
        ) {
            Some(_) => return Err(GatewayError::ResponseTooLarge(limit)),
            None => {
                let (tx, body) = ChannelBody::new(16);
                tokio::spawn(async move {
                    let mut rest = rest;
                    if tx.send(Ok(rbytes)).await.is_err() {
                        return;
                    }
                    while let Some(frame) = rest.frame().await {
                        match frame {
                            Ok(f) => {
                                if let Ok(d) = f.into_data() {
                                    if tx.send(Ok(d)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(Box::new(e))).await;
                                return;
                            }
                        }
                    }
                });
                let mut r = Response::new(http_body_util::BodyExt::boxed(body));
                *r.status_mut() = rparts.status;
                *r.headers_mut() = headers;
                reasons.push("response not inspected (over the limit); fail_open".into());
                return Ok((
                    with_ids(r, id, decision_static(decision)),
                    Outcome {
                        decision,
                        reasons,
                        status,
                    },
                ));
            }
        }
    }
    if !rbytes.is_empty()
        && is_textual(&rparts.headers)
        && rparts.headers.get(header::CONTENT_ENCODING).is_none()
    {
        let verdict = inspect_off_executor(
            state.inspector.clone(),
            target.policy.clone(),
            Direction::Response,
            body_protocol(protocol, &rparts.headers, &rbytes),
            rbytes.clone(),
            req_method.clone(),
        )
        .await;
        if let (Ok(v), Some(slot)) = (&verdict, parts.extensions.get::<crate::records::Slot>()) {
            slot.add(v);
        }
        match judge(verdict, mode, id, &target.route, "response") {
            Judged::Block(block, _) => {
                let response = blocked_response(protocol, id, &block, mcp_id.as_deref(), false);
                let status = response.status().as_u16();
                reasons.extend(block);
                return Ok((
                    response,
                    Outcome {
                        decision: "block",
                        reasons,
                        status,
                    },
                ));
            }
            Judged::Pass {
                body: new_body,
                reasons: why,
                ..
            } => {
                if let Some(b) = new_body {
                    decision = "redact";
                    out = Bytes::from(b);
                }
                reasons.extend(why);
            }
        }
    }
    let mut r = Response::new(full(out));
    *r.status_mut() = rparts.status;
    *r.headers_mut() = headers;
    Ok((
        with_ids(r, id, decision_static(decision)),
        Outcome {
            decision,
            reasons,
            status,
        },
    ))
}

/// The path prefix under which the client reaches the upstream's root: the request path minus the
/// upstream URL's path (`/mcp/sse` reached at `/demo/mcp/sse` gives `/demo/mcp`).
fn route_prefix(uri: &http::Uri, upstream_url: &str) -> String {
    let upstream_path = upstream_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    let upstream_path = upstream_path.split('?').next().unwrap_or("/");
    uri.path()
        .strip_suffix(upstream_path)
        .unwrap_or("")
        .to_owned()
}

/// The decision as a static label (`allow`, `redact`, `block`).
pub(crate) fn decision_static(d: &str) -> &'static str {
    match d {
        "redact" => "redact",
        "block" => "block",
        _ => "allow",
    }
}

/// What a body verdict means for the exchange.
enum Judged {
    /// Answer with a block carrying these reasons; the adapter's view of the body when it read it.
    Block(Vec<String>, Option<Meta>),
    /// Go on, with the rewritten body when the verdict redacted, and the reasons to log.
    Pass {
        body: Option<Vec<u8>>,
        reasons: Vec<String>,
        meta: Option<Meta>,
    },
}

/// Turns a body verdict, or a failure to get one, into what the exchange does next; inspection
/// failures go through the failure mode. Shared by both directions.
fn judge(
    verdict: Result<BodyVerdict, String>,
    mode: FailureMode,
    id: &str,
    route: &str,
    what: &str,
) -> Judged {
    let failure = match verdict {
        Ok(v) if v.failure.is_none() => {
            let meta = Some(v.meta);
            return match v.action {
                Action::Block => Judged::Block(v.reasons, meta),
                Action::Redact => Judged::Pass {
                    body: v.body,
                    reasons: v.reasons,
                    meta,
                },
                Action::Allow => Judged::Pass {
                    body: None,
                    reasons: v.reasons,
                    meta,
                },
            };
        }
        Ok(v) => v.reasons.join("; "),
        Err(e) => e,
    };
    match resolve_failure(mode, &failure, id, route, what) {
        Some(block) => Judged::Block(block, None),
        None => Judged::Pass {
            body: None,
            reasons: vec![format!("{what} not inspected ({failure}); fail_open")],
            meta: None,
        },
    }
}

/// Applies the failure mode to an inspection failure. Returns the reasons to block with, or
/// `None` to let the traffic through; logs which it was.
fn resolve_failure(
    mode: FailureMode,
    why: &str,
    id: &str,
    route: &str,
    what: &str,
) -> Option<Vec<String>> {
    match mode {
        FailureMode::FailClosed => {
            tracing::warn!(request_id = %id, route, what, failure = why, resolution = "blocked (fail_closed)", "inspection failed");
            Some(vec![format!(
                "{what} could not be inspected: {why}; blocked (fail_closed)"
            )])
        }
        FailureMode::FailOpen => {
            tracing::warn!(request_id = %id, route, what, failure = why, resolution = "forwarded uninspected (fail_open)", "inspection failed");
            None
        }
    }
}

/// Moves a streamed response through the stream inspector to the client.
#[allow(clippy::too_many_arguments)]
async fn pump_stream(
    state: Arc<State>,
    target: Target,
    id: String,
    mut body: Incoming,
    mut inspector: StreamInspector,
    tx: mpsc::Sender<Result<Bytes, crate::body::BoxError>>,
    mode: FailureMode,
    recheck: Option<crate::govern::Recheck>,
) {
    let idle_flush = Duration::from_millis(state.config.streaming.idle_flush_ms.max(1));
    let idle_limit = Duration::from_millis(state.config.timeouts.idle_stream_ms);
    let mut idle = Duration::ZERO;
    // Held while the stream lives: an MCP SSE session's endpoint, for blocked calls' answers.
    let mut session: Option<crate::sse_sessions::SessionGuard> = None;
    let send_all = |outputs: Vec<StreamOutput>| {
        let tx = tx.clone();
        async move {
            // One frame per upstream read, not one per event: fewer writes to the client.
            let mut ended = false;
            let mut batch: Vec<u8> = Vec::new();
            for o in outputs {
                let (bytes, last) = match o {
                    StreamOutput::Data(b) => (b, false),
                    StreamOutput::Blocked(b) => (b, true),
                };
                if batch.is_empty() {
                    batch = bytes;
                } else {
                    batch.extend_from_slice(&bytes);
                }
                ended |= last;
            }
            if !batch.is_empty() && tx.send(Ok(Bytes::from(batch))).await.is_err() {
                return Some(StreamEnd::ClientGone);
            }
            ended.then_some(StreamEnd::Blocked)
        }
    };
    loop {
        let next = tokio::time::timeout(idle_flush, body.frame()).await;
        let frame = match next {
            Err(_) => {
                idle += idle_flush;
                if idle >= idle_limit {
                    tracing::warn!(request_id = %id, route = %target.route, "upstream stream idle past the limit; closing");
                    let _ = tx.send(Err("upstream stream idle timeout".into())).await;
                    return;
                }
                // The upstream is quiet: send what is held rather than sit on it.
                if let Some(end) = send_all(inspector.flush()).await {
                    log_stream_end(end, &state, &id, &target.route, &inspector);
                    return;
                }
                continue;
            }
            Ok(f) => f,
        };
        idle = Duration::ZERO;
        match frame {
            None => break,
            Some(Ok(f)) => {
                let Ok(data) = f.into_data() else { continue };
                match inspector.push(&data) {
                    Ok(out) => {
                        if inspector.take_list_changed() {
                            on_list_changed(&state, &target, &id, recheck.as_ref(), mode);
                        }
                        if session.is_none() {
                            if let Some(endpoint) = inspector.endpoint() {
                                session = Some(state.sse_sessions.register(endpoint, tx.clone()));
                            }
                        }
                        if let Some(end) = send_all(out).await {
                            log_stream_end(end, &state, &id, &target.route, &inspector);
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(request_id = %id, route = %target.route, error = %e, "stream could not be decoded");
                        match mode {
                            FailureMode::FailClosed => {
                                let _ = tx
                                    .send(Err(format!("stream could not be inspected: {e}").into()))
                                    .await;
                                return;
                            }
                            FailureMode::FailOpen => {
                                // Pass the rest through uninspected, as it comes.
                                let _ = send_all(inspector.flush()).await;
                                let _ = tx.send(Ok(data)).await;
                                while let Some(Ok(f)) = body.frame().await {
                                    if let Ok(d) = f.into_data() {
                                        if tx.send(Ok(d)).await.is_err() {
                                            return;
                                        }
                                    }
                                }
                                return;
                            }
                        }
                    }
                }
            }
            Some(Err(e)) => {
                // The upstream broke mid-stream: send what is safe, then fail the body so the
                // client sees an incomplete stream rather than a clean end.
                tracing::warn!(request_id = %id, route = %target.route, error = %e, "upstream stream broke");
                let _ = send_all(inspector.flush()).await;
                // Let the connection write what was sent before the error aborts it.
                let drained = async {
                    while tx.capacity() < tx.max_capacity() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                };
                let _ = tokio::time::timeout(Duration::from_millis(200), drained).await;
                let _ = tx
                    .send(Err(format!("upstream stream broke: {e}").into()))
                    .await;
                return;
            }
        }
    }
    match inspector.finish() {
        Ok(out) => {
            let _ = send_all(out).await;
        }
        Err(e) => {
            tracing::warn!(request_id = %id, route = %target.route, error = %e, "stream ended mid-event");
        }
    }
    if !inspector.reasons().is_empty() {
        palisade_engine::metrics::stream_event("redacted");
        crate::records::stream(
            &state,
            &id,
            &target.route,
            "redact",
            inspector.reasons(),
            inspector.findings(),
        );
        tracing::info!(target: "palisade::decision", request_id = %id, route = %target.route, decision = "redact", reasons = ?inspector.reasons(), "stream redacted");
    }
}

/// The hook for `notifications/tools/list_changed` seen on a stream: governance re-checks the
/// server's tools where the session can be addressed.
fn on_list_changed(
    state: &Arc<State>,
    target: &Target,
    id: &str,
    recheck: Option<&crate::govern::Recheck>,
    mode: FailureMode,
) {
    match recheck {
        Some(r) => crate::govern::spawn_recheck(
            state.clone(),
            target.clone(),
            r.clone(),
            id.to_owned(),
            mode,
        ),
        None => {
            tracing::info!(request_id = %id, route = %target.route, "tools/list_changed passed; no session to re-check it in, so pins are checked at the next tools/list")
        }
    }
}

/// Why an inspected stream stopped before its upstream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    /// A finding ended it with a protocol error event.
    Blocked,
    /// The client went away.
    ClientGone,
}

fn log_stream_end(
    end: StreamEnd,
    state: &State,
    id: &str,
    route: &str,
    inspector: &StreamInspector,
) {
    let reasons = inspector.reasons();
    if end == StreamEnd::Blocked {
        crate::records::stream(state, id, route, "block", reasons, inspector.findings());
    }
    palisade_engine::metrics::stream_event(match end {
        StreamEnd::Blocked => "blocked",
        StreamEnd::ClientGone => "client_gone",
    });
    match end {
        StreamEnd::Blocked => {
            tracing::info!(target: "palisade::decision", request_id = %id, route = %route, decision = "block", reasons = ?reasons, "stream blocked");
        }
        StreamEnd::ClientGone => {
            tracing::info!(request_id = %id, route = %route, "client disconnected mid-stream; upstream stream closed");
        }
    }
}

/// How long a monitored answer waits, after the upstream answered, for governance's decision on
/// the request copy, to put it in the exchange's record.
const MONITOR_GOVERNANCE_WAIT: Duration = Duration::from_millis(20);

/// Monitor mode: forward at once and byte for byte; inspect copies on the side, and decide on
/// the request copy what governance would have done (logged, counted and recorded as `would_*`).
async fn monitor(
    state: &Arc<State>,
    target: &Target,
    id: &str,
    req: Request<Incoming>,
) -> Result<(Response<Body>, Outcome), GatewayError> {
    let (parts, incoming) = req.into_parts();
    let (copy_tx, copy_rx) = mpsc::channel::<Bytes>(64);
    let tee = TeeBody::new(incoming, copy_tx);
    let up = upstream_request(target, &parts, http_body_util::BodyExt::boxed(tee), false)?;
    let inspect_limit = state.config.limits.max_request_body_bytes;
    let (tap, observed) = match state.governance.settings(&target.policy) {
        Some(_) => {
            let (tap, copy) = tokio::sync::oneshot::channel();
            let observed = crate::govern::spawn_observe(
                state.clone(),
                target.clone(),
                id.to_owned(),
                &parts,
                copy,
                failure_mode(state, target),
            );
            (Some(tap), Some(observed))
        }
        None => (None, None),
    };
    spawn_copy_inspection(
        state.clone(),
        target.clone(),
        id.to_owned(),
        Direction::Request,
        copy_rx,
        inspect_limit,
        tap,
    );
    let resp = send(state, up).await?;
    if let Some(observed) = observed {
        // The upstream has normally read the whole request by the time it answers, so the
        // decision on the copy is ready; a short bound keeps a slow reader from delaying the
        // answer (the decision is still logged when it comes).
        if let Ok(Ok(Some(d))) = tokio::time::timeout(MONITOR_GOVERNANCE_WAIT, observed).await {
            if let Some(slot) = parts.extensions.get::<crate::records::Slot>() {
                slot.governed(Some(crate::govern::record_of(&d, true)));
            }
        }
    }
    let (rparts, rbody) = resp.into_parts();
    let headers = end_to_end(&rparts.headers, false);
    let (rcopy_tx, rcopy_rx) = mpsc::channel::<Bytes>(64);
    let compressed = rparts.headers.get(header::CONTENT_ENCODING).is_some();
    if !compressed {
        spawn_copy_inspection(
            state.clone(),
            target.clone(),
            id.to_owned(),
            Direction::Response,
            rcopy_rx,
            state.config.limits.max_response_body_bytes,
            None,
        );
    }
    let tee = TeeBody::new(rbody, rcopy_tx);
    let idle = Duration::from_millis(state.config.timeouts.idle_stream_ms);
    let mut r = Response::new(http_body_util::BodyExt::boxed(IdleTimeout::new(tee, idle)));
    *r.status_mut() = rparts.status;
    *r.headers_mut() = headers;
    let status = rparts.status.as_u16();
    Ok((
        with_ids(r, id, "monitor"),
        Outcome {
            decision: "monitor",
            reasons: Vec::new(),
            status,
        },
    ))
}

fn spawn_copy_inspection(
    state: Arc<State>,
    target: Target,
    id: String,
    direction: Direction,
    mut rx: mpsc::Receiver<Bytes>,
    limit: usize,
    tap: Option<tokio::sync::oneshot::Sender<Bytes>>,
) {
    tokio::spawn(async move {
        let mut buf = BytesMut::new();
        let mut truncated = false;
        while let Some(chunk) = rx.recv().await {
            if buf.len() + chunk.len() > limit {
                truncated = true;
                continue;
            }
            buf.extend_from_slice(&chunk);
        }
        let body = buf.freeze();
        if let Some(tap) = tap {
            let _ = tap.send(body.clone());
        }
        if body.is_empty() {
            return;
        }
        let verdict = tokio::task::spawn_blocking({
            let inspector = state.inspector.clone();
            let policy = target.policy.clone();
            let protocol = target.protocol;
            move || inspector.inspect_body(&policy, direction, protocol, &body, None)
        })
        .await;
        match verdict {
            Ok(Ok(v)) => tracing::info!(
                target: "palisade::decision",
                request_id = %id,
                route = %target.route,
                mode = "monitor",
                direction = ?direction,
                would = v.action.as_str(),
                risk_score = v.risk_score,
                reasons = ?v.reasons,
                truncated,
                "monitored"
            ),
            Ok(Err(e)) => tracing::warn!(request_id = %id, error = %e, "monitor inspection failed"),
            Err(e) => {
                tracing::warn!(request_id = %id, error = %e, "monitor inspection task failed")
            }
        }
    });
}

/// WebSocket: forward the upgrade, then splice the two connections.
async fn websocket(
    state: &Arc<State>,
    target: &Target,
    id: &str,
    mut req: Request<Incoming>,
) -> Result<(Response<Body>, Outcome), GatewayError> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    let url = target
        .url
        .replacen("ws://", "http://", 1)
        .replacen("wss://", "https://", 1);
    let mut headers = end_to_end(&parts.headers, true);
    headers.remove(header::HOST);
    if target.mode == Mode::Enforce {
        // Compressed messages cannot be inspected: do not let compression be negotiated.
        headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
    }
    let mut builder = Request::builder().method(parts.method.clone()).uri(url);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    let up = builder
        .body(empty())
        .map_err(|e| GatewayError::BadTarget(e.to_string()))?;
    let mut resp = send(state, up).await?;
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let (rparts, rbody) = resp.into_parts();
        let mut r = Response::new(http_body_util::BodyExt::boxed(
            rbody.map_err(|e| -> crate::body::BoxError { Box::new(e) }),
        ));
        *r.status_mut() = rparts.status;
        *r.headers_mut() = end_to_end(&rparts.headers, false);
        return Ok((
            with_ids(r, id, "allow"),
            Outcome {
                decision: "allow",
                reasons: vec![],
                status: status.as_u16(),
            },
        ));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let rid = id.to_owned();
    let (state2, target2, mode) = (state.clone(), target.clone(), failure_mode(state, target));
    tokio::spawn(async move {
        match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((c, u)) => crate::ws::splice(state2, target2, rid, c, u, mode).await,
            Err(e) => tracing::warn!(request_id = %rid, error = %e, "websocket upgrade failed"),
        }
    });
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *r.headers_mut() = end_to_end(resp.headers(), true);
    Ok((
        with_ids(r, id, "allow"),
        Outcome {
            decision: "allow",
            reasons: vec![],
            status: 101,
        },
    ))
}
