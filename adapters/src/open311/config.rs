//! `[adapters.open311]`: where the Open311 adapter's requests come from, how they are
//! categorised and prioritised, and who may read them.

use serde::Deserialize;

use crate::vocabulary::CategoryMap;

/// `[adapters.open311]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Open311Config {
    /// Serve Open311 at `/open311/v2/` on the API's address.
    pub enabled: bool,
    /// The CloudEvents `source` of its requests; a source key must speak for it (`[[api.keys]]`
    /// `source`) to post, and may read only its requests.
    pub source: String,
    /// `service_code` → bus category. A code not in the map (nor a region category, with
    /// `region_services`) is answered 404, as GeoReport v2 says.
    pub categories: CategoryMap,
    /// Also offer every public-service category of the region as a service, its id as the code.
    pub region_services: bool,
    /// The priority of its cases, 1 (life-threatening) to 4 (low); the routing's priority rules
    /// may raise it.
    pub priority: u8,
    /// Answer `GET requests…` without a key, as GeoReport v2 says (the answers carry no
    /// reporter's name, phone or email). Off: a source, dispatcher or operator key is needed, as
    /// for `/api/requests/…`.
    pub public_reads: bool,
    /// The `service_notice` of every request: what the resident can expect.
    pub service_notice: String,
}

impl Default for Open311Config {
    fn default() -> Self {
        Self {
            enabled: true,
            source: "/open311".into(),
            categories: CategoryMap::from_pairs(DEFAULT_SERVICES.iter().copied()),
            region_services: true,
            priority: 3,
            public_reads: true,
            service_notice: "Routed to the responsible department of your community, which must accept it \
                             within the deadline of its priority."
                .into(),
        }
    }
}

/// The shipped `service_code` map (kept equal to `ops/linkbus.example.toml`).
const DEFAULT_SERVICES: &[(&str, &str)] = &[
    ("POTHOLE", "street_defects"),
    ("STREETLIGHT", "streetlights"),
    ("GRAFFITI", "graffiti_public_property"),
    ("ILLEGAL_DUMPING", "street_and_sidewalk_cleaning"),
    ("SEWER", "sewer_issues"),
    ("ABANDONED_VEHICLE", "abandoned_vehicle"),
    ("NOISE", "noise_report"),
    ("TREE", "tree_maintenance"),
];
