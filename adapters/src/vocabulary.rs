//! A source system's own category vocabulary, mapped to the bus's categories in configuration.
//!
//! Every adapter has one: CAP `event`/`category`, Open311 `service_code`, a commerce platform's
//! order type, the grid-management 部件/事件 codes. A value not in the map is not dropped: it
//! becomes the map's `unknown` category (which the region routes to its catch-all department)
//! and the report carries the flag [`UNMAPPED_FLAG`], so dispatchers see it and can extend the map.

use std::collections::BTreeMap;

use linkbus_wire::is_category;
use serde::Deserialize;

/// Flag set on a report whose source category was not in the map.
pub const UNMAPPED_FLAG: &str = "unmapped_category";

/// Foreign category → bus category, e.g. in TOML
/// `[adapters.open311.categories] map = { "POTHOLE" = "street_defects" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryMap {
    /// Source code or label (matched exactly, then by its token, e.g. `Street Light` ~
    /// `street_light`) → bus category.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// The bus category for values not in `map`; the region's departments file decides who gets
    /// it (normally nobody but the catch-all).
    #[serde(default = "default_unknown")]
    pub unknown: String,
}

fn default_unknown() -> String {
    "uncategorized".to_owned()
}

impl Default for CategoryMap {
    fn default() -> Self {
        Self { map: BTreeMap::new(), unknown: default_unknown() }
    }
}

/// A category map whose targets are not all bus categories.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The `unknown` category is not a bus category.
    #[error("unknown = {0:?} is not a bus category (lowercase letters, digits, '_')")]
    Unknown(String),
    /// An entry maps to something that is not a bus category.
    #[error("{from:?} = {to:?}: not a bus category (lowercase letters, digits, '_')")]
    Target {
        /// The source's value.
        from: String,
        /// What it maps to.
        to: String,
    },
}

/// The bus category a foreign value maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The bus category.
    pub category: String,
    /// False when the value was not in the map (the report gets [`UNMAPPED_FLAG`]).
    pub known: bool,
}

impl CategoryMap {
    /// A map from pairs, with the default `unknown`.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self { map: pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(), ..Self::default() }
    }

    /// Checks that every target is a valid bus category; the error names the offending entry.
    pub fn validate(&self) -> Result<(), MapError> {
        if !is_category(&self.unknown) {
            return Err(MapError::Unknown(self.unknown.clone()));
        }
        match self.map.iter().find(|(_, to)| !is_category(to)) {
            Some((from, to)) => Err(MapError::Target { from: from.clone(), to: to.clone() }),
            None => Ok(()),
        }
    }

    /// Maps a foreign value: exactly, then by its token; otherwise `unknown`.
    pub fn map(&self, foreign: &str) -> Mapped {
        let foreign = foreign.trim();
        let found = self.map.get(foreign).or_else(|| {
            let token = crate::category_token(foreign);
            self.map.iter().find(|(k, _)| crate::category_token(k) == token).map(|(_, v)| v)
        });
        match found {
            Some(category) => Mapped { category: category.clone(), known: true },
            None => Mapped { category: self.unknown.clone(), known: false },
        }
    }

    /// Maps a foreign value and adds [`UNMAPPED_FLAG`] to `flags` when it is unknown.
    pub fn map_flagged(&self, foreign: &str, flags: &mut Vec<String>) -> String {
        let mapped = self.map(foreign);
        if !mapped.known && !flags.iter().any(|f| f == UNMAPPED_FLAG) {
            flags.push(UNMAPPED_FLAG.to_owned());
        }
        mapped.category
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_exactly_then_by_token_else_flags_unknown() {
        let map = CategoryMap::from_pairs([("Street Light", "streetlights"), ("火灾", "fire")]);
        assert_eq!(map.map("Street Light"), Mapped { category: "streetlights".into(), known: true });
        assert_eq!(map.map(" street-light "), Mapped { category: "streetlights".into(), known: true });
        assert_eq!(map.map("火灾").category, "fire");
        let mut flags = vec![];
        assert_eq!(map.map_flagged("Alien landing", &mut flags), "uncategorized");
        assert_eq!(map.map_flagged("also unknown", &mut flags), "uncategorized");
        assert_eq!(flags, vec![UNMAPPED_FLAG.to_owned()]);
    }

    #[test]
    fn refuses_targets_that_are_not_categories() {
        assert!(CategoryMap::from_pairs([("a", "fire")]).validate().is_ok());
        let err = CategoryMap::from_pairs([("a", "Fire!")]).validate().expect_err("bad target").to_string();
        assert!(err.contains("\"a\""), "{err}");
        let map: CategoryMap = toml::from_str("unknown = \"X\"").expect("toml");
        assert!(map.validate().is_err());
    }
}
