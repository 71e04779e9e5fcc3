//! The governance part of the configuration: MCP tool pinning and poisoning, rate limits, agent
//! identity, action types, risk, approvals and session flow rules, plus the admin listener and the
//! state store.
//!
//! Kept apart from [`crate::config`] so that the detection model and the governance model can
//! grow independently; the structs here hang off [`crate::config::Config`] and
//! [`crate::config::PolicyConfig`] by one field each. Regexes are compiled while the file is read,
//! with size limits, so a bad one is reported with its line.

use std::collections::BTreeMap;

use palisade_detect::Severity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Limits on user-supplied governance regexes (source bytes, compiled bytes).
pub const REGEX_SOURCE_LIMIT: usize = 2048;
/// Compiled size limit of a governance regex.
pub const REGEX_COMPILED_LIMIT: usize = 1 << 20;

/// Compiles a user regex under the governance size limits.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > REGEX_SOURCE_LIMIT {
        return Err(format!(
            "regex is {} bytes; the limit is {REGEX_SOURCE_LIMIT}",
            pattern.len()
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_COMPILED_LIMIT)
        .nest_limit(32)
        .build()
        .map_err(|e| e.to_string())
}

/// A regex checked while the file is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(pub String);

impl JsonSchema for Pattern {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Pattern".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

impl TryFrom<String> for Pattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        compile_regex(&s).map(|_| Pattern(s))
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.0
    }
}

/// The admin API listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address the admin API listens on. Keep it on a private interface.
    pub listen: String,
    /// API keys, each stored as the SHA-256 of the key (lower-case hex); a client sends the key
    /// itself as `Authorization: Bearer <key>`. `palisade config hash-key` prints the hash of a key.
    #[serde(default)]
    pub keys: Vec<AdminKeyConfig>,
}

/// One admin API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminKeyConfig {
    /// Who holds the key; audit records name them by it.
    pub name: String,
    /// SHA-256 of the key, 64 lower-case hex digits.
    pub sha256: String,
    /// What the key may do.
    pub role: AdminRole,
}

/// What an admin key may do. Each role includes the ones below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Read tools, pins, approvals and the audit log.
    Viewer,
    /// Also grant or deny approvals and approve changed tools.
    Approver,
    /// Also quarantine and release tools.
    Admin,
}

impl AdminRole {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Viewer => "viewer",
            AdminRole::Approver => "approver",
            AdminRole::Admin => "admin",
        }
    }
}

/// Where governance state lives (rate counters, decision cache, tool pins, approvals, sessions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// In this process's memory: one replica only. With `redis` set, this is the local state
    /// that `fail_open` routes fall back to while Redis cannot be reached.
    #[serde(default)]
    pub memory: MemoryStateConfig,
    /// Shared by every replica in Redis: rate counters, the decision cache, tool pins, approvals
    /// (with pub/sub, so a call held on one replica wakes when another approves) and sessions.
    /// When Redis cannot be reached, `fail_closed` routes refuse governed requests and
    /// `fail_open` routes use this replica's in-memory state until Redis answers again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisStateConfig>,
}

/// The Redis state store. One Redis server (or a primary behind a proxy such as Sentinel's
/// virtual address); Redis Cluster and TLS are not supported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisStateConfig {
    /// The server, as `redis://[user:password@]host:port[/db]` or `redis+unix:///path`. Give
    /// either this or `url_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The environment variable holding the URL, for URLs that carry a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// Prefix of every key and channel Palisade uses, so that several deployments can share one
    /// Redis database.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Multiplexed connections opened to Redis; each pipelines every concurrent command, and
    /// commands are spread over them in turn.
    #[serde(default = "default_redis_connections")]
    pub connections: usize,
    /// Time allowed to open a connection.
    #[serde(default = "default_redis_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed for one command (or script) to answer; past it, the operation fails and the
    /// route's failure mode decides.
    #[serde(default = "default_redis_command_timeout_ms")]
    pub command_timeout_ms: u64,
    /// While Redis is unreachable, commands fail at once without waiting for their timeout, and
    /// one probe goes through every this many milliseconds to notice that it is back.
    #[serde(default = "default_redis_retry_interval_ms")]
    pub retry_interval_ms: u64,
    /// Decided or expired approvals are deleted this long after they were created.
    #[serde(default = "default_approval_retention_seconds")]
    pub approval_retention_seconds: u64,
    /// Whether `/health/ready` reports not ready while Redis is unreachable. Turn it off when
    /// every route is `fail_open`, so that a Redis outage does not take every replica out of the
    /// load balancer.
    #[serde(default = "default_true")]
    pub required_for_readiness: bool,
}

fn default_key_prefix() -> String {
    "palisade:".to_owned()
}
fn default_redis_connections() -> usize {
    2
}
fn default_redis_connect_timeout_ms() -> u64 {
    1_000
}
fn default_redis_command_timeout_ms() -> u64 {
    250
}
fn default_redis_retry_interval_ms() -> u64 {
    1_000
}
fn default_approval_retention_seconds() -> u64 {
    7 * 24 * 3_600
}

impl RedisStateConfig {
    /// The URL, read from `url_env` when that is given.
    pub fn resolve_url(&self) -> Result<String, String> {
        match (&self.url, &self.url_env) {
            (Some(u), None) => Ok(u.clone()),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                format!("environment variable `{var}` (state.redis.url_env) is not set")
            }),
            _ => Err("give exactly one of `url` and `url_env`".into()),
        }
    }
}

/// The in-memory state store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryStateConfig {
    /// Most keys each table (rate counters, cache, sessions, …) holds. When a table is full and
    /// nothing in it has expired, writing a new key fails, and the route's failure mode decides
    /// (`fail_closed` refuses the request, `fail_open` lets it through ungoverned).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_max_keys() -> usize {
    1_000_000
}

impl Default for MemoryStateConfig {
    fn default() -> Self {
        MemoryStateConfig {
            max_keys: default_max_keys(),
        }
    }
}

/// MCP tool governance: pinning, rug-pull handling, poisoning, labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolsConfig {
    /// Pin each tool's full definition (a canonical hash of name, title, description, input and
    /// output schema, annotations), per upstream and route.
    #[serde(default = "default_true")]
    pub pin: bool,
    /// What a tool seen for the first time gets: `pin` (trusted on first use) or `hold` (hidden
    /// and refused until approved through the admin API).
    #[serde(default)]
    pub on_first_sight: FirstSight,
    /// What a tool whose definition changed gets (a `rug_pull` finding either way).
    #[serde(default)]
    pub on_change: OnChange,
    /// Tool-poisoning detection over `tools/list`, `prompts/list` and `resources/list` results.
    #[serde(default)]
    pub poisoning: PoisoningConfig,
    /// Labels per tool name, for session flow rules: `private_data`, `untrusted_content`,
    /// `egress`.
    #[serde(default)]
    pub labels: BTreeMap<String, Vec<ToolLabel>>,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            pin: true,
            on_first_sight: FirstSight::default(),
            on_change: OnChange::default(),
            poisoning: PoisoningConfig::default(),
            labels: BTreeMap::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// What a tool seen for the first time gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FirstSight {
    /// Pin it as it is (trust on first use; the default).
    #[default]
    Pin,
    /// Hold it: hidden from `tools/list` and refused at `tools/call` until approved.
    Hold,
}

/// What a changed tool gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnChange {
    /// Hidden from `tools/list` and refused at `tools/call` until approved (the default).
    #[default]
    Quarantine,
    /// Record the `rug_pull` finding; keep serving the tool, and keep the old pin.
    Alert,
    /// Record the finding and pin the new definition.
    Allow,
}

/// Tool-poisoning detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoisoningConfig {
    /// Scan tool, prompt and resource definitions at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What a poisoned definition gets.
    #[serde(default)]
    pub action: PoisoningAction,
    /// Ignore findings below this severity.
    #[serde(default = "default_poison_severity")]
    pub min_severity: Severity,
}

fn default_poison_severity() -> Severity {
    Severity::High
}

impl Default for PoisoningConfig {
    fn default() -> Self {
        PoisoningConfig {
            enabled: true,
            action: PoisoningAction::default(),
            min_severity: default_poison_severity(),
        }
    }
}

/// What a poisoned tool, prompt or resource definition gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PoisoningAction {
    /// Drop the definition from the list the client sees (the default).
    #[default]
    Drop,
    /// Refuse the whole list response.
    Block,
    /// Record the finding only.
    Alert,
}

/// A label a tool carries, for session flow rules.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ToolLabel {
    /// Reads private data.
    PrivateData,
    /// Returns content from outside (web pages, e-mail, issues) that may carry instructions.
    UntrustedContent,
    /// Can send data out.
    Egress,
}

impl ToolLabel {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolLabel::PrivateData => "private_data",
            ToolLabel::UntrustedContent => "untrusted_content",
            ToolLabel::Egress => "egress",
        }
    }
}

/// One rate limit: at most `max_requests` per `period_seconds` for each distinct key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The limit's name, in findings and logs. Default: the key parts joined by `+`.
    #[serde(default)]
    pub name: Option<String>,
    /// What a counter is kept per. A request to which a part does not apply (no MCP tool on a
    /// plain HTTP call, no user) is not counted by this limit.
    pub key: Vec<RateKey>,
    /// Requests allowed per period.
    pub max_requests: u32,
    /// The period.
    pub period_seconds: u64,
    /// Higher or lower limits for particular key values, such as one agent or one API key:
    /// `{ match: { agent: batch-bot }, max_requests: 1000 }`.
    #[serde(default)]
    pub overrides: Vec<RateOverrideConfig>,
}

/// A per-key limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateOverrideConfig {
    /// Key part values that must all be equal for the override to apply.
    #[serde(rename = "match")]
    pub matches: BTreeMap<RateKey, String>,
    /// Requests allowed per period for matching keys.
    pub max_requests: u32,
}

/// A part of a rate-limit key.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The client's IP address.
    ClientIp,
    /// The agent id.
    Agent,
    /// The user (the `governance.user_header` header, or the JWT `sub` claim).
    User,
    /// The tenant (the `governance.tenant_header` header).
    Tenant,
    /// The route's name.
    Route,
    /// The MCP tool of a `tools/call`.
    Tool,
    /// The API key the client sent (`Authorization` or `x-api-key`), as a hash.
    ApiKey,
}

impl RateKey {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RateKey::ClientIp => "client_ip",
            RateKey::Agent => "agent",
            RateKey::User => "user",
            RateKey::Tenant => "tenant",
            RateKey::Route => "route",
            RateKey::Tool => "tool",
            RateKey::ApiKey => "api_key",
        }
    }
}

/// Agent identity, action types, risk, decisions and approvals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// Govern requests at all (identity, actions, risk, holds). Tool pinning, poisoning, rate
    /// limits and flow rules have their own switches.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The header carrying the agent id.
    #[serde(default = "default_agent_header")]
    pub agent_id_header: String,
    /// Refuse requests without an agent id with 401 (unless `default_agent_id` is set).
    #[serde(default)]
    pub require_agent_id: bool,
    /// The agent id given to requests that carry none.
    #[serde(default)]
    pub default_agent_id: Option<String>,
    /// The header carrying the user id (else the JWT `sub` claim, when a bearer JWT is present).
    #[serde(default = "default_user_header")]
    pub user_header: String,
    /// The header carrying the tenant id.
    #[serde(default = "default_tenant_header")]
    pub tenant_header: String,
    /// Paths (regexes over the request path below the route's prefix) that are not governed at
    /// all.
    #[serde(default)]
    pub excluded_paths: Vec<Pattern>,
    /// Custom action types, tried in order before the built-in mapping: a regex over
    /// `METHOD /path` (the path below the route's prefix; for MCP, over `tools/call:<tool>`), the
    /// action it names, and optionally its risk score.
    #[serde(default)]
    pub actions: Vec<ActionMapConfig>,
    /// Base risk scores (0–100) of the built-in action verbs.
    #[serde(default)]
    pub risk: RiskConfig,
    /// Hold for approval at or above this risk score.
    #[serde(default)]
    pub hold_risk_score: Option<u8>,
    /// Deny at or above this risk score.
    #[serde(default)]
    pub deny_risk_score: Option<u8>,
    /// Actions (regexes over the action type, e.g. `^tools/call:delete_`) held for approval.
    #[serde(default)]
    pub hold_actions: Vec<Pattern>,
    /// Actions denied outright.
    #[serde(default)]
    pub deny_actions: Vec<Pattern>,
    /// How held calls wait for a decision.
    #[serde(default)]
    pub approval: ApprovalConfig,
    /// The decision cache.
    #[serde(default)]
    pub decision_cache: DecisionCacheConfig,
    /// HTTP status codes of governance answers.
    #[serde(default)]
    pub status: StatusConfig,
    /// Authorization rules: CEL expressions over the request (agent, user, tenant, headers, JWT
    /// claims, MCP method, tool and arguments, HTTP method and path, client IP), evaluated in
    /// order on every request; the first rule whose expression is true decides. Never cached.
    #[serde(default)]
    pub authorization: AuthorizationConfig,
}

fn default_agent_header() -> String {
    "x-agent-id".to_owned()
}
fn default_user_header() -> String {
    "x-user-id".to_owned()
}
fn default_tenant_header() -> String {
    "x-tenant-id".to_owned()
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        GovernanceConfig {
            enabled: true,
            agent_id_header: default_agent_header(),
            require_agent_id: false,
            default_agent_id: None,
            user_header: default_user_header(),
            tenant_header: default_tenant_header(),
            excluded_paths: Vec::new(),
            actions: Vec::new(),
            risk: RiskConfig::default(),
            hold_risk_score: None,
            deny_risk_score: None,
            hold_actions: Vec::new(),
            deny_actions: Vec::new(),
            approval: ApprovalConfig::default(),
            decision_cache: DecisionCacheConfig::default(),
            status: StatusConfig::default(),
            authorization: AuthorizationConfig::default(),
        }
    }
}

/// Authorization rules, evaluated in order; the first whose `when` is true decides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// What a request gets when no rule matches: `allow` (the default) or `deny`.
    #[serde(default)]
    pub default_effect: DefaultEffect,
    /// Decode a bearer JWT's claims into `jwt` without verifying its signature. Required (set to
    /// `true`) before a rule may read `jwt`, so that nobody relies on claims by mistake:
    /// Palisade does not verify tokens, so a rule on claims is only as trustworthy as whatever
    /// in front of it or behind it checks the signature.
    #[serde(default)]
    pub unverified_jwt_claims: bool,
    /// The rules, in order.
    #[serde(default)]
    pub rules: Vec<AuthzRuleConfig>,
}

/// One authorization rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthzRuleConfig {
    /// The rule's name, in reasons and logs. Default: `rules[<index>]`.
    #[serde(default)]
    pub name: Option<String>,
    /// A CEL expression that must evaluate to a boolean. Variables: `request` (`method`, `path`
    /// below the route prefix, `route`, `headers` with lower-case names), `source` (`ip`),
    /// `agent`, `user`, `tenant` (strings, empty when unknown), `mcp` (`method`, `tool`,
    /// `arguments`; empty strings and map outside MCP), `jwt` (the claims, an empty map without
    /// a bearer JWT). Function: `inCidr(ip, "10.0.0.0/8")`. Checked when the file is read.
    pub when: String,
    /// What a matching request gets: `allow` (stop evaluating rules; the rest of governance
    /// still applies), `deny` (the policy's deny status; MCP: a JSON-RPC error), or `hold` (an
    /// approval, as `hold_actions` would).
    pub effect: RuleEffect,
    /// Said to the client and logged when the rule denies or holds.
    #[serde(default)]
    pub message: Option<String>,
}

/// What a matching authorization rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleEffect {
    /// Let the request go on; later rules are not evaluated.
    Allow,
    /// Refuse it.
    Deny,
    /// Hold it for approval.
    Hold,
}

/// What a request gets when no authorization rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefaultEffect {
    /// Let it go on (the default).
    #[default]
    Allow,
    /// Refuse it.
    Deny,
}

/// A custom action type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionMapConfig {
    /// A regex over `METHOD /path` (HTTP) or `tools/call:<tool>` (MCP).
    pub pattern: Pattern,
    /// The action type it names.
    pub action: String,
    /// Its risk score (0–100). Absent: the built-in verb's.
    #[serde(default)]
    pub risk: Option<u8>,
}

/// Base risk scores of the built-in verbs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskConfig {
    /// `GET`, `HEAD`, `OPTIONS`.
    #[serde(default = "risk_read")]
    pub read: u8,
    /// `POST`.
    #[serde(default = "risk_create")]
    pub create: u8,
    /// `PUT`, `PATCH`.
    #[serde(default = "risk_update")]
    pub update: u8,
    /// `DELETE`.
    #[serde(default = "risk_delete")]
    pub delete: u8,
    /// An MCP `tools/call`.
    #[serde(default = "risk_tool")]
    pub tool_call: u8,
    /// Other MCP methods (`tools/list`, `initialize`, …).
    #[serde(default = "risk_read")]
    pub mcp_other: u8,
}

fn risk_read() -> u8 {
    10
}
fn risk_create() -> u8 {
    30
}
fn risk_update() -> u8 {
    40
}
fn risk_delete() -> u8 {
    60
}
fn risk_tool() -> u8 {
    30
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            read: risk_read(),
            create: risk_create(),
            update: risk_update(),
            delete: risk_delete(),
            tool_call: risk_tool(),
            mcp_other: risk_read(),
        }
    }
}

/// How a held call waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// `wait`: keep the request open up to `wait_ms` for a decision; `async`: answer at once with
    /// the pending status (202) and an approval id, for clients that retry.
    #[serde(default)]
    pub mode: ApprovalMode,
    /// How long a waiting request waits before it is denied.
    #[serde(default = "default_wait_ms")]
    pub wait_ms: u64,
    /// How long a pending approval can be decided before it expires.
    #[serde(default = "default_pending_seconds")]
    pub pending_ttl_seconds: u64,
}

fn default_wait_ms() -> u64 {
    30_000
}
fn default_pending_seconds() -> u64 {
    3_600
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        ApprovalConfig {
            mode: ApprovalMode::default(),
            wait_ms: default_wait_ms(),
            pending_ttl_seconds: default_pending_seconds(),
        }
    }
}

/// How a held call waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Keep the request open up to `wait_ms` (the default).
    #[default]
    Wait,
    /// Answer at once with the pending status and an approval id.
    Async,
}

/// The decision cache: identity, action and risk decisions reused for the same agent, action and
/// normalised path (numeric ids and UUIDs folded to `{id}`). Rate limits, approvals and flow
/// rules are never cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionCacheConfig {
    /// Cache decisions at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a decision is reused.
    #[serde(default = "default_cache_ttl")]
    pub ttl_seconds: u64,
}

fn default_cache_ttl() -> u64 {
    60
}

impl Default for DecisionCacheConfig {
    fn default() -> Self {
        DecisionCacheConfig {
            enabled: true,
            ttl_seconds: default_cache_ttl(),
        }
    }
}

/// HTTP status codes of governance answers (MCP calls get a JSON-RPC error instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// A denied request.
    #[serde(default = "status_deny")]
    pub deny: u16,
    /// A request held for approval, answered at once (`approval.mode: async`).
    #[serde(default = "status_pending")]
    pub pending: u16,
    /// Governance could not decide (the state store failed) under `fail_closed`.
    #[serde(default = "status_error")]
    pub error: u16,
}

fn status_deny() -> u16 {
    403
}
fn status_pending() -> u16 {
    202
}
fn status_error() -> u16 {
    503
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            deny: status_deny(),
            pending: status_pending(),
            error: status_error(),
        }
    }
}

/// A session flow rule: once a session has called a tool with label `after`, a call to a tool with
/// label `then` gets `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowRuleConfig {
    /// The label seen earlier in the session.
    pub after: ToolLabel,
    /// The label of the call being made.
    pub then: ToolLabel,
    /// `deny` or `hold`.
    pub action: FlowAction,
}

/// What a flow rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlowAction {
    /// Refuse the call.
    Deny,
    /// Hold the call for approval.
    Hold,
}

/// Checks of the governance settings that span fields. Errors are `(field path, offending value,
/// message)`.
pub(crate) fn check(config: &crate::config::Config) -> Result<(), (String, String, String)> {
    if let Some(admin) = &config.admin {
        if admin.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                "admin.listen".into(),
                admin.listen.clone(),
                format!(
                    "`{}` is not an address such as 127.0.0.1:9090",
                    admin.listen
                ),
            ));
        }
        if admin.listen == config.listen {
            return Err((
                "admin.listen".into(),
                admin.listen.clone(),
                "the admin API needs its own address, not the proxy's".into(),
            ));
        }
        for (i, k) in admin.keys.iter().enumerate() {
            let hex_ok = k.sha256.len() == 64
                && k.sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                return Err((
                    format!("admin.keys[{i}].sha256"),
                    k.sha256.clone(),
                    "must be the SHA-256 of the key as 64 lower-case hex digits, not the key"
                        .into(),
                ));
            }
        }
    }
    if config.state.memory.max_keys == 0 {
        return Err((
            "state.memory.max_keys".into(),
            String::new(),
            "must be at least 1".into(),
        ));
    }
    for (name, p) in &config.policies {
        for (i, r) in p.rate_limits.iter().enumerate() {
            let at = format!("policies.{name}.rate_limits[{i}]");
            if r.key.is_empty() {
                return Err((
                    format!("{at}.key"),
                    String::new(),
                    "a rate limit needs at least one key part".into(),
                ));
            }
            if r.max_requests == 0 {
                return Err((
                    format!("{at}.max_requests"),
                    String::new(),
                    "must be at least 1 (to refuse everything, use `deny_actions`)".into(),
                ));
            }
            if r.period_seconds == 0 {
                return Err((
                    format!("{at}.period_seconds"),
                    String::new(),
                    "must be at least 1".into(),
                ));
            }
            for (j, o) in r.overrides.iter().enumerate() {
                for k in o.matches.keys() {
                    if !r.key.contains(k) {
                        return Err((
                            format!("{at}.overrides[{j}].match"),
                            k.as_str().into(),
                            format!("`{}` is not one of this limit's key parts", k.as_str()),
                        ));
                    }
                }
            }
        }
        let g = &p.governance;
        for (field, v) in [
            ("hold_risk_score", g.hold_risk_score),
            ("deny_risk_score", g.deny_risk_score),
        ] {
            if let Some(v) = v {
                if v > 100 {
                    return Err((
                        format!("policies.{name}.governance.{field}"),
                        v.to_string(),
                        "must be between 0 and 100".into(),
                    ));
                }
            }
        }
        for (i, rule) in g.authorization.rules.iter().enumerate() {
            if let Err(e) = crate::authz::Rule::compile(&g.authorization, i, rule) {
                return Err((
                    format!("policies.{name}.governance.authorization.rules[{i}].when"),
                    rule.when
                        .lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .unwrap_or_default()
                        .to_owned(),
                    e,
                ));
            }
        }
        for (i, a) in g.actions.iter().enumerate() {
            if a.risk.is_some_and(|r| r > 100) {
                return Err((
                    format!("policies.{name}.governance.actions[{i}].risk"),
                    String::new(),
                    "must be between 0 and 100".into(),
                ));
            }
        }
        for (field, s) in [
            ("deny", g.status.deny),
            ("pending", g.status.pending),
            ("error", g.status.error),
        ] {
            if !(200..=599).contains(&s) {
                return Err((
                    format!("policies.{name}.governance.status.{field}"),
                    s.to_string(),
                    format!("{s} is not an HTTP status code"),
                ));
            }
        }
        if g.agent_id_header.is_empty()
            || http_token(&g.agent_id_header).is_none()
            || http_token(&g.user_header).is_none()
            || http_token(&g.tenant_header).is_none()
        {
            return Err((
                format!("policies.{name}.governance"),
                String::new(),
                "header names must be non-empty HTTP tokens".into(),
            ));
        }
    }
    Ok(())
}

/// `s` when it is a non-empty HTTP token (a header name).
pub(crate) fn http_token(s: &str) -> Option<&str> {
    (!s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
    .then_some(s)
}
