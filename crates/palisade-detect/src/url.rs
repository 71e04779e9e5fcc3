//! URLs.

use crate::{Detector, DetectorId, Finding, Normalized};

/// URLs.
#[derive(Debug, Default)]
pub struct UrlDetector;

impl Detector for UrlDetector {
    fn id(&self) -> DetectorId {
        DetectorId::Url
    }

    fn detect(&self, _input: &Normalized<'_>, _out: &mut Vec<Finding>) {}
}
