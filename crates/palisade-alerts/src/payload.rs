//! What a sink receives: Palisade's JSON, or a Slack incoming-webhook message.
//!
//! The JSON payload is the [`Alert`] as it is, plus `source` and a one-paragraph `text`. The
//! Slack payload is `text` (the notification and fallback line) and Block Kit `blocks`: a header,
//! the facts as section fields, the throttled alerts for a summary, and a context line with the
//! alert's id. Slack's limits are kept (header 150 characters, 10 fields, 2000 characters a
//! field, 3000 a section), and every fact is escaped for `mrkdwn`, so a tool name or path chosen
//! by an attacker cannot mention `@channel` or hide a link.

use serde_json::{json, Value};

use crate::Alert;

/// Throttled alerts listed by name in a summary.
pub const SUMMARY_ITEMS: usize = 50;

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

/// One paragraph saying what the alert is.
pub fn text(a: &Alert) -> String {
    let mut t = format!("[{}] {}", a.severity.as_str().to_uppercase(), a.title);
    if let Some(s) = &a.summary {
        t.push_str(&format!(
            " ({} alerts standing for {} events, held back in {} s)",
            s.alerts, s.triggers, s.period_seconds
        ));
    } else if a.count > 1 || a.repeat {
        let again = if a.repeat { " more" } else { "" };
        t.push_str(&format!(
            " ×{}{again} between {} and {}",
            a.count,
            iso8601(a.first_seen_ms),
            iso8601(a.last_seen_ms)
        ));
    } else {
        t.push_str(&format!(" at {}", iso8601(a.first_seen_ms)));
    }
    t
}

/// Palisade's JSON payload.
pub fn json_payload(a: &Alert) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("source".into(), json!("palisade"));
        m.insert("text".into(), json!(text(a)));
    }
    v
}

/// Escapes `&`, `<` and `>` for Slack's `mrkdwn`, which would otherwise read `<!channel>` and
/// `<url|label>` in a fact.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A Slack incoming-webhook message.
pub fn slack_payload(a: &Alert) -> Value {
    let icon = match a.severity {
        palisade_detect::Severity::Critical => "🔴",
        palisade_detect::Severity::High => "🟠",
        palisade_detect::Severity::Medium => "🟡",
        palisade_detect::Severity::Low => "🔵",
    };
    let mut fields = vec![
        ("Rule", a.rule.clone()),
        ("Severity", a.severity.as_str().to_owned()),
        ("Count", a.count.to_string()),
    ];
    for (k, v) in &a.facts {
        if fields.len() >= 10 {
            break;
        }
        fields.push((k.as_str(), v.clone()));
    }
    let fields: Vec<Value> = fields
        .into_iter()
        .map(|(k, v)| {
            json!({
                "type": "mrkdwn",
                "text": clip_chars(&format!("*{}*\n{}", slack_escape(k), slack_escape(&v)), 2_000),
            })
        })
        .collect();
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": { "type": "plain_text", "text": clip_chars(&format!("{icon} {}", a.title), 150), "emoji": true },
        }),
        json!({ "type": "section", "fields": fields }),
    ];
    if let Some(s) = &a.summary {
        let mut lines: Vec<String> = s
            .items
            .iter()
            .map(|i| format!("• {} ×{}", slack_escape(&i.title), i.count))
            .collect();
        if s.omitted > 0 {
            lines.push(format!("… and {} more", s.omitted));
        }
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": clip_chars(&lines.join("\n"), 3_000) },
        }));
    }
    let when = if a.first_seen_ms == a.last_seen_ms {
        iso8601(a.first_seen_ms)
    } else {
        format!("{} – {}", iso8601(a.first_seen_ms), iso8601(a.last_seen_ms))
    };
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": clip_chars(&format!("Palisade alert `{}` · {} · {when}", slack_escape(&a.id), slack_escape(&a.trigger)), 2_000) }],
    }));
    json!({ "text": clip_chars(&slack_escape(&text(a)), 3_000), "blocks": blocks })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use palisade_detect::Severity;

    use super::*;
    use crate::{Summary, SummaryItem};

    fn alert() -> Alert {
        Alert {
            id: "alr_1".into(),
            rule: "secrets".into(),
            trigger: "finding".into(),
            severity: Severity::Critical,
            title: "secrets/aws_access_key (critical) on openai".into(),
            count: 3,
            repeat: false,
            first_seen_ms: 1_763_000_000_000,
            last_seen_ms: 1_763_000_005_000,
            dedupe_key: "secrets|openai|secrets|aws_access_key".into(),
            window_end_ms: 1_763_000_300_000,
            facts: BTreeMap::from([
                ("route".to_owned(), "openai".to_owned()),
                (
                    "tool".to_owned(),
                    "<!channel> <https://evil.example|click> & co".to_owned(),
                ),
            ]),
            summary: None,
            created_ms: 1_763_000_010_000,
        }
    }

    #[test]
    fn iso8601_matches_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_763_000_000_000), "2025-11-13T02:13:20Z");
        assert_eq!(iso8601(4_102_444_799_000), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn json_payload_is_the_alert_with_source_and_text() {
        let v = json_payload(&alert());
        assert_eq!(v["id"], "alr_1");
        assert_eq!(v["source"], "palisade");
        assert_eq!(v["count"], 3);
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["facts"]["route"], "openai");
        assert!(v.get("summary").is_none());
        let t = v["text"].as_str().unwrap_or_default();
        assert!(t.starts_with("[CRITICAL] secrets/aws_access_key"), "{t}");
        assert!(
            t.contains("×3 between 2025-11-13T02:13:20Z and 2025-11-13T02:13:25Z"),
            "{t}"
        );
    }

    #[test]
    fn slack_payload_has_text_and_blocks_and_escapes_facts() {
        let v = slack_payload(&alert());
        assert!(v["text"]
            .as_str()
            .is_some_and(|t| t.contains("aws_access_key")));
        let blocks = v["blocks"].as_array().cloned().unwrap_or_default();
        let types: Vec<&str> = blocks.iter().filter_map(|b| b["type"].as_str()).collect();
        assert_eq!(types, ["header", "section", "context"]);
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        let fields = serde_json::to_string(&blocks[1]["fields"]).unwrap_or_default();
        assert!(fields.contains("&lt;!channel&gt;"), "{fields}");
        assert!(!fields.contains("<!channel>"), "{fields}");
        assert!(fields.contains("&amp; co"), "{fields}");
        assert!(serde_json::to_string(&blocks[2])
            .unwrap_or_default()
            .contains("alr_1"));
    }

    #[test]
    fn slack_limits_are_kept() {
        let mut a = alert();
        a.title = "x".repeat(400);
        for i in 0..30 {
            a.facts.insert(format!("fact{i:02}"), "y".repeat(5_000));
        }
        let v = slack_payload(&a);
        let header = v["blocks"][0]["text"]["text"].as_str().unwrap_or_default();
        assert_eq!(header.chars().count(), 150);
        let fields = v["blocks"][1]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(fields.len(), 10);
        assert!(fields.iter().all(|f| f["text"]
            .as_str()
            .is_some_and(|t| t.chars().count() <= 2_000)));
    }

    #[test]
    fn a_summary_lists_what_it_stands_for() {
        let mut a = alert();
        a.trigger = "throttle_summary".into();
        a.summary = Some(Summary {
            alerts: 60,
            triggers: 75,
            period_seconds: 60,
            items: (0..SUMMARY_ITEMS)
                .map(|i| SummaryItem {
                    id: format!("alr_{i}"),
                    title: format!("held {i}"),
                    severity: Severity::High,
                    count: 1,
                    first_seen_ms: 0,
                })
                .collect(),
            omitted: 10,
        });
        let v = slack_payload(&a);
        let list = v["blocks"][2]["text"]["text"].as_str().unwrap_or_default();
        assert!(list.starts_with("• held 0 ×1"), "{list}");
        assert!(list.ends_with("… and 10 more"), "{list}");
        let j = json_payload(&a);
        assert_eq!(j["summary"]["alerts"], 60);
        assert_eq!(j["summary"]["items"][3]["id"], "alr_3");
    }
}
