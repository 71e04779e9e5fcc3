//! Prompt injection.

use crate::{Detector, DetectorId, Finding, Normalized};

/// Prompt injection.
#[derive(Debug, Default)]
pub struct PromptInjectionDetector;

impl Detector for PromptInjectionDetector {
    fn id(&self) -> DetectorId {
        DetectorId::PromptInjection
    }

    fn detect(&self, _input: &Normalized<'_>, _out: &mut Vec<Finding>) {}
}
