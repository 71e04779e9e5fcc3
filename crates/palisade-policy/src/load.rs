//! Reading configuration files, with errors that say where.
//!
//! Parsing goes through `serde_path_to_error`, so a refusal carries the field path
//! (`policies.default.input[2].action`), and through the YAML parser's own positions, so it
//! carries the line and column. Checks that relate several fields run after parsing; their errors
//! name the field path and the line where the offending value first appears.

use std::fmt;
use std::path::Path;

use crate::config::Config;
use crate::DEFAULT_POLICY_YAML;

/// A configuration refused, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<default>`, `<string>`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The field path, such as `policies.default.input[2].action`; empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": field `{}`", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Reads and checks a configuration file. The built-in default policy is added when the file
/// defines no policy called `default`.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: None,
        column: None,
        field: String::new(),
        message: format!("cannot read the file: {e}"),
    })?;
    parse_str(&src, &file)
}

/// Parses and checks configuration text; `origin` names it in errors.
pub fn parse_str(src: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut config = parse_raw(src, origin)?;
    if !config.policies.contains_key("default") {
        let default = parse_raw(DEFAULT_POLICY_YAML, "<default>")?;
        if let Some(p) = default.policies.get("default") {
            config.policies.insert("default".to_owned(), p.clone());
        }
    }
    crate::compile::check(&config).map_err(|(field, value, message)| ConfigError {
        file: origin.to_owned(),
        line: locate(src, &value),
        column: None,
        field,
        message,
    })?;
    Ok(config)
}

/// The built-in default configuration.
pub fn default_config() -> Config {
    // The embedded default is checked by a test; an error here would be a build defect.
    parse_str("{}", "<default>").unwrap_or_default()
}

fn parse_raw(src: &str, origin: &str) -> Result<Config, ConfigError> {
    // An empty file is an empty configuration, not an error.
    if src.trim().is_empty() {
        return Ok(Config::default());
    }
    let de = serde_yaml_ng::Deserializer::from_str(src);
    serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let location = inner.location();
        let mut message = inner.to_string();
        // The YAML error repeats the position in its text; keep the message about the problem.
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        // It may also lead with its own view of the path, which the field already gives.
        if let Some((head, tail)) = message.split_once(": ") {
            if !head.contains(' ') && (head.contains('.') || head.contains('[')) {
                message = tail.to_owned();
            }
        }
        ConfigError {
            file: origin.to_owned(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            field: if field == "." { String::new() } else { field },
            message,
        }
    })
}

fn locate(src: &str, value: &str) -> Option<usize> {
    if value.is_empty() {
        return None;
    }
    src.lines().position(|l| l.contains(value)).map(|i| i + 1)
}

#[cfg(test)]
mod tests;
