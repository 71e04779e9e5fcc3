//! The one normalisation pass that every detector shares.
//!
//! [`Normalized::new`] builds three views of a text:
//!
//! - the **original**, untouched; every span a detector reports points into it;
//! - the **folded** view: each character decomposed for compatibility (NFKD, so full-width,
//!   mathematical and ligature forms become plain letters), combining marks dropped (accents and
//!   "zalgo" stacks), common Cyrillic and Greek look-alikes folded to Latin, invisible characters
//!   removed, and everything lower-cased. A byte map leads from every folded byte back to the
//!   original character it came from, so [`Normalized::to_original`] turns a folded span into an
//!   original one;
//! - **decoded** segments: runs of base64, hex, percent-encoding and HTML entities, decoded when
//!   the result is printable text, up to [`NormalizeOptions::max_decode_depth`] levels deep and
//!   [`NormalizeOptions::max_decoded_bytes`] bytes in total. Each keeps the span of the encoded run.
//!
//! ASCII input, by far the common case, takes a fast path: folding is a lower-case copy and the
//! byte map is the identity, so it is not stored. Every step is a single left-to-right pass, and
//! decoding is capped in depth and total size, so the whole pass is linear in the input.
//!
//! ROT13 and leetspeak are not applied here: they only make sense for natural-language detectors
//! and would destroy tokens that other detectors need. [`rot13`] and [`deleet`] are offered for
//! detectors that want them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use unicode_normalization::char::{decompose_compatible, is_combining_mark};

use crate::Span;

/// Limits and switches for normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeOptions {
    /// Decode encoded runs at all.
    pub decode: bool,
    /// How many levels of nested encoding to peel (base64 inside percent-encoding is two).
    pub max_decode_depth: u8,
    /// Total bytes of decoded text kept for one input, across all levels.
    pub max_decoded_bytes: usize,
    /// Most decoded segments kept for one input.
    pub max_decoded_segments: usize,
    /// Shortest base64 run considered, in characters.
    pub min_base64_len: usize,
    /// Shortest hex run considered, in hex digits.
    pub min_hex_len: usize,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        NormalizeOptions {
            decode: true,
            max_decode_depth: 2,
            max_decoded_bytes: 256 * 1024,
            max_decoded_segments: 64,
            min_base64_len: 16,
            min_hex_len: 16,
        }
    }
}

/// An encoding that normalisation can peel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Standard or URL-safe base64, padded or not.
    Base64,
    /// Hexadecimal bytes, contiguous or separated by spaces, `\x` or `0x`.
    Hex,
    /// Percent-encoding (`%3C`, `+` for space).
    Url,
    /// HTML character references (`&lt;`, `&#60;`, `&#x3c;`).
    Html,
    /// ROT13 (applied by detectors that ask for it).
    Rot13,
}

impl Encoding {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
            Encoding::Hex => "hex",
            Encoding::Url => "url",
            Encoding::Html => "html",
            Encoding::Rot13 => "rot13",
        }
    }
}

/// A run of the original text that decoded to printable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The encoded run in the original text (for nested encodings, the outermost run).
    pub span: Span,
    /// The innermost encoding peeled to get [`Decoded::text`].
    pub encoding: Encoding,
    /// 1 for a run of the original text, 2 for a run inside a decoded run, …
    pub depth: u8,
    /// The decoded text, case preserved.
    pub text: String,
    /// The decoded text folded like [`Normalized::folded`].
    pub folded: String,
}

/// A text prepared once for all detectors. See the module documentation.
#[derive(Debug, Clone)]
pub struct Normalized<'a> {
    original: &'a str,
    folded: String,
    /// For each folded byte, the offset of the original char it came from. `None` means identity.
    map: Option<Vec<u32>>,
    invisible: Vec<Span>,
    decoded: Vec<Decoded>,
}

impl<'a> Normalized<'a> {
    /// Normalises `text`.
    pub fn new(text: &'a str, options: &NormalizeOptions) -> Self {
        let (folded, map, invisible) = if text.is_ascii() {
            (text.to_ascii_lowercase(), None, Vec::new())
        } else {
            let (f, m, inv) = fold_unicode(text);
            (f, Some(m), inv)
        };
        let mut n = Normalized {
            original: text,
            folded,
            map,
            invisible,
            decoded: Vec::new(),
        };
        if options.decode {
            n.decoded = decode_all(text, options);
        }
        n
    }

    /// The text as given.
    pub fn original(&self) -> &'a str {
        self.original
    }

    /// The folded view (see the module documentation).
    pub fn folded(&self) -> &str {
        &self.folded
    }

    /// Whether the folded view maps byte-for-byte onto the original (ASCII input).
    pub fn is_identity(&self) -> bool {
        self.map.is_none()
    }

    /// Runs of invisible characters removed from the folded view, as spans of the original.
    pub fn invisible_runs(&self) -> &[Span] {
        &self.invisible
    }

    /// Decoded segments, outermost first.
    pub fn decoded(&self) -> &[Decoded] {
        &self.decoded
    }

    /// Turns a byte range of the folded view into the span of original characters that produced
    /// it. Out-of-range input is clamped.
    pub fn to_original(&self, start: usize, end: usize) -> Span {
        let flen = self.folded.len();
        let start = start.min(flen);
        let end = end.min(flen).max(start);
        match &self.map {
            None => Span::new(start, end),
            Some(map) => {
                if start == flen {
                    let o = self.original.len();
                    return Span::new(o, o);
                }
                let os = map.get(start).copied().unwrap_or(0) as usize;
                if end == start {
                    return Span::new(os, os);
                }
                let last = map.get(end - 1).copied().unwrap_or(0) as usize;
                let oe = last + char_len_at(self.original, last);
                Span::new(os, oe.max(os))
            }
        }
    }
}

fn char_len_at(s: &str, i: usize) -> usize {
    s.get(i..)
        .and_then(|t| t.chars().next())
        .map_or(0, char::len_utf8)
}

/// Whether `c` is invisible or a format control that a reader cannot see: zero-width characters,
/// bidi controls, Unicode tags, variation selectors, soft hyphens and the like.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FFF0}'..='\u{FFF8}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}')
}

/// Folds a look-alike letter from another script to the Latin letter it imitates.
fn confusable(c: char) -> char {
    match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ε' | 'ё' => 'e',
        'һ' => 'h',
        'і' | 'ι' | 'ı' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'ⅼ' | 'ӏ' => 'l',
        'м' => 'm',
        'п' | 'η' => 'n',
        'о' | 'ο' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'г' => 'r',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' | 'ц' => 'u',
        'ѵ' | 'ν' => 'v',
        'ԝ' | 'ω' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'С' => 'C',
        'Е' | 'Ε' => 'E',
        'Н' | 'Η' => 'H',
        'І' | 'Ι' => 'I',
        'Ј' => 'J',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'Ѕ' => 'S',
        'Т' | 'Τ' => 'T',
        'Х' | 'Χ' => 'X',
        'У' | 'Υ' => 'Y',
        'Ζ' => 'Z',
        '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2032}' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201F}' | '\u{2033}' => '"',
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => ' ',
        _ => c,
    }
}

fn fold_unicode(text: &str) -> (String, Vec<u32>, Vec<Span>) {
    let mut out = String::with_capacity(text.len());
    let mut map: Vec<u32> = Vec::with_capacity(text.len());
    let mut invisible: Vec<Span> = Vec::new();
    let mut buf = [0u8; 4];
    for (i, c) in text.char_indices() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            map.push(i as u32);
            continue;
        }
        if is_invisible(c) {
            let end = i + c.len_utf8();
            match invisible.last_mut() {
                Some(last) if last.end == i => last.end = end,
                _ => invisible.push(Span::new(i, end)),
            }
            continue;
        }
        decompose_compatible(c, |d| {
            if is_combining_mark(d) || is_invisible(d) {
                return;
            }
            let d = confusable(d);
            for l in d.to_lowercase() {
                let s = l.encode_utf8(&mut buf);
                out.push_str(s);
                for _ in 0..s.len() {
                    map.push(i as u32);
                }
            }
        });
    }
    (out, map, invisible)
}

/// Folds a string without keeping the byte map (used for decoded segments).
pub fn fold(text: &str) -> String {
    if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        fold_unicode(text).0
    }
}

/// ROT13 of ASCII letters; everything else is kept.
pub fn rot13(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='m' | 'A'..='M' => (c as u8 + 13) as char,
            'n'..='z' | 'N'..='Z' => (c as u8 - 13) as char,
            _ => c,
        })
        .collect()
}

/// Undoes common leetspeak (`1gn0r3` → `ignore`) inside words that also contain letters.
/// Byte lengths are preserved, so offsets stay valid.
pub fn deleet(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    if !bytes.iter().any(|b| LEET.iter().any(|(l, _)| l == b)) {
        return Cow::Borrowed(text);
    }
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || b"@$!|".contains(&bytes[i])) {
            i += 1;
        }
        let word = &bytes[start..i];
        if word.iter().any(u8::is_ascii_alphabetic) && word.iter().any(|b| !b.is_ascii_alphabetic())
        {
            for (k, b) in word.iter().enumerate() {
                if let Some((_, to)) = LEET.iter().find(|(l, _)| l == b) {
                    out[start + k] = *to;
                }
            }
        }
        if i == start {
            i += 1;
        }
    }
    // Only ASCII bytes were swapped for ASCII bytes, so the result is still UTF-8.
    Cow::Owned(String::from_utf8(out).unwrap_or_else(|_| text.to_owned()))
}

const LEET: [(u8, u8); 9] = [
    (b'0', b'o'),
    (b'1', b'i'),
    (b'3', b'e'),
    (b'4', b'a'),
    (b'5', b's'),
    (b'7', b't'),
    (b'@', b'a'),
    (b'$', b's'),
    (b'!', b'i'),
];

// ---------------------------------------------------------------------------------------------
// Decoding

struct Budget {
    bytes: usize,
    segments: usize,
}

fn decode_all(text: &str, options: &NormalizeOptions) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut budget = Budget {
        bytes: options.max_decoded_bytes,
        segments: options.max_decoded_segments,
    };
    decode_level(text, None, 1, options, &mut budget, &mut out);
    out
}

fn decode_level(
    text: &str,
    outer: Option<Span>,
    depth: u8,
    options: &NormalizeOptions,
    budget: &mut Budget,
    out: &mut Vec<Decoded>,
) {
    if depth > options.max_decode_depth || budget.segments == 0 || budget.bytes == 0 {
        return;
    }
    let mut found: Vec<(Span, Encoding, String)> = Vec::new();
    let bytes = text.as_bytes();
    let (b64_runs, hex_runs) = long_runs(bytes, options.min_base64_len, options.min_hex_len);
    for (start, end) in b64_runs {
        decode_base64_run(bytes, start, end, &mut found);
    }
    for (start, end) in hex_runs {
        parse_hex_run(bytes, start, end, options.min_hex_len, &mut found);
    }
    if memchr::memchr(b'%', text.as_bytes()).is_some() {
        find_escaped(text, b'%', Encoding::Url, percent_decode, &mut found);
    }
    if memchr::memchr(b'&', text.as_bytes()).is_some() {
        find_escaped(text, b'&', Encoding::Html, html_decode, &mut found);
    }
    for (span, encoding, decoded) in found {
        if budget.segments == 0 || decoded.len() > budget.bytes {
            break;
        }
        budget.segments -= 1;
        budget.bytes -= decoded.len();
        let outer_span = outer.unwrap_or(span);
        let folded = fold(&decoded);
        out.push(Decoded {
            span: outer_span,
            encoding,
            depth,
            text: decoded,
            folded,
        });
        let idx = out.len() - 1;
        let inner = out[idx].text.clone();
        decode_level(&inner, Some(outer_span), depth + 1, options, budget, out);
    }
}

const B64: u8 = 1;
const HEX: u8 = 2;
const HEXISH: u8 = 4;

/// Byte classes for the decoders' scans, looked up instead of branched on: the scans touch every
/// byte of every input, so they must cost a cycle or two a byte.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=') {
            c |= B64;
        }
        if b.is_ascii_hexdigit() {
            c |= HEX | HEXISH;
        }
        if matches!(b, b'\\' | b'x' | b'X' | b' ') {
            c |= HEXISH;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// A byte range `(start, end)` of a candidate run.
type Run = (usize, usize);

/// Finds, in one pass, every maximal run of base64 characters at least `min_b64` long and every
/// maximal run of hex-payload characters at least `min_hex` long.
///
/// Ordinary text, whose runs are short, costs a couple of cycles a byte: each run start is kept
/// with a select that compiles to a conditional move, so the loop has no unpredictable branch;
/// only runs reaching their minimum take the slow path.
fn long_runs(bytes: &[u8], min_b64: usize, min_hex: usize) -> (Vec<Run>, Vec<Run>) {
    let (min_b64, min_hex) = (min_b64.max(1), min_hex.max(1));
    let (mut b64, mut hex) = (Vec::new(), Vec::new());
    // One past the last byte outside each class.
    let (mut b64_start, mut hex_start) = (0usize, 0usize);
    // Runs already reported extend to these ends; later bytes inside them are skipped.
    let (mut b64_done, mut hex_done) = (0usize, 0usize);
    let extend = |from: usize, mask: u8| {
        let mut end = from;
        while end < bytes.len() && CLASS[bytes[end] as usize] & mask != 0 {
            end += 1;
        }
        end
    };
    for (i, &b) in bytes.iter().enumerate() {
        let class = CLASS[b as usize];
        b64_start = if class & B64 == 0 { i + 1 } else { b64_start };
        hex_start = if class & HEXISH == 0 {
            i + 1
        } else {
            hex_start
        };
        if i + 1 - b64_start >= min_b64 && i >= b64_done {
            b64_done = extend(i + 1, B64);
            b64.push((b64_start, b64_done));
        }
        if i + 1 - hex_start >= min_hex && i >= hex_done {
            hex_done = extend(i + 1, HEXISH);
            hex.push((hex_start, hex_done));
        }
    }
    (b64, hex)
}

fn decode_base64_run(
    bytes: &[u8],
    start: usize,
    end: usize,
    found: &mut Vec<(Span, Encoding, String)>,
) {
    let run = &bytes[start..end];
    let has_upper = run.iter().any(u8::is_ascii_uppercase);
    let has_lower = run.iter().any(u8::is_ascii_lowercase);
    let has_digit_or_sym = run
        .iter()
        .any(|b| b.is_ascii_digit() || matches!(b, b'+' | b'/' | b'='));
    if !(has_upper && has_lower) && !(has_digit_or_sym && (has_upper || has_lower)) {
        return;
    }
    if let Some(decoded) = base64_decode(run).and_then(printable_text) {
        found.push((Span::new(start, end), Encoding::Base64, decoded));
    }
}

fn b64_value(b: u8) -> Option<u32> {
    Some(match b {
        b'A'..=b'Z' => (b - b'A') as u32,
        b'a'..=b'z' => (b - b'a') as u32 + 26,
        b'0'..=b'9' => (b - b'0') as u32 + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    })
}

/// Decodes standard or URL-safe base64, with or without padding.
pub fn base64_decode(run: &[u8]) -> Option<Vec<u8>> {
    let data: &[u8] = {
        let mut end = run.len();
        while end > 0 && run[end - 1] == b'=' {
            end -= 1;
        }
        &run[..end]
    };
    if data.len() % 4 == 1 || data.contains(&b'=') {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in data {
        acc = (acc << 6) | b64_value(b)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Accepts decoded bytes only when they read as text: valid UTF-8, mostly printable, with some
/// letters.
fn printable_text(bytes: Vec<u8>) -> Option<String> {
    let s = String::from_utf8(bytes).ok()?;
    let total = s.chars().count();
    if total < 4 {
        return None;
    }
    let mut printable = 0usize;
    let mut letters = 0usize;
    for c in s.chars() {
        if c.is_alphanumeric() || c.is_whitespace() || c.is_ascii_punctuation() {
            printable += 1;
        }
        if c.is_alphabetic() {
            letters += 1;
        }
    }
    if printable * 100 >= total * 90 && letters * 100 >= total * 30 {
        Some(s)
    } else {
        None
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn parse_hex_run(
    bytes: &[u8],
    run_start: usize,
    run_end: usize,
    min_digits: usize,
    found: &mut Vec<(Span, Encoding, String)>,
) {
    let mut i = run_start;
    while i < run_end {
        if hex_val(bytes[i]).is_none() && bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        // A run of hex pairs, optionally separated by spaces, `\x` or `0x`.
        let start = i;
        let mut out = Vec::new();
        let mut last_end = i;
        let mut j = i;
        loop {
            let mut k = j;
            let escaped = bytes.get(k) == Some(&b'\\') && bytes.get(k + 1) == Some(&b'x');
            let prefixed = bytes.get(k) == Some(&b'0')
                && bytes.get(k + 1) == Some(&b'x')
                && bytes.get(k + 2).and_then(|b| hex_val(*b)).is_some();
            if escaped || prefixed {
                k += 2;
            }
            let (Some(h), Some(l)) = (
                bytes.get(k).and_then(|b| hex_val(*b)),
                bytes.get(k + 1).and_then(|b| hex_val(*b)),
            ) else {
                break;
            };
            out.push(h << 4 | l);
            k += 2;
            last_end = k;
            if bytes.get(k) == Some(&b' ')
                && bytes.get(k + 1).and_then(|b| hex_val(*b)).is_some()
                && bytes.get(k + 2).and_then(|b| hex_val(*b)).is_some()
                && bytes.get(k + 3).is_none_or(|b| !b.is_ascii_hexdigit())
            {
                k += 1;
            }
            j = k;
        }
        if last_end == start {
            i += 1;
            continue;
        }
        i = last_end;
        let boundary_ok = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
        if !boundary_ok || out.len() * 2 < min_digits {
            continue;
        }
        if bytes.get(last_end).is_some_and(u8::is_ascii_alphanumeric) {
            continue;
        }
        if let Some(decoded) = printable_text(out) {
            found.push((Span::new(start, last_end), Encoding::Hex, decoded));
        }
    }
}

/// Finds whitespace-delimited runs containing `marker` and decodes them with `decode`, keeping the
/// runs whose decoding changed something.
fn find_escaped(
    text: &str,
    marker: u8,
    encoding: Encoding,
    decode: fn(&str) -> Option<String>,
    found: &mut Vec<(Span, Encoding, String)>,
) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = memchr::memchr(marker, &bytes[i..]) {
        let at = i + off;
        let mut start = at;
        while start > 0 && !bytes[start - 1].is_ascii_whitespace() {
            start -= 1;
        }
        let mut end = at;
        while end < bytes.len() && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        // Runs start and end at ASCII whitespace or the text's ends, so they are char boundaries.
        if let Some(run) = text.get(start..end) {
            if let Some(d) = decode(run) {
                if d != run && !d.is_empty() {
                    found.push((Span::new(start, end), encoding, d));
                }
            }
        }
        i = end.max(at + 1);
        if i >= bytes.len() {
            break;
        }
    }
}

/// Percent-decodes `s` (and `+` as space). Returns `None` when nothing was escaped or the result is
/// not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if let (Some(h), Some(l)) = (
                    bytes.get(i + 1).and_then(|b| hex_val(*b)),
                    bytes.get(i + 2).and_then(|b| hex_val(*b)),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    changed = true;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    if !changed {
        return None;
    }
    String::from_utf8(out).ok()
}

/// Decodes HTML character references. Returns `None` when there were none.
pub fn html_decode(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let semi = tail.as_bytes().iter().take(12).position(|&b| b == b';');
        let decoded = semi.and_then(|semi| {
            let name = &tail[1..semi];
            let c = if let Some(num) = name.strip_prefix('#') {
                let v = if let Some(hex) = num.strip_prefix(['x', 'X']) {
                    u32::from_str_radix(hex, 16).ok()
                } else {
                    num.parse::<u32>().ok()
                };
                v.and_then(char::from_u32)
            } else {
                match name {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "amp" => Some('&'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "nbsp" => Some(' '),
                    "sol" => Some('/'),
                    "colon" => Some(':'),
                    "lpar" => Some('('),
                    "rpar" => Some(')'),
                    "equals" => Some('='),
                    "Tab" => Some('\t'),
                    "NewLine" => Some('\n'),
                    _ => None,
                }
            };
            c.map(|c| (c, semi + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &tail[used..];
                changed = true;
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    changed.then_some(out)
}

#[cfg(test)]
mod tests;
