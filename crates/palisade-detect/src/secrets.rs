//! Credentials: provider tokens, private keys, JWTs, credentials in URLs, headers and command
//! lines, and generic `password=` / `api_key:` / `"token":` assignments.
//!
//! Four families of evidence, strongest first:
//!
//! - **Provider formats** (`ghp_…`, `AKIA…`, `xoxb-…`, `sk_live_…`, `sk-ant-api03-…`, …): a
//!   prefix, a character class and a length, sometimes a checksum (GitHub and npm tokens carry a
//!   CRC32 in their last six characters) or a marker (`T3BlbkFJ` in OpenAI keys, the `AA` tail of
//!   Anthropic keys). Each provider has its own kind, so a policy can treat a Stripe test key
//!   differently from a live one.
//! - **Structures**: PEM private-key blocks (the span covers the block), JWTs whose header decodes
//!   to JSON with `"alg"`, `scheme://user:password@host` (kind `connection_string` for databases
//!   and queues, `basic_auth` otherwise), `Authorization:` headers, and passwords on command
//!   lines (`curl -u user:password`, `mysql -pS3cret`, `sshpass -p`, `docker login -p`).
//! - **Vendor contexts**: an identifier naming a vendor (`softlayer_api_key`, `cloudant_pw`,
//!   `ibm_cloud_iam_key`, `aws_secret_access_key`, a registry-scoped `//host/:_authToken` in
//!   `.npmrc`, the host of a `https://user:pass@acct.cloudant.com` URL, …) whose value has that
//!   vendor's exact shape.
//! - **Generic assignments**: an identifier whose head word is a secret word (`password`, `secret`,
//!   `token`, `api_key`, `*_key` with a qualifier, …), an operator (`=`, `:`, `:=`, `=>`, XML
//!   elements, CLI flags, "is"), and a literal value gated by length, character classes and
//!   Shannon entropy.
//!
//! Every finding's span is the secret value only (never the `password=` key), so redaction removes
//! exactly the secret and leaves the text readable.
//!
//! **Placeholders.** A provider token of the right format whose body is filler (`xxxx`, a run
//! of one character, a repeated unit), a typed pattern (below), too little entropy or an
//! `EXAMPLE` marker (`AKIAZZZZZZZZZZZZZZZZ`, `ghp_xxxx…`, AWS's published `AKIAIOSFODNN7EXAMPLE`)
//! is still reported, under its provider kind, at severity `low` and confidence 0.3; so is a
//! vendor-context value of the vendor's exact shape with such a body (`cos_secret_key =
//! "1234567890abcdef…"`, or the password of a `…cloudant.com` URL). The format is what peer scanners flag and
//! a guardrail cannot prove a token fake, while a policy that acts on medium and above leaves
//! obvious placeholders alone. `SecretsDetector::report_placeholders(false)` drops them.
//!
//! **What is not flagged, by design.** Generic assignments whose value is conventionally a
//! placeholder: stop words (`changeme`, `password`, `None`, `test`, `dummy`, `redacted`, …),
//! templates and lookups (`${VAR}`, `{{ secret }}`, `<your-key>`, `%s`, `$(cmd)`,
//! `os.environ[…]`, `process.env.X`), fillers and masks (`xxxxxxxx`, `****`, a body of one or two
//! distinct characters, a run of eight identical characters), values containing `EXAMPLE`,
//! typed patterns, time-based (version 1 and 2) UUIDs, and code rather than literals (`a::b`
//! paths, calls, `snake_case` names, `name: Type = …` annotations). A typed pattern is what a
//! person writes when inventing a value: a walk of twelve or more through the alphabet, the
//! digits (`7890123…`) or a keyboard row, up or down (`abcdefghijkl`, `qwertyuiopas`); a value of
//! sixteen bytes or more made mostly of walks and runs of three, read straight or every other
//! character (`abc123def456…`, `a1b2c3d4…`, `1111aaaa2222…`); or one unit written three or more
//! times (`abcd1234abcd1234abcd1234…`). Random material almost never has these shapes, so they
//! cost no recall on real keys. Templates are never reported, not even in a provider format.
//! Invented values that look random are flagged: a detector cannot tell them from real ones, and
//! a false alarm on a fixture costs less than a leak. Stripe publishable keys (`pk_live_…`) are
//! public by design and not reported.
//!
//! **Speed.** One case-sensitive Aho-Corasick DFA finds, in a single pass, every provider prefix
//! and structural anchor (`ghp_`, `AKIA`, `eyJ`, `-----BEGIN`, `://`, `Q~`, `:AA`, …) and every
//! secret word in its three usual casings (`password`, `Password`, `PASSWORD`, which also covers
//! `dbPassword` and `X-Api-Key`). Regexes only run anchored at a hit, on a window bounded by the
//! longest token of that format, and a hit is rejected in O(1) unless it starts at a token
//! boundary, so two accepted scans never cover the same run. A keyword hit inspects at most a
//! bounded identifier and a bounded value, and later hits inside the same identifier are skipped.
//! Discord bot tokens, which have no literal prefix, are found from `memchr` over dots. Work per
//! call is linear in the input. The trade-off of matching casings rather than folding case is that
//! `pAsSwOrD=` goes unseen.
//!
//! **Evasion.** When the input holds invisible characters, the text is scanned again with them
//! removed (spans mapped back), so `ghp_\u{200B}abc…` is still caught; decoded base64 / hex / URL
//! segments from normalisation are scanned too, and findings there carry their encoding. Homoglyph
//! folding is not applied: provider tokens are case-sensitive ASCII, and folding would destroy
//! them.
//!
//! **Trade-offs.** Generic assignments are heuristic: a hard-coded literal under `apiKey` is
//! flagged even when it is a public client key, and an unquoted bare word is treated as a variable
//! (not flagged), so a letters-only password in an `.env` file is missed. Known published example
//! keys are not allow-listed by value.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::Regex;

use crate::normalize::{base64_decode, is_invisible};
use crate::{Detector, DetectorId, Finding, Normalized, Severity, Span};

/// Every kind this detector reports.
#[rustfmt::skip]
pub const KINDS: &[&str] = &[
    "aws_access_key_id", "aws_secret_access_key", "aws_bedrock_api_key", "google_api_key",
    "google_oauth_client_secret", "google_oauth_token", "azure_storage_key", "azure_client_secret",
    "alibaba_access_key_id", "digitalocean_token", "heroku_api_key", "ibm_cloud_api_key",
    "ibm_cos_hmac_secret", "softlayer_api_key", "cloudant_credential", "github_token",
    "gitlab_token", "bitbucket_app_password", "atlassian_api_token", "sourcegraph_token",
    "slack_token", "slack_webhook", "discord_bot_token", "discord_webhook", "telegram_bot_token",
    "stripe_key", "square_token", "braintree_token", "openai_api_key",
    "anthropic_api_key", "huggingface_token", "groq_api_key", "replicate_api_token",
    "perplexity_api_key", "xai_api_key", "langsmith_api_key", "cohere_api_key", "npm_token",
    "pypi_token", "rubygems_api_key", "nuget_api_key", "clojars_token", "artifactory_token",
    "sendgrid_api_key", "mailchimp_api_key", "mailgun_api_key", "twilio_api_key",
    "twilio_account_sid", "twilio_auth_token", "facebook_access_token", "shopify_token",
    "onepassword_token", "onepassword_secret_key", "hashicorp_vault_token", "terraform_cloud_token",
    "notion_token", "intra42_secret", "octopus_deploy_api_key", "databricks_token", "grafana_token",
    "sentry_token", "postman_api_key", "linear_api_key", "doppler_token", "age_secret_key",
    "pulumi_token", "infracost_api_key", "prefect_api_key", "readme_api_key", "flyio_token",
    "planetscale_token", "supabase_token", "tailscale_key", "newrelic_api_key", "dynatrace_token",
    "mapbox_secret_token", "easypost_api_key", "shippo_api_token", "figma_token", "datadog_api_key",
    "jwt", "private_key", "connection_string", "basic_auth", "bearer_token", "generic_secret",
];

/// The `secrets` detector. Its tables are compiled once per process and shared.
pub struct SecretsDetector {
    engine: &'static Engine,
    report_placeholders: bool,
}

impl Default for SecretsDetector {
    fn default() -> Self {
        SecretsDetector {
            engine: &ENGINE,
            report_placeholders: true,
        }
    }
}

impl SecretsDetector {
    /// Whether format-valid tokens with a placeholder body (`AKIAZZZZZZZZZZZZZZZZ`,
    /// `ghp_xxxx…`, values with `EXAMPLE`) are reported, at low severity. On by default: the
    /// format is the evidence other scanners use, and the finding costs nothing under a policy
    /// that acts on medium and above.
    #[must_use]
    pub fn report_placeholders(mut self, yes: bool) -> Self {
        self.report_placeholders = yes;
        self
    }
}

impl std::fmt::Debug for SecretsDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsDetector")
            .field("token_rules", &self.engine.rules.len())
            .field("report_placeholders", &self.report_placeholders)
            .finish()
    }
}

impl Detector for SecretsDetector {
    fn id(&self) -> DetectorId {
        DetectorId::Secrets
    }

    fn detect(&self, input: &Normalized<'_>, out: &mut Vec<Finding>) {
        let text = input.original();
        let keep = |c: &Cand| self.report_placeholders || !c.placeholder;
        let mut kept = self.engine.scan(text);
        kept.retain(keep);

        // The same text with invisible characters removed: a token split by a zero-width space is
        // still a token. Only findings the first pass missed are added.
        if !input.invisible_runs().is_empty() || has_invisible(text) {
            let (stripped, map) = strip_invisible(text);
            for c in self.engine.scan(&stripped).into_iter().filter(keep) {
                let start = map.get(c.start).copied().unwrap_or(text.len());
                let end = c
                    .end
                    .checked_sub(1)
                    .and_then(|i| map.get(i).copied())
                    .map_or(start, |i| i + char_len_at(text, i));
                let mapped = Cand { start, end, ..c };
                if !kept.iter().any(|k| overlaps(k, &mapped)) {
                    kept.push(mapped);
                }
            }
        }
        for c in &kept {
            out.push(Finding::new(
                DetectorId::Secrets,
                c.kind,
                c.severity,
                c.confidence,
                Span::new(c.start, c.end),
            ));
        }

        // Decoded segments: one finding per kind per segment, spanning the encoded run.
        let mut taken: Vec<Span> = kept.iter().map(|c| Span::new(c.start, c.end)).collect();
        for seg in input.decoded() {
            if taken.iter().any(|s| s.overlaps(&seg.span)) {
                continue;
            }
            let found = self.engine.scan(&seg.text);
            let mut kinds: Vec<&'static str> = Vec::new();
            for c in found.into_iter().filter(keep) {
                if kinds.contains(&c.kind) {
                    continue;
                }
                kinds.push(c.kind);
                out.push(
                    Finding::new(
                        DetectorId::Secrets,
                        c.kind,
                        c.severity,
                        c.confidence * 0.9,
                        seg.span,
                    )
                    .with_encoding(Some(seg.encoding)),
                );
            }
            if !kinds.is_empty() {
                taken.push(seg.span);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Byte classes

/// ASCII letters and digits.
const AN: u8 = 1;
/// `_`
const US: u8 = 2;
/// `-`
const DA: u8 = 4;
/// `.`
const DO: u8 = 8;
/// `+` and `/`
const PS: u8 = 16;
/// `=`
const EQ: u8 = 32;
/// `~`
const TI: u8 = 64;
/// `$`
const DL: u8 = 128;

fn in_cls(b: u8, cls: u8) -> bool {
    (cls & AN != 0 && b.is_ascii_alphanumeric())
        || (cls & US != 0 && b == b'_')
        || (cls & DA != 0 && b == b'-')
        || (cls & DO != 0 && b == b'.')
        || (cls & PS != 0 && (b == b'+' || b == b'/'))
        || (cls & EQ != 0 && b == b'=')
        || (cls & TI != 0 && b == b'~')
        || (cls & DL != 0 && b == b'$')
}

// ---------------------------------------------------------------------------------------------
// Candidates

/// A finding before overlap resolution. `prio` decides which of two overlapping candidates wins.
#[derive(Debug, Clone, Copy)]
struct Cand {
    start: usize,
    end: usize,
    kind: &'static str,
    severity: Severity,
    confidence: f32,
    prio: u8,
    /// A format-valid value whose body is filler or an example: reported at low severity.
    placeholder: bool,
}

const PRIO_PEM: u8 = 7;
const PRIO_TOKEN: u8 = 6;
const PRIO_JWT: u8 = 5;
const PRIO_STRUCT: u8 = 4;
const PRIO_VENDOR: u8 = 3;
const PRIO_GENERIC: u8 = 2;

fn overlaps(a: &Cand, b: &Cand) -> bool {
    a.start < b.end && b.start < a.end
}

/// Most candidates kept for one text; beyond this the input is noise, not a config file.
const MAX_CANDS: usize = 4096;

/// Keeps the strongest of overlapping candidates, returned in text order.
fn resolve(mut cands: Vec<Cand>) -> Vec<Cand> {
    cands.sort_by(|a, b| {
        b.prio.cmp(&a.prio).then(a.start.cmp(&b.start)).then(
            b.end
                .saturating_sub(b.start)
                .cmp(&a.end.saturating_sub(a.start)),
        )
    });
    let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
    let mut kept = Vec::with_capacity(cands.len());
    for c in cands {
        if c.end <= c.start {
            continue;
        }
        let clash_before = taken
            .range(..c.end)
            .next_back()
            .is_some_and(|(_, &e)| e > c.start);
        if clash_before {
            continue;
        }
        taken.insert(c.start, c.end);
        kept.push(c);
    }
    kept.sort_by_key(|c| c.start);
    kept
}

// ---------------------------------------------------------------------------------------------
// Provider token rules

/// Extra validation of a provider token beyond its regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    /// GitHub / npm: the last 6 base62 characters are the CRC32 of the 30 before them.
    /// A valid checksum raises confidence; an invalid one lowers it (test fixtures).
    Crc32Base62,
    /// OpenAI: legacy and project keys embed `T3BlbkFJ` (base64 of "OpenAI"); newer project
    /// keys without it are accepted only when long.
    OpenAi,
    /// Anthropic keys end in `AA`.
    AnthropicTail,
    /// Needs upper- and lower-case letters (Hugging Face: letters only, so a camelCase word
    /// would otherwise pass).
    MixedCase,
    /// Needs a digit and a letter (keeps dictionary words and numbers out).
    DigitAndLetter,
    /// Bedrock long-term keys are base64 of `BedrockAPIKey-…`.
    Bedrock,
    /// The provider's tokens are hex (Twilio); other lower-case letters make a placeholder.
    Hex,
    /// Letters only is a word or an identifier (`APAddressBook`), unless it is filler.
    NotAWord,
}

/// Where in a match the secret span starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpanMode {
    Whole,
    /// After the n-th `/` of the match (webhook and API URLs: the host and path are not secret).
    AfterSlashes(u8),
    /// After the first `=` of the match (`AccountKey=`).
    AfterEq,
}

#[derive(Debug, Clone)]
struct Spec {
    kind: &'static str,
    anchors: &'static [&'static str],
    pattern: &'static str,
    /// Bytes from the token start to its random body (used for entropy and filler checks).
    body_from: usize,
    /// The token's own characters; boundaries are judged against them.
    class: u8,
    severity: Severity,
    confidence: f32,
    /// How far before the anchor the token starts (anchors in the middle of a token).
    lookback: &'static [usize],
    /// A short or common prefix: also refuse tokens glued to `.`, `/` or `+` (file names, paths,
    /// base64 blobs).
    weak: bool,
    min_entropy: f32,
    check: Check,
    span: SpanMode,
    /// Longest token of the format, plus one; the regex never looks further.
    window: usize,
    /// Text that may precede the token despite the boundary rule (`/bot` in Telegram URLs).
    after_ok: Option<&'static str>,
    /// The anchor is a host name: anything may precede it (`https://`, `//`).
    no_left: bool,
}

fn spec(
    kind: &'static str,
    anchors: &'static [&'static str],
    pattern: &'static str,
    body_from: usize,
    class: u8,
    severity: Severity,
) -> Spec {
    Spec {
        kind,
        anchors,
        pattern,
        body_from,
        class,
        severity,
        confidence: 0.9,
        lookback: &[0],
        weak: false,
        min_entropy: 2.5,
        check: Check::None,
        span: SpanMode::Whole,
        window: 300,
        after_ok: None,
        no_left: false,
    }
}

impl Spec {
    fn conf(mut self, c: f32) -> Self {
        self.confidence = c;
        self
    }
    fn lookback(mut self, l: &'static [usize]) -> Self {
        self.lookback = l;
        self
    }
    fn weak(mut self) -> Self {
        self.weak = true;
        self
    }
    fn entropy(mut self, h: f32) -> Self {
        self.min_entropy = h;
        self
    }
    fn check(mut self, c: Check) -> Self {
        self.check = c;
        self
    }
    fn span(mut self, s: SpanMode) -> Self {
        self.span = s;
        self
    }
    fn window(mut self, w: usize) -> Self {
        self.window = w;
        self
    }
    fn after_ok(mut self, s: &'static str) -> Self {
        self.after_ok = Some(s);
        self
    }
    fn host(mut self) -> Self {
        self.no_left = true;
        self
    }
}

use Severity::{Critical, High, Low, Medium};

/// Builds the rule table: `kind, [anchors], pattern, body offset, class, severity .modifier(x)…;`
macro_rules! specs {
    ($($kind:literal, [$($anchor:literal),+ $(,)?], $pattern:literal, $body:expr, $class:expr, $sev:ident $(.$m:ident($($arg:expr),*))*;)*) => {
        vec![$(spec($kind, &[$($anchor),+], $pattern, $body, $class, $sev)$(.$m($($arg),*))*),*]
    };
}

/// The provider formats, one a line: kind, anchors, pattern (anchored at the token start; every
/// quantifier bounded so that a scan never passes the window), offset of the random body, the
/// token's own characters, severity, then adjustments. Kept as a macro table so that it stays one
/// rule a line.
#[rustfmt::skip]
fn specs() -> Vec<Spec> {
    const W: u8 = AN | US;
    const WD: u8 = AN | US | DA;
    const B64: u8 = AN | PS | EQ;
    specs![
        // Cloud
        "aws_access_key_id", ["AKIA", "ASIA", "ABIA", "ACCA", "A3T"], r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}", 4, AN, Critical .entropy(2.8);
        "aws_bedrock_api_key", ["ABSK"], r"ABSK[A-Za-z0-9+/]{109,269}={0,2}", 4, B64, Critical .check(Check::Bedrock) .window(280);
        "aws_bedrock_api_key", ["bedrock-api-key-"], r"bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t[A-Za-z0-9+/=%&_-]{0,2000}", 16, B64 | US | DA, Critical .window(2100);
        "google_api_key", ["AIzaSy"], r"AIzaSy[A-Za-z0-9_-]{33}", 6, WD, Critical .conf(0.85) .entropy(3.0);
        "google_oauth_client_secret", ["GOCSPX-"], r"GOCSPX-[A-Za-z0-9_-]{28}", 7, WD, Critical;
        "google_oauth_token", ["ya29."], r"ya29\.[A-Za-z0-9_-]{30,1024}", 5, WD, High .window(1100);
        "azure_storage_key", ["AccountKey=", "SharedAccessKey="], r"(?:AccountKey=[A-Za-z0-9+/]{86}==|SharedAccessKey=[A-Za-z0-9+/]{42,43}=)", 11, B64, Critical .span(SpanMode::AfterEq) .entropy(3.5);
        "azure_client_secret", ["Q~"], r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}", 6, AN | US | TI | DO | DA, Critical .lookback(&[4]) .entropy(3.0) .conf(0.85);
        "alibaba_access_key_id", ["LTAI"], r"LTAI[A-Za-z0-9]{20}", 4, AN, High .entropy(3.0) .check(Check::DigitAndLetter);
        "digitalocean_token", ["dop_v1_", "doo_v1_", "dor_v1_"], r"do[opr]_v1_[a-f0-9]{64}", 7, W, Critical;
        "heroku_api_key", ["HRKU-"], r"HRKU-AA[A-Za-z0-9_-]{58}", 7, WD, Critical;
        "softlayer_api_key", ["api.softlayer.com/soap/"], r"api\.softlayer\.com/soap/v3(?:\.1)?/[a-z0-9]{64}", 0, AN, Critical .span(SpanMode::AfterSlashes(3)) .host();
        // Version control and developer platforms
        "github_token", ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"], r"gh[pousr]_[A-Za-z0-9]{36}", 4, W, Critical .check(Check::Crc32Base62);
        "github_token", ["github_pat_"], r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}", 11, W, Critical;
        "gitlab_token", ["glpat-", "gldt-", "glft-", "glsoat-", "glrt-"], r"gl(?:pat|dt|ft|soat|rt)-[A-Za-z0-9_-]{20,50}(?:\.[0-9a-z]{2}\.[0-9a-z]{7,9})?", 5, WD, Critical;
        "gitlab_token", ["GR1348941"], r"GR1348941[A-Za-z0-9_-]{20,50}", 9, WD, Critical;
        "gitlab_token", ["glcbt-"], r"glcbt-(?:[0-9a-fA-F]{2}_)?[A-Za-z0-9_-]{20,50}", 6, WD, Critical;
        "gitlab_token", ["glimt-"], r"glimt-[A-Za-z0-9_-]{25}", 6, WD, Critical;
        "gitlab_token", ["glptt-"], r"glptt-[A-Za-z0-9_-]{40}", 6, WD, Critical;
        "gitlab_token", ["glagent-"], r"glagent-[A-Za-z0-9_-]{50,1024}", 8, WD, Critical .window(1040);
        "gitlab_token", ["gloas-"], r"gloas-[A-Za-z0-9_-]{64}", 6, WD, Critical;
        "bitbucket_app_password", ["ATBB"], r"ATBB[A-Za-z0-9_=.-]{28,40}", 4, WD | EQ | DO, Critical .entropy(3.0);
        "atlassian_api_token", ["ATATT3"], r"ATATT3[A-Za-z0-9_=-]{150,250}", 6, WD | EQ, Critical;
        "sourcegraph_token", ["sgp_"], r"sgp_(?:(?:[a-fA-F0-9]{16}|local)_[a-fA-F0-9]{40}|[a-fA-F0-9]{40})", 4, W, Critical;
        // Chat
        "slack_token", ["xoxb-"], r"xoxb-[0-9]{8,14}-(?:[0-9]{8,14}-)?[A-Za-z0-9]{18,48}", 5, WD, Critical;
        "slack_token", ["xoxp-", "xoxe-"], r"xox[pe](?:-[0-9]{8,14}){3}-[A-Za-z0-9]{28,34}", 5, WD, Critical;
        "slack_token", ["xoxe-"], r"xoxe-[0-9]-[A-Za-z0-9]{146}", 5, WD, Critical;
        "slack_token", ["xoxe.xoxb-", "xoxe.xoxp-"], r"xoxe\.xox[bp]-[0-9]-[A-Za-z0-9]{163,166}", 10, WD | DO, Critical;
        "slack_token", ["xoxa-", "xoxr-"], r"xox[ar]-(?:[0-9]-)?[A-Za-z0-9]{8,48}", 5, WD, Critical .check(Check::DigitAndLetter);
        "slack_token", ["xoxs-", "xoxo-"], r"xox[os]-[0-9]+-[0-9]+-[0-9]+-[a-fA-F0-9]{8,64}", 5, WD, Critical;
        "slack_token", ["xapp-"], r"xapp-[0-9]-[A-Z0-9]{6,20}-[0-9]{6,20}-[a-z0-9]{32,80}", 5, WD, Critical;
        "slack_webhook", ["hooks.slack.com/"], r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,120}", 16, AN | PS, Critical .span(SpanMode::AfterSlashes(2)) .host();
        "discord_webhook", ["discord.com/api/webhooks/", "discordapp.com/api/webhooks/"], r"discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68}", 25, WD | PS, Critical .span(SpanMode::AfterSlashes(3)) .host();
        "telegram_bot_token", [":AA"], r"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}", 0, WD, Critical .lookback(&[10, 9, 8]) .after_ok("/bot");
        // Payment
        "stripe_key", ["sk_live_", "rk_live_"], r"[sr]k_live_[A-Za-z0-9]{24,247}", 8, W, Critical;
        "stripe_key", ["sk_test_", "rk_test_"], r"[sr]k_test_[A-Za-z0-9]{24,247}", 8, W, Medium .conf(0.8);
        "stripe_key", ["whsec_"], r"whsec_[A-Za-z0-9+/=]{32,64}", 6, W | PS | EQ, High;
        "square_token", ["sq0atp-", "sq0csp-"], r"sq0(?:atp-[A-Za-z0-9_-]{22}|csp-[A-Za-z0-9_-]{43})", 7, WD, Critical;
        "square_token", ["EAAA"], r"EAAA[A-Za-z0-9_+=-]{60}", 4, WD | PS | EQ, Critical .entropy(3.5) .conf(0.8);
        "braintree_token", ["access_token$production$", "access_token$sandbox$"], r"access_token\$(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32}", 13, W | DL, Critical;
        // AI providers
        "anthropic_api_key", ["sk-ant-"], r"sk-ant-(?:api|admin|oat|sid)[0-9]{2}-[A-Za-z0-9_-]{80,120}", 13, WD, Critical .check(Check::AnthropicTail);
        "openai_api_key", ["sk-"], r"sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,250}", 3, WD, Critical .check(Check::OpenAi);
        "huggingface_token", ["hf_"], r"hf_[A-Za-z]{34}", 3, W, Critical .check(Check::MixedCase) .entropy(3.5);
        "huggingface_token", ["api_org_"], r"api_org_[A-Za-z]{34}", 8, W, Critical .check(Check::MixedCase) .entropy(3.5);
        "groq_api_key", ["gsk_"], r"gsk_[A-Za-z0-9]{52}", 4, W, Critical;
        "replicate_api_token", ["r8_"], r"r8_[A-Za-z0-9]{37}", 3, W, Critical .check(Check::DigitAndLetter);
        "perplexity_api_key", ["pplx-"], r"pplx-[A-Za-z0-9]{48}", 5, WD, Critical;
        "xai_api_key", ["xai-"], r"xai-[A-Za-z0-9]{80}", 4, WD, Critical;
        "langsmith_api_key", ["lsv2_pt_", "lsv2_sk_"], r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}", 8, W, Critical;
        // Package registries
        "npm_token", ["npm_"], r"npm_[A-Za-z0-9]{36}", 4, W, Critical .check(Check::Crc32Base62);
        "pypi_token", ["pypi-AgEIcHlwaS5vcmc", "pypi-AgENdGVzdC5weXBpLm9yZw"], r"pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{70,2000}", 5, WD, Critical .window(2100);
        "rubygems_api_key", ["rubygems_"], r"rubygems_[a-f0-9]{48}", 9, W, Critical;
        "nuget_api_key", ["oy2"], r"oy2[a-z0-9]{43}", 3, AN, High .weak() .entropy(3.5) .check(Check::DigitAndLetter);
        "clojars_token", ["CLOJARS_"], r"CLOJARS_[a-z0-9]{60}", 8, W, Critical;
        "artifactory_token", ["AKCp"], r"AKCp[A-Za-z0-9]{64,73}", 4, AN, Critical .entropy(3.5);
        "artifactory_token", ["cmVmdGtuOjAxOj"], r"cmVmdGtuOjAxOj[A-Za-z0-9]{50}", 14, AN, Critical;
        // Older API keys (`AKC…`) and encrypted passwords (`AP` + a hex digit), in the loose shape
        // other scanners accept.
        "artifactory_token", ["AKC", "AP0", "AP1", "AP2", "AP3", "AP4", "AP5", "AP6", "AP7", "AP8", "AP9", "APA", "APB", "APC", "APD", "APE", "APF"], r"(?:AKC[A-Za-z0-9]{10,100}|AP[0-9A-F][A-Za-z0-9]{8,100})", 3, AN, High .weak() .conf(0.6) .entropy(3.0) .check(Check::NotAWord) .window(110);
        // Messaging and e-mail
        "sendgrid_api_key", ["SG."], r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", 3, WD | DO, Critical;
        "mailchimp_api_key", ["-us"], r"[0-9a-f]{32}-us[0-9]{1,2}", 0, AN, Critical .lookback(&[32]);
        "mailgun_api_key", ["key-"], r"key-[a-f0-9]{32}", 4, AN, High .weak() .entropy(3.0);
        "twilio_api_key", ["SK"], r"SK[0-9a-z]{32}", 2, AN, High .weak() .entropy(3.0) .check(Check::Hex);
        "twilio_account_sid", ["AC"], r"AC[0-9a-z]{32}", 2, AN, Low .weak() .entropy(3.0) .conf(0.7) .check(Check::Hex);
        // Social
        "facebook_access_token", ["EAAB", "EAAC", "EAAG", "EAAM", "EAAI", "EAAJ"], r"EAA[BCGMIJ][A-Za-z0-9]{90,400}", 4, AN, Critical .entropy(4.0);
        // Commerce
        "shopify_token", ["shpat_", "shpca_", "shppa_", "shpss_"], r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", 6, W, Critical;
        "easypost_api_key", ["EZAK", "EZTK"], r"EZ[AT]K[A-Za-z0-9]{54}", 4, AN, Critical .weak();
        "shippo_api_token", ["shippo_live_", "shippo_test_"], r"shippo_(?:live|test)_[a-f0-9]{40}", 12, W, Critical;
        // Secrets managers and infrastructure
        "onepassword_token", ["ops_eyJ"], r"ops_eyJ[A-Za-z0-9+/]{250,8000}={0,3}", 4, B64, Critical .window(8100);
        "onepassword_secret_key", ["A3-"], r"A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}", 3, AN | DA, Critical .entropy(3.0);
        "hashicorp_vault_token", ["hvs."], r"hvs\.[A-Za-z0-9_-]{90,120}", 4, WD, Critical;
        "hashicorp_vault_token", ["hvb."], r"hvb\.[A-Za-z0-9_-]{138,300}", 4, WD, Critical;
        "terraform_cloud_token", [".atlasv1."], r"[a-z0-9]{14}\.atlasv1\.[a-z0-9_=-]{60,70}", 0, AN | US | EQ | DA | DO, Critical .lookback(&[14]);
        "notion_token", ["ntn_"], r"ntn_[0-9]{11}[A-Za-z0-9]{35}", 4, W, Critical;
        "intra42_secret", ["s-s4t2ud-", "s-s4t2af-"], r"s-s4t2(?:ud|af)-[a-fA-F0-9]{64}", 9, WD, Critical;
        "octopus_deploy_api_key", ["API-"], r"API-[A-Z0-9]{26}", 4, AN, High .weak() .entropy(3.0) .check(Check::DigitAndLetter);
        "databricks_token", ["dapi"], r"dapi[a-f0-9]{32}(?:-[0-9]{1,2})?", 4, AN, Critical .weak();
        "grafana_token", ["glc_eyJ"], r"glc_eyJ[A-Za-z0-9+/]{32,400}={0,2}", 4, B64, Critical;
        "grafana_token", ["glsa_"], r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}", 5, W, Critical;
        "sentry_token", ["sntrys_eyJ"], r"sntrys_eyJ[A-Za-z0-9+/=_-]{50,400}", 7, B64 | US | DA, Critical;
        "sentry_token", ["sntryu_"], r"sntryu_[a-f0-9]{64}", 7, W, Critical;
        "postman_api_key", ["PMAK-"], r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}", 5, WD, Critical;
        "linear_api_key", ["lin_api_"], r"lin_api_[A-Za-z0-9]{40}", 8, W, Critical;
        "doppler_token", ["dp.pt.", "dp.st.", "dp.sa.", "dp.ct."], r"dp\.(?:pt|st|sa|ct)\.[A-Za-z0-9]{40,44}", 6, AN | DO, Critical;
        "age_secret_key", ["AGE-SECRET-KEY-1"], r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", 16, AN | DA, Critical;
        "pulumi_token", ["pul-"], r"pul-[a-f0-9]{40}", 4, AN, Critical .weak();
        "infracost_api_key", ["ico-"], r"ico-[A-Za-z0-9]{32}", 4, AN, High .weak() .entropy(3.0);
        "prefect_api_key", ["pnu_"], r"pnu_[A-Za-z0-9]{36}", 4, W, Critical;
        "readme_api_key", ["rdme_"], r"rdme_[a-z0-9]{70}", 5, W, Critical;
        "flyio_token", ["fo1_"], r"fo1_[A-Za-z0-9_-]{43}", 4, WD, Critical;
        "flyio_token", ["fm1r_", "fm1a_", "fm2_"], r"fm(?:1[ar]|2)_[A-Za-z0-9+/]{100,2000}={0,3}", 4, B64 | US, Critical .window(2100);
        "planetscale_token", ["pscale_tkn_", "pscale_pw_", "pscale_oauth_"], r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9=._-]{32,64}", 10, WD | EQ | DO, Critical;
        "supabase_token", ["sbp_"], r"sbp_[a-f0-9]{40}", 4, W, Critical;
        "tailscale_key", ["tskey-"], r"tskey-(?:api|auth|client|webhook|scim)-[A-Za-z0-9]{8,20}-[A-Za-z0-9]{16,64}", 6, WD, Critical;
        "newrelic_api_key", ["NRAK-"], r"NRAK-[A-Z0-9]{27}", 5, AN | DA, Critical;
        "dynatrace_token", ["dt0c01."], r"dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}", 7, AN | DO, Critical;
        "mapbox_secret_token", ["sk.eyJ"], r"sk\.eyJ[A-Za-z0-9_-]{20,200}\.[A-Za-z0-9_-]{20,64}", 3, WD | DO, Critical;
        "figma_token", ["figd_"], r"figd_[A-Za-z0-9_-]{40}", 5, WD, Critical;
    ]
}

#[derive(Debug)]
struct Rule {
    kind: &'static str,
    regex: Regex,
    body_from: usize,
    left: u8,
    right: u8,
    severity: Severity,
    confidence: f32,
    lookback: &'static [usize],
    min_entropy: f32,
    check: Check,
    span: SpanMode,
    window: usize,
    after_ok: Option<&'static str>,
    weak: bool,
}

/// What a hit of the automaton leads to.
#[derive(Debug)]
enum Anchor {
    Rules(Vec<usize>),
    Jwt,
    Pem,
    Url,
    Word(Keyword),
}

/// What a secret word leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Ident,
    Cli(Tool),
    Facebook,
}

/// Secret words, lower-case; each is matched as written, Capitalised and UPPER-CASE, which covers
/// `password`, `dbPassword`, `DB_PASSWORD` and `X-Api-Key` without a case-insensitive pass.
const KEYWORDS: &[(&str, Keyword)] = &[
    ("password", Keyword::Ident),
    ("passwd", Keyword::Ident),
    ("passphrase", Keyword::Ident),
    ("pwd", Keyword::Ident),
    ("pass", Keyword::Ident),
    ("pw", Keyword::Ident),
    ("secret", Keyword::Ident),
    ("token", Keyword::Ident),
    ("key", Keyword::Ident),
    ("credential", Keyword::Ident),
    ("creds", Keyword::Ident),
    ("authorization", Keyword::Ident),
    ("sourcegraph", Keyword::Ident),
    ("artifactory", Keyword::Ident),
    ("art-api", Keyword::Ident),
    // Inner capitals that the three casings miss: `X-JFrog-Art-Api`.
    ("JFrog", Keyword::Ident),
    ("Art-Api", Keyword::Ident),
    ("curl", Keyword::Cli(Tool::Curl)),
    ("mysql", Keyword::Cli(Tool::Mysql)),
    ("sshpass", Keyword::Cli(Tool::Sshpass)),
    ("docker", Keyword::Cli(Tool::Docker)),
    ("facebook", Keyword::Facebook),
];

struct Engine {
    rules: Vec<Rule>,
    /// `None` only if the constant pattern lists failed to build (caught by the unit tests).
    anchors: Option<AhoCorasick>,
    anchor_actions: Vec<Anchor>,
    pem_begin: Option<Regex>,
    pem_end: Option<Regex>,
}

static ENGINE: LazyLock<Engine> = LazyLock::new(Engine::build);

impl Engine {
    fn build() -> Engine {
        let mut rules = Vec::new();
        let mut anchor_list: Vec<&'static str> = Vec::new();
        let mut anchor_actions: Vec<Anchor> = Vec::new();
        for s in specs() {
            // Constant patterns: a failure is caught by the unit tests, never at request time.
            let Ok(regex) = Regex::new(&format!("^(?:{})", s.pattern)) else {
                continue;
            };
            let id = rules.len();
            let left =
                AN | US | DA | (s.class & (DO | PS | TI | DL)) | if s.weak { DO | PS } else { 0 };
            let right = s.class | AN | US | if s.weak { DO | PS | DA } else { 0 };
            let left = if s.no_left { 0 } else { left };
            rules.push(Rule {
                kind: s.kind,
                regex,
                body_from: s.body_from,
                left,
                right,
                severity: s.severity,
                confidence: s.confidence,
                lookback: s.lookback,
                min_entropy: s.min_entropy,
                check: s.check,
                span: s.span,
                window: s.window,
                after_ok: s.after_ok,
                weak: s.weak,
            });
            for a in s.anchors {
                if let Some(i) = anchor_list.iter().position(|x| x == a) {
                    if let Some(Anchor::Rules(v)) = anchor_actions.get_mut(i) {
                        v.push(id);
                    }
                } else {
                    anchor_list.push(a);
                    anchor_actions.push(Anchor::Rules(vec![id]));
                }
            }
        }
        for (a, act) in [
            ("eyJ", Anchor::Jwt),
            ("-----BEGIN", Anchor::Pem),
            ("://", Anchor::Url),
        ] {
            anchor_list.push(a);
            anchor_actions.push(act);
        }
        let mut patterns: Vec<String> = anchor_list.iter().map(|a| (*a).to_owned()).collect();
        for (word, kw) in KEYWORDS {
            let mut capital = word.to_string();
            if let Some(f) = capital.get_mut(..1) {
                f.make_ascii_uppercase();
            }
            for v in [
                word.to_string(),
                capital,
                word.to_ascii_uppercase(),
                word.to_ascii_lowercase(),
            ] {
                if !patterns.contains(&v) {
                    patterns.push(v);
                    anchor_actions.push(Anchor::Word(*kw));
                }
            }
        }
        // One case-sensitive pass finds every anchor and every secret word. Overlapping matches,
        // so that a word inside a longer anchor (`Key` in `AccountKey=`) is still seen. A full
        // DFA without prefilter: the anchors' first bytes are too common for a prefilter to pay.
        let anchors = AhoCorasickBuilder::new()
            .kind(Some(AhoCorasickKind::DFA))
            .prefilter(false)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .ok();
        Engine {
            rules,
            anchors,
            anchor_actions,
            pem_begin: Regex::new(r"^-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----").ok(),
            pem_end: Regex::new(r"^-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----").ok(),
        }
    }

    /// Every candidate in `text`, overlaps resolved.
    fn scan(&self, text: &str) -> Vec<Cand> {
        let mut cands = Vec::new();
        // Positions of `-----END`, found once for all BEGIN lines so that many BEGINs cost one
        // pass, not one search each.
        let mut pem_ends: Option<Vec<usize>> = None;
        let bytes = text.as_bytes();
        let Some(anchors) = &self.anchors else {
            return Vec::new();
        };
        let mut facebook = false;
        let mut ident_end = 0usize;
        let mut cli_end = 0usize;
        for m in anchors.find_overlapping_iter(text) {
            if cands.len() >= MAX_CANDS {
                break;
            }
            let p = m.start();
            match self.anchor_actions.get(m.pattern().as_usize()) {
                Some(Anchor::Rules(ids)) => {
                    for &id in ids {
                        if let Some(c) = self.rules.get(id).and_then(|r| r.try_at(text, p)) {
                            cands.push(c);
                            break;
                        }
                    }
                }
                Some(Anchor::Jwt) => {
                    if let Some(c) = jwt_at(bytes, p) {
                        cands.push(c);
                    }
                }
                Some(Anchor::Pem) => {
                    let ends = pem_ends.get_or_insert_with(|| {
                        memchr::memmem::find_iter(bytes, b"-----END")
                            .take(MAX_CANDS)
                            .collect()
                    });
                    if let Some(c) = self.pem_at(text, p, ends) {
                        cands.push(c);
                    }
                }
                Some(Anchor::Url) => {
                    if let Some(c) = url_credentials_at(bytes, p) {
                        cands.push(c);
                    }
                }
                Some(Anchor::Word(Keyword::Ident)) if p >= ident_end => {
                    ident_end = assignment_at(bytes, p, m.end(), &mut cands);
                }
                Some(Anchor::Word(Keyword::Cli(tool))) if p >= cli_end => {
                    cli_end = cli_at(bytes, p, m.end(), *tool, &mut cands);
                }
                Some(Anchor::Word(Keyword::Facebook)) => facebook = true,
                // Keyword hits inside an identifier or command line already handled.
                Some(Anchor::Word(_)) | None => {}
            }
        }
        discord_tokens(bytes, &mut cands);
        if facebook {
            facebook_app_tokens(bytes, &mut cands);
        }
        resolve(cands)
    }

    /// A PEM private-key block starting at `p`. The span covers the block through its END line;
    /// a block cut short (no END within reach) still counts when enough key material follows.
    fn pem_at(&self, text: &str, p: usize, ends: &[usize]) -> Option<Cand> {
        let bytes = text.as_bytes();
        let head = text.get(p..floor_boundary(text, p + 80))?;
        let h = self.pem_begin.as_ref()?.find(head)?;
        let body_start = p + h.end();
        let limit = floor_boundary(text, body_start + PEM_MAX);
        let region = bytes.get(body_start..limit)?;
        let next_end = ends
            .get(ends.partition_point(|&q| q < body_start))
            .copied()
            .filter(|&q| q < limit);
        let (body_end, end) = match next_end {
            Some(q) => {
                let tail = text.get(q..floor_boundary(text, q + 80))?;
                let e = self.pem_end.as_ref()?.find(tail)?;
                (q, q + e.end())
            }
            None => {
                // Truncated: take the run of key material (base64, whitespace, escaped newlines).
                let mut last = body_start;
                for (i, &b) in region.iter().enumerate() {
                    if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=' {
                        last = body_start + i + 1;
                    } else if !(b.is_ascii_whitespace() || b == b'\\' || b == b'"') {
                        break;
                    }
                }
                (last, last)
            }
        };
        let body = bytes.get(body_start..body_end)?;
        let material = body
            .iter()
            .filter(|b| b.is_ascii_alphanumeric() || **b == b'+' || **b == b'/')
            .count();
        if material < 64 || is_filler(body) || distinct(body) < 16 {
            return None;
        }
        Some(Cand {
            start: p,
            end,
            kind: "private_key",
            severity: Critical,
            confidence: if end == body_end { 0.85 } else { 0.98 },
            prio: PRIO_PEM,
            placeholder: false,
        })
    }
}

/// Longest PEM block searched for its END line (an 8192-bit RSA key is about 6.5 KiB).
const PEM_MAX: usize = 16 * 1024;

impl Rule {
    /// This rule's token around the anchor hit at `p`, if it is one.
    fn try_at(&self, text: &str, p: usize) -> Option<Cand> {
        let bytes = text.as_bytes();
        for &lb in self.lookback {
            let Some(start) = p.checked_sub(lb) else {
                continue;
            };
            if !text.is_char_boundary(start) {
                continue;
            }
            if let Some(&prev) = start.checked_sub(1).and_then(|i| bytes.get(i)) {
                let excused = self.after_ok.is_some_and(|s| {
                    bytes
                        .get(..start)
                        .is_some_and(|b| b.ends_with(s.as_bytes()))
                });
                if in_cls(prev, self.left) && !excused {
                    continue;
                }
            }
            let Some(hay) = text.get(start..floor_boundary(text, start + self.window)) else {
                continue;
            };
            let Some(m) = self.regex.find(hay) else {
                continue;
            };
            let end = start + m.end();
            if !right_boundary_ok(bytes, end, self.right) {
                continue;
            }
            let token = bytes.get(start..end)?;
            let body = token.get(self.body_from.min(token.len())..)?;
            let Some(verdict) = check_token(self.check, token, body) else {
                continue;
            };
            // A body of filler, an example marker, an alphabet walk or too little entropy: the
            // format is right but the value is almost surely a placeholder. Peer scanners flag
            // the format, and a guardrail cannot prove a token fake, so it is still reported,
            // at low severity, so that a policy acting on medium and above leaves it alone.
            let placeholder = verdict.placeholder || !token_body_ok(body, self.min_entropy);
            let span_start = match self.span {
                SpanMode::Whole => start,
                SpanMode::AfterSlashes(n) => {
                    let mut seen = 0u8;
                    let mut at = None;
                    for (i, &b) in token.iter().enumerate() {
                        if b == b'/' {
                            seen += 1;
                            if seen == n {
                                at = Some(start + i + 1);
                                break;
                            }
                        }
                    }
                    at?
                }
                SpanMode::AfterEq => start + token.iter().position(|&b| b == b'=')? + 1,
            };
            let weak_penalty = if self.weak { 0.05 } else { 0.0 };
            let (severity, confidence) = if placeholder {
                (Low, PLACEHOLDER_CONFIDENCE)
            } else {
                (
                    self.severity,
                    (self.confidence + verdict.adjust - weak_penalty).clamp(0.05, 0.99),
                )
            };
            return Some(Cand {
                start: span_start,
                end,
                kind: self.kind,
                severity,
                confidence,
                prio: PRIO_TOKEN,
                placeholder,
            });
        }
        None
    }
}

/// The byte after a token must not continue it. A `.` is fine when it ends a sentence.
fn right_boundary_ok(bytes: &[u8], end: usize, cls: u8) -> bool {
    match bytes.get(end) {
        None => true,
        Some(&b) if !in_cls(b, cls) => true,
        Some(&b'.') => !bytes
            .get(end + 1)
            .is_some_and(|&n| n.is_ascii_alphanumeric() || n == b'_' || n == b'/'),
        Some(_) => false,
    }
}

/// What a format check says about a token that matched its regex.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    /// Added to the rule's confidence.
    adjust: f32,
    /// The token has the loose shape peer scanners accept but not the provider's exact one
    /// (Twilio SIDs are hex): reported as a placeholder.
    placeholder: bool,
}

const fn verdict(adjust: f32) -> Verdict {
    Verdict {
        adjust,
        placeholder: false,
    }
}

/// Confidence of a format-valid token whose body is a placeholder.
const PLACEHOLDER_CONFIDENCE: f32 = 0.3;

/// The verdict on a token, or `None` to reject it.
fn check_token(check: Check, token: &[u8], body: &[u8]) -> Option<Verdict> {
    match check {
        Check::None => Some(verdict(0.0)),
        Check::Crc32Base62 => Some(verdict(if crc32_base62_ok(body) { 0.09 } else { -0.1 })),
        Check::OpenAi => {
            if contains(token, b"T3BlbkFJ") {
                Some(verdict(0.08))
            } else if (token.starts_with(b"sk-proj-")
                || token.starts_with(b"sk-svcacct-")
                || token.starts_with(b"sk-admin-"))
                && token.len() >= 90
            {
                Some(verdict(0.0))
            } else {
                None
            }
        }
        Check::AnthropicTail => token.ends_with(b"AA").then_some(verdict(0.08)),
        Check::MixedCase => (body.iter().any(u8::is_ascii_uppercase)
            && body.iter().any(u8::is_ascii_lowercase))
        .then_some(verdict(0.0)),
        Check::DigitAndLetter => has_digit_and_letter(body).then_some(verdict(0.0)),
        Check::Bedrock => Some(verdict(
            if base64_decode(body.get(..body.len().min(40) / 4 * 4)?)
                .is_some_and(|d| d.starts_with(b"BedrockAPIKey-"))
            {
                0.08
            } else {
                -0.15
            },
        )),
        Check::Hex => Some(Verdict {
            adjust: 0.0,
            placeholder: !is_hex(body),
        }),
        Check::NotAWord => (has_digit_and_letter(body) || is_filler(body)).then_some(verdict(0.0)),
    }
}

fn has_digit_and_letter(v: &[u8]) -> bool {
    v.iter().any(u8::is_ascii_digit) && v.iter().any(u8::is_ascii_alphabetic)
}

// ---------------------------------------------------------------------------------------------
// GitHub / npm checksum

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        let idx = ((c ^ u32::from(b)) & 0xff) as usize;
        c = CRC_TABLE.get(idx).copied().unwrap_or(0) ^ (c >> 8);
    }
    !c
}

fn base62_digit(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'A'..=b'Z' => Some(u64::from(b - b'A') + 10),
        b'a'..=b'z' => Some(u64::from(b - b'a') + 36),
        _ => None,
    }
}

/// `body` is 30 random characters then the base62 CRC32 of them, zero-padded to 6.
fn crc32_base62_ok(body: &[u8]) -> bool {
    let (Some(random), Some(sum)) = (body.get(..30), body.get(30..)) else {
        return false;
    };
    if sum.len() != 6 {
        return false;
    }
    let mut v = 0u64;
    for &b in sum {
        match base62_digit(b) {
            Some(d) => v = v * 62 + d,
            None => return false,
        }
    }
    v == u64::from(crc32(random))
}

// ---------------------------------------------------------------------------------------------
// Value statistics and placeholder tests

/// Shannon entropy in bits per byte.
fn entropy(v: &[u8]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in v {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let n = v.len() as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

fn distinct(v: &[u8]) -> usize {
    let mut seen = [false; 256];
    let mut n = 0;
    for &b in v {
        if let Some(s) = seen.get_mut(usize::from(b)) {
            if !*s {
                *s = true;
                n += 1;
            }
        }
    }
    n
}

/// Longest run of one repeated byte.
fn max_run(v: &[u8]) -> usize {
    let mut best = 0;
    let mut run = 0;
    let mut prev = None;
    for &b in v {
        if Some(b) == prev {
            run += 1;
        } else {
            run = 1;
            prev = Some(b);
        }
        best = best.max(run);
    }
    best
}

/// Steps a typist makes from one character to the next, as bits (case aside).
const STEP_SAME: u8 = 1;
const STEP_ALPHA_UP: u8 = 2;
const STEP_ALPHA_DOWN: u8 = 4;
const STEP_KEY_RIGHT: u8 = 8;
const STEP_KEY_LEFT: u8 = 16;
const STEP_DIGIT_UP: u8 = 32;
const STEP_DIGIT_DOWN: u8 = 64;

/// Each letter's place in the QWERTY rows read one after the other (`qwertyuiop`, `asdfghjkl`,
/// `zxcvbnm`), indexed by `letter - b'a'`.
const QWERTY: [u8; 26] = {
    let rows = b"qwertyuiopasdfghjklzxcvbnm";
    let mut t = [0u8; 26];
    let mut i = 0;
    while i < rows.len() {
        t[(rows[i] - b'a') as usize] = i as u8;
        i += 1;
    }
    t
};

/// The ways `c` follows `p`: the same character, the next or previous letter, the key to the
/// right or left on a QWERTY row, the next or previous digit (`9` then `0`, as on the keyboard).
fn steps(p: u8, c: u8) -> u8 {
    let (p, c) = (p.to_ascii_lowercase(), c.to_ascii_lowercase());
    let mut m = 0;
    if p == c {
        m |= STEP_SAME;
    }
    if p.is_ascii_lowercase() && c.is_ascii_lowercase() {
        let (a, b) = (p - b'a', c - b'a');
        if b == a + 1 {
            m |= STEP_ALPHA_UP;
        }
        if a == b + 1 {
            m |= STEP_ALPHA_DOWN;
        }
        let key = |x: u8| QWERTY.get(usize::from(x)).copied().unwrap_or(0);
        let (ka, kb) = (key(a), key(b));
        if kb == ka + 1 {
            m |= STEP_KEY_RIGHT;
        }
        if ka == kb + 1 {
            m |= STEP_KEY_LEFT;
        }
    } else if p.is_ascii_digit() && c.is_ascii_digit() {
        let (a, b) = (p - b'0', c - b'0');
        if b == (a + 1) % 10 {
            m |= STEP_DIGIT_UP;
        }
        if a == (b + 1) % 10 {
            m |= STEP_DIGIT_DOWN;
        }
    }
    m
}

/// How much of a value was typed rather than drawn at random.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Typed {
    /// Longest walk: the same step (next letter, next key, previous digit, …) taken again and
    /// again (`abcdef`, `9876543`, `qwertyui`, `7890123`).
    walk: usize,
    /// Most of the value is walks and runs of three or more, read straight or every other
    /// character (`abc123def456…`, `1111aaaa2222…`, `a1b2c3d4…`).
    mostly: bool,
}

/// Bytes of a value examined for typed sequences; the rest costs nothing.
const TYPED_SCAN: usize = 512;

/// Marks, in `covered`, the characters of `v` (read from `from` every `stride` bytes) that sit in
/// a walk or run of three or more; returns the longest walk.
fn typed_pass(v: &[u8], from: usize, stride: usize, covered: &mut [bool]) -> usize {
    let mut longest = 0;
    let mut mask = 0u8;
    let mut len = 0usize;
    let mut start = from;
    let mut prev: Option<u8> = None;
    let mut close = |start: usize, len: usize, mask: u8, covered: &mut [bool]| {
        if len >= 3 {
            for k in 0..len {
                if let Some(c) = covered.get_mut(start + k * stride) {
                    *c = true;
                }
            }
        }
        if mask & !STEP_SAME != 0 {
            longest = longest.max(len);
        }
    };
    let mut i = from;
    while let Some(&c) = v.get(i) {
        let step = prev.map_or(0, |p| steps(p, c));
        if len >= 2 && mask & step != 0 {
            mask &= step;
            len += 1;
        } else if step != 0 {
            // The previous character and this one start a new segment.
            close(start, len, mask, covered);
            start = i - stride;
            mask = step;
            len = 2;
        } else {
            close(start, len, mask, covered);
            start = i;
            mask = 0;
            len = 1;
        }
        prev = Some(c);
        i += stride;
    }
    close(start, len, mask, covered);
    longest
}

/// Walks and runs in `v`, looked for in its first `TYPED_SCAN` bytes.
fn typed(v: &[u8]) -> Typed {
    let w = v.get(..v.len().min(TYPED_SCAN)).unwrap_or(v);
    let mut covered = [false; TYPED_SCAN];
    let walk = typed_pass(w, 0, 1, &mut covered);
    if w.len() < 16 {
        return Typed {
            walk,
            mostly: false,
        };
    }
    typed_pass(w, 0, 2, &mut covered);
    typed_pass(w, 1, 2, &mut covered);
    let n = covered.iter().take(w.len()).filter(|c| **c).count();
    Typed {
        walk,
        mostly: n * 5 >= w.len() * 3,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Case-insensitive substring test; `needle` must be lower-case.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() || hay.len() < needle.len() {
        return needle.is_empty();
    }
    hay.windows(needle.len()).any(|w| {
        w.iter()
            .zip(needle)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
    })
}

/// Fillers and masks: `xxxx`, `****`, `####`, `••`, eight identical characters in a row, or a
/// value of at most two distinct characters.
fn is_filler(v: &[u8]) -> bool {
    contains_ci(v, b"xxxx")
        || contains(v, b"****")
        || contains(v, b"####")
        || contains(v, "••".as_bytes())
        || contains(v, b"...")
        || max_run(v) >= 8
        || (v.len() >= 3 && distinct(v) <= 2)
}

/// Most of `v` (case aside) is one unit of 4 to 16 bytes written three or more times
/// (`abcd1234abcd1234abcd1234…`, `1234567890abcdef1234567890abcdef…`): typed, not random. Only
/// the first `PERIODIC_SCAN` bytes are examined, so long values cost a bounded amount.
fn is_periodic(v: &[u8]) -> bool {
    let w = v.get(..v.len().min(PERIODIC_SCAN)).unwrap_or(v);
    if w.len() < 16 {
        return false;
    }
    (4..=16usize).any(|p| {
        // How far from the start the text repeats itself with period `p`.
        let run = w
            .iter()
            .zip(w.iter().skip(p))
            .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
            .count()
            + p;
        run >= 3 * p && run * 4 >= w.len() * 3
    })
}

const PERIODIC_SCAN: usize = 512;

/// The random part of a provider token is plausible.
fn token_body_ok(body: &[u8], min_entropy: f32) -> bool {
    !is_filler(body)
        && !contains_ci(body, b"example")
        && entropy(body) >= min_entropy
        && !is_invented(body)
}

/// A value typed by hand: a walk of twelve or more (`abcdefghijkl`, `1234567890ab`,
/// `qwertyuiopas`), or one of sixteen bytes or more made mostly of walks and runs.
fn is_typed(v: &[u8]) -> bool {
    let t = typed(v);
    t.walk >= 12 || t.mostly
}

/// Whole values that are placeholders, not secrets (compared lower-cased).
#[rustfmt::skip]
const STOP_VALUES: &[&str] = &[
    "password", "passwd", "pass", "pwd", "secret", "token", "changeme", "changeit", "change_me",
    "example", "test", "testing", "tester", "dummy", "fake", "sample", "placeholder", "redacted",
    "removed", "hidden", "none", "null", "nil", "undefined", "true", "false", "yes", "no", "on",
    "off", "empty", "default", "admin", "root", "user", "username", "foo", "bar", "foobar", "todo",
    "tbd", "string", "value", "secret_key", "api_key", "apikey", "mypassword", "yourpassword",
    "qwerty", "letmein", "123456", "1234567", "12345678", "123456789", "1234567890", "abc123",
    "password123", "password1", "secret123", "p@ssword", "p@ssw0rd", "required", "optional", "str",
    "bytes", "int", "bool", "object", "any", "unknown", "missing", "notset", "not_set", "unset",
    "invalid", "xxx", "yyy", "zzz", "abc", "abcdef", "abcd", "your_token", "your-token",
    "your_api_key", "your-api-key", "token_here", "key_here", "test123", "test1234", "admin123",
    "pass123", "pass1234", "demo", "demo123", "guest", "welcome", "welcome1", "qwerty123",
    "changeme123", "secret1", "secret12", "12345",
];

/// Substrings that make a generic value a placeholder (matched lower-cased).
#[rustfmt::skip]
const STOP_PARTS: &[&str] = &[
    "example", "placeholder", "redacted", "changeme", "change_me", "change-me", "dummy", "insert",
    "replace", "your_", "your-", "yourkey", "yourtoken", "yoursecret", "yourpass", "_here", "-here",
    "here>", "sample", "fake", "notreal", "not_real", "not-real", "fixme", "todo", "!vault",
    "secretsmanager", "vault:", "ssm:", "ref+", "arn:aws",
];

/// Template and lookup syntax: `${X}`, `{{ x }}`, `<your-key>`, `%s`, `$(cmd)`, `os.environ[…]`.
fn is_template(v: &[u8]) -> bool {
    let lower: Vec<u8> = v.iter().map(u8::to_ascii_lowercase).collect();
    let l = lower.as_slice();
    if contains(l, b"{{")
        || contains(l, b"}}")
        || contains(l, b"${")
        || contains(l, b"#{")
        || contains(l, b"<%")
        || contains(l, b"%>")
        || contains(l, b"$(")
        || contains(l, b"%s")
        || contains(l, b"%(")
        || contains(l, b"{0}")
        || contains(l, b"{}")
        || contains(l, b"environ")
        || contains(l, b"process.env")
        || contains(l, b"getenv")
        || contains(l, b"env(")
        || contains(l, b"env[")
        || contains(l, b"secrets.")
    {
        return true;
    }
    let first = l.first().copied();
    let last = l.last().copied();
    // $VAR, %VAR%, <name>, [name], {name}
    if first == Some(b'$')
        && l.get(1)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'{' || *b == b'(')
    {
        return true;
    }
    if first == Some(b'%') && last == Some(b'%') && l.len() > 2 {
        return true;
    }
    let bracketed = matches!(
        (first, last),
        (Some(b'<'), Some(b'>')) | (Some(b'['), Some(b']')) | (Some(b'{'), Some(b'}'))
    );
    if bracketed && l.len() >= 2 {
        let inner = l.get(1..l.len() - 1).unwrap_or_default();
        // A name, not random material: letters, spaces, `_`, `-`, `.`, no digits.
        if inner
            .iter()
            .all(|b| b.is_ascii_alphabetic() || matches!(b, b' ' | b'_' | b'-' | b'.' | b':'))
        {
            return true;
        }
    }
    first == Some(b'<')
}

/// A placeholder of any kind (generic values: the full stop-list applies).
fn is_placeholder(v: &[u8]) -> bool {
    let lower: Vec<u8> = v.iter().map(u8::to_ascii_lowercase).collect();
    if STOP_VALUES.iter().any(|s| s.as_bytes() == lower.as_slice()) {
        return true;
    }
    if STOP_PARTS.iter().any(|s| contains(&lower, s.as_bytes())) {
        return true;
    }
    is_template(v) || is_filler(v) || is_invented(v)
}

/// Typed by hand or written as a repeated unit: invented, not drawn at random.
fn is_invented(v: &[u8]) -> bool {
    is_periodic(v) || is_typed(v)
}

#[derive(Debug, Clone, Copy, Default)]
struct Classes {
    lower: bool,
    upper: bool,
    digit: bool,
    symbol: bool,
}

impl Classes {
    fn of(v: &[u8]) -> Classes {
        let mut c = Classes::default();
        for &b in v {
            match b {
                b'a'..=b'z' => c.lower = true,
                b'A'..=b'Z' => c.upper = true,
                b'0'..=b'9' => c.digit = true,
                _ => c.symbol = true,
            }
        }
        c
    }
    fn count(self) -> usize {
        usize::from(self.lower)
            + usize::from(self.upper)
            + usize::from(self.digit)
            + usize::from(self.symbol)
    }
}

fn is_hex(v: &[u8]) -> bool {
    v.iter().all(u8::is_ascii_hexdigit)
}

/// A time-based UUID: versions 1 and 2 hold a timestamp and a MAC address, not random material,
/// so they identify things rather than authenticate.
fn is_time_uuid(v: &[u8]) -> bool {
    is_uuid(v) && matches!(v.get(14), Some(b'1' | b'2'))
}

fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

// ---------------------------------------------------------------------------------------------
// JWT

/// A JWT starting at `p`: base64url header that decodes to a JSON object with `"alg"`, a
/// payload that decodes to a JSON object, and an optional signature.
fn jwt_at(b: &[u8], p: usize) -> Option<Cand> {
    let seg = |x: u8| x.is_ascii_alphanumeric() || x == b'_' || x == b'-';
    if let Some(&prev) = p.checked_sub(1).and_then(|i| b.get(i)) {
        if seg(prev) || prev == b'.' {
            return None;
        }
    }
    let run = |from: usize| {
        let mut i = from;
        while i < b.len() && i - from < JWT_SEG_MAX && b.get(i).is_some_and(|&x| seg(x)) {
            i += 1;
        }
        i
    };
    let e1 = run(p);
    if b.get(e1) != Some(&b'.') || e1 - p < 10 {
        return None;
    }
    let s2 = e1 + 1;
    let e2 = run(s2);
    if e2 - s2 < 4 {
        return None;
    }
    let (mut end, signed) = (e2, b.get(e2) == Some(&b'.'));
    if signed {
        end = run(e2 + 1);
    }
    if b.get(end).is_some_and(|&x| seg(x)) {
        return None;
    }
    let header = decode_json_object(b.get(p..e1)?)?;
    if !contains(&header, b"\"alg\"") {
        return None;
    }
    decode_json_object(b.get(s2..e2)?)?;
    Some(Cand {
        start: p,
        end,
        kind: "jwt",
        severity: High,
        confidence: if signed && end > e2 + 1 { 0.92 } else { 0.75 },
        prio: PRIO_JWT,
        placeholder: false,
    })
}

const JWT_SEG_MAX: usize = 8192;

fn decode_json_object(part: &[u8]) -> Option<Vec<u8>> {
    let d = base64_decode(part)?;
    let t = d.trim_ascii();
    (t.first() == Some(&b'{') && t.last() == Some(&b'}')).then_some(d)
}

// ---------------------------------------------------------------------------------------------
// Credentials in URLs

#[rustfmt::skip]
const DB_SCHEMES: &[&str] = &[
    "postgres", "postgresql", "mysql", "mysqlx", "mariadb", "mongodb", "mongodb+srv", "redis",
    "rediss", "amqp", "amqps", "mssql", "sqlserver", "oracle", "clickhouse", "cockroachdb", "neo4j",
    "neo4j+s", "bolt", "cassandra", "couchdb", "elasticsearch", "kafka", "nats", "memcached",
    "ldap", "ldaps", "smtp", "smtps", "sftp", "ftp", "ftps", "snowflake", "db2", "sqlite",
];

/// `scheme://user:password@host` with the `://` at `p`. The span is the password (or, when the
/// password is empty, a token-like user name: `https://<token>:@host`).
fn url_credentials_at(b: &[u8], p: usize) -> Option<Cand> {
    let mut s = p;
    while s > 0 && p - s < 32 {
        let c = *b.get(s - 1)?;
        if c.is_ascii_alphanumeric() || c == b'+' || c == b'.' || c == b'-' {
            s -= 1;
        } else {
            break;
        }
    }
    while s < p && !b.get(s)?.is_ascii_alphabetic() {
        s += 1;
    }
    if s == p {
        return None;
    }
    let scheme: Vec<u8> = b.get(s..p)?.iter().map(u8::to_ascii_lowercase).collect();
    let u0 = p + 3;
    let mut at = None;
    let mut i = u0;
    while i < b.len() && i - u0 < 256 {
        let c = *b.get(i)?;
        if c == b'@' {
            at = Some(i);
        } else if matches!(
            c,
            b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'`' | b'\\' | b'|'
        ) || c.is_ascii_whitespace()
        {
            break;
        }
        i += 1;
    }
    let at = at?;
    let host_ok = b
        .get(at + 1)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'[');
    if !host_ok {
        return None;
    }
    let userinfo = b.get(u0..at)?;
    if is_template(userinfo) {
        return None;
    }
    let colon = userinfo.iter().position(|&c| c == b':')?;
    let user = userinfo.get(..colon)?;
    let pass = userinfo.get(colon + 1..)?;
    let (vs, ve, value) = if pass.is_empty() {
        (u0, u0 + colon, user)
    } else {
        (u0 + colon + 1, at, pass)
    };
    // A Cloudant account URL carries the account's own credential, judged by Cloudant's format.
    let host_end = b
        .get(at + 1..i)?
        .iter()
        .position(|&c| c == b':')
        .map_or(i, |k| at + 1 + k);
    if contains_ci(b.get(at + 1..host_end)?, b"cloudant") && !is_template(value) {
        if let Some((kind, conf)) = vendor_kind(b"cloudant", value, false) {
            return Some(vendor_cand(kind, conf, vs, ve, value));
        }
    }
    if !credential_value_ok(value) {
        return None;
    }
    if value.len() < 4 {
        return None;
    }
    // A bare port is not a password (`host:8080@…` in a log line).
    if value.len() <= 5 && value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let db =
        DB_SCHEMES.iter().any(|d| d.as_bytes() == scheme.as_slice()) || scheme.starts_with(b"jdbc");
    let h = entropy(value);
    Some(Cand {
        start: vs,
        end: ve,
        kind: if db {
            "connection_string"
        } else {
            "basic_auth"
        },
        severity: High,
        confidence: if h >= 3.0 { 0.9 } else { 0.8 },
        prio: PRIO_STRUCT,
        placeholder: false,
    })
}

/// A password in a URL or `curl -u`: anything that is not a placeholder, a template or filler.
fn credential_value_ok(v: &[u8]) -> bool {
    v.len() >= 3
        && v.len() <= 256
        && !is_placeholder(v)
        && !v.iter().any(|b| b.is_ascii_whitespace())
}

// ---------------------------------------------------------------------------------------------
// curl -u / --user

/// Command-line tools that take a credential as an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    /// `curl -u user:password`, `--user user:password`.
    Curl,
    /// `mysql -pS3cret` (only glued: `-p dbname` prompts for the password).
    Mysql,
    /// `sshpass -p S3cret`, `sshpass -pS3cret`.
    Sshpass,
    /// `docker login -p S3cret` (`--password S3cret` is a generic flag assignment).
    Docker,
}

/// Credentials on the command line of the tool named at `ks..ke`. Returns where scanning for the
/// tool may resume.
fn cli_at(b: &[u8], ks: usize, ke: usize, tool: Tool, out: &mut Vec<Cand>) -> usize {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    if ks
        .checked_sub(1)
        .and_then(|i| b.get(i))
        .is_some_and(|&c| word(c))
    {
        return ke;
    }
    // `mysql` also starts `mysqldump` and `mysqladmin`.
    let mut ke = ke;
    if tool == Tool::Mysql {
        while b.get(ke).is_some_and(u8::is_ascii_alphabetic) && ke - ks < 12 {
            ke += 1;
        }
    }
    if !b.get(ke).is_some_and(u8::is_ascii_whitespace) {
        return ke;
    }
    let limit = (ke + CURL_LINE_MAX).min(b.len());
    let line_end = b
        .get(ke..limit)
        .and_then(|r| memchr::memchr(b'\n', r))
        .map_or(limit, |i| ke + i);
    let mut i = ke;
    let mut want = false;
    let mut first = true;
    while i < line_end {
        let Some(w) = shell_word(b, i, line_end) else {
            break;
        };
        if tool == Tool::Docker && first && w.text != b"login" {
            break;
        }
        first = false;
        let found = if want {
            want = false;
            match tool {
                Tool::Curl => curl_credential(&w),
                _ => cli_password(&w, 0),
            }
        } else {
            match tool {
                Tool::Curl if w.text == b"-u" || w.text == b"--user" => {
                    want = true;
                    None
                }
                Tool::Curl if w.text.starts_with(b"--user=") => {
                    let sub = Word {
                        text: w.text.get(7..).unwrap_or_default().to_vec(),
                        offsets: w.offsets.get(7..).unwrap_or_default().to_vec(),
                        next: w.next,
                    };
                    curl_credential(&sub)
                }
                Tool::Sshpass | Tool::Docker if w.text == b"-p" => {
                    want = true;
                    None
                }
                Tool::Mysql | Tool::Sshpass if w.text.len() > 2 && w.text.starts_with(b"-p") => {
                    cli_password(&w, 2)
                }
                _ => None,
            }
        };
        if let Some(c) = found {
            out.push(c);
        }
        i = w.next;
    }
    line_end
}

/// A password given as a command-line argument, from byte `skip` of the word.
fn cli_password(w: &Word, skip: usize) -> Option<Cand> {
    let v = w.text.get(skip..)?;
    if v.len() < 4 || !credential_value_ok(v) || v.starts_with(b"-") {
        return None;
    }
    let start = *w.offsets.get(skip)?;
    let end = *w.offsets.last()? + 1;
    Some(Cand {
        start,
        end,
        kind: "generic_secret",
        severity: High,
        confidence: if entropy(v) >= 3.0 { 0.85 } else { 0.75 },
        prio: PRIO_STRUCT,
        placeholder: false,
    })
}

const CURL_LINE_MAX: usize = 8192;

/// A shell word with its quotes removed, and for each of its bytes the offset in the input.
#[derive(Debug, Default)]
struct Word {
    text: Vec<u8>,
    offsets: Vec<usize>,
    /// Where the next word may start.
    next: usize,
}

/// The next shell word at or after `from` (before `end`), or `None` if there is none.
fn shell_word(b: &[u8], from: usize, end: usize) -> Option<Word> {
    let mut i = from;
    while i < end && b.get(i)?.is_ascii_whitespace() {
        i += 1;
    }
    if i >= end {
        return None;
    }
    let mut w = Word::default();
    let mut quote: Option<u8> = None;
    while i < end && w.text.len() < 1024 {
        let c = *b.get(i)?;
        match quote {
            Some(q) if c == q => quote = None,
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c.is_ascii_whitespace() => break,
            _ => {
                w.text.push(c);
                w.offsets.push(i);
            }
        }
        i += 1;
    }
    w.next = i.max(from + 1);
    Some(w)
}

/// `user:password` from `curl -u`. With an empty password (`-u token:`), the user is the secret.
fn curl_credential(w: &Word) -> Option<Cand> {
    let t = w.text.as_slice();
    if is_template(t) {
        return None;
    }
    let colon = t.iter().position(|&c| c == b':')?;
    let (user, pass) = (t.get(..colon)?, t.get(colon + 1..)?);
    let (from, to, value) = if pass.is_empty() {
        if user.len() < 8 || Classes::of(user).count() < 2 || entropy(user) < 2.5 {
            return None;
        }
        (0, colon, user)
    } else {
        (colon + 1, t.len(), pass)
    };
    if user.is_empty() && pass.is_empty() {
        return None;
    }
    if !credential_value_ok(value) || value.len() < 4 {
        return None;
    }
    let start = *w.offsets.get(from)?;
    let end = *w.offsets.get(to.checked_sub(1)?)? + 1;
    Some(Cand {
        start,
        end,
        kind: "basic_auth",
        severity: High,
        confidence: if entropy(value) >= 3.0 { 0.9 } else { 0.8 },
        prio: PRIO_STRUCT,
        placeholder: false,
    })
}

// ---------------------------------------------------------------------------------------------
// Discord bot tokens and Facebook app tokens: no literal prefix, found from their separators.

/// `[MNO]` + 23-25 base64url, `.`, 6, `.`, 27+: the first part is the bot's numeric id in
/// base64, so it starts with `M`, `N` or `O`.
fn discord_tokens(b: &[u8], out: &mut Vec<Cand>) {
    let seg = |x: u8| x.is_ascii_alphanumeric() || x == b'_' || x == b'-';
    for i in memchr::memchr_iter(b'.', b) {
        if out.len() >= MAX_CANDS {
            break;
        }
        if b.get(i + 7) != Some(&b'.')
            || !b
                .get(i + 1..i + 7)
                .is_some_and(|s| s.iter().all(|&x| seg(x)))
        {
            continue;
        }
        let mut s = i;
        while s > 0 && i - s <= 26 && b.get(s - 1).is_some_and(|&x| seg(x)) {
            s -= 1;
        }
        let first_len = i - s;
        if !(24..=26).contains(&first_len)
            || !matches!(b.get(s), Some(b'M' | b'N' | b'O'))
            || s.checked_sub(1)
                .and_then(|j| b.get(j))
                .is_some_and(|&x| seg(x) || x == b'.')
        {
            continue;
        }
        let t0 = i + 8;
        let mut e = t0;
        while e < b.len() && e - t0 <= 40 && b.get(e).is_some_and(|&x| seg(x)) {
            e += 1;
        }
        let third = e - t0;
        if !(27..=40).contains(&third) || b.get(e).is_some_and(|&x| seg(x) || x == b'.') {
            continue;
        }
        let Some(token) = b.get(s..e) else { continue };
        if !token_body_ok(token, 4.0) {
            continue;
        }
        out.push(Cand {
            start: s,
            end: e,
            kind: "discord_bot_token",
            severity: Critical,
            confidence: 0.85,
            prio: PRIO_TOKEN,
            placeholder: false,
        });
    }
}

/// `<app id 15-16 digits>|<secret>`, only looked for when the text mentions Facebook.
fn facebook_app_tokens(b: &[u8], out: &mut Vec<Cand>) {
    let seg = |x: u8| x.is_ascii_alphanumeric() || x == b'_' || x == b'-';
    for i in memchr::memchr_iter(b'|', b) {
        if out.len() >= MAX_CANDS {
            break;
        }
        let mut s = i;
        while s > 0 && i - s <= 16 && b.get(s - 1).is_some_and(u8::is_ascii_digit) {
            s -= 1;
        }
        if !(15..=16).contains(&(i - s))
            || s.checked_sub(1)
                .and_then(|j| b.get(j))
                .is_some_and(|&x| seg(x))
        {
            continue;
        }
        let t0 = i + 1;
        let mut e = t0;
        while e < b.len() && e - t0 <= 40 && b.get(e).is_some_and(|&x| seg(x)) {
            e += 1;
        }
        if !(27..=40).contains(&(e - t0)) || b.get(e).is_some_and(|&x| seg(x)) {
            continue;
        }
        let Some(secret) = b.get(t0..e) else { continue };
        if !token_body_ok(secret, 3.5) {
            continue;
        }
        out.push(Cand {
            start: s,
            end: e,
            kind: "facebook_access_token",
            severity: Critical,
            confidence: 0.85,
            prio: PRIO_TOKEN,
            placeholder: false,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Generic assignments

/// How strongly an identifier says "the value is a secret".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// `password`, `passwd`, `pwd`, `pass`, `pw`, `passphrase`.
    Password,
    /// `secret`, `token`, `api_key`, `access_key`, `private_key`, `Authorization`, …
    Strong,
    /// `<qualifier>_key`: `sl_key`, `stripeKey`.
    Key,
    /// `credentials`, `creds`.
    Weak,
    /// A vendor name without a secret word (`sourcegraph:`): only that vendor's exact format.
    VendorOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Other,
    Trailer,
    Password,
    Secret,
    Token,
    ApiKey,
    Key,
    Credential,
    Header,
    Excluded,
}

#[rustfmt::skip]
const TRAILERS: &[&str] = &[
    "key", "value", "val", "str", "string", "text", "data", "raw", "plain", "plaintext", "enc",
    "encrypted", "b64", "base64", "hex", "secret", "token", "access", "api", "prod", "production",
    "dev", "staging", "live", "new", "old", "current", "default", "override", "main", "primary",
    "secondary", "v1", "v2", "v3",
];

/// Segments that, after the secret word, mean the value is not the secret itself.
fn is_trailer(seg: &[u8]) -> bool {
    TRAILERS.iter().any(|w| w.as_bytes() == seg) || seg.iter().all(u8::is_ascii_digit)
}

#[rustfmt::skip]
const EXCLUDED_ANYWHERE: &[&str] = &[
    "public", "pub", "publishable", "pubkey", "publickey", "csrf", "xsrf", "csrftoken", "xsrftoken",
    "authenticity", "site", "sitekey", "recaptcha", "turnstile", "fake", "dummy", "example",
    "sample", "placeholder",
];

/// Segments that anywhere in an identifier mean the value is public or not a credential.
fn is_excluded_anywhere(seg: &[u8]) -> bool {
    EXCLUDED_ANYWHERE.iter().any(|w| w.as_bytes() == seg)
}

#[rustfmt::skip]
const LOOKUP_QUALIFIERS: &[&str] = &[
    "bucket", "foreign", "primary", "sort", "partition", "schema", "sequence", "cache", "map",
    "hash", "lookup", "routing", "row", "composite", "unique", "natural", "object", "dict",
    "translation", "i18n", "idempotency", "hot", "short", "shortcut", "list", "item", "table",
    "column", "field", "entry", "group", "config", "redis", "s3", "query", "search", "idx", "index",
    "react", "child", "parent", "node", "label", "registry", "setting", "settings", "storage",
    "local", "session", "event", "message", "metric", "cursor", "page", "sticky", "unit", "name",
    "dedup", "dedupe",
];

/// Qualifiers before `key` that name a lookup key, not a secret.
fn is_lookup_qualifier(seg: &[u8]) -> bool {
    LOOKUP_QUALIFIERS.iter().any(|w| w.as_bytes() == seg)
}

#[rustfmt::skip]
const NOT_CREDENTIAL_TOKENS: &[&str] = &[
    "page", "next", "continuation", "cancellation", "cancel", "sync", "csrf", "xsrf", "max", "num",
    "total", "count", "prompt", "completion", "input", "output", "lexer", "parse", "end", "start",
    "special", "pad", "bos", "eos", "unk", "mask", "sep", "cls",
];

/// Qualifiers before `token` that name something other than a credential.
fn is_token_qualifier_excluded(seg: &[u8]) -> bool {
    NOT_CREDENTIAL_TOKENS.iter().any(|w| w.as_bytes() == seg)
}

fn seg_role(seg: &[u8]) -> Role {
    if is_excluded_anywhere(seg) {
        return Role::Excluded;
    }
    match seg {
        b"password" | b"passwd" | b"passphrase" | b"pwd" | b"pass" | b"pw" | b"passwort"
        | b"pword" | b"pswd" | b"psw" => return Role::Password,
        b"authorization" => return Role::Header,
        b"credential" | b"credentials" | b"creds" | b"cred" => return Role::Credential,
        b"bearer" => return Role::Token,
        b"monkey" | b"turkey" | b"donkey" | b"hotkey" | b"hockey" | b"jockey" | b"whiskey"
        | b"keykey" | b"passkey" | b"jsonwebtoken" => return Role::Other,
        _ => {}
    }
    let ends = |w: &[u8]| seg.len() >= w.len() && seg.ends_with(w);
    if ends(b"password")
        || ends(b"passwd")
        || ends(b"passphrase")
        || (ends(b"pwd") && seg.len() <= 10)
    {
        return Role::Password;
    }
    if ends(b"secret") {
        return Role::Secret;
    }
    if seg.starts_with(b"secret") {
        let rest = seg.get(6..).unwrap_or_default();
        if matches!(rest, b"key" | b"token" | b"accesskey" | b"value") {
            return Role::Secret;
        }
    }
    if ends(b"apikey")
        || ends(b"accesskey")
        || ends(b"secretkey")
        || ends(b"privatekey")
        || ends(b"authkey")
        || ends(b"masterkey")
        || ends(b"signingkey")
        || ends(b"encryptionkey")
        || ends(b"clientkey")
        || ends(b"licensekey")
        || ends(b"subscriptionkey")
        || ends(b"accountkey")
        || ends(b"appkey")
        || ends(b"webhookkey")
    {
        return Role::ApiKey;
    }
    if ends(b"token") {
        if seg.starts_with(b"csrf")
            || seg.starts_with(b"xsrf")
            || seg.starts_with(b"page")
            || seg.starts_with(b"next")
            || seg.starts_with(b"public")
            || seg.starts_with(b"max")
            || seg.starts_with(b"cancel")
        {
            return Role::Excluded;
        }
        return Role::Token;
    }
    if seg == b"key" || (ends(b"key") && seg.len() <= 16) {
        return Role::Key;
    }
    if is_trailer(seg) {
        return Role::Trailer;
    }
    Role::Other
}

/// Splits an identifier into lower-cased segments at `_ - . :`, at lower-to-upper case changes
/// and at the end of an acronym (`APIKey` → `api`, `key`).
fn segments(ident: &[u8]) -> Vec<Vec<u8>> {
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    for (i, &c) in ident.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                segs.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let prev = i.checked_sub(1).and_then(|j| ident.get(j)).copied();
        let next = ident.get(i + 1).copied();
        let split = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
            });
        if split && !cur.is_empty() {
            segs.push(std::mem::take(&mut cur));
        }
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        segs.push(cur);
    }
    segs
}

#[rustfmt::skip]
const KEY_UPGRADES: &[&str] = &[
    "api", "secret", "access", "private", "auth", "master", "client", "app", "signing",
    "encryption", "license", "account", "service", "subscription", "consumer", "webhook", "admin",
    "shared", "sas", "hmac", "jwt", "crypt", "cipher",
];

/// Qualifiers that make a `key` an API key.
fn is_key_upgrade(seg: &[u8]) -> bool {
    KEY_UPGRADES.iter().any(|w| w.as_bytes() == seg)
}

/// Vendors whose name alone marks an identifier worth checking against their exact format.
const VENDOR_ONLY: &[&[u8]] = &[
    b"sourcegraph",
    b"artifactory",
    b"jfrog",
    b"art-api",
    b"artif",
];

/// The tier of an identifier, or `None` when it does not name a secret.
fn classify(ident: &[u8]) -> Option<Tier> {
    let segs = segments(ident);
    let roles: Vec<Role> = segs.iter().map(|s| seg_role(s)).collect();
    if roles.contains(&Role::Excluded) {
        return None;
    }
    let head = roles.iter().rposition(|r| {
        matches!(
            r,
            Role::Password
                | Role::Secret
                | Role::Token
                | Role::ApiKey
                | Role::Key
                | Role::Credential
                | Role::Header
        )
    });
    let Some(h) = head else {
        let lower: Vec<u8> = ident.iter().map(u8::to_ascii_lowercase).collect();
        return VENDOR_ONLY
            .iter()
            .any(|v| contains(&lower, v))
            .then_some(Tier::VendorOnly);
    };
    if !segs.iter().skip(h + 1).all(|s| is_trailer(s)) {
        return None;
    }
    let prev = h.checked_sub(1).and_then(|i| segs.get(i));
    Some(match roles.get(h)? {
        Role::Password => Tier::Password,
        Role::Secret | Role::ApiKey | Role::Header => Tier::Strong,
        Role::Token => {
            if prev.is_some_and(|p| is_token_qualifier_excluded(p)) {
                return None;
            }
            Tier::Strong
        }
        Role::Credential => Tier::Weak,
        Role::Key => {
            let seg = segs.get(h)?;
            if seg.as_slice() != b"key" {
                // A run-together `somethingkey`: the qualifier is inside the segment.
                let q = seg.get(..seg.len() - 3).unwrap_or_default();
                if is_lookup_qualifier(q) {
                    return None;
                }
                return Some(Tier::Key);
            }
            let q = prev?;
            if is_lookup_qualifier(q) {
                return None;
            }
            if is_key_upgrade(q) || segs.iter().take(h).any(|s| seg_role(s) == Role::Secret) {
                Tier::Strong
            } else {
                Tier::Key
            }
        }
        _ => return None,
    })
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

const IDENT_MAX: usize = 80;
const VALUE_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Assign,
    Flag,
    Prose,
    Xml,
}

/// A generic assignment around the keyword at `ks..ke`. Pushes a candidate for its value if it
/// is one; returns the end of the identifier so that other keywords inside it are skipped.
fn assignment_at(b: &[u8], ks: usize, ke: usize, out: &mut Vec<Cand>) -> usize {
    let mut is = ks;
    while is > 0 && ks - is < IDENT_MAX && b.get(is - 1).is_some_and(|&c| is_ident_byte(c)) {
        is -= 1;
    }
    let mut ie = ke;
    while ie < b.len() && ie - ke < IDENT_MAX && b.get(ie).is_some_and(|&c| is_ident_byte(c)) {
        ie += 1;
    }
    // Inside a long run (a base64 blob, a minified line): not an identifier.
    if is
        .checked_sub(1)
        .and_then(|i| b.get(i))
        .is_some_and(|&c| is_ident_byte(c))
        || b.get(ie).is_some_and(|&c| is_ident_byte(c))
    {
        return ie;
    }
    let _ = assignment_value(b, is, ie).map(|c| out.push(c));
    ie
}

fn assignment_value(b: &[u8], is: usize, ie: usize) -> Option<Cand> {
    let mut s = is;
    let mut flag = false;
    while s < ie && matches!(b.get(s), Some(b'-') | Some(b'.')) {
        flag |= b.get(s) == Some(&b'-');
        s += 1;
    }
    let mut e = ie;
    while e > s && matches!(b.get(e - 1), Some(b'.') | Some(b'-')) {
        e -= 1;
    }
    let ident = b.get(s..e)?;
    if ident.is_empty() {
        return None;
    }
    let tier = classify(ident)?;
    let before = is.checked_sub(1).and_then(|i| b.get(i)).copied();
    let (op, mut v) = operator(b, e, before, flag, tier)?;
    while b.get(v).is_some_and(|&c| c == b' ' || c == b'\t') && v - e < 64 {
        v += 1;
    }
    let header = tier == Tier::Strong && contains_ci(ident, b"authorization");
    let (vs, ve, quoted, scheme) = value_at(b, v, op, header)?;
    let value = b.get(vs..ve)?;
    if !quoted && type_annotation(b, ve) {
        return None;
    }
    let lower: Vec<u8> = ident.iter().map(u8::to_ascii_lowercase).collect();
    if let Some((kind, conf)) = vendor_kind(&lower, value, npmrc_scoped(b, is)) {
        if is_template(value) {
            return None;
        }
        return Some(vendor_cand(kind, conf, vs, ve, value));
    }
    if tier == Tier::VendorOnly {
        return None;
    }
    if scheme == Some(Scheme::Basic) {
        // `Basic dXNlcjpwYXNz` is `user:pass`: judge the password it carries.
        if let Some(d) = decoded_text(value) {
            let pass = d
                .iter()
                .position(|&c| c == b':')
                .and_then(|i| d.get(i + 1..));
            if pass.is_some_and(|p| !p.is_empty() && !credential_value_ok(p)) {
                return None;
            }
        }
    }
    let (severity, confidence) = generic_gate(value, tier, quoted, op, &lower, header)?;
    let kind = if header {
        if scheme == Some(Scheme::Basic) {
            "basic_auth"
        } else {
            "bearer_token"
        }
    } else {
        "generic_secret"
    };
    Some(Cand {
        start: vs,
        end: ve,
        kind,
        severity,
        confidence,
        prio: if header { PRIO_STRUCT } else { PRIO_GENERIC },
        placeholder: false,
    })
}

/// The operator after an identifier ending at `e`; returns it and where the value may start.
fn operator(b: &[u8], e: usize, before: Option<u8>, flag: bool, tier: Tier) -> Option<(Op, usize)> {
    let mut i = e;
    // A quoted key (`"password":`, `\"token\":`, `ENV['SECRET']`).
    if b.get(i) == Some(&b'\\') && matches!(b.get(i + 1), Some(b'"' | b'\'')) {
        i += 2;
    } else if matches!(b.get(i), Some(b'"' | b'\'' | b'`')) {
        i += 1;
    }
    if b.get(i) == Some(&b']') {
        i += 1;
    }
    if before == Some(b'<') && b.get(i) == Some(&b'>') {
        return Some((Op::Xml, i + 1));
    }
    let ws_start = i;
    while b.get(i).is_some_and(|&c| c == b' ' || c == b'\t') && i - ws_start < 16 {
        i += 1;
    }
    let had_ws = i > ws_start;
    let rest = b.get(i..).unwrap_or_default();
    // `token::take_while`, `Authorization::{…}`: a path separator, not an assignment.
    if rest.starts_with(b"::") && !rest.starts_with(b"::=") {
        return None;
    }
    for (tok, len) in [
        (&b"::="[..], 3),
        (b":=", 2),
        (b"=>", 2),
        (b"==", 2),
        (b"?=", 2),
        (b"=", 1),
        (b":", 1),
    ] {
        if rest.starts_with(tok) {
            // `a: |` and `a: >` start YAML blocks; `a:b` without a space after an unquoted key is
            // usually a namespace or a URL scheme, not an assignment — but `key:value` is
            // common in env-like text, so only refuse obvious non-values later.
            return Some((Op::Assign, i + len));
        }
    }
    // `<add key="Password" value="…"/>`
    if had_ws
        && rest.len() >= 6
        && rest
            .get(..6)
            .is_some_and(|r| r.eq_ignore_ascii_case(b"value="))
    {
        return Some((Op::Assign, i + 6));
    }
    if flag && had_ws {
        return Some((Op::Flag, i));
    }
    // "my password is hunter2!", "the token was …"
    if had_ws && matches!(tier, Tier::Password | Tier::Strong) {
        for w in [&b"is "[..], b"was ", b"IS "] {
            if rest.starts_with(w) {
                return Some((Op::Prose, i + w.len()));
            }
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Basic,
    Other,
}

const SCHEMES: &[&[u8]] = &[
    b"basic",
    b"bearer",
    b"token",
    b"api-token",
    b"apitoken",
    b"apikey",
    b"api-key",
    b"bot",
    b"oauth",
    b"jwt",
    b"ssws",
    b"digest",
    b"key",
];

/// The value starting at `v`: `(start, end, quoted, scheme)`.
fn value_at(
    b: &[u8],
    mut v: usize,
    op: Op,
    header: bool,
) -> Option<(usize, usize, bool, Option<Scheme>)> {
    // String prefixes: r"…", b'…', f"…", u"…", @"…".
    if matches!(
        b.get(v),
        Some(b'r' | b'b' | b'u' | b'f' | b'R' | b'B' | b'U' | b'F' | b'@')
    ) && matches!(b.get(v + 1), Some(b'"' | b'\''))
    {
        v += 1;
    }
    let escaped = b.get(v) == Some(&b'\\') && matches!(b.get(v + 1), Some(b'"' | b'\''));
    if escaped {
        v += 1;
    }
    let first = *b.get(v)?;
    let (mut vs, mut ve, quoted) = if op != Op::Xml && matches!(first, b'"' | b'\'' | b'`') {
        let q = first;
        let s = v + 1;
        let mut i = s;
        loop {
            let c = *b.get(i)?;
            if c == q || (escaped && c == b'\\') {
                break;
            }
            if c == b'\n' || i - s > VALUE_MAX {
                return None;
            }
            i += 1;
        }
        (s, i, true)
    } else {
        let s = v;
        let mut i = s;
        while let Some(&c) = b.get(i) {
            // In prose only spaces and clause punctuation end a value; in code and URLs `&`, `|`
            // and `\\` separate too. `(` and `[` end a value so that a call or an index is seen.
            let stop = c.is_ascii_whitespace()
                || matches!(
                    c,
                    b'"' | b'\''
                        | b'`'
                        | b','
                        | b';'
                        | b'('
                        | b')'
                        | b'['
                        | b']'
                        | b'}'
                        | b'<'
                        | b'>'
                )
                || (op != Op::Prose && matches!(c, b'&' | b'|' | b'\\'));
            if stop {
                break;
            }
            // `a=b=c`: not a plain value (padding `==` at the end is fine).
            if !header
                && c == b'='
                && b.get(i + 1).is_some_and(|&n| {
                    n != b'='
                        && !n.is_ascii_whitespace()
                        && !matches!(n, b'"' | b'\'' | b';' | b',' | b'&')
                })
            {
                return None;
            }
            if i - s > VALUE_MAX {
                return None;
            }
            i += 1;
        }
        // Code, not a literal: a call, an index, an attribute access.
        if !header && matches!(b.get(i), Some(b'(' | b'[')) {
            return None;
        }
        let mut e = i;
        while e > s && matches!(b.get(e - 1), Some(b'.' | b',' | b':')) {
            e -= 1;
        }
        (s, e, false)
    };
    let mut scheme = None;
    if header {
        // `Bearer abc`, `Basic dXNlcjpwYXNz`, `Token abc`, inside or outside quotes.
        let mut w = vs;
        while w < vs + 16
            && b.get(w)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-')
        {
            w += 1;
        }
        let word: Vec<u8> = b.get(vs..w)?.iter().map(u8::to_ascii_lowercase).collect();
        let spaced = b.get(w).is_some_and(|c| *c == b' ' || *c == b'\t');
        if spaced && SCHEMES.contains(&word.as_slice()) {
            scheme = Some(if word == b"basic" {
                Scheme::Basic
            } else {
                Scheme::Other
            });
            let mut t = w;
            while b.get(t).is_some_and(|&c| c == b' ' || c == b'\t') && t < w + 16 {
                t += 1;
            }
            vs = t;
        }
        if !quoted || scheme.is_some() {
            // The credential runs to the next space or terminator.
            let mut i = vs;
            while let Some(&c) = b.get(i) {
                if i - vs > VALUE_MAX * 8
                    || c.is_ascii_whitespace()
                    || matches!(
                        c,
                        b'"' | b'\'' | b'`' | b',' | b';' | b')' | b'<' | b'>' | b'|' | b'\\'
                    )
                {
                    break;
                }
                i += 1;
            }
            ve = if quoted { i.min(ve) } else { i };
        }
    }
    if op == Op::Xml {
        // `<password>value</password>`: the value ends at `<`.
        if b.get(ve) != Some(&b'<') {
            return None;
        }
    }
    (ve > vs).then_some((vs, ve, quoted, scheme))
}

/// `//host/path/:` right before the identifier starting at `is`: an `.npmrc` setting scoped to a
/// registry, which is how npm reads auth tokens.
fn npmrc_scoped(b: &[u8], is: usize) -> bool {
    let Some(head) = is.checked_sub(2).and_then(|s| b.get(s..is)) else {
        return false;
    };
    if head != b"/:" {
        return false;
    }
    // `//` then a non-empty registry on the same line, looked for in a bounded window.
    let from = is.saturating_sub(2 + NPMRC_SCOPE_MAX);
    let Some(scope) = b.get(from..is - 2) else {
        return false;
    };
    let line = scope
        .iter()
        .rposition(|&c| c == b'\n' || c.is_ascii_whitespace())
        .map_or(scope, |i| scope.get(i + 1..).unwrap_or_default());
    memchr::memmem::find(line, b"//").is_some_and(|i| line.len() > i + 2)
}

const NPMRC_SCOPE_MAX: usize = 256;

/// A vendor named in the identifier whose exact value format matches: `(kind, confidence)`.
/// `npmrc_scoped` says the identifier is a registry-scoped `.npmrc` key.
fn vendor_kind(ident_lower: &[u8], v: &[u8], npmrc_scoped: bool) -> Option<(&'static str, f32)> {
    let has = |w: &[u8]| contains(ident_lower, w);
    let all = |f: fn(&u8) -> bool| v.iter().all(f);
    let lower_alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let starts = |w: &[u8]| ident_lower.starts_with(w);
    if (has(b"softlayer")
        || starts(b"sl_")
        || starts(b"sl-")
        || starts(b"slapi")
        || starts(b"slkey"))
        && v.len() == 64
        && all(lower_alnum)
    {
        return Some(("softlayer_api_key", 0.9));
    }
    if (has(b"cloudant") || starts(b"cl_") || starts(b"cl-") || starts(b"clou"))
        && ((v.len() == 64 && is_hex(v) && !v.iter().any(u8::is_ascii_uppercase))
            || (v.len() == 24 && all(u8::is_ascii_lowercase)))
    {
        return Some(("cloudant_credential", 0.85));
    }
    if (has(b"ibm") || has(b"iam") || starts(b"cloud"))
        && v.len() == 44
        && all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
    {
        return Some(("ibm_cloud_api_key", 0.85));
    }
    // IBM's HMAC credentials name the secret `secret_access_key`, and tools written for S3 read
    // it under that name (`aws_secret_access_key`), where AWS's own secrets are 40 base64.
    if v.len() == 48
        && is_hex(v)
        && (has(b"cos") || has(b"hmac") || ends_secret_access_key(ident_lower))
    {
        return Some(("ibm_cos_hmac_secret", 0.85));
    }
    if has(b"aws")
        && v.len() == 40
        && all(|c| c.is_ascii_alphanumeric() || *c == b'/' || *c == b'+')
    {
        return Some(("aws_secret_access_key", 0.9));
    }
    if (has(b"artifactory") || has(b"jfrog") || has(b"art-api") || has(b"artif"))
        && v.len() >= 10
        && all(u8::is_ascii_alphanumeric)
        && (v.starts_with(b"AKC")
            || v.starts_with(b"cmVmdGtu")
            || (v.starts_with(b"AP")
                && v.get(2)
                    .is_some_and(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))))
    {
        return Some(("artifactory_token", 0.85));
    }
    // `.npmrc`: a legacy token is a random UUID; newer ones start `npm_`.
    let npm_new =
        v.len() >= 12 && v.starts_with(b"npm_") && v.iter().skip(4).all(u8::is_ascii_alphanumeric);
    if ident_lower == b"_authtoken" && npmrc_scoped && (is_uuid(v) || npm_new) {
        return Some(("npm_token", 0.9));
    }
    if has(b"heroku") && is_uuid(v) {
        return Some(("heroku_api_key", 0.85));
    }
    if has(b"sourcegraph") && v.len() == 40 && is_hex(v) {
        return Some(("sourcegraph_token", 0.8));
    }
    if has(b"twilio") && v.len() == 32 && is_hex(v) {
        return Some(("twilio_auth_token", 0.85));
    }
    if (has(b"cohere") || starts(b"co_api")) && v.len() == 40 && all(u8::is_ascii_alphanumeric) {
        return Some(("cohere_api_key", 0.85));
    }
    if (has(b"datadog") || starts(b"dd_api") || starts(b"dd-api")) && v.len() == 32 && is_hex(v) {
        return Some(("datadog_api_key", 0.85));
    }
    if v.len() == 26
        && v.starts_with(b"s.")
        && v.iter().skip(2).all(u8::is_ascii_alphanumeric)
        && v.iter().any(u8::is_ascii_digit)
    {
        return Some(("hashicorp_vault_token", 0.8));
    }
    None
}

/// `secret_access_key`, `SecretAccessKey`, `secret-access-key` and the like end the identifier.
fn ends_secret_access_key(ident_lower: &[u8]) -> bool {
    let want = b"secretaccesskey";
    ident_lower
        .iter()
        .rev()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(want.len())
        .eq(want.iter().rev())
}

/// A value of a vendor's exact format at `vs..ve`. Filler, an example marker or a typed pattern
/// in it makes a placeholder, reported like a provider token with such a body.
fn vendor_cand(kind: &'static str, conf: f32, vs: usize, ve: usize, value: &[u8]) -> Cand {
    let placeholder = !vendor_value_ok(value);
    let (severity, confidence) = if placeholder {
        (Low, PLACEHOLDER_CONFIDENCE)
    } else {
        (Critical, conf)
    };
    Cand {
        start: vs,
        end: ve,
        kind,
        severity,
        confidence,
        prio: PRIO_VENDOR,
        placeholder,
    }
}

/// A vendor-format value that is not a placeholder.
fn vendor_value_ok(v: &[u8]) -> bool {
    !is_placeholder(v) && !is_time_uuid(v) && entropy(v) >= 2.5
}

/// Whether a generic value looks like a secret under an identifier of `tier`:
/// `(severity, confidence)` if it does.
fn generic_gate(
    v: &[u8],
    tier: Tier,
    quoted: bool,
    op: Op,
    ident_lower: &[u8],
    header: bool,
) -> Option<(Severity, f32)> {
    let len = v.len();
    // Header credentials (OAuth tokens, signed blobs) run longer than config values.
    let max = if header { VALUE_MAX * 8 } else { VALUE_MAX };
    if len > max || v.iter().any(|c| c.is_ascii_whitespace()) {
        return None;
    }
    if is_placeholder(v) {
        return None;
    }
    let lower: Vec<u8> = v.iter().map(u8::to_ascii_lowercase).collect();
    // The value repeats the identifier's own word ("mysecretpassword", "tokenvalue").
    for w in [&b"password"[..], b"passwd", b"secret", b"token"] {
        if contains(ident_lower, w) && contains(&lower, w) {
            return None;
        }
    }
    let cls = Classes::of(v);
    let letters_only = v
        .iter()
        .all(|c| c.is_ascii_alphabetic() || *c == b'_' || *c == b'-' || *c == b'.');
    let digits_only = v
        .iter()
        .all(|c| c.is_ascii_digit() || *c == b'.' || *c == b'-');
    if digits_only {
        return None;
    }
    if !quoted {
        // A bare identifier or attribute path is a variable, not a literal.
        let first_ok = v
            .first()
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_' || *c == b'$');
        let dotted = first_ok
            && v.contains(&b'.')
            && v.split(|c| *c == b'.').all(|p| {
                p.first()
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_' || *c == b'$')
                    && p.iter()
                        .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$')
            });
        if dotted {
            return None;
        }
        if matches!(
            v.first(),
            Some(b'{' | b'[' | b'(' | b'!' | b'*' | b'&' | b'|' | b'>' | b':')
        ) {
            return None;
        }
        // Code: a path (`super::Foundation::PROPERTYKEY`, `crate::Event`), a call
        // (`_basic_auth_str(username`, `self.headers.get(`) or a named constant or type
        // (`MSV1_0_CREDENTIAL_KEY`, `nl80211_rekey_data`).
        if contains(v, b"::") || v.contains(&b'(') || is_snake_name(v) {
            return None;
        }
    }
    // Paths and URLs are references to secrets, not secrets.
    if v.starts_with(b"http://")
        || v.starts_with(b"https://")
        || v.starts_with(b"file:")
        || v.starts_with(b"./")
        || v.starts_with(b"../")
        || v.starts_with(b"~/")
    {
        return None;
    }
    if v.first() == Some(&b'/')
        && v.iter().filter(|c| **c == b'/').count() >= 2
        && !v.contains(&b'+')
        && !v.contains(&b'=')
    {
        return None;
    }
    if ends_with_version(v) || is_time_uuid(v) {
        return None;
    }
    // Base64 that decodes to text is judged by the text: `U3VtbWVyMjAyNCE=` is a password,
    // `ZXhhbXBsZXRva2VuaGVyZQ==` ("exampletokenhere") is not. Structured data (JSON) is left to
    // the scan of decoded segments, which finds secrets nested inside it.
    if !header {
        if let Some(d) = decoded_text(v) {
            if matches!(d.first(), Some(b'{' | b'[')) {
                return None;
            }
            let (sev, conf) = generic_gate(&d, tier, true, op, ident_lower, true)?;
            return Some((sev, conf * 0.95));
        }
    }
    let h = entropy(v);
    let hex = is_hex(v);
    let (min_len, min_h) = match tier {
        Tier::Password => (6, 2.0),
        Tier::Strong => (10, if hex { 2.8 } else { 3.0 }),
        Tier::Key => (16, if hex { 3.0 } else { 3.2 }),
        Tier::Weak => (16, 3.5),
        Tier::VendorOnly => return None,
    };
    if len < min_len || h < min_h {
        return None;
    }
    if letters_only {
        // Words and identifiers; a quoted long mixed-case run may still be a password.
        let passphrase =
            quoted && tier == Tier::Password && len >= 10 && h >= 3.2 && cls.upper && cls.lower;
        if !passphrase {
            return None;
        }
    } else if cls.count() < 2 {
        return None;
    }
    if op == Op::Prose && !(cls.digit || cls.symbol) {
        return None;
    }
    let strong_value = len >= 20 && h >= 3.5;
    let severity = match tier {
        Tier::Password if len >= 10 && cls.count() >= 3 => High,
        Tier::Password => Medium,
        _ if strong_value => High,
        _ => Medium,
    };
    let base: f32 = match tier {
        Tier::Password => 0.7,
        Tier::Strong => 0.72,
        Tier::Key => 0.6,
        Tier::Weak => 0.5,
        Tier::VendorOnly => 0.5,
    };
    let bonus = if h >= 4.0 {
        0.1
    } else if h >= 3.5 {
        0.05
    } else {
        0.0
    };
    let q = if quoted { 0.05 } else { 0.0 };
    let prose = if op == Op::Prose { -0.15 } else { 0.0 };
    Some((severity, (base + bonus + q + prose).clamp(0.05, 0.95)))
}

/// The unquoted value ending at `ve` is followed by `=`: `TOKEN: _bindgen_ty_7 = …` gives a
/// type, not a value.
fn type_annotation(b: &[u8], ve: usize) -> bool {
    let mut i = ve;
    while b.get(i).is_some_and(|&c| c == b' ' || c == b'\t') && i - ve < 8 {
        i += 1;
    }
    b.get(i) == Some(&b'=') && b.get(i + 1) != Some(&b'=')
}

/// An identifier in `snake_case` or `UPPER_SNAKE_CASE` with two or more word segments (two or
/// more letters of one case, then perhaps digits): a name of something in code
/// (`IKEEXT_CREDENTIAL0`). Random material mixes case and digits within a segment.
fn is_snake_name(v: &[u8]) -> bool {
    let ident = v
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && v.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && v.contains(&b'_');
    let word = |seg: &&[u8]| {
        let letters = seg.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        let (head, tail) = seg.split_at(letters);
        head.len() >= 2
            && (head.iter().all(u8::is_ascii_lowercase) || head.iter().all(u8::is_ascii_uppercase))
            && tail.iter().all(u8::is_ascii_digit)
    };
    ident && v.split(|c| *c == b'_').filter(word).count() >= 2
}

/// `v` as base64 (padding may be percent-encoded) that decodes to printable ASCII text.
fn decoded_text(v: &[u8]) -> Option<Vec<u8>> {
    if v.len() < 8 || is_hex(v) {
        return None;
    }
    let mut raw: Vec<u8> = Vec::with_capacity(v.len());
    let mut i = 0;
    while let Some(&c) = v.get(i) {
        if c == b'%'
            && v.get(i + 1..i + 3)
                .is_some_and(|h| h.eq_ignore_ascii_case(b"3D"))
        {
            raw.push(b'=');
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_')) {
            return None;
        }
        raw.push(c);
        i += 1;
    }
    let d = base64_decode(&raw)?;
    (d.len() >= 4 && d.iter().all(|b| (0x20..0x7f).contains(b))).then_some(d)
}

/// `name-1.2.3`, `lib:0.11`: an artifact or version string.
fn ends_with_version(v: &[u8]) -> bool {
    let mut i = v.len();
    let mut dots = 0;
    let mut digits = 0;
    while i > 0 {
        let c = v.get(i - 1).copied().unwrap_or(0);
        if c.is_ascii_digit() {
            digits += 1;
        } else if c == b'.' && digits > 0 {
            dots += 1;
        } else {
            break;
        }
        i -= 1;
    }
    dots >= 1
        && digits >= 2
        && i > 0
        && matches!(v.get(i - 1), Some(b'-' | b'_' | b':' | b'v' | b'V'))
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn floor_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    let mut i = i;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn char_len_at(s: &str, i: usize) -> usize {
    s.get(i..)
        .and_then(|t| t.chars().next())
        .map_or(0, char::len_utf8)
}

fn has_invisible(text: &str) -> bool {
    !text.is_ascii() && text.chars().any(is_invisible)
}

/// `text` without invisible characters, and for each byte of the result its offset in `text`.
fn strip_invisible(text: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if is_invisible(c) {
            continue;
        }
        out.push(c);
        for k in 0..c.len_utf8() {
            map.push(i + k);
        }
    }
    (out, map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NormalizeOptions;

    fn find(text: &str) -> Vec<(String, String)> {
        let input = Normalized::new(text, &NormalizeOptions::default());
        let mut out = Vec::new();
        SecretsDetector::default().detect(&input, &mut out);
        out.into_iter()
            .map(|f| {
                (
                    f.kind.to_string(),
                    text.get(f.span.start..f.span.end)
                        .unwrap_or("<bad span>")
                        .to_owned(),
                )
            })
            .collect()
    }

    fn kinds(text: &str) -> Vec<String> {
        find(text).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn every_pattern_compiles() {
        let specs = specs();
        assert_eq!(
            ENGINE.rules.len(),
            specs.len(),
            "a token regex failed to compile"
        );
        assert!(ENGINE.pem_begin.is_some() && ENGINE.pem_end.is_some());
        assert!(ENGINE.anchors.is_some());
        for s in &specs {
            assert!(KINDS.contains(&s.kind), "{} missing from KINDS", s.kind);
            assert!(!s.anchors.is_empty());
        }
    }

    #[test]
    fn github_checksum_is_checked() {
        // 30 random characters, then their CRC32 in base62.
        let random = b"Ab3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1";
        let mut v = u64::from(crc32(random));
        let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut sum = [b'0'; 6];
        for slot in sum.iter_mut().rev() {
            *slot = alphabet[(v % 62) as usize];
            v /= 62;
        }
        let mut body = random.to_vec();
        body.extend_from_slice(&sum);
        assert!(crc32_base62_ok(&body));
        let good = format!("ghp_{}", std::str::from_utf8(&body).unwrap_or_default());
        body[0] = b'B';
        assert!(!crc32_base62_ok(&body));
        let bad = format!("ghp_{}", std::str::from_utf8(&body).unwrap_or_default());
        // Both still flag (fixtures rarely carry a valid checksum); the valid one is surer.
        let conf = |t: &str| {
            let input = Normalized::new(t, &NormalizeOptions::default());
            let mut out = Vec::new();
            SecretsDetector::default().detect(&input, &mut out);
            assert_eq!(out.len(), 1, "{t}");
            out[0].confidence
        };
        assert!(conf(&good) > conf(&bad));
        assert_eq!(kinds(&format!("token {good}")), vec!["github_token"]);
    }

    #[test]
    fn crc32_matches_the_standard() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn span_is_the_value_not_the_key() {
        let f = find("https://example.org/login?user=ada&pw=Tr0ub4dor3&next=/home");
        assert_eq!(f, vec![("generic_secret".into(), "Tr0ub4dor3".into())]);
        let f = find("DB_PASSWORD=\"Tr0ub4dor&3x\"");
        assert_eq!(f, vec![("generic_secret".into(), "Tr0ub4dor&3x".into())]);
        let f = find("postgres://app:S3cr3t-Pa55@db.internal:5432/app");
        assert_eq!(f, vec![("connection_string".into(), "S3cr3t-Pa55".into())]);
    }

    #[test]
    fn placeholders_are_not_secrets() {
        for t in [
            "password = \"changeme\"",
            "api_key: ${API_KEY}",
            "token: {{ secrets.TOKEN }}",
            "API_KEY=<your-key>",
            "secret = \"xxxxxxxxxxxxxxxx\"",
            "password: '********'",
            "password = None",
            "token = null",
            "api_key = os.environ['API_KEY']",
            "const token = process.env.GITHUB_TOKEN;",
            "redis://:password@localhost:6379",
            "secret_key = 'REDACTED'",
        ] {
            assert!(find(t).is_empty(), "{t}: {:?}", find(t));
        }
    }

    /// `(kind, severity, confidence)` of every finding.
    fn graded(text: &str, det: &SecretsDetector) -> Vec<(String, Severity, f32)> {
        let input = Normalized::new(text, &NormalizeOptions::default());
        let mut out = Vec::new();
        det.detect(&input, &mut out);
        out.into_iter()
            .map(|f| (f.kind.to_string(), f.severity, f.confidence))
            .collect()
    }

    #[test]
    fn format_valid_placeholders_are_low() {
        let d = SecretsDetector::default();
        for (text, kind) in [
            (
                "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
                "aws_access_key_id",
            ),
            ("key: AKIAQQQQQQQQQQQQQQQQ", "aws_access_key_id"),
            ("ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "github_token"),
            (
                "SID=ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                "twilio_account_sid",
            ),
            ("X-JFrog-Art-Api: AKCxxxxxxxxxxxx", "artifactory_token"),
            (
                "aws_secret_access_key = \"Jb2kR9/Lq7ZxEXAMPLEKEYw4Tn8vQ1sUo3YpMd6f\"",
                "aws_secret_access_key",
            ),
            (
                "//npm.pkg.example/:_authToken=npm_xxxxxxxxxxxx",
                "npm_token",
            ),
        ] {
            let g = graded(text, &d);
            assert_eq!(g.len(), 1, "{text}: {g:?}");
            assert_eq!(g[0].0, kind, "{text}");
            assert_eq!(g[0].1, Severity::Low, "{text}");
            assert!(g[0].2 <= 0.3 + f32::EPSILON, "{text}: {g:?}");
        }
        // Off: nothing at all.
        let quiet = SecretsDetector::default().report_placeholders(false);
        assert!(graded("ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", &quiet).is_empty());
        // A random body keeps the provider's severity.
        let g = graded("SK3f9a1c0b7e2d4f6a8b9c1d3e5f7a9b0c", &d);
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(g[0].1, Severity::High);
    }

    #[test]
    fn typed_patterns_are_seen() {
        for v in [
            "abcdefghijklm",
            "zyxwvutsrqpo",
            "qwertyuiopasd",
            "8901234567890",
        ] {
            assert!(
                typed(v.as_bytes()).walk >= 12,
                "{v}: {:?}",
                typed(v.as_bytes())
            );
        }
        for v in [
            "abc123def456ghi789",
            "a1b2c3d4e5f6g7h8",
            "1111aaaa2222bbbb",
            "poiuytrewq0987654321",
        ] {
            assert!(typed(v.as_bytes()).mostly, "{v}");
        }
        for v in [
            "Xk9vQ2mLp7RtW4zB",
            "I5SIWFUEuStfbLJjTydZVy1HIPUNsDW437HCx15j",
            "9fceb02d0ae598e95dc970b74767f19372d61af8",
            "Abc123!!",
        ] {
            assert!(!is_typed(v.as_bytes()), "{v}: {:?}", typed(v.as_bytes()));
        }
        assert!(is_periodic(
            b"abcd1234abcd1234abcd1234ABCD1234ABCD1234--__extra"
        ));
        assert!(!is_periodic(b"abcd1234abcd1234-and-then-something-else"));
    }

    /// Random keys must not look typed or periodic: if they did, real secrets would be dropped.
    #[test]
    fn random_material_is_not_typed() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let hex = b"0123456789abcdef";
        let mut flagged = Vec::new();
        for round in 0..20_000 {
            let (alphabet, len): (&[u8], usize) = if round % 2 == 0 {
                (base62, 16 + round % 48)
            } else {
                (hex, 32 + round % 33)
            };
            let v: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if is_typed(&v) || is_periodic(&v) {
                flagged.push(String::from_utf8_lossy(&v).into_owned());
            }
        }
        assert!(flagged.is_empty(), "{flagged:?}");
    }

    #[test]
    fn invented_values_are_not_generic_secrets() {
        for t in [
            "api_secret = \"a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6\"",
            "client_secret = \"0987654321fedcba0987654321\"",
            "SECRET_KEY = \"qwertyuiopasdfghjkl1234\"",
            "password = \"aB3$aB3$aB3$aB3$\"",
            "token: \"1111222233334444aaaabbbbccccdddd\"",
            "ibm_iam_key = \"abcd1234abcd1234abcd1234ABCD1234ABCD1234--__old\"",
        ] {
            assert!(find(t).is_empty(), "{t}: {:?}", find(t));
        }
        assert_eq!(
            kinds("secret = \"Xk9vQ2mLp7RtW4zBn8Yc\""),
            vec!["generic_secret"]
        );
    }

    #[test]
    fn invented_values_of_a_vendor_shape_are_low() {
        let d = SecretsDetector::default();
        for (text, kind) in [
            (
                "ibm_cloud_api_key = abcd1234abcd1234abcd1234ABCD1234ABCD1234--__",
                "ibm_cloud_api_key",
            ),
            (
                "secret_access_key=1234567890abcdef1234567890abcdef1234567890abcdef",
                "ibm_cos_hmac_secret",
            ),
            (
                "https://acct:abcdefghijabcdefghijabcd@acct.cloudant.com/db",
                "cloudant_credential",
            ),
        ] {
            let g = graded(text, &d);
            assert_eq!(g.len(), 1, "{text}: {g:?}");
            assert_eq!(g[0].0, kind, "{text}");
            assert_eq!(g[0].1, Severity::Low, "{text}");
        }
    }

    #[test]
    fn loose_artifactory_shape_needs_a_token_not_a_word() {
        assert_eq!(kinds("pass=AP7kT4mQ9zW2xR5vB8"), vec!["artifactory_token"]);
        assert!(find("import APAddressBook").is_empty());
        assert!(find("See APEXLEGENDSSEASON for details").is_empty());
        assert!(find("testAKCwithinsomeirrelevantstring").is_empty());
    }

    #[test]
    fn npm_legacy_token_needs_a_registry_scope() {
        let v4 = "//registry.npmjs.org/:_authToken=3f1c9a2e-7b4d-4e8a-9c61-2d5f8b0e7a34";
        assert_eq!(kinds(v4), vec!["npm_token"]);
        // A time-based UUID (version 1) is an identifier: low when scoped, nothing unscoped.
        let v1 = "//registry.npmjs.org/:_authToken=6a0c3f7e-1d2b-11ee-8c90-0242ac120003";
        let g = graded(v1, &SecretsDetector::default());
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(g[0].1, Severity::Low);
        assert!(find("_authToken=6a0c3f7e-1d2b-11ee-8c90-0242ac120003").is_empty());
    }

    #[test]
    fn code_is_not_a_value() {
        for t in [
            "use winnow::token::take_while;",
            "pub const TASK_KEY: super::super::Foundation::PROPERTYKEY = PROPERTYKEY { a: 1 };",
            "pub const IFLA_INET6_TOKEN: _bindgen_ty_7 = _bindgen_ty_7::IFLA_INET6_TOKEN;",
            "    pub peerCredentials: IKEEXT_CREDENTIAL1,",
            "headers[\"Authorization\"] = _basic_auth_str(username, password)",
            "    :type passphrase: :py:data:`bytes`",
        ] {
            assert!(find(t).is_empty(), "{t}: {:?}", find(t));
        }
    }

    #[test]
    fn telegram_token_with_a_nine_digit_bot_id() {
        let t = "token: 152165067:AAq5ZvQmLL8ZrF8w50SR2Qugs4lIFVRdxtD";
        assert_eq!(kinds(t), vec!["telegram_bot_token"]);
    }

    #[test]
    fn pem_block_span_covers_the_block() {
        let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0\n\
                    /IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRni\n";
        let text = format!(
            "key:\n-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\nend"
        );
        let f = find(&text);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, "private_key");
        assert!(f[0].1.starts_with("-----BEGIN RSA") && f[0].1.ends_with("PRIVATE KEY-----"));
        assert!(
            find("-----BEGIN OPENSSH PRIVATE KEY----------END OPENSSH PRIVATE KEY-----").is_empty()
        );
    }

    #[test]
    fn jwt_needs_a_json_header_with_alg() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsIm5hbWUiOiJBZGEifQ.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            find(&format!("Bearer {jwt}")),
            vec![("jwt".into(), jwt.into())]
        );
        assert!(find("bm90X2pzb24.bm90X2pzb24.abc").is_empty());
    }

    #[test]
    fn invisible_characters_do_not_hide_a_token() {
        let t = "here: ghp_Ab3dE5gH7jK9\u{200B}mN1pQ3sT5vW7yZ9bC1dE3fG5";
        let f = find(t);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].0, "github_token");
    }

    #[test]
    fn base64_encoded_secret_is_found_with_its_encoding() {
        // base64 of "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ9vLmKe2t"
        let enc =
            "QVdTX1NFQ1JFVF9BQ0NFU1NfS0VZPXdKYWxyWFV0bkZFTUkvSzdNREVORy9iUHhSZmlDWXpROXZMbUtlMnQ=";
        let input = Normalized::new(enc, &NormalizeOptions::default());
        let mut out = Vec::new();
        SecretsDetector::default().detect(&input, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].encoding, Some(crate::Encoding::Base64));
    }

    #[test]
    fn adversarial_inputs_stay_fast() {
        let d = SecretsDetector::default();
        for (name, text) in crate::sample::adversarial_inputs(64 * 1024) {
            // Debug builds are slow; the bound catches quadratic behaviour, not a regression of a
            // few percent.
            let input = Normalized::new(&text, &NormalizeOptions::default());
            let t = std::time::Instant::now();
            let mut out = Vec::new();
            d.detect(&input, &mut out);
            assert!(
                t.elapsed().as_millis() < 500,
                "{name} took {:?}",
                t.elapsed()
            );
        }
        for unit in [
            "eyJ",
            "ghp_",
            "password=",
            "password: ",
            "sk-ant-api03-",
            "xoxb-1234567890-",
            "-----BEGIN PRIVATE KEY-----",
            "://a:b",
            "curl -u a:b ",
        ] {
            let text = unit.repeat(20_000);
            let input = Normalized::new(&text, &NormalizeOptions::default());
            let t = std::time::Instant::now();
            let mut out = Vec::new();
            d.detect(&input, &mut out);
            assert!(
                t.elapsed().as_millis() < 500,
                "{unit:?} took {:?}",
                t.elapsed()
            );
        }
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for t in [
            "",
            "é",
            "password=é",
            "\u{200B}",
            "-----BEGIN",
            "eyJ",
            "://",
            ":AA",
            "Q~",
            "-us",
            "curl -u",
            "a|",
            ".",
            "sk-",
            "password=\"",
            "password: 'abc",
        ] {
            let _ = find(t);
        }
        let multi = format!(
            "pässwörd = \"Grüße123!Ωmega\" ключ: {}{} ✓",
            "AKIA", "2OGYBAH6STMMNXNN"
        );
        let _ = find(&multi);
    }
}
