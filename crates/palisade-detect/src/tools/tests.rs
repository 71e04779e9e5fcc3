use super::*;

fn cases(file: &str) -> Vec<Value> {
    let path = format!(
        "{}/testdata/tool_poisoning/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn flagged(def: &Value) -> Vec<ToolFinding> {
    analyze_definition(def)
        .into_iter()
        .filter(|f| f.severity >= Severity::High)
        .collect()
}

/// Every poisoned definition built from the public attack classes is flagged, with the kind the
/// case names among its findings.
#[test]
fn poisoned_definitions_are_flagged_with_their_kind() {
    let all = cases("poisoned.jsonl");
    assert!(all.len() >= 40);
    let mut missed = Vec::new();
    for c in &all {
        let found = flagged(&c["definition"]);
        let want = c["expect"].as_str().unwrap_or("");
        if !found.iter().any(|f| f.kind == want) {
            missed.push(format!("{}: want {want}, got {:?}", c["id"], found));
        }
    }
    assert!(missed.is_empty(), "missed:\n{}", missed.join("\n"));
}

/// The reference MCP servers' real tool lists raise no finding at all.
#[test]
fn reference_servers_raise_nothing() {
    let mut noisy = Vec::new();
    for c in cases("reference_tools.jsonl") {
        let found = analyze_definition(&c["tool"]);
        if !found.is_empty() {
            noisy.push(format!(
                "{} {}: {:?}",
                c["source"], c["tool"]["name"], found
            ));
        }
    }
    assert!(noisy.is_empty(), "false positives:\n{}", noisy.join("\n"));
}

/// The 1,033 published benign tools (shared corpus, when present): at most 0.5 % flagged.
#[test]
fn published_benign_tools_false_positive_rate() {
    let path = std::env::var("PALISADE_CORPORA")
        .unwrap_or_else(|_| format!("{}/../../../shared/corpora", env!("CARGO_MANIFEST_DIR")));
    let file = format!("{path}/mcp/published_tools.jsonl");
    let Ok(text) = std::fs::read_to_string(&file) else {
        eprintln!("{file} not found: published-tools false-positive rate not measured");
        return;
    };
    let mut total = 0;
    let mut fp = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).unwrap_or_default();
        total += 1;
        let found = flagged(&row["tool"]);
        if !found.is_empty() {
            fp.push(format!(
                "{} {}: {:?}",
                row["source"], row["tool"]["name"], found
            ));
        }
    }
    eprintln!(
        "tool_poisoning false positives on published tools: {}/{total}\n{}",
        fp.len(),
        fp.join("\n")
    );
    assert!(total >= 1_000);
    assert!(fp.len() * 200 <= total, "{} of {total} flagged", fp.len());
}

#[test]
fn benign_phrasing_is_not_a_finding() {
    for d in [
        "IMPORTANT: ALWAYS use the `jq` param to filter. Do not request more than 100 rows.",
        "Use list_tables before calling run_query, so you know the schema.",
        "Read the contents of a file from the allowed directories.",
        "Sends an email to the given recipient. Do not use for bulk mail.",
        "Returns the user's API key status (never the key itself).",
        "Ignore files matching .gitignore patterns.",
    ] {
        let def = serde_json::json!({"name": "t", "description": d});
        assert!(flagged(&def).is_empty(), "{d}: {:?}", flagged(&def));
    }
}
