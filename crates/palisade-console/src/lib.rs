//! Palisade's admin API and dashboard: configuration with hot reload, tool pins and quarantine,
//! approvals, records, stats, and the audit log.
//!
//! It listens on its own address (`admin.listen`), never on the proxy's, and every request
//! carries an API key as `Authorization: Bearer <key>`. Keys are configured as their SHA-256
//! (so the configuration file holds no usable secret) with a role: `viewer` reads, `approver`
//! also decides approvals and approves changed tools, `admin` also quarantines and releases.
//! Every change is written to the audit log under the key's name, with the reason given.
//!
//! | method | path | role | what |
//! | --- | --- | --- | --- |
//! | GET | `/admin/whoami` | viewer | the key's name and role |
//! | GET | `/admin/tools` | viewer | every pin (`?route=` to filter) |
//! | POST | `/admin/tools/approve` | approver | `{scope or route, tool, reason}`: pin the latest definition, serve it again |
//! | POST | `/admin/tools/quarantine` | admin | `{scope or route, tool, reason}` |
//! | POST | `/admin/tools/release` | admin | `{scope or route, tool, reason}` |
//! | GET | `/admin/approvals` | viewer | `?status=pending` |
//! | GET | `/admin/approvals/{id}` | viewer | one approval |
//! | POST | `/admin/approvals/{id}/approve` | approver | `{reason, scope: call or action, ttl_seconds}` |
//! | POST | `/admin/approvals/{id}/deny` | approver | `{reason}` |
//! | GET | `/admin/audit` | viewer | `?limit=100`, newest first |
//! | GET | `/admin/events` | viewer | recorded exchanges, newest first: `?route= &decision= &agent_id= &detector= &since_ms= &limit= &cursor=` (the previous page's `next`) |
//! | GET | `/admin/events/{request_id}` | viewer | one event with its findings (masked snippets) |
//! | GET | `/admin/inventory` | viewer | what the recorded traffic reveals: endpoints (ids folded to `{id}`) with methods, statuses, first/last seen and the personal data they carried; MCP tools per route with calls and refusals; models in use |
//! | GET | `/admin/records` | viewer | the backend, events stored, written, dropped (queue full) and failed, write errors, queue depth and bound |
//! | GET | `/admin/config` | viewer | the running configuration, secrets shown as `<redacted>`, with its version |
//! | GET | `/admin/config/document` | viewer | the editable part (`routes`, `policies`, `collectors`) as YAML |
//! | POST | `/admin/config/validate` | viewer | `{yaml}`: 200 `{valid: true}` or 422 with `errors: [{field, line, column, message}]` |
//! | PUT | `/admin/config` | admin | `{yaml, reason}`: validate, compile and apply with no restart; the new `version` |
//! | GET | `/admin/config/history` | viewer | the last applied versions with who, when, why and their documents |
//! | POST | `/admin/config/rollback` | admin | `{version, reason}` (default: the one before the current): apply it again as a new version |
//! | GET | `/admin/stats` | viewer | `?window_ms= &bucket_ms=`: requests, blocked, redacted, held, errors, findings by detector, latency p50/p95 per bucket |
//! | GET | `/admin/findings` | viewer | findings newest first: `?detector= &kind= &action= &min_severity= &route= &decision= &since_ms= &limit= &cursor=` |
//! | GET | `/admin/openapi.json` | viewer | the OpenAPI 3.1 document of this API |
//! | GET | `/ui/…` | none | the dashboard (embedded pages; its data calls carry the key) |
//! | GET | `/metrics` | none | Prometheus text: requests by route, protocol and decision, latency histograms, findings by detector, kind and action, upstream errors, rate-limit refusals, stream outcomes, trace spans, the store writer's written, dropped and failed events, write errors, batches, queue depth and bound |

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use palisade_engine::govern::state::{ApprovalDecision, ApprovalScope, ApprovalStatus, StateError};
use palisade_engine::govern::{now_ms, Governance};
use palisade_policy::govern::{AdminConfig, AdminRole};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

pub mod reload;
pub mod stats;
mod ui;

pub use reload::Control;

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;

/// Longest grant an approval can give.
const MAX_GRANT_SECONDS: u64 = 30 * 24 * 3_600;

struct Caller {
    name: String,
    role: AdminRole,
}

/// The admin API over `governance`.
#[derive(Debug)]
pub struct Admin {
    governance: Arc<Governance>,
    keys: Vec<(String, [u8; 32], AdminRole)>,
    records: Option<Arc<palisade_store::Writer>>,
    control: Option<Arc<dyn Control>>,
    history: reload::History,
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equal in time independent of where the inputs differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type Answer = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    reply(
        status,
        json!({"error": {"code": code, "message": message, "status": status.as_u16()}}),
    )
}

fn state_error(e: &StateError) -> Answer {
    match e {
        StateError::NotFound(what) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("{what} not found"),
        ),
        StateError::Conflict(why) => error(StatusCode::CONFLICT, "conflict", why),
        other => {
            tracing::warn!(error = %other, "admin: state store failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "state_unavailable",
                "the state store failed",
            )
        }
    }
}

fn query<'a>(req: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

impl Admin {
    /// An admin API with the configured keys.
    pub fn new(config: &AdminConfig, governance: Arc<Governance>) -> Self {
        let keys = config
            .keys
            .iter()
            .filter_map(|k| unhex(&k.sha256).map(|h| (k.name.clone(), h, k.role)))
            .collect();
        Admin {
            governance,
            keys,
            records: None,
            control: None,
            history: reload::History::default(),
        }
    }

    /// Serves the configuration from `control` too (read, validate, apply, roll back), and takes
    /// governance from its current configuration.
    pub fn with_control(mut self, control: Arc<dyn Control>) -> Self {
        let (version, config) = control.current();
        self.history.push(reload::Applied {
            version,
            at_ms: now_ms(),
            by: "startup".into(),
            reason: None,
            rollback_of: None,
            document: reload::document(&config),
        });
        self.control = Some(control);
        self
    }

    fn governance(&self) -> Arc<Governance> {
        match &self.control {
            Some(c) => c.governance(),
            None => self.governance.clone(),
        }
    }

    /// Serves events and findings from the records' store too.
    pub fn with_records(mut self, records: Option<Arc<palisade_store::Writer>>) -> Self {
        self.records = records;
        self
    }

    async fn events(&self, req: &Request<Incoming>, id: Option<&str>) -> Answer {
        let Some(w) = &self.records else {
            return error(
                StatusCode::NOT_FOUND,
                "no_records",
                "recording is off (`storage.enabled: false`)",
            );
        };
        if let Some(id) = id {
            let id = id.to_owned();
            return match read(w, move |s| s.event(&id)).await {
                Ok(Some(e)) => reply(StatusCode::OK, json!(e)),
                Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no event with that id"),
                Err(e) => store_error(&e),
            };
        }
        let q = events_query(req);
        match read(w, move |s| s.events(&q)).await {
            Ok(page) => reply(StatusCode::OK, json!(page)),
            Err(e) => store_error(&e),
        }
    }

    fn caller(&self, req: &Request<Incoming>) -> Option<Caller> {
        let key = req
            .headers()
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let digest: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
        self.keys
            .iter()
            .find(|(_, h, _)| same(h, &digest))
            .map(|(name, _, role)| Caller {
                name: name.clone(),
                role: *role,
            })
    }

    /// Handles one admin request.
    pub async fn handle(&self, req: Request<Incoming>) -> Answer {
        if req.method() == Method::GET && req.uri().path() == "/metrics" {
            // Prometheus scrapes without a key, as from any status listener: keep the admin
            // listener on an internal address.
            let mut text = palisade_engine::metrics::render();
            if let Some(w) = &self.records {
                use std::fmt::Write as _;
                for (name, help, value) in [
                    (
                        "palisade_store_events_written_total",
                        "Events written to the store.",
                        w.written(),
                    ),
                    (
                        "palisade_store_events_dropped_total",
                        "Events dropped because the writer's queue was full.",
                        w.dropped(),
                    ),
                    (
                        "palisade_store_events_failed_total",
                        "Events lost because the store refused a batch.",
                        w.failed(),
                    ),
                    (
                        "palisade_store_write_errors_total",
                        "Write attempts that failed (the database unreachable or refusing), retries included.",
                        w.write_errors(),
                    ),
                    (
                        "palisade_store_batches_total",
                        "Transactions the writer committed.",
                        w.batches(),
                    ),
                ] {
                    let _ = writeln!(text, "# HELP {name} {help}");
                    let _ = writeln!(text, "# TYPE {name} counter");
                    let _ = writeln!(text, "{name} {value}");
                }
                for (name, help, value) in [
                    (
                        "palisade_store_queue_depth",
                        "Events accepted by the writer and not yet written.",
                        w.queue_depth(),
                    ),
                    (
                        "palisade_store_queue_capacity",
                        "The writer queue's bound.",
                        w.capacity() as u64,
                    ),
                ] {
                    let _ = writeln!(text, "# HELP {name} {help}");
                    let _ = writeln!(text, "# TYPE {name} gauge");
                    let _ = writeln!(text, "{name} {value}");
                }
            }
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return r;
        }
        if req.method() == Method::GET
            && (req.uri().path() == "/" || req.uri().path().starts_with("/ui"))
        {
            return ui::asset(req.uri().path());
        }
        let Some(caller) = self.caller(&req) else {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send an admin API key as `Authorization: Bearer <key>`",
            );
        };
        let method = req.method().clone();
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let need = match (&method, segs.as_slice()) {
            (&Method::GET, _) | (&Method::POST, ["admin", "config", "validate"]) => {
                AdminRole::Viewer
            }
            (&Method::PUT | &Method::POST, ["admin", "config", ..]) => AdminRole::Admin,
            (&Method::POST, ["admin", "tools", "quarantine" | "release"]) => AdminRole::Admin,
            (&Method::POST, _) => AdminRole::Approver,
            _ => AdminRole::Admin,
        };
        if caller.role < need {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!(
                    "this needs the `{}` role; key `{}` is `{}`",
                    need.as_str(),
                    caller.name,
                    caller.role.as_str()
                ),
            );
        }
        let governance = self.governance();
        let g = &governance;
        let stores = g.stores();
        match (&method, segs.as_slice()) {
            (&Method::GET, ["admin", "whoami"]) => reply(
                StatusCode::OK,
                json!({"name": caller.name, "role": caller.role.as_str()}),
            ),
            (&Method::GET, ["admin", "tools"]) => {
                let route = query(&req, "route").map(str::to_owned);
                match stores.pins.list(None).await {
                    Ok(pins) => {
                        let tools: Vec<Value> = pins
                            .into_iter()
                            .filter(|(scope, _)| {
                                route
                                    .as_deref()
                                    .is_none_or(|r| scope.split('|').next() == Some(r))
                            })
                            .map(|(scope, pin)| {
                                let mut v = serde_json::to_value(&pin).unwrap_or(Value::Null);
                                if let Value::Object(m) = &mut v {
                                    m.insert("scope".into(), json!(scope));
                                }
                                v
                            })
                            .collect();
                        reply(StatusCode::OK, json!({ "tools": tools }))
                    }
                    Err(e) => state_error(&e),
                }
            }
            (&Method::POST, ["admin", "tools", op @ ("approve" | "quarantine" | "release")]) => {
                let op = *op;
                let body = match read_json(req).await {
                    Ok(b) => b,
                    Err(a) => return a,
                };
                let Some(tool) = body.get("tool").and_then(Value::as_str) else {
                    return error(StatusCode::BAD_REQUEST, "bad_request", "`tool` is required");
                };
                let scope = match self.scope_of(&body, tool).await {
                    Ok(s) => s,
                    Err(a) => return a,
                };
                let reason = body
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let r = match op {
                    "approve" => g.approve_tool(&scope, tool, &caller.name, reason).await,
                    "quarantine" => {
                        g.set_quarantine(&scope, tool, true, &caller.name, reason)
                            .await
                    }
                    _ => {
                        g.set_quarantine(&scope, tool, false, &caller.name, reason)
                            .await
                    }
                };
                match r {
                    Ok(pin) => {
                        let mut v = serde_json::to_value(&pin).unwrap_or(Value::Null);
                        if let Value::Object(m) = &mut v {
                            m.insert("scope".into(), json!(scope));
                        }
                        reply(StatusCode::OK, v)
                    }
                    Err(e) => state_error(&e),
                }
            }
            (&Method::GET, ["admin", "approvals"]) => {
                let status = match query(&req, "status") {
                    None => None,
                    Some(s) => match serde_json::from_value::<ApprovalStatus>(json!(s)) {
                        Ok(s) => Some(s),
                        Err(_) => {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "bad_request",
                                "status is pending, approved, denied or expired",
                            )
                        }
                    },
                };
                match stores.approvals.list(status, now_ms()).await {
                    Ok(list) => reply(StatusCode::OK, json!({ "approvals": list })),
                    Err(e) => state_error(&e),
                }
            }
            (&Method::GET, ["admin", "approvals", id]) => {
                match stores.approvals.get(id, now_ms()).await {
                    Ok(Some(a)) => reply(StatusCode::OK, json!(a)),
                    Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such approval"),
                    Err(e) => state_error(&e),
                }
            }
            (&Method::POST, ["admin", "approvals", id, verb @ ("approve" | "deny")]) => {
                let (id, verb) = (id.to_string(), *verb);
                let body = match read_json(req).await {
                    Ok(b) => b,
                    Err(a) => return a,
                };
                let scope = match body.get("scope").and_then(Value::as_str) {
                    None | Some("call") => ApprovalScope::Call,
                    Some("action") => ApprovalScope::Action,
                    Some(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "bad_request",
                            "scope is `call` (this call, once) or `action` (this action for this agent)",
                        )
                    }
                };
                let ttl = body
                    .get("ttl_seconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(3_600)
                    .min(MAX_GRANT_SECONDS);
                let now = now_ms();
                let d = ApprovalDecision {
                    status: if verb == "approve" {
                        ApprovalStatus::Approved
                    } else {
                        ApprovalStatus::Denied
                    },
                    by: caller.name.clone(),
                    reason: body
                        .get("reason")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    scope,
                    expires_ms: now.saturating_add(ttl.saturating_mul(1_000)),
                    now_ms: now,
                };
                match g.decide_approval(&id, d).await {
                    Ok(a) => reply(StatusCode::OK, json!(a)),
                    Err(e) => state_error(&e),
                }
            }
            (&Method::GET, ["admin", "events"]) => self.events(&req, None).await,
            (&Method::GET, ["admin", "events", id]) => self.events(&req, Some(id)).await,
            (&Method::GET, ["admin", "inventory"]) => match &self.records {
                Some(w) => match read(w, |s| s.inventory()).await {
                    Ok(v) => reply(StatusCode::OK, v),
                    Err(e) => store_error(&e),
                },
                None => error(
                    StatusCode::NOT_FOUND,
                    "no_records",
                    "recording is off (`storage.enabled: false`)",
                ),
            },
            (&Method::GET, ["admin", "records"]) => match &self.records {
                Some(w) => reply(
                    StatusCode::OK,
                    json!({
                        "backend": w.store().backend(),
                        "stored": read(w, |s| s.count()).await.unwrap_or(-1),
                        "written": w.written(),
                        "dropped": w.dropped(),
                        "failed": w.failed(),
                        "write_errors": w.write_errors(),
                        "queue_depth": w.queue_depth(),
                        "queue_capacity": w.capacity(),
                    }),
                ),
                None => reply(StatusCode::OK, json!({ "enabled": false })),
            },
            (&Method::GET, ["admin", "audit"]) => {
                let limit = query(&req, "limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(100usize)
                    .min(10_000);
                match stores.audit.recent(limit).await {
                    Ok(entries) => reply(StatusCode::OK, json!({ "entries": entries })),
                    Err(e) => state_error(&e),
                }
            }
            (&Method::GET, ["admin", "openapi.json"]) => {
                let mut r = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                r
            }
            (&Method::GET, ["admin", "stats"]) => {
                let num =
                    |k: &str, d: i64| query(&req, k).and_then(|v| v.parse().ok()).unwrap_or(d);
                let (window, bucket) = (num("window_ms", 3_600_000), num("bucket_ms", 60_000));
                self.with_store(move |store| {
                    stats::stats(store, palisade_store::now_ms(), window, bucket)
                })
                .await
            }
            (&Method::GET, ["admin", "findings"]) => {
                let q = events_query(&req);
                let text = |k: &str| query(&req, k).map(decode);
                let f = stats::FindingFilter {
                    min_severity: text("min_severity"),
                    kind: text("kind"),
                    action: text("action"),
                };
                self.with_store(move |store| stats::findings(store, &q, &f))
                    .await
            }
            (_, ["admin", "config", ..]) => self.config(&method, &segs, &caller, req).await,
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
        }
    }

    /// Runs `f` on the store's read connection off the async workers (see [`read`]).
    async fn with_store(
        &self,
        f: impl FnOnce(&palisade_store::Store) -> Result<Value, palisade_store::StoreError>
            + Send
            + 'static,
    ) -> Answer {
        let Some(w) = &self.records else {
            return error(
                StatusCode::NOT_FOUND,
                "no_records",
                "recording is off (`storage.enabled: false`)",
            );
        };
        match read(w, f).await {
            Ok(v) => reply(StatusCode::OK, v),
            Err(e) => store_error(&e),
        }
    }

    /// `/admin/config…`: read, validate, apply, history, roll back.
    async fn config(
        &self,
        method: &Method,
        segs: &[&str],
        caller: &Caller,
        req: Request<Incoming>,
    ) -> Answer {
        let Some(control) = &self.control else {
            return error(
                StatusCode::NOT_FOUND,
                "no_reload",
                "this process does not serve its configuration",
            );
        };
        let (version, current) = control.current();
        match (method, segs) {
            (&Method::GET, ["admin", "config"]) => reply(
                StatusCode::OK,
                json!({"version": version, "config": reload::redacted(&current)}),
            ),
            (&Method::GET, ["admin", "config", "document"]) => reply(
                StatusCode::OK,
                json!({"version": version, "yaml": reload::document(&current)}),
            ),
            (&Method::GET, ["admin", "config", "history"]) => reply(
                StatusCode::OK,
                json!({"version": version, "versions": self.history.list()}),
            ),
            (&Method::POST, ["admin", "config", "validate"]) => {
                let body = match read_json(req).await {
                    Ok(b) => b,
                    Err(a) => return a,
                };
                let Some(yaml) = body.get("yaml").and_then(Value::as_str) else {
                    return error(StatusCode::BAD_REQUEST, "bad_request", "`yaml` is required");
                };
                match reload::merge(&current, yaml) {
                    Ok(c) => reply(
                        StatusCode::OK,
                        json!({"valid": true, "routes": c.routes.len(), "policies": c.policies.len(), "collectors": c.collectors.len()}),
                    ),
                    Err(errors) => invalid(errors),
                }
            }
            (&Method::PUT, ["admin", "config"])
            | (&Method::POST, ["admin", "config", "rollback"]) => {
                let body = match read_json(req).await {
                    Ok(b) => b,
                    Err(a) => return a,
                };
                let reason = body
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let (yaml, rollback_of) = if segs.len() == 2 {
                    let Some(yaml) = body.get("yaml").and_then(Value::as_str) else {
                        return error(StatusCode::BAD_REQUEST, "bad_request", "`yaml` is required");
                    };
                    (yaml.to_owned(), None)
                } else {
                    let target = body.get("version").and_then(Value::as_u64).or_else(|| {
                        self.history
                            .list()
                            .iter()
                            .find(|a| a.version < version)
                            .map(|a| a.version)
                    });
                    let Some(a) = target.and_then(|v| self.history.get(v)) else {
                        return error(
                            StatusCode::NOT_FOUND,
                            "not_found",
                            &format!(
                                "no kept version to roll back to (the last {} are kept)",
                                reload::HISTORY
                            ),
                        );
                    };
                    (a.document, Some(a.version))
                };
                let merged = match reload::merge(&current, &yaml) {
                    Ok(c) => c,
                    Err(errors) => return invalid(errors),
                };
                let started = std::time::Instant::now();
                let applied = match control.apply(merged) {
                    Ok(v) => v,
                    Err(message) => {
                        return invalid(vec![
                            json!({"field": "", "line": null, "column": null, "message": message}),
                        ])
                    }
                };
                let apply_ms = started.elapsed().as_secs_f64() * 1_000.0;
                let action = if rollback_of.is_some() {
                    "config.rollback"
                } else {
                    "config.apply"
                };
                self.history.push(reload::Applied {
                    version: applied,
                    at_ms: now_ms(),
                    by: caller.name.clone(),
                    reason: reason.clone(),
                    rollback_of,
                    document: yaml,
                });
                self.governance()
                    .audit(
                        &caller.name,
                        action,
                        &format!("config v{applied}"),
                        reason,
                        json!({"from_version": version, "version": applied, "rollback_of": rollback_of}),
                    )
                    .await;
                tracing::info!(version = applied, by = %caller.name, apply_ms, "configuration applied");
                reply(
                    StatusCode::OK,
                    json!({"version": applied, "previous": version, "rollback_of": rollback_of, "apply_ms": apply_ms}),
                )
            }
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
        }
    }

    /// The pin scope a request names: `scope` itself, or the one scope of `route` holding `tool`.
    async fn scope_of(&self, body: &Value, tool: &str) -> Result<String, Answer> {
        if let Some(s) = body.get("scope").and_then(Value::as_str) {
            return Ok(s.to_owned());
        }
        let Some(route) = body.get("route").and_then(Value::as_str) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "give `scope` (as listed) or `route`",
            ));
        };
        let pins = self
            .governance
            .stores()
            .pins
            .list(None)
            .await
            .map_err(|e| state_error(&e))?;
        let scopes: Vec<String> = pins
            .into_iter()
            .filter(|(s, p)| p.tool == tool && s.split('|').next() == Some(route))
            .map(|(s, _)| s)
            .collect();
        match scopes.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no tool `{tool}` seen on route `{route}`"),
            )),
            _ => Err(error(
                StatusCode::CONFLICT,
                "ambiguous",
                "the route reaches several upstreams; give `scope`",
            )),
        }
    }
}

/// The answer to a store read that failed: a bad cursor is the caller's, anything else a 503.
fn store_error(e: &palisade_store::StoreError) -> Answer {
    match e {
        palisade_store::StoreError::Cursor(c) => error(
            StatusCode::BAD_REQUEST,
            "bad_cursor",
            &format!("`{c}` is not a cursor this API gave out"),
        ),
        e => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            &e.to_string(),
        ),
    }
}

/// Runs a read on the store's read connection off the async workers: a slow or unreachable
/// database holds a blocking-pool thread, never an executor thread.
async fn read<T, F>(w: &palisade_store::Writer, f: F) -> Result<T, palisade_store::StoreError>
where
    T: Send + 'static,
    F: FnOnce(&palisade_store::Store) -> Result<T, palisade_store::StoreError> + Send + 'static,
{
    let store = w.store().clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .unwrap_or(Err(palisade_store::StoreError::Poisoned))
}

/// The OpenAPI document of this API.
const OPENAPI: &str = include_str!("openapi.json");

/// A 422 with the configuration's errors.
fn invalid(errors: Vec<Value>) -> Answer {
    reply(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"valid": false, "errors": errors,
               "error": {"code": "invalid_config", "message": "the configuration was refused", "status": 422}}),
    )
}

/// A query value with `%XX` escapes and `+` decoded.
fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The store query a request's `?route= &decision= &agent_id= &detector= &since_ms= &limit= &cursor=` ask for.
fn events_query(req: &Request<Incoming>) -> palisade_store::Query {
    let text = |k: &str| query(req, k).map(decode).filter(|v| !v.is_empty());
    palisade_store::Query {
        route: text("route"),
        decision: text("decision"),
        agent_id: text("agent_id"),
        detector: text("detector"),
        since_ms: query(req, "since_ms").and_then(|v| v.parse().ok()),
        limit: query(req, "limit").and_then(|v| v.parse().ok()),
        cursor: text("cursor"),
    }
}

async fn read_json(req: Request<Incoming>) -> Result<Value, Answer> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let bytes = limited
        .collect()
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_body",
                "body unreadable or too large",
            )
        })?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "bad_json", "the body is not JSON"))
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let admin = admin.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, std::convert::Infallible>(admin.handle(req).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
