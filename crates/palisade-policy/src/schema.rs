//! The JSON Schema of the configuration and the reference page made from it.
//!
//! Both come from the structs in [`crate::config`] and their doc comments, and a test compares them
//! with the checked-in `docs/config.schema.json` and `docs/configuration.md`, so the documentation
//! cannot drift from the code. `PALISADE_BLESS=1 cargo test -p palisade-policy` rewrites them.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::config::Config;

/// The configuration's JSON Schema.
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Config)).unwrap_or(Value::Null)
}

/// The configuration reference, as Markdown.
pub fn reference_markdown() -> String {
    let schema = json_schema();
    let empty = Map::new();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the configuration structs (`crates/palisade-policy/src/config.rs`); do not\n\
         edit by hand. Regenerate with `PALISADE_BLESS=1 cargo test -p palisade-policy`. The JSON\n\
         Schema is [config.schema.json](config.schema.json); `palisade config default` prints the\n\
         built-in default policy.\n\n\
         Every mapping refuses unknown fields: a typo is an error naming the file, line and field.\n",
    );
    section(&mut out, "Config", &schema);
    for (name, def) in defs {
        section(&mut out, name, def);
    }
    out
}

fn section(out: &mut String, name: &str, def: &Value) {
    let _ = write!(out, "\n## {name}\n\n");
    if let Some(d) = def.get("description").and_then(Value::as_str) {
        let _ = write!(out, "{}\n\n", one_paragraph(d));
    }
    if let Some(props) = def.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = def
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str("| field | type | default | description |\n| --- | --- | --- | --- |\n");
        for (field, p) in props {
            let default = match p.get("default") {
                Some(v) => format!("`{v}`"),
                None if required.contains(&field.as_str()) => "required".to_owned(),
                None => "—".to_owned(),
            };
            let desc = p
                .get("description")
                .and_then(Value::as_str)
                .map(one_paragraph)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{field}` | {} | {default} | {} |",
                type_of(p),
                cell(&desc)
            );
        }
    }
    let variants = def
        .get("oneOf")
        .or_else(|| def.get("anyOf"))
        .and_then(Value::as_array);
    if let Some(variants) = variants {
        out.push_str("| value | meaning |\n| --- | --- |\n");
        for v in variants {
            let values: Vec<String> = if let Some(c) = v.get("const") {
                vec![c.to_string()]
            } else if let Some(e) = v.get("enum").and_then(Value::as_array) {
                e.iter().map(Value::to_string).collect()
            } else {
                vec![type_of(v)]
            };
            let desc = v
                .get("description")
                .and_then(Value::as_str)
                .map(one_paragraph)
                .unwrap_or_default();
            for value in values {
                let _ = writeln!(out, "| `{}` | {} |", value.trim_matches('"'), cell(&desc));
            }
        }
    } else if let Some(e) = def.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = e
            .iter()
            .map(|v| format!("`{}`", v.to_string().trim_matches('"')))
            .collect();
        let _ = writeln!(out, "One of {}.", values.join(", "));
    }
}

fn one_paragraph(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn type_of(p: &Value) -> String {
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[{name}](#{})", name.to_ascii_lowercase());
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = p.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .map(type_of)
                .collect();
            return parts.join(" or ");
        }
    }
    let ty = match p.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => String::from("any"),
    };
    match ty.as_str() {
        "array" => format!(
            "list of {}",
            p.get("items").map(type_of).unwrap_or_default()
        ),
        "object" => match p.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map of name → {}", type_of(v)),
            _ => "mapping".to_owned(),
        },
        _ => ty,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn docs() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
    }

    /// The checked-in reference and schema match the structs. Set `PALISADE_BLESS=1` to rewrite.
    #[test]
    fn checked_in_docs_match_the_structs() {
        let md = reference_markdown();
        let schema = serde_json::to_string_pretty(&json_schema()).unwrap_or_default() + "\n";
        let md_path = docs().join("configuration.md");
        let schema_path = docs().join("config.schema.json");
        if std::env::var_os("PALISADE_BLESS").is_some() {
            std::fs::write(&md_path, &md).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(&schema_path, &schema).unwrap_or_else(|e| panic!("{e}"));
        }
        let on_disk = std::fs::read_to_string(&md_path).unwrap_or_default();
        assert!(
            on_disk == md,
            "docs/configuration.md is stale: run PALISADE_BLESS=1 cargo test -p palisade-policy"
        );
        let on_disk = std::fs::read_to_string(&schema_path).unwrap_or_default();
        assert!(
            on_disk == schema,
            "docs/config.schema.json is stale: run PALISADE_BLESS=1 cargo test -p palisade-policy"
        );
    }

    #[test]
    fn reference_covers_every_field() {
        let md = reference_markdown();
        for field in [
            "failure_mode",
            "min_severity",
            "min_confidence",
            "redaction",
            "mask_keep_last",
            "keywords",
            "regex",
            "max_decode_depth",
        ] {
            assert!(md.contains(&format!("`{field}`")), "{field} missing");
        }
    }
}
