//! Process-wide counters and latency histograms, rendered in the Prometheus text format.
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `palisade_requests_total` | `route`, `protocol`, `decision` | exchanges through the proxy and guard calls (`route` is `guard:<collector>` and `protocol` `guard` for those) |
//! | `palisade_request_duration_seconds` | `route` | histogram of the time Palisade took, upstream included |
//! | `palisade_findings_total` | `detector`, `kind`, `action` | findings the policy covered, by what it did about them |
//! | `palisade_upstream_errors_total` | `route`, `code` | upstreams unreachable, timed out, broken or answering too much |
//! | `palisade_rate_limited_total` | `policy`, `limit` | requests refused by a rate limit |
//! | `palisade_stream_events_total` | `outcome` | streamed responses that ended `blocked`, `redacted` or `client_gone` |
//! | `palisade_trace_spans_total` | `outcome` | trace spans `exported`, `failed` or `dropped` |
//! | `palisade_alerts_triggered_total` | `rule` | signals an alert rule matched, before de-duplication |
//! | `palisade_alerts_sent_total` | `sink` | alert deliveries a webhook accepted (2xx) |
//! | `palisade_alerts_failed_total` | `sink` | delivery attempts that failed (no answer, or not 2xx); each is retried |
//! | `palisade_alerts_retried_total` | `sink` | delivery attempts that were retries |
//! | `palisade_alerts_throttled_total` | `sink` | alerts held back by throttling, to be summarised |
//! | `palisade_alerts_dropped_total` | `reason` | alerts or signals lost: `queue_full`, `outbox_full`, `outbox_error`, `sink_removed`, `stopped` |
//! | `palisade_alerts_outbox_depth` | | deliveries waiting in the outbox (gauge) |
//! | `palisade_kafka_published_total` | `topic` | messages the brokers acknowledged |
//! | `palisade_kafka_failed_total` | `topic` | messages in produce attempts that failed; each is retried |
//! | `palisade_kafka_retried_total` | `topic` | messages sent again after a failed attempt |
//! | `palisade_kafka_dropped_total` | `reason` | messages lost: `buffer_full`, `too_large`, `rejected`, `shutdown` |
//! | `palisade_kafka_buffered_events` | | events waiting to be published (gauge) |
//!
//! Label sets are small and fixed by the configuration (routes, collectors, detectors), so each
//! series is a handful of atomics found through one short lock per request; scraping copies them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (b, le) in self.buckets.iter().zip(BUCKETS) {
            if s <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Counters by label values.
type Counters<K> = Mutex<BTreeMap<K, Arc<AtomicU64>>>;

#[derive(Debug, Default)]
struct Registry {
    requests: Counters<(String, &'static str, &'static str)>,
    durations: Mutex<BTreeMap<String, Arc<Histogram>>>,
    findings: Counters<(String, String, &'static str)>,
    upstream_errors: Mutex<BTreeMap<(String, &'static str), Arc<AtomicU64>>>,
    rate_limited: Mutex<BTreeMap<(String, String), Arc<AtomicU64>>>,
    stream_events: Mutex<BTreeMap<&'static str, Arc<AtomicU64>>>,
    trace_spans: Mutex<BTreeMap<&'static str, Arc<AtomicU64>>>,
    alerts: Mutex<BTreeMap<(AlertCount, String), Arc<AtomicU64>>>,
    alert_outbox_depth: AtomicU64,
    /// Whether a shared state store is configured (its gauge is shown only then).
    state_shared: std::sync::atomic::AtomicBool,
    state_up: std::sync::atomic::AtomicBool,
    state_fallbacks: AtomicU64,
    kafka: Mutex<BTreeMap<(KafkaCount, String), Arc<AtomicU64>>>,
    kafka_buffered: AtomicU64,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

fn counter<K: Ord + Clone>(
    map: &Mutex<BTreeMap<K, Arc<AtomicU64>>>,
    key: K,
) -> Option<Arc<AtomicU64>> {
    let mut m = map.lock().ok()?;
    Some(m.entry(key).or_default().clone())
}

/// Counts one exchange on `route` of `protocol` that ended with `decision`, and how long it
/// took.
pub fn request(route: &str, protocol: &'static str, decision: &'static str, took: Duration) {
    let r = &*REGISTRY;
    if let Some(c) = counter(&r.requests, (route.to_owned(), protocol, decision)) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    let h = r
        .durations
        .lock()
        .ok()
        .map(|mut m| m.entry(route.to_owned()).or_default().clone());
    if let Some(h) = h {
        h.observe(took);
    }
}

/// Counts one finding of `detector` and `kind` that the policy answered with `action`.
pub fn finding(detector: &str, kind: &str, action: &'static str) {
    if let Some(c) = counter(
        &REGISTRY.findings,
        (detector.to_owned(), kind.to_owned(), action),
    ) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts an upstream failure on `route`, by its error code (`upstream_unreachable`, …).
pub fn upstream_error(route: &str, code: &'static str) {
    if let Some(c) = counter(&REGISTRY.upstream_errors, (route.to_owned(), code)) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a request refused by rate limit `limit` of `policy`.
pub fn rate_limited(policy: &str, limit: &str) {
    if let Some(c) = counter(
        &REGISTRY.rate_limited,
        (policy.to_owned(), limit.to_owned()),
    ) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a streamed response that ended with `outcome`.
pub fn stream_event(outcome: &'static str) {
    if let Some(c) = counter(&REGISTRY.stream_events, outcome) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts `n` trace spans that were `exported`, `failed` (the collector did not take them) or
/// `dropped` (the export queue was full).
pub fn trace_spans(outcome: &'static str, n: u64) {
    if let Some(c) = counter(&REGISTRY.trace_spans, outcome) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// What happened to an alert, for `palisade_alerts_<what>_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertCount {
    /// A rule matched a signal (label: the rule).
    Triggered,
    /// A webhook accepted a delivery (label: the sink).
    Sent,
    /// A delivery attempt failed (label: the sink).
    Failed,
    /// A delivery attempt was a retry (label: the sink).
    Retried,
    /// An alert was held back by throttling (label: the sink).
    Throttled,
    /// An alert or signal was lost (label: the reason).
    Dropped,
}

impl AlertCount {
    const ALL: [AlertCount; 6] = [
        AlertCount::Triggered,
        AlertCount::Sent,
        AlertCount::Failed,
        AlertCount::Retried,
        AlertCount::Throttled,
        AlertCount::Dropped,
    ];

    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            AlertCount::Triggered => (
                "triggered",
                "rule",
                "Signals an alert rule matched, before de-duplication.",
            ),
            AlertCount::Sent => ("sent", "sink", "Alert deliveries a webhook accepted."),
            AlertCount::Failed => (
                "failed",
                "sink",
                "Alert delivery attempts that failed; each is retried.",
            ),
            AlertCount::Retried => (
                "retried",
                "sink",
                "Alert delivery attempts that were retries.",
            ),
            AlertCount::Throttled => (
                "throttled",
                "sink",
                "Alerts held back by throttling and summarised.",
            ),
            AlertCount::Dropped => (
                "dropped",
                "reason",
                "Alerts or alert signals lost, by reason.",
            ),
        }
    }
}

/// Counts `n` alerts that went `what` way; `label` is the rule, sink or reason.
pub fn alert(what: AlertCount, label: &str, n: u64) {
    if let Some(c) = counter(&REGISTRY.alerts, (what, label.to_owned())) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Records whether the shared state store (Redis) answers.
pub fn state_reachable(up: bool) {
    REGISTRY.state_shared.store(true, Ordering::Relaxed);
    REGISTRY.state_up.store(up, Ordering::Relaxed);
}

/// Counts one state operation a `fail_open` route did on local state because the shared store
/// was unavailable.
pub fn state_fallback() {
    REGISTRY.state_fallbacks.fetch_add(1, Ordering::Relaxed);
}

/// Sets the number of deliveries waiting in the alert outbox.
pub fn alert_outbox_depth(depth: u64) {
    REGISTRY.alert_outbox_depth.store(depth, Ordering::Relaxed);
}

/// What happened to a Kafka message, for `palisade_kafka_<what>_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KafkaCount {
    /// The brokers acknowledged it (label: the topic).
    Published,
    /// A produce attempt carrying it failed; it will be retried (label: the topic).
    Failed,
    /// It was sent again after a failed attempt (label: the topic).
    Retried,
    /// It was lost (label: the reason).
    Dropped,
}

impl KafkaCount {
    const ALL: [KafkaCount; 4] = [
        KafkaCount::Published,
        KafkaCount::Failed,
        KafkaCount::Retried,
        KafkaCount::Dropped,
    ];

    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            KafkaCount::Published => (
                "published",
                "topic",
                "Messages the Kafka brokers acknowledged.",
            ),
            KafkaCount::Failed => (
                "failed",
                "topic",
                "Messages in Kafka produce attempts that failed; each is retried.",
            ),
            KafkaCount::Retried => (
                "retried",
                "topic",
                "Messages sent to Kafka again after a failed attempt.",
            ),
            KafkaCount::Dropped => (
                "dropped",
                "reason",
                "Messages meant for Kafka that were lost, by reason.",
            ),
        }
    }
}

/// Counts `n` Kafka messages that went `what` way; `label` is the topic or the reason.
pub fn kafka(what: KafkaCount, label: &str, n: u64) {
    if n == 0 {
        return;
    }
    if let Some(c) = counter(&REGISTRY.kafka, (what, label.to_owned())) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Sets the number of events waiting to be published to Kafka.
pub fn kafka_buffered(events: u64) {
    REGISTRY.kafka_buffered.store(events, Ordering::Relaxed);
}

/// Writes one family of labelled counters kept under `(kind, label)` keys.
fn labelled<K: Ord + Copy>(
    out: &mut String,
    map: &Mutex<BTreeMap<(K, String), Arc<AtomicU64>>>,
    kinds: &[K],
    prefix: &str,
    parts: impl Fn(K) -> (&'static str, &'static str, &'static str),
) {
    let Ok(m) = map.lock() else {
        return;
    };
    for &what in kinds {
        let (name, label, help) = parts(what);
        let _ = writeln!(out, "# HELP {prefix}_{name}_total {help}");
        let _ = writeln!(out, "# TYPE {prefix}_{name}_total counter");
        for ((_, value), c) in m
            .range((what, String::new())..)
            .take_while(|((w, _), _)| *w == what)
        {
            let _ = writeln!(
                out,
                "{prefix}_{name}_total{{{label}=\"{}\"}} {}",
                escape(value),
                c.load(Ordering::Relaxed)
            );
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every metric, in the Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    let r = &*REGISTRY;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP palisade_requests_total Exchanges through the proxy and guard calls, by route and decision."
    );
    let _ = writeln!(out, "# TYPE palisade_requests_total counter");
    if let Ok(m) = r.requests.lock() {
        for ((route, protocol, decision), c) in m.iter() {
            let _ = writeln!(
                out,
                "palisade_requests_total{{route=\"{}\",protocol=\"{protocol}\",decision=\"{decision}\"}} {}",
                escape(route),
                c.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP palisade_request_duration_seconds Time Palisade took per exchange, upstream included."
    );
    let _ = writeln!(out, "# TYPE palisade_request_duration_seconds histogram");
    if let Ok(m) = r.durations.lock() {
        for (route, h) in m.iter() {
            let route = escape(route);
            for (b, le) in h.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "palisade_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {}",
                    b.load(Ordering::Relaxed)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "palisade_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "palisade_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum_us.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "palisade_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP palisade_findings_total Findings the policy covered, by detector, kind and action."
    );
    let _ = writeln!(out, "# TYPE palisade_findings_total counter");
    if let Ok(m) = r.findings.lock() {
        for ((detector, kind, action), c) in m.iter() {
            let _ = writeln!(
                out,
                "palisade_findings_total{{detector=\"{}\",kind=\"{}\",action=\"{action}\"}} {}",
                escape(detector),
                escape(kind),
                c.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP palisade_upstream_errors_total Upstream failures, by route and error code."
    );
    let _ = writeln!(out, "# TYPE palisade_upstream_errors_total counter");
    if let Ok(m) = r.upstream_errors.lock() {
        for ((route, code), c) in m.iter() {
            let _ = writeln!(
                out,
                "palisade_upstream_errors_total{{route=\"{}\",code=\"{code}\"}} {}",
                escape(route),
                c.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP palisade_rate_limited_total Requests refused by a rate limit, by policy and limit."
    );
    let _ = writeln!(out, "# TYPE palisade_rate_limited_total counter");
    if let Ok(m) = r.rate_limited.lock() {
        for ((policy, limit), c) in m.iter() {
            let _ = writeln!(
                out,
                "palisade_rate_limited_total{{policy=\"{}\",limit=\"{}\"}} {}",
                escape(policy),
                escape(limit),
                c.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP palisade_stream_events_total Streamed responses that ended early or were changed."
    );
    let _ = writeln!(out, "# TYPE palisade_stream_events_total counter");
    if let Ok(m) = r.stream_events.lock() {
        for (outcome, c) in m.iter() {
            let _ = writeln!(
                out,
                "palisade_stream_events_total{{outcome=\"{outcome}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP palisade_trace_spans_total Trace spans, by what became of them."
    );
    let _ = writeln!(out, "# TYPE palisade_trace_spans_total counter");
    if let Ok(m) = r.trace_spans.lock() {
        for (outcome, c) in m.iter() {
            let _ = writeln!(
                out,
                "palisade_trace_spans_total{{outcome=\"{outcome}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
    }
    labelled(
        &mut out,
        &r.alerts,
        &AlertCount::ALL,
        "palisade_alerts",
        AlertCount::parts,
    );
    let _ = writeln!(
        out,
        "# HELP palisade_alerts_outbox_depth Alert deliveries waiting in the outbox."
    );
    let _ = writeln!(out, "# TYPE palisade_alerts_outbox_depth gauge");
    let _ = writeln!(
        out,
        "palisade_alerts_outbox_depth {}",
        r.alert_outbox_depth.load(Ordering::Relaxed)
    );
    if r.state_shared.load(Ordering::Relaxed) {
        let _ = writeln!(
            out,
            "# HELP palisade_state_up Whether the shared state store (Redis) answers."
        );
        let _ = writeln!(out, "# TYPE palisade_state_up gauge");
        let _ = writeln!(
            out,
            "palisade_state_up {}",
            u8::from(r.state_up.load(Ordering::Relaxed))
        );
        let _ = writeln!(
            out,
            "# HELP palisade_state_fallback_total State operations fail_open routes did on local state while the shared store was unavailable."
        );
        let _ = writeln!(out, "# TYPE palisade_state_fallback_total counter");
        let _ = writeln!(
            out,
            "palisade_state_fallback_total {}",
            r.state_fallbacks.load(Ordering::Relaxed)
        );
    }
    labelled(
        &mut out,
        &r.kafka,
        &KafkaCount::ALL,
        "palisade_kafka",
        KafkaCount::parts,
    );
    let _ = writeln!(
        out,
        "# HELP palisade_kafka_buffered_events Events waiting to be published to Kafka."
    );
    let _ = writeln!(out, "# TYPE palisade_kafka_buffered_events gauge");
    let _ = writeln!(
        out,
        "palisade_kafka_buffered_events {}",
        r.kafka_buffered.load(Ordering::Relaxed)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_render() {
        request("metrics-test", "mcp", "block", Duration::from_micros(300));
        request("metrics-test", "mcp", "block", Duration::from_millis(3));
        finding("pii", "us_ssn", "redact");
        upstream_error("metrics-test", "upstream_timeout");
        rate_limited("default", "client_ip+tool");
        let text = render();
        assert!(text.contains(
            "palisade_requests_total{route=\"metrics-test\",protocol=\"mcp\",decision=\"block\"} 2"
        ));
        assert!(text.contains(
            "palisade_request_duration_seconds_bucket{route=\"metrics-test\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "palisade_request_duration_seconds_bucket{route=\"metrics-test\",le=\"0.005\"} 2"
        ));
        assert!(text.contains("palisade_request_duration_seconds_count{route=\"metrics-test\"} 2"));
        assert!(text.contains(
            "palisade_findings_total{detector=\"pii\",kind=\"us_ssn\",action=\"redact\"}"
        ));
        assert!(text.contains(
            "palisade_upstream_errors_total{route=\"metrics-test\",code=\"upstream_timeout\"} 1"
        ));
        assert!(text.contains(
            "palisade_rate_limited_total{policy=\"default\",limit=\"client_ip+tool\"} 1"
        ));
    }

    #[test]
    fn alert_counters_render_by_kind_and_label() {
        alert(AlertCount::Sent, "metrics-test-sink", 2);
        alert(AlertCount::Dropped, "queue_full", 1);
        alert_outbox_depth(7);
        let text = render();
        assert!(text.contains("palisade_alerts_sent_total{sink=\"metrics-test-sink\"} 2"));
        assert!(text.contains("palisade_alerts_dropped_total{reason=\"queue_full\"}"));
        assert!(text.contains("# TYPE palisade_alerts_retried_total counter"));
        assert!(text.contains("palisade_alerts_outbox_depth 7"));
        assert!(!text.contains("palisade_alerts_failed_total{sink=\"metrics-test-sink\"}"));
    }

    #[test]
    fn kafka_counters_render_by_kind_and_label() {
        kafka(KafkaCount::Published, "metrics-test-topic", 3);
        kafka(KafkaCount::Dropped, "buffer_full", 2);
        kafka(KafkaCount::Failed, "metrics-test-topic", 0);
        kafka_buffered(5);
        let text = render();
        assert!(text.contains("palisade_kafka_published_total{topic=\"metrics-test-topic\"} 3"));
        assert!(text.contains("palisade_kafka_dropped_total{reason=\"buffer_full\"}"));
        assert!(text.contains("# TYPE palisade_kafka_retried_total counter"));
        assert!(!text.contains("palisade_kafka_failed_total{topic=\"metrics-test-topic\"}"));
        assert!(text.contains("palisade_kafka_buffered_events 5"));
    }
}
