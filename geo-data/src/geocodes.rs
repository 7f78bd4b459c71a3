//! `geocodes.toml` (optional): how CAP `<geocode>`s name the region's areas. Each scheme lists
//! the `valueName`s it answers to (`SAME`, `FIPS6`, `UGC`, `行政区划代码`…) and either takes the
//! values as the region's own codes (`own`: a community's id, a sub-district's or a district's
//! code) or maps each value to one of them (`codes`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The region's geocode table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geocodes {
    /// The schemes, by `valueName`.
    #[serde(default)]
    pub scheme: Vec<GeocodeScheme>,
}

/// One naming of the region's areas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeocodeScheme {
    /// The `valueName`s that use it (compared ignoring ASCII case).
    pub value_names: Vec<String>,
    /// Values are the region's own codes. A 12-digit code ending in `000000` also names the
    /// district of its first six digits (China's administrative codes, padded).
    #[serde(default)]
    pub own: bool,
    /// Value → the region's code (community id, sub-district or district code) it stands for.
    #[serde(default)]
    pub codes: BTreeMap<String, String>,
}

impl Geocodes {
    /// The region codes `value` may stand for under `value_name`, most specific first; empty
    /// when no scheme answers to the name or knows the value.
    pub fn region_codes(&self, value_name: &str, value: &str) -> Vec<String> {
        let mut out = Vec::new();
        for scheme in self.scheme.iter().filter(|s| s.value_names.iter().any(|n| n.eq_ignore_ascii_case(value_name))) {
            if let Some(code) = scheme.codes.get(value) {
                out.push(code.clone());
            }
            if scheme.own {
                out.push(value.to_owned());
                if let Some(district) = value.strip_suffix("000000").filter(|d| d.len() == 6) {
                    out.push(district.to_owned());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_own_codes() {
        let table: Geocodes = toml::from_str(
            r#"
            [[scheme]]
            value_names = ["SAME"]
            codes = { "006075" = "06075" }
            [[scheme]]
            value_names = ["行政区划代码"]
            own = true
            "#,
        )
        .expect("a table");
        assert_eq!(table.region_codes("same", "006075"), ["06075"]);
        assert!(table.region_codes("SAME", "006037").is_empty());
        assert!(table.region_codes("UGC", "006075").is_empty());
        assert_eq!(table.region_codes("行政区划代码", "110101001001"), ["110101001001"]);
        assert_eq!(table.region_codes("行政区划代码", "110101000000"), ["110101000000", "110101"]);
    }
}
