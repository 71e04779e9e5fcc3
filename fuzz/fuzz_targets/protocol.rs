//! Every protocol adapter on arbitrary bytes, both sides: no panic; and for JSON bodies, writing
//! every part back leaves a document that still decodes to parts at the same places.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_protocol::{decode, json, write_back, Protocol, Side};

const PROTOCOLS: [Protocol; 9] = [
    Protocol::Auto,
    Protocol::Text,
    Protocol::Json,
    Protocol::Mcp,
    Protocol::Openai,
    Protocol::Anthropic,
    Protocol::Gemini,
    Protocol::Cohere,
    Protocol::Bedrock,
];

fuzz_target!(|data: &[u8]| {
    let _ = json::string_spans(data);
    for protocol in PROTOCOLS {
        for side in [Side::Request, Side::Response] {
            let Ok(decoded) = decode(protocol, side, data, None) else { continue };
            let edits: Vec<_> = decoded.parts.iter().map(|p| (p.location.clone(), "x".to_owned())).collect();
            if let Ok(out) = write_back(data, &edits) {
                if protocol != Protocol::Text && protocol != Protocol::Auto {
                    let again = decode(protocol, side, &out, None).expect("an edited body still decodes");
                    assert_eq!(again.parts.len(), decoded.parts.len());
                }
            }
        }
    }
});
