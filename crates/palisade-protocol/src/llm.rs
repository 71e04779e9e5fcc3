//! LLM provider formats: requests, responses and streamed chunks, tool calls in both directions.
//!
//! | protocol | request | response / stream chunk |
//! | --- | --- | --- |
//! | OpenAI Chat Completions (also Azure OpenAI and Kong's `llm/v1/chat`) | `messages`, `tools`, `functions` | `choices[].message` / `choices[].delta` |
//! | OpenAI Responses | `instructions`, `input`, `tools` | `output[]`, `response.*.delta` events |
//! | Anthropic Messages | `system`, `messages`, `tools` | `content[]`, `content_block_delta` events |
//! | Gemini generateContent / streamGenerateContent | `systemInstruction`, `contents`, `tools` | `candidates[].content.parts[]` |
//! | Cohere v2 chat | `messages`, `tools`, `documents` | `message`, `content-delta` events |
//! | Bedrock Converse | `system`, `messages`, `toolConfig` | `output.message`, `contentBlockDelta` events |
//!
//! Tool-call arguments that arrive as a JSON string (OpenAI, Cohere) are one part: the string as
//! sent, so an edit rewrites exactly it.

use serde_json::Value;

use crate::{
    all_strings, lookup, push_str, schema_strings, Decoded, Meta, Part, Protocol, ProtocolError,
    Role, Side,
};

/// Decodes an LLM request, response or stream chunk.
pub fn decode(protocol: Protocol, v: &Value, side: Side) -> Result<Decoded, ProtocolError> {
    if !v.is_object() {
        return Err(ProtocolError::Shape {
            protocol: name(protocol),
            what: "the body must be a JSON object".into(),
        });
    }
    let mut parts = Vec::new();
    let mut meta = Meta {
        model: v.get("model").and_then(Value::as_str).map(str::to_owned),
        ..Meta::default()
    };
    match (protocol, side) {
        (Protocol::Anthropic, Side::Request) => anthropic_request(v, &mut parts),
        (Protocol::Anthropic, Side::Response) => anthropic_response(v, &mut parts),
        (Protocol::Gemini, _) => gemini(v, side, &mut parts),
        (Protocol::Cohere, Side::Request) => cohere_request(v, &mut parts),
        (Protocol::Cohere, Side::Response) => cohere_response(v, &mut parts),
        (Protocol::Bedrock, Side::Request) => bedrock_request(v, &mut parts),
        (Protocol::Bedrock, Side::Response) => bedrock_response(v, &mut parts),
        (_, Side::Request) => openai_request(v, &mut parts),
        (_, Side::Response) => openai_response(v, &mut parts),
    }
    meta.tool = first_tool(v);
    Ok(Decoded { parts, meta })
}

fn name(p: Protocol) -> &'static str {
    match p {
        Protocol::Anthropic => "Anthropic Messages",
        Protocol::Gemini => "Gemini",
        Protocol::Cohere => "Cohere chat",
        Protocol::Bedrock => "Bedrock Converse",
        _ => "OpenAI",
    }
}

fn arr<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

fn role_of(role: Option<&str>) -> Role {
    match role {
        Some("system") | Some("developer") => Role::SystemPrompt,
        Some("assistant") | Some("model") | Some("chatbot") => Role::AssistantHistory,
        Some("tool") | Some("function") | Some("ipython") => Role::ToolResult,
        _ => Role::UserPrompt,
    }
}

/// `content` that is a string or a list of typed blocks (`text`, `input_text`, `output_text`, …).
fn text_content(v: Option<&Value>, at: &str, role: Role, parts: &mut Vec<Part>) {
    match v {
        Some(Value::String(_)) => push_str(parts, v, at.to_owned(), role),
        Some(Value::Array(blocks)) => {
            for (i, b) in blocks.iter().enumerate() {
                let bat = format!("{at}/{i}");
                if b.is_string() {
                    push_str(parts, Some(b), bat, role);
                    continue;
                }
                for key in ["text", "refusal", "output", "thinking"] {
                    push_str(parts, b.get(key), format!("{bat}/{key}"), role);
                }
                push_str(
                    parts,
                    lookup(b, "/document/data"),
                    format!("{bat}/document/data"),
                    role,
                );
            }
        }
        _ => {}
    }
}

fn function_tools(v: &Value, parts: &mut Vec<Part>) {
    for (i, t) in arr(v, "tools") {
        // Chat Completions nests under `function`; Responses puts the fields at the top.
        let (f, at) = match t.get("function") {
            Some(f) => (f, format!("/tools/{i}/function")),
            None => (t, format!("/tools/{i}")),
        };
        push_str(
            parts,
            f.get("description"),
            format!("{at}/description"),
            Role::ToolDescription,
        );
        if let Some(p) = f.get("parameters") {
            schema_strings(p, &format!("{at}/parameters"), parts);
        }
    }
    for (i, f) in arr(v, "functions") {
        push_str(
            parts,
            f.get("description"),
            format!("/functions/{i}/description"),
            Role::ToolDescription,
        );
        if let Some(p) = f.get("parameters") {
            schema_strings(p, &format!("/functions/{i}/parameters"), parts);
        }
    }
}

fn tool_calls(msg: &Value, at: &str, parts: &mut Vec<Part>) {
    for (j, c) in arr(msg, "tool_calls") {
        push_str(
            parts,
            lookup(c, "/function/arguments"),
            format!("{at}/tool_calls/{j}/function/arguments"),
            Role::ToolArguments,
        );
    }
    push_str(
        parts,
        lookup(msg, "/function_call/arguments"),
        format!("{at}/function_call/arguments"),
        Role::ToolArguments,
    );
}

fn openai_request(v: &Value, parts: &mut Vec<Part>) {
    // Responses API.
    push_str(
        parts,
        v.get("instructions"),
        "/instructions".into(),
        Role::SystemPrompt,
    );
    match v.get("input") {
        Some(Value::String(_)) => {
            push_str(parts, v.get("input"), "/input".into(), Role::UserPrompt)
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("/input/{i}");
                match item.get("type").and_then(Value::as_str) {
                    Some("function_call_output") => push_str(
                        parts,
                        item.get("output"),
                        format!("{at}/output"),
                        Role::ToolResult,
                    ),
                    Some("function_call") => push_str(
                        parts,
                        item.get("arguments"),
                        format!("{at}/arguments"),
                        Role::ToolArguments,
                    ),
                    _ => text_content(
                        item.get("content"),
                        &format!("{at}/content"),
                        role_of(item.get("role").and_then(Value::as_str)),
                        parts,
                    ),
                }
            }
        }
        _ => {}
    }
    // Legacy completions.
    push_str(parts, v.get("prompt"), "/prompt".into(), Role::UserPrompt);
    // Chat Completions.
    for (i, m) in arr(v, "messages") {
        let at = format!("/messages/{i}");
        let role = role_of(m.get("role").and_then(Value::as_str));
        text_content(m.get("content"), &format!("{at}/content"), role, parts);
        tool_calls(m, &at, parts);
    }
    function_tools(v, parts);
}

fn openai_response(v: &Value, parts: &mut Vec<Part>) {
    for (i, c) in arr(v, "choices") {
        for key in ["message", "delta"] {
            if let Some(m) = c.get(key) {
                let at = format!("/choices/{i}/{key}");
                text_content(
                    m.get("content"),
                    &format!("{at}/content"),
                    Role::ModelOutput,
                    parts,
                );
                push_str(
                    parts,
                    m.get("refusal"),
                    format!("{at}/refusal"),
                    Role::ModelOutput,
                );
                tool_calls(m, &at, parts);
            }
        }
        push_str(
            parts,
            c.get("text"),
            format!("/choices/{i}/text"),
            Role::ModelOutput,
        );
    }
    // Responses API: a whole response, or a streamed event that wraps one.
    let (resp, base) = match v.get("response") {
        Some(r) => (r, "/response"),
        None => (v, ""),
    };
    for (i, item) in arr(resp, "output") {
        let at = format!("{base}/output/{i}");
        match item.get("type").and_then(Value::as_str) {
            Some("function_call") => push_str(
                parts,
                item.get("arguments"),
                format!("{at}/arguments"),
                Role::ToolArguments,
            ),
            _ => text_content(
                item.get("content"),
                &format!("{at}/content"),
                Role::ModelOutput,
                parts,
            ),
        }
    }
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        if t.ends_with(".delta") || t.ends_with(".done") {
            let role = if t.contains("function_call_arguments") {
                Role::ToolArguments
            } else {
                Role::ModelOutput
            };
            for key in ["delta", "text", "arguments"] {
                push_str(parts, v.get(key), format!("/{key}"), role);
            }
        }
    }
}

fn anthropic_blocks(content: Option<&Value>, at: &str, role: Role, parts: &mut Vec<Part>) {
    match content {
        Some(Value::String(_)) => push_str(parts, content, at.to_owned(), role),
        Some(Value::Array(blocks)) => {
            for (i, b) in blocks.iter().enumerate() {
                let bat = format!("{at}/{i}");
                match b.get("type").and_then(Value::as_str) {
                    Some("tool_use") | Some("server_tool_use") => {
                        if let Some(input) = b.get("input") {
                            all_strings(input, &format!("{bat}/input"), Role::ToolArguments, parts);
                        }
                    }
                    Some("tool_result") => anthropic_blocks(
                        b.get("content"),
                        &format!("{bat}/content"),
                        Role::ToolResult,
                        parts,
                    ),
                    Some("document") => {
                        push_str(
                            parts,
                            lookup(b, "/source/data"),
                            format!("{bat}/source/data"),
                            role,
                        );
                        anthropic_blocks(
                            lookup(b, "/source/content"),
                            &format!("{bat}/source/content"),
                            role,
                            parts,
                        );
                    }
                    _ => {
                        push_str(parts, b.get("text"), format!("{bat}/text"), role);
                        push_str(parts, b.get("thinking"), format!("{bat}/thinking"), role);
                    }
                }
            }
        }
        _ => {}
    }
}

fn anthropic_request(v: &Value, parts: &mut Vec<Part>) {
    anthropic_blocks(v.get("system"), "/system", Role::SystemPrompt, parts);
    for (i, m) in arr(v, "messages") {
        let role = role_of(m.get("role").and_then(Value::as_str));
        anthropic_blocks(
            m.get("content"),
            &format!("/messages/{i}/content"),
            role,
            parts,
        );
    }
    for (i, t) in arr(v, "tools") {
        push_str(
            parts,
            t.get("description"),
            format!("/tools/{i}/description"),
            Role::ToolDescription,
        );
        if let Some(s) = t.get("input_schema") {
            schema_strings(s, &format!("/tools/{i}/input_schema"), parts);
        }
    }
}

fn anthropic_response(v: &Value, parts: &mut Vec<Part>) {
    anthropic_blocks(v.get("content"), "/content", Role::ModelOutput, parts);
    // Streamed events.
    match v.get("type").and_then(Value::as_str) {
        Some("content_block_delta") => {
            push_str(
                parts,
                lookup(v, "/delta/text"),
                "/delta/text".into(),
                Role::ModelOutput,
            );
            push_str(
                parts,
                lookup(v, "/delta/thinking"),
                "/delta/thinking".into(),
                Role::ModelOutput,
            );
            push_str(
                parts,
                lookup(v, "/delta/partial_json"),
                "/delta/partial_json".into(),
                Role::ToolArguments,
            );
        }
        Some("content_block_start") => {
            anthropic_blocks(
                v.get("content_block")
                    .map(|b| Value::Array(vec![b.clone()]))
                    .as_ref(),
                "/content_block",
                Role::ModelOutput,
                parts,
            );
            // The block is not an array in the body: fix the pointers.
            for p in parts.iter_mut() {
                if let crate::Location::Pointer(ptr) = &mut p.location {
                    if let Some(rest) = ptr.strip_prefix("/content_block/0") {
                        *ptr = format!("/content_block{rest}");
                    }
                }
            }
        }
        Some("message_start") => anthropic_blocks(
            lookup(v, "/message/content"),
            "/message/content",
            Role::ModelOutput,
            parts,
        ),
        _ => {}
    }
}

fn gemini_parts(list: Option<&Value>, at: &str, role: Role, parts: &mut Vec<Part>) {
    for (i, p) in list
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let pat = format!("{at}/{i}");
        push_str(parts, p.get("text"), format!("{pat}/text"), role);
        if let Some(args) = lookup(p, "/functionCall/args") {
            all_strings(
                args,
                &format!("{pat}/functionCall/args"),
                Role::ToolArguments,
                parts,
            );
        }
        if let Some(resp) = lookup(p, "/functionResponse/response") {
            all_strings(
                resp,
                &format!("{pat}/functionResponse/response"),
                Role::ToolResult,
                parts,
            );
        }
    }
}

fn gemini(v: &Value, side: Side, parts: &mut Vec<Part>) {
    gemini_parts(
        lookup(v, "/systemInstruction/parts"),
        "/systemInstruction/parts",
        Role::SystemPrompt,
        parts,
    );
    for (i, c) in arr(v, "contents") {
        let role = role_of(c.get("role").and_then(Value::as_str));
        gemini_parts(c.get("parts"), &format!("/contents/{i}/parts"), role, parts);
    }
    for (i, t) in arr(v, "tools") {
        for (j, f) in arr(t, "functionDeclarations") {
            let at = format!("/tools/{i}/functionDeclarations/{j}");
            push_str(
                parts,
                f.get("description"),
                format!("{at}/description"),
                Role::ToolDescription,
            );
            if let Some(p) = f.get("parameters") {
                schema_strings(p, &format!("{at}/parameters"), parts);
            }
        }
    }
    if side == Side::Response {
        for (i, c) in arr(v, "candidates") {
            gemini_parts(
                lookup(c, "/content/parts"),
                &format!("/candidates/{i}/content/parts"),
                Role::ModelOutput,
                parts,
            );
        }
    }
}

fn cohere_request(v: &Value, parts: &mut Vec<Part>) {
    for (i, m) in arr(v, "messages") {
        let at = format!("/messages/{i}");
        let role = role_of(m.get("role").and_then(Value::as_str));
        text_content(m.get("content"), &format!("{at}/content"), role, parts);
        push_str(
            parts,
            m.get("tool_plan"),
            format!("{at}/tool_plan"),
            Role::AssistantHistory,
        );
        tool_calls(m, &at, parts);
    }
    for (i, d) in arr(v, "documents") {
        if d.is_string() {
            push_str(parts, Some(d), format!("/documents/{i}"), Role::Resource);
        } else if let Some(data) = d.get("data") {
            all_strings(data, &format!("/documents/{i}/data"), Role::Resource, parts);
        }
    }
    function_tools(v, parts);
}

fn cohere_response(v: &Value, parts: &mut Vec<Part>) {
    if let Some(m) = v.get("message") {
        text_content(
            m.get("content"),
            "/message/content",
            Role::ModelOutput,
            parts,
        );
        push_str(
            parts,
            m.get("tool_plan"),
            "/message/tool_plan".into(),
            Role::ModelOutput,
        );
        tool_calls(m, "/message", parts);
    }
    // Streamed `content-delta` / `tool-call-delta` events.
    push_str(
        parts,
        lookup(v, "/delta/message/content/text"),
        "/delta/message/content/text".into(),
        Role::ModelOutput,
    );
    push_str(
        parts,
        lookup(v, "/delta/message/tool_plan"),
        "/delta/message/tool_plan".into(),
        Role::ModelOutput,
    );
    push_str(
        parts,
        lookup(v, "/delta/message/tool_calls/function/arguments"),
        "/delta/message/tool_calls/function/arguments".into(),
        Role::ToolArguments,
    );
}

fn bedrock_blocks(list: Option<&Value>, at: &str, role: Role, parts: &mut Vec<Part>) {
    for (i, b) in list
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let bat = format!("{at}/{i}");
        push_str(parts, b.get("text"), format!("{bat}/text"), role);
        if let Some(input) = lookup(b, "/toolUse/input") {
            all_strings(
                input,
                &format!("{bat}/toolUse/input"),
                Role::ToolArguments,
                parts,
            );
        }
        for (j, c) in lookup(b, "/toolResult/content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let cat = format!("{bat}/toolResult/content/{j}");
            push_str(
                parts,
                c.get("text"),
                format!("{cat}/text"),
                Role::ToolResult,
            );
            if let Some(j) = c.get("json") {
                all_strings(j, &format!("{cat}/json"), Role::ToolResult, parts);
            }
        }
    }
}

fn bedrock_request(v: &Value, parts: &mut Vec<Part>) {
    bedrock_blocks(v.get("system"), "/system", Role::SystemPrompt, parts);
    for (i, m) in arr(v, "messages") {
        let role = role_of(m.get("role").and_then(Value::as_str));
        bedrock_blocks(
            m.get("content"),
            &format!("/messages/{i}/content"),
            role,
            parts,
        );
    }
    for (i, t) in lookup(v, "/toolConfig/tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("/toolConfig/tools/{i}/toolSpec");
        push_str(
            parts,
            lookup(t, "/toolSpec/description"),
            format!("{at}/description"),
            Role::ToolDescription,
        );
        if let Some(s) = lookup(t, "/toolSpec/inputSchema/json") {
            schema_strings(s, &format!("{at}/inputSchema/json"), parts);
        }
    }
}

fn bedrock_response(v: &Value, parts: &mut Vec<Part>) {
    bedrock_blocks(
        lookup(v, "/output/message/content"),
        "/output/message/content",
        Role::ModelOutput,
        parts,
    );
    // Streamed `contentBlockDelta` events, as JSON.
    push_str(
        parts,
        lookup(v, "/delta/text"),
        "/delta/text".into(),
        Role::ModelOutput,
    );
    push_str(
        parts,
        lookup(v, "/contentBlockDelta/delta/text"),
        "/contentBlockDelta/delta/text".into(),
        Role::ModelOutput,
    );
}

/// The name of the first tool the body calls, in any format.
fn first_tool(v: &Value) -> Option<String> {
    for p in [
        "/choices/0/message/tool_calls/0/function/name",
        "/choices/0/delta/tool_calls/0/function/name",
        "/message/tool_calls/0/function/name",
        "/candidates/0/content/parts/0/functionCall/name",
        "/output/message/content/0/toolUse/name",
    ] {
        if let Some(n) = lookup(v, p).and_then(Value::as_str) {
            return Some(n.to_owned());
        }
    }
    for list in ["content", "output"] {
        for (_, b) in arr(v, list) {
            if matches!(
                b.get("type").and_then(Value::as_str),
                Some("tool_use") | Some("function_call")
            ) {
                return b.get("name").and_then(Value::as_str).map(str::to_owned);
            }
        }
    }
    None
}
