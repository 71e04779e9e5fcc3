//! Every error the proxy answers with, classified in one place: HTTP status, stable code, which
//! side caused it, and whether a retry may help. Clients see the code, a short message and the
//! request id; details go to the log only.

use http::StatusCode;
use serde_json::json;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something we refuse.
    Client,
    /// The upstream failed.
    Upstream,
    /// Palisade itself.
    Palisade,
}

impl Side {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Palisade => "palisade",
        }
    }
}

/// Why the proxy could not complete an exchange.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route matches the path.
    #[error("no route for this path")]
    NoRoute,
    /// `/proxy/...` with a malformed target.
    #[error("bad proxy target: {0}")]
    BadTarget(String),
    /// The generic proxy may not reach that host.
    #[error("host `{0}` is not allowed")]
    HostNotAllowed(String),
    /// The request body is larger than the limit.
    #[error("request body over {0} bytes")]
    RequestTooLarge(usize),
    /// The request body could not be read.
    #[error("request body could not be read: {0}")]
    RequestBody(String),
    /// Connecting to the upstream failed (refused, DNS, TLS).
    #[error("upstream unreachable: {0}")]
    UpstreamConnect(String),
    /// The upstream did not answer in time.
    #[error("upstream timed out after {0} ms")]
    UpstreamTimeout(u64),
    /// The upstream broke the exchange after it started.
    #[error("upstream failed mid-response: {0}")]
    UpstreamBroken(String),
    /// The upstream's response body is larger than the inspection limit.
    #[error("upstream response over {0} bytes")]
    ResponseTooLarge(usize),
}

impl GatewayError {
    /// `(status, stable code, side, retryable)`.
    pub fn classify(&self) -> (StatusCode, &'static str, Side, bool) {
        match self {
            GatewayError::NoRoute => (StatusCode::NOT_FOUND, "no_route", Side::Client, false),
            GatewayError::BadTarget(_) => {
                (StatusCode::BAD_REQUEST, "bad_target", Side::Client, false)
            }
            GatewayError::HostNotAllowed(_) => (
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                Side::Client,
                false,
            ),
            GatewayError::RequestTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                Side::Client,
                false,
            ),
            GatewayError::RequestBody(_) => (
                StatusCode::BAD_REQUEST,
                "bad_request_body",
                Side::Client,
                false,
            ),
            GatewayError::UpstreamConnect(_) => (
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                Side::Upstream,
                true,
            ),
            GatewayError::UpstreamTimeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                Side::Upstream,
                true,
            ),
            GatewayError::UpstreamBroken(_) => (
                StatusCode::BAD_GATEWAY,
                "upstream_broken",
                Side::Upstream,
                true,
            ),
            GatewayError::ResponseTooLarge(_) => (
                StatusCode::BAD_GATEWAY,
                "response_too_large",
                Side::Upstream,
                false,
            ),
        }
    }

    /// The JSON body a client sees.
    pub fn body(&self, request_id: &str) -> serde_json::Value {
        let (status, code, side, retryable) = self.classify();
        let message = match self {
            // Say what the client can act on; keep upstream internals for the log.
            GatewayError::UpstreamConnect(_) => "the upstream could not be reached".to_owned(),
            GatewayError::UpstreamBroken(_) => "the upstream failed while answering".to_owned(),
            GatewayError::RequestBody(_) => "the request body could not be read".to_owned(),
            other => other.to_string(),
        };
        json!({
            "error": {
                "code": code,
                "message": message,
                "status": status.as_u16(),
                "source": side.as_str(),
                "retryable": retryable,
                "request_id": request_id,
            }
        })
    }
}
