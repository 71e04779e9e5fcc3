//! The configuration parser on arbitrary text: it accepts or refuses, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = palisade_policy::parse_str(text, "<fuzz>");
});
