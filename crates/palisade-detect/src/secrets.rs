//! Credentials.

use crate::{Detector, DetectorId, Finding, Normalized};

/// Credentials.
#[derive(Debug, Default)]
pub struct SecretsDetector;

impl Detector for SecretsDetector {
    fn id(&self) -> DetectorId {
        DetectorId::Secrets
    }

    fn detect(&self, _input: &Normalized<'_>, _out: &mut Vec<Finding>) {}
}
