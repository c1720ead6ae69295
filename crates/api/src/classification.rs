//! The classification ladder shared by sources, products and domain clearances.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Namespace label holding a domain's clearance.
pub const CLEARANCE_LABEL: &str = "drmesh.io/clearance";

/// Sensitivity of data, ordered `Public < Internal < Restricted`.
///
/// The same ladder measures a domain's clearance (the namespace label
/// [`CLEARANCE_LABEL`]): a consumer may read a product only when its clearance is at
/// least the product's classification. `Restricted` is the French "Diffusion Restreinte".
// Variants carry no doc comments on purpose: schemars would turn documented unit
// variants into a `oneOf` of consts, which is not a structural schema.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Classification {
    #[default]
    Public,
    Internal,
    Restricted,
}

impl Classification {
    /// Every level, lowest first.
    pub const ALL: [Classification; 3] = [Self::Public, Self::Internal, Self::Restricted];

    /// The name used in manifests and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "Public",
            Self::Internal => "Internal",
            Self::Restricted => "Restricted",
        }
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of `Public`, `Internal`, `Restricted` (exact spelling).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown classification {value:?} (expected Public, Internal or Restricted)")]
pub struct UnknownClassification {
    pub value: String,
}

impl FromStr for Classification {
    type Err = UnknownClassification;

    /// Exact spelling only: a label is a security control, a typo must not silently
    /// map to some level (callers fall back to `Public`, see [`clearance_or_public`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str() == s)
            .ok_or_else(|| UnknownClassification { value: s.to_string() })
    }
}

/// The clearance a namespace's labels declare: `Ok(Public)` when the label is missing,
/// `Err` when it holds something that is not a level (the caller reports it).
pub fn clearance_from_labels(
    labels: Option<&BTreeMap<String, String>>,
) -> Result<Classification, UnknownClassification> {
    match labels.and_then(|l| l.get(CLEARANCE_LABEL)) {
        None => Ok(Classification::Public),
        Some(value) => value.parse(),
    }
}

/// The clearance a namespace's labels declare, failing closed: a missing or invalid
/// label means `Public`, the lowest clearance.
pub fn clearance_or_public(labels: Option<&BTreeMap<String, String>>) -> Classification {
    clearance_from_labels(labels).unwrap_or(Classification::Public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(CLEARANCE_LABEL.to_string(), value.to_string())])
    }

    #[test]
    fn ladder_is_ordered() {
        assert!(Classification::Public < Classification::Internal);
        assert!(Classification::Internal < Classification::Restricted);
        assert_eq!(Classification::ALL.iter().max(), Some(&Classification::Restricted));
        let mut shuffled = vec![Classification::Restricted, Classification::Public, Classification::Internal];
        shuffled.sort();
        assert_eq!(shuffled, Classification::ALL.to_vec());
    }

    #[test]
    fn parses_exact_names_only() {
        for level in Classification::ALL {
            assert_eq!(level.as_str().parse::<Classification>(), Ok(level));
            assert_eq!(level.to_string(), level.as_str());
        }
        for bad in ["restricted", "RESTRICTED", " Restricted", "Secret", ""] {
            assert!(bad.parse::<Classification>().is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn serde_uses_the_manifest_names() {
        let json = serde_json::to_string(&Classification::Restricted).unwrap();
        assert_eq!(json, "\"Restricted\"");
        let back: Classification = serde_json::from_str("\"Internal\"").unwrap();
        assert_eq!(back, Classification::Internal);
        assert!(serde_json::from_str::<Classification>("\"internal\"").is_err());
    }

    #[test]
    fn clearance_fails_closed() {
        assert_eq!(clearance_from_labels(None), Ok(Classification::Public));
        assert_eq!(clearance_from_labels(Some(&BTreeMap::new())), Ok(Classification::Public));
        assert_eq!(clearance_from_labels(Some(&labels("Restricted"))), Ok(Classification::Restricted));
        assert_eq!(clearance_from_labels(Some(&labels("Internal"))), Ok(Classification::Internal));

        let typo = labels("restricted");
        assert_eq!(clearance_from_labels(Some(&typo)), Err(UnknownClassification { value: "restricted".into() }));
        assert_eq!(clearance_or_public(Some(&typo)), Classification::Public);
        assert_eq!(clearance_or_public(None), Classification::Public);
        assert_eq!(clearance_or_public(Some(&labels("Restricted"))), Classification::Restricted);
    }
}
