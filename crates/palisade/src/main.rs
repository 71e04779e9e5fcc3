//! `palisade`: the command line.
//!
//! Thin by design: each subcommand parses its arguments and calls into the library crates, so
//! the same code serves the command line, tests and (later) the servers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod eval;
mod scan;
mod serve;

/// mimalloc: the proxy allocates and frees small buffers per request on several threads, where
/// it costs measurably less CPU than the system allocator (docs/performance.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Palisade: a guardrail gateway for AI agents.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Serve(serve::ServeArgs),
    /// Run the proxy in front of a small local MCP server and a fake chat upstream.
    Demo(demo::DemoArgs),
    /// Scan text or JSON lines with the detectors and a policy; print one JSON verdict per input.
    Scan(scan::ScanArgs),
    /// Measure the detectors on labelled corpora: recall, false positives, spans, throughput.
    Eval(eval::EvalArgs),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file; print what is wrong with file, line and field.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
    /// Print the built-in default configuration.
    Default,
    /// Print the configuration's JSON Schema.
    Schema,
    /// Print the SHA-256 of an admin API key, as `admin.keys[].sha256` wants it. The key is read
    /// from standard input so it stays out of the shell history.
    HashKey,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Scan(args) => scan::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Config { command } => match command {
            ConfigCommand::Check { file } => match palisade_policy::load_file(&file) {
                Ok(config) => {
                    let names: Vec<&String> = config.policies.keys().collect();
                    println!(
                        "{}: ok ({} policies: {names:?})",
                        file.display(),
                        names.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
            },
            ConfigCommand::HashKey => {
                let mut key = String::new();
                match std::io::stdin().read_line(&mut key) {
                    Ok(_) => {
                        use sha2::Digest;
                        let digest = sha2::Sha256::digest(key.trim().as_bytes());
                        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                        println!("{hex}");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Err(anyhow::anyhow!("cannot read the key: {e}")),
                }
            }
            ConfigCommand::Schema => {
                let schema = palisade_policy::schema::json_schema();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&schema).unwrap_or_default()
                );
                Ok(ExitCode::SUCCESS)
            }
            ConfigCommand::Default => {
                print!("{}", palisade_policy::DEFAULT_POLICY_YAML);
                Ok(ExitCode::SUCCESS)
            }
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
