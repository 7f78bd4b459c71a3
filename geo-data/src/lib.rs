//! Region data: the files under `geo-data/<region>/` and their loading.
//!
//! A region folder holds
//! - `manifest.toml`: id, name, version, effective date, time zone, and the source and licence
//!   of every file ([`Manifest`]);
//! - `communities.geojson`: one feature per community, properties `id`, `name`,
//!   `sub_district_code`/`sub_district_name` (optional), `district_code`/`district_name`
//!   ([`Community`]);
//! - `departments.json`: departments with the categories they handle in which jurisdictions,
//!   and the catch-all ([`Departments`]);
//! - `categories.toml`: the region's case categories with default priority and the volunteer
//!   skill they call for ([`Category`]);
//! - `facilities.geojson` (optional): fire stations, AEDs, hospitals ([`Facility`]);
//! - `volunteers.jsonl` (optional): a roster to seed the live volunteer bucket with;
//! - `geocodes.toml` (optional): how CAP `<geocode>`s name the region's areas ([`Geocodes`]).
//!
//! [`Region::load`] reads and checks all of it, the community map with [`validate`] (refused
//! when it has errors: invalid boundaries, overlaps, orphans); nothing here knows about NATS or
//! routing.

mod geocodes;
mod model;
pub mod validate;

pub use geocodes::{GeocodeScheme, Geocodes};
pub use model::*;
