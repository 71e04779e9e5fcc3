//! Policies, routes and collectors through the admin API: read, validate, apply, roll back.
//!
//! The editable part of the configuration is a *document*: YAML with three top-level keys,
//! `routes`, `policies` and `collectors`. Validation parses it exactly as a configuration file is
//! loaded, so an error carries the field path and the line. Applying merges the document into the
//! running configuration and hands it to a [`Control`] (the gateway's live configuration), which
//! compiles it and switches new requests to it. The last [`HISTORY`] applied documents are kept
//! in memory with who applied them and why, so any of them can be applied again (a roll back is
//! a new version with an old document).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use palisade_engine::govern::Governance;
use palisade_policy::config::{CollectorConfig, Config, PolicyConfig, RouteConfig};
use palisade_policy::ConfigError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Applied versions kept for roll back.
pub const HISTORY: usize = 20;

/// The top-level keys a document may hold.
const DOCUMENT_KEYS: [&str; 3] = ["routes", "policies", "collectors"];

/// The running configuration, as the admin API sees it.
pub trait Control: Send + Sync + std::fmt::Debug {
    /// The current version and configuration.
    fn current(&self) -> (u64, Config);
    /// The governance of the current configuration.
    fn governance(&self) -> Arc<Governance>;
    /// Compiles `config` and makes it current for new requests; the new version, or why not.
    fn apply(&self, config: Config) -> Result<u64, String>;
}

/// The editable part of a configuration.
#[derive(Debug, Serialize, Deserialize)]
struct Document {
    routes: Vec<RouteConfig>,
    policies: BTreeMap<String, PolicyConfig>,
    collectors: Vec<CollectorConfig>,
}

/// The document of `config`, as YAML.
pub fn document(config: &Config) -> String {
    let d = Document {
        routes: config.routes.clone(),
        policies: config.policies.clone(),
        collectors: config.collectors.clone(),
    };
    serde_yaml_ng::to_string(&d).unwrap_or_default()
}

/// One refusal, for JSON.
pub fn error_json(e: &ConfigError) -> Value {
    json!({"field": e.field, "line": e.line, "column": e.column, "message": e.message})
}

/// Parses `yaml` as a document and merges it into `base`. Errors say where, as loading does.
pub fn merge(base: &Config, yaml: &str) -> Result<Config, Vec<Value>> {
    let here = |line: Option<usize>, field: &str, message: String| {
        vec![json!({"field": field, "line": line, "column": null, "message": message})]
    };
    // Keys outside the document are refused by name, before the full parse.
    if let Ok(serde_yaml_ng::Value::Mapping(m)) =
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(yaml)
    {
        for k in m.keys() {
            let k = k.as_str().unwrap_or_default();
            if !DOCUMENT_KEYS.contains(&k) {
                let line = yaml.lines().position(|l| l.starts_with(k)).map(|i| i + 1);
                return Err(here(
                    line,
                    k,
                    format!(
                        "`{k}` cannot be changed here (only {}); edit the file and restart",
                        DOCUMENT_KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    let parsed =
        palisade_policy::parse_str(yaml, "<document>").map_err(|e| vec![error_json(&e)])?;
    let mut merged = base.clone();
    merged.routes = parsed.routes;
    merged.policies = parsed.policies;
    merged.collectors = parsed.collectors;
    Ok(merged)
}

/// One applied version.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// Its version.
    pub version: u64,
    /// When it was applied (ms since the epoch).
    pub at_ms: u64,
    /// Who applied it (the key's name, or `startup`).
    pub by: String,
    /// Why.
    pub reason: Option<String>,
    /// The version it rolled back to, if it was a roll back.
    pub rollback_of: Option<u64>,
    /// Its document.
    pub document: String,
}

/// The bounded history of applied versions.
#[derive(Debug, Default)]
pub struct History {
    entries: Mutex<VecDeque<Applied>>,
}

impl History {
    /// Adds `a`, forgetting the oldest beyond [`HISTORY`].
    pub fn push(&self, a: Applied) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.push_back(a);
        while e.len() > HISTORY {
            e.pop_front();
        }
    }

    /// Every kept version, newest first.
    pub fn list(&self) -> Vec<Applied> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.iter().rev().cloned().collect()
    }

    /// Version `v`, if kept.
    pub fn get(&self, v: u64) -> Option<Applied> {
        self.list().into_iter().find(|a| a.version == v)
    }
}

/// Keys whose values are secret or secret-derived, shown as `<redacted>`.
const SECRET_KEYS: [&str; 6] = [
    "sha256",
    "api_key_sha256",
    "url",
    "password",
    "secret",
    "token",
];

/// `config` as JSON with secrets replaced by `<redacted>`: key digests, webhook and database URLs
/// (which often hold credentials) and anything named like a password or token.
pub fn redacted(config: &Config) -> Value {
    let mut v = serde_json::to_value(config).unwrap_or(Value::Null);
    redact(&mut v);
    v
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if SECRET_KEYS.contains(&k.as_str()) && val.is_string() {
                    *val = json!("<redacted>");
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Res = Result<(), Box<dyn std::error::Error>>;

    fn refused(r: Result<Config, Vec<Value>>) -> Result<Vec<Value>, String> {
        match r {
            Ok(_) => Err("accepted".into()),
            Err(e) => Ok(e),
        }
    }

    const SAMPLE: &str = "
routes:
  - { name: chat, path_prefix: /chat, upstream: 'http://127.0.0.1:9', protocol: openai }
policies:
  strict:
    input:
      - { detector: pii, action: block }
collectors:
  - { name: kong, api_key_sha256: '0000000000000000000000000000000000000000000000000000000000000000' }
";

    #[test]
    fn a_document_round_trips_through_yaml() -> Res {
        let config = palisade_policy::parse_str(SAMPLE, "<t>")?;
        let doc = document(&config);
        let merged =
            merge(&palisade_policy::load::default_config(), &doc).map_err(|e| format!("{e:?}"))?;
        assert_eq!(merged.routes, config.routes);
        assert_eq!(merged.policies, config.policies);
        assert_eq!(merged.collectors, config.collectors);
        Ok(())
    }

    #[test]
    fn an_error_carries_field_and_line() -> Res {
        let bad = SAMPLE.replace("action: block", "action: explode");
        let errs = refused(merge(&Config::default(), &bad))?;
        let line = bad
            .lines()
            .position(|l| l.contains("explode"))
            .map(|i| i + 1);
        assert_eq!(errs[0]["line"], json!(line), "{errs:?}");
        assert!(
            errs[0]["field"]
                .as_str()
                .unwrap_or_default()
                .contains("policies.strict.input"),
            "{errs:?}"
        );
        Ok(())
    }

    #[test]
    fn sections_outside_the_document_are_refused_by_name() -> Res {
        let errs = refused(merge(&Config::default(), "listen: 0.0.0.0:1\nroutes: []\n"))?;
        assert_eq!(errs[0]["field"], "listen");
        assert_eq!(errs[0]["line"], 1);
        Ok(())
    }

    #[test]
    fn secrets_are_redacted() -> Res {
        let config = palisade_policy::parse_str(SAMPLE, "<t>")?;
        let v = redacted(&config);
        assert_eq!(v["collectors"][0]["api_key_sha256"], "<redacted>");
        assert_eq!(v["routes"][0]["upstream"], "http://127.0.0.1:9");
        Ok(())
    }

    #[test]
    fn history_is_bounded_and_newest_first() -> Res {
        let h = History::default();
        for version in 1..=(HISTORY as u64 + 5) {
            h.push(Applied {
                version,
                at_ms: 0,
                by: "t".into(),
                reason: None,
                rollback_of: None,
                document: String::new(),
            });
        }
        let l = h.list();
        assert_eq!(l.len(), HISTORY);
        assert_eq!(l[0].version, HISTORY as u64 + 5);
        assert!(h.get(1).is_none());
        Ok(())
    }
}
