//! `palisade eval`: how well, and how fast, the detectors do on labelled corpora.
//!
//! The corpora are the JSONL files described in `shared/corpora/README.md`. Each detector runs on
//! its own, with default options, exactly as `DetectorSet::builtin` builds it. A text counts as
//! flagged when the detector reports any finding on it. Throughput is the bytes of text divided by
//! the time spent normalising and detecting, per detector and source.
//!
//! `--check` turns the targets of the foundation issue into an exit code, so a change that makes
//! detection worse fails the test suite.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use palisade_detect::{builtin_detector, Detector, DetectorId, NormalizeOptions, Normalized, Span};
use serde_json::Value;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The corpora folder.
    #[arg(long, env = "PALISADE_CORPORA", default_value = "../shared/corpora")]
    corpora: PathBuf,
    /// Only these detectors (repeatable). Default: all with labelled data.
    #[arg(long = "detector")]
    detectors: Vec<String>,
    /// Exit non-zero when a target is missed.
    #[arg(long)]
    check: bool,
}

/// One labelled text.
struct Sample {
    text: String,
    positive: bool,
    group: String,
}

/// Counts for one source file and group.
#[derive(Default)]
struct Tally {
    n: usize,
    flagged: usize,
    bytes: usize,
    time: Duration,
}

struct Report {
    out: String,
    misses: Vec<String>,
}

impl Report {
    fn target(&mut self, what: &str, value: f64, op: &str, goal: f64) {
        let ok = match op {
            ">=" => value >= goal,
            _ => value <= goal,
        };
        let _ = writeln!(
            self.out,
            "  target {what}: {:.2} % {op} {:.2} % … {}",
            value * 100.0,
            goal * 100.0,
            if ok { "met" } else { "MISSED" }
        );
        if !ok {
            self.misses.push(format!(
                "{what}: {:.2} % (target {op} {:.2} %)",
                value * 100.0,
                goal * 100.0
            ));
        }
    }
}

pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let wanted: Vec<DetectorId> = if args.detectors.is_empty() {
        vec![
            DetectorId::PromptInjection,
            DetectorId::Pii,
            DetectorId::Secrets,
            DetectorId::WebAttack,
            DetectorId::Exfiltration,
            DetectorId::InvisibleText,
            DetectorId::Url,
        ]
    } else {
        args.detectors
            .iter()
            .map(|d| DetectorId::parse(d).with_context(|| format!("unknown detector `{d}`")))
            .collect::<anyhow::Result<_>>()?
    };
    let dir = &args.corpora;
    anyhow::ensure!(
        dir.join("README.md").exists(),
        "no corpora at {} (set --corpora or PALISADE_CORPORA)",
        dir.display()
    );
    let benign = load_benign(dir)?;
    let mut report = Report {
        out: String::new(),
        misses: Vec::new(),
    };
    for id in wanted {
        let Some(detector) = builtin_detector(id) else {
            continue;
        };
        let _ = writeln!(report.out, "\n## {id}\n");
        match id {
            DetectorId::PromptInjection => {
                let mut attacks = load(dir, "injection/attacks.jsonl", |_| true, "category")?;
                attacks.extend(load(dir, "injection/indirect.jsonl", |_| true, "category")?);
                let (recall, fpr) = classify(&mut report, detector.as_ref(), &attacks, &benign);
                report.target("recall on attacks", recall, ">=", 0.95);
                report.target(
                    "false positives on benign prompts",
                    fpr["benign/prompts.jsonl"],
                    "<=",
                    0.01,
                );
                report.target(
                    "false positives on benign external content",
                    fpr["benign/external_content.jsonl"],
                    "<=",
                    0.01,
                );
            }
            DetectorId::Secrets => {
                let cases = load(
                    dir,
                    "secrets/cases.jsonl",
                    |v| v.get("should_flag") == Some(&Value::Bool(true)),
                    "source",
                )?;
                let (pos, neg): (Vec<Sample>, Vec<Sample>) =
                    cases.into_iter().partition(|s| s.positive);
                let mut negatives =
                    vec![("secrets/cases.jsonl (should_flag=false)".to_owned(), neg)];
                negatives.extend(benign.iter().map(|(k, v)| (k.clone(), clone_samples(v))));
                let (recall, fpr) = classify(&mut report, detector.as_ref(), &pos, &negatives);
                report.target("recall", recall, ">=", 0.95);
                report.target(
                    "false positives on should_flag=false cases",
                    fpr["secrets/cases.jsonl (should_flag=false)"],
                    "<=",
                    0.03,
                );
            }
            DetectorId::WebAttack => {
                let rows = load_crs(dir)?;
                let (pos, neg): (Vec<Sample>, Vec<Sample>) =
                    rows.into_iter().partition(|s| s.positive);
                let mut negatives = vec![("web/crs_regression.jsonl (benign)".to_owned(), neg)];
                negatives.extend(benign.iter().map(|(k, v)| (k.clone(), clone_samples(v))));
                let per_group = classify_groups(&mut report, detector.as_ref(), &pos, &negatives);
                let fpr = per_group.1;
                for (family, prefix) in [
                    ("SQLi", "REQUEST-942"),
                    ("XSS", "REQUEST-941"),
                    ("RCE", "REQUEST-932"),
                    ("LFI", "REQUEST-930"),
                ] {
                    let (hit, n) = per_group
                        .0
                        .iter()
                        .filter(|(g, _)| g.starts_with(prefix))
                        .fold((0, 0), |(h, n), (_, t)| (h + t.flagged, n + t.n));
                    report.target(
                        &format!("CRS {family} attacks detected"),
                        ratio(hit, n),
                        ">=",
                        0.95,
                    );
                }
                report.target(
                    "CRS benign cases flagged",
                    fpr["web/crs_regression.jsonl (benign)"],
                    "<=",
                    0.01,
                );
            }
            DetectorId::Pii => pii_spans(&mut report, detector.as_ref(), dir, &benign)?,
            _ => {
                // No labelled positives: report how often ordinary text is flagged.
                let negatives: Vec<(String, Vec<Sample>)> = benign
                    .iter()
                    .map(|(k, v)| (k.clone(), clone_samples(v)))
                    .collect();
                if id == DetectorId::Exfiltration {
                    let web = load(dir, "injection/attacks.jsonl", |_| true, "category")?
                        .into_iter()
                        .filter(|s| s.group == "web_injection")
                        .collect::<Vec<_>>();
                    classify(&mut report, detector.as_ref(), &web, &negatives);
                } else {
                    classify(&mut report, detector.as_ref(), &[], &negatives);
                }
            }
        }
    }
    print!("{}", report.out);
    if args.check && !report.misses.is_empty() {
        eprintln!("\n{} target(s) missed:", report.misses.len());
        for m in &report.misses {
            eprintln!("  - {m}");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn clone_samples(v: &[Sample]) -> Vec<Sample> {
    v.iter()
        .map(|s| Sample {
            text: s.text.clone(),
            positive: s.positive,
            group: s.group.clone(),
        })
        .collect()
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn read_lines(dir: &Path, file: &str) -> anyhow::Result<Vec<Value>> {
    let path = dir.join(file);
    let body =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

fn load(
    dir: &Path,
    file: &str,
    positive: impl Fn(&Value) -> bool,
    group_field: &str,
) -> anyhow::Result<Vec<Sample>> {
    Ok(read_lines(dir, file)?
        .into_iter()
        .filter_map(|v| {
            let text = v.get("text")?.as_str()?.to_owned();
            let group = v
                .get(group_field)
                .and_then(Value::as_str)
                .map(|g| g.split(':').take(2).collect::<Vec<_>>().join(":"))
                .unwrap_or_default();
            Some(Sample {
                positive: positive(&v),
                text,
                group: format!("{file} {group}"),
            })
        })
        .collect())
}

fn load_benign(dir: &Path) -> anyhow::Result<Vec<(String, Vec<Sample>)>> {
    let mut out = Vec::new();
    for file in [
        "benign/prompts.jsonl",
        "benign/external_content.jsonl",
        "benign/model_outputs.jsonl",
    ] {
        out.push((file.to_owned(), load(dir, file, |_| false, "none")?));
    }
    Ok(out)
}

/// The text scanned for one CRS request: the URI with its query, each header value, and the body,
/// one per line, as a gateway would hand them over.
pub fn crs_text(v: &Value) -> String {
    let mut text = v
        .get("uri")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(headers) = v.get("headers").and_then(Value::as_object) {
        for value in headers.values() {
            if let Some(s) = value.as_str() {
                text.push('\n');
                text.push_str(s);
            }
        }
    }
    if let Some(body) = v.get("body").and_then(Value::as_str) {
        text.push('\n');
        text.push_str(body);
    }
    text
}

fn load_crs(dir: &Path) -> anyhow::Result<Vec<Sample>> {
    Ok(read_lines(dir, "web/crs_regression.jsonl")?
        .into_iter()
        .map(|v| {
            let category = v
                .get("category")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Sample {
                text: crs_text(&v),
                positive: v.get("label").and_then(Value::as_str) == Some("attack"),
                group: category.to_owned(),
            }
        })
        .collect())
}

fn run_detector(
    detector: &dyn Detector,
    text: &str,
    normalize: &NormalizeOptions,
) -> (bool, Duration) {
    let start = Instant::now();
    let input = Normalized::new(text, normalize);
    let mut out = Vec::new();
    detector.detect(&input, &mut out);
    (!out.is_empty(), start.elapsed())
}

fn tally(detector: &dyn Detector, samples: &[Sample]) -> BTreeMap<String, Tally> {
    let normalize = NormalizeOptions::default();
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    for s in samples {
        let (flagged, time) = run_detector(detector, &s.text, &normalize);
        let t = groups.entry(s.group.clone()).or_default();
        t.n += 1;
        t.flagged += usize::from(flagged);
        t.bytes += s.text.len();
        t.time += time;
    }
    groups
}

fn mbps(bytes: usize, time: Duration) -> f64 {
    if time.is_zero() {
        0.0
    } else {
        bytes as f64 / time.as_secs_f64() / 1e6
    }
}

/// Prints per-group detection and per-source false positives; returns overall recall and the
/// false-positive rate per negative source.
fn classify(
    report: &mut Report,
    detector: &dyn Detector,
    positives: &[Sample],
    negatives: &[(String, Vec<Sample>)],
) -> (f64, BTreeMap<String, f64>) {
    let (groups, fpr) = classify_groups(report, detector, positives, negatives);
    let (hit, n) = groups
        .values()
        .fold((0, 0), |(h, n), t| (h + t.flagged, n + t.n));
    (ratio(hit, n), fpr)
}

fn classify_groups(
    report: &mut Report,
    detector: &dyn Detector,
    positives: &[Sample],
    negatives: &[(String, Vec<Sample>)],
) -> (BTreeMap<String, Tally>, BTreeMap<String, f64>) {
    let out = &mut report.out;
    let groups = tally(detector, positives);
    let (mut tp, mut pos, mut bytes, mut time) = (0, 0, 0, Duration::ZERO);
    if !groups.is_empty() {
        let _ = writeln!(
            out,
            "| positives (source, group) | n | detected | recall | MB/s |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
        for (g, t) in &groups {
            let _ = writeln!(
                out,
                "| {g} | {} | {} | {:.2} % | {:.1} |",
                t.n,
                t.flagged,
                ratio(t.flagged, t.n) * 100.0,
                mbps(t.bytes, t.time)
            );
            tp += t.flagged;
            pos += t.n;
            bytes += t.bytes;
            time += t.time;
        }
    }
    let _ = writeln!(
        out,
        "\n| negatives (source) | n | flagged | false-positive rate | MB/s |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
    let (mut fp, mut neg) = (0, 0);
    let mut fpr = BTreeMap::new();
    for (name, samples) in negatives {
        let t = tally(detector, samples)
            .into_values()
            .fold(Tally::default(), |mut a, t| {
                a.n += t.n;
                a.flagged += t.flagged;
                a.bytes += t.bytes;
                a.time += t.time;
                a
            });
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {:.2} % | {:.1} |",
            t.n,
            t.flagged,
            ratio(t.flagged, t.n) * 100.0,
            mbps(t.bytes, t.time)
        );
        fp += t.flagged;
        neg += t.n;
        bytes += t.bytes;
        time += t.time;
        fpr.insert(name.clone(), ratio(t.flagged, t.n));
    }
    let recall = ratio(tp, pos);
    let fpr_all = ratio(fp, neg);
    if pos > 0 {
        let _ = writeln!(
            out,
            "\nrecall {:.2} %, false-positive rate {:.2} %, precision {:.2} %, balanced accuracy {:.2} %, throughput {:.1} MB/s",
            recall * 100.0,
            fpr_all * 100.0,
            ratio(tp, tp + fp) * 100.0,
            (recall + 1.0 - fpr_all) / 2.0 * 100.0,
            mbps(bytes, time)
        );
    } else {
        let _ = writeln!(
            out,
            "\nfalse-positive rate {:.2} %, throughput {:.1} MB/s",
            fpr_all * 100.0,
            mbps(bytes, time)
        );
    }
    (groups, fpr)
}

/// The corpus's entity names for the `pii` kinds the targets cover.
const PII_ENTITIES: [(&str, &str); 6] = [
    ("EMAIL_ADDRESS", "email"),
    ("PHONE_NUMBER", "phone"),
    ("CREDIT_CARD", "credit_card"),
    ("IBAN_CODE", "iban"),
    ("US_SSN", "us_ssn"),
    ("IP_ADDRESS", "ip_address"),
];

/// Converts a labelled span to bytes: the corpus gives character offsets.
fn byte_span(text: &str, start: usize, end: usize, value: &str) -> Option<Span> {
    if text.get(start..end) == Some(value) {
        return Some(Span::new(start, end));
    }
    let mut idx: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    idx.push(text.len());
    let s = *idx.get(start)?;
    let e = *idx.get(end)?;
    Some(Span::new(s, e))
}

fn pii_spans(
    report: &mut Report,
    detector: &dyn Detector,
    dir: &Path,
    benign: &[(String, Vec<Sample>)],
) -> anyhow::Result<()> {
    let rows = read_lines(dir, "pii/presidio_synth.jsonl")?;
    let normalize = NormalizeOptions::default();
    // kind → (labelled, labelled found, findings, findings on a labelled span)
    let mut stats: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    let (mut bytes, mut time) = (0usize, Duration::ZERO);
    for v in &rows {
        let Some(text) = v.get("text").and_then(Value::as_str) else {
            continue;
        };
        let labels: Vec<(&str, Span)> = v
            .get("spans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let entity = s.get("entity")?.as_str()?;
                let kind = PII_ENTITIES.iter().find(|(e, _)| *e == entity)?.1;
                let span = byte_span(
                    text,
                    s.get("start")?.as_u64()? as usize,
                    s.get("end")?.as_u64()? as usize,
                    s.get("value")?.as_str()?,
                )?;
                Some((kind, span))
            })
            .collect();
        let start = Instant::now();
        let input = Normalized::new(text, &normalize);
        let mut found = Vec::new();
        detector.detect(&input, &mut found);
        time += start.elapsed();
        bytes += text.len();
        for (kind, span) in &labels {
            let e = stats.entry(kind).or_default();
            e[0] += 1;
            if found
                .iter()
                .any(|f| f.kind == *kind && f.span.overlaps(span))
            {
                e[1] += 1;
            }
        }
        for f in &found {
            let Some((_, kind)) = PII_ENTITIES.iter().find(|(_, k)| f.kind == *k) else {
                continue;
            };
            let e = stats.entry(kind).or_default();
            e[2] += 1;
            if labels.iter().any(|(k, s)| k == kind && s.overlaps(&f.span)) {
                e[3] += 1;
            }
        }
    }
    let out = &mut report.out;
    let _ = writeln!(out, "| entity (pii/presidio_synth.jsonl) | labelled | span recall | findings | span precision |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
    let mut checks = Vec::new();
    for (_, kind) in PII_ENTITIES {
        let [n, hit, f, good] = stats.get(kind).copied().unwrap_or_default();
        let (r, p) = (ratio(hit, n), if f == 0 { 1.0 } else { ratio(good, f) });
        let _ = writeln!(
            out,
            "| {kind} | {n} | {:.2} % | {f} | {:.2} % |",
            r * 100.0,
            p * 100.0
        );
        checks.push((kind, r, p));
    }
    let _ = writeln!(out, "\nthroughput {:.1} MB/s", mbps(bytes, time));
    for (kind, r, p) in checks {
        report.target(&format!("{kind} span recall"), r, ">=", 0.98);
        report.target(&format!("{kind} span precision"), p, ">=", 0.95);
    }
    let _ = writeln!(report.out);
    classify(report, detector, &[], benign);
    Ok(())
}
