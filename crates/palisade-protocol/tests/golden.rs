//! Golden tests: every provider format and MCP message type, parsed, split into parts, edited and
//! re-serialised.
//!
//! Each `tests/golden/<case>.in` holds a header line (`<protocol> <side> [<mcp method>]`) and a raw
//! body. The snapshot `<case>.out` lists the parts (role, pointer, text) and then the body with
//! every part's text replaced by `[P<n>]`. Besides matching the snapshot, the test checks that the
//! edited body is still valid JSON whose parts sit at the same pointers with the new texts, and
//! that no byte outside the edited strings changed. `PALISADE_BLESS=1` rewrites the snapshots.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use palisade_protocol::{decode, json, write_back, Location, Protocol, Side};

fn protocol(s: &str) -> Protocol {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .unwrap_or_else(|e| panic!("bad protocol {s}: {e}"))
}

fn run_case(path: &Path) -> Result<(), String> {
    let src = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let (head, body) = src.split_once('\n').ok_or("no header line")?;
    let body = body.strip_suffix('\n').unwrap_or(body).as_bytes();
    let mut words = head.split_whitespace();
    let proto = protocol(words.next().ok_or("no protocol")?);
    let side = match words.next() {
        Some("request") => Side::Request,
        Some("response") => Side::Response,
        other => return Err(format!("bad side {other:?}")),
    };
    let method = words.next();
    let decoded = decode(proto, side, body, method).map_err(|e| e.to_string())?;
    let mut snapshot = String::new();
    let _ = writeln!(
        snapshot,
        "meta: {}",
        serde_json::to_string(&decoded.meta).unwrap_or_default()
    );
    let mut edits = Vec::new();
    for (i, p) in decoded.parts.iter().enumerate() {
        let loc = match &p.location {
            Location::Pointer(ptr) => ptr.clone(),
            Location::Body => "<body>".to_owned(),
        };
        let role = serde_json::to_string(&p.role).unwrap_or_default();
        let _ = writeln!(
            snapshot,
            "{role} {loc} {}",
            serde_json::to_string(&p.text).unwrap_or_default()
        );
        edits.push((p.location.clone(), format!("[P{i}]")));
    }
    let edited = write_back(body, &edits).map_err(|e| e.to_string())?;
    let edited_text = String::from_utf8(edited.clone()).map_err(|e| e.to_string())?;
    let _ = write!(snapshot, "---\n{edited_text}\n");

    if proto != Protocol::Text {
        // Still JSON, parts at the same pointers with the new texts.
        let again =
            decode(proto, side, &edited, method).map_err(|e| format!("edited body: {e}"))?;
        let got: Vec<(Location, String)> = again
            .parts
            .into_iter()
            .map(|p| (p.location, p.text))
            .collect();
        if got != edits {
            return Err(format!("re-decoded parts differ: {got:?}"));
        }
        // Outside the edited strings, bytes are unchanged: compare with the edited strings cut out.
        let cut = |bytes: &[u8]| -> Result<Vec<u8>, String> {
            let spans = json::string_spans(bytes).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            let mut pos = 0;
            for s in spans.iter().filter(|s| {
                edits
                    .iter()
                    .any(|(l, _)| *l == Location::Pointer(s.pointer.clone()))
            }) {
                out.extend_from_slice(&bytes[pos..s.range.start]);
                pos = s.range.end;
            }
            out.extend_from_slice(&bytes[pos..]);
            Ok(out)
        };
        if cut(body)? != cut(&edited)? {
            return Err("bytes outside the edited strings changed".into());
        }
    }

    let out_path = path.with_extension("out");
    if std::env::var_os("PALISADE_BLESS").is_some() {
        fs::write(&out_path, &snapshot).map_err(|e| e.to_string())?;
    }
    let expected = fs::read_to_string(&out_path).unwrap_or_default();
    if expected != snapshot {
        return Err(format!(
            "snapshot differs (PALISADE_BLESS=1 to accept):\n{snapshot}"
        ));
    }
    Ok(())
}

#[test]
fn golden_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut paths: Vec<_> = fs::read_dir(&dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "in"));
    paths.sort();
    assert!(
        paths.len() >= 40,
        "expected the golden cases under {}",
        dir.display()
    );
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| run_case(p).err().map(|e| format!("{}: {e}", p.display())))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
