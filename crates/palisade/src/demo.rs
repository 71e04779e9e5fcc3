//! `palisade demo`: Palisade in front of two small local upstreams, so a newcomer can see a
//! blocked call, a redacted call and a streamed call with nothing else installed.
//!
//! - a fake chat upstream speaking OpenAI Chat Completions (plain and `stream: true`), whose
//!   answer about "customer 42" carries an SSN and a card number;
//! - a small MCP server (streamable HTTP, JSON answers) with `echo` and `lookup_customer` tools.
//!
//! Both bind 127.0.0.1 on ports the system picks; Palisade routes `/demo/chat` and `/demo/mcp` to
//! them under the default policy.

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::serve::{init_logging, runtime, shutdown_signal, start};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where Palisade listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
}

const CUSTOMER: &str =
    "Customer 42 is Jane Doe. Her SSN is 078-05-1120 and her card is 4111 1111 1111 1111.";

type Resp = Response<Full<Bytes>>;

fn json_resp(v: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn body_json(req: Request<Incoming>) -> Option<Value> {
    let bytes = req.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&bytes).ok()
}

fn answer_for(messages: &Value) -> String {
    let last = messages
        .as_array()
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content").and_then(Value::as_str))
        .unwrap_or_default();
    if last.to_ascii_lowercase().contains("customer") {
        CUSTOMER.to_owned()
    } else {
        format!("You said: {last}")
    }
}

/// The fake chat upstream.
async fn chat(req: Request<Incoming>) -> Result<Resp, Infallible> {
    let Some(body) = body_json(req).await else {
        let mut r =
            json_resp(&json!({"error": {"message": "bad JSON", "type": "invalid_request_error"}}));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(r);
    };
    let answer = answer_for(body.get("messages").unwrap_or(&Value::Null));
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let mut sse = String::new();
        let chars: Vec<char> = answer.chars().collect();
        for piece in chars.chunks(5) {
            let text: String = piece.iter().collect();
            let chunk = json!({"id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": "demo",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
            sse.push_str(&format!("data: {chunk}\n\n"));
        }
        let end = json!({"id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": "demo",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        sse.push_str(&format!("data: {end}\n\ndata: [DONE]\n\n"));
        let mut r = Response::new(Full::new(Bytes::from(sse)));
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        return Ok(r);
    }
    Ok(json_resp(&json!({
        "id": "chatcmpl-demo", "object": "chat.completion", "model": "demo",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })))
}

/// The small MCP server (streamable HTTP, JSON answers).
async fn mcp(req: Request<Incoming>) -> Result<Resp, Infallible> {
    let Some(msg) = body_json(req).await else {
        return Ok(json_resp(
            &json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}}),
        ));
    };
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if msg.get("id").is_none() {
        // A notification: accepted, no answer.
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::ACCEPTED;
        return Ok(r);
    }
    let result = match method {
        "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "palisade-demo", "version": "1.0"}}),
        "tools/list" => json!({"tools": [
            {"name": "echo", "description": "Echo the text back.",
             "inputSchema": {"type": "object", "properties": {"text": {"type": "string", "description": "Text to echo"}}, "required": ["text"]}},
            {"name": "lookup_customer", "description": "Look a customer up by id.",
             "inputSchema": {"type": "object", "properties": {"id": {"type": "string", "description": "Customer id"}}, "required": ["id"]}}
        ]}),
        "tools/call" => {
            let name = msg
                .pointer("/params/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let text = match name {
                "echo" => msg
                    .pointer("/params/arguments/text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                "lookup_customer" => CUSTOMER.to_owned(),
                other => {
                    return Ok(json_resp(&json!({"jsonrpc": "2.0", "id": id,
                        "error": {"code": -32602, "message": format!("Unknown tool: {other}")}})))
                }
            };
            json!({"content": [{"type": "text", "text": text}], "isError": false})
        }
        "ping" => json!({}),
        other => {
            return Ok(json_resp(&json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": format!("Method not found: {other}")}})))
        }
    };
    Ok(json_resp(
        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
    ))
}

async fn serve_fn<F, Fut>(listener: TcpListener, f: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Resp, Infallible>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let f = f.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(f);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    init_logging(false);
    runtime()?.block_on(async {
        let chat_l = TcpListener::bind("127.0.0.1:0").await?;
        let mcp_l = TcpListener::bind("127.0.0.1:0").await?;
        let chat_addr = chat_l.local_addr()?;
        let mcp_addr = mcp_l.local_addr()?;
        tokio::spawn(serve_fn(chat_l, chat));
        tokio::spawn(serve_fn(mcp_l, mcp));
        let yaml = format!(
            "listen: '{}'\nroutes:\n  - {{ name: demo-chat, path_prefix: /demo/chat, upstream: 'http://{chat_addr}', protocol: openai }}\n  - {{ name: demo-mcp, path_prefix: /demo/mcp, upstream: 'http://{mcp_addr}/mcp', protocol: mcp }}\n",
            args.listen
        );
        let config = palisade_policy::parse_str(&yaml, "<demo>").map_err(|e| anyhow::anyhow!("{e}"))?;
        let (listener, state) = start(config).await?;
        let addr = listener.local_addr()?;
        eprintln!(
            "Palisade demo on http://{addr}\n  chat upstream (OpenAI-style): http://{addr}/demo/chat/v1/chat/completions\n  MCP server: http://{addr}/demo/mcp\nSee the README for curl commands. Ctrl-C to stop."
        );
        palisade_gateway::serve(listener, Arc::clone(&state), shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
