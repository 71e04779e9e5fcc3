//! Project tasks.
//!
//! `cargo run --release -p xtask -- train-injection [--corpora DIR] [--out FILE]` trains the
//! prompt-injection model from the labelled corpora and writes its weights (committed, and built
//! into the binary). The run is deterministic: a fixed split (a hash of each text), a fixed seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use palisade_detect::injection::model::{self, Example, Model};
use palisade_detect::normalize::fold;
use serde_json::Value;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("train-injection") => {
            let mut corpora = PathBuf::from("../shared/corpora");
            let mut out = PathBuf::from("crates/palisade-detect/models/prompt_injection.bin");
            let mut it = args.iter().skip(1);
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--corpora" => corpora = it.next().context("--corpora needs a folder")?.into(),
                    "--out" => out = it.next().context("--out needs a file")?.into(),
                    other => bail!("unknown argument {other}"),
                }
            }
            train_injection(&corpora, &out)
        }
        _ => bail!("usage: xtask train-injection [--corpora DIR] [--out FILE]"),
    }
}

struct Row {
    text: String,
    positive: bool,
    group: String,
}

fn read(dir: &Path, file: &str, positive: bool, group_field: &str) -> anyhow::Result<Vec<Row>> {
    let path = dir.join(file);
    let body = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        if let Some(t) = v.get("text").and_then(Value::as_str) {
            let g = v.get(group_field).and_then(Value::as_str).unwrap_or(file);
            rows.push(Row {
                text: t.to_owned(),
                positive,
                group: format!("{file}:{g}"),
            });
        }
    }
    Ok(rows)
}

/// Benign tool descriptions: imperative, full of "MUST" and "do not", and not attacks.
fn tools(dir: &Path) -> anyhow::Result<Vec<Row>> {
    let path = dir.join("mcp/published_tools.jsonl");
    let body = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        if let Some(d) = v.pointer("/tool/description").and_then(Value::as_str) {
            rows.push(Row {
                text: d.to_owned(),
                positive: false,
                group: "mcp/published_tools.jsonl".into(),
            });
        }
    }
    Ok(rows)
}

fn fnv64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn train_injection(corpora: &Path, out: &Path) -> anyhow::Result<()> {
    let mut rows = read(corpora, "injection/attacks.jsonl", true, "category")?;
    rows.extend(read(corpora, "injection/indirect.jsonl", true, "category")?);
    rows.extend(read(corpora, "benign/prompts.jsonl", false, "source")?);
    rows.extend(read(
        corpora,
        "benign/external_content.jsonl",
        false,
        "source",
    )?);
    rows.extend(read(
        corpora,
        "benign/model_outputs.jsonl",
        false,
        "source",
    )?);
    rows.extend(tools(corpora)?);
    // An indirect attack is a benign document with an instruction planted in it, and the benign
    // documents are in the corpus too: train on what was planted, not on the document around it,
    // or the model learns that ordinary emails are attacks.
    let contexts: Vec<String> = rows
        .iter()
        .filter(|r| r.group.starts_with("benign/external_content"))
        .map(|r| r.text.clone())
        .collect();
    for r in rows
        .iter_mut()
        .filter(|r| r.group.starts_with("injection/indirect"))
    {
        if let Some(c) = contexts
            .iter()
            .filter(|c| c.len() > 40 && r.text.contains(c.as_str()))
            .max_by_key(|c| c.len())
        {
            let planted = r.text.replacen(c.as_str(), " ", 1);
            if planted.trim().len() > 10 {
                r.text = planted;
            }
        }
    }
    // A fifth of the data, chosen by a hash of the text, is held out for calibration and the
    // report; the rest trains.
    let (held, train): (Vec<&Row>, Vec<&Row>) =
        rows.iter().partition(|r| fnv64(&r.text).is_multiple_of(5));
    let ex = |r: &&Row| Example {
        folded: fold(&r.text),
        positive: r.positive,
    };
    let train_ex: Vec<Example> = train.iter().map(ex).collect();
    let held_ex: Vec<Example> = held.iter().map(ex).collect();
    println!(
        "training on {} texts, holding out {}",
        train_ex.len(),
        held_ex.len()
    );
    let m: Model = model::train(&train_ex, &held_ex, 6, 0.002);
    println!(
        "platt a={:.3} b={:.3} threshold={:.3}",
        m.platt_a, m.platt_b, m.threshold
    );

    // Held-out report, per group, and a reliability table.
    let mut scratch = Vec::new();
    let mut groups: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut bins = [(0usize, 0usize, 0f32); 10];
    for (r, e) in held.iter().zip(&held_ex) {
        let p = m.probability(&e.folded, &mut scratch);
        let g = groups
            .entry(format!(
                "{} ({})",
                r.group,
                if r.positive { "attack" } else { "benign" }
            ))
            .or_default();
        g.0 += 1;
        g.1 += usize::from(p >= m.threshold);
        let b = &mut bins[((p * 10.0) as usize).min(9)];
        b.0 += 1;
        b.1 += usize::from(r.positive);
        b.2 += p;
    }
    println!(
        "\nheld-out flag rate by group (threshold {:.3}):",
        m.threshold
    );
    for (g, (n, f)) in &groups {
        println!(
            "  {g:70} {f:5}/{n:<5} {:6.2} %",
            100.0 * *f as f64 / *n as f64
        );
    }
    println!("\nreliability (held out): predicted → observed");
    for (i, (n, pos, sum)) in bins.iter().enumerate() {
        if *n > 0 {
            println!(
                "  [{:.1}, {:.1}) n={n:5} mean predicted {:.3} observed {:.3}",
                i as f32 / 10.0,
                (i + 1) as f32 / 10.0,
                sum / *n as f32,
                *pos as f32 / *n as f32
            );
        }
    }
    let bytes = m.to_bytes();
    std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    println!("\nwrote {} ({} bytes)", out.display(), bytes.len());
    Ok(())
}
