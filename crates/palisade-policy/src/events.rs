//! The event-stream part of the configuration: where events and findings are published for data
//! pipelines (Kafka), and how much may wait when the brokers are away.
//!
//! Kept apart from [`crate::config`] like the alerts model; it hangs off
//! [`crate::config::Config`] by one field. [`check`] refuses what the types cannot: no brokers,
//! empty topic names, zero sizes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Event streams for data pipelines. Read at start (not hot-reloaded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Publish every recorded event (and, optionally, each finding) to Kafka. Absent: nothing is
    /// published.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
}

/// Kafka publishing. Each event is one JSON message keyed by its request id, sent at least once:
/// events wait in a bounded in-memory buffer, leave in batches, and a batch the brokers did not
/// acknowledge is sent again with back-off until they do. A request never waits for Kafka: when
/// the buffer is full, the event is dropped and counted
/// (`palisade_kafka_dropped_total{reason="buffer_full"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` (plaintext; TLS and SASL are not supported yet).
    pub brokers: Vec<String>,
    /// The topic events are published to. It must exist; its partition count is read from the
    /// brokers, and a message goes to the partition its key hashes to (murmur2, as Kafka's Java
    /// producer does).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Also publish each finding as its own message to this topic, keyed by the request id of
    /// its event. Absent: findings travel only inside their event.
    #[serde(default)]
    pub findings_topic: Option<String>,
    /// Client id sent to the brokers.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Events waiting to be published, beyond the batch in flight. When the brokers are down
    /// this is how much is kept for them; beyond it, events are dropped and counted.
    #[serde(default = "default_buffer_events")]
    pub buffer_events: usize,
    /// Most events per batch (one produce request per topic partition of the batch).
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// Longest an event waits for its batch to fill, in milliseconds.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Time allowed to connect, read metadata or have one produce request acknowledged, in
    /// milliseconds; past it, the attempt has failed and is retried.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// First wait before a failed batch is sent again, in milliseconds; it doubles on each
    /// failure, up to `retry_max_ms`.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest wait between two attempts, in milliseconds.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Largest message sent, in bytes (Kafka's default `max.message.bytes` is 1 MiB); a larger
    /// one is dropped and counted (`reason="too_large"`) rather than blocking the stream.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

fn default_topic() -> String {
    "palisade.events".to_owned()
}
fn default_client_id() -> String {
    "palisade".to_owned()
}
fn default_buffer_events() -> usize {
    10_000
}
fn default_batch_events() -> usize {
    500
}
fn default_linger_ms() -> u64 {
    50
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_retry_initial_ms() -> u64 {
    100
}
fn default_retry_max_ms() -> u64 {
    5_000
}
fn default_max_message_bytes() -> usize {
    1_000_000
}

impl KafkaConfig {
    /// Publishing to `brokers` with every other setting at its default.
    pub fn new(brokers: Vec<String>) -> Self {
        KafkaConfig {
            brokers,
            topic: default_topic(),
            findings_topic: None,
            client_id: default_client_id(),
            buffer_events: default_buffer_events(),
            batch_events: default_batch_events(),
            linger_ms: default_linger_ms(),
            timeout_ms: default_timeout_ms(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
            max_message_bytes: default_max_message_bytes(),
        }
    }
}

/// Refuses settings the types allow but that cannot work: `(field path, value, what is
/// expected)`.
pub(crate) fn check(config: &EventsConfig) -> Result<(), (String, String, String)> {
    let Some(k) = &config.kafka else {
        return Ok(());
    };
    let err = |field: &str, value: String, want: &str| {
        Err((format!("events.kafka.{field}"), value, want.to_owned()))
    };
    if k.brokers.is_empty() {
        return err("brokers", "[]".into(), "at least one broker, `host:port`");
    }
    for (i, b) in k.brokers.iter().enumerate() {
        let port_ok = b
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return err(&format!("brokers[{i}]"), b.clone(), "`host:port`");
        }
    }
    for (field, topic) in [
        ("topic", Some(&k.topic)),
        ("findings_topic", k.findings_topic.as_ref()),
    ] {
        if let Some(t) = topic {
            let valid = !t.is_empty()
                && t.len() <= 249
                && t != "."
                && t != ".."
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
            if !valid {
                return err(
                    field,
                    t.clone(),
                    "a Kafka topic name: 1 to 249 of `a-z A-Z 0-9 . _ -`",
                );
            }
        }
    }
    for (field, v) in [
        ("buffer_events", k.buffer_events),
        ("batch_events", k.batch_events),
        ("max_message_bytes", k.max_message_bytes),
    ] {
        if v == 0 {
            return err(field, "0".into(), "at least 1");
        }
    }
    for (field, v) in [
        ("timeout_ms", k.timeout_ms),
        ("retry_initial_ms", k.retry_initial_ms),
        ("retry_max_ms", k.retry_max_ms),
    ] {
        if v == 0 {
            return err(field, "0".into(), "at least 1 ms");
        }
    }
    if k.retry_max_ms < k.retry_initial_ms {
        return err(
            "retry_max_ms",
            k.retry_max_ms.to_string(),
            "at least retry_initial_ms",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(k: KafkaConfig) -> EventsConfig {
        EventsConfig { kafka: Some(k) }
    }

    #[test]
    fn defaults_pass_and_absent_kafka_passes() {
        assert!(check(&EventsConfig::default()).is_ok());
        assert!(check(&with(KafkaConfig::new(vec!["127.0.0.1:9092".into()]))).is_ok());
    }

    #[test]
    fn refuses_what_cannot_work() {
        let base = KafkaConfig::new(vec!["kafka:9092".into()]);
        let cases: Vec<(KafkaConfig, &str)> = vec![
            (KafkaConfig::new(vec![]), "events.kafka.brokers"),
            (
                KafkaConfig::new(vec!["kafka".into()]),
                "events.kafka.brokers[0]",
            ),
            (
                KafkaConfig {
                    topic: "has space".into(),
                    ..base.clone()
                },
                "events.kafka.topic",
            ),
            (
                KafkaConfig {
                    findings_topic: Some(String::new()),
                    ..base.clone()
                },
                "events.kafka.findings_topic",
            ),
            (
                KafkaConfig {
                    buffer_events: 0,
                    ..base.clone()
                },
                "events.kafka.buffer_events",
            ),
            (
                KafkaConfig {
                    retry_initial_ms: 500,
                    retry_max_ms: 100,
                    ..base.clone()
                },
                "events.kafka.retry_max_ms",
            ),
        ];
        for (k, field) in cases {
            let got = check(&with(k)).err().map(|e| e.0);
            assert_eq!(got.as_deref(), Some(field));
        }
    }
}
