//! Counts over time for the dashboard's charts, and findings one by one.
//!
//! Both read events through the store's public query (newest first, cursor paged), so they work
//! on whichever backend records. Stats fold at most [`MAX_EVENTS`] events of the window into
//! buckets; when the window holds more, the answer says `truncated: true` and covers the newest
//! ones. That keeps a chart refresh bounded on a busy gateway; Prometheus (`/metrics`) is the
//! place for exact long-range counts.

use std::collections::BTreeMap;

use palisade_store::{Event, Query, Store, StoreError};
use serde_json::{json, Value};

/// Most events folded into one stats answer.
pub const MAX_EVENTS: usize = 20_000;

/// Most buckets in one answer.
const MAX_BUCKETS: i64 = 240;

#[derive(Default)]
struct Bucket {
    requests: u64,
    blocked: u64,
    redacted: u64,
    held: u64,
    errors: u64,
    findings: BTreeMap<String, u64>,
    latencies: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

fn add(b: &mut Bucket, e: &Event) {
    b.requests += 1;
    match e.decision.as_str() {
        "block" | "deny" => b.blocked += 1,
        "redact" => b.redacted += 1,
        "hold" => b.held += 1,
        _ => {}
    }
    if e.decision == "error" || e.status.is_some_and(|s| s >= 500) {
        b.errors += 1;
    }
    for f in &e.findings {
        *b.findings.entry(f.detector.clone()).or_default() += 1;
    }
    if let Some(l) = e.latency_ms {
        b.latencies.push(l);
    }
}

fn summary(b: &mut Bucket) -> Value {
    b.latencies.sort_by(f64::total_cmp);
    json!({
        "requests": b.requests,
        "blocked": b.blocked,
        "redacted": b.redacted,
        "held": b.held,
        "errors": b.errors,
        "error_rate": if b.requests == 0 { 0.0 } else { b.errors as f64 / b.requests as f64 },
        "findings": b.findings,
        "latency_p50_ms": percentile(&b.latencies, 0.50),
        "latency_p95_ms": percentile(&b.latencies, 0.95),
    })
}

/// Stats of the `window_ms` up to `now_ms` in buckets of `bucket_ms`, oldest bucket first.
pub fn stats(
    store: &Store,
    now_ms: i64,
    window_ms: i64,
    bucket_ms: i64,
) -> Result<Value, StoreError> {
    let window_ms = window_ms.clamp(60_000, 30 * 24 * 3_600_000);
    let bucket_ms = bucket_ms.max(window_ms / MAX_BUCKETS).max(1_000);
    let start = now_ms - window_ms;
    // Buckets are aligned to `bucket_ms`, so two refreshes draw the same bars.
    let first = start.div_euclid(bucket_ms) * bucket_ms;
    let count = ((now_ms - first) / bucket_ms + 1).max(1) as usize;
    let mut buckets: Vec<Bucket> = (0..count).map(|_| Bucket::default()).collect();
    let mut total = Bucket::default();
    let mut seen = 0usize;
    let mut cursor = None;
    let mut truncated = false;
    loop {
        let page = store.events(&Query {
            since_ms: Some(start),
            limit: Some(500),
            cursor: cursor.take(),
            ..Query::default()
        })?;
        for e in &page.items {
            let i = (e.time_ms - first).div_euclid(bucket_ms);
            if let Some(b) = usize::try_from(i).ok().and_then(|i| buckets.get_mut(i)) {
                add(b, e);
                add(&mut total, e);
            }
        }
        seen += page.items.len();
        match page.next {
            Some(n) if seen < MAX_EVENTS => cursor = Some(n),
            Some(_) => {
                truncated = true;
                break;
            }
            None => break,
        }
    }
    let series: Vec<Value> = buckets
        .iter_mut()
        .enumerate()
        .map(|(i, b)| {
            let mut v = summary(b);
            if let Value::Object(m) = &mut v {
                m.insert("start_ms".into(), json!(first + i as i64 * bucket_ms));
            }
            v
        })
        .collect();
    Ok(json!({
        "window_ms": window_ms,
        "bucket_ms": bucket_ms,
        "from_ms": first,
        "to_ms": now_ms,
        "truncated": truncated,
        "total": summary(&mut total),
        "buckets": series,
    }))
}

/// Filters for [`findings`]: those of [`Query`] plus the finding's own.
#[derive(Debug, Default)]
pub struct FindingFilter {
    /// Only this severity or above (`low`, `medium`, `high`, `critical`).
    pub min_severity: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only findings the policy acted on this way.
    pub action: Option<String>,
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => 0,
    }
}

/// One page of findings, newest first: each with its event's request id, time, route, agent and
/// decision. The page is one page of events (`q.limit` events), so a page may hold fewer findings
/// than `limit` and still have a `next`.
pub fn findings(store: &Store, q: &Query, f: &FindingFilter) -> Result<Value, StoreError> {
    let page = store.events(q)?;
    let min = f.min_severity.as_deref().map_or(0, severity_rank);
    let mut items = Vec::new();
    for e in &page.items {
        for (index, x) in e.findings.iter().enumerate() {
            if q.detector.as_deref().is_some_and(|d| d != x.detector)
                || f.kind.as_deref().is_some_and(|k| k != x.kind)
                || f.action.as_deref().is_some_and(|a| a != x.action)
                || severity_rank(&x.severity) < min
            {
                continue;
            }
            let mut v = json!(x);
            if let Value::Object(m) = &mut v {
                m.insert("request_id".into(), json!(e.request_id));
                m.insert("index".into(), json!(index));
                m.insert("time_ms".into(), json!(e.time_ms));
                m.insert("route".into(), json!(e.route));
                m.insert("agent_id".into(), json!(e.agent_id));
                m.insert("tool".into(), json!(e.tool));
                m.insert("decision".into(), json!(e.decision));
            }
            items.push(v);
        }
    }
    Ok(json!({"items": items, "next": page.next}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_store::FindingRecord;

    type Res = Result<(), Box<dyn std::error::Error>>;

    fn event(id: &str, t: i64, decision: &str, latency: f64, detectors: &[&str]) -> Event {
        Event {
            request_id: id.into(),
            time_ms: t,
            source: "proxy".into(),
            route: Some("r".into()),
            decision: decision.into(),
            status: Some(if decision == "error" { 502 } else { 200 }),
            latency_ms: Some(latency),
            findings: detectors
                .iter()
                .map(|d| FindingRecord {
                    detector: (*d).into(),
                    kind: "k".into(),
                    severity: if *d == "pii" { "medium" } else { "high" }.into(),
                    action: "redact".into(),
                    location: None,
                    snippet: None,
                })
                .collect(),
            ..Event::default()
        }
    }

    fn store() -> Result<(Store, std::path::PathBuf), StoreError> {
        // Tests run in parallel: a counter keeps two started in the same millisecond apart.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "palisade-console-stats-{}-{}-{}.db",
            std::process::id(),
            palisade_store::now_ms(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let s = Store::open(&path)?;
        Ok((s, path))
    }

    #[test]
    fn stats_fold_events_into_aligned_buckets() -> Res {
        let (s, path) = store()?;
        let now = 10 * 60_000 + 30_000;
        s.write(&[
            event("a", now - 5_000, "allow", 10.0, &[]),
            event("b", now - 4_000, "block", 20.0, &["prompt_injection"]),
            event("c", now - 70_000, "redact", 30.0, &["pii", "pii"]),
            event("d", now - 71_000, "error", 40.0, &[]),
            event("old", now - 3_600_000, "allow", 1.0, &[]),
        ])?;
        let v = stats(&s, now, 600_000, 60_000)?;
        assert_eq!(v["total"]["requests"], 4);
        assert_eq!(v["total"]["blocked"], 1);
        assert_eq!(v["total"]["redacted"], 1);
        assert_eq!(v["total"]["errors"], 1);
        assert_eq!(v["total"]["findings"]["pii"], 2);
        assert_eq!(v["total"]["latency_p50_ms"], 20.0);
        assert_eq!(v["total"]["latency_p95_ms"], 40.0);
        let b = v["buckets"].as_array().ok_or("no buckets")?;
        let last = b.last().ok_or("no bucket")?;
        assert_eq!(last["requests"], 2);
        assert_eq!(last["start_ms"].as_i64().unwrap_or(1) % 60_000, 0);
        assert_eq!(b[b.len() - 2]["requests"], 2);
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    #[test]
    fn findings_filter_and_page() -> Res {
        let (s, path) = store()?;
        let now = palisade_store::now_ms();
        s.write(&[
            event("a", now - 3, "block", 1.0, &["prompt_injection"]),
            event("b", now - 2, "redact", 1.0, &["pii"]),
            event("c", now - 1, "redact", 1.0, &["pii", "prompt_injection"]),
        ])?;
        let high = FindingFilter {
            min_severity: Some("high".into()),
            ..FindingFilter::default()
        };
        let v = findings(&s, &Query::default(), &high)?;
        let ids: Vec<&str> = v["items"]
            .as_array()
            .ok_or("no items")?
            .iter()
            .map(|f| f["request_id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(ids, ["c", "a"]);
        let q = Query {
            limit: Some(1),
            ..Query::default()
        };
        let first = findings(&s, &q, &FindingFilter::default())?;
        assert_eq!(first["items"].as_array().map_or(0, Vec::len), 2);
        let next = first["next"].as_str().ok_or("no next")?.to_owned();
        let second = findings(
            &s,
            &Query {
                limit: Some(1),
                cursor: Some(next),
                ..Query::default()
            },
            &FindingFilter::default(),
        )?;
        assert_eq!(second["items"][0]["request_id"], "b");
        let _ = std::fs::remove_file(path);
        Ok(())
    }
}
