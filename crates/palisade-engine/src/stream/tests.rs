use super::*;
use palisade_policy::CompiledConfig;

fn policy(yaml: &str) -> CompiledConfig {
    let c = palisade_policy::parse_str(yaml, "<test>").unwrap_or_else(|e| panic!("{e}"));
    CompiledConfig::new(&c).unwrap_or_else(|e| panic!("{e}"))
}

const SSN_RULES: &str = "policies:\n  p:\n    output:\n      - { detector: custom, kinds: [ssn], action: redact, redaction: mask }\n      - { detector: custom, kinds: [tag], action: redact, redaction: replace }\n      - { detector: custom, kinds: [stop], action: block }\n    custom:\n      - { name: ssn, regex: '\\b\\d{3}-\\d{2}-\\d{4}\\b' }\n      - { name: tag, keywords: [falcon] }\n      - { name: stop, keywords: [forbidden] }\n";

fn openai_chunk(text: &str) -> String {
    let v = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]});
    format!("data: {v}\n\n")
}

fn run(
    p: &Arc<CompiledPolicy>,
    protocol: Protocol,
    input: &[u8],
    chunk: usize,
    limits: StreamLimits,
) -> (Vec<u8>, bool) {
    let mut s = StreamInspector::new(
        p.clone(),
        Direction::Response,
        protocol,
        Framing::Sse,
        limits,
        "req-1",
        None,
        None,
    );
    let mut out = Vec::new();
    let mut blocked = false;
    let mut take = |o: Vec<StreamOutput>| {
        for x in o {
            match x {
                StreamOutput::Data(b) => out.extend(b),
                StreamOutput::Blocked(b) => {
                    out.extend(b);
                    blocked = true;
                }
            }
        }
    };
    for c in input.chunks(chunk.max(1)) {
        take(s.push(c).unwrap_or_else(|e| panic!("{e}")));
    }
    take(s.finish().unwrap_or_else(|e| panic!("{e}")));
    (out, blocked)
}

/// The texts the client reassembles from the OpenAI deltas it received.
fn client_text(out: &[u8]) -> String {
    let mut d = palisade_protocol::sse::SseDecoder::new(1 << 20);
    let mut events = d.push(out).unwrap_or_default();
    events.extend(d.finish().ok().flatten());
    events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.data).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(|c| c.as_str())
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn ssn_split_across_events_is_masked_whatever_the_chunking() {
    let cfg = policy(SSN_RULES);
    let p = cfg.policy("p").unwrap_or_else(|| panic!("no policy"));
    let input = [
        openai_chunk("Your SSN is 07"),
        openai_chunk("8-05-"),
        openai_chunk("1120, keep it"),
        openai_chunk(" safe."),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    for chunk in [1, 5, 17, 64, 10_000] {
        let (out, blocked) = run(
            p,
            Protocol::Openai,
            input.as_bytes(),
            chunk,
            StreamLimits::default(),
        );
        assert!(!blocked);
        assert_eq!(
            client_text(&out),
            "Your SSN is ***-**-1120, keep it safe.",
            "chunk {chunk}"
        );
        assert!(String::from_utf8_lossy(&out).ends_with("data: [DONE]\n\n"));
    }
}

#[test]
fn placeholders_of_other_lengths_go_in_the_first_piece() {
    let cfg = policy(SSN_RULES);
    let p = cfg.policy("p").unwrap_or_else(|| panic!("no policy"));
    let input = [
        openai_chunk("Project fal"),
        openai_chunk("con is"),
        openai_chunk(" late"),
    ]
    .concat();
    let (out, _) = run(
        p,
        Protocol::Openai,
        input.as_bytes(),
        7,
        StreamLimits::default(),
    );
    assert_eq!(client_text(&out), "Project [TAG_1] is late");
}

#[test]
fn untouched_events_pass_byte_for_byte() {
    let cfg = policy(SSN_RULES);
    let p = cfg.policy("p").unwrap_or_else(|| panic!("no policy"));
    let input = format!(
        ": ping\n\n{}{}data: [DONE]\n\n",
        openai_chunk("Hello"),
        openai_chunk(" world")
    );
    let (out, blocked) = run(
        p,
        Protocol::Openai,
        input.as_bytes(),
        3,
        StreamLimits::default(),
    );
    assert!(!blocked);
    assert_eq!(String::from_utf8_lossy(&out), input);
}

#[test]
fn a_block_ends_the_stream_with_a_protocol_error_and_drops_held_text() {
    let cfg = policy(SSN_RULES);
    let p = cfg.policy("p").unwrap_or_else(|| panic!("no policy"));
    let input = [
        openai_chunk("This is forb"),
        openai_chunk("idden text"),
        openai_chunk(" more"),
    ]
    .concat();
    let (out, blocked) = run(
        p,
        Protocol::Openai,
        input.as_bytes(),
        9,
        StreamLimits::default(),
    );
    assert!(blocked);
    let text = String::from_utf8_lossy(&out);
    assert!(
        !text.contains("forb"),
        "held text must not reach the client: {text}"
    );
    assert!(text.starts_with("data: {\"error\":"), "{text}");
    assert!(text.contains("palisade_blocked"));

    let anthropic = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"forbidden\"}}\n\n";
    let (out, blocked) = run(
        p,
        Protocol::Anthropic,
        anthropic.as_bytes(),
        4,
        StreamLimits::default(),
    );
    assert!(blocked);
    assert!(String::from_utf8_lossy(&out).starts_with("event: error\ndata: {\"type\":\"error\""));
}

#[test]
fn text_flushed_before_a_value_completes_cannot_be_retracted() {
    let cfg = policy(SSN_RULES);
    let p = cfg.policy("p").unwrap_or_else(|| panic!("no policy"));
    // With no hold, each event is sent as soon as it is scanned: the first half of the SSN is
    // already gone when its end arrives, and only the rest is masked.
    let limits = StreamLimits {
        hold_bytes: 0,
        ..StreamLimits::default()
    };
    let mut s = StreamInspector::new(
        p.clone(),
        Direction::Response,
        Protocol::Openai,
        Framing::Sse,
        limits,
        "r",
        None,
        None,
    );
    let mut out = Vec::new();
    for event in [openai_chunk("SSN 078-0"), openai_chunk("5-1120.")] {
        for o in s.push(event.as_bytes()).unwrap_or_default() {
            if let StreamOutput::Data(b) = o {
                out.extend(b);
            }
        }
    }
    assert_eq!(client_text(&out), "SSN 078-0*-1120.");
}

#[test]
fn ndjson_lines_are_inspected() {
    let cfg = policy(SSN_RULES);
    let p = cfg.policy("p").unwrap_or_else(|| panic!("no policy"));
    let mut s = StreamInspector::new(
        p.clone(),
        Direction::Response,
        Protocol::Gemini,
        Framing::Ndjson,
        StreamLimits::default(),
        "r",
        None,
        None,
    );
    let line = |t: &str| {
        format!(
            "{}\n",
            serde_json::json!({"candidates": [{"content": {"parts": [{"text": t}]}}]})
        )
    };
    let mut out = Vec::new();
    for l in [line("id 078-05-"), line("1120 end")] {
        for o in s.push(l.as_bytes()).unwrap_or_default() {
            if let StreamOutput::Data(b) = o {
                out.extend(b);
            }
        }
    }
    for o in s.finish().unwrap_or_default() {
        if let StreamOutput::Data(b) = o {
            out.extend(b);
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("***-**-") && text.contains("1120 end") && !text.contains("078"),
        "{text}"
    );
}

#[test]
fn a_blocked_mcp_message_is_answered_alone_and_the_session_goes_on() {
    let cfg = policy(SSN_RULES);
    let p = cfg.policy("p").unwrap_or_else(|| panic!("no policy"));
    let message = |id: u32, text: &str| {
        let v = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}});
        format!("event: message\ndata: {v}\n\n")
    };
    let notification = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"forbidden words\"}}\n\n";
    let input = [
        message(1, "fine"),
        message(2, "this is forbidden"),
        notification.to_owned(),
        message(3, "also fine, 078-05-1120"),
    ]
    .concat();
    for chunk in [7, 64, input.len()] {
        let limits = StreamLimits {
            hold_bytes: 0,
            overlap_bytes: 0,
            ..StreamLimits::default()
        };
        let (out, blocked) = run(p, Protocol::Mcp, input.as_bytes(), chunk, limits);
        let text = String::from_utf8_lossy(&out);
        assert!(!blocked, "the session must go on: {text}");
        assert!(text.contains("\"text\":\"fine\""), "{text}");
        assert!(!text.contains("forbidden"), "chunk {chunk}: {text}");
        assert!(
            text.contains("\"id\":2") && text.contains("-32001"),
            "{text}"
        );
        assert!(
            text.contains("***-**-1120"),
            "later messages are still inspected: {text}"
        );
        assert_eq!(
            text.matches("event: message").count(),
            3,
            "the notification is dropped: {text}"
        );
    }
}

#[test]
fn a_value_split_across_many_events_of_one_read_is_redacted() {
    let cfg = CompiledConfig::new(&palisade_policy::load::default_config())
        .unwrap_or_else(|e| panic!("{e}"));
    let p = cfg
        .policy("default")
        .unwrap_or_else(|| panic!("no default policy"));
    let answer =
        "Customer 42 is Jane Doe. Her SSN is 078-05-1120 and her card is 4111 1111 1111 1111.";
    let chars: Vec<char> = answer.chars().collect();
    let mut input: String = chars
        .chunks(5)
        .map(|c| openai_chunk(&c.iter().collect::<String>()))
        .collect();
    input.push_str("data: [DONE]\n\n");
    for chunk in [input.len(), 64, 7] {
        let (out, blocked) = run(
            p,
            Protocol::Openai,
            input.as_bytes(),
            chunk,
            StreamLimits::default(),
        );
        let text = String::from_utf8_lossy(&out);
        assert!(!blocked);
        let said: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert!(!said.contains("078-05-1120"), "chunk {chunk}: {said}");
        assert!(
            !said.contains("4111 1111 1111 1111"),
            "chunk {chunk}: {said}"
        );
    }
}

#[test]
fn mcp_tools_list_changed_is_noticed_once_and_passes_unchanged() {
    let c = policy("policies:\n  p: {}\n");
    let Some(p) = c.policy("p") else {
        panic!("no policy")
    };
    let note = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
    // A tool result that merely mentions the method is not the notification.
    let mention = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"notifications/tools/list_changed\"}]}}\n\n";
    let mut s = StreamInspector::new(
        p.clone(),
        Direction::Response,
        Protocol::Mcp,
        Framing::Sse,
        StreamLimits::default(),
        "req-1",
        None,
        None,
    );
    let mut out = Vec::new();
    for o in s.push(mention.as_bytes()).unwrap_or_default() {
        if let StreamOutput::Data(b) = o {
            out.extend(b);
        }
    }
    assert!(!s.take_list_changed());
    // Split inside the method name: noticed when the event is whole.
    let (a, b) = note.split_at(40);
    for part in [a, b] {
        for o in s.push(part.as_bytes()).unwrap_or_default() {
            if let StreamOutput::Data(b) = o {
                out.extend(b);
            }
        }
    }
    for o in s.flush() {
        if let StreamOutput::Data(b) = o {
            out.extend(b);
        }
    }
    assert!(s.take_list_changed());
    assert!(!s.take_list_changed());
    assert_eq!(String::from_utf8_lossy(&out), format!("{mention}{note}"));
}
