//! Byte positions of the strings in a JSON document, and edits that touch nothing else.
//!
//! serde_json parses values but forgets where they were. Redaction must rewrite one string and
//! leave every other byte of the body as it came (key order, spacing, number formatting, escapes
//! the client chose), so this module scans the document once and records, for every string
//! *value*, its JSON Pointer (RFC 6901) and the byte range of its token, quotes included.
//! [`rewrite`] then splices re-encoded strings into those ranges.
//!
//! The scanner is iterative (an explicit stack, capped at [`MAX_DEPTH`]), so hostile nesting cannot
//! overflow the call stack, and it validates structure as it goes; it leaves number grammar and
//! escape validity to serde_json, which callers run on the same bytes.

use std::collections::HashMap;
use std::ops::Range;

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 128;

/// Why a document could not be scanned or rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The bytes are not a well-formed JSON document.
    #[error("malformed JSON at byte {at}: {what}")]
    Malformed {
        /// Byte offset of the problem.
        at: usize,
        /// What was expected.
        what: &'static str,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// An edit names a pointer that is not a string value of the document.
    #[error("no string value at `{0}`")]
    NoSuchString(String),
}

/// A string value in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringSpan {
    /// Its JSON Pointer, such as `/messages/0/content`.
    pub pointer: String,
    /// The byte range of its token, quotes included.
    pub range: Range<usize>,
}

/// Escapes one pointer segment (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn escape_segment(s: &str) -> String {
    if !s.contains(['~', '/']) {
        return s.to_owned();
    }
    s.replace('~', "~0").replace('/', "~1")
}

enum Frame {
    Object { pointer_len: usize },
    Array { pointer_len: usize, index: usize },
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn err(&self, what: &'static str) -> JsonError {
        JsonError::Malformed { at: self.i, what }
    }

    /// Skips a string token starting at the opening quote; returns its range.
    fn string(&mut self) -> Result<Range<usize>, JsonError> {
        let start = self.i;
        self.i += 1;
        loop {
            let Some(off) = memchr::memchr2(b'"', b'\\', &self.b[self.i..]) else {
                self.i = self.b.len();
                return Err(self.err("an unterminated string"));
            };
            self.i += off;
            if self.b[self.i] == b'\\' {
                self.i += 2;
                if self.i > self.b.len() {
                    return Err(self.err("an unterminated escape"));
                }
            } else {
                self.i += 1;
                return Ok(start..self.i);
            }
        }
    }

    /// Skips a literal or number.
    fn scalar(&mut self) -> Result<(), JsonError> {
        let start = self.i;
        while let Some(c) = self.b.get(self.i) {
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                self.i += 1;
            } else {
                break;
            }
        }
        if self.i == start {
            return Err(self.err("a value"));
        }
        Ok(())
    }
}

/// Every string value of `bytes` (keys excluded) with its pointer and token range, in document
/// order.
pub fn string_spans(bytes: &[u8]) -> Result<Vec<StringSpan>, JsonError> {
    let mut s = Scanner { b: bytes, i: 0 };
    let mut out = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut pointer = String::new();
    s.ws();
    // Each iteration parses one value at `pointer`, then unwinds to the next position.
    loop {
        s.ws();
        match s.b.get(s.i) {
            None => return Err(s.err("a value")),
            Some(b'"') => {
                let range = s.string()?;
                out.push(StringSpan {
                    pointer: pointer.clone(),
                    range,
                });
            }
            Some(b'{') => {
                if stack.len() >= MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                s.i += 1;
                s.ws();
                if s.b.get(s.i) == Some(&b'}') {
                    s.i += 1;
                } else {
                    stack.push(Frame::Object {
                        pointer_len: pointer.len(),
                    });
                    object_key(&mut s, &mut pointer)?;
                    continue;
                }
            }
            Some(b'[') => {
                if stack.len() >= MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                s.i += 1;
                s.ws();
                if s.b.get(s.i) == Some(&b']') {
                    s.i += 1;
                } else {
                    stack.push(Frame::Array {
                        pointer_len: pointer.len(),
                        index: 0,
                    });
                    pointer.push_str("/0");
                    continue;
                }
            }
            Some(_) => s.scalar()?,
        }
        // A value is complete: move to the next sibling, or close containers.
        loop {
            s.ws();
            let Some(frame) = stack.last_mut() else {
                if s.i != s.b.len() {
                    return Err(s.err("the end of the document"));
                }
                return Ok(out);
            };
            match (frame, s.b.get(s.i)) {
                (Frame::Object { pointer_len }, Some(b',')) => {
                    s.i += 1;
                    pointer.truncate(*pointer_len);
                    object_key(&mut s, &mut pointer)?;
                    break;
                }
                (Frame::Object { pointer_len }, Some(b'}')) => {
                    s.i += 1;
                    pointer.truncate(*pointer_len);
                    stack.pop();
                }
                (Frame::Array { pointer_len, index }, Some(b',')) => {
                    s.i += 1;
                    *index += 1;
                    pointer.truncate(*pointer_len);
                    pointer.push('/');
                    pointer.push_str(&index.to_string());
                    break;
                }
                (Frame::Array { pointer_len, .. }, Some(b']')) => {
                    s.i += 1;
                    pointer.truncate(*pointer_len);
                    stack.pop();
                }
                _ => return Err(s.err("`,` or a closing bracket")),
            }
        }
    }
}

/// Reads `"key":` and appends `/key` to the pointer.
fn object_key(s: &mut Scanner<'_>, pointer: &mut String) -> Result<(), JsonError> {
    s.ws();
    if s.b.get(s.i) != Some(&b'"') {
        return Err(s.err("an object key"));
    }
    let range = s.string()?;
    let key: String =
        serde_json::from_slice(&s.b[range.clone()]).map_err(|_| JsonError::Malformed {
            at: range.start,
            what: "a valid key string",
        })?;
    pointer.push('/');
    pointer.push_str(&escape_segment(&key));
    s.ws();
    if s.b.get(s.i) != Some(&b':') {
        return Err(s.err("`:`"));
    }
    s.i += 1;
    Ok(())
}

/// Replaces the string values at the given pointers with new texts, leaving every other byte as it
/// was. Pointers must name string values.
pub fn rewrite(bytes: &[u8], edits: &[(String, String)]) -> Result<Vec<u8>, JsonError> {
    if edits.is_empty() {
        return Ok(bytes.to_vec());
    }
    let spans = string_spans(bytes)?;
    let by_pointer: HashMap<&str, &Range<usize>> = spans
        .iter()
        .map(|s| (s.pointer.as_str(), &s.range))
        .collect();
    let mut replacements: Vec<(Range<usize>, String)> = Vec::with_capacity(edits.len());
    for (pointer, text) in edits {
        let range = by_pointer
            .get(pointer.as_str())
            .ok_or_else(|| JsonError::NoSuchString(pointer.clone()))?;
        let encoded = serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\""));
        replacements.push(((*range).clone(), encoded));
    }
    replacements.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    for (range, encoded) in replacements {
        if range.start < pos {
            continue;
        }
        out.extend_from_slice(&bytes[pos..range.start]);
        out.extend_from_slice(encoded.as_bytes());
        pos = range.end;
    }
    out.extend_from_slice(&bytes[pos..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(src: &str) -> Vec<(String, String)> {
        string_spans(src.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|s| (s.pointer, src[s.range].to_owned()))
            .collect()
    }

    #[test]
    fn finds_values_with_pointers() {
        let src = r#" {"a": "x", "b": [1, "y", {"c/d": "z\"q", "e": null}], "f": {}, "g": [], "h~": "w"} "#;
        assert_eq!(
            pointers(src),
            vec![
                ("/a".into(), "\"x\"".into()),
                ("/b/1".into(), "\"y\"".into()),
                ("/b/2/c~1d".into(), "\"z\\\"q\"".into()),
                ("/h~0".into(), "\"w\"".into()),
            ]
        );
        assert_eq!(pointers("\"top\""), vec![(String::new(), "\"top\"".into())]);
    }

    #[test]
    fn rewrite_keeps_other_bytes() {
        let src = "{ \"keep\" : 1.50e3,\n  \"msg\":\"call 555\\u0031\", \"list\": [\"a\", \"b\"] }";
        let out = rewrite(
            src.as_bytes(),
            &[
                ("/msg".into(), "call [PHONE_1]".into()),
                ("/list/1".into(), "é\"".into()),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{ \"keep\" : 1.50e3,\n  \"msg\":\"call [PHONE_1]\", \"list\": [\"a\", \"é\\\"\"] }"
        );
        assert_eq!(
            rewrite(src.as_bytes(), &[("/keep".into(), "x".into())]),
            Err(JsonError::NoSuchString("/keep".into()))
        );
    }

    #[test]
    fn malformed_and_deep_documents_are_refused() {
        for bad in [
            "",
            "{",
            "[1,",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "\"open",
            "[1] 2",
            "{1:2}",
        ] {
            assert!(string_spans(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(string_spans(deep.as_bytes()), Err(JsonError::TooDeep));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(string_spans(ok.as_bytes()).is_ok());
    }
}
