//! The decoders on arbitrary bytes and strings: no panic, bounded output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_detect::normalize::{base64_decode, deleet, html_decode, percent_decode, rot13};

fuzz_target!(|data: &[u8]| {
    if let Some(out) = base64_decode(data) {
        assert!(out.len() <= data.len());
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(out) = percent_decode(text) {
        assert!(out.len() <= text.len());
    }
    let _ = html_decode(text);
    assert_eq!(deleet(text).len(), text.len());
    assert_eq!(rot13(text).len(), text.len());
});
