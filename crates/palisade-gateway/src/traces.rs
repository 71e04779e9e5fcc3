//! OpenTelemetry traces over OTLP/HTTP (JSON), without an SDK.
//!
//! ```text
//! handle ─► begin (traceparent in? join its trace : new trace, sampled by ratio)
//!        ─► upstream_request: a client span, its traceparent sent upstream
//!        ─► send: the client span ends at the upstream's response head
//!        ◄─ end: the server span ends at our response head; both spans queued
//! exporter thread: batches of ≤ 512 spans or every second ─► POST {endpoint} (retried twice)
//! ```
//!
//! Why no SDK: Palisade needs two span kinds, W3C context propagation and a batching exporter,
//! which is a few hundred lines here against a large dependency tree (gRPC, protobuf) there.
//! The wire format is OTLP/HTTP with the JSON encoding the specification defines (ids in hex,
//! enums as numbers), which every OpenTelemetry collector accepts.
//!
//! What a trace does not cover: a streamed body. The server span ends when the response head
//! leaves, so it measures Palisade's decision and the upstream's time to first byte, not how
//! long the stream ran (the decision log and the records have that).
//!
//! Nothing on the request path waits for the exporter: spans go through a bounded queue, and a
//! full queue or a failed export drops spans and counts them
//! (`palisade_trace_spans_total{outcome}`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request};
use palisade_policy::config::Config;
use serde_json::{json, Value};

use crate::body::full;

/// Spans per export call.
const BATCH: usize = 512;
/// Longest a span waits for its batch.
const FLUSH: Duration = Duration::from_secs(1);
/// Export attempts per batch.
const ATTEMPTS: u32 = 3;

const KIND_SERVER: u8 = 2;
const KIND_CLIENT: u8 = 3;

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

#[derive(Debug)]
struct Exporter {
    tx: tokio::sync::mpsc::Sender<SpanData>,
    ratio: f64,
}

/// Starts the exporter thread when `config.traces.otlp_endpoint` is set. Called once per
/// process; later calls (another server in the same process, tests) keep the first exporter.
pub fn install(config: &Config) -> Result<(), String> {
    let t = &config.traces;
    let Some(endpoint) = t.otlp_endpoint.clone() else {
        return Ok(());
    };
    if EXPORTER.get().is_some() {
        return Ok(());
    }
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("traces.otlp_endpoint `{endpoint}`: {e}"))?;
    let mut headers = HeaderMap::new();
    for (name, var) in &t.headers_env {
        let value = std::env::var(var)
            .map_err(|_| format!("traces.headers_env.{name}: `{var}` is not set"))?;
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            return Err(format!(
                "traces.headers_env.{name}: not a valid header name or value"
            ));
        };
        headers.insert(n, v);
    }
    let client = crate::upstream::client(config).map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::mpsc::channel(t.queue_spans.max(1));
    let resource = json!({ "attributes": [
        attr("service.name", json!({ "stringValue": t.service_name })),
        attr("service.version", json!({ "stringValue": env!("CARGO_PKG_VERSION") })),
    ]});
    let timeout = Duration::from_millis(t.timeout_ms.max(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the trace exporter: {e}"))?;
    std::thread::Builder::new()
        .name("palisade-traces".into())
        .spawn(move || {
            rt.block_on(export_loop(rx, client, uri, headers, resource, timeout));
        })
        .map_err(|e| format!("cannot start the trace exporter: {e}"))?;
    let _ = EXPORTER.set(Exporter {
        tx,
        ratio: t.sample_ratio,
    });
    Ok(())
}

fn attr(key: &str, value: Value) -> Value {
    json!({ "key": key, "value": value })
}

/// One finished span.
#[derive(Debug, Clone)]
struct SpanData {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    kind: u8,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(&'static str, Value)>,
    error: Option<String>,
}

impl SpanData {
    fn to_json(&self) -> Value {
        let mut span = json!({
            "traceId": hex(&self.trace_id),
            "spanId": hex(&self.span_id),
            "name": self.name,
            "kind": self.kind,
            "startTimeUnixNano": self.start_ns.to_string(),
            "endTimeUnixNano": self.end_ns.max(self.start_ns).to_string(),
            "attributes": self.attributes.iter().map(|(k, v)| attr(k, v.clone())).collect::<Vec<_>>(),
        });
        if let (Some(p), Value::Object(o)) = (self.parent, &mut span) {
            o.insert("parentSpanId".into(), Value::String(hex(&p)));
        }
        if let (Some(message), Value::Object(o)) = (&self.error, &mut span) {
            o.insert("status".into(), json!({ "code": 2, "message": message }));
        }
        span
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in b.chunks(2).enumerate() {
        let hi = (*pair.first()? as char).to_digit(16)?;
        let lo = (*pair.get(1)? as char).to_digit(16)?;
        *out.get_mut(i)? = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A random 64-bit value: SipHash, keyed once per process, over a counter and the clock.
fn random_u64() -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = KEY.get_or_init(RandomState::new).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u64(now_ns());
    h.finish()
}

fn new_span_id() -> [u8; 8] {
    loop {
        let id = random_u64().to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

/// A W3C `traceparent`: `00-<trace id>-<parent span id>-<flags>`.
fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut it = v.trim().split('-');
    let version = it.next()?;
    if version.len() != 2 || version == "ff" {
        return None;
    }
    let trace: [u8; 16] = unhex(it.next()?)?;
    let parent: [u8; 8] = unhex(it.next()?)?;
    let flags: [u8; 1] = unhex(it.next()?)?;
    // Version 00 has exactly four fields; later versions may add more.
    if version == "00" && it.next().is_some() {
        return None;
    }
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace, parent, flags[0] & 1 == 1))
}

/// The trace of one request, shared through the request's extensions. `None` from [`begin`]
/// when traces are off or this request is not sampled: the request path then does nothing.
#[derive(Debug, Clone)]
pub(crate) struct Trace(Arc<TraceInner>);

#[derive(Debug)]
struct TraceInner {
    trace_id: [u8; 16],
    server: Mutex<SpanData>,
    /// Finished client spans, sent with the server span.
    children: Mutex<Vec<SpanData>>,
}

/// Starts the server span of a request, joining the caller's trace when it sent one.
pub(crate) fn begin(headers: &HeaderMap, method: &str, path: &str) -> Option<Trace> {
    let exporter = EXPORTER.get()?;
    let incoming = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent);
    let (trace_id, parent, sampled) = match incoming {
        Some((t, p, sampled)) => (t, Some(p), sampled),
        None => {
            let mut t = [0u8; 16];
            t[..8].copy_from_slice(&random_u64().to_be_bytes());
            t[8..].copy_from_slice(&random_u64().to_be_bytes());
            // Ratio sampling on the trace id's low bits, so every replica agrees.
            let low = u64::from_be_bytes([t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15]]);
            let share = (low >> 11) as f64 / (1u64 << 53) as f64;
            let sampled = share < exporter.ratio;
            (t, None, sampled)
        }
    };
    if !sampled {
        return None;
    }
    Some(Trace(Arc::new(TraceInner {
        trace_id,
        server: Mutex::new(SpanData {
            trace_id,
            span_id: new_span_id(),
            parent,
            name: format!("palisade {method}"),
            kind: KIND_SERVER,
            start_ns: now_ns(),
            end_ns: 0,
            attributes: vec![
                ("http.request.method", json!({ "stringValue": method })),
                ("url.path", json!({ "stringValue": path })),
            ],
            error: None,
        }),
        children: Mutex::new(Vec::new()),
    })))
}

impl Trace {
    /// Adds a string attribute to the server span.
    pub(crate) fn set(&self, key: &'static str, value: &str) {
        if let Ok(mut s) = self.0.server.lock() {
            s.attributes.push((key, json!({ "stringValue": value })));
        }
    }

    /// Names the server span after the route, as OpenTelemetry's HTTP conventions ask.
    pub(crate) fn route(&self, route: &str) {
        if let Ok(mut s) = self.0.server.lock() {
            s.name = format!("{} {route}", s.name);
            s.attributes
                .push(("http.route", json!({ "stringValue": route })));
        }
    }

    /// Starts a client span for a call to the upstream and returns the `traceparent` to send.
    pub(crate) fn upstream(&self, method: &str, url: &str) -> (UpstreamSpan, HeaderValue) {
        let parent = self.0.server.lock().map(|s| s.span_id).unwrap_or([0; 8]);
        let span = SpanData {
            trace_id: self.0.trace_id,
            span_id: new_span_id(),
            parent: Some(parent),
            name: format!("upstream {method}"),
            kind: KIND_CLIENT,
            start_ns: now_ns(),
            end_ns: 0,
            attributes: vec![
                ("http.request.method", json!({ "stringValue": method })),
                ("url.full", json!({ "stringValue": url })),
            ],
            error: None,
        };
        let header = format!("00-{}-{}-01", hex(&self.0.trace_id), hex(&span.span_id));
        let value = HeaderValue::from_str(&header).unwrap_or(HeaderValue::from_static(""));
        (
            UpstreamSpan {
                trace: self.clone(),
                span: Arc::new(Mutex::new(Some(span))),
            },
            value,
        )
    }

    /// Ends the server span with the answer's status and Palisade's decision, and queues the
    /// trace's spans for export.
    pub(crate) fn end(&self, status: u16, decision: Option<&str>) {
        let Some(exporter) = EXPORTER.get() else {
            return;
        };
        let mut spans = self
            .0
            .children
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        if let Ok(mut s) = self.0.server.lock() {
            s.end_ns = now_ns();
            s.attributes.push((
                "http.response.status_code",
                json!({ "intValue": status.to_string() }),
            ));
            if let Some(d) = decision {
                s.attributes
                    .push(("palisade.decision", json!({ "stringValue": d })));
            }
            if status >= 500 {
                s.error = Some(format!("status {status}"));
            }
            spans.push(s.clone());
        }
        for span in spans {
            let outcome = match exporter.tx.try_send(span) {
                Ok(()) => continue,
                Err(_) => "dropped",
            };
            palisade_engine::metrics::trace_spans(outcome, 1);
        }
    }
}

/// A client span in flight, carried in the upstream request's extensions until its response
/// head arrives.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamSpan {
    trace: Trace,
    span: Arc<Mutex<Option<SpanData>>>,
}

impl UpstreamSpan {
    /// Ends the client span: the upstream answered `status`, or failed with `error`.
    pub(crate) fn end(&self, status: Option<u16>, error: Option<&str>) {
        let Some(mut span) = self.span.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        span.end_ns = now_ns();
        if let Some(s) = status {
            span.attributes.push((
                "http.response.status_code",
                json!({ "intValue": s.to_string() }),
            ));
            if s >= 500 {
                span.error = Some(format!("status {s}"));
            }
        }
        if let Some(e) = error {
            span.error = Some(e.to_owned());
        }
        if let Ok(mut c) = self.trace.0.children.lock() {
            c.push(span);
        }
    }
}

async fn export_loop(
    mut rx: tokio::sync::mpsc::Receiver<SpanData>,
    client: crate::upstream::UpstreamClient,
    uri: http::Uri,
    headers: HeaderMap,
    resource: Value,
    timeout: Duration,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
    loop {
        // Wait for a first span, then give the batch up to FLUSH to fill.
        match rx.recv().await {
            Some(s) => batch.push(s),
            None => return,
        }
        let deadline = tokio::time::Instant::now() + FLUSH;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let body = json!({ "resourceSpans": [{
            "resource": resource,
            "scopeSpans": [{
                "scope": { "name": "palisade", "version": env!("CARGO_PKG_VERSION") },
                "spans": batch.iter().map(SpanData::to_json).collect::<Vec<_>>(),
            }],
        }]})
        .to_string();
        let body = Bytes::from(body);
        let mut outcome = "failed";
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let mut req = Request::post(uri.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(full(body.clone()));
            let Ok(r) = req.as_mut() else { break };
            for (k, v) in &headers {
                r.headers_mut().insert(k.clone(), v.clone());
            }
            let Ok(req) = req else { break };
            match tokio::time::timeout(timeout, client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    outcome = "exported";
                    break;
                }
                // A 4xx will not get better: the collector refused the data.
                Ok(Ok(resp)) if resp.status().is_client_error() => {
                    tracing::warn!(
                        status = resp.status().as_u16(),
                        "traces: the collector refused a batch"
                    );
                    break;
                }
                Ok(Ok(resp)) => {
                    tracing::debug!(
                        status = resp.status().as_u16(),
                        attempt,
                        "traces: export failed"
                    )
                }
                Ok(Err(e)) => tracing::debug!(error = %e, attempt, "traces: export failed"),
                Err(_) => tracing::debug!(attempt, "traces: export timed out"),
            }
        }
        if outcome == "failed" {
            tracing::warn!(
                spans = batch.len(),
                "traces: a batch could not be exported; dropped"
            );
        }
        palisade_engine::metrics::trace_spans(outcome, batch.len() as u64);
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_as_the_w3c_recommendation_says() {
        let (t, p, s) =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                .unwrap_or_else(|| panic!("valid"));
        assert_eq!(hex(&t), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex(&p), "b7ad6b7169203331");
        assert!(s);
        let not_sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        assert_eq!(parse_traceparent(not_sampled).map(|x| x.2), Some(false));
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        // A later version may carry more fields.
        assert!(
            parse_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-more")
                .is_some()
        );
    }

    #[test]
    fn span_ids_are_not_repeated() {
        let ids: std::collections::HashSet<[u8; 8]> = (0..10_000).map(|_| new_span_id()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
