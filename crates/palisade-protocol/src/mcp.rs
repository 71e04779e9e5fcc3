//! MCP over JSON-RPC 2.0: requests, responses, notifications, errors and batches.
//!
//! A request names its method; a response does not, so the caller passes the method of the
//! request it answers when it knows it (the proxy does). Without it, the result's shape decides:
//! `tools` is a `tools/list` result, `content` a `tools/call` result, `contents` a
//! `resources/read` result, and so on. Every content type is read: text, image and audio (their
//! alt text and MIME type only; base64 data is not text), embedded resources, resource links and
//! structured content.

use serde_json::Value;

use crate::{all_strings, lookup, push_str, Decoded, Meta, Part, ProtocolError, Role, Side};

/// Decodes an MCP message or batch. `method` is the request's method when `value` is a response.
pub fn decode(value: &Value, _side: Side, method: Option<&str>) -> Result<Decoded, ProtocolError> {
    let mut out = Decoded::default();
    match value {
        Value::Array(batch) => {
            if batch.is_empty() {
                return Err(shape("an empty batch"));
            }
            for (i, m) in batch.iter().enumerate() {
                message(m, &format!("/{i}"), method, &mut out)?;
            }
        }
        Value::Object(_) => message(value, "", method, &mut out)?,
        _ => return Err(shape("a JSON-RPC message is an object or a batch array")),
    }
    Ok(out)
}

fn shape(what: &str) -> ProtocolError {
    ProtocolError::Shape {
        protocol: "MCP JSON-RPC",
        what: what.to_owned(),
    }
}

fn message(
    m: &Value,
    at: &str,
    hint: Option<&str>,
    out: &mut Decoded,
) -> Result<(), ProtocolError> {
    if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(shape("`jsonrpc` must be \"2.0\""));
    }
    if out.meta.id.is_none() {
        out.meta.id = m.get("id").map(Value::to_string);
    }
    let parts = &mut out.parts;
    if let Some(method) = m.get("method").and_then(Value::as_str) {
        // A request (with `id`) or a notification (without).
        out.meta.method.get_or_insert_with(|| method.to_owned());
        let params = m.get("params");
        let p = format!("{at}/params");
        request(method, params, &p, parts, &mut out.meta);
        return Ok(());
    }
    if let Some(result) = m.get("result") {
        let method = hint.map(str::to_owned).or_else(|| infer_method(result));
        if let Some(method) = &method {
            out.meta.method.get_or_insert_with(|| method.clone());
        }
        response(method.as_deref(), result, &format!("{at}/result"), parts);
        return Ok(());
    }
    if let Some(error) = m.get("error") {
        push_str(
            parts,
            error.get("message"),
            format!("{at}/error/message"),
            Role::Other,
        );
        if let Some(data) = error.get("data") {
            all_strings(data, &format!("{at}/error/data"), Role::Other, parts);
        }
        return Ok(());
    }
    Err(shape("a message needs `method`, `result` or `error`"))
}

/// The method a result answers, from its shape.
pub fn infer_method(result: &Value) -> Option<String> {
    let has = |k: &str| result.get(k).is_some();
    let m = if has("tools") {
        "tools/list"
    } else if has("content") && !has("role") && !has("action") {
        "tools/call"
    } else if has("contents") {
        "resources/read"
    } else if has("resources") {
        "resources/list"
    } else if has("prompts") {
        "prompts/list"
    } else if has("messages") {
        "prompts/get"
    } else if has("protocolVersion") && has("capabilities") {
        "initialize"
    } else if has("role") && has("content") && has("model") {
        "sampling/createMessage"
    } else if has("action") {
        "elicitation/create"
    } else {
        return None;
    };
    Some(m.to_owned())
}

fn request(method: &str, params: Option<&Value>, p: &str, parts: &mut Vec<Part>, meta: &mut Meta) {
    let Some(params) = params else { return };
    match method {
        "tools/call" => {
            if let Some(name) = params.get("name").and_then(Value::as_str) {
                meta.tool.get_or_insert_with(|| name.to_owned());
            }
            if let Some(args) = params.get("arguments") {
                all_strings(args, &format!("{p}/arguments"), Role::ToolArguments, parts);
            }
        }
        "prompts/get" => {
            if let Some(args) = params.get("arguments") {
                all_strings(args, &format!("{p}/arguments"), Role::UserPrompt, parts);
            }
        }
        "resources/read" | "resources/subscribe" => {
            push_str(parts, params.get("uri"), format!("{p}/uri"), Role::Other);
        }
        "sampling/createMessage" => {
            push_str(
                parts,
                params.get("systemPrompt"),
                format!("{p}/systemPrompt"),
                Role::SystemPrompt,
            );
            if let Some(messages) = params.get("messages").and_then(Value::as_array) {
                for (i, msg) in messages.iter().enumerate() {
                    let role = match msg.get("role").and_then(Value::as_str) {
                        Some("assistant") => Role::AssistantHistory,
                        _ => Role::UserPrompt,
                    };
                    if let Some(c) = msg.get("content") {
                        content(c, &format!("{p}/messages/{i}/content"), role, parts);
                    }
                }
            }
        }
        "elicitation/create" => {
            push_str(
                parts,
                params.get("message"),
                format!("{p}/message"),
                Role::Elicitation,
            );
            if let Some(schema) = params.get("requestedSchema") {
                all_strings(
                    schema,
                    &format!("{p}/requestedSchema"),
                    Role::Elicitation,
                    parts,
                );
            }
        }
        "completion/complete" => {
            push_str(
                parts,
                lookup(params, "/argument/value"),
                format!("{p}/argument/value"),
                Role::UserPrompt,
            );
        }
        // These carry no text meant for a model (names, cursors, capabilities).
        "initialize"
        | "ping"
        | "tools/list"
        | "resources/list"
        | "resources/templates/list"
        | "prompts/list"
        | "roots/list"
        | "logging/setLevel"
        | "resources/unsubscribe"
        | "notifications/initialized"
        | "notifications/cancelled"
        | "notifications/progress"
        | "notifications/roots/list_changed"
        | "notifications/tools/list_changed"
        | "notifications/prompts/list_changed"
        | "notifications/resources/list_changed"
        | "notifications/resources/updated" => {}
        // Anything else, log messages (`notifications/message`) and methods this version does not
        // know included, is read whole: text that reaches a client may reach a model.
        _ => all_strings(params, p, Role::Other, parts),
    }
}

fn response(method: Option<&str>, result: &Value, p: &str, parts: &mut Vec<Part>) {
    match method {
        Some("tools/list") => {
            if let Some(tools) = result.get("tools").and_then(Value::as_array) {
                for (i, tool) in tools.iter().enumerate() {
                    tool_definition(tool, &format!("{p}/tools/{i}"), parts);
                }
            }
        }
        Some("tools/call") => {
            contents(
                result.get("content"),
                &format!("{p}/content"),
                Role::ToolResult,
                parts,
            );
            if let Some(s) = result.get("structuredContent") {
                all_strings(
                    s,
                    &format!("{p}/structuredContent"),
                    Role::ToolResult,
                    parts,
                );
            }
        }
        Some("resources/read") => {
            if let Some(items) = result.get("contents").and_then(Value::as_array) {
                for (i, item) in items.iter().enumerate() {
                    push_str(
                        parts,
                        item.get("text"),
                        format!("{p}/contents/{i}/text"),
                        Role::Resource,
                    );
                }
            }
        }
        Some("resources/list") | Some("resources/templates/list") => {
            for key in ["resources", "resourceTemplates"] {
                if let Some(items) = result.get(key).and_then(Value::as_array) {
                    for (i, item) in items.iter().enumerate() {
                        for field in ["title", "description"] {
                            push_str(
                                parts,
                                item.get(field),
                                format!("{p}/{key}/{i}/{field}"),
                                Role::ToolDescription,
                            );
                        }
                    }
                }
            }
        }
        Some("prompts/list") => {
            if let Some(items) = result.get("prompts").and_then(Value::as_array) {
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{p}/prompts/{i}");
                    for field in ["title", "description"] {
                        push_str(
                            parts,
                            item.get(field),
                            format!("{at}/{field}"),
                            Role::ToolDescription,
                        );
                    }
                    if let Some(args) = item.get("arguments").and_then(Value::as_array) {
                        for (j, a) in args.iter().enumerate() {
                            push_str(
                                parts,
                                a.get("description"),
                                format!("{at}/arguments/{j}/description"),
                                Role::ToolDescription,
                            );
                        }
                    }
                }
            }
        }
        Some("prompts/get") => {
            push_str(
                parts,
                result.get("description"),
                format!("{p}/description"),
                Role::Prompt,
            );
            if let Some(messages) = result.get("messages").and_then(Value::as_array) {
                for (i, msg) in messages.iter().enumerate() {
                    if let Some(c) = msg.get("content") {
                        content(c, &format!("{p}/messages/{i}/content"), Role::Prompt, parts);
                    }
                }
            }
        }
        Some("initialize") => {
            push_str(
                parts,
                result.get("instructions"),
                format!("{p}/instructions"),
                Role::ToolDescription,
            );
        }
        Some("sampling/createMessage") => {
            if let Some(c) = result.get("content") {
                content(c, &format!("{p}/content"), Role::ModelOutput, parts);
            }
        }
        Some("elicitation/create") => {
            if let Some(c) = result.get("content") {
                all_strings(c, &format!("{p}/content"), Role::UserPrompt, parts);
            }
        }
        _ => all_strings(result, p, Role::Other, parts),
    }
}

/// The texts of one tool definition a model will read: title, description, every string in the
/// input and output schemas (titles, descriptions, enums, defaults, examples), annotations.
pub fn tool_definition(tool: &Value, at: &str, parts: &mut Vec<Part>) {
    for field in ["title", "description"] {
        push_str(
            parts,
            tool.get(field),
            format!("{at}/{field}"),
            Role::ToolDescription,
        );
    }
    for field in ["inputSchema", "outputSchema", "annotations"] {
        if let Some(v) = tool.get(field) {
            crate::schema_strings(v, &format!("{at}/{field}"), parts);
        }
    }
}

fn contents(v: Option<&Value>, at: &str, role: Role, parts: &mut Vec<Part>) {
    match v {
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                content(item, &format!("{at}/{i}"), role, parts);
            }
        }
        Some(item @ Value::Object(_)) => content(item, at, role, parts),
        _ => {}
    }
}

/// One content block of any type.
fn content(c: &Value, at: &str, role: Role, parts: &mut Vec<Part>) {
    if let Value::Array(_) = c {
        return contents(Some(c), at, role, parts);
    }
    match c.get("type").and_then(Value::as_str) {
        Some("text") => push_str(parts, c.get("text"), format!("{at}/text"), role),
        // Images and audio carry base64 data, which is not text; their annotations may be.
        Some("image") | Some("audio") => {
            if let Some(a) = c.get("annotations") {
                all_strings(a, &format!("{at}/annotations"), role, parts);
            }
        }
        Some("resource") => {
            push_str(
                parts,
                lookup(c, "/resource/text"),
                format!("{at}/resource/text"),
                role,
            );
        }
        Some("resource_link") => {
            for field in ["uri", "name", "title", "description"] {
                push_str(parts, c.get(field), format!("{at}/{field}"), role);
            }
        }
        _ => all_strings(c, at, role, parts),
    }
}

#[cfg(test)]
mod tests;
