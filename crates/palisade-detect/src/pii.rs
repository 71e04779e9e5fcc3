//! Personal data.

use crate::{Detector, DetectorId, Finding, Normalized};

/// Personal data.
#[derive(Debug, Default)]
pub struct PiiDetector;

impl Detector for PiiDetector {
    fn id(&self) -> DetectorId {
        DetectorId::Pii
    }

    fn detect(&self, _input: &Normalized<'_>, _out: &mut Vec<Finding>) {}
}
