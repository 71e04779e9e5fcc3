//! Palisade's configuration model, its validation, and the decision logic.
//!
//! Configuration goes through three stages, kept apart on purpose:
//!
//! 1. [`config`]: raw serde structs, one per YAML mapping, with a doc comment on every field and
//!    unknown fields refused;
//! 2. [`load`]: parsing with positions, so that any refusal names the file, line and field path;
//! 3. [`compile`]: a [`CompiledPolicy`] per policy, holding the detector sets for each direction
//!    and turning findings into a [`Decision`].
//!
//! The built-in default policy is an embedded YAML file ([`DEFAULT_POLICY_YAML`]), parsed by the
//! same code as a user's file, so what the documentation shows is what runs.

pub mod alerts;
pub mod authz;
pub mod compile;
pub mod config;
pub mod events;
pub mod govern;
pub mod load;
pub mod schema;

pub use compile::{CompiledConfig, CompiledPolicy, Decision, Direction, MatchedFinding};
pub use config::{Action, Config, FailureMode, PolicyConfig, RedactionOperator, RuleConfig};
pub use load::{load_file, parse_str, ConfigError};

/// The built-in default configuration, as YAML.
pub const DEFAULT_POLICY_YAML: &str = include_str!("default.yaml");
