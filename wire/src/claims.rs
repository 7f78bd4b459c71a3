//! Who may issue which event ids: each kind of source system claims id prefixes and
//! CloudEvents sources, and a report on `ingest.<system>.…` must carry an id and a source its
//! system claims ([`Claims::check`]). The event id is the case id and the JetStream
//! `Nats-Msg-Id`: were any system free to use any id, it could reserve (squat) or take over
//! another system's cases.
//!
//! An id's prefix is the text before its first `-` (`cad` of `cad-F26-200001`); a claimed
//! source is an exact CloudEvents `source`, or, ending in `/`, every source under it
//! (`/commerce/` claims `/commerce/meals`). The built-in claims ([`Claims::built_in`]) cover
//! the ids and sources linkbus's own adapters issue; a deployment adds its own publishers'.
//!
//! | system | id prefixes | sources |
//! |---|---|---|
//! | emergency | `cad`, `cap` | `/cad`, `/cap` |
//! | commercial | `commerce` | `/commerce/` |
//! | public_service | `sf311`, `open311` | `/sf311`, `/open311` |
//! | management | `grid` | `/grid` |
//! | every system, unless synthetic feeds are refused | `sim`, `bench` | `/linkbus/simulated-feed`, `/linkbus-bench` |
//!
//! A prefix or source that no system claims is refused ([`Unclaimed::Refuse`], the default), or,
//! for development only, accepted from any system ([`Unclaimed::Accept`]).

use serde::{Deserialize, Serialize};

use crate::{Invalid, SourceSystem, is_token};

/// Id prefixes and sources of one kind of source system (besides the built-in ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemClaims {
    /// Event id prefixes the system's publishers use: an id `<prefix>-…` is theirs. Letters,
    /// digits and `_`, no `-`.
    pub id_prefixes: Vec<String>,
    /// CloudEvents sources of the system's publishers: exact (`/app-12345`), or ending in `/`
    /// for every source under it (`/app-12345/`).
    pub sources: Vec<String>,
}

impl SystemClaims {
    /// Checks that every prefix is a plain token and every source a path-like string.
    pub fn validate(&self) -> Result<(), Invalid> {
        for prefix in &self.id_prefixes {
            if !is_token(prefix, 64, b"_") {
                return Err(Invalid {
                    field: "id_prefixes".into(),
                    reason: format!("{prefix:?}: must be 1-64 ASCII letters, digits or '_' (no '-')"),
                });
            }
        }
        for source in &self.sources {
            if !source.starts_with('/') || source.len() > 256 || source.chars().any(char::is_whitespace) {
                return Err(Invalid {
                    field: "sources".into(),
                    reason: format!("{source:?}: must start with '/', at most 256 characters, no spaces"),
                });
            }
        }
        Ok(())
    }

    fn claims_prefix(&self, prefix: &str) -> bool {
        self.id_prefixes.iter().any(|p| p == prefix)
    }

    fn claims_source(&self, source: &str) -> bool {
        self.sources.iter().any(|s| if s.ends_with('/') { source.starts_with(s.as_str()) } else { s == source })
    }
}

/// What becomes of an id prefix or a source that no system claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unclaimed {
    /// Refused: dead-lettered as `unknown_id` or `unknown_source`.
    #[default]
    Refuse,
    /// Accepted from any system: for development and tests only, since then any publisher may
    /// squat such ids in its own stream.
    Accept,
}

/// Why an id or source does not belong to the system it arrived from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The id's prefix is another system's.
    #[error("id {id:?} has prefix {prefix:?}, which belongs to {owners}, not {system}")]
    ForeignId {
        /// The id (or `Nats-Msg-Id`).
        id: String,
        /// Its prefix.
        prefix: String,
        /// The systems that claim it.
        owners: String,
        /// The system it arrived from.
        system: SourceSystem,
    },
    /// No system claims the id's prefix.
    #[error("id {id:?}: no source system claims its prefix {prefix:?} (see [ingest] in the configuration)")]
    UnknownId {
        /// The id.
        id: String,
        /// Its prefix (empty when it has none).
        prefix: String,
    },
    /// The source is another system's.
    #[error("source {origin:?} belongs to {owners}, not {system}")]
    ForeignSource {
        /// The CloudEvents source.
        origin: String,
        /// The systems that claim it.
        owners: String,
        /// The system it arrived from.
        system: SourceSystem,
    },
    /// No system claims the source.
    #[error("source {origin:?}: no source system claims it (see [ingest] in the configuration)")]
    UnknownSource {
        /// The CloudEvents source.
        origin: String,
    },
}

impl ClaimError {
    /// A short fixed label: `foreign_id`, `unknown_id`, `foreign_source`, `unknown_source`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ForeignId { .. } => "foreign_id",
            Self::UnknownId { .. } => "unknown_id",
            Self::ForeignSource { .. } => "foreign_source",
            Self::UnknownSource { .. } => "unknown_source",
        }
    }
}

/// The id prefixes and sources each kind of source system may issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// By [`SourceSystem::ALL`]'s order.
    systems: [SystemClaims; 4],
    unclaimed: Unclaimed,
}

/// The synthetic feeds' claims: the simulated feed and the load generator publish on every
/// system's subjects.
const SYNTHETIC_PREFIXES: [&str; 2] = ["sim", "bench"];
const SYNTHETIC_SOURCES: [&str; 2] = ["/linkbus/simulated-feed", "/linkbus-bench"];

impl Claims {
    /// The claims of linkbus's own adapters (see the module's table), synthetic feeds included
    /// when `synthetic`, unclaimed ids and sources refused.
    pub fn built_in(synthetic: bool) -> Self {
        let own = |prefixes: &[&str], sources: &[&str]| SystemClaims {
            id_prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
        };
        let mut claims = Self {
            systems: [
                own(&["cad", "cap"], &["/cad", "/cap"]),
                own(&["commerce"], &["/commerce/"]),
                own(&["sf311", "open311"], &["/sf311", "/open311"]),
                own(&["grid"], &["/grid"]),
            ],
            unclaimed: Unclaimed::Refuse,
        };
        if synthetic {
            for system in SourceSystem::ALL {
                claims.add(system, &own(&SYNTHETIC_PREFIXES, &SYNTHETIC_SOURCES));
            }
        }
        claims
    }

    /// These claims with `unclaimed` prefixes and sources treated so.
    pub fn with_unclaimed(mut self, unclaimed: Unclaimed) -> Self {
        self.unclaimed = unclaimed;
        self
    }

    /// Adds `extra` to `system`'s claims.
    pub fn add(&mut self, system: SourceSystem, extra: &SystemClaims) {
        let own = &mut self.systems[index(system)];
        for prefix in &extra.id_prefixes {
            if !own.id_prefixes.contains(prefix) {
                own.id_prefixes.push(prefix.clone());
            }
        }
        for source in &extra.sources {
            if !own.sources.contains(source) {
                own.sources.push(source.clone());
            }
        }
    }

    /// What `system` claims.
    pub fn of(&self, system: SourceSystem) -> &SystemClaims {
        &self.systems[index(system)]
    }

    /// Checks that `id`'s prefix and `source` are claimed by `system`.
    pub fn check(&self, system: SourceSystem, id: &str, source: &str) -> Result<(), ClaimError> {
        self.check_id(system, id)?;
        self.check_source(system, source)
    }

    /// Checks that `id`'s prefix is claimed by `system` (see the module's doc).
    pub fn check_id(&self, system: SourceSystem, id: &str) -> Result<(), ClaimError> {
        let prefix = prefix(id).unwrap_or_default();
        if self.of(system).claims_prefix(prefix) {
            return Ok(());
        }
        let owners = self.owners(|c| c.claims_prefix(prefix));
        match (owners.is_empty(), self.unclaimed) {
            (false, _) => Err(ClaimError::ForeignId { id: id.to_owned(), prefix: prefix.to_owned(), owners, system }),
            (true, Unclaimed::Accept) => Ok(()),
            (true, Unclaimed::Refuse) => Err(ClaimError::UnknownId { id: id.to_owned(), prefix: prefix.to_owned() }),
        }
    }

    fn check_source(&self, system: SourceSystem, source: &str) -> Result<(), ClaimError> {
        if self.of(system).claims_source(source) {
            return Ok(());
        }
        let owners = self.owners(|c| c.claims_source(source));
        match (owners.is_empty(), self.unclaimed) {
            (false, _) => Err(ClaimError::ForeignSource { origin: source.to_owned(), owners, system }),
            (true, Unclaimed::Accept) => Ok(()),
            (true, Unclaimed::Refuse) => Err(ClaimError::UnknownSource { origin: source.to_owned() }),
        }
    }

    /// The systems whose claims satisfy `claimed`, e.g. `emergency` or `emergency, management`.
    fn owners(&self, claimed: impl Fn(&SystemClaims) -> bool) -> String {
        SourceSystem::ALL
            .into_iter()
            .filter(|s| claimed(self.of(*s)))
            .map(SourceSystem::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Default for Claims {
    /// [`Claims::built_in`] with synthetic feeds, unclaimed refused.
    fn default() -> Self {
        Self::built_in(true)
    }
}

/// The prefix of an event id: the text before its first `-`, if it has one.
pub fn prefix(id: &str) -> Option<&str> {
    id.split_once('-').map(|(prefix, _)| prefix).filter(|p| !p.is_empty())
}

fn index(system: SourceSystem) -> usize {
    match system {
        SourceSystem::Emergency => 0,
        SourceSystem::Commercial => 1,
        SourceSystem::PublicService => 2,
        SourceSystem::Management => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SourceSystem::*;

    #[test]
    fn each_system_issues_its_own_ids_and_sources_only() {
        let claims = Claims::default();
        assert_eq!(claims.check(Emergency, "cad-F26-200001", "/cad"), Ok(()));
        assert_eq!(claims.check(Commercial, "commerce-meals-9", "/commerce/meals"), Ok(()));
        let taken = claims.check(PublicService, "cad-F26-200001", "/cad").expect_err("a CAD id from 12345");
        assert_eq!(taken.code(), "foreign_id");
        assert!(taken.to_string().contains("belongs to emergency, not public_service"), "{taken}");
        let source = claims.check(PublicService, "sf311-1", "/cad").expect_err("a CAD source");
        assert_eq!(source.code(), "foreign_source");
        assert_eq!(claims.check(Management, "sim-1-2", "/linkbus/simulated-feed"), Ok(()));
        assert_eq!(Claims::built_in(false).check(Management, "sim-1", "/grid").expect_err("").code(), "unknown_id");
    }

    #[test]
    fn unclaimed_ids_and_sources_are_refused_unless_accepted() {
        let claims = Claims::default();
        assert_eq!(claims.check(PublicService, "app12345-1", "/sf311").expect_err("").code(), "unknown_id");
        assert_eq!(claims.check(PublicService, "nodash", "/sf311").expect_err("").code(), "unknown_id");
        assert_eq!(claims.check(PublicService, "-x", "/sf311").expect_err("").code(), "unknown_id");
        assert_eq!(claims.check(PublicService, "sf311-1", "/app").expect_err("").code(), "unknown_source");
        let open = Claims::default().with_unclaimed(Unclaimed::Accept);
        assert_eq!(open.check(PublicService, "app12345-1", "/app"), Ok(()));
        assert_eq!(open.check(PublicService, "cad-1", "/app").expect_err("claimed stays claimed").code(), "foreign_id");

        let mut claims = Claims::default();
        let app = SystemClaims { id_prefixes: vec!["app12345".into()], sources: vec!["/app-12345/".into()] };
        app.validate().expect("valid");
        claims.add(PublicService, &app);
        assert_eq!(claims.check(PublicService, "app12345-1", "/app-12345/beijing"), Ok(()));
        assert_eq!(claims.check(Emergency, "app12345-1", "/cad").expect_err("").code(), "foreign_id");
        assert_eq!(claims.check(PublicService, "app12345-1", "/app-12345").expect_err("").code(), "unknown_source");
    }

    #[test]
    fn claims_are_checked() {
        let bad = SystemClaims { id_prefixes: vec!["cad-119".into()], sources: vec![] };
        assert!(bad.validate().is_err());
        let source = |s: &str| SystemClaims { id_prefixes: vec!["cad".into()], sources: vec![s.into()] };
        assert!(source("cad").validate().is_err(), "no leading '/'");
        assert!(source("/my cad").validate().is_err(), "a space");
        let longest = format!("/{}", "c".repeat(255));
        assert!(source(&longest).validate().is_ok(), "256 characters");
        assert!(source(&format!("{longest}c")).validate().is_err(), "257 characters");
        assert_eq!(prefix("cad-119-1"), Some("cad"));
        assert_eq!(prefix("cad"), None);
    }
}
