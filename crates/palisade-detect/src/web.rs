//! Web attacks.

use crate::{Detector, DetectorId, Finding, Normalized};

/// Web attacks.
#[derive(Debug, Default)]
pub struct WebAttackDetector;

impl Detector for WebAttackDetector {
    fn id(&self) -> DetectorId {
        DetectorId::WebAttack
    }

    fn detect(&self, _input: &Normalized<'_>, _out: &mut Vec<Finding>) {}
}
