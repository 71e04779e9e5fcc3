//! The WebSocket frame decoder on arbitrary bytes split at an arbitrary point: no panic, the same
//! events whatever the split, and re-encoded messages decode to the same payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_protocol::ws::{encode_frame, WsDecoder, WsEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let cut = (split as usize).min(body.len());
    let whole = WsDecoder::new(1 << 16).push(body);
    let mut d = WsDecoder::new(1 << 16);
    let parts = d.push(&body[..cut]).and_then(|mut a| {
        a.extend(d.push(&body[cut..])?);
        Ok(a)
    });
    if let (Ok(a), Ok(b)) = (&whole, &parts) {
        assert_eq!(a, b);
        for e in a {
            if let WsEvent::Message { opcode, payload, .. } = e {
                let again = WsDecoder::new(1 << 17).push(&encode_frame(*opcode, payload, Some([9, 8, 7, 6]))).expect("re-encoded frame decodes");
                assert!(matches!(&again[0], WsEvent::Message { payload: p, .. } if p == payload));
            }
        }
    }
});
