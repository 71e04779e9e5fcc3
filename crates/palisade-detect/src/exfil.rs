//! Exfiltration.

use crate::{Detector, DetectorId, Finding, Normalized};

/// Exfiltration.
#[derive(Debug, Default)]
pub struct ExfiltrationDetector;

impl Detector for ExfiltrationDetector {
    fn id(&self) -> DetectorId {
        DetectorId::Exfiltration
    }

    fn detect(&self, _input: &Normalized<'_>, _out: &mut Vec<Finding>) {}
}
