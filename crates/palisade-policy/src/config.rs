//! The raw configuration model: what a user writes in YAML (or JSON), field for field.
//!
//! These structs only describe and parse. Every struct denies unknown fields, so a typo is an
//! error with its file, line and field path rather than a silently ignored setting. Values that
//! need checking beyond their type (regexes, keyword lists, kind names) are checked while parsing,
//! so their errors carry a position too; [`crate::compile`] turns a parsed [`Config`] into the
//! runtime form.

use std::collections::BTreeMap;

use palisade_detect::custom::{self, CustomLimits};
use palisade_detect::{DetectorId, Severity};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A whole Palisade configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the proxy listens on (`palisade serve`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Named routes: requests whose path starts with a route's `path_prefix` go to its upstream.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The generic proxy, `/proxy/{scheme}/{host}/{path}`.
    #[serde(default)]
    pub proxy: GenericProxyConfig,
    /// Timeouts towards upstreams.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Body size limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// TLS towards upstreams.
    #[serde(default)]
    pub tls: TlsConfig,
    /// How streamed responses are inspected.
    #[serde(default)]
    pub streaming: StreamingConfig,
    /// Named policies. A policy called `default` is used wherever none is named; when the file
    /// defines no `default`, the built-in default policy is added under that name.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyConfig>,
    /// Who may call the guard API (`/v1/guard/*` and the compatible endpoints): one entry per
    /// gateway, plugin or pipeline that sends traffic, each with its own API key and policy. With
    /// none, the guard API answers 401 to everyone.
    #[serde(default)]
    pub collectors: Vec<CollectorConfig>,
    /// The admin API (tool pins, quarantine, approvals, audit), on its own listener. Absent: no
    /// admin API.
    #[serde(default)]
    pub admin: Option<crate::govern::AdminConfig>,
    /// Where governance state lives (rate counters, decision cache, pins, approvals, sessions).
    #[serde(default)]
    pub state: crate::govern::StateConfig,
    /// Where events and findings are recorded.
    #[serde(default)]
    pub storage: StorageConfig,
    /// How the client's address is found behind load balancers and gateways.
    #[serde(default)]
    pub client_ip: ClientIpConfig,
    /// OpenTelemetry traces, exported over OTLP/HTTP. Absent `otlp_endpoint`: no traces.
    #[serde(default)]
    pub traces: TracesConfig,
    /// Webhook alerts on findings, blocks, tool changes, approval requests and rate-limit
    /// bursts.
    #[serde(default)]
    pub alerts: crate::alerts::AlertsConfig,
    /// Event streams for data pipelines: every event and finding published to Kafka.
    #[serde(default)]
    pub events: crate::events::EventsConfig,
}

/// OpenTelemetry traces. Each exchange and guard call is a server span, joined to the caller's
/// trace when the request carries a W3C `traceparent`; the call to the upstream is a client
/// span whose `traceparent` is sent on, so the upstream's own spans join too. Spans are exported
/// in batches over OTLP/HTTP (JSON) from a background thread through a bounded queue: a slow or
/// absent collector drops spans (counted in `palisade_trace_spans_total`), never requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP traces URL, such as `http://127.0.0.1:4318/v1/traces`.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of new traces sampled, 0 to 1. A request with a `traceparent` follows its
    /// caller's sampling decision.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Headers sent to the collector, each value read from the environment variable named:
    /// `{ authorization: OTEL_AUTH_HEADER }`.
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    /// Spans waiting to be exported; beyond this, spans are dropped and counted.
    #[serde(default = "default_queue_spans")]
    pub queue_spans: usize,
    /// Time allowed for one export call, in milliseconds.
    #[serde(default = "default_export_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_service_name() -> String {
    "palisade".to_owned()
}
fn default_sample_ratio() -> f64 {
    1.0
}
fn default_queue_spans() -> usize {
    4096
}
fn default_export_timeout_ms() -> u64 {
    2000
}

impl Default for TracesConfig {
    fn default() -> Self {
        TracesConfig {
            otlp_endpoint: None,
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
            headers_env: BTreeMap::new(),
            queue_spans: default_queue_spans(),
            timeout_ms: default_export_timeout_ms(),
        }
    }
}

/// How the client's address is found. By default it is the connection's peer. Behind a load
/// balancer or a gateway, the peer is that proxy: name it in `trusted_proxies`, and the client is
/// read from the forwarding header it adds, right to left, skipping the trusted proxies (so an
/// address a client writes into the header itself is never believed). The client's address keys
/// rate limits, feeds authorization rules (`source.ip`) and is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientIpConfig {
    /// Addresses or networks (`10.0.0.0/8`) of proxies whose forwarding header is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The forwarding header: `x-forwarded-for` (a comma-separated list, the nearest hop last)
    /// or a single-address header such as `x-real-ip`.
    #[serde(default = "default_forwarded_header")]
    pub header: String,
}

fn default_forwarded_header() -> String {
    "x-forwarded-for".to_owned()
}

impl Default for ClientIpConfig {
    fn default() -> Self {
        ClientIpConfig {
            trusted_proxies: Vec::new(),
            header: default_forwarded_header(),
        }
    }
}

impl ClientIpConfig {
    /// The client's address for a connection from `peer` carrying forwarding header `forwarded`.
    pub fn client(&self, peer: std::net::IpAddr, forwarded: Option<&str>) -> std::net::IpAddr {
        let trusted = |ip: std::net::IpAddr| {
            self.trusted_proxies
                .iter()
                .any(|n| in_network(n, ip) == Some(true))
        };
        if self.trusted_proxies.is_empty() || !trusted(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded.unwrap_or("").rsplit(',') {
            let Some(ip) = parse_hop(hop) else {
                // Garbage in the chain: stop at the last address we could trust.
                return client;
            };
            client = ip;
            if !trusted(ip) {
                return ip;
            }
        }
        client
    }
}

/// One hop of a forwarding header: `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:443`,
/// `203.0.113.7:51234`.
fn parse_hop(hop: &str) -> Option<std::net::IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

/// Where events, findings, inventory and the governance records (tool pins, approvals, the audit
/// log of admin actions) are kept: one SQLite file by default, or PostgreSQL when several
/// replicas share one store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Record events at all. Off: nothing is written, and the admin API has no events.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The SQLite database file (created if missing; `:memory:` keeps records in memory only).
    #[serde(default = "default_sqlite_path")]
    pub sqlite_path: String,
    /// Events kept in memory waiting to be written; beyond this, events are dropped and counted
    /// rather than slowing traffic down.
    #[serde(default = "default_queue_events")]
    pub queue_events: usize,
    /// Events older than this many days are deleted (0 keeps everything).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Also record request and response bodies, after redaction. Off by default: records hold
    /// metadata and findings with masked snippets only.
    #[serde(default)]
    pub bodies: bool,
    /// Keep tool pins, approvals and the audit log of admin actions in the store, so they survive
    /// a restart (with `state.redis`, pins and approvals live in Redis and only the audit log is
    /// kept here). Off: they live in memory only.
    #[serde(default = "default_true")]
    pub governance: bool,
    /// Record into PostgreSQL instead of SQLite (`sqlite_path` is then unused). Migrations run
    /// once across replicas, under an advisory lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresConfig>,
}

/// How to reach PostgreSQL. Give exactly one of `url` and `url_env`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The connection URL, `postgres://user:password@host:5432/database` (or libpq key=value
    /// pairs). Prefer `url_env` when it holds a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The environment variable holding the connection URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// How long to wait to connect, and for any one statement, before the call fails (the
    /// writer then keeps its batch and retries).
    #[serde(default = "default_postgres_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_postgres_timeout_ms() -> u64 {
    5_000
}

fn default_sqlite_path() -> String {
    "palisade.db".to_owned()
}
fn default_queue_events() -> usize {
    10_000
}
fn default_retention_days() -> u32 {
    30
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            enabled: true,
            sqlite_path: default_sqlite_path(),
            queue_events: default_queue_events(),
            retention_days: default_retention_days(),
            bodies: false,
            governance: true,
            postgres: None,
        }
    }
}

/// A caller of the guard API: a Kong plugin, a Worker, an Envoy filter, an ingestion pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Its name, in logs and records.
    pub name: String,
    /// The environment variable holding its API key (sent as `Authorization: Bearer <key>`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Or the key's SHA-256, in hex, so the key itself is never written down.
    #[serde(default)]
    pub api_key_sha256: Option<String>,
    /// The policy its traffic is judged by, unless a call names another.
    #[serde(default = "default_policy_name")]
    pub policy: String,
    /// What is logged of its traffic: `metadata` (the default) or `full` (bodies too, redacted).
    #[serde(default)]
    pub logging: LoggingLevel,
    /// Networks (`10.0.0.0/8`, `127.0.0.1`, `fd00::/8`) whose calls without a key to the
    /// compatible endpoints count as this collector's: for plugins that cannot send a key (Akto's
    /// Kong plugin). The native guard API always needs a key, and a call with a key is always
    /// judged by its key.
    #[serde(default)]
    pub trusted_networks: Vec<String>,
}

/// Whether `ip` is in `net` (`a.b.c.d/len`, `v6::/len` or a single address). `None` when `net`
/// is not a network.
pub fn in_network(net: &str, ip: std::net::IpAddr) -> Option<bool> {
    let (addr, len) = match net.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u32>().ok()?)),
        None => (net, None),
    };
    let base: std::net::IpAddr = addr.trim().parse().ok()?;
    let (b, i, bits): (u128, u128, u32) = match (base, ip) {
        (std::net::IpAddr::V4(b), std::net::IpAddr::V4(i)) => {
            (u32::from(b).into(), u32::from(i).into(), 32)
        }
        (std::net::IpAddr::V6(b), std::net::IpAddr::V6(i)) => (b.into(), i.into(), 128),
        (std::net::IpAddr::V4(_), std::net::IpAddr::V6(i)) => match i.to_ipv4_mapped() {
            Some(v4) => return in_network(net, std::net::IpAddr::V4(v4)),
            None => return Some(false),
        },
        (std::net::IpAddr::V6(_), std::net::IpAddr::V4(_)) => return Some(false),
    };
    let len = len.unwrap_or(bits);
    if len > bits {
        return None;
    }
    let shift = bits - len;
    let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
    Some((b & mask) == (i & mask))
}

/// How much of an exchange is logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoggingLevel {
    /// Time, route, collector, method, path, verdict, findings: never bodies.
    #[default]
    Metadata,
    /// Metadata and the bodies, after redaction.
    Full,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            routes: Vec::new(),
            proxy: GenericProxyConfig::default(),
            timeouts: TimeoutsConfig::default(),
            limits: LimitsConfig::default(),
            tls: TlsConfig::default(),
            streaming: StreamingConfig::default(),
            policies: BTreeMap::new(),
            collectors: Vec::new(),
            admin: None,
            state: crate::govern::StateConfig::default(),
            storage: StorageConfig::default(),
            client_ip: ClientIpConfig::default(),
            traces: TracesConfig::default(),
            alerts: crate::alerts::AlertsConfig::default(),
            events: crate::events::EventsConfig::default(),
        }
    }
}

/// One named route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The route's name, used in logs, metrics and records.
    pub name: String,
    /// Requests whose path starts with this prefix take this route; the rest of the path is
    /// appended to the upstream URL. The longest matching prefix wins.
    pub path_prefix: String,
    /// The upstream base URL (`http://` or `https://`).
    pub upstream: String,
    /// How bodies are read.
    #[serde(default)]
    pub protocol: RouteProtocol,
    /// `enforce` checks before forwarding; `monitor` forwards at once and inspects a copy.
    #[serde(default)]
    pub mode: Mode,
    /// The policy to apply.
    #[serde(default = "default_policy_name")]
    pub policy: String,
    /// What happens when inspection fails on this route. Absent: the policy's failure mode.
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
}

fn default_policy_name() -> String {
    "default".to_owned()
}

/// The generic proxy, `/proxy/{scheme}/{host}/{path}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenericProxyConfig {
    /// Serve `/proxy/…` at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Upstream hosts the generic proxy may reach (`host` or `host:port`; `*.example.com`
    /// matches sub-domains). Empty: any host.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// How bodies are read.
    #[serde(default)]
    pub protocol: RouteProtocol,
    /// `enforce` or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// The policy to apply.
    #[serde(default = "default_policy_name")]
    pub policy: String,
    /// What happens when inspection fails. Absent: the policy's failure mode.
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
}

impl Default for GenericProxyConfig {
    fn default() -> Self {
        GenericProxyConfig {
            enabled: true,
            allowed_hosts: Vec::new(),
            protocol: RouteProtocol::default(),
            mode: Mode::default(),
            policy: default_policy_name(),
            failure_mode: None,
        }
    }
}

/// How a route's bodies are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouteProtocol {
    /// From the path and the body's shape (the default).
    #[default]
    Auto,
    /// MCP JSON-RPC over streamable HTTP or SSE.
    Mcp,
    /// OpenAI Chat Completions / Responses (also Azure OpenAI, Kong `llm/v1/chat`).
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini.
    Gemini,
    /// Cohere v2 chat.
    Cohere,
    /// Bedrock Converse.
    Bedrock,
    /// Any HTTP API: JSON bodies by string values, other text whole.
    Http,
}

/// Whether a route may change or delay traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Check the request before forwarding and the response before returning it (the default).
    #[default]
    Enforce,
    /// Forward at once, byte for byte, and inspect a copy: never adds latency or changes bytes.
    Monitor,
}

/// Timeouts towards upstreams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Connecting (TCP and TLS).
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    /// From sending the request to the response headers.
    #[serde(default = "default_header_ms")]
    pub header_ms: u64,
    /// Longest silence inside a streamed response body; then the stream is closed.
    #[serde(default = "default_idle_ms")]
    pub idle_stream_ms: u64,
    /// The whole exchange up to the end of a buffered response, or up to the start of a streamed
    /// one (streams are bounded by `idle_stream_ms` instead, so long-lived MCP streams live on).
    #[serde(default = "default_total_ms")]
    pub total_ms: u64,
}

fn default_connect_ms() -> u64 {
    5_000
}
fn default_header_ms() -> u64 {
    60_000
}
fn default_idle_ms() -> u64 {
    300_000
}
fn default_total_ms() -> u64 {
    600_000
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect_ms: default_connect_ms(),
            header_ms: default_header_ms(),
            idle_stream_ms: default_idle_ms(),
            total_ms: default_total_ms(),
        }
    }
}

/// Body size limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted; larger ones get 413.
    #[serde(default = "default_body_bytes")]
    pub max_request_body_bytes: usize,
    /// Largest non-streamed response body inspected; larger ones follow the failure mode.
    #[serde(default = "default_body_bytes")]
    pub max_response_body_bytes: usize,
}

fn default_body_bytes() -> usize {
    8 << 20
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_request_body_bytes: default_body_bytes(),
            max_response_body_bytes: default_body_bytes(),
        }
    }
}

/// TLS towards upstreams. The system's root certificates are always trusted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file of extra CA certificates to trust (a private CA).
    #[serde(default)]
    pub extra_ca_file: Option<String>,
}

/// How streamed responses (SSE, NDJSON) are inspected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamingConfig {
    /// Text held back from the client so that a value starting in it can still be redacted
    /// (the delay a stream pays, in bytes of text).
    #[serde(default = "default_hold")]
    pub hold_bytes: usize,
    /// Text already sent that is scanned again with new text, so values split across chunks are
    /// seen whole.
    #[serde(default = "default_overlap")]
    pub overlap_bytes: usize,
    /// Send held text anyway after the upstream has been silent this long.
    #[serde(default = "default_flush_ms")]
    pub idle_flush_ms: u64,
}

fn default_hold() -> usize {
    128
}
fn default_overlap() -> usize {
    512
}
fn default_flush_ms() -> u64 {
    250
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            hold_bytes: default_hold(),
            overlap_bytes: default_overlap(),
            idle_flush_ms: default_flush_ms(),
        }
    }
}

/// What to do with each direction of traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// What happens when a step of inspection fails (a detector error, a timeout, an unreadable
    /// body): `fail_closed` (the default) blocks, `fail_open` lets the traffic through. Either way
    /// the failure is logged and recorded.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Rules for what the client sends (prompts, tool arguments, request bodies).
    #[serde(default)]
    pub input: Vec<RuleConfig>,
    /// Rules for what comes back (model output, tool results, tool descriptions, responses).
    #[serde(default)]
    pub output: Vec<RuleConfig>,
    /// Keyword lists and regexes, found by the `custom` detector; a rule with
    /// `detector: custom` acts on them (`kinds` names the custom rules it covers).
    #[serde(default)]
    pub custom: Vec<CustomRuleConfig>,
    /// Score at or above which a verdict is `block` whatever the rules say (0–100). Absent: only
    /// rules decide.
    #[serde(default)]
    pub block_risk_score: Option<u8>,
    /// Settings of the redaction operators.
    #[serde(default)]
    pub redaction: RedactionConfig,
    /// Limits of the shared normalisation pass.
    #[serde(default)]
    pub normalization: NormalizationConfig,
    /// MCP tools: pinning and rug-pull handling, poisoning detection, flow labels.
    #[serde(default)]
    pub tools: crate::govern::ToolsConfig,
    /// Rate limits, each counted per distinct key.
    #[serde(default)]
    pub rate_limits: Vec<crate::govern::RateLimitConfig>,
    /// Agent identity, action types, risk, the decision cache and approvals.
    #[serde(default)]
    pub governance: crate::govern::GovernanceConfig,
    /// Session flow rules (toxic flows) over tool labels.
    #[serde(default)]
    pub flows: Vec<crate::govern::FlowRuleConfig>,
}

/// What happens when inspection itself fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Block the traffic (the default): nothing passes uninspected.
    #[default]
    FailClosed,
    /// Let the traffic through uninspected, and record that it was.
    FailOpen,
}

/// What a rule does with the findings it matches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Record the finding; let the traffic through unchanged.
    Allow,
    /// Rewrite the matched text with the rule's redaction operator.
    Redact,
    /// Refuse the traffic.
    Block,
}

impl Action {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

/// One rule: which findings it covers and what to do with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The detector whose findings this rule covers: `pii`, `secrets`, `prompt_injection`,
    /// `web_attack`, `exfiltration`, `invisible_text`, `url` or `custom`.
    pub detector: DetectorId,
    /// Only these kinds of the detector (for `pii`: `email`, `phone`, `credit_card`, `us_ssn`,
    /// `iban`, `ip_address`, …; for `custom`: rule names). Absent: every kind.
    #[serde(default, alias = "entities")]
    pub kinds: Option<Vec<String>>,
    /// Ignore findings below this severity.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Ignore findings below this confidence (0–1).
    #[serde(default)]
    pub min_confidence: f32,
    /// What to do with matching findings.
    pub action: Action,
    /// How to rewrite matches when `action` is `redact`: `mask`, `replace`, `hash`, `remove` or
    /// `defang`. Default: `mask`.
    #[serde(default)]
    pub redaction: Option<RedactionOperator>,
}

fn default_min_severity() -> Severity {
    Severity::Low
}

/// A redaction operator, as named in rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RedactionOperator {
    /// `*******7890`: letters and digits starred, the last `mask_keep_last` kept.
    Mask,
    /// `[EMAIL_1]`: a typed placeholder, stable for the same value within one message.
    Replace,
    /// `[EMAIL_5c1f0e5a4b]`: a keyed hash, stable for the same value across messages.
    Hash,
    /// The value is deleted.
    Remove,
    /// `hxxps://evil[.]com`: links made inert.
    Defang,
}

/// Settings of the redaction operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactionConfig {
    /// How many trailing letters and digits `mask` keeps (never more than half of a value).
    #[serde(default = "default_keep_last")]
    pub mask_keep_last: usize,
    /// Name of the environment variable holding the key for `hash`. When it is unset, a random key
    /// is drawn at start, so hash tokens are stable only within one process.
    #[serde(default = "default_hash_key_env")]
    pub hash_key_env: String,
}

fn default_keep_last() -> usize {
    4
}

fn default_hash_key_env() -> String {
    "PALISADE_HASH_KEY".to_owned()
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            mask_keep_last: default_keep_last(),
            hash_key_env: default_hash_key_env(),
        }
    }
}

/// Limits of the shared normalisation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NormalizationConfig {
    /// Decode base64, hex, percent-encoding and HTML entities before detecting.
    #[serde(default = "default_true")]
    pub decode: bool,
    /// Levels of nested encoding to peel.
    #[serde(default = "default_depth")]
    pub max_decode_depth: u8,
    /// Total decoded bytes kept per text.
    #[serde(default = "default_decoded_bytes")]
    pub max_decoded_bytes: usize,
}

fn default_true() -> bool {
    true
}

fn default_depth() -> u8 {
    2
}

fn default_decoded_bytes() -> usize {
    256 * 1024
}

impl Default for NormalizationConfig {
    fn default() -> Self {
        NormalizationConfig {
            decode: true,
            max_decode_depth: default_depth(),
            max_decoded_bytes: default_decoded_bytes(),
        }
    }
}

/// A keyword list or regex for the `custom` detector. Exactly one of `keywords` and `regex`.
/// Both are checked against the size limits while the file is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, try_from = "RawCustomRule")]
pub struct CustomRuleConfig {
    /// The rule's name; findings carry it as their kind.
    pub name: String,
    /// Severity of a match.
    pub severity: Severity,
    /// Words or phrases, matched case- and confusable-insensitively.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<String>>,
    /// Only match keywords at word boundaries.
    pub whole_words: bool,
    /// A regular expression (Rust `regex` syntax: no look-around or back-references, so matching
    /// stays linear in the input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A keyword list or regex for the `custom` detector. Exactly one of `keywords` and `regex`.
/// Both are checked against the size limits (regex: 2048 bytes of source, 1 MiB compiled,
/// nesting 32; keywords: 10 000 a rule, 256 bytes each) while the file is read.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawCustomRule {
    /// The rule's name; findings carry it as their kind.
    name: String,
    /// Severity of a match.
    #[serde(default = "default_custom_severity")]
    severity: Severity,
    /// Words or phrases, matched case- and confusable-insensitively.
    #[serde(default)]
    keywords: Option<Vec<String>>,
    /// Only match keywords at word boundaries.
    #[serde(default = "default_true")]
    whole_words: bool,
    /// A regular expression (Rust `regex` syntax: no look-around or back-references, so matching
    /// stays linear in the input).
    #[serde(default)]
    regex: Option<String>,
}

fn default_custom_severity() -> Severity {
    Severity::High
}

impl CustomRuleConfig {
    /// The detector-level rule this config describes.
    pub fn to_rule(&self) -> custom::CustomRule {
        let pattern = match (&self.regex, &self.keywords) {
            (Some(pattern), _) => custom::CustomPattern::Regex {
                pattern: pattern.clone(),
            },
            (None, words) => custom::CustomPattern::Keywords {
                words: words.clone().unwrap_or_default(),
                whole_words: self.whole_words,
            },
        };
        custom::CustomRule {
            name: self.name.clone(),
            severity: self.severity,
            pattern,
        }
    }
}

impl TryFrom<RawCustomRule> for CustomRuleConfig {
    type Error = String;

    fn try_from(raw: RawCustomRule) -> Result<Self, String> {
        if raw.name.trim().is_empty() {
            return Err("a custom rule needs a non-empty `name`".into());
        }
        let rule = CustomRuleConfig {
            name: raw.name,
            severity: raw.severity,
            keywords: raw.keywords,
            whole_words: raw.whole_words,
            regex: raw.regex,
        };
        match (&rule.keywords, &rule.regex) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "custom rule `{}` has both `keywords` and `regex`; give one",
                    rule.name
                ))
            }
            (None, None) => {
                return Err(format!(
                    "custom rule `{}` needs `keywords` or `regex`",
                    rule.name
                ))
            }
            _ => {}
        }
        // Compile once here so that a bad pattern is reported with its position in the file.
        custom::CustomDetector::new(&[rule.to_rule()], &CustomLimits::default())
            .map_err(|e| e.to_string())?;
        Ok(rule)
    }
}

#[cfg(test)]
mod client_ip_tests {
    use super::ClientIpConfig;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_forwarding_header_is_believed_only_from_trusted_proxies() {
        let c = ClientIpConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "192.0.2.1".into()],
            ..ClientIpConfig::default()
        };
        // Not behind a trusted proxy: the peer, whatever the header says.
        assert_eq!(
            c.client(ip("203.0.113.5"), Some("1.2.3.4")),
            ip("203.0.113.5")
        );
        // Behind one: the nearest untrusted hop, right to left.
        assert_eq!(
            c.client(ip("10.1.1.1"), Some("203.0.113.7")),
            ip("203.0.113.7")
        );
        assert_eq!(
            c.client(ip("10.1.1.1"), Some("6.6.6.6, 203.0.113.7, 10.2.2.2")),
            ip("203.0.113.7"),
            "an address the client wrote itself (6.6.6.6) is not believed"
        );
        assert_eq!(
            c.client(ip("192.0.2.1"), Some("[2001:db8::9]:443")),
            ip("2001:db8::9")
        );
        assert_eq!(
            c.client(ip("10.1.1.1"), Some("198.51.100.4:5123")),
            ip("198.51.100.4")
        );
        // No header, or only trusted hops: the farthest trusted hop.
        assert_eq!(c.client(ip("10.1.1.1"), None), ip("10.1.1.1"));
        assert_eq!(c.client(ip("10.1.1.1"), Some("10.3.3.3")), ip("10.3.3.3"));
        // Garbage stops the walk at the last hop believed.
        assert_eq!(
            c.client(ip("10.1.1.1"), Some("unknown, 10.3.3.3")),
            ip("10.3.3.3")
        );
        // Nothing trusted: always the peer.
        let none = ClientIpConfig::default();
        assert_eq!(none.client(ip("10.1.1.1"), Some("1.2.3.4")), ip("10.1.1.1"));
    }
}
