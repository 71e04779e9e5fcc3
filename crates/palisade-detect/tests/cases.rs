//! Data-driven detector cases: `testdata/<detector id>.jsonl`, one case a line.
//!
//! ```json
//! {"text": "mail me at a@b.io", "expect": [{"kind": "email", "match": "a@b.io"}]}
//! {"text": "nothing to see", "expect": []}
//! ```
//!
//! Every finding of the file's detector must be expected (same kind, and the same matched text when
//! `match` is given), and every expectation must be found. `"expect": []` is a must-not-flag case.
//! The built-in detector set runs, so cases see the same normalisation as production.

use std::fs;
use std::path::Path;

use palisade_detect::{DetectorId, DetectorSet};
use serde_json::Value;

struct Expectation {
    kind: String,
    matched: Option<String>,
}

#[test]
fn detector_cases_from_testdata() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let set = DetectorSet::builtin();
    let mut failures = Vec::new();
    let mut cases = 0usize;
    let mut files: Vec<_> = fs::read_dir(&dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for path in files {
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let Some(detector) = DetectorId::parse(&stem) else {
            failures.push(format!(
                "{}: file name is not a detector id",
                path.display()
            ));
            continue;
        };
        let body = fs::read_to_string(&path).unwrap_or_default();
        for (n, line) in body.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with("//") {
                continue;
            }
            let at = format!("{}:{}", path.display(), n + 1);
            let case: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{at}: bad JSON: {e}"));
                    continue;
                }
            };
            let Some(text) = case.get("text").and_then(Value::as_str) else {
                failures.push(format!("{at}: no `text`"));
                continue;
            };
            let expected: Vec<Expectation> = case
                .get("expect")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|e| Expectation {
                            kind: e
                                .get("kind")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                            matched: e.get("match").and_then(Value::as_str).map(str::to_owned),
                        })
                        .collect()
                })
                .unwrap_or_default();
            cases += 1;
            let found: Vec<(String, String)> = set
                .scan(text)
                .into_iter()
                .filter(|f| f.detector == detector)
                .map(|f| {
                    (
                        f.kind.to_string(),
                        text.get(f.span.start..f.span.end)
                            .unwrap_or("<bad span>")
                            .to_owned(),
                    )
                })
                .collect();
            let fits = |e: &Expectation, f: &(String, String)| {
                e.kind == f.0 && e.matched.as_ref().is_none_or(|m| *m == f.1)
            };
            for e in &expected {
                if !found.iter().any(|f| fits(e, f)) {
                    failures.push(format!(
                        "{at}: missed {} {:?}; found {:?}",
                        e.kind, e.matched, found
                    ));
                }
            }
            for f in &found {
                if detector != DetectorId::Custom
                    && !palisade_detect::known_kinds(detector).contains(&f.0.as_str())
                {
                    failures.push(format!(
                        "{at}: kind {} is not in known_kinds({detector})",
                        f.0
                    ));
                }
                if !expected.iter().any(|e| fits(e, f)) {
                    failures.push(format!("{at}: unexpected {} {:?}", f.0, f.1));
                }
            }
        }
    }
    assert!(cases > 0, "no cases found under {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
