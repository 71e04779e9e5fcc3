//! The gateway's side of [`palisade_alerts`]: webhooks are posted with the same pooled hyper
//! client (rustls, system roots plus `tls.extra_ca_file`) that reaches upstreams, and the three
//! hooks the data plane needs are here so the request flow only calls one line each:
//!
//! - every recorded exchange and guard call goes through [`crate::records::emit`];
//! - audit entries (tool changes, approval requests) through the wrapper [`governance`] puts
//!   around the audit log;
//! - rate-limit refusals through [`rate_limited`].

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use palisade_alerts::{Alerts, Answer, Emitter, PostFuture, RateLimited, Transport};
use palisade_engine::govern::{GovDecision, GovOutcome, Governance};
use palisade_policy::config::Config;

use crate::body::full;
use crate::upstream::UpstreamClient;

/// Most bytes of a webhook's answer read (then the connection is reused or dropped).
const ANSWER_BYTES: usize = 64 * 1024;

/// Posts alerts with the upstream client.
#[derive(Debug)]
struct HyperTransport(UpstreamClient);

impl Transport for HyperTransport {
    fn post<'a>(
        &'a self,
        url: &'a str,
        headers: &'a [(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> PostFuture<'a> {
        Box::pin(async move {
            let mut req = http::Request::post(url)
                .body(full(body))
                .map_err(|e| format!("bad request: {e}"))?;
            for (k, v) in headers {
                let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) else {
                    return Err(format!("header `{k}` cannot be sent"));
                };
                req.headers_mut().insert(k, v);
            }
            let exchange = async {
                let resp = self.0.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let retry_after_ms = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| s.saturating_mul(1_000));
                // Read (a bounded part of) the answer so the connection can be reused.
                let _ = crate::proxy::read_bounded(resp.into_body(), ANSWER_BYTES).await;
                Ok(Answer {
                    status,
                    retry_after_ms,
                })
            };
            tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
        })
    }
}

/// Starts the alerts `config` asks for (or none), posting with the upstream client.
pub fn open(config: &Config) -> Result<Arc<Alerts>, crate::StartError> {
    let alerts = &config.alerts;
    if !alerts.enabled || alerts.rules.is_empty() {
        return Ok(Arc::new(Alerts::disabled()));
    }
    let client = crate::upstream::client(config)?;
    let started = Alerts::start(alerts, Arc::new(HyperTransport(client)))
        .map_err(|e| crate::StartError::Alerts(e.to_string()))?;
    Ok(Arc::new(started))
}

/// Governance over the configured state stores (memory, or Redis with `state.redis`), its audit
/// log watched by the alerts. With `records` and `storage.governance`, the audit log is kept in
/// the records' store too, and so are pins and approvals unless Redis holds them (see
/// [`crate::durable`]).
pub fn governance(
    config: &Config,
    alerts: &Emitter,
    records: Option<&Arc<palisade_store::Writer>>,
) -> Result<Governance, crate::StartError> {
    let mut stores = crate::state::stores(config)?;
    if let Some(w) = records.filter(|_| config.storage.governance) {
        let store = w.store();
        let persister = crate::durable::persister(store).map_err(crate::StartError::Store)?;
        if config.state.redis.is_none() {
            crate::durable::pins_and_approvals(&mut stores, store, &persister)
                .map_err(crate::StartError::Store)?;
        }
        crate::durable::audit(&mut stores, store, &persister).map_err(crate::StartError::Store)?;
    }
    stores.audit = alerts.watch_audit(stores.audit);
    Governance::new(config, stores).map_err(crate::StartError::Governance)
}

/// Offers a rate-limit refusal to the alerts.
pub fn rate_limited(alerts: &Emitter, route: &str, request_id: &str, d: &GovDecision) {
    if !matches!(d.outcome, GovOutcome::RateLimited { .. }) {
        return;
    }
    alerts.rate_limited(|| {
        let f = d.findings.iter().find(|f| f.detector == "rate_limit");
        RateLimited {
            request_id: request_id.to_owned(),
            at_ms: palisade_engine::govern::now_ms(),
            route: route.to_owned(),
            limit_key: f.map(|f| f.detail.clone()).unwrap_or_default(),
            agent: (d.agent != "-").then(|| d.agent.clone()),
            client_ip: None,
            tool: f.and_then(|f| f.tool.clone()),
        }
    });
}
