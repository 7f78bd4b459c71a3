//! Which adapter: the small fixed set that names an adapter's `[adapters.<name>]` table, its
//! metrics' `adapter` label, its dead letters' stage (`deadletter.adapter_<name>`) and its logs.

use std::fmt;

/// One of the adapters the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdapterKind {
    /// Open311 GeoReport v2 ([`crate::open311`]).
    Open311,
    /// Grid-management reports ([`crate::grid`]).
    Grid,
    /// CAP 1.2 alerts ([`crate::cap`]).
    Cap,
    /// Dispatch (CAD) incidents ([`crate::cad`]).
    Cad,
    /// Commerce order webhooks ([`crate::commerce`]).
    Commerce,
}

impl AdapterKind {
    /// Every adapter, in the order `[adapters]` lists them.
    pub const ALL: [AdapterKind; 5] =
        [AdapterKind::Open311, AdapterKind::Grid, AdapterKind::Cap, AdapterKind::Cad, AdapterKind::Commerce];

    /// Its name: `open311`, `grid`, `cap`, `cad`, `commerce`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Open311 => "open311",
            Self::Grid => "grid",
            Self::Cap => "cap",
            Self::Cad => "cad",
            Self::Commerce => "commerce",
        }
    }
}

impl fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
