//! Invisible text.

use crate::{Detector, DetectorId, Finding, Normalized};

/// Invisible text.
#[derive(Debug, Default)]
pub struct InvisibleTextDetector;

impl Detector for InvisibleTextDetector {
    fn id(&self) -> DetectorId {
        DetectorId::InvisibleText
    }

    fn detect(&self, _input: &Normalized<'_>, _out: &mut Vec<Finding>) {}
}
