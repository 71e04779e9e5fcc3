//! Redaction operators, applied to spans of the original text.
//!
//! | operator | result for `555-123-7890` (a phone) | use |
//! | --- | --- | --- |
//! | `mask` | `***-***-7890` | a human can still tell which record it was |
//! | `replace` | `[PHONE_1]` | typed, numbered per distinct value within one text |
//! | `hash` | `[PHONE_5c1f0e5a4b]` | keyed (HMAC-SHA-256): the same value gives the same token across texts |
//! | `remove` | (nothing) | |
//! | `defang` | `hxxps://evil[.]com` for a URL | links that cannot be clicked or fetched |
//!
//! Overlapping spans are merged first, and the merged span takes the operator of the edit that
//! starts first (the longer one on a tie), so no byte of a detected value survives a redaction
//! except the tail that `mask` keeps on purpose (and a merged span keeps no tail, since it could
//! belong to another value). `mask` never keeps more than half of a value's
//! letters and digits, so a short value is never left whole, and keeps nothing when the span ends
//! inside a word or number.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Span;

/// How to rewrite a detected value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "operator")]
pub enum Redaction {
    /// Replace letters and digits with `*`, keeping the last `keep_last` of them (at most half).
    Mask {
        /// How many trailing letters and digits to keep.
        keep_last: usize,
    },
    /// A typed placeholder such as `[EMAIL_1]`, stable for the same value within one text.
    Replace,
    /// A keyed hash token such as `[EMAIL_5c1f0e5a4b]`, stable for the same value and key.
    Hash,
    /// Delete the value.
    Remove,
    /// Make a URL (or an email or host name) inert: `hxxps://evil[.]com`.
    Defang,
}

/// One rewrite to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The bytes to rewrite, in the original text.
    pub span: Span,
    /// The finding's kind, used for placeholders (`email` → `[EMAIL_1]`).
    pub kind: String,
    /// The operator.
    pub redaction: Redaction,
}

/// Applies redaction edits to texts.
#[derive(Clone)]
pub struct Redactor {
    key: Vec<u8>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Redactor {
    /// A redactor whose `hash` operator is keyed with `key`.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Redactor { key: key.into() }
    }

    /// Returns `text` with every edit applied. Spans out of range or off char boundaries are
    /// widened to the nearest boundaries inside the text.
    pub fn apply(&self, text: &str, edits: &[Edit]) -> String {
        let merged = merge(text, edits);
        let mut out = String::with_capacity(text.len());
        let mut numbering: HashMap<(&str, &str), usize> = HashMap::new();
        let mut per_kind: HashMap<&str, usize> = HashMap::new();
        let mut pos = 0;
        for (e, punctuation_only) in &merged {
            out.push_str(&text[pos..e.span.start]);
            let value = &text[e.span.start..e.span.end];
            match &e.redaction {
                Redaction::Mask { keep_last } => {
                    // A span that ends inside a word or number has no tail of its own to keep:
                    // the kept characters would join what follows into something else.
                    let cut = text[e.span.end..]
                        .chars()
                        .next()
                        .is_some_and(char::is_alphanumeric);
                    let keep = if cut { 0 } else { *keep_last };
                    mask(value, keep, *punctuation_only, &mut out)
                }
                Redaction::Replace => {
                    let next = per_kind.get(e.kind.as_str()).copied().unwrap_or(0) + 1;
                    let n = *numbering
                        .entry((e.kind.as_str(), value))
                        .or_insert_with(|| {
                            per_kind.insert(e.kind.as_str(), next);
                            next
                        });
                    out.push('[');
                    out.push_str(&e.kind.to_ascii_uppercase());
                    out.push('_');
                    out.push_str(&n.to_string());
                    out.push(']');
                }
                Redaction::Hash => {
                    out.push('[');
                    out.push_str(&e.kind.to_ascii_uppercase());
                    out.push('_');
                    out.push_str(&self.token(value));
                    out.push(']');
                }
                Redaction::Remove => {}
                Redaction::Defang => defang(value, &mut out),
            }
            pos = e.span.end;
        }
        out.push_str(&text[pos..]);
        out
    }

    /// The keyed hash token for a value: the first 10 hex digits of HMAC-SHA-256.
    pub fn token(&self, value: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::from("0000000000");
        };
        mac.update(value.as_bytes());
        let bytes = mac.finalize().into_bytes();
        bytes.iter().take(5).map(|b| format!("{b:02x}")).collect()
    }
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Sorts and merges overlapping edits. The flag is set when one of the merged values has no
/// letters or digits, so that `mask` stars its punctuation too.
fn merge(text: &str, edits: &[Edit]) -> Vec<(Edit, bool)> {
    let mut sorted: Vec<Edit> = edits
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.span = Span::new(
                floor_boundary(text, e.span.start),
                ceil_boundary(text, e.span.end),
            );
            e
        })
        .filter(|e| !e.span.is_empty())
        .collect();
    sorted.sort_by(|a, b| {
        a.span
            .start
            .cmp(&b.span.start)
            .then(b.span.end.cmp(&a.span.end))
    });
    let mut out: Vec<(Edit, bool)> = Vec::with_capacity(sorted.len());
    for e in sorted {
        let punctuation_only = !text[e.span.start..e.span.end]
            .chars()
            .any(char::is_alphanumeric);
        match out.last_mut() {
            Some((last, flag)) if e.span.start < last.span.end => {
                *flag |= punctuation_only;
                last.span.end = last.span.end.max(e.span.end);
                // The tail `mask` keeps may now belong to another value: keep nothing.
                if let Redaction::Mask { keep_last } = &mut last.redaction {
                    *keep_last = 0;
                }
            }
            _ => out.push((e, punctuation_only)),
        }
    }
    out
}

fn mask(value: &str, keep_last: usize, star_punctuation: bool, out: &mut String) {
    let alnum = value.chars().filter(|c| c.is_alphanumeric()).count();
    if alnum == 0 || star_punctuation {
        // A value made only of punctuation (a payload such as `'#:{`), alone or merged into a
        // longer one: star everything, or it would pass unchanged.
        out.extend(
            value
                .chars()
                .map(|c| if c.is_whitespace() { c } else { '*' }),
        );
        return;
    }
    let keep = keep_last.min(alnum / 2);
    let mut seen = 0;
    for c in value.chars() {
        if c.is_alphanumeric() {
            seen += 1;
            if seen > alnum - keep {
                out.push(c);
            } else {
                out.push('*');
            }
        } else {
            out.push(c);
        }
    }
}

fn defang(value: &str, out: &mut String) {
    let lower = value.to_ascii_lowercase();
    let (scheme_len, rest_start) = match lower.find("://") {
        Some(i) => (i, i + 3),
        None => (0, 0),
    };
    if scheme_len > 0 {
        let scheme = &value[..scheme_len];
        match lower.get(..scheme_len) {
            Some("http") => out.push_str("hxxp"),
            Some("https") => out.push_str("hxxps"),
            Some("ftp") => out.push_str("fxp"),
            _ => out.push_str(scheme),
        }
        out.push_str("://");
    }
    let rest = &value[rest_start..];
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    for c in rest[..host_end].chars() {
        match c {
            '.' => out.push_str("[.]"),
            '@' => out.push_str("[@]"),
            _ => out.push(c),
        }
    }
    out.push_str(&rest[host_end..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(start: usize, end: usize, kind: &str, redaction: Redaction) -> Edit {
        Edit {
            span: Span::new(start, end),
            kind: kind.into(),
            redaction,
        }
    }

    #[test]
    fn mask_keeps_last_digits_and_separators() {
        let r = Redactor::new("k");
        let t = "call 555-123-7890 now";
        assert_eq!(
            r.apply(t, &[edit(5, 17, "phone", Redaction::Mask { keep_last: 4 })]),
            "call ***-***-7890 now"
        );
        // A short value is never left whole.
        assert_eq!(
            r.apply("ab", &[edit(0, 2, "x", Redaction::Mask { keep_last: 4 })]),
            "*b"
        );
    }

    #[test]
    fn replace_is_stable_per_value() {
        let r = Redactor::new("k");
        let t = "a@x.io b@x.io a@x.io";
        let edits = [
            edit(0, 6, "email", Redaction::Replace),
            edit(7, 13, "email", Redaction::Replace),
            edit(14, 20, "email", Redaction::Replace),
        ];
        assert_eq!(r.apply(t, &edits), "[EMAIL_1] [EMAIL_2] [EMAIL_1]");
    }

    #[test]
    fn hash_is_keyed_and_stable() {
        let a = Redactor::new("one");
        let b = Redactor::new("two");
        let e = [edit(0, 6, "email", Redaction::Hash)];
        assert_eq!(a.apply("a@x.io", &e), a.apply("a@x.io", &e));
        assert_ne!(a.apply("a@x.io", &e), b.apply("a@x.io", &e));
        assert!(a.apply("a@x.io", &e).starts_with("[EMAIL_"));
    }

    #[test]
    fn defang_url_and_remove() {
        let r = Redactor::new("k");
        let t = "go to https://evil.example.com/x?a=b.c now";
        let end = t.find(" now").unwrap_or(t.len());
        assert_eq!(
            r.apply(t, &[edit(6, end, "url", Redaction::Defang)]),
            "go to hxxps://evil[.]example[.]com/x?a=b.c now"
        );
        assert_eq!(r.apply("abc", &[edit(1, 2, "x", Redaction::Remove)]), "ac");
    }

    #[test]
    fn overlapping_spans_merge() {
        let r = Redactor::new("k");
        let t = "0123456789";
        let out = r.apply(
            t,
            &[
                edit(2, 6, "a", Redaction::Remove),
                edit(4, 8, "b", Redaction::Remove),
            ],
        );
        assert_eq!(out, "0189");
    }

    #[test]
    fn punctuation_merged_into_a_masked_value_is_starred() {
        let r = Redactor::new("k");
        let t = "' OR 1=1 -- /..&";
        let mask = |start, end| Edit {
            span: Span::new(start, end),
            kind: "sqli".into(),
            redaction: Redaction::Mask { keep_last: 4 },
        };
        let out = r.apply(t, &[mask(0, t.len()), mask(12, t.len())]);
        assert!(!out.contains("/..&"), "{out}");
        assert_eq!(out, "* ** *** ** ****");
    }

    #[test]
    fn spans_off_char_boundaries_are_widened() {
        let r = Redactor::new("k");
        let t = "xé y";
        assert_eq!(r.apply(t, &[edit(2, 2 + 1, "a", Redaction::Remove)]), "x y");
    }
}
