//! Personal data: email addresses, phone numbers, payment cards, US social security numbers,
//! IBANs, IP addresses, and a few national identifiers that carry a checksum (Canadian SIN,
//! Spanish DNI/NIE, Brazilian CPF, Italian fiscal code, Indian Aadhaar).
//!
//! **Design.** No regex runs here. Three hand-written, single-pass scanners do the work:
//!
//! - a **number scanner** walks the text once, digit run to digit run. A run glued to letters is
//!   an alphanumeric token (checked as an IBAN, fiscal code or NIE, else skipped whole); otherwise
//!   it grows into a *cluster* of digit groups joined by the separators people type in numbers
//!   (one space, `-`, `.`, ` - `, parentheses). A cluster is cut into *pieces* at spaces, and runs
//!   of whole pieces, longest first, are judged as an IPv4 address, SSN, card, phone or national
//!   id by their structure: group lengths, separators, checksums (Luhn, mod 97, Verhoeff, mod 11,
//!   check letters), issuer ranges, country calling codes, date shapes;
//! - an **email scanner** starts only at `@` bytes (`memchr`) and grows a bounded local part and
//!   domain around each;
//! - an **IPv6 scanner** starts only at `:` bytes and hands a bounded hex token to the standard
//!   parser.
//!
//! **Confidence** is structure first, context second. Each candidate gets a base confidence from
//! how unambiguous its shape is (a Luhn-valid 16-digit Visa number in 4-4-4-4 groups: 0.85; a
//! `+44 20 7946 0958`: 0.8; a bare `780 6326`: 0.35), then a boost when a cue for its entity
//! (`phone`, `fax`, `card`, `ssn`, `iban`, …) sits within 48 bytes before it or a label
//! (`office`, `mobile`, `fax`) right after it, and a penalty of 0.35 when the nearest cue is a
//! negative one (`order`, `invoice`, `tracking`, `isbn`, `version`, `zip`, a currency or a unit).
//! Findings below [`PiiOptions::min_confidence`] (default 0.5) are dropped, so shapes that are
//! too common to flag alone (undashed nine-digit SSNs, unseparated ten-digit phone numbers,
//! Canadian SINs) need their cue. Cue windows are bounded, so context costs O(1) per candidate.
//!
//! **Severity** follows harm: `credit_card`, `us_ssn`, `iban` and the national ids are high;
//! `email` and `phone` are medium; `ip_address` is low (it rarely identifies a person alone).
//!
//! **Decisions.** Loopback, unspecified, broadcast and multicast addresses (`127.0.0.1`,
//! `0.0.0.0`, `::1`, `255.255.255.0`) are not flagged; private, link-local and documentation
//! ranges are flagged at 0.55 (they reveal internal topology, not people); quads whose parts are
//! all small (`1.2.3.4`, `3.11.4.2`, also `8.8.8.8`) read as versions and need an IP cue, and dotted runs glued to letters (`v1.2.3.4`) or with
//! more than four parts are versions, not addresses. Dates, arithmetic progressions, thousands
//! separators, prices and numbers inside paths, hex, UUIDs and decimal fractions are not phones.
//!
//! **Views.** The original text is scanned first. When it is not ASCII, the folded view (full-width
//! digits and `＠`, invisible characters removed) is scanned too and new findings are mapped back;
//! decoded segments (base64, hex, percent, HTML entities) are scanned and reported on the encoded
//! run with their encoding. The trade-off of hand-written scanners over regexes is more code, in
//! return for one pass, no allocation per byte, and judgement of structure a regex cannot express.
//!
//! **Weaknesses.** Numbers spelled out or split by words (`five five five …`, `john at example dot
//! com`) are not found; phone numbers in formats with `/` or unusual grouping need a cue; a
//! national id of a country not listed here is at best a phone number.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

use crate::{Detector, DetectorId, Finding, Normalized, Severity, Span};

/// A kind of personal data. The snake_case name is the finding's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PiiEntity {
    /// An email address.
    Email,
    /// A phone number, international or national.
    Phone,
    /// A payment card number that passes Luhn (Visa, Mastercard, Amex, Discover, JCB, Diners,
    /// UnionPay, Maestro, Mir, RuPay).
    CreditCard,
    /// A US social security number in a valid range.
    UsSsn,
    /// An IBAN with a valid length for its country and a valid mod-97 check.
    Iban,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A Canadian social insurance number (Luhn; needs a cue such as `SIN`).
    CaSin,
    /// A Spanish DNI or NIE with its check letter.
    EsDni,
    /// A Brazilian CPF with its two check digits.
    BrCpf,
    /// An Italian fiscal code (codice fiscale) with its check letter.
    ItFiscalCode,
    /// An Indian Aadhaar number (Verhoeff; needs a cue unless grouped 4-4-4).
    InAadhaar,
}

/// Every entity name this detector accepts and reports, in [`PiiEntity::ALL`] order.
pub const ENTITIES: &[&str] = &[
    "email",
    "phone",
    "credit_card",
    "us_ssn",
    "iban",
    "ip_address",
    "ca_sin",
    "es_dni",
    "br_cpf",
    "it_fiscal_code",
    "in_aadhaar",
];

const N_ENT: usize = 11;

impl PiiEntity {
    /// Every entity, in a stable order.
    pub const ALL: [PiiEntity; N_ENT] = [
        PiiEntity::Email,
        PiiEntity::Phone,
        PiiEntity::CreditCard,
        PiiEntity::UsSsn,
        PiiEntity::Iban,
        PiiEntity::IpAddress,
        PiiEntity::CaSin,
        PiiEntity::EsDni,
        PiiEntity::BrCpf,
        PiiEntity::ItFiscalCode,
        PiiEntity::InAadhaar,
    ];

    /// The snake_case name, used as the finding's kind and in configuration.
    pub fn as_str(self) -> &'static str {
        ENTITIES.get(self as usize).copied().unwrap_or("pii")
    }

    /// Parses a snake_case name.
    pub fn parse(name: &str) -> Option<PiiEntity> {
        PiiEntity::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// The severity of a finding of this entity.
    pub fn severity(self) -> Severity {
        match self {
            PiiEntity::Email | PiiEntity::Phone => Severity::Medium,
            PiiEntity::IpAddress => Severity::Low,
            _ => Severity::High,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A name given in configuration that is not in [`ENTITIES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown PII entity `{0}` (known: email, phone, credit_card, us_ssn, iban, ip_address, ca_sin, es_dni, br_cpf, it_fiscal_code, in_aadhaar)")]
pub struct UnknownEntity(pub String);

/// Options for [`PiiDetector`].
#[derive(Debug, Clone, PartialEq)]
pub struct PiiOptions {
    /// Only these entities; `None` means all of them.
    pub entities: Option<Vec<PiiEntity>>,
    /// Findings below this confidence are dropped. Clamped to `[0, 1]`.
    pub min_confidence: f32,
}

impl Default for PiiOptions {
    fn default() -> Self {
        PiiOptions {
            entities: None,
            min_confidence: 0.5,
        }
    }
}

impl PiiOptions {
    /// Options restricted to the named entities (see [`ENTITIES`]), with the default threshold.
    pub fn with_entity_names<S: AsRef<str>>(names: &[S]) -> Result<Self, UnknownEntity> {
        let entities = names
            .iter()
            .map(|n| PiiEntity::parse(n.as_ref()).ok_or_else(|| UnknownEntity(n.as_ref().into())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PiiOptions {
            entities: Some(entities),
            ..PiiOptions::default()
        })
    }
}

/// The `pii` detector. See the module documentation.
#[derive(Debug, Clone)]
pub struct PiiDetector {
    enabled: u16,
    min_confidence: f32,
}

impl Default for PiiDetector {
    fn default() -> Self {
        PiiDetector::new(PiiOptions::default())
    }
}

impl PiiDetector {
    /// A detector with `options`.
    pub fn new(options: PiiOptions) -> Self {
        let enabled = match &options.entities {
            None => u16::MAX,
            Some(list) => list.iter().fold(0, |m, e| m | e.bit()),
        };
        let min_confidence = if options.min_confidence.is_nan() {
            PiiOptions::default().min_confidence
        } else {
            options.min_confidence.clamp(0.0, 1.0)
        };
        PiiDetector {
            enabled,
            min_confidence,
        }
    }

    fn on(&self, e: PiiEntity) -> bool {
        self.enabled & e.bit() != 0
    }

    /// Candidates in `text`, overlaps resolved, each at or above the threshold.
    fn scan(&self, text: &[u8]) -> Vec<Cand> {
        let mut sc = Scanner {
            t: text,
            det: self,
            out: Vec::new(),
            groups: Vec::new(),
            anchor: 0,
            hits: Vec::new(),
            hits_anchor: None,
            after: None,
            ext: None,
        };
        if self.on(PiiEntity::Email) && memchr::memchr(b'@', text).is_some() {
            sc.emails();
        }
        const NUMERIC: u16 = !(1 << (PiiEntity::Email as u16));
        if self.enabled & NUMERIC != 0 {
            sc.numbers();
        }
        if self.on(PiiEntity::IpAddress) && memchr::memchr(b':', text).is_some() {
            sc.ipv6();
        }
        resolve(sc.out)
    }
}

impl Detector for PiiDetector {
    fn id(&self) -> DetectorId {
        DetectorId::Pii
    }

    fn detect(&self, input: &Normalized<'_>, out: &mut Vec<Finding>) {
        let text = input.original();
        let mut found = self.scan(text.as_bytes());

        // Full-width digits, `＠`, invisible characters inside a number: the folded view sees
        // through them. Only new findings are kept, mapped back to the original.
        if !input.is_identity() {
            for c in self.scan(input.folded().as_bytes()) {
                let span = input.to_original(c.start, c.end);
                let mapped = Cand {
                    start: span.start,
                    end: span.end,
                    ..c
                };
                if !mapped_overlaps(&found, &mapped) && !span.is_empty() {
                    found.push(mapped);
                }
            }
        }
        let mut taken: Vec<Span> = Vec::with_capacity(found.len());
        for c in &found {
            let span = Span::new(c.start, c.end);
            taken.push(span);
            out.push(Finding::new(
                DetectorId::Pii,
                c.kind.as_str(),
                c.kind.severity(),
                c.conf,
                span,
            ));
        }

        // Decoded segments: one finding per kind per segment, on the encoded run.
        for seg in input.decoded() {
            if taken.iter().any(|s| s.overlaps(&seg.span)) {
                continue;
            }
            let mut kinds = 0u16;
            for c in self.scan(seg.text.as_bytes()) {
                if kinds & c.kind.bit() != 0 {
                    continue;
                }
                kinds |= c.kind.bit();
                out.push(
                    Finding::new(
                        DetectorId::Pii,
                        c.kind.as_str(),
                        c.kind.severity(),
                        c.conf * 0.95,
                        seg.span,
                    )
                    .with_encoding(Some(seg.encoding)),
                );
            }
            if kinds != 0 {
                taken.push(seg.span);
            }
        }
    }
}

fn mapped_overlaps(found: &[Cand], c: &Cand) -> bool {
    found.iter().any(|k| k.start < c.end && c.start < k.end)
}

/// A candidate finding, in bytes of the scanned text.
#[derive(Debug, Clone, Copy)]
struct Cand {
    kind: PiiEntity,
    start: usize,
    end: usize,
    conf: f32,
}

/// How strong a match's own evidence is, for ties: a check digit (Luhn, mod-97, Verhoeff) or a
/// fixed national shape says more than digits that merely look like a phone number.
fn evidence(kind: PiiEntity) -> u8 {
    match kind {
        E::CreditCard | E::Iban | E::InAadhaar | E::BrCpf | E::EsDni | E::ItFiscalCode => 3,
        E::UsSsn | E::CaSin => 2,
        E::Email | E::IpAddress => 1,
        E::Phone => 0,
    }
}

/// Keeps, of overlapping candidates, the most confident (on a tie, the one with the stronger
/// evidence of its own).
fn resolve(mut cands: Vec<Cand>) -> Vec<Cand> {
    if cands.len() < 2 {
        return cands;
    }
    cands.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut kept: Vec<Cand> = Vec::with_capacity(cands.len());
    for c in cands {
        match kept.last_mut() {
            Some(last) if c.start < last.end => {
                if c.conf > last.conf
                    || (c.conf == last.conf && evidence(c.kind) > evidence(last.kind))
                {
                    *last = c;
                }
            }
            _ => kept.push(c),
        }
    }
    kept
}

// ---------------------------------------------------------------------------------------------
// Context cues

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cue {
    /// Counts when it ends within [`NEAR`] bytes before a candidate, or is a label right after it.
    Near(PiiEntity),
    /// Counts only right next to a candidate (`Office: …`, `… office`, `registered …`).
    Label(PiiEntity),
    /// Lowers confidence when it is nearer than any positive cue, within [`NEAR_NEG`] bytes.
    Neg,
    /// A currency or a unit right next to a number: the number is a quantity.
    Unit,
}

const NEAR: usize = 48;
const NEAR_NEG: usize = 32;
const NEG_PENALTY: f32 = 0.35;
/// When the only cue near a candidate names another entity (`SIN 046 454 286` is not a phone).
const COMPETING_PENALTY: f32 = 0.2;

use PiiEntity as E;

#[rustfmt::skip]
const CUES: &[(&str, Cue)] = &[
    // phone
    ("phone", Cue::Near(E::Phone)), ("telephone", Cue::Near(E::Phone)), ("tel", Cue::Near(E::Phone)),
    ("ph", Cue::Near(E::Phone)), ("mobile", Cue::Near(E::Phone)), ("mob", Cue::Near(E::Phone)),
    ("cell", Cue::Near(E::Phone)), ("cellphone", Cue::Near(E::Phone)), ("fax", Cue::Near(E::Phone)),
    ("call", Cue::Near(E::Phone)), ("calling", Cue::Near(E::Phone)), ("text me", Cue::Near(E::Phone)),
    ("sms", Cue::Near(E::Phone)), ("whatsapp", Cue::Near(E::Phone)), ("dial", Cue::Near(E::Phone)),
    ("answering", Cue::Near(E::Phone)), ("messages", Cue::Near(E::Phone)),
    ("message me", Cue::Near(E::Phone)), ("hotline", Cue::Near(E::Phone)),
    ("helpline", Cue::Near(E::Phone)), ("landline", Cue::Near(E::Phone)),
    ("voicemail", Cue::Near(E::Phone)), ("contact", Cue::Near(E::Phone)), ("my number", Cue::Near(E::Phone)),
    ("your number", Cue::Near(E::Phone)), ("his number", Cue::Near(E::Phone)), ("her number", Cue::Near(E::Phone)), ("reach me", Cue::Near(E::Phone)),
    ("portable", Cue::Near(E::Phone)), ("movil", Cue::Near(E::Phone)), ("celular", Cue::Near(E::Phone)),
    ("cellulare", Cue::Near(E::Phone)), ("telefon", Cue::Near(E::Phone)), ("telefono", Cue::Near(E::Phone)), ("telefone", Cue::Near(E::Phone)),
    ("office", Cue::Label(E::Phone)), ("desk", Cue::Label(E::Phone)), ("home", Cue::Label(E::Phone)),
    ("work", Cue::Label(E::Phone)), ("direct", Cue::Label(E::Phone)), ("main", Cue::Label(E::Phone)),
    ("registered", Cue::Label(E::Phone)), ("text", Cue::Label(E::Phone)), ("ext", Cue::Label(E::Phone)), ("handy", Cue::Label(E::Phone)),
    // cards
    ("card", Cue::Near(E::CreditCard)), ("credit", Cue::Near(E::CreditCard)),
    ("debit", Cue::Near(E::CreditCard)), ("visa", Cue::Near(E::CreditCard)),
    ("mastercard", Cue::Near(E::CreditCard)), ("amex", Cue::Near(E::CreditCard)),
    ("american express", Cue::Near(E::CreditCard)), ("discover", Cue::Near(E::CreditCard)),
    ("jcb", Cue::Near(E::CreditCard)), ("diners", Cue::Near(E::CreditCard)),
    ("unionpay", Cue::Near(E::CreditCard)), ("maestro", Cue::Near(E::CreditCard)),
    ("cc", Cue::Near(E::CreditCard)), ("ccn", Cue::Near(E::CreditCard)), ("cvv", Cue::Near(E::CreditCard)),
    ("cvc", Cue::Near(E::CreditCard)), ("cardholder", Cue::Near(E::CreditCard)),
    ("payment", Cue::Near(E::CreditCard)), ("charge", Cue::Near(E::CreditCard)),
    ("billing", Cue::Near(E::CreditCard)), ("pay with", Cue::Near(E::CreditCard)),
    ("paid with", Cue::Near(E::CreditCard)), ("pay by", Cue::Near(E::CreditCard)), ("pan", Cue::Near(E::CreditCard)),
    // ssn
    ("ssn", Cue::Near(E::UsSsn)), ("social security", Cue::Near(E::UsSsn)),
    ("soc sec", Cue::Near(E::UsSsn)), ("ss#", Cue::Near(E::UsSsn)), ("ssn#", Cue::Near(E::UsSsn)),
    // iban
    ("iban", Cue::Near(E::Iban)), ("bic", Cue::Near(E::Iban)), ("swift", Cue::Near(E::Iban)),
    // ip
    ("ip", Cue::Near(E::IpAddress)), ("ipv4", Cue::Near(E::IpAddress)), ("ipv6", Cue::Near(E::IpAddress)),
    ("host", Cue::Near(E::IpAddress)), ("hostname", Cue::Near(E::IpAddress)),
    ("server", Cue::Near(E::IpAddress)), ("client", Cue::Near(E::IpAddress)),
    ("dns", Cue::Near(E::IpAddress)), ("gateway", Cue::Near(E::IpAddress)),
    ("subnet", Cue::Near(E::IpAddress)), ("ping", Cue::Near(E::IpAddress)),
    ("proxy", Cue::Near(E::IpAddress)), ("router", Cue::Near(E::IpAddress)),
    ("remote_addr", Cue::Near(E::IpAddress)), ("x-forwarded-for", Cue::Near(E::IpAddress)),
    // national ids
    ("sin", Cue::Near(E::CaSin)), ("social insurance", Cue::Near(E::CaSin)),
    ("aadhaar", Cue::Near(E::InAadhaar)), ("aadhar", Cue::Near(E::InAadhaar)),
    ("uidai", Cue::Near(E::InAadhaar)), ("cpf", Cue::Near(E::BrCpf)),
    ("dni", Cue::Near(E::EsDni)), ("nie", Cue::Near(E::EsDni)), ("nif", Cue::Near(E::EsDni)),
    ("documento", Cue::Near(E::EsDni)),
    // negative: the number is an identifier of something else, or a quantity
    ("order", Cue::Neg), ("invoice", Cue::Neg), ("inv", Cue::Neg), ("ref", Cue::Neg),
    ("reference", Cue::Neg), ("tracking", Cue::Neg), ("track", Cue::Neg), ("shipment", Cue::Neg),
    ("parcel", Cue::Neg), ("isbn", Cue::Neg), ("issn", Cue::Neg), ("doi", Cue::Neg),
    ("version", Cue::Neg), ("ver", Cue::Neg), ("build", Cue::Neg), ("release", Cue::Neg),
    ("serial", Cue::Neg), ("sku", Cue::Neg), ("model", Cue::Neg), ("part", Cue::Neg),
    ("zip", Cue::Neg), ("zip code", Cue::Neg), ("zipcode", Cue::Neg), ("postal", Cue::Neg),
    ("postcode", Cue::Neg), ("po box", Cue::Neg), ("box", Cue::Neg), ("account", Cue::Neg),
    ("acct", Cue::Neg), ("routing", Cue::Neg), ("ticket", Cue::Neg), ("case", Cue::Neg),
    ("confirmation", Cue::Neg), ("booking", Cue::Neg), ("receipt", Cue::Neg), ("patent", Cue::Neg),
    ("lot", Cue::Neg), ("batch", Cue::Neg), ("license", Cue::Neg), ("licence", Cue::Neg),
    ("passport", Cue::Neg), ("population", Cue::Neg), ("price", Cue::Neg), ("cost", Cue::Neg),
    ("total", Cue::Neg), ("amount", Cue::Neg), ("balance", Cue::Neg), ("salary", Cue::Neg),
    ("page", Cue::Neg), ("chapter", Cue::Neg), ("python", Cue::Neg), ("kernel", Cue::Neg),
    ("firmware", Cue::Neg), ("upgrade", Cue::Neg),
    ("$", Cue::Unit), ("€", Cue::Unit), ("£", Cue::Unit), ("¥", Cue::Unit), ("usd", Cue::Unit),
    ("eur", Cue::Unit), ("gbp", Cue::Unit), ("inr", Cue::Unit), ("dollars", Cue::Unit),
    ("euros", Cue::Unit), ("pounds", Cue::Unit), ("km", Cue::Unit), ("kg", Cue::Unit),
    ("miles", Cue::Unit), ("lbs", Cue::Unit), ("mb", Cue::Unit), ("gb", Cue::Unit), ("kb", Cue::Unit),
    ("ms", Cue::Unit), ("%", Cue::Unit), ("times", Cue::Unit), ("people", Cue::Unit),
    ("users", Cue::Unit), ("items", Cue::Unit), ("units", Cue::Unit), ("votes", Cue::Unit),
    ("views", Cue::Unit), ("points", Cue::Unit), ("years", Cue::Unit), ("days", Cue::Unit),
    ("hours", Cue::Unit), ("minutes", Cue::Unit), ("seconds", Cue::Unit),
];

static CUE_AC: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(CUES.iter().map(|(p, _)| p))
        .ok()
});

/// What the cues around one candidate say.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    /// Distance from the nearest positive cue before, per entity (`usize::MAX`: none).
    pos_dist: [usize; N_ENT],
    /// Distance from the nearest negative cue before.
    neg_dist: usize,
    /// Entities labelled right after the candidate.
    after_pos: u16,
    /// A unit or currency right next to the candidate.
    unit: bool,
}

impl Ctx {
    fn pos(&self, e: PiiEntity) -> bool {
        self.after_pos & e.bit() != 0 || self.dist(e) != usize::MAX
    }

    fn neg(&self, e: PiiEntity) -> bool {
        self.unit || (self.neg_dist < self.dist(e) && self.after_pos & e.bit() == 0)
    }

    /// Whether a cue for another entity is nearer than any cue for `e`.
    fn competing(&self, e: PiiEntity) -> bool {
        let own = self.dist(e);
        self.after_pos & e.bit() == 0
            && self
                .pos_dist
                .iter()
                .enumerate()
                .any(|(i, &d)| i != e as usize && d != usize::MAX && d < own)
    }

    fn dist(&self, e: PiiEntity) -> usize {
        self.pos_dist.get(e as usize).copied().unwrap_or(usize::MAX)
    }
}

/// Whether a cue match `[s, e)` stands as a word of its own (a plural `s` is allowed).
fn cue_bounded(t: &[u8], s: usize, e: usize) -> bool {
    let first_alpha = t.get(s).is_some_and(u8::is_ascii_alphabetic);
    let last_alpha = e
        .checked_sub(1)
        .and_then(|i| t.get(i))
        .is_some_and(u8::is_ascii_alphabetic);
    if first_alpha && s > 0 && at(t, s - 1).is_ascii_alphabetic() {
        return false;
    }
    if last_alpha {
        let a = at(t, e);
        let plural = a == b's' && !at(t, e + 1).is_ascii_alphabetic();
        if a.is_ascii_alphabetic() && !plural {
            return false;
        }
    }
    true
}

/// Only label punctuation and a little space between a cue ending at `he` and a number at `s`.
fn adjacent_before(t: &[u8], he: usize, s: usize) -> bool {
    s >= he
        && s - he <= 4
        && t.get(he..s)
            .is_some_and(|gap| gap.iter().all(|b| b" \t\r\n:#.-=(\"'".contains(b)))
}

fn adjacent_after(t: &[u8], e: usize, hs: usize) -> bool {
    hs >= e
        && hs - e <= 3
        && t.get(e..hs)
            .is_some_and(|gap| gap.iter().all(|b| b" \t-(,/\\[".contains(b)))
}

// ---------------------------------------------------------------------------------------------
// Scanner

/// One run of digits inside a cluster, with the separator flags before it.
#[derive(Debug, Clone, Copy)]
struct Group {
    s: usize,
    e: usize,
    sep: u8,
}

const SP: u8 = 1;
const DA: u8 = 2;
const DO: u8 = 4;
const OP: u8 = 8;
const CP: u8 = 16;
const SL: u8 = 32;

/// Longest digit string any entity here can have.
const MAX_DIGITS: usize = 19;

/// The features of a run of groups being judged.
#[derive(Debug, Clone, Copy)]
struct Num {
    d: [u8; MAX_DIGITS],
    nd: usize,
    lens: [u8; MAX_DIGITS],
    /// Separator flags before each group (0 for the first).
    seps: [u8; MAX_DIGITS],
    ng: usize,
    /// The numeric value of each group (at most 19 digits, so it fits in u64).
    vals: [u64; MAX_DIGITS],
    plus: bool,
    /// Union of separator flags between the groups.
    sep_all: u8,
    sub: bool,
}

impl Num {
    fn digits(&self) -> &[u8] {
        self.d.get(..self.nd).unwrap_or(&[])
    }

    fn lens(&self) -> &[u8] {
        self.lens.get(..self.ng).unwrap_or(&[])
    }

    /// The numeric value of group `g`.
    fn value(&self, g: usize) -> u64 {
        self.vals.get(g).copied().unwrap_or(0)
    }

    /// The features of groups `k..=j`, or `None` when they hold more than [`MAX_DIGITS`] digits.
    fn build(t: &[u8], groups: &[Group], k: usize, j: usize, plus: bool) -> Option<Num> {
        let mut num = Num {
            d: [0; MAX_DIGITS],
            nd: 0,
            lens: [0; MAX_DIGITS],
            seps: [0; MAX_DIGITS],
            ng: 0,
            vals: [0; MAX_DIGITS],
            plus,
            sep_all: 0,
            sub: false,
        };
        for (gi, g) in groups.get(k..=j)?.iter().enumerate() {
            let digits = t.get(g.s..g.e)?;
            let dst = num.d.get_mut(num.nd..num.nd + digits.len())?;
            dst.copy_from_slice(digits);
            num.nd += digits.len();
            *num.lens.get_mut(gi)? = u8::try_from(digits.len()).ok()?;
            *num.vals.get_mut(gi)? = self::num(digits);
            if gi > 0 {
                *num.seps.get_mut(gi)? = g.sep;
            }
            num.ng += 1;
        }
        Some(num)
    }

    /// The features of the first `ng` groups; `more` says whether the cluster goes on after them.
    fn prefix(&self, ng: usize, more: bool) -> Num {
        let ng = ng.min(self.ng);
        let nd = self.lens.iter().take(ng).map(|&l| usize::from(l)).sum();
        let sep_all = self.seps.iter().take(ng).skip(1).fold(0, |a, &s| a | s);
        Num {
            nd,
            ng,
            sep_all,
            sub: self.sub || more,
            ..*self
        }
    }

    /// Whether all separators between groups are exactly `flags`.
    fn seps_all(&self, flags: u8) -> bool {
        self.seps.iter().take(self.ng).skip(1).all(|&s| s == flags)
    }
}

/// A structural verdict: the entity, its base confidence and the boost a cue gives it.
#[derive(Debug, Clone, Copy)]
struct Base {
    e: PiiEntity,
    base: f32,
    boost: f32,
}

fn base(e: PiiEntity, base: f32, boost: f32) -> Option<Base> {
    Some(Base { e, base, boost })
}

fn at(t: &[u8], i: usize) -> u8 {
    t.get(i).copied().unwrap_or(0)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_word(t: &[u8], mut i: usize) -> usize {
    while i < t.len() && is_word(at(t, i)) {
        i += 1;
    }
    i
}

struct Scanner<'a> {
    t: &'a [u8],
    det: &'a PiiDetector,
    out: Vec<Cand>,
    groups: Vec<Group>,
    /// Where the cluster or token being judged starts; cues are looked for before it.
    anchor: usize,
    /// Cue matches (end, cue) before `hits_anchor`.
    hits: Vec<(usize, Cue)>,
    hits_anchor: Option<usize>,
    /// After-cues of the last candidate end looked at.
    after: Option<(usize, u16, bool)>,
    /// An extension (`x890`) after the cluster being judged: where the digits end, where it ends.
    ext: Option<(usize, usize)>,
}

impl Scanner<'_> {
    fn push(&mut self, kind: PiiEntity, start: usize, end: usize, conf: f32) {
        if self.det.on(kind) && meets(conf, self.det.min_confidence) && start < end {
            self.out.push(Cand {
                kind,
                start,
                end,
                conf: conf.clamp(0.0, 0.99),
            });
        }
    }

    /// Cues around a candidate at `[s, e)`. Cue matches before the current anchor (the start of
    /// the cluster or token being judged) are found once and reused for every candidate in it:
    /// digits and separators hold no cue, so only distances change. What follows is looked at
    /// only when a letter or a currency sign could start right there.
    fn context(&mut self, s: usize, e: usize) -> Ctx {
        let t = self.t;
        let anchor = self.anchor.min(s);
        if self.hits_anchor != Some(anchor) {
            self.hits.clear();
            let ws = anchor.saturating_sub(NEAR);
            if let (Some(ac), Some(win)) = (&*CUE_AC, t.get(ws..anchor)) {
                for m in ac.find_iter(win) {
                    let (hs, he) = (ws + m.start(), ws + m.end());
                    if let Some(&(_, cue)) = CUES.get(m.pattern().as_usize()) {
                        if cue_bounded(t, hs, he) {
                            self.hits.push((he, cue));
                        }
                    }
                }
            }
            self.hits_anchor = Some(anchor);
        }
        let mut cx = Ctx {
            pos_dist: [usize::MAX; N_ENT],
            neg_dist: usize::MAX,
            after_pos: 0,
            unit: false,
        };
        for &(he, cue) in &self.hits {
            let Some(dist) = s.checked_sub(he).filter(|&d| d <= NEAR) else {
                continue;
            };
            let adj = adjacent_before(t, he, s);
            match cue {
                Cue::Near(ent) => {
                    if let Some(d) = cx.pos_dist.get_mut(ent as usize) {
                        *d = (*d).min(dist);
                    }
                }
                Cue::Label(ent) if adj => {
                    if let Some(d) = cx.pos_dist.get_mut(ent as usize) {
                        *d = (*d).min(dist);
                    }
                }
                Cue::Neg if dist <= NEAR_NEG => cx.neg_dist = cx.neg_dist.min(dist),
                Cue::Unit if adj => cx.unit = true,
                _ => {}
            }
        }
        let (after_pos, unit) = match self.after {
            Some((at_e, pos, unit)) if at_e == e => (pos, unit),
            _ => {
                let v = after_cues(t, e);
                self.after = Some((e, v.0, v.1));
                v
            }
        };
        cx.after_pos = after_pos;
        cx.unit |= unit;
        cx
    }

    // -----------------------------------------------------------------------------------------
    // Numbers

    fn numbers(&mut self) {
        let t = self.t;
        let n = t.len();
        let mut i = 0;
        while i < n {
            let Some(off) = t
                .get(i..)
                .and_then(|r| r.iter().position(u8::is_ascii_digit))
            else {
                break;
            };
            let d = i + off;
            let prev = if d > 0 { at(t, d - 1) } else { b' ' };
            let prev2 = if d > 1 { at(t, d - 2) } else { b' ' };
            if is_word(prev) {
                i = self.alnum_token(d).max(d + 1);
                continue;
            }
            // Part of something longer: `1,234`, `v1.2`, `/orders/123`, `ID-123`, `a@123`.
            if (matches!(prev, b'.' | b',' | b':' | b'/' | b'-') && prev2.is_ascii_digit())
                || (matches!(prev, b'.' | b'-' | b'/' | b'@' | b'\\') && is_word(prev2))
            {
                i = skip_word(t, d).max(d + 1);
                continue;
            }
            i = self.cluster(d).max(d + 1);
        }
    }

    /// A token of letters then digits starting at most six letters before `d`: an IBAN, an
    /// Italian fiscal code or a Spanish NIE. Returns where scanning resumes.
    fn alnum_token(&mut self, d: usize) -> usize {
        let t = self.t;
        let mut ts = d;
        while ts > 0 && d - ts <= 6 && is_word(at(t, ts - 1)) {
            ts -= 1;
        }
        let end = skip_word(t, d);
        if ts > 0 && is_word(at(t, ts - 1)) {
            return end;
        }
        self.anchor = ts;
        let letters = d - ts;
        if letters == 2 && self.det.on(E::Iban) {
            if let Some(e) = iban_at(t, ts) {
                self.push(E::Iban, ts, e, 0.95);
                return e.max(end);
            }
        }
        if letters == 6 && end - ts == 16 && self.det.on(E::ItFiscalCode) {
            if t.get(ts..end).is_some_and(it_fiscal_ok) {
                self.push(E::ItFiscalCode, ts, end, 0.9);
            }
        } else if letters == 1 && end - ts == 9 && self.det.on(E::EsDni) {
            if let Some(tok) = t.get(ts..end) {
                if nie_ok(tok) {
                    let cx = self.context(ts, end);
                    let conf = adjust(0.65, 0.3, &cx, E::EsDni, false);
                    self.push(E::EsDni, ts, end, conf);
                }
            }
        }
        end
    }

    /// Grows a cluster of digit groups from the digit at `d` and judges its pieces. Returns
    /// where scanning resumes.
    fn cluster(&mut self, d: usize) -> usize {
        let t = self.t;
        let n = t.len();
        let mut groups = std::mem::take(&mut self.groups);
        groups.clear();
        // `(202) …`, `+44 …`, `+(44) …`, `(+358) …`
        let free = |i: usize| i == 0 || !(is_word(at(t, i - 1)) || at(t, i - 1) == b')');
        let (lead, plus_at) = match (at(t, d.wrapping_sub(1)), at(t, d.wrapping_sub(2))) {
            (b'(', b'+') if d >= 2 && free(d - 2) => (d - 1, Some(d - 2)),
            (b'(', _) if d >= 1 => (d - 1, None),
            (b'+', b'(') if d >= 2 => (d - 2, Some(d - 2)),
            (b'+', _) if d >= 1 && free(d - 1) => (d - 1, Some(d - 1)),
            _ => (d, None),
        };
        let opened = at(t, lead) == b'(' && lead < d;
        self.anchor = plus_at.map_or(lead, |p| p.min(lead));
        let mut depth: u8 = u8::from(opened);
        let mut p = d;
        let mut sep = 0u8;
        loop {
            let gs = p;
            while p < n && at(t, p).is_ascii_digit() {
                p += 1;
            }
            groups.push(Group { s: gs, e: p, sep });
            let mut q = p;
            while q < n && q - p < 3 && matches!(at(t, q), b' ' | b'-' | b'.' | b'/' | b'(' | b')')
            {
                q += 1;
            }
            if q == p || !at(t, q).is_ascii_digit() {
                break;
            }
            let flags = match t.get(p..q) {
                Some(b" ") => SP,
                Some(b"-") => DA,
                Some(b".") => DO,
                Some(b")") => CP,
                Some(b") ") => CP | SP,
                Some(b")-") => CP | DA,
                Some(b").") => CP | DO,
                Some(b" (") => SP | OP,
                Some(b"(") => OP,
                Some(b"/") => SL,
                Some(b")/") => CP | SL,
                _ => break,
            };
            if flags & CP != 0 {
                if depth != 1 {
                    break;
                }
                depth = 0;
            }
            if flags & OP != 0 {
                if depth != 0 {
                    break;
                }
                depth = 1;
            }
            sep = flags;
            p = q;
        }

        // What follows the last group: glued letters make it part of a word, except for a
        // Spanish DNI (`12345678Z`), whose letter is its check.
        let mut resume = p;
        let next = at(t, p);
        // A phone extension: `555-123-4567x890`, `… ext. 12`, `… ext 12`.
        let ext = extension(t, p);
        if let Some(e) = ext {
            resume = e;
        }
        let glued = ext.is_none() && is_word(next)
            || next == b'@'
            || (next == b'.' && at(t, p + 1).is_ascii_alphanumeric());
        if glued {
            resume = skip_word(t, p);
            let single = groups.len() == 1 && plus_at.is_none() && lead == d;
            if single && p - d == 8 && self.det.on(E::EsDni) {
                let dni_end = if next.is_ascii_alphabetic() && !is_word(at(t, p + 1)) {
                    Some(p + 1)
                } else if next == b'-'
                    && at(t, p + 1).is_ascii_alphabetic()
                    && !is_word(at(t, p + 2))
                {
                    Some(p + 2)
                } else {
                    None
                };
                if let Some(e) = dni_end {
                    if t.get(d..e).is_some_and(dni_ok) {
                        let cx = self.context(d, e);
                        let conf = adjust(0.65, 0.3, &cx, E::EsDni, false);
                        self.push(E::EsDni, d, e, conf);
                    }
                }
            }
            // Drop the last piece: it belongs to the word.
            let last_piece = groups.iter().rposition(|g| g.sep & SP != 0).unwrap_or(0);
            groups.truncate(last_piece);
        }

        // The shortest entity here, `1.2.3.4`, has four digits.
        let digits: usize = groups.iter().map(|g| g.e - g.s).sum();
        if digits >= 4 {
            self.ext = ext.map(|e| (p, e));
            self.pieces(&groups, plus_at);
            self.ext = None;
        }
        self.groups = groups;
        resume
    }

    /// Judges runs of whole pieces, longest first from each piece start.
    fn pieces(&mut self, groups: &[Group], plus_at: Option<usize>) {
        let ng = groups.len();
        let len = |k: usize| groups.get(k).map_or(0, |g| g.e - g.s);
        let piece_start = |k: usize| k == 0 || groups.get(k).is_some_and(|g| g.sep & SP != 0);
        let mut k = 0;
        while k < ng {
            if !piece_start(k) {
                k += 1;
                continue;
            }
            let mut jmax = k;
            let mut nd = len(k);
            while jmax + 1 < ng && nd + len(jmax + 1) <= MAX_DIGITS {
                jmax += 1;
                nd += len(jmax);
            }
            let mut hit = None;
            let mut j = jmax;
            let plus = if k == 0 { plus_at } else { None };
            // Every run from `k` is a prefix of the longest one: build its features once.
            let full = Num::build(self.t, groups, k, jmax, plus.is_some())
                .map(|n| Num { sub: k > 0, ..n });
            loop {
                if piece_start(j + 1) || j + 1 == ng {
                    let c = full.as_ref().and_then(|f| {
                        self.judge(f.prefix(j - k + 1, j + 1 < ng), groups, k, j, plus)
                    });
                    if let Some(c) = c {
                        hit = Some((c, j));
                        break;
                    }
                }
                if j == k {
                    break;
                }
                j -= 1;
            }
            match hit {
                // A phone read across pieces may have swallowed the start of a value with a
                // check digit (`0078-05-1120 4111 1111 1111 1111`): judge the next piece too and
                // let the overlap resolution choose.
                Some((c, j)) if c.kind == E::Phone && j > k => {
                    self.push(c.kind, c.start, c.end, c.conf);
                    k += 1;
                }
                Some((c, j)) => {
                    self.push(c.kind, c.start, c.end, c.conf);
                    k = j + 1;
                }
                None => k += 1,
            }
        }
    }

    /// The best verdict on groups `k..=j` (whose features are `num`), if any reaches the
    /// threshold.
    fn judge(
        &mut self,
        num: Num,
        groups: &[Group],
        k: usize,
        j: usize,
        plus_at: Option<usize>,
    ) -> Option<Cand> {
        let t = self.t;
        let run = groups.get(k..=j)?;
        let first = run.first()?;
        let last = run.last()?;
        let enclosed = |g: &Group| g.s > 0 && at(t, g.s - 1) == b'(' && at(t, g.e) == b')';
        let start = match plus_at {
            Some(p) => p,
            None if enclosed(first) => first.s - 1,
            None => first.s,
        };
        let end = if enclosed(last) { last.e + 1 } else { last.e };
        // Parentheses around an inner group only (`+46 (0)8 …`, `(08) 8747 …`) are phone-like.
        let parens = num.sep_all & (OP | CP) != 0 || enclosed(first);

        let mut verdicts: [Option<Base>; 7] = [None; 7];
        let on = |e: PiiEntity| self.det.on(e);
        if !parens && !num.plus {
            if on(E::IpAddress) {
                verdicts[0] = ipv4(&num);
            }
            if on(E::UsSsn) {
                verdicts[1] = ssn(&num);
            }
            if on(E::CreditCard) {
                verdicts[2] = card(&num);
            }
            if on(E::CaSin) {
                verdicts[3] = ca_sin(&num);
            }
            if on(E::BrCpf) {
                verdicts[4] = br_cpf(&num);
            }
            if on(E::InAadhaar) {
                verdicts[5] = aadhaar(&num);
            }
        }
        // An extension makes a phone number of what precedes it, and belongs to its span.
        let ext = self.ext.filter(|&(p, _)| p == last.e).map(|(_, e)| e);
        if on(E::Phone) {
            verdicts[6] = phone(&num).map(|b| match ext {
                Some(_) => Base {
                    base: b.base + 0.15,
                    ..b
                },
                None => b,
            });
        }
        if verdicts.iter().all(Option::is_none) {
            return None;
        }
        let cx = self.context(start, end);
        let mut best: Option<Cand> = None;
        for v in verdicts.iter().flatten() {
            let conf = adjust(v.base, v.boost, &cx, v.e, num.sub);
            if meets(conf, self.det.min_confidence) && best.is_none_or(|b| conf > b.conf) {
                let end = match ext {
                    Some(e) if v.e == E::Phone => e,
                    _ => end,
                };
                best = Some(Cand {
                    kind: v.e,
                    start,
                    end,
                    conf,
                });
            }
        }
        best
    }

    // -----------------------------------------------------------------------------------------
    // Emails

    fn emails(&mut self) {
        let t = self.t;
        let n = t.len();
        let mut last_end = 0;
        for a in memchr::memchr_iter(b'@', t) {
            if a < last_end || a == 0 {
                continue;
            }
            let mut ls = a;
            while ls > 0 && a - ls < 64 && is_local(at(t, ls - 1)) {
                ls -= 1;
            }
            if ls > 0 && (is_local(at(t, ls - 1)) || at(t, ls - 1) >= 0x80) {
                continue;
            }
            while ls < a && !at(t, ls).is_ascii_alphanumeric() {
                ls += 1;
            }
            if ls == a || at(t, a - 1) == b'.' {
                continue;
            }
            let mut de = a + 1;
            while de < n && de - a <= 253 && is_domain(at(t, de)) {
                de += 1;
            }
            if at(t, de) >= 0x80 || (de < n && is_domain(at(t, de))) {
                continue;
            }
            while de > a + 1 && matches!(at(t, de - 1), b'.' | b'-') {
                de -= 1;
            }
            de = a + 1 + glued_word_cut(t.get(a + 1..de).unwrap_or(&[]));
            let (Some(local), Some(domain)) = (t.get(ls..a), t.get(a + 1..de)) else {
                continue;
            };
            if local.windows(2).any(|w| w == b"..") {
                continue;
            }
            let Some(conf) = domain_confidence(domain) else {
                continue;
            };
            self.push(E::Email, ls, de, conf);
            last_end = de;
        }
    }

    // -----------------------------------------------------------------------------------------
    // IPv6

    fn ipv6(&mut self) {
        let t = self.t;
        let n = t.len();
        let tok = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
        let mut last_end = 0;
        for c in memchr::memchr_iter(b':', t) {
            if c < last_end {
                continue;
            }
            // Grow the run of address characters, never back into a run already judged; a run
            // longer than any address is skipped whole, so every byte is looked at O(1) times.
            let floor = last_end.max(c.saturating_sub(45));
            let mut s = c;
            while s > floor && tok(at(t, s - 1)) {
                s -= 1;
            }
            let mut e = c + 1;
            while e < n && tok(at(t, e)) {
                e += 1;
            }
            last_end = e;
            if e - s > 45 || (s > 0 && tok(at(t, s - 1))) {
                continue;
            }
            // A sentence may end right after the address.
            while e > s && at(t, e - 1) == b'.' {
                e -= 1;
            }
            if e > s + 1 && at(t, e - 1) == b':' && at(t, e - 2) != b':' {
                e -= 1;
            }
            if (s > 0 && (is_word(at(t, s - 1)) || tok(at(t, s - 1))))
                || is_word(at(t, e))
                || (e < n && at(t, e) == b':')
            {
                continue;
            }
            let Some(token) = t.get(s..e) else {
                continue;
            };
            if let Some(conf) = ipv6_confidence(token) {
                self.push(E::IpAddress, s, e, conf);
            }
        }
    }
}

/// A label or unit right after a candidate ending at `e`: entities labelled, and whether a unit.
fn after_cues(t: &[u8], e: usize) -> (u16, bool) {
    let gap = t.get(e..).map_or(0, |r| {
        r.iter()
            .take(4)
            .take_while(|b| b" \t-(,/\\[".contains(b))
            .count()
    });
    let first = at(t, e + gap);
    // Only letters and currency or percent signs start a cue (`€` and `£` start with 0xE2, 0xC2).
    if !(first.is_ascii_alphabetic() || matches!(first, b'$' | b'%' | 0xC2 | 0xE2)) {
        return (0, false);
    }
    let we = (e + 24).min(t.len());
    if let (Some(ac), Some(win)) = (&*CUE_AC, t.get(e..we)) {
        if let Some(m) = ac.find(win) {
            let (hs, he) = (e + m.start(), e + m.end());
            if adjacent_after(t, e, hs) && cue_bounded(t, hs, he) {
                match CUES.get(m.pattern().as_usize()).map(|c| c.1) {
                    Some(Cue::Near(ent) | Cue::Label(ent)) => return (ent.bit(), false),
                    Some(Cue::Unit) => return (0, true),
                    _ => {}
                }
            }
        }
    }
    (0, false)
}

/// `conf >= min`, tolerant of f32 rounding in sums such as 0.85 - 0.35.
fn meets(conf: f32, min: f32) -> bool {
    conf + 1e-4 >= min
}

/// The end of an extension right after a number ending at `p`: `x890`, ` ext. 12`, ` ext 12`.
fn extension(t: &[u8], p: usize) -> Option<usize> {
    let rest = t.get(p..)?;
    let skip = if rest.first() == Some(&b'x') {
        1
    } else {
        let lead = usize::from(rest.first() == Some(&b' '));
        let word = rest.get(lead..lead + 3)?;
        if !word.eq_ignore_ascii_case(b"ext") {
            return None;
        }
        let mut k = lead + 3;
        if rest.get(k) == Some(&b'.') {
            k += 1;
        }
        if rest.get(k) == Some(&b' ') {
            k += 1;
        }
        k
    };
    let digits = rest
        .get(skip..)?
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = skip + digits;
    ((1..=5).contains(&digits) && !is_word(rest.get(end).copied().unwrap_or(0))).then_some(p + end)
}

/// Base confidence, plus the boost when a cue for `e` is near, minus the penalty when a negative
/// cue is nearer; a phone number cut out of a longer cluster without a cue loses a little.
fn adjust(base: f32, boost: f32, cx: &Ctx, e: PiiEntity, sub: bool) -> f32 {
    let mut c = base;
    let pos = cx.pos(e);
    if pos {
        c += boost;
    } else if sub && e == E::Phone {
        // Spaces make phone numbers ambiguous: `12 345 678 9012` holds many 3-3-4 runs.
        c -= 0.15;
    }
    if cx.neg(e) {
        c -= NEG_PENALTY;
    } else if cx.competing(e) {
        c -= COMPETING_PENALTY;
    }
    c.clamp(0.0, 0.99)
}

// ---------------------------------------------------------------------------------------------
// Structural verdicts

fn ipv4(n: &Num) -> Option<Base> {
    if n.ng != 4 || !n.seps_all(DO) || n.lens().iter().any(|&l| l > 3) {
        return None;
    }
    let mut o = [0u64; 4];
    let mut start = 0usize;
    for (g, slot) in o.iter_mut().enumerate() {
        let len = *n.lens.get(g)? as usize;
        if len > 1 && n.d.get(start) == Some(&b'0') {
            return None;
        }
        *slot = n.value(g);
        if *slot > 255 {
            return None;
        }
        start += len;
    }
    let [a, b, c, _] = o;
    // Not addresses of anyone: this host, loopback, multicast and reserved, netmasks.
    if a == 0 || a == 127 || a >= 224 {
        return None;
    }
    let internal = a == 10
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 168)
        || (a == 169 && b == 254)
        || (a == 100 && (64..=127).contains(&b))
        || (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113);
    if internal {
        return base(E::IpAddress, 0.55, 0.3);
    }
    // `1.2.3.4`, `3.11.4.2`: small parts read as a version as often as an address.
    if o.iter().all(|&x| x <= 31) {
        return base(E::IpAddress, 0.45, 0.35);
    }
    base(E::IpAddress, 0.8, 0.15)
}

fn ssn(n: &Num) -> Option<Base> {
    if n.nd != 9 {
        return None;
    }
    let d = n.digits();
    let area = num(d.get(0..3)?);
    let group = num(d.get(3..5)?);
    let serial = num(d.get(5..9)?);
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 || all_same(d) {
        return None;
    }
    match n.lens() {
        [3, 2, 4] if n.seps_all(DA) => base(E::UsSsn, 0.65, 0.3),
        [3, 2, 4] if n.seps_all(SP) => base(E::UsSsn, 0.5, 0.4),
        [3, 2, 4] if n.seps_all(DO) => base(E::UsSsn, 0.3, 0.6),
        [9] => base(E::UsSsn, 0.15, 0.7),
        _ => None,
    }
}

fn card(n: &Num) -> Option<Base> {
    if !(12..=MAX_DIGITS).contains(&n.nd) {
        return None;
    }
    let lens = n.lens();
    let grouped = match lens {
        [_] => false,
        [4, 6, 4 | 5] => true,
        [4, rest @ ..] => {
            let (last, mid) = rest.split_last()?;
            mid.iter().all(|&l| l == 4) && (1..=4).contains(last)
        }
        _ => return None,
    };
    if grouped && !(n.seps_all(SP) || n.seps_all(DA)) {
        return None;
    }
    let d = n.digits();
    if !luhn(d) || all_same(d) {
        return None;
    }
    let (lo, hi) = match issuer_ok(d) {
        false => (0.2, 0.4),
        true => match n.nd {
            12 => (0.4, 0.45),
            13 => (0.5, 0.4),
            14 => (0.55, 0.35),
            _ if grouped => (0.85, 0.14),
            _ => (0.75, 0.2),
        },
    };
    base(E::CreditCard, lo, hi)
}

/// Whether the number's prefix and length fit a card issuer's published ranges.
fn issuer_ok(d: &[u8]) -> bool {
    let len = d.len();
    let p = |k: usize| d.get(..k).map_or(0, num);
    let (p1, p2, p3, p4, p6) = (p(1), p(2), p(3), p(4), p(6));
    // Visa
    (p1 == 4 && matches!(len, 13 | 16 | 19))
        // Mastercard, including the 2-series; Mir
        || (((51..=55).contains(&p2) || (2221..=2720).contains(&p4) || (2200..=2204).contains(&p4)) && len == 16)
        // American Express
        || (matches!(p2, 34 | 37) && len == 15)
        // Discover
        || ((p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622126..=622925).contains(&p6))
            && (16..=19).contains(&len))
        // JCB, and its legacy 15-digit ranges
        // (3528-3589 is assigned; the rest of 35 is unassigned but generated by test-data tools,
        // and nothing else issues 16-digit Luhn numbers there)
        || (p2 == 35 && (16..=19).contains(&len))
        || (matches!(p4, 1800 | 2131) && len == 15)
        // Diners Club
        || (((300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39)) && (14..=19).contains(&len))
        // UnionPay, RuPay
        || ((p2 == 62 || p2 == 81 || p2 == 82 || p2 == 60) && (16..=19).contains(&len))
        // Maestro
        || ((p2 == 50 || (56..=69).contains(&p2)) && (12..=19).contains(&len))
}

fn ca_sin(n: &Num) -> Option<Base> {
    let d = n.digits();
    let shaped = match n.lens() {
        [3, 3, 3] => n.seps_all(SP) || n.seps_all(DA),
        [9] => true,
        _ => false,
    };
    // 0 is never issued, 8 is for business numbers.
    if !shaped || matches!(d.first(), Some(b'0' | b'8')) || !luhn(d) || all_same(d) {
        return None;
    }
    base(E::CaSin, 0.15, 0.7)
}

fn br_cpf(n: &Num) -> Option<Base> {
    if n.nd != 11 || !cpf_ok(n.digits()) {
        return None;
    }
    let formatted = n.lens() == [3, 3, 3, 2] && n.seps.get(1..4) == Some(&[DO, DO, DA][..]);
    match n.lens() {
        _ if formatted => base(E::BrCpf, 0.85, 0.1),
        [11] => base(E::BrCpf, 0.15, 0.7),
        _ => None,
    }
}

fn aadhaar(n: &Num) -> Option<Base> {
    let d = n.digits();
    if n.nd != 12 || matches!(d.first(), Some(b'0' | b'1')) || !verhoeff_ok(d) || all_same(d) {
        return None;
    }
    match n.lens() {
        [4, 4, 4] if n.seps_all(SP) || n.seps_all(DA) => base(E::InAadhaar, 0.35, 0.55),
        [12] => base(E::InAadhaar, 0.15, 0.7),
        _ => None,
    }
}

fn phone(n: &Num) -> Option<Base> {
    let d = n.digits();
    let lens = n.lens();
    if !(7..=16).contains(&n.nd) || all_same(d) || date_like(n) || progression(n) || years(n) {
        return None;
    }
    // A trunk `(0)` inside an international number is not dialled from abroad.
    let trunk_in_parens =
        n.seps.iter().take(n.ng).any(|&s| s & OP != 0) && lens.iter().skip(1).any(|&l| l == 1);
    if n.plus {
        let max = if trunk_in_parens { 16 } else { 15 };
        return (calling_code_ok(d) && (8..=max).contains(&n.nd)).then_some(Base {
            e: E::Phone,
            base: 0.8,
            boost: 0.15,
        });
    }
    if n.nd > 15 {
        return None;
    }
    let separated = n.ng >= 2;
    // International prefix dialled from Europe (`00`) or North America (`011`).
    if separated {
        let rest = if d.starts_with(b"011") {
            d.get(3..)
        } else if d.starts_with(b"00") {
            d.get(2..)
        } else {
            None
        };
        if let Some(rest) = rest {
            if calling_code_ok(rest) && (8..=13).contains(&rest.len()) {
                return base(E::Phone, 0.65, 0.3);
            }
        }
    }
    // North American numbering plan: (NXX) NXX-XXXX, optionally after a `1`. The 3-3-4 shape
    // with separators is a phone number even when the digits break the plan's rules.
    let nanp_lens = match lens {
        [1, 3, 3, 4] if d.first() == Some(&b'1') => Some(1),
        [3, 3, 4] => Some(0),
        _ => None,
    };
    if let Some(off) = nanp_lens {
        if n.sep_all & SL == 0 && (n.sep_all & DO == 0 || n.sep_all == DO) {
            let area = d.get(off).copied().unwrap_or(b'0');
            let exch = d.get(off + 3).copied().unwrap_or(b'0');
            let valid = (b'2'..=b'9').contains(&area) && (b'2'..=b'9').contains(&exch);
            return base(E::Phone, if valid { 0.7 } else { 0.55 }, 0.25);
        }
    }
    // Dots are phone separators only when they are the only separator (parentheses aside) and
    // there are at least three groups (`01.84.17.61.18`); two dotted groups are a decimal
    // unless a cue says otherwise (`Tel. 8746.3319`).
    if n.sep_all & DO != 0 {
        if n.sep_all & !(DO | CP) != 0 {
            return None;
        }
        // Four short dotted groups are an address written in octal or with leading zeros.
        if n.ng == 4 && lens.iter().all(|&l| l <= 4) {
            return None;
        }
        if n.ng < 3 {
            return match lens {
                [3 | 4, 4] => base(E::Phone, 0.1, 0.45),
                _ => None,
            };
        }
    }
    // National numbers with a trunk prefix: 020 7946 0958, 06 12 34 56 78, (08) 8747 6301.
    if separated
        && d.first() == Some(&b'0')
        && d.get(1) != Some(&b'0')
        && (9..=11).contains(&n.nd)
        && lens.iter().all(|&l| (2..=8).contains(&l))
    {
        return base(E::Phone, 0.6, 0.35);
    }
    if separated {
        let (first, rest) = lens.split_first()?;
        let (last, mid) = rest.split_last()?;
        // Single digits appear inside some national formats (`321 2 233`), never at the end.
        let singles = mid.iter().filter(|&&l| l == 1).count();
        if !(1..=5).contains(first)
            || !(2..=6).contains(last)
            || !mid.iter().all(|&l| (1..=6).contains(&l))
            || singles > 1
            || n.nd > 12
        {
            return None;
        }
        // `12 345 678`: as likely a quantity with thousands separators.
        let thousands = *first <= 3 && rest.iter().all(|&l| l == 3);
        return base(E::Phone, if thousands { 0.25 } else { 0.35 }, 0.45);
    }
    match n.nd {
        10..=12 => base(E::Phone, 0.25, 0.45),
        7..=9 => base(E::Phone, 0.15, 0.45),
        _ => None,
    }
}

/// Three consecutive groups that read as a date: 2015-12-22, 22.12.2015, 12/22/2015.
fn date_like(n: &Num) -> bool {
    let year = |v: u64| (1900..=2099).contains(&v);
    (0..n.ng.saturating_sub(2)).any(|k| {
        let l = |i: usize| n.lens.get(k + i).copied().unwrap_or(0);
        let (a, b, c) = (n.value(k), n.value(k + 1), n.value(k + 2));
        let same_sep = n.seps.get(k + 1) == n.seps.get(k + 2);
        let ymd = l(0) == 4
            && year(a)
            && l(1) <= 2
            && (1..=12).contains(&b)
            && l(2) <= 2
            && (1..=31).contains(&c);
        let dmy = l(0) <= 2
            && l(1) <= 2
            && l(2) == 4
            && year(c)
            && (((1..=31).contains(&a) && (1..=12).contains(&b))
                || ((1..=12).contains(&a) && (1..=31).contains(&b)));
        same_sep && (ymd || dmy)
    })
}

/// Two adjacent four-digit years: `1997-2000`, `1900 1947`.
fn years(n: &Num) -> bool {
    let year = |g: usize| n.lens.get(g) == Some(&4) && (1900..=2099).contains(&n.value(g));
    (1..n.ng).any(|g| year(g - 1) && year(g))
}

/// Four or more groups of one length in arithmetic progression: a list, not a number.
fn progression(n: &Num) -> bool {
    if n.ng < 4 {
        return false;
    }
    let l0 = n.lens.first().copied().unwrap_or(0);
    if n.lens().iter().any(|&l| l != l0) {
        return false;
    }
    let v = n.vals.get(..n.ng).unwrap_or(&[]);
    let diff = |w: &[u64]| {
        let (a, b) = (
            w.first().copied().unwrap_or(0),
            w.get(1).copied().unwrap_or(0),
        );
        i128::from(b) - i128::from(a)
    };
    let step = diff(v);
    v.windows(2).all(|w| diff(w) == step)
}

/// Whether `d` starts with an assigned ITU country calling code.
fn calling_code_ok(d: &[u8]) -> bool {
    const TWO: &[u64] = &[
        20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55,
        56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98,
    ];
    // Two-digit prefixes of the three-digit codes.
    const THREE: &[u64] = &[
        21, 22, 23, 24, 25, 26, 29, 35, 37, 38, 42, 50, 59, 67, 68, 69, 85, 87, 88, 96, 97, 99,
    ];
    match d.first() {
        Some(b'1' | b'7') => true,
        Some(_) => {
            let two = d.get(..2).map_or(0, num);
            TWO.contains(&two) || (THREE.contains(&two) && d.len() >= 3)
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Checksums and token checks

fn num(d: &[u8]) -> u64 {
    d.iter().fold(0u64, |v, &c| {
        v.saturating_mul(10)
            .saturating_add(u64::from(c.wrapping_sub(b'0')))
    })
}

fn all_same(d: &[u8]) -> bool {
    d.first().is_some_and(|f| d.iter().all(|c| c == f))
}

fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &c) in d.iter().rev().enumerate() {
        let mut v = u32::from(c.wrapping_sub(b'0'));
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn verhoeff_ok(d: &[u8]) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let mut c = 0u8;
    for (i, &ch) in d.iter().rev().enumerate() {
        let digit = usize::from(ch.wrapping_sub(b'0')).min(9);
        let p = P
            .get(i % 8)
            .and_then(|row| row.get(digit))
            .copied()
            .unwrap_or(0);
        c = D
            .get(usize::from(c))
            .and_then(|row| row.get(usize::from(p)))
            .copied()
            .unwrap_or(0);
    }
    c == 0
}

fn cpf_ok(d: &[u8]) -> bool {
    if d.len() != 11 || all_same(d) {
        return false;
    }
    let v: Vec<u32> = d.iter().map(|&c| u32::from(c.wrapping_sub(b'0'))).collect();
    let check = |upto: usize| -> u32 {
        let s: u32 = v
            .iter()
            .take(upto)
            .enumerate()
            .map(|(i, &x)| x * (upto as u32 + 1 - i as u32))
            .sum();
        (s * 10) % 11 % 10
    };
    v.get(9) == Some(&check(9)) && v.get(10) == Some(&check(10))
}

const DNI_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";

/// `12345678Z` or `12345678-Z`.
fn dni_ok(tok: &[u8]) -> bool {
    let Some(digits) = tok.get(..8) else {
        return false;
    };
    let letter = tok.last().map_or(0, u8::to_ascii_uppercase);
    let idx = (num(digits) % 23) as usize;
    DNI_LETTERS.get(idx) == Some(&letter)
}

/// `X1234567L`: X, Y, Z stand for 0, 1, 2.
fn nie_ok(tok: &[u8]) -> bool {
    let lead = match tok.first().map(u8::to_ascii_uppercase) {
        Some(b'X') => 0,
        Some(b'Y') => 1,
        Some(b'Z') => 2,
        _ => return false,
    };
    let Some(digits) = tok.get(1..8) else {
        return false;
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let letter = tok.get(8).map_or(0, u8::to_ascii_uppercase);
    let idx = ((lead * 10_000_000 + num(digits)) % 23) as usize;
    DNI_LETTERS.get(idx) == Some(&letter)
}

/// Italian fiscal code: surname and name letters, birth year, month letter, day, municipality,
/// check letter. Omocodia (digits replaced by letters) is not handled.
fn it_fiscal_ok(tok: &[u8]) -> bool {
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    if tok.len() != 16 {
        return false;
    }
    let up: Vec<u8> = tok.iter().map(u8::to_ascii_uppercase).collect();
    let alpha = |r: std::ops::Range<usize>| {
        up.get(r)
            .is_some_and(|s| s.iter().all(u8::is_ascii_uppercase))
    };
    let digit =
        |r: std::ops::Range<usize>| up.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let month_ok = up.get(8).is_some_and(|m| b"ABCDEHLMPRST".contains(m));
    if !(alpha(0..6)
        && digit(6..8)
        && month_ok
        && digit(9..11)
        && alpha(11..12)
        && digit(12..15)
        && alpha(15..16))
    {
        return false;
    }
    let mut sum = 0u32;
    for (i, &c) in up.iter().take(15).enumerate() {
        let idx = if c.is_ascii_digit() {
            c - b'0'
        } else {
            c - b'A'
        } as usize;
        sum += if i % 2 == 0 {
            ODD.get(idx).copied().unwrap_or(0)
        } else {
            idx as u32
        };
    }
    up.get(15).map(|&c| u32::from(c - b'A')) == Some(sum % 26)
}

/// IBAN lengths by country (SWIFT registry).
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20), (b"BE", 16),
    (b"BG", 22), (b"BH", 22), (b"BI", 27), (b"BR", 29), (b"BY", 28), (b"CH", 21), (b"CR", 22),
    (b"CY", 28), (b"CZ", 24), (b"DE", 22), (b"DJ", 27), (b"DK", 18), (b"DO", 28), (b"EE", 20),
    (b"EG", 29), (b"ES", 24), (b"FI", 18), (b"FK", 18), (b"FO", 18), (b"FR", 27), (b"GB", 22),
    (b"GE", 22), (b"GI", 23), (b"GL", 18), (b"GR", 27), (b"GT", 28), (b"HR", 21), (b"HU", 28),
    (b"IE", 22), (b"IL", 23), (b"IQ", 23), (b"IS", 26), (b"IT", 27), (b"JO", 30), (b"KW", 30),
    (b"KZ", 20), (b"LB", 28), (b"LC", 32), (b"LI", 21), (b"LT", 20), (b"LU", 20), (b"LV", 21),
    (b"LY", 25), (b"MC", 27), (b"MD", 24), (b"ME", 22), (b"MK", 19), (b"MN", 20), (b"MR", 27),
    (b"MT", 31), (b"MU", 30), (b"NI", 28), (b"NL", 18), (b"NO", 15), (b"OM", 23), (b"PK", 24),
    (b"PL", 28), (b"PS", 29), (b"PT", 25), (b"QA", 29), (b"RO", 24), (b"RS", 22), (b"RU", 33),
    (b"SA", 24), (b"SC", 31), (b"SD", 18), (b"SE", 24), (b"SI", 19), (b"SK", 24), (b"SM", 27),
    (b"SO", 23), (b"ST", 25), (b"SV", 28), (b"TL", 23), (b"TN", 24), (b"TR", 26), (b"UA", 29),
    (b"VA", 22), (b"VG", 24), (b"XK", 20), (b"YE", 30),
];

/// An IBAN starting at `s`, compact or printed in groups of four; returns its end.
fn iban_at(t: &[u8], s: usize) -> Option<usize> {
    let cc = [
        at(t, s).to_ascii_uppercase(),
        at(t, s + 1).to_ascii_uppercase(),
    ];
    let len = IBAN_LENGTHS.iter().find(|(c, _)| **c == cc)?.1;
    let mut buf = [0u8; 34];
    let mut k = 0;
    let mut p = s;
    while k < len {
        let b = at(t, p);
        if b.is_ascii_alphanumeric() {
            *buf.get_mut(k)? = b.to_ascii_uppercase();
            k += 1;
            p += 1;
        } else if b == b' ' && k % 4 == 0 && at(t, p + 1).is_ascii_alphanumeric() {
            p += 1;
        } else {
            return None;
        }
    }
    if is_word(at(t, p)) {
        return None;
    }
    let code = buf.get(..len)?;
    if !code.get(2..4)?.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut r = 0u32;
    for &c in code.get(4..)?.iter().chain(code.get(..4)?) {
        r = if c.is_ascii_digit() {
            (r * 10 + u32::from(c - b'0')) % 97
        } else {
            (r * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    (r == 1).then_some(p)
}

/// Text extracted from HTML often glues the next word to an address (`a@b.ioHi Ganesh`): a
/// top-level domain that turns from lower to upper case ends where the case changes.
fn glued_word_cut(domain: &[u8]) -> usize {
    let tld_start = domain.iter().rposition(|&b| b == b'.').map_or(0, |i| i + 1);
    let tld = domain.get(tld_start..).unwrap_or(&[]);
    match tld.windows(2).position(|w| {
        w.first().is_some_and(u8::is_ascii_lowercase)
            && w.get(1).is_some_and(u8::is_ascii_uppercase)
    }) {
        Some(i) if i >= 1 => tld_start + i + 1,
        _ => domain.len(),
    }
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// Confidence for an email's domain, or `None` when it is not a domain name.
fn domain_confidence(domain: &[u8]) -> Option<f32> {
    if domain.len() < 4 {
        return None;
    }
    let mut labels = 0;
    let mut tld: &[u8] = &[];
    for label in domain.split(|&b| b == b'.') {
        if label.is_empty()
            || label.len() > 63
            || label.first() == Some(&b'-')
            || label.last() == Some(&b'-')
        {
            return None;
        }
        labels += 1;
        tld = label;
    }
    let tld_ok = (2..=24).contains(&tld.len()) && tld.iter().all(u8::is_ascii_alphabetic)
        || tld.starts_with(b"xn--");
    if labels < 2 || !tld_ok {
        return None;
    }
    let lower: Vec<u8> = tld.to_ascii_lowercase();
    // `logo@2x.png`: an asset name, not an address.
    const FILES: &[&[u8]] = &[
        b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"bmp", b"ico", b"css", b"js",
    ];
    if FILES.contains(&lower.as_slice()) {
        return None;
    }
    let d = domain.to_ascii_lowercase();
    let example = [&b"example.com"[..], b"example.org", b"example.net"]
        .iter()
        .any(|e| {
            d.ends_with(e) && (d.len() == e.len() || d.get(d.len() - e.len() - 1) == Some(&b'.'))
        })
        || [&b"example"[..], b"test", b"invalid", b"localhost"].contains(&lower.as_slice());
    Some(if example { 0.6 } else { 0.9 })
}

/// Confidence for an IPv6 token, or `None` when it is not a routable-looking address.
fn ipv6_confidence(token: &[u8]) -> Option<f32> {
    let s = std::str::from_utf8(token).ok()?;
    let addr: Ipv6Addr = s.parse().ok()?;
    // `a::b` or `12:34::` in code is not worth a finding; an address has a digit and some length.
    let hex = token.iter().filter(|b| b.is_ascii_hexdigit()).count();
    if hex < 4 || !token.iter().any(u8::is_ascii_digit) {
        return None;
    }
    if addr.is_loopback() || addr.is_unspecified() || addr.is_multicast() {
        return None;
    }
    let seg = addr.segments();
    let first = seg.first().copied().unwrap_or(0);
    let internal = (first & 0xffc0) == 0xfe80
        || (first & 0xfe00) == 0xfc00
        || (first == 0x2001 && seg.get(1) == Some(&0x0db8));
    Some(if internal { 0.55 } else { 0.8 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NormalizeOptions;
    use proptest::prelude::*;

    fn find_with(det: &PiiDetector, text: &str) -> Vec<(String, String)> {
        let input = Normalized::new(text, &NormalizeOptions::default());
        let mut out = Vec::new();
        det.detect(&input, &mut out);
        out.iter()
            .map(|f| {
                let m = text.get(f.span.start..f.span.end).unwrap_or("<bad span>");
                (f.kind.to_string(), m.to_owned())
            })
            .collect()
    }

    fn find(text: &str) -> Vec<(String, String)> {
        find_with(&PiiDetector::default(), text)
    }

    fn kinds(text: &str) -> Vec<String> {
        find(text).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn entity_names_round_trip_and_match_serde() {
        assert_eq!(ENTITIES.len(), PiiEntity::ALL.len());
        for e in PiiEntity::ALL {
            assert_eq!(PiiEntity::parse(e.as_str()), Some(e));
            let json = serde_json::to_string(&e).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
        }
        assert_eq!(PiiEntity::parse("shoe_size"), None);
    }

    #[test]
    fn severities_follow_harm() {
        assert_eq!(PiiEntity::CreditCard.severity(), Severity::High);
        assert_eq!(PiiEntity::UsSsn.severity(), Severity::High);
        assert_eq!(PiiEntity::Iban.severity(), Severity::High);
        assert_eq!(PiiEntity::Email.severity(), Severity::Medium);
        assert_eq!(PiiEntity::Phone.severity(), Severity::Medium);
        assert_eq!(PiiEntity::IpAddress.severity(), Severity::Low);
    }

    #[test]
    fn options_restrict_entities() {
        let text = "mail a.b@corp.io, call +44 20 7946 0958, SSN 123-45-6789";
        assert_eq!(kinds(text), ["email", "phone", "us_ssn"]);
        let only = PiiOptions::with_entity_names(&["us_ssn", "email"]).unwrap_or_default();
        let found = find_with(&PiiDetector::new(only), text);
        let k: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(k, ["email", "us_ssn"]);
        let err = PiiOptions::with_entity_names(&["email", "shoe_size"]);
        assert_eq!(err, Err(UnknownEntity("shoe_size".into())));
    }

    #[test]
    fn min_confidence_filters() {
        // A bare dashed SSN (0.65) passes the default threshold but not 0.8.
        let text = "applicant 219-09-9999";
        assert_eq!(kinds(text), ["us_ssn"]);
        let strict = PiiDetector::new(PiiOptions {
            entities: None,
            min_confidence: 0.8,
        });
        assert!(find_with(&strict, text).is_empty());
        // NaN falls back to the default rather than disabling or enabling everything.
        let nan = PiiDetector::new(PiiOptions {
            entities: None,
            min_confidence: f32::NAN,
        });
        assert_eq!(find_with(&nan, text).len(), 1);
    }

    #[test]
    fn context_raises_and_lowers_confidence() {
        let conf = |text: &str| {
            let input = Normalized::new(text, &NormalizeOptions::default());
            let mut out = Vec::new();
            PiiDetector::new(PiiOptions {
                entities: None,
                min_confidence: 0.0,
            })
            .detect(&input, &mut out);
            out.first().map_or(0.0, |f| f.confidence)
        };
        let bare = conf("x 4111 1111 1111 1111");
        assert!(conf("card 4111 1111 1111 1111") > bare);
        assert!(conf("invoice 4111 1111 1111 1111") < bare);
        assert!(conf("ssn 219099999") >= 0.8);
        assert!(conf("order 219099999") < 0.5);
        for text in ["card 4111 1111 1111 1111", "x 780 6326", "phone: 780 6326"] {
            let c = conf(text);
            assert!((0.0..=1.0).contains(&c), "{text}: {c}");
        }
    }

    #[test]
    fn checksums() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(verhoeff_ok(b"234123412346"));
        assert!(!verhoeff_ok(b"234123412347"));
        assert!(cpf_ok(b"12345678909"));
        assert!(!cpf_ok(b"12345678900"));
        assert!(!cpf_ok(b"11111111111"));
        assert!(dni_ok(b"12345678Z"));
        assert!(dni_ok(b"12345678-z"));
        assert!(!dni_ok(b"12345678A"));
        assert!(nie_ok(b"X1234567L"));
        assert!(!nie_ok(b"X1234567A"));
        assert!(it_fiscal_ok(b"RSSMRA85T10A562S"));
        assert!(!it_fiscal_ok(b"RSSMRA85T10A562T"));
        assert_eq!(iban_at(b"GB82WEST12345698765432", 0), Some(22));
        assert_eq!(iban_at(b"GB82 WEST 1234 5698 7654 32.", 0), Some(27));
        assert_eq!(iban_at(b"GB82WEST12345698765433", 0), None);
        assert_eq!(iban_at(b"GB82WEST1234569876543", 0), None);
        assert_eq!(iban_at(b"QQ82WEST12345698765432", 0), None);
    }

    #[test]
    fn card_issuers_and_grouping() {
        assert!(issuer_ok(b"4111111111111111"));
        assert!(issuer_ok(b"2720990000000007"));
        assert!(issuer_ok(b"378282246310005"));
        assert!(!issuer_ok(b"378282246310005000"));
        assert!(!issuer_ok(b"9111111111111111"));
        // 4-4-4-4 and 4-6-5 are card groupings; 3-3-3-3-4 is not.
        assert_eq!(kinds("4111 1111 1111 1111"), ["credit_card"]);
        assert_eq!(kinds("3782 822463 10005"), ["credit_card"]);
        assert!(kinds("411 111 111 111 1111").is_empty());
        // Mixed separators are not a card.
        assert!(kinds("4111-1111 1111-1111").is_empty());
    }

    #[test]
    fn phone_shapes() {
        for (text, want) in [
            ("+44 20 7946 0958", "+44 20 7946 0958"),
            ("+1-202-555-0143", "+1-202-555-0143"),
            ("(202) 555-0143", "(202) 555-0143"),
            ("202.555.0143", "202.555.0143"),
            ("020 7946 0958", "020 7946 0958"),
            ("06 12 34 56 78", "06 12 34 56 78"),
            ("(+358) 224704558", "(+358) 224704558"),
            ("555-123-4567x890", "555-123-4567x890"),
        ] {
            assert_eq!(
                find(text),
                [("phone".to_owned(), want.to_owned())],
                "{text}"
            );
        }
    }

    #[test]
    fn plain_numbers_are_not_phones() {
        for text in [
            "1234567",
            "2025550143",
            "12 345 678",
            "3.14159265",
            "2024-03-15",
            "15.03.2024 10",
            "1/23/1984",
            "1997-2000",
            "05 10 15 20 25",
            "$1 299 000",
            "256 - 36 - 14",
            "24.76 (76.57)",
            "INV-2024-00917",
            "/orders/2025550143",
            "1,234,567",
            "0177.00.00.01",
        ] {
            assert!(kinds(text).is_empty(), "{text}: {:?}", find(text));
        }
    }

    #[test]
    fn phone_cue_before_or_label_after() {
        assert!(kinds("they live at 780 6326").is_empty());
        assert_eq!(kinds("Phone:\n780 6326"), ["phone"]);
        assert_eq!(kinds("780 6326 office"), ["phone"]);
        assert_eq!(kinds("780 6326-Fax"), ["phone"]);
        // `office` only counts right next to the number.
        assert!(kinds("Our offices are located at 9543 1819 St. John").is_empty());
    }

    #[test]
    fn ssn_ranges() {
        assert_eq!(kinds("SSN 219-09-9999"), ["us_ssn"]);
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(kinds(&format!("SSN {bad}")).is_empty(), "{bad}");
        }
        // Undashed only with a cue.
        assert!(kinds("219099999").is_empty());
        assert_eq!(kinds("social security: 219099999"), ["us_ssn"]);
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(kinds("from 36.160.14.148"), ["ip_address"]);
        assert_eq!(kinds("[2001:41d0:701:1100::29c8]:443"), ["ip_address"]);
        for text in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.0",
            "::1",
            "v1.2.3.4",
            "1.2.3.4.5",
            "01.02.03.04",
            "300.1.2.3",
            "std::io::Result",
            "12:30:45",
        ] {
            assert!(kinds(text).is_empty(), "{text}: {:?}", find(text));
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            find("write to a.b-c@sub.example-corp.de."),
            [("email".to_owned(), "a.b-c@sub.example-corp.de".to_owned())]
        );
        for text in [
            "a..b@x.io",
            "@x.io",
            "a@b",
            "a@b.c",
            "x@2x.png",
            "pkg@1.2.3",
            "a@-b.io",
        ] {
            assert!(kinds(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn regression_email_glued_to_next_word() {
        assert_eq!(
            find("To: ganesh@moonchaser.ioHi Ganesh"),
            [("email".to_owned(), "ganesh@moonchaser.io".to_owned())]
        );
    }

    #[test]
    fn obfuscated_and_encoded() {
        let fw = "ｐｅｔｒａ＠ｍａｉｌｂｏｘ．ｏｒｇ";
        assert_eq!(find(fw), [("email".to_owned(), fw.to_owned())]);
        assert_eq!(
            find("ssn 219-09-\u{200B}9999"),
            [("us_ssn".to_owned(), "219-09-\u{200B}9999".to_owned())]
        );
        let input = Normalized::new(
            "x TXkgU1NOIGlzIDIxOS0wOS05OTk5 y",
            &NormalizeOptions::default(),
        );
        let mut out = Vec::new();
        PiiDetector::default().detect(&input, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out.first().and_then(|f| f.encoding),
            Some(crate::Encoding::Base64)
        );
    }

    #[test]
    fn adversarial_inputs_terminate_quickly() {
        let det = PiiDetector::default();
        for (name, text) in crate::sample::adversarial_inputs(64 * 1024) {
            let start = std::time::Instant::now();
            let input = Normalized::new(&text, &NormalizeOptions::default());
            let mut out = Vec::new();
            det.detect(&input, &mut out);
            // Generous: catches quadratic behaviour (seconds), not slow debug builds.
            assert!(
                start.elapsed().as_secs() < 5,
                "{name} took {:?}",
                start.elapsed()
            );
        }
    }

    proptest! {
        #[test]
        fn spans_are_in_bounds_and_on_char_boundaries(s in "[0-9a-zA-Z@.:+() \\-/x４＠é\u{200B}]{0,80}") {
            let input = Normalized::new(&s, &NormalizeOptions::default());
            let mut out = Vec::new();
            PiiDetector::default().detect(&input, &mut out);
            for f in out {
                prop_assert!(f.span.start < f.span.end && f.span.end <= s.len());
                prop_assert!(s.is_char_boundary(f.span.start) && s.is_char_boundary(f.span.end));
                prop_assert!((0.0..=1.0).contains(&f.confidence));
            }
        }

        #[test]
        fn numeric_noise_never_panics(s in "[0-9 .\\-()+/]{0,200}") {
            let input = Normalized::new(&s, &NormalizeOptions::default());
            let mut out = Vec::new();
            PiiDetector::default().detect(&input, &mut out);
        }
    }
}
