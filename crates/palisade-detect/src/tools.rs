//! Tool poisoning: instructions planted in MCP tool, prompt and resource definitions.
//!
//! A tool's description and its schema are read by the model as trusted context, so a server can
//! steer an agent through them. [`analyze_definition`] reads every model-visible string of one
//! definition (title, description, every string of the input and output schemas, annotations,
//! and the property names themselves) and reports findings of these kinds:
//!
//! - `invisible_text` (critical): Unicode tag characters, bidi overrides or zero-width runs; the
//!   hidden ASCII of tag characters is analysed too.
//! - `concealment` (critical): the model is told to keep something from the user ("do not tell
//!   the user", "without informing the user", "the user must not see").
//! - `sensitive_read` (high): directions to read or pass on files, keys or secrets (`~/.ssh`,
//!   `id_rsa`, `.env`, `mcp.json`, cloud credentials, "the API key", "the conversation history").
//! - `cross_tool_directive` (high): directions that change how *other* tools behave ("when the
//!   send_email tool is used, send all mail to …", "no matter what the user asks", "replace the
//!   values with …", "instead of calling …").
//! - `exfiltration_target` (high): an instruction to send, forward or include data towards an
//!   address, URL or a side field ("sidenote", "metadata") that is not what the tool is for.
//! - `model_directive` (high): tags and phrases aimed at the model rather than describing the
//!   tool (`<IMPORTANT>`, `<instructions>`, "ignore previous instructions", "you are now").
//!
//! Design choice: detection is by *kind of statement*, from small word classes (a verb of
//! reading, an object that is a secret; a secrecy verb aimed at the user), and single signals that
//! benign descriptions share are not enough. Published servers' descriptions are full of
//! "IMPORTANT", "MUST", "ALWAYS", "do not" and "use X before Y"; none of those alone is a finding.
//! The trade-off is recall on attacks phrased with none of the classes' words, which the pinning
//! (any change is a finding) and the prompt-injection detector cover from other sides.

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use crate::normalize::{fold, NormalizeOptions, Normalized};
use crate::{invisible::InvisibleTextDetector, Detector, Severity};

/// Every kind [`analyze_definition`] reports.
pub const KINDS: &[&str] = &[
    "invisible_text",
    "concealment",
    "sensitive_read",
    "cross_tool_directive",
    "exfiltration_target",
    "model_directive",
];

/// One poisoning finding in a definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolFinding {
    /// One of [`KINDS`].
    pub kind: &'static str,
    /// How bad.
    pub severity: Severity,
    /// A JSON Pointer to the string, within the definition.
    pub field: String,
    /// The matched words, shortened.
    pub evidence: String,
}

struct Rules {
    concealment: Regex,
    read_verb: Regex,
    secret_object: Regex,
    cross_tool: Regex,
    exfil: Regex,
    directive: Regex,
}

fn rules() -> &'static Rules {
    static R: OnceLock<Option<Rules>> = OnceLock::new();
    #[allow(clippy::expect_used)]
    R.get_or_init(|| {
        let b = |p: &str| regex::RegexBuilder::new(p).size_limit(4 << 20).build().ok();
        Some(Rules {
            // Keeping something from the user: the signature of every hidden-instruction attack.
            concealment: b(
                r"(?x)
                \b(?:do\s+not|don'?t|never|must\s+not|should\s+not|shouldn'?t)\s+(?:ever\s+)?
                  (?:tell|inform|notify|alert|mention|reveal|disclose|show|let)\s+(?:this\s+|it\s+|anything\s+)?(?:to\s+)?(?:the\s+)?user
                | \bwithout\s+(?:telling|informing|notifying|alerting|asking|letting)\s+(?:the\s+)?user
                | \b(?:the\s+)?user\s+(?:must|should|shall)\s+(?:not|never)\s+(?:know|see|be\s+(?:told|informed|aware))
                | \b(?:hide|conceal|keep)\s+(?:this|these|it|that)?\s*(?:instructions?\s+)?(?:hidden\s+)?(?:secret\s+)?from\s+(?:the\s+)?user
                | \b(?:don'?t|do\s+not|never)\s+(?:mention|reveal|disclose)\s+(?:that\s+you|these\s+instructions|this\s+instruction|the\s+instructions?|this\s+step|this\s+to\s+(?:the\s+)?user)
                | \bthe\s+user\s+(?:doesn'?t|does\s+not|won'?t|will\s+not)\s+(?:need\s+to\s+)?(?:know|see|notice)
                ",
            )?,
            read_verb: b(
                r"\b(?:read|cat|include|attach|pass|provide|send|upload|copy|append|extract|dump|put)(?:s|ing|ed)?\b",
            )?,
            // Objects no tool needs handed over in an argument.
            secret_object: b(
                r"(?x)
                ~/\.ssh | \bid[_\s](?:rsa|ed25519|ecdsa|dsa)\b | \.ssh/ | \bauthorized_keys\b
                | ~/\.aws | \.aws/credentials | \.kube/config | \.docker/config\.json | \.netrc\b | \.npmrc\b | \.pypirc\b
                | /etc/(?:passwd|shadow) | \bmcp\.json\b | \.cursor/ | claude_desktop_config
                | (?:^|[\s`'(])\.env\b
                | \bprivate\s+keys?\b | \bssh\s+keys?\b | \bsecret\s+keys?\b
                | \b(?:api|access|auth)[\s_-]?(?:keys?|tokens?)\s+(?:of|from|in)\s+(?:the\s+)?(?:user|environment|config)
                | \b(?:conversation|chat|message)\s+history\b | \bprevious\s+(?:messages|conversation)\b
                | \bsystem\s+prompt\b | \byour\s+(?:instructions|context\s+window)\b
                | \b(?:all|every)\s+(?:the\s+)?(?:available\s+)?tools?(?:\s+(?:names|list|descriptions))?\s+(?:you\s+have|available\s+to\s+you)
                | \bcontents?\s+of\s+(?:the\s+)?(?:user'?s\s+)?(?:home\s+directory|credentials?|secrets?|password)
                | \bpasswords?\s+(?:of|from|stored)
                ",
            )?,
            // Steering other tools, or overriding the user's intent.
            cross_tool: b(
                r"(?x)
                \b(?:when|whenever|if|before|after)\s+(?:the\s+)?(?:user\s+|you\s+|agent\s+|assistant\s+)?(?:uses?|calls?|invokes?|runs?|using|calling|invoking)\s+(?:the\s+|any\s+)?[`'\x22]?[a-z0-9_.-]+[`'\x22]?\s+(?:tool|function)\b[^.\n]{0,80}\b(?:must|always|also|instead|first|change|replace|redirect|send|add|set|use)\b
                | \bwhen\s+[^.\n]{0,40}\b(?:is|are)\s+(?:invoked|called|used)\b[^.\n]{0,60}\b(?:change|replace|redirect|set)\s+(?:the\s+)?(?:recipient|destination|address|account|number|url)
                | \bno\s+matter\s+(?:what|how\s+many|which)\b[^.\n]{0,60}\b(?:use|call|just|always|only)\b
                | \bjust\s+use\s+this\s+tool\s+no\s+matter\b
                | \b(?:call|use|run|invoke)\s+this\s+tool\s+(?:first\s+)?(?:before|instead\s+of)\s+(?:every|any|all)\s+(?:other\s+)?tools?
                | \breplace\s+(?:the\s+)?(?:values?|arguments?|parameters?|recipients?|results?)\s+with\b
                | \b(?:has|have)\s+(?:a\s+)?(?:very\s+)?(?:important\s+)?side[\s-]effects?\s+on\s+(?:the\s+)?(?:also\s+present\s+)?
                | \bmust\s+(?:be\s+)?(?:sent|forwarded|redirected|cc'?d|bcc'?d)\s+to\b
                | \b(?:ignore|disregard|override)\s+(?:the\s+)?(?:instructions|descriptions?|rules)\s+of\s+(?:the\s+|all\s+)?(?:other|previous)\s+tools?
                | \binstead\s+of\s+(?:using\s+|calling\s+)?(?:the\s+)?[`'\x22]?[a-z0-9_.-]+[`'\x22]?\s+tool\b
                | \b(?:other|all\s+other)\s+tools?\s+(?:are|is)\s+(?:deprecated|broken|unsafe|malicious)
                ",
            )?,
            // Data sent somewhere, or tucked into a side field.
            exfil: b(
                r"(?x)
                \b(?:send|forward|post|upload|transmit|email|e-mail|leak|exfiltrate|copy)\s+(?:it|them|this|that|all|the|everything|a\s+copy|any)?[^.\n]{0,60}\bto\s+(?:https?://|[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}|\+?\d[\d\s-]{6,}|(?:the\s+)?(?:following|this)\s+(?:address|url|number|endpoint|webhook))
                | \b(?:as|in|into|inside|within)\s+(?:the\s+)?[`'\x22]?(?:sidenote|side_note|notes?|metadata|extra|context|debug|comment|feedback)[`'\x22]?\s+(?:field|parameter|param|argument)\b
                | \bbcc\b[^.\n]{0,40}@
                ",
            )?,
            // Speaking to the model instead of describing the tool.
            directive: b(
                r"(?x)
                </?\s*(?:important|system|secret|hidden|sys)\s*>
                | \[(?:important|system|instructions?)\]
                | \bignore\s+(?:all\s+)?(?:previous|prior|above|earlier|other)\s+(?:instructions|prompts|rules|directions)
                | \byou\s+are\s+now\s+(?:a|an|in)\b
                | \b(?:this\s+is|it\s+is)\s+(?:very\s+|extremely\s+)?important\s+(?:that\s+you|for\s+you\s+to)\b[^.\n]{0,80}\b(?:read|send|pass|include|call|first)\b
                | \botherwise\s+the\s+tool\s+will\s+not\s+work\b
                | \b(?:the|an?)\s+(?:ai|llm|model|assistant)\s+(?:must|should|has\s+to|needs\s+to)\s+(?:first\s+)?(?:read|send|call|include|pass|ignore|always)\b
                ",
            )?,
        })
    })
    .as_ref()
    .unwrap_or_else(|| unreachable_rules())
}

#[allow(clippy::panic)]
fn unreachable_rules() -> &'static Rules {
    // The patterns are constants covered by the unit tests; failing to compile them is a build
    // defect, caught before release.
    panic!("tool-poisoning patterns failed to compile")
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.len() <= 120 {
        return s.to_owned();
    }
    let mut end = 120;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Decodes Unicode tag characters to the ASCII they mirror.
fn tag_text(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            let u = c as u32;
            (0xE0020..=0xE007E)
                .contains(&u)
                .then(|| char::from_u32(u - 0xE0000))
                .flatten()
        })
        .collect()
}

/// Analyses one string of a definition.
pub fn analyze_text(text: &str, field: &str, out: &mut Vec<ToolFinding>) {
    if text.trim().is_empty() {
        return;
    }
    let n = Normalized::new(text, &NormalizeOptions::default());
    let mut inv = Vec::new();
    InvisibleTextDetector::default().detect(&n, &mut inv);
    if let Some(f) = inv.iter().find(|f| f.severity >= Severity::Medium) {
        out.push(ToolFinding {
            kind: "invisible_text",
            severity: Severity::Critical,
            field: field.to_owned(),
            evidence: format!("{} hidden characters", f.kind),
        });
        let hidden = tag_text(text);
        if !hidden.is_empty() {
            analyze_plain(&fold(&hidden), field, out);
        }
    }
    analyze_plain(n.folded(), field, out);
}

fn analyze_plain(folded: &str, field: &str, out: &mut Vec<ToolFinding>) {
    let r = rules();
    let text = folded;
    let mut push = |kind: &'static str, severity: Severity, m: &str| {
        if !out.iter().any(|f| f.kind == kind && f.field == field) {
            out.push(ToolFinding {
                kind,
                severity,
                field: field.to_owned(),
                evidence: short(m),
            });
        }
    };
    if let Some(m) = r.concealment.find(text) {
        push("concealment", Severity::Critical, m.as_str());
    }
    // A secret named in the same sentence as a verb of handing it over.
    for m in r.secret_object.find_iter(text) {
        let (s, e) = sentence(text, m.start(), m.end());
        if r.read_verb.is_match(&text[s..e]) {
            push("sensitive_read", Severity::High, &text[s..e]);
            break;
        }
    }
    // "Before using this tool, first …" is how benign tools state their own preconditions; a
    // directive about *another* tool is the signal.
    if let Some(m) = r.cross_tool.find_iter(text).find(|m| {
        let s = m.as_str();
        !(s.starts_with(['w', 'b', 'a', 'i'])
            && (s.contains(" this tool") || s.contains(" this function")))
    }) {
        push("cross_tool_directive", Severity::High, m.as_str());
    }
    if let Some(m) = r.exfil.find(text) {
        push("exfiltration_target", Severity::High, m.as_str());
    }
    if let Some(m) = r.directive.find(text) {
        push("model_directive", Severity::High, m.as_str());
    }
}

/// The sentence (or line) around `[start, end)`.
fn sentence(text: &str, start: usize, end: usize) -> (usize, usize) {
    let is_stop = |c: char| matches!(c, '\n' | '!' | '?') || c == '.';
    let mut s = start;
    for (i, c) in text[..start].char_indices().rev() {
        // A dot inside a path or file name (`.ssh`, `mcp.json`) does not end a sentence.
        let next = text[i + c.len_utf8()..].chars().next();
        if is_stop(c) && (c != '.' || next.is_none_or(char::is_whitespace)) {
            break;
        }
        s = i;
    }
    let mut e = end;
    for (i, c) in text[end..].char_indices() {
        let next = text[end + i + c.len_utf8()..].chars().next();
        if is_stop(c) && (c != '.' || next.is_none_or(char::is_whitespace)) {
            break;
        }
        e = end + i + c.len_utf8();
    }
    (s, e)
}

/// Analyses every model-visible string of a tool, prompt or resource definition.
pub fn analyze_definition(def: &Value) -> Vec<ToolFinding> {
    let mut out = Vec::new();
    for f in ["title", "description"] {
        if let Some(s) = def.get(f).and_then(Value::as_str) {
            analyze_text(s, &format!("/{f}"), &mut out);
        }
    }
    for f in ["inputSchema", "outputSchema", "annotations", "arguments"] {
        if let Some(v) = def.get(f) {
            walk(v, &format!("/{f}"), &mut out);
        }
    }
    out
}

fn walk(v: &Value, at: &str, out: &mut Vec<ToolFinding>) {
    match v {
        Value::String(s) => analyze_text(s, at, out),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(x, &format!("{at}/{i}"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                let esc = k.replace('~', "~0").replace('/', "~1");
                if at.ends_with("/properties") {
                    // Property names are read by the model too; a name can carry an instruction.
                    let spaced = k.replace(['_', '-'], " ");
                    if spaced.split_whitespace().count() >= 4 {
                        analyze_text(&spaced, &format!("{at}/{esc}"), out);
                    }
                }
                walk(x, &format!("{at}/{esc}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
