//! `palisade scan`: one JSON verdict per input, in input order.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use clap::ValueEnum;
use palisade_engine::{Inspector, Location, Protocol};
use palisade_policy::Direction;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Configuration file (YAML). Default: the built-in default policy.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Policy to apply.
    #[arg(long, default_value = "default")]
    policy: String,
    /// Treat the input as JSON lines and scan the string at `--field` of each.
    #[arg(long)]
    jsonl: bool,
    /// With `--jsonl`, the field holding the text (or, with `--protocol`, the raw body).
    #[arg(long, default_value = "text")]
    field: String,
    /// How to read each input: `text` scans it whole; the others decode the body into parts
    /// (prompts, tool arguments, tool results, …) and report where each finding is.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Text)]
    protocol: ProtocolArg,
    /// Which way the input travels: `request` applies the policy's input rules, `response` its
    /// output rules.
    #[arg(long, value_enum, default_value_t = DirectionArg::Request)]
    direction: DirectionArg,
    /// Input file, or `-` for standard input.
    #[arg(default_value = "-")]
    input: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProtocolArg {
    Auto,
    Text,
    Json,
    Mcp,
    Openai,
    Anthropic,
    Gemini,
    Cohere,
    Bedrock,
}

impl ProtocolArg {
    fn protocol(self) -> Protocol {
        match self {
            ProtocolArg::Auto => Protocol::Auto,
            ProtocolArg::Text => Protocol::Text,
            ProtocolArg::Json => Protocol::Json,
            ProtocolArg::Mcp => Protocol::Mcp,
            ProtocolArg::Openai => Protocol::Openai,
            ProtocolArg::Anthropic => Protocol::Anthropic,
            ProtocolArg::Gemini => Protocol::Gemini,
            ProtocolArg::Cohere => Protocol::Cohere,
            ProtocolArg::Bedrock => Protocol::Bedrock,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DirectionArg {
    Request,
    Response,
}

pub fn run(args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => palisade_policy::load_file(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => palisade_policy::load::default_config(),
    };
    let inspector = Inspector::new(&config)?;
    inspector.policy(&args.policy)?;
    let reader: Box<dyn Read> = if args.input == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(&args.input).with_context(|| format!("cannot open {}", args.input))?)
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.jsonl {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        let mut n = 0usize;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            n += 1;
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() {
                continue;
            }
            let value = match text_of_line(trimmed, &args.field) {
                Ok(text) => verdict_json(&inspector, args, &text)?,
                Err(message) => json!({ "error": message, "line": n }),
            };
            serde_json::to_writer(&mut out, &value)?;
            out.write_all(b"\n")?;
        }
    } else {
        let mut bytes = Vec::new();
        BufReader::new(reader).read_to_end(&mut bytes)?;
        let value = match String::from_utf8(bytes) {
            Ok(text) => verdict_json(&inspector, args, &text)?,
            Err(e) => {
                json!({ "error": format!("input is not UTF-8 (at byte {})", e.utf8_error().valid_up_to()) })
            }
        };
        serde_json::to_writer(&mut out, &value)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn text_of_line(line: &[u8], field: &str) -> Result<String, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    match v.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "field `{field}` is {}, not a string",
            kind_of(other)
        )),
        None => Err(format!("no field `{field}`")),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One line of `scan` output, fields in the documented order.
#[derive(Serialize)]
struct ScanOutput<'a> {
    action: &'static str,
    risk_score: u8,
    findings: Vec<FindingOutput<'a>>,
    redacted: Option<String>,
}

#[derive(Serialize)]
struct FindingOutput<'a> {
    detector: &'static str,
    kind: &'a str,
    severity: &'static str,
    confidence: f64,
    start: usize,
    end: usize,
    /// With `--protocol`: the JSON Pointer of the part, and the part's role. Offsets are then
    /// byte offsets into that part's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

fn finding<'a>(
    f: &'a palisade_detect::Finding,
    location: Option<String>,
    role: Option<String>,
) -> FindingOutput<'a> {
    FindingOutput {
        detector: f.detector.as_str(),
        kind: &f.kind,
        severity: f.severity.as_str(),
        confidence: (f64::from(f.confidence) * 1000.0).round() / 1000.0,
        start: f.span.start,
        end: f.span.end,
        location,
        role,
    }
}

fn verdict_json(inspector: &Inspector, args: &ScanArgs, text: &str) -> anyhow::Result<Value> {
    let direction = match args.direction {
        DirectionArg::Request => Direction::Request,
        DirectionArg::Response => Direction::Response,
    };
    let protocol = args.protocol.protocol();
    let out = if protocol == Protocol::Text {
        let v = inspector.inspect_text(&args.policy, direction, text)?;
        serde_json::to_value(ScanOutput {
            action: v.action.as_str(),
            risk_score: v.risk_score,
            findings: v
                .findings
                .iter()
                .map(|m| finding(&m.finding, None, None))
                .collect(),
            redacted: v.redacted.clone(),
        })?
    } else {
        let v = inspector.inspect_body(&args.policy, direction, protocol, text.as_bytes(), None)?;
        let mut value = serde_json::to_value(ScanOutput {
            action: v.action.as_str(),
            risk_score: v.risk_score,
            findings: v
                .findings
                .iter()
                .map(|l| {
                    let location = match &l.location {
                        Location::Pointer(p) => p.clone(),
                        Location::Body => String::new(),
                    };
                    let role = serde_json::to_value(l.role)
                        .ok()
                        .and_then(|r| r.as_str().map(str::to_owned));
                    finding(&l.matched.finding, Some(location), role)
                })
                .collect(),
            redacted: v
                .body
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        })?;
        if let (Some(reason), Some(obj)) = (
            v.failure.map(|_| v.reasons.join("; ")),
            value.as_object_mut(),
        ) {
            obj.insert("error".to_owned(), json!(reason));
        }
        value
    };
    Ok(out)
}
