//! Project tasks.
//!
//! `cargo run --release -p xtask -- train-injection --corpora ../shared/corpora --out
//! crates/palisade-detect/models/prompt_injection.bin` trains the prompt-injection model from the
//! labelled corpora, prints held-out metrics and a reliability table, and writes the weights that
//! are committed and built into the binary. The run is deterministic: folds come from a hash of
//! each row's group, the shuffle from a fixed seed, and nothing runs in parallel.

use std::path::PathBuf;

use anyhow::{bail, Context};

mod synthetic;
mod train;

const USAGE: &str =
    "usage: xtask train-injection [--corpora DIR] [--out FILE] [--epochs N] [--l2 X] [--rate X]";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("train-injection") => {
            let mut corpora = PathBuf::from("../shared/corpora");
            let mut out = PathBuf::from("crates/palisade-detect/models/prompt_injection.bin");
            let mut settings = train::Settings::default();
            let mut it = args.iter().skip(1);
            while let Some(a) = it.next() {
                let mut value = || it.next().with_context(|| format!("{a} needs a value"));
                match a.as_str() {
                    "--corpora" => corpora = value()?.into(),
                    "--out" => out = value()?.into(),
                    "--epochs" => settings.epochs = value()?.parse()?,
                    "--l2" => settings.l2 = value()?.parse()?,
                    "--rate" => settings.rate = value()?.parse()?,
                    other => bail!("unknown argument {other}\n{USAGE}"),
                }
            }
            train::train_injection(&corpora, &out, &settings)
        }
        _ => bail!("{USAGE}"),
    }
}
