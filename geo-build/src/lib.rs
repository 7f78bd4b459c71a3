//! Regions built from public data, reproducibly (byte for byte from the same inputs and seed).
//! The inputs live in `geo-data/sources/` with their provenance and licences.
//!
//! - [`sf`]: `geo-data/san-francisco/` from DataSF's neighborhoods and 311 sample and the OSM
//!   fire stations;
//! - [`china`]: a Chinese city's region (`geo-data/beijing/`, `geo-data/shenzhen/`) from the
//!   national registry of sub-districts and communities and the district polygons.
//!
//! The `linkbus-geo-build` binary runs them; the service only loads what they write
//! (`linkbus-geo-data`).

pub mod china;
pub mod sf;
mod vocabulary;
