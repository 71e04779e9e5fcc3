//! Every built-in detector on arbitrary UTF-8: no panic, spans inside the text.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_detect::DetectorSet;

fuzz_target!(|data: &[u8]| {
    static SET: OnceLock<DetectorSet> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else { return };
    for f in SET.get_or_init(DetectorSet::builtin).scan(text) {
        assert!(f.span.end <= text.len() && text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end));
    }
});
