//! Palisade's protocol adapters: they turn a body into *parts*, and write edits back.
//!
//! A part is a text with its [`Role`] (a system prompt, a tool description, a tool result, model
//! output, …) and its [`Location`] (a JSON Pointer into the body). Detectors see parts, not raw
//! bytes, so a policy can treat a tool description differently from a user prompt, and findings
//! can say where they were. Edits go back through [`json::rewrite`], which replaces only the
//! edited strings and leaves every other byte of the body as it came.
//!
//! Adapters are pure: no I/O, no async. Each one reads a `serde_json::Value`, so they share one
//! parse, and each knows only the shapes of its own protocol; [`decode`] picks one from a
//! [`Protocol`] hint or from the body's shape.

use serde::{Deserialize, Serialize};

pub mod json;
pub mod llm;
pub mod mcp;
pub mod sse;
pub mod ws;

/// Which way a body travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// From the client.
    Request,
    /// Back to the client.
    Response,
}

/// The protocol of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Guess from the body's shape.
    Auto,
    /// Plain text: the whole body is one part.
    Text,
    /// Any JSON: every string value is a part.
    Json,
    /// MCP JSON-RPC 2.0.
    Mcp,
    /// OpenAI Chat Completions and Responses (also Azure OpenAI, and Kong's `llm/v1/chat`).
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini `generateContent` / `streamGenerateContent`.
    Gemini,
    /// Cohere v2 chat.
    Cohere,
    /// Bedrock Converse.
    Bedrock,
}

impl Protocol {
    /// Its name as configured (`mcp`, `openai`, …), for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Auto => "auto",
            Protocol::Text => "text",
            Protocol::Json => "json",
            Protocol::Mcp => "mcp",
            Protocol::Openai => "openai",
            Protocol::Anthropic => "anthropic",
            Protocol::Gemini => "gemini",
            Protocol::Cohere => "cohere",
            Protocol::Bedrock => "bedrock",
        }
    }
}

/// What a text is, within its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions from the application (system / developer messages).
    SystemPrompt,
    /// What the user wrote.
    UserPrompt,
    /// An earlier assistant turn, sent back as context.
    AssistantHistory,
    /// What the model produced in this response.
    ModelOutput,
    /// A tool's name, description or schema text, as offered to the model.
    ToolDescription,
    /// Arguments of a tool call.
    ToolArguments,
    /// What a tool returned.
    ToolResult,
    /// Contents of a resource (MCP `resources/read`, embedded resources).
    Resource,
    /// Prompt templates and their messages (MCP prompts).
    Prompt,
    /// A question put to the user (MCP elicitation).
    Elicitation,
    /// Any other string.
    Other,
}

/// Where a part is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// A string value of a JSON body, by JSON Pointer.
    Pointer(String),
    /// The whole body (plain text).
    Body,
}

/// One text of a body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Part {
    /// The text.
    pub text: String,
    /// What it is.
    pub role: Role,
    /// Where it is.
    pub location: Location,
}

/// What an adapter learned about a body besides its parts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Meta {
    /// The protocol the body was read as.
    pub protocol: Option<Protocol>,
    /// MCP or JSON-RPC method, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// JSON-RPC id, as JSON text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Tool name of an MCP `tools/call` or the first tool call of an LLM message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Model name, when the body says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A decoded body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decoded {
    /// The texts, in document order.
    pub parts: Vec<Part>,
    /// What else was learned.
    pub meta: Meta,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Not UTF-8 where text was expected.
    #[error("the body is not UTF-8")]
    NotUtf8,
    /// Not JSON where JSON was expected.
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not of the expected protocol's shape.
    #[error("not a valid {protocol} message: {what}")]
    Shape {
        /// The protocol expected.
        protocol: &'static str,
        /// What is wrong.
        what: String,
    },
}

/// Pushes a part for `value` at `pointer` when it is a non-empty string.
pub(crate) fn push_str(
    parts: &mut Vec<Part>,
    value: Option<&serde_json::Value>,
    pointer: String,
    role: Role,
) {
    if let Some(serde_json::Value::String(s)) = value {
        if !s.is_empty() {
            parts.push(Part {
                text: s.clone(),
                role,
                location: Location::Pointer(pointer),
            });
        }
    }
}

/// The value at a literal JSON Pointer written in this crate (no `~` escapes), found without
/// allocating: `serde_json`'s `pointer` unescapes every segment into a new string, and decoding
/// looks up several paths per stream event.
pub(crate) fn lookup<'a>(
    value: &'a serde_json::Value,
    pointer: &str,
) -> Option<&'a serde_json::Value> {
    let mut v = value;
    for segment in pointer.split('/').skip(1) {
        v = match v {
            serde_json::Value::Object(map) => map.get(segment)?,
            serde_json::Value::Array(list) => list.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Every string value under `value` as parts of `role`, keys excluded (tool arguments, structured
/// content, unknown JSON).
pub fn all_strings(value: &serde_json::Value, pointer: &str, role: Role, parts: &mut Vec<Part>) {
    let mut stack: Vec<(&serde_json::Value, String)> = vec![(value, pointer.to_owned())];
    while let Some((v, p)) = stack.pop() {
        match v {
            serde_json::Value::String(s) if !s.is_empty() => parts.push(Part {
                text: s.clone(),
                role,
                location: Location::Pointer(p),
            }),
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push((item, format!("{p}/{i}")));
                }
            }
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.reverse();
                for (k, item) in entries {
                    stack.push((item, format!("{p}/{}", json::escape_segment(k))));
                }
            }
            _ => {}
        }
    }
}

/// Strings in a JSON Schema that a model reads (titles, descriptions, enums, defaults, examples): everything except `type`, `format`, `$ref`,
/// `$schema` and `pattern` values, which are machine tokens.
pub fn schema_strings(v: &serde_json::Value, at: &str, parts: &mut Vec<Part>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                if matches!(
                    k.as_str(),
                    "type" | "format" | "$ref" | "$schema" | "$id" | "pattern" | "required"
                ) {
                    continue;
                }
                schema_strings(item, &format!("{at}/{}", json::escape_segment(k)), parts);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                schema_strings(item, &format!("{at}/{i}"), parts);
            }
        }
        serde_json::Value::String(_) => {
            push_str(parts, Some(v), at.to_owned(), Role::ToolDescription)
        }
        _ => {}
    }
}

/// Decodes `body` as `protocol` travelling on `side`. For MCP responses, `method` is the method
/// of the request they answer, when known (responses do not repeat it).
pub fn decode(
    protocol: Protocol,
    side: Side,
    body: &[u8],
    method: Option<&str>,
) -> Result<Decoded, ProtocolError> {
    if protocol == Protocol::Text {
        let text = std::str::from_utf8(body).map_err(|_| ProtocolError::NotUtf8)?;
        return Ok(text_body(text));
    }
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) if protocol == Protocol::Auto => {
            let _ = e;
            let text = std::str::from_utf8(body).map_err(|_| ProtocolError::NotUtf8)?;
            return Ok(text_body(text));
        }
        Err(e) => return Err(ProtocolError::NotJson(e.to_string())),
    };
    let protocol = match protocol {
        Protocol::Auto => sniff(&value, side),
        p => p,
    };
    let mut decoded = match protocol {
        Protocol::Mcp => mcp::decode(&value, side, method)?,
        Protocol::Openai
        | Protocol::Anthropic
        | Protocol::Gemini
        | Protocol::Cohere
        | Protocol::Bedrock => llm::decode(protocol, &value, side)?,
        Protocol::Json | Protocol::Auto | Protocol::Text => {
            let mut parts = Vec::new();
            all_strings(&value, "", Role::Other, &mut parts);
            Decoded {
                parts,
                meta: Meta::default(),
            }
        }
    };
    decoded.meta.protocol = Some(protocol);
    Ok(decoded)
}

fn text_body(text: &str) -> Decoded {
    Decoded {
        parts: if text.is_empty() {
            Vec::new()
        } else {
            vec![Part {
                text: text.to_owned(),
                role: Role::Other,
                location: Location::Body,
            }]
        },
        meta: Meta {
            protocol: Some(Protocol::Text),
            ..Meta::default()
        },
    }
}

/// Guesses the protocol of a JSON body from its shape.
pub fn sniff(value: &serde_json::Value, side: Side) -> Protocol {
    let has = |k: &str| value.get(k).is_some();
    if value.get("jsonrpc").and_then(|v| v.as_str()) == Some("2.0")
        || value
            .as_array()
            .and_then(|a| a.first())
            .and_then(|m| m.get("jsonrpc"))
            .is_some()
    {
        return Protocol::Mcp;
    }
    match side {
        Side::Request => {
            if has("contents") || has("systemInstruction") {
                Protocol::Gemini
            } else if (has("messages") && has("inferenceConfig"))
                || (has("messages")
                    && lookup(value, "/messages/0/content/0/text").is_some()
                    && !has("max_tokens")
                    && !has("model"))
            {
                Protocol::Bedrock
            } else if has("messages")
                && (has("system")
                    || has("max_tokens") && lookup(value, "/messages/0/content/0/type").is_some())
            {
                Protocol::Anthropic
            } else if has("messages") || has("input") || has("prompt") {
                Protocol::Openai
            } else {
                Protocol::Json
            }
        }
        Side::Response => {
            if has("candidates") {
                Protocol::Gemini
            } else if has("choices")
                || value.get("object").and_then(|o| o.as_str()) == Some("response")
                || has("output") && has("id")
            {
                Protocol::Openai
            } else if value.get("type").and_then(|t| t.as_str()) == Some("message")
                && has("content")
            {
                Protocol::Anthropic
            } else if has("message") && has("finish_reason") {
                Protocol::Cohere
            } else if lookup(value, "/output/message").is_some() {
                Protocol::Bedrock
            } else {
                Protocol::Json
            }
        }
    }
}

/// Writes new texts back into `body` at their locations. For JSON bodies only the edited strings
/// change; every other byte stays as it was. A [`Location::Body`] edit replaces the whole body.
pub fn write_back(body: &[u8], edits: &[(Location, String)]) -> Result<Vec<u8>, json::JsonError> {
    if let Some((_, text)) = edits.iter().rev().find(|(l, _)| *l == Location::Body) {
        return Ok(text.as_bytes().to_vec());
    }
    let pointer_edits: Vec<(String, String)> = edits
        .iter()
        .filter_map(|(l, t)| match l {
            Location::Pointer(p) => Some((p.clone(), t.clone())),
            Location::Body => None,
        })
        .collect();
    json::rewrite(body, &pointer_edits)
}
