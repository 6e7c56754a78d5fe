//! The report's splits of the training set, as index ranges a user can change.
//!
//! The lab report cut each training set into "chunks" and used some for unsupervised
//! pretraining and one or two for the labelled classifier:
//!
//! - MNIST: 10 chunks of 6,000; pretrain on chunks 0-3 (`0..24000`), classify on chunk 4
//!   (`24000..30000`).
//! - CIFAR-10: the five batches of 10,000; pretrain on batches 1-4 (`0..40000`), classify on
//!   batches 1-2 (`0..20000`) — the labelled set overlaps the pretraining set on purpose.
//!
//! The test set is always the dataset's whole test split. Ranges parse from strings such as
//! `"0..24000"` or `"24_000..30_000"`, so a command line can change them.

use std::ops::Range;

use crate::error::{DataError, Result};
use crate::ImageSet;

/// Which training images pretrain the encoder and which train the classifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Images used (without labels) for contrastive pretraining.
    pub pretrain: Range<usize>,
    /// Images used with their labels for the linear classifier.
    pub labeled: Range<usize>,
}

impl Split {
    /// MNIST as in the report: pretrain `0..24000` (chunks 0-3), labelled `24000..30000` (chunk 4).
    pub fn mnist_report() -> Self {
        Split {
            pretrain: chunks(0..4, 6_000),
            labeled: chunks(4..5, 6_000),
        }
    }

    /// CIFAR-10 as in the report: pretrain `0..40000` (batches 1-4), labelled `0..20000` (batches 1-2).
    pub fn cifar_report() -> Self {
        Split {
            pretrain: chunks(0..4, 10_000),
            labeled: chunks(0..2, 10_000),
        }
    }

    /// The report's split of `kind`.
    pub fn report(kind: crate::DatasetKind) -> Self {
        match kind {
            crate::DatasetKind::Mnist => Split::mnist_report(),
            crate::DatasetKind::Cifar10 => Split::cifar_report(),
        }
    }

    /// Builds a split from two range strings such as `"0..24000"` and `"24000..30000"`.
    pub fn parse(pretrain: &str, labeled: &str) -> Result<Self> {
        Ok(Split {
            pretrain: parse_range(pretrain)?,
            labeled: parse_range(labeled)?,
        })
    }

    /// Checks both ranges against a training set of `len` images.
    pub fn check(&self, len: usize) -> Result<()> {
        for (name, r) in [("pretrain", &self.pretrain), ("labeled", &self.labeled)] {
            if r.start >= r.end || r.end > len {
                return Err(DataError::Invalid(format!(
                    "{name} range {}..{} is empty or beyond the {len} training images",
                    r.start, r.end
                )));
            }
        }
        Ok(())
    }

    /// Cuts `train` into `(pretrain, labeled)` copies.
    pub fn apply(&self, train: &ImageSet) -> Result<(ImageSet, ImageSet)> {
        self.check(train.len())?;
        Ok((
            train.subset(self.pretrain.clone())?,
            train.subset(self.labeled.clone())?,
        ))
    }
}

/// The index range covered by chunks `chunk_range` of `chunk_len` images each
/// (`chunks(0..4, 6000)` = `0..24000`).
pub fn chunks(chunk_range: Range<usize>, chunk_len: usize) -> Range<usize> {
    chunk_range.start * chunk_len..chunk_range.end * chunk_len
}

/// Parses `"a..b"` (half-open) or `"a..=b"` (inclusive) into a non-empty `Range<usize>`;
/// underscores in numbers are allowed.
pub fn parse_range(s: &str) -> Result<Range<usize>> {
    let err = |reason: &str| DataError::Parse {
        what: "range",
        input: s.to_string(),
        reason: reason.to_string(),
    };
    let t = s.trim();
    let (a, b, inclusive) = if let Some((a, b)) = t.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = t.split_once("..") {
        (a, b, false)
    } else {
        return Err(err("expected START..END, e.g. 0..24000"));
    };
    let num = |x: &str| -> Result<usize> {
        let x: String = x.trim().chars().filter(|&c| c != '_').collect();
        x.parse::<usize>()
            .map_err(|e| err(&format!("{x:?} is not a non-negative integer: {e}")))
    };
    let start = num(a)?;
    let mut end = num(b)?;
    if inclusive {
        end = end.checked_add(1).ok_or_else(|| err("end is too large"))?;
    }
    if start >= end {
        return Err(err("the range is empty"));
    }
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_splits() {
        assert_eq!(
            Split::mnist_report(),
            Split {
                pretrain: 0..24_000,
                labeled: 24_000..30_000
            }
        );
        assert_eq!(Split::cifar_report().pretrain, 0..40_000);
        assert_eq!(Split::cifar_report().labeled, 0..20_000);
        assert!(Split::mnist_report().check(60_000).is_ok());
        assert!(Split::cifar_report().check(30_000).is_err());
    }

    #[test]
    fn parse_ranges() {
        assert_eq!(parse_range("0..24000").unwrap(), 0..24_000);
        assert_eq!(parse_range(" 24_000..30_000 ").unwrap(), 24_000..30_000);
        assert_eq!(parse_range("0..=9").unwrap(), 0..10);
        for bad in [
            "",
            "5",
            "a..b",
            "10..5",
            "3..3",
            "-1..4",
            "0..=18446744073709551615",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Split::parse("0..12000", "12000..18000").unwrap().labeled,
            12_000..18_000
        );
    }
}
