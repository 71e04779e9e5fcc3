//! The SSE and NDJSON decoders on arbitrary bytes split at arbitrary points: no panic, the same
//! events whatever the split, and raw bytes kept exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_protocol::sse::{NdjsonDecoder, SseDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let cut = (split as usize).min(body.len());
    let whole = {
        let mut d = SseDecoder::new(1 << 16);
        d.push(body).map(|mut v| {
            v.extend(d.finish().ok().flatten());
            v
        })
    };
    let parts = {
        let mut d = SseDecoder::new(1 << 16);
        let first = d.push(&body[..cut]);
        first.and_then(|mut v| {
            v.extend(d.push(&body[cut..])?);
            v.extend(d.finish().ok().flatten());
            Ok(v)
        })
    };
    if let (Ok(a), Ok(b)) = (&whole, &parts) {
        let data_a: Vec<_> = a.iter().map(|e| (&e.data, &e.event)).collect();
        let data_b: Vec<_> = b.iter().map(|e| (&e.data, &e.event)).collect();
        assert_eq!(data_a, data_b);
    }
    let mut n = NdjsonDecoder::new(1 << 16);
    let _ = n.push(&body[..cut]);
    let _ = n.push(&body[cut..]);
    let _ = n.finish();
});
