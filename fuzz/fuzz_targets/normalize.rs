//! Normalisation on arbitrary UTF-8: no panic, and every folded range maps back inside the text on
//! char boundaries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_detect::{NormalizeOptions, Normalized};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let n = Normalized::new(text, &NormalizeOptions::default());
    let flen = n.folded().len();
    for (a, b) in [(0, flen), (0, flen / 2), (flen / 3, flen), (flen / 2, flen / 2 + 1)] {
        let s = n.to_original(a, b);
        assert!(s.start <= s.end && s.end <= text.len());
        assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
    }
    for d in n.decoded() {
        assert!(d.span.end <= text.len() && text.is_char_boundary(d.span.start));
    }
});
