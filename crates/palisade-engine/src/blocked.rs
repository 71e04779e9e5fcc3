//! What a client receives when Palisade blocks: an error in the client's own protocol, so its SDK
//! raises a proper API error instead of failing to parse.
//!
//! | protocol | body | stream event |
//! | --- | --- | --- |
//! | MCP | JSON-RPC error with the request's id, code `-32001`, `data.request_id`, `data.reasons` | the same, as an SSE `message` event |
//! | OpenAI | `{"error": {"message", "type", "code"}}` | `data: {"error": …}` (the SDKs raise on it) |
//! | Anthropic | `{"type": "error", "error": {"type", "message"}}` | `event: error` |
//! | Gemini | `{"error": {"code", "message", "status"}}` | `data: {"error": …}` |
//! | other | `{"error": {"code", "message", "request_id", "reasons"}}` | `data: {"error": …}` |

use palisade_protocol::Protocol;
use serde_json::{json, Value};

/// The stable error code in every blocked answer.
pub const BLOCKED_CODE: &str = "palisade_blocked";

/// The JSON-RPC error code of a blocked MCP call.
pub const MCP_BLOCKED_CODE: i64 = -32001;

/// The HTTP status and JSON body for a blocked, non-streamed exchange. `mcp_id` is the JSON-RPC id
/// of the request, as JSON text.
pub fn block_body(
    protocol: Protocol,
    request_id: &str,
    reasons: &[String],
    mcp_id: Option<&str>,
) -> (u16, Value) {
    let message = format!("blocked by Palisade: {}", summary(reasons));
    match protocol {
        Protocol::Mcp => {
            let id: Value = mcp_id
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            (
                200,
                json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {
                        "code": MCP_BLOCKED_CODE,
                        "message": message,
                        "data": { "code": BLOCKED_CODE, "request_id": request_id, "reasons": reasons },
                    }
                }),
            )
        }
        Protocol::Openai | Protocol::Cohere => (
            403,
            json!({
                "error": {
                    "message": message,
                    "type": BLOCKED_CODE,
                    "code": BLOCKED_CODE,
                    "param": null,
                    "request_id": request_id,
                    "reasons": reasons,
                }
            }),
        ),
        Protocol::Anthropic => (
            403,
            json!({
                "type": "error",
                "error": { "type": "permission_error", "message": message },
                "request_id": request_id,
                "reasons": reasons,
            }),
        ),
        Protocol::Gemini => (
            403,
            json!({
                "error": {
                    "code": 403,
                    "message": message,
                    "status": "PERMISSION_DENIED",
                    "details": [{ "reason": BLOCKED_CODE, "request_id": request_id, "reasons": reasons }],
                }
            }),
        ),
        _ => (
            403,
            json!({
                "error": {
                    "code": BLOCKED_CODE,
                    "message": message,
                    "request_id": request_id,
                    "reasons": reasons,
                }
            }),
        ),
    }
}

/// The bytes of the event that ends a blocked stream.
pub fn block_event(
    protocol: Protocol,
    request_id: &str,
    reasons: &[String],
    mcp_id: Option<&str>,
) -> Vec<u8> {
    let (_, body) = block_body(protocol, request_id, reasons, mcp_id);
    let event = match protocol {
        Protocol::Anthropic => "event: error\n",
        Protocol::Mcp => "event: message\n",
        _ => "",
    };
    format!("{event}data: {body}\n\n").into_bytes()
}

fn summary(reasons: &[String]) -> String {
    if reasons.is_empty() {
        "policy violation".to_owned()
    } else {
        reasons.join("; ")
    }
}
