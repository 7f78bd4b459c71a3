//! What the volunteers' tests share: a volunteer's status in one line.

use linkbus_wire::{Location, VolunteerStatus};

/// The status of volunteer `id` at `lon`/`lat`, available or not, with `skills`.
pub(super) fn v(id: &str, lon: f64, lat: f64, available: bool, skills: &[&str]) -> VolunteerStatus {
    VolunteerStatus {
        id: id.into(),
        location: Location { lon, lat },
        available,
        skills: skills.iter().map(|s| s.to_string()).collect(),
    }
}
