//! `palisade scan`: one JSON verdict per input, in input order.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use palisade_engine::{Inspector, Verdict};
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
    /// With `--jsonl`, the field holding the text.
    #[arg(long, default_value = "text")]
    field: String,
    /// Input file, or `-` for standard input.
    #[arg(default_value = "-")]
    input: String,
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
                Ok(text) => verdict_json(&inspector, &args.policy, &text)?,
                Err(message) => json!({ "error": message, "line": n }),
            };
            serde_json::to_writer(&mut out, &value)?;
            out.write_all(b"\n")?;
        }
    } else {
        let mut bytes = Vec::new();
        BufReader::new(reader).read_to_end(&mut bytes)?;
        let value = match String::from_utf8(bytes) {
            Ok(text) => verdict_json(&inspector, &args.policy, &text)?,
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
}

fn verdict_json(inspector: &Inspector, policy: &str, text: &str) -> anyhow::Result<Value> {
    let v: Verdict = inspector.inspect_text(policy, Direction::Request, text)?;
    let out = ScanOutput {
        action: v.action.as_str(),
        risk_score: v.risk_score,
        findings: v
            .findings
            .iter()
            .map(|m| {
                let f = &m.finding;
                FindingOutput {
                    detector: f.detector.as_str(),
                    kind: &f.kind,
                    severity: f.severity.as_str(),
                    confidence: (f64::from(f.confidence) * 1000.0).round() / 1000.0,
                    start: f.span.start,
                    end: f.span.end,
                }
            })
            .collect(),
        redacted: v.redacted.clone(),
    };
    Ok(serde_json::to_value(out)?)
}
