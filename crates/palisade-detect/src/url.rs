//! URLs: every link in a text, so that a policy can defang, allow-list or log it.
//!
//! [`find_urls`] is the one URL extractor of the crate; [`crate::exfil`] reuses it. It finds
//! schemed URLs (`http`, `https`, `ftp`, `ftps`, `sftp`, `ws`, `wss`, `file`, `gopher`, `dict`,
//! `ldap`, `ldaps`, `data:`, `javascript:`, `vbscript:`, `mailto:`) and bare `www.` hosts. An
//! Aho-Corasick automaton over the scheme prefixes is the prefilter, so text without any of them
//! costs one pass of the automaton and nothing else.
//!
//! A URL runs to the first whitespace, control character, quote-like delimiter or angle bracket;
//! trailing sentence punctuation (`.,;:!?'"*`) is then dropped, and a closing `)`, `]` or `}` is
//! kept only when it closes a bracket opened inside the URL, as in
//! `https://en.wikipedia.org/wiki/Rust_(programming_language)`, so a markdown link's `)` is not
//! swallowed. The trade-off of this greedy, grammar-free scan is that a URL written without any
//! delimiter before the following word (`see https://a.io/x,and more`) keeps the tail; it never
//! loses the host, which is what policies act on.

use crate::{Detector, DetectorId, Finding, Normalized, Severity, Span};

/// Reports every URL as kind `url`, severity low.
#[derive(Debug, Default)]
pub struct UrlDetector {
    // Not a unit struct, so that options can be added without breaking `default()` callers.
    _options: (),
}

impl Detector for UrlDetector {
    fn id(&self) -> DetectorId {
        DetectorId::Url
    }

    fn detect(&self, input: &Normalized<'_>, out: &mut Vec<Finding>) {
        let text = input.original();
        for u in find_url_matches(text) {
            let confidence = if u.bare { 0.9 } else { 1.0 };
            out.push(Finding::new(
                DetectorId::Url,
                "url",
                Severity::Low,
                confidence,
                u.span,
            ));
        }
    }
}

/// How a URL was introduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://` or `https://`.
    Http,
    /// Any other `scheme://` (ftp, ws, file, gopher, …).
    OtherNetwork,
    /// `data:`.
    Data,
    /// `javascript:` or `vbscript:`.
    Script,
    /// `mailto:`.
    Mailto,
    /// A bare `www.` host.
    Bare,
}

/// One URL found by [`find_url_matches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlMatch {
    /// Where the URL is in the text.
    pub span: Span,
    /// How it was introduced.
    pub scheme: Scheme,
    /// Whether it had no scheme (`www.example.com`).
    pub bare: bool,
}

/// The scheme prefixes, lower case; matched ASCII case-insensitively.
const PREFIXES: &[(&str, Scheme)] = &[
    ("http://", Scheme::Http),
    ("https://", Scheme::Http),
    ("ftp://", Scheme::OtherNetwork),
    ("ftps://", Scheme::OtherNetwork),
    ("sftp://", Scheme::OtherNetwork),
    ("ws://", Scheme::OtherNetwork),
    ("wss://", Scheme::OtherNetwork),
    ("file:/", Scheme::OtherNetwork),
    ("gopher://", Scheme::OtherNetwork),
    ("dict://", Scheme::OtherNetwork),
    ("ldap://", Scheme::OtherNetwork),
    ("ldaps://", Scheme::OtherNetwork),
    ("data:", Scheme::Data),
    ("javascript:", Scheme::Script),
    ("vbscript:", Scheme::Script),
    ("mailto:", Scheme::Mailto),
    ("www.", Scheme::Bare),
];

/// Where scheme prefixes start, in text order: `(start, end of the prefix, index into
/// [`PREFIXES`])`. Every prefix but `www.` ends in `:` plus its slashes, so candidates come from
/// the colons (the scheme is the longest known tail of the letters before one) and from `w`s;
/// prose, with few of either, is scanned at memchr speed.
fn prefix_matches(text: &str) -> Vec<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    let mut out: Vec<(usize, usize, usize)> = Vec::new();
    for colon in memchr::memchr_iter(b':', bytes) {
        let mut letters = colon;
        while letters > 0 && colon - letters < 10 && bytes[letters - 1].is_ascii_alphabetic() {
            letters -= 1;
        }
        // Longest tail first, as a leftmost-longest match would start there.
        'tails: for start in letters..colon {
            for (i, (prefix, _)) in PREFIXES.iter().enumerate() {
                let p = prefix.as_bytes();
                let name_len = colon - start;
                if p.get(name_len) != Some(&b':') {
                    continue;
                }
                let end = start + p.len();
                if bytes
                    .get(start..end)
                    .is_some_and(|w| w.eq_ignore_ascii_case(p))
                {
                    out.push((start, end, i));
                    break 'tails;
                }
            }
        }
    }
    let www = PREFIXES.iter().position(|(p, _)| *p == "www.");
    if let Some(wi) = www {
        let mut bare = Vec::new();
        for at in memchr::memchr2_iter(b'w', b'W', bytes) {
            if bytes
                .get(at..at + 4)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"www."))
            {
                bare.push((at, at + 4, wi));
            }
        }
        if !bare.is_empty() {
            out.extend(bare);
            out.sort_unstable_by_key(|m| m.0);
        }
    }
    out
}

/// Every URL in `text`, in order, as spans of `text`.
pub fn find_urls(text: &str) -> Vec<Span> {
    find_url_matches(text).into_iter().map(|u| u.span).collect()
}

/// Every URL in `text`, in order, with how it was introduced.
pub fn find_url_matches(text: &str) -> Vec<UrlMatch> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    // URLs never overlap: a prefix inside an already reported URL is part of it. Prefixes do not
    // overlap either: one that starts inside the previous one is not a match of its own.
    let mut covered = 0usize;
    let mut prefix_end = 0usize;
    for (start, end_of_prefix, index) in prefix_matches(text) {
        if start < covered || start < prefix_end {
            continue;
        }
        prefix_end = end_of_prefix;
        let Some(&(_, scheme)) = PREFIXES.get(index) else {
            continue;
        };
        // A scheme glued to a word (`seehttps://x.io`) still starts a URL: the link works when
        // pasted, and redaction must not leave it behind. Schemes without `//` (`data:`,
        // `mailto:`) and bare `www.` need a word boundary, or ordinary words would match.
        let prev = start.checked_sub(1).and_then(|i| bytes.get(i)).copied();
        let glued = prev.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let has_slashes = PREFIXES.get(index).is_some_and(|(p, _)| p.ends_with("//"));
        if glued && !has_slashes {
            continue;
        }
        if scheme == Scheme::Bare && prev.is_some_and(|b| matches!(b, b'.' | b'/' | b'@' | b'-')) {
            continue;
        }
        let body_start = end_of_prefix;
        let end = url_end(text, start, body_start, scheme == Scheme::Data);
        if !body_ok(bytes, scheme, body_start, end) {
            continue;
        }
        covered = end;
        out.push(UrlMatch {
            span: Span::new(start, end),
            scheme,
            bare: scheme == Scheme::Bare,
        });
    }
    out
}

/// Whether what follows the prefix looks like the rest of a URL of that scheme.
fn body_ok(bytes: &[u8], scheme: Scheme, body_start: usize, end: usize) -> bool {
    let body = bytes.get(body_start..end).unwrap_or_default();
    let first = body.first().copied();
    match scheme {
        Scheme::Http | Scheme::OtherNetwork => {
            !body.is_empty()
                && first.is_some_and(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'[' | b'/' | b'%' | b'_') || b >= 0x80
                })
        }
        Scheme::Data => {
            // `data:text/html,…`, `data:image/png;base64,…`, `data:,hello`.
            first == Some(b',')
                || (first.is_some_and(|b| b.is_ascii_alphabetic())
                    && body.iter().take(64).any(|&b| b == b'/' || b == b','))
        }
        Scheme::Script => body.len() >= 2,
        Scheme::Mailto => body.contains(&b'@'),
        Scheme::Bare => {
            // `www.` then a host with at least one more dot: `www.example.com`.
            let host_end = body
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
                .unwrap_or(body.len());
            let host = body.get(..host_end).unwrap_or_default();
            let dot = host.iter().position(|&b| b == b'.');
            first.is_some_and(|b| b.is_ascii_alphanumeric())
                && dot
                    .is_some_and(|d| d > 0 && host.get(d + 1).is_some_and(u8::is_ascii_alphabetic))
        }
    }
}

/// Whether `c` ends a URL outright.
fn stops_url(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '<' | '>' | '"' | '`' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
        || matches!(
            c,
            '\u{3000}'
                ..='\u{303F}'
                    | '\u{FF01}'
                    | '\u{FF08}'
                    | '\u{FF09}'
                    | '\u{FF0C}'
                    | '\u{FF1A}'
                    | '\u{FF1B}'
        )
}

/// The end of the URL starting at `start` whose body starts at `body_start`.
fn url_end(text: &str, start: usize, body_start: usize, markup_ok: bool) -> usize {
    let bytes = text.as_bytes();
    // A URL opened by a quote ends at the matching quote.
    let opener = start.checked_sub(1).and_then(|i| bytes.get(i)).copied();
    let mut end = body_start;
    for (i, c) in text.get(body_start..).unwrap_or_default().char_indices() {
        // A `data:` URL carries markup (`data:text/html,<script>…`) and keeps its angle brackets.
        let markup = markup_ok && matches!(c, '<' | '>');
        if (stops_url(c) && !markup) || (c == '\'' && opener == Some(b'\'')) {
            break;
        }
        end = body_start + i + c.len_utf8();
    }
    trim_trailing(text, start, end)
}

/// Drops trailing punctuation and unbalanced closing brackets.
fn trim_trailing(text: &str, start: usize, mut end: usize) -> usize {
    let bytes = text.as_bytes();
    // Bracket balance of the URL, counted once and updated as bytes are dropped, so a URL
    // followed by thousands of `)` is trimmed in linear time.
    let mut balance = [0isize; 3];
    for &b in bytes.get(start..end).unwrap_or_default() {
        match b {
            b'(' => balance[0] += 1,
            b')' => balance[0] -= 1,
            b'[' => balance[1] += 1,
            b']' => balance[1] -= 1,
            b'{' => balance[2] += 1,
            b'}' => balance[2] -= 1,
            _ => {}
        }
    }
    loop {
        let Some(&last) = end.checked_sub(1).and_then(|i| bytes.get(i)) else {
            return end;
        };
        // A closing bracket stays when the URL has at least as many openers as closers.
        let slot = match last {
            b')' => Some(0),
            b']' => Some(1),
            b'}' => Some(2),
            _ => None,
        };
        let drop = match slot {
            Some(k) => balance.get(k).is_some_and(|&n| n < 0),
            None => matches!(
                last,
                b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\'' | b'"' | b'*'
            ),
        };
        if !drop || end <= start + 1 {
            return end;
        }
        if let Some(n) = slot.and_then(|k| balance.get_mut(k)) {
            *n += 1;
        }
        end -= 1;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// The prefix search as a leftmost-longest Aho-Corasick automaton would do it: the
    /// reference the colon-anchored search must agree with.
    fn reference(text: &str) -> Vec<(usize, usize, usize)> {
        use aho_corasick::{AhoCorasickBuilder, MatchKind};
        let Ok(ac) = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(PREFIXES.iter().map(|(p, _)| p))
        else {
            return Vec::new();
        };
        ac.find_iter(text)
            .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
            .collect()
    }

    /// What the URL loop keeps of the candidates: non-overlapping, in order.
    fn kept(mut c: Vec<(usize, usize, usize)>) -> Vec<(usize, usize, usize)> {
        let mut end = 0;
        c.retain(|m| {
            let keep = m.0 >= end;
            if keep {
                end = m.1;
            }
            keep
        });
        c
    }

    proptest! {
        #[test]
        fn prefix_search_agrees_with_the_automaton(parts in proptest::collection::vec(prop_oneof![
            Just("http://"), Just("HTTPS://"), Just("sftp://"), Just("ftp:/"), Just("file:/"),
            Just("data:"), Just("javascript:"), Just("mailto:"), Just("www."), Just("WwW."),
            Just("x"), Just(":"), Just("/"), Just(" "), Just("meta"), Just("ws"), Just("s"),
            Just("w"), Just("."), Just("é"),
        ], 0..16)) {
            let text: String = parts.concat();
            prop_assert_eq!(kept(prefix_matches(&text)), reference(&text), "{}", text);
        }
    }

    use super::*;

    fn urls(text: &str) -> Vec<&str> {
        find_urls(text)
            .into_iter()
            .filter_map(|s| text.get(s.start..s.end))
            .collect()
    }

    #[test]
    fn trailing_punctuation_and_brackets() {
        assert_eq!(urls("see https://a.io/x."), ["https://a.io/x"]);
        assert_eq!(
            urls("(https://en.wikipedia.org/wiki/Rust_(programming_language))"),
            ["https://en.wikipedia.org/wiki/Rust_(programming_language)"]
        );
        assert_eq!(
            urls("[docs](https://docs.rs/regex)"),
            ["https://docs.rs/regex"]
        );
        assert_eq!(
            urls("'http://x.org/a', 'http://y.org'"),
            ["http://x.org/a", "http://y.org"]
        );
    }

    #[test]
    fn schemes_and_bare_hosts() {
        assert_eq!(urls("go to www.example.com now"), ["www.example.com"]);
        assert!(urls("the www. prefix").is_empty());
        assert_eq!(urls("myhttp://x.org"), ["http://x.org"]);
        assert!(urls("mydata:text/html,x").is_empty());
        assert_eq!(
            urls("<a href=\"javascript:alert(1)\">"),
            ["javascript:alert(1)"]
        );
        assert_eq!(
            urls("data:text/html,<b>hi</b> x"),
            ["data:text/html,<b>hi</b>"]
        );
        assert!(urls("https:// nothing").is_empty());
    }

    #[test]
    fn no_panic_on_odd_input() {
        for t in [
            "http://",
            "www.",
            "é http://ü.de/ä",
            ")http://a.b)",
            "\u{1F600}www.a.b",
        ] {
            let _ = urls(t);
        }
    }
}
