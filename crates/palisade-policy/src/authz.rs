//! Authorization rules: CEL expressions over a request's attributes, compiled when the
//! configuration is read and evaluated in order on every governed request.
//!
//! CEL (the Common Expression Language, as in Envoy's RBAC and agentgateway) through the `cel`
//! crate: non-Turing-complete, side-effect free, and read by security reviewers without a
//! manual. Its Rust implementation has no type checker, so a rule is checked in two steps when the
//! file is read: it must parse, and a trial evaluation against an empty request must not reach
//! an unknown variable or function, nor give anything but a boolean. What the trial cannot see
//! (a missing key in `mcp.arguments`, a claim of the wrong type) is an evaluation error at run
//! time, which [`RuleSet::evaluate`] reports instead of guessing.
//!
//! The crate's `regex` feature is off: `matches()` would compile a user regex, without size
//! limits, at every evaluation. Use `startsWith`, `endsWith`, `contains`, `in` and `inCidr`.
//!
//! Only the top-level variables some rule reads are built for an evaluation, so a rule set that
//! looks at `mcp.tool` alone never copies headers or arguments.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, ExecutionError, Program, Value};

use crate::govern::{AuthorizationConfig, AuthzRuleConfig, DefaultEffect, RuleEffect};

/// The variables a rule may read.
pub const VARIABLES: [&str; 7] = ["request", "source", "agent", "user", "tenant", "mcp", "jwt"];

/// Functions the rules may call besides CEL's standard ones.
const CIDR_FUNCTION: &str = "inCidr";

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    name: String,
    program: Program,
    effect: RuleEffect,
    message: Option<String>,
    reads: BTreeSet<&'static str>,
}

impl Rule {
    /// Compiles and checks rule `index` of `cfg`. The error says what is wrong, with the
    /// position inside the expression when CEL gives one.
    pub fn compile(
        cfg: &AuthorizationConfig,
        index: usize,
        rule: &AuthzRuleConfig,
    ) -> Result<Rule, String> {
        if rule.when.len() > MAX_EXPRESSION_BYTES {
            return Err(format!(
                "the expression is {} bytes; the limit is {MAX_EXPRESSION_BYTES}",
                rule.when.len()
            ));
        }
        let program = Program::compile(&rule.when).map_err(|e| {
            format!(
                "not a valid CEL expression: {}",
                e.to_string().replace("<input>", "expression")
            )
        })?;
        let mut reads = BTreeSet::new();
        for v in program.references().variables() {
            match VARIABLES.iter().find(|k| **k == v) {
                Some(k) => {
                    reads.insert(*k);
                }
                None => {
                    return Err(format!(
                        "unknown variable `{v}`; rules may read {}",
                        VARIABLES.join(", ")
                    ))
                }
            }
        }
        if reads.contains("jwt") && !cfg.unverified_jwt_claims {
            return Err(
                "the rule reads `jwt`, but Palisade does not verify JWT signatures: set \
                 `unverified_jwt_claims: true` to use claims as they are decoded"
                    .into(),
            );
        }
        let compiled = Rule {
            name: rule
                .name
                .clone()
                .unwrap_or_else(|| format!("rules[{index}]")),
            program,
            effect: rule.effect,
            message: rule.message.clone(),
            reads,
        };
        // A trial against an empty request finds unknown functions and non-boolean results.
        let empty = Attributes::default();
        let ctx = context(&compiled.reads, &empty);
        match compiled.program.execute(&ctx) {
            Ok(Value::Bool(_)) => {}
            Ok(other) => {
                return Err(format!(
                    "the expression must give a boolean, not a {}",
                    other.type_of()
                ))
            }
            Err(ExecutionError::UndeclaredReference(name)) => {
                return Err(format!("unknown function or variable `{name}`"))
            }
            // Other errors (a missing key, a type mismatch) depend on the request.
            Err(_) => {}
        }
        Ok(compiled)
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Longest accepted expression.
pub const MAX_EXPRESSION_BYTES: usize = 4096;

/// A request's attributes, as the rules see them. Absent values are empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attributes<'a> {
    /// The route's name.
    pub route: &'a str,
    /// The HTTP method.
    pub method: &'a str,
    /// The path below the route's prefix.
    pub path: &'a str,
    /// Request headers, names in lower case.
    pub headers: &'a [(String, String)],
    /// The client's IP address.
    pub client_ip: &'a str,
    /// The agent id (empty when none).
    pub agent: &'a str,
    /// The user id.
    pub user: &'a str,
    /// The tenant id.
    pub tenant: &'a str,
    /// The claims of the bearer JWT, decoded, not verified.
    pub jwt: Option<&'a serde_json::Value>,
    /// The MCP method.
    pub mcp_method: &'a str,
    /// The MCP tool of a `tools/call`.
    pub tool: &'a str,
    /// The arguments of a `tools/call`.
    pub arguments: Option<&'a serde_json::Value>,
}

/// What the rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    /// No rule matched and the default is `allow`, or there are no rules.
    NoMatch,
    /// Rule `name` matched with this effect; `message` is the rule's.
    Matched {
        /// The rule's name.
        rule: String,
        /// Its effect.
        effect: RuleEffect,
        /// Its message.
        message: Option<String>,
    },
    /// No rule matched and the default is `deny`.
    DefaultDeny,
    /// Rule `rule` could not be evaluated for this request.
    Error {
        /// The rule's name.
        rule: String,
        /// Why.
        error: String,
    },
}

/// A policy's rules, compiled.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    default_effect: DefaultEffect,
    reads: BTreeSet<&'static str>,
}

impl RuleSet {
    /// Compiles every rule of `cfg`.
    pub fn new(cfg: &AuthorizationConfig) -> Result<Self, String> {
        let rules = cfg
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::compile(cfg, i, r).map_err(|e| format!("rules[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let reads = rules.iter().flat_map(|r| r.reads.iter().copied()).collect();
        Ok(RuleSet {
            rules,
            default_effect: cfg.default_effect,
            reads,
        })
    }

    /// Whether there is anything to evaluate.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.default_effect == DefaultEffect::Allow
    }

    /// Whether some rule reads top-level variable `name` (`request`, `jwt`, `mcp`, …), so the
    /// caller can skip gathering what nobody reads.
    pub fn reads(&self, name: &str) -> bool {
        self.reads.contains(name)
    }

    /// Evaluates the rules in order. The first rule that is true decides; a rule that cannot be
    /// evaluated stops evaluation with [`RuleOutcome::Error`], and the caller's failure mode
    /// decides (a rule skipped silently could be the deny rule that mattered).
    pub fn evaluate(&self, attrs: &Attributes<'_>) -> RuleOutcome {
        if self.rules.is_empty() {
            return match self.default_effect {
                DefaultEffect::Allow => RuleOutcome::NoMatch,
                DefaultEffect::Deny => RuleOutcome::DefaultDeny,
            };
        }
        let ctx = context(&self.reads, attrs);
        for rule in &self.rules {
            match rule.program.execute(&ctx) {
                Ok(Value::Bool(true)) => {
                    return RuleOutcome::Matched {
                        rule: rule.name.clone(),
                        effect: rule.effect,
                        message: rule.message.clone(),
                    }
                }
                Ok(Value::Bool(false)) => {}
                Ok(other) => {
                    return RuleOutcome::Error {
                        rule: rule.name.clone(),
                        error: format!("gave a {}, not a boolean", other.type_of()),
                    }
                }
                Err(e) => {
                    return RuleOutcome::Error {
                        rule: rule.name.clone(),
                        error: e.to_string(),
                    }
                }
            }
        }
        match self.default_effect {
            DefaultEffect::Allow => RuleOutcome::NoMatch,
            DefaultEffect::Deny => RuleOutcome::DefaultDeny,
        }
    }
}

fn s(v: &str) -> Value {
    Value::String(Arc::new(v.to_owned()))
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let m: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_owned())), v))
        .collect();
    Value::Map(Map { map: Arc::new(m) })
}

/// JSON as CEL: numbers that fit an `int` are ints, so `mcp.arguments.count > 5` works.
fn json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(t) => s(t),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(json).collect())),
        serde_json::Value::Object(o) => {
            let m: HashMap<Key, Value> = o
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json(v)))
                .collect();
            Value::Map(Map { map: Arc::new(m) })
        }
    }
}

fn context<'a>(reads: &BTreeSet<&'static str>, a: &Attributes<'_>) -> Context<'a, 'a> {
    let mut ctx = Context::with_env(env());
    for name in reads {
        let value = match *name {
            "request" => {
                let mut headers: HashMap<Key, Value> = HashMap::with_capacity(a.headers.len());
                for (k, v) in a.headers {
                    headers
                        .entry(Key::String(Arc::new(k.clone())))
                        .and_modify(|old| {
                            // Repeated headers read as one, joined as HTTP allows.
                            if let Value::String(o) = old {
                                *old = s(&format!("{o}, {v}"));
                            }
                        })
                        .or_insert_with(|| s(v));
                }
                map(vec![
                    ("method", s(a.method)),
                    ("path", s(a.path)),
                    ("route", s(a.route)),
                    (
                        "headers",
                        Value::Map(Map {
                            map: Arc::new(headers),
                        }),
                    ),
                ])
            }
            "source" => map(vec![("ip", s(a.client_ip))]),
            "agent" => s(a.agent),
            "user" => s(a.user),
            "tenant" => s(a.tenant),
            "mcp" => map(vec![
                ("method", s(a.mcp_method)),
                ("tool", s(a.tool)),
                ("arguments", a.arguments.map_or_else(|| map(vec![]), json)),
            ]),
            "jwt" => a.jwt.map_or_else(|| map(vec![]), json),
            _ => continue,
        };
        ctx.add_variable_from_value(*name, value);
    }
    // Registering a function costs one small allocation; done per evaluation so the shared
    // environment stays the crate's plain standard one.
    let _ = ctx.add_function(CIDR_FUNCTION, in_cidr);
    ctx
}

/// The standard CEL environment, built once.
fn env() -> Arc<cel::Env> {
    static ENV: std::sync::OnceLock<Arc<cel::Env>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib())).clone()
}

/// `inCidr(ip, cidr)`: whether address `ip` lies in `cidr` (`10.0.0.0/8`, `::1/128`, or a bare
/// address). An address that does not parse is outside every range; a range that does not parse
/// is an error.
fn in_cidr(ip: Arc<String>, cidr: Arc<String>) -> Result<bool, ExecutionError> {
    let (net, bits) = parse_cidr(&cidr).ok_or_else(|| {
        ExecutionError::function_error(CIDR_FUNCTION, format!("`{cidr}` is not a CIDR range"))
    })?;
    let Ok(ip) = ip.trim().parse::<IpAddr>() else {
        return Ok(false);
    };
    // An IPv4 client seen on a dual-stack socket arrives as ::ffff:a.b.c.d.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    Ok(match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => prefix_eq(&a.octets(), &n.octets(), bits),
        (IpAddr::V6(a), IpAddr::V6(n)) => prefix_eq(&a.octets(), &n.octets(), bits),
        _ => false,
    })
}

/// Parses `a.b.c.d/n` or `x::/n` (or a bare address, a full-length prefix).
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match s.trim().split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u32>().ok()?)),
        None => (s.trim(), None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((addr, bits))
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u32) -> bool {
    let full = (bits / 8) as usize;
    let rest = bits % 8;
    if a.get(..full) != b.get(..full) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (a.get(full), b.get(full)) {
        (Some(x), Some(y)) => x & mask == y & mask,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
