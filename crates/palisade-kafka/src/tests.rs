use super::*;

/// Kafka's own test vectors (`UtilsTest.testMurmur2`), as signed 32-bit results.
#[test]
fn murmur2_matches_kafkas_java_producer() {
    let cases: [(&[u8], i32); 6] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];
    for (key, want) in cases {
        assert_eq!(
            murmur2(key) as i32,
            want,
            "{}",
            String::from_utf8_lossy(key)
        );
    }
    assert!(partition_for(b"foobar", 3) < 3);
    assert_eq!(partition_for(b"anything", 1), 0);
}

fn event(findings: usize) -> Event {
    Event {
        request_id: "req-1".into(),
        time_ms: 1_700_000_000_000,
        source: "proxy".into(),
        route: Some("mcp".into()),
        decision: "block".into(),
        findings: (0..findings)
            .map(|i| FindingRecord {
                detector: "secrets".into(),
                kind: format!("kind{i}"),
                severity: "high".into(),
                action: "block".into(),
                location: Some("/params/arguments/text".into()),
                snippet: Some("AKIA****".into()),
            })
            .collect(),
        ..Event::default()
    }
}

#[test]
fn an_event_is_one_message_and_each_finding_another_when_asked() {
    let topic: Arc<str> = Arc::from("ev");
    let ft: Arc<str> = Arc::from("fi");
    let e = event(2);
    let only = encode(&e, &topic, None);
    assert_eq!(only.len(), 1);
    let back: Event = serde_json::from_slice(&only[0].value).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, e);
    assert_eq!(only[0].key, b"req-1");
    assert_eq!(only[0].record().headers[TYPE_HEADER], b"event");

    let all = encode(&e, &topic, Some(&ft));
    assert_eq!(all.len(), 3);
    assert!(all[1..]
        .iter()
        .all(|m| &*m.topic == "fi" && m.kind == "finding"));
    let f: serde_json::Value =
        serde_json::from_slice(&all[2].value).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f["request_id"], "req-1");
    assert_eq!(f["kind"], "kind1");
    assert_eq!(f["detector"], "secrets");
    assert_eq!(f["decision"], "block");
    assert_eq!(f["route"], "mcp");
    assert_eq!(
        all[2].record().timestamp.timestamp_millis(),
        1_700_000_000_000
    );
}

#[test]
fn produce_requests_stay_under_the_size_limit_but_never_split_a_message() {
    let topic: Arc<str> = Arc::from("t");
    let msgs: Vec<Message> = (0..5)
        .flat_map(|_| encode(&event(0), &topic, None))
        .collect();
    let one = msgs[0].size();
    let got = chunks(msgs.clone(), one * 2);
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
    let got = chunks(msgs, 1);
    assert_eq!(got.len(), 5);
}

fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// With no broker listening, the first event waits in the batch being retried, the buffer
/// holds `buffer_events` more, and every other one is dropped and counted without blocking;
/// shutdown gives the rest `timeout_ms`, then counts them as dropped too.
#[test]
fn a_full_buffer_drops_and_counts_and_shutdown_is_bounded() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let mut config = KafkaConfig::new(vec![format!("127.0.0.1:{port}")]);
    config.topic = "kafka-unit-test".into();
    config.buffer_events = 4;
    config.batch_events = 1;
    config.linger_ms = 0;
    config.timeout_ms = 300;
    config.retry_initial_ms = 20;
    config.retry_max_ms = 50;
    let before = metrics::render();
    let p = Publisher::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    for _ in 0..100 {
        p.publish(&event(0));
    }
    assert!(started.elapsed() < Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(200));
    let stopping = std::time::Instant::now();
    p.shutdown();
    assert!(stopping.elapsed() < Duration::from_secs(2));
    let after = metrics::render();
    let delta = |s: &str| counter(&after, s) - counter(&before, s);
    let full = delta("palisade_kafka_dropped_total{reason=\"buffer_full\"}");
    let at_stop = delta("palisade_kafka_dropped_total{reason=\"shutdown\"}");
    assert!((95..=96).contains(&full), "buffer_full {full}");
    assert_eq!(full + at_stop, 100, "shutdown {at_stop}");
    assert!(delta("palisade_kafka_failed_total{topic=\"kafka-unit-test\"}") >= 2);
    assert!(delta("palisade_kafka_retried_total{topic=\"kafka-unit-test\"}") >= 1);
}
