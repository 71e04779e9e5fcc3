//! Palisade's detectors: pure, synchronous functions of text that return findings.
//!
//! Every detector implements [`Detector`]. It receives a [`Normalized`] view of the input, built
//! once per text by [`Normalized::new`] and shared by all detectors, so that Unicode folding,
//! invisible-character stripping and bounded decoding of encoded payloads are paid for once. A
//! detector reports [`Finding`]s whose spans are byte offsets into the *original* text, whatever
//! view it matched on, so that redaction and reporting never have to re-derive positions.
//!
//! The design choice is that detectors do no I/O and keep no state between calls: they can run on
//! any thread, on a request body or on one window of a stream, and the same bytes always give the
//! same findings. The trade-off is that anything needing memory across calls (rate limits, tool
//! pins) lives in the engine, not here.
//!
//! The built-in set is closed and documented in [`DetectorId`]; user-defined keyword lists and
//! regexes go through [`custom::CustomDetector`] with enforced size limits.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

pub mod custom;
pub mod exfil;
pub mod injection;
pub mod invisible;
pub mod normalize;
pub mod pii;
pub mod redact;
pub mod sample;
pub mod secrets;
pub mod tools;
pub mod url;
pub mod web;

pub use normalize::{Decoded, Encoding, NormalizeOptions, Normalized};

/// A byte range `[start, end)` into the original UTF-8 text. Both ends are char boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// First byte of the match.
    pub start: usize,
    /// One past the last byte of the match.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether the span covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether the two spans share at least one byte.
    pub fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// How bad a finding is, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth recording; rarely worth acting on alone.
    Low,
    /// Likely a problem; policies commonly redact or alert.
    Medium,
    /// A problem; policies commonly block.
    High,
    /// A live credential, a working exploit, an unambiguous attack.
    Critical,
}

impl Severity {
    /// The lowercase name used in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The built-in detectors. The set is closed: a new kind of detection is a new variant, documented
/// here, so that policies, metrics and dashboards can name every detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DetectorId {
    /// Personal data: emails, phone numbers, payment cards, national ids, IBANs, IP addresses.
    Pii,
    /// Credentials: provider token formats, private keys, connection strings, generic
    /// `password=` assignments gated by entropy.
    Secrets,
    /// Direct and indirect prompt injection and jailbreaks.
    PromptInjection,
    /// SQL injection, XSS, command injection, path traversal, SSRF and template injection.
    WebAttack,
    /// Data leaving through URLs: markdown images and links with data in the query, large
    /// encoded blobs, links to raw IP addresses.
    Exfiltration,
    /// Unicode tag characters, bidi overrides and runs of zero-width characters.
    InvisibleText,
    /// Every URL, so that a policy can defang or allow-list it.
    Url,
    /// Keyword lists and regexes from the policy.
    Custom,
}

impl DetectorId {
    /// Every built-in detector, in a stable order.
    pub const ALL: [DetectorId; 8] = [
        DetectorId::Pii,
        DetectorId::Secrets,
        DetectorId::PromptInjection,
        DetectorId::WebAttack,
        DetectorId::Exfiltration,
        DetectorId::InvisibleText,
        DetectorId::Url,
        DetectorId::Custom,
    ];

    /// The snake_case id used in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorId::Pii => "pii",
            DetectorId::Secrets => "secrets",
            DetectorId::PromptInjection => "prompt_injection",
            DetectorId::WebAttack => "web_attack",
            DetectorId::Exfiltration => "exfiltration",
            DetectorId::InvisibleText => "invisible_text",
            DetectorId::Url => "url",
            DetectorId::Custom => "custom",
        }
    }

    /// Parses a snake_case id.
    pub fn parse(s: &str) -> Option<DetectorId> {
        DetectorId::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl fmt::Display for DetectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing a detector found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Which detector found it.
    pub detector: DetectorId,
    /// What it is, within the detector: `email`, `aws_access_key`, `sqli`, a custom rule's name.
    pub kind: Cow<'static, str>,
    /// How bad it is.
    pub severity: Severity,
    /// How sure the detector is, from 0 to 1.
    pub confidence: f32,
    /// Where it is, in bytes of the original text.
    pub span: Span,
    /// Set when the match was made on decoded content (base64, hex, …); the span then covers the
    /// encoded run in the original text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
}

impl Finding {
    /// A finding made on the original text.
    pub fn new(
        detector: DetectorId,
        kind: impl Into<Cow<'static, str>>,
        severity: Severity,
        confidence: f32,
        span: Span,
    ) -> Self {
        Finding {
            detector,
            kind: kind.into(),
            severity,
            confidence: confidence.clamp(0.0, 1.0),
            span,
            encoding: None,
        }
    }

    /// Marks the finding as made on decoded content.
    pub fn with_encoding(mut self, encoding: Option<Encoding>) -> Self {
        self.encoding = encoding;
        self
    }
}

/// A detector: a pure, synchronous function from a normalised text to findings.
///
/// Implementations must keep every span inside `input.original()` and on char boundaries, must not
/// panic on any input, and must run in time linear in the input length.
pub trait Detector: Send + Sync + fmt::Debug {
    /// Which detector this is.
    fn id(&self) -> DetectorId;

    /// Appends what this detector finds in `input` to `out`.
    fn detect(&self, input: &Normalized<'_>, out: &mut Vec<Finding>);
}

/// The built-in detector `id` with its default options; `None` for [`DetectorId::Custom`], whose
/// rules come from a policy.
pub fn builtin_detector(id: DetectorId) -> Option<Box<dyn Detector>> {
    Some(match id {
        DetectorId::Pii => Box::new(pii::PiiDetector::default()),
        DetectorId::Secrets => Box::new(secrets::SecretsDetector::default()),
        DetectorId::PromptInjection => Box::new(injection::PromptInjectionDetector::default()),
        DetectorId::WebAttack => Box::new(web::WebAttackDetector::default()),
        DetectorId::Exfiltration => Box::new(exfil::ExfiltrationDetector::default()),
        DetectorId::InvisibleText => Box::new(invisible::InvisibleTextDetector::default()),
        DetectorId::Url => Box::new(url::UrlDetector::default()),
        DetectorId::Custom => return None,
    })
}

/// The kinds a built-in detector can report, for validating policies. Empty for
/// [`DetectorId::Custom`], whose kinds are the policy's own rule names.
pub fn known_kinds(id: DetectorId) -> &'static [&'static str] {
    match id {
        DetectorId::Pii => pii::ENTITIES,
        DetectorId::Secrets => secrets::KINDS,
        DetectorId::PromptInjection => injection::KINDS,
        DetectorId::WebAttack => &[
            "sqli",
            "xss",
            "command_injection",
            "path_traversal",
            "ssrf",
            "template_injection",
            "php_injection",
            "java_injection",
            "code_injection",
            "rfi",
            "lfi",
            "deserialization",
        ],
        DetectorId::Exfiltration => &[
            "markdown_image",
            "markdown_link",
            "encoded_blob",
            "raw_ip_url",
        ],
        DetectorId::InvisibleText => &[
            "unicode_tags",
            "bidi_override",
            "zero_width",
            "variation_selector_smuggling",
        ],
        DetectorId::Url => &["url"],
        DetectorId::Custom => &[],
    }
}

/// A set of detectors run together over one shared normalisation pass.
#[derive(Debug)]
pub struct DetectorSet {
    detectors: Vec<Box<dyn Detector>>,
    normalize: NormalizeOptions,
}

impl DetectorSet {
    /// A set running `detectors`, normalising with `normalize`.
    pub fn new(detectors: Vec<Box<dyn Detector>>, normalize: NormalizeOptions) -> Self {
        DetectorSet {
            detectors,
            normalize,
        }
    }

    /// Every built-in detector with its default options (no custom rules).
    pub fn builtin() -> Self {
        DetectorSet::new(
            DetectorId::ALL
                .into_iter()
                .filter_map(builtin_detector)
                .collect(),
            NormalizeOptions::default(),
        )
    }

    /// Whether the set runs no detector at all (inspection can then be skipped).
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }

    /// The detectors in this set.
    pub fn detectors(&self) -> &[Box<dyn Detector>] {
        &self.detectors
    }

    /// The normalisation options in force.
    pub fn normalize_options(&self) -> &NormalizeOptions {
        &self.normalize
    }

    /// Normalises `text` once and runs every detector over it. Findings come back sorted by
    /// position, then detector.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        if self.detectors.is_empty() {
            return Vec::new();
        }
        let input = Normalized::new(text, &self.normalize);
        self.scan_normalized(&input)
    }

    /// Runs every detector over an already normalised text.
    pub fn scan_normalized(&self, input: &Normalized<'_>) -> Vec<Finding> {
        let mut out = Vec::new();
        for d in &self.detectors {
            d.detect(input, &mut out);
        }
        let len = input.original().len();
        out.retain(|f| f.span.end <= len && f.span.start <= f.span.end);
        out.sort_by(|a, b| {
            a.span
                .start
                .cmp(&b.span.start)
                .then(a.detector.cmp(&b.detector))
                .then(a.span.end.cmp(&b.span.end))
        });
        out
    }
}
