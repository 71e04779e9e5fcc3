//! Palisade's event stream: every recorded event (and, optionally, each finding) published to
//! Kafka as JSON, keyed by request id, for data pipelines.
//!
//! ```text
//! request path ─► Publisher::publish: try to reserve a slot in a bounded queue; full? count, drop
//! kafka thread ─► batch (≤ batch_events, or linger_ms) ─► encode JSON ─► group by topic partition
//!              ─► produce (acks from all in-sync replicas) ─► acknowledged? count : back off, retry
//! ```
//!
//! Delivery is **at least once** within the buffer's bound: a batch leaves the buffer only when
//! the brokers acknowledged it, or when they rejected a message as invalid (too large, corrupt),
//! which no retry would fix. A failed attempt (brokers down, leader moved, timeout) is retried
//! with back-off doubling from `retry_initial_ms` to `retry_max_ms`, for as long as it takes;
//! meanwhile new events wait in the buffer, and once it is full they are dropped and counted.
//! A retry after a produce request whose acknowledgement was lost sends its messages twice:
//! consumers de-duplicate on the request id (the key) where that matters.
//!
//! Why a thread of its own: the proxy's workers are single-threaded runtimes that must never
//! wait on a broker, and the client keeps its connections on the runtime that made them.
//!
//! Partitioning follows Kafka's Java producer (murmur2 of the key, modulo the partition count),
//! so an event and its findings land on the same partition as any other producer would put
//! them, and a consumer sees one request's messages in order.
//!
//! Not covered: TLS and SASL to the brokers, compression, idempotent (exactly-once) producing,
//! and events still in memory when the process is killed (a clean shutdown flushes for up to
//! `timeout_ms`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_engine::metrics::{self, KafkaCount};
use palisade_policy::events::KafkaConfig;
use palisade_store::{Event, FindingRecord};
use rskafka::chrono::DateTime;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The header naming what a message holds: `event` or `finding`.
pub const TYPE_HEADER: &str = "palisade-type";

/// Why publishing could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The publishing thread or its runtime could not be made.
    #[error("cannot start the Kafka publisher: {0}")]
    Thread(#[from] std::io::Error),
}

/// Publishes events to Kafka from a background thread. Cheap to share; [`Publisher::publish`]
/// never waits.
#[derive(Debug)]
pub struct Publisher {
    tx: mpsc::Sender<Event>,
    /// Messages one event becomes beyond itself: one per finding with a findings topic.
    findings: bool,
    stop: watch::Sender<bool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Publisher {
    /// Starts the publishing thread. It connects on its own (and keeps trying): brokers that are
    /// down at start only mean events wait in the buffer.
    pub fn start(config: &KafkaConfig) -> Result<Publisher, StartError> {
        let (tx, rx) = mpsc::channel(config.buffer_events.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sink = Sink::new(config.clone());
        let thread = std::thread::Builder::new()
            .name("palisade-kafka".into())
            .spawn(move || rt.block_on(sink.run(rx, stop_rx)))?;
        Ok(Publisher {
            tx,
            findings: config.findings_topic.is_some(),
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `event` for publishing; when the buffer is full, drops it and counts its messages
    /// (`palisade_kafka_dropped_total{reason="buffer_full"}`).
    pub fn publish(&self, event: &Event) {
        match self.tx.try_reserve() {
            Ok(permit) => permit.send(event.clone()),
            Err(_) => {
                let n = 1 + if self.findings {
                    event.findings.len()
                } else {
                    0
                };
                metrics::kafka(KafkaCount::Dropped, "buffer_full", n as u64);
            }
        }
    }

    /// Stops taking events, gives what is buffered up to `timeout_ms` to reach the brokers
    /// (counting the rest as dropped, `reason="shutdown"`), and waits for the thread.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// One message ready for the brokers.
#[derive(Debug, Clone)]
struct Message {
    topic: Arc<str>,
    key: Vec<u8>,
    value: Vec<u8>,
    kind: &'static str,
    time_ms: i64,
}

impl Message {
    fn record(&self) -> Record {
        Record {
            key: Some(self.key.clone()),
            value: Some(self.value.clone()),
            headers: BTreeMap::from([(TYPE_HEADER.to_owned(), self.kind.as_bytes().to_vec())]),
            timestamp: DateTime::from_timestamp_millis(self.time_ms).unwrap_or_default(),
        }
    }

    fn size(&self) -> usize {
        self.key.len() + self.value.len() + TYPE_HEADER.len() + self.kind.len()
    }
}

/// A finding as published on the findings topic: the finding and the context of its event.
#[derive(Debug, Serialize)]
pub struct FindingMessage<'a> {
    /// The request id of the event it belongs to (also the message key).
    pub request_id: &'a str,
    /// When the event happened, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// `proxy`, `guard` or `stream`.
    pub source: &'a str,
    /// The route or `guard:<collector>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    /// The collector (guard calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collector: Option<&'a str>,
    /// The agent, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<&'a str>,
    /// The MCP or LLM tool called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<&'a str>,
    /// The decision on the whole exchange.
    pub decision: &'a str,
    /// The finding itself: detector, kind, severity, action, location, snippet.
    #[serde(flatten)]
    pub finding: &'a FindingRecord,
}

/// The messages one event becomes: the event on `topic`, then each finding on `findings_topic`.
fn encode(event: &Event, topic: &Arc<str>, findings_topic: Option<&Arc<str>>) -> Vec<Message> {
    let mut out = Vec::with_capacity(1 + event.findings.len());
    let key = event.request_id.as_bytes();
    match serde_json::to_vec(event) {
        Ok(value) => out.push(Message {
            topic: topic.clone(),
            key: key.to_vec(),
            value,
            kind: "event",
            time_ms: event.time_ms,
        }),
        Err(e) => tracing::error!(error = %e, "kafka: an event could not be encoded"),
    }
    if let Some(ft) = findings_topic {
        for f in &event.findings {
            let m = FindingMessage {
                request_id: &event.request_id,
                time_ms: event.time_ms,
                source: &event.source,
                route: event.route.as_deref(),
                collector: event.collector.as_deref(),
                agent_id: event.agent_id.as_deref(),
                tool: event.tool.as_deref(),
                decision: &event.decision,
                finding: f,
            };
            match serde_json::to_vec(&m) {
                Ok(value) => out.push(Message {
                    topic: ft.clone(),
                    key: key.to_vec(),
                    value,
                    kind: "finding",
                    time_ms: event.time_ms,
                }),
                Err(e) => tracing::error!(error = %e, "kafka: a finding could not be encoded"),
            }
        }
    }
    out
}

/// Kafka's default partitioner hash (murmur2 with Kafka's seed), as the Java producer and
/// librdkafka's `murmur2_random` compute it.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    // Kafka hashes `int` lengths; a key past 4 GiB is not a key.
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition (an index into the topic's sorted partition ids) a key goes to.
pub fn partition_for(key: &[u8], partitions: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as usize) % partitions.max(1)
}

/// A connection to the cluster: the client, each topic's partitions, and a client per partition
/// used so far.
#[derive(Debug)]
struct Conn {
    client: Client,
    partitions: HashMap<Arc<str>, Vec<i32>>,
    producers: HashMap<(Arc<str>, i32), Arc<PartitionClient>>,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("topic `{0}` does not exist")]
    NoTopic(Arc<str>),
    #[error("not connected")]
    NotConnected,
    #[error("not tried: an earlier request to its partition failed")]
    NotTried,
    #[error(transparent)]
    Kafka(#[from] rskafka::client::error::Error),
}

/// The publishing loop and its connection.
#[derive(Debug)]
struct Sink {
    config: KafkaConfig,
    topic: Arc<str>,
    findings_topic: Option<Arc<str>>,
    conn: Option<Conn>,
}

impl Sink {
    fn new(config: KafkaConfig) -> Self {
        Sink {
            topic: Arc::from(config.topic.as_str()),
            findings_topic: config.findings_topic.as_deref().map(Arc::from),
            config,
            conn: None,
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms.max(1))
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Event>, mut stop: watch::Receiver<bool>) {
        let linger = Duration::from_millis(self.config.linger_ms);
        let batch_max = self.config.batch_events.max(1);
        while !*stop.borrow() {
            let first = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => None,
                e = rx.recv() => e,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            let until = Instant::now() + linger;
            while batch.len() < batch_max {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(e)) => batch.push(e),
                    _ => break,
                }
            }
            self.gauge(&rx);
            let messages = self.messages(&batch);
            self.deliver(messages, &mut stop).await;
            self.gauge(&rx);
        }
        // Stopping: what is still buffered gets one bounded chance.
        rx.close();
        let mut rest = Vec::new();
        while let Ok(e) = rx.try_recv() {
            rest.push(e);
        }
        if !rest.is_empty() {
            let messages = self.messages(&rest);
            self.deliver(messages, &mut stop).await;
        }
        metrics::kafka_buffered(0);
    }

    fn gauge(&self, rx: &mpsc::Receiver<Event>) {
        metrics::kafka_buffered((rx.max_capacity() - rx.capacity()) as u64);
    }

    /// Encodes a batch, dropping (and counting) messages larger than `max_message_bytes`.
    fn messages(&self, batch: &[Event]) -> Vec<Message> {
        let max = self.config.max_message_bytes;
        let mut out = Vec::with_capacity(batch.len());
        for e in batch {
            for m in encode(e, &self.topic, self.findings_topic.as_ref()) {
                if m.size() > max {
                    tracing::warn!(request_id = %e.request_id, bytes = m.size(), max, "kafka: message too large, dropped");
                    metrics::kafka(KafkaCount::Dropped, "too_large", 1);
                } else {
                    out.push(m);
                }
            }
        }
        out
    }

    /// Sends `messages` until the brokers acknowledged them all; once stopping, gives up after
    /// `timeout_ms` and counts what is left as dropped.
    async fn deliver(&mut self, mut messages: Vec<Message>, stop: &mut watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(self.config.retry_initial_ms.max(1));
        let max_backoff = Duration::from_millis(self.config.retry_max_ms.max(1));
        let mut give_up: Option<Instant> = None;
        loop {
            messages = self.attempt(messages).await;
            if messages.is_empty() {
                return;
            }
            count_by_topic(&messages, KafkaCount::Failed);
            if give_up.is_none() && *stop.borrow() {
                give_up = Some(Instant::now() + self.timeout());
            }
            match give_up {
                None => {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|s| *s) => {
                            give_up = Some(Instant::now() + self.timeout());
                        }
                    }
                }
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        metrics::kafka(KafkaCount::Dropped, "shutdown", messages.len() as u64);
                        tracing::warn!(
                            messages = messages.len(),
                            "kafka: stopping with messages the brokers did not take"
                        );
                        return;
                    }
                    tokio::time::sleep(backoff.min(at - now)).await;
                }
            }
            backoff = (backoff * 2).min(max_backoff);
            count_by_topic(&messages, KafkaCount::Retried);
        }
    }

    /// One attempt at sending `messages`; returns those still to send.
    async fn attempt(&mut self, messages: Vec<Message>) -> Vec<Message> {
        if self.conn.is_none() {
            match tokio::time::timeout(self.timeout(), self.connect()).await {
                Ok(Ok(c)) => self.conn = Some(c),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "kafka: cannot reach the brokers");
                    return messages;
                }
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = self.config.timeout_ms,
                        "kafka: cannot reach the brokers"
                    );
                    return messages;
                }
            }
        }
        let mut groups: BTreeMap<(Arc<str>, i32), Vec<Message>> = BTreeMap::new();
        {
            let Some(conn) = &self.conn else {
                return messages;
            };
            for m in messages {
                let p = conn
                    .partitions
                    .get(&m.topic)
                    .and_then(|ps| ps.get(partition_for(&m.key, ps.len())).copied())
                    .unwrap_or(0);
                groups.entry((m.topic.clone(), p)).or_default().push(m);
            }
        }
        // Partitions are sent to concurrently, each partition's chunks one after the other so
        // that their order holds.
        let mut left = Vec::new();
        let mut broken = false;
        let mut sends = tokio::task::JoinSet::new();
        for ((topic, partition), group) in groups {
            let pc = match self.partition_client(&topic, partition).await {
                Ok(pc) => pc,
                Err(e) => {
                    tracing::warn!(error = %e, topic = %topic, partition, "kafka: no leader for a partition");
                    broken = true;
                    left.extend(group);
                    continue;
                }
            };
            let chunks = chunks(group, self.config.max_message_bytes);
            let timeout = self.timeout();
            let ms = self.config.timeout_ms;
            sends.spawn(async move {
                let mut outcomes = Vec::with_capacity(chunks.len());
                let mut failed = false;
                for chunk in chunks {
                    if failed {
                        outcomes.push((chunk, Err(AttemptError::NotTried)));
                        continue;
                    }
                    let records = chunk.iter().map(Message::record).collect();
                    let r = match tokio::time::timeout(
                        timeout,
                        pc.produce(records, Compression::NoCompression),
                    )
                    .await
                    {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(AttemptError::Kafka(e)),
                        Err(_) => Err(AttemptError::Timeout(ms)),
                    };
                    failed = matches!(&r, Err(AttemptError::Kafka(e)) if !rejected(e))
                        || matches!(r, Err(AttemptError::Timeout(_)));
                    outcomes.push((chunk, r));
                }
                (topic, partition, outcomes)
            });
        }
        while let Some(joined) = sends.join_next().await {
            let Ok((topic, partition, outcomes)) = joined else {
                // A send task cannot panic short of a bug; its messages are then lost, not hung.
                tracing::error!("kafka: a send task failed");
                broken = true;
                continue;
            };
            for (chunk, r) in outcomes {
                match r {
                    Ok(()) => {
                        metrics::kafka(KafkaCount::Published, &topic, chunk.len() as u64);
                    }
                    Err(AttemptError::Kafka(e)) if rejected(&e) => {
                        tracing::error!(error = %e, topic = %topic, messages = chunk.len(), "kafka: the brokers rejected messages, dropped");
                        metrics::kafka(KafkaCount::Dropped, "rejected", chunk.len() as u64);
                    }
                    Err(AttemptError::NotTried) => left.extend(chunk),
                    Err(e) => {
                        tracing::warn!(error = %e, topic = %topic, partition, "kafka: produce failed");
                        // Start afresh next time: metadata, leaders and connections.
                        broken = true;
                        left.extend(chunk);
                    }
                }
            }
        }
        if broken {
            self.conn = None;
        }
        left
    }

    async fn connect(&self) -> Result<Conn, AttemptError> {
        let client = ClientBuilder::new(self.config.brokers.clone())
            .client_id(self.config.client_id.as_str())
            .backoff_config(self.backoff())
            .build()
            .await?;
        let topics = client.list_topics().await?;
        let mut partitions = HashMap::new();
        for t in std::iter::once(&self.topic).chain(self.findings_topic.as_ref()) {
            let mut ids = topics
                .iter()
                .find(|x| x.name == **t)
                .map(|x| x.partitions.iter().copied().collect::<Vec<i32>>())
                .unwrap_or_default();
            if ids.is_empty() {
                return Err(AttemptError::NoTopic(t.clone()));
            }
            ids.sort_unstable();
            partitions.insert(t.clone(), ids);
        }
        tracing::info!(brokers = ?self.config.brokers, "kafka: connected");
        Ok(Conn {
            client,
            partitions,
            producers: HashMap::new(),
        })
    }

    /// The client's own retries, bounded so that one attempt ends within `timeout_ms`.
    fn backoff(&self) -> rskafka::BackoffConfig {
        rskafka::BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(self.config.retry_max_ms.max(1)),
            base: 2.0,
            deadline: Some(self.timeout()),
        }
    }

    /// The client for a topic partition, made on first use and kept with the connection.
    async fn partition_client(
        &mut self,
        topic: &Arc<str>,
        partition: i32,
    ) -> Result<Arc<PartitionClient>, AttemptError> {
        let timeout = self.timeout();
        let ms = self.config.timeout_ms;
        let Some(conn) = self.conn.as_mut() else {
            return Err(AttemptError::NotConnected);
        };
        let key = (topic.clone(), partition);
        if let Some(pc) = conn.producers.get(&key) {
            return Ok(pc.clone());
        }
        let pc = tokio::time::timeout(
            timeout,
            conn.client
                .partition_client(topic.to_string(), partition, UnknownTopicHandling::Error),
        )
        .await
        .map_err(|_| AttemptError::Timeout(ms))??;
        let pc = Arc::new(pc);
        conn.producers.insert(key, pc.clone());
        Ok(pc)
    }
}

/// Whether the brokers refused the messages themselves, so that sending them again cannot help.
fn rejected(e: &rskafka::client::error::Error) -> bool {
    use rskafka::client::error::{Error, ProtocolError};
    matches!(
        e,
        Error::ServerError {
            protocol_error: ProtocolError::MessageTooLarge
                | ProtocolError::RecordListTooLarge
                | ProtocolError::InvalidRecord
                | ProtocolError::CorruptMessage
                | ProtocolError::InvalidTopicException,
            ..
        }
    )
}

/// Splits a partition's messages into produce requests of at most `max_bytes` each (a single
/// message is never split).
fn chunks(group: Vec<Message>, max_bytes: usize) -> Vec<Vec<Message>> {
    let mut out: Vec<Vec<Message>> = Vec::new();
    let mut size = 0;
    for m in group {
        let s = m.size();
        match out.last_mut() {
            Some(last) if size + s <= max_bytes => {
                size += s;
                last.push(m);
            }
            _ => {
                size = s;
                out.push(vec![m]);
            }
        }
    }
    out
}

fn count_by_topic(messages: &[Message], what: KafkaCount) {
    let mut by: BTreeMap<&str, u64> = BTreeMap::new();
    for m in messages {
        *by.entry(&m.topic).or_default() += 1;
    }
    for (topic, n) in by {
        metrics::kafka(what, topic, n);
    }
}

#[cfg(test)]
mod tests;
