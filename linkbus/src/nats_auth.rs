//! `linkbus nats-auth`: the nats-server side of locking a deployment down. From the configuration
//! and the region it writes an `authorization { users = [...] }` block (to `include` in
//! nats-server.conf) with one NKey user per party and what that party may do, and one seed file per
//! user for whoever runs it. The server's file holds public keys only; the seeds stay with their
//! owners.
//!
//! | user                  | may                                                                  |
//! |-----------------------|----------------------------------------------------------------------|
//! | `linkbus`             | everything the service does: JetStream API, its streams, buckets and |
//! |                       | snapshots,                                                           |
//! |                       | serve `action.*` and `volunteer.*.answer`, reply to requests;        |
//! |                       | alone may send and serve `replay.action` (replayed/simulated actions) |
//! | `source-<system>`     | publish `ingest.<system>.>` (stored in its system's own stream, `LINKBUS_INGEST_<SYSTEM>`, so the ids it may reserve are its own) and its adapters' subjects (`adapter.cap`/`.cad`, `adapter.grid.report`) |
//! | `dept-<id>`           | pull from its durable `dept-<id>` on `LINKBUS_ROUTED` and ack,       |
//! |                       | subscribe `routed.dept.<id>.>`, request `action.<id>`                 |
//! | `volunteer-<id>`      | subscribe its offers, request `volunteer.<id>.answer`, put its KV key |
//! | `operator-<name>`     | subscribe `case.>`, `routed.>`, `deadletter.>`; stream/consumer info  |
//!
//! Every user but the service receives replies only under its own inbox prefix `_INBOX.<user>`
//! (`[nats.auth] inbox_prefix`), so no one reads another's replies. Seeds already in the output
//! folder are kept, so re-running after a department is added changes no one else's key.
//!
//! Volunteers are static users taken from the region's roster: fine for thousands; for hundreds
//! of thousands see docs/operations.md (decentralized JWT auth, or the auth callout of newer
//! servers).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use linkbus_bus::nats::{BUCKET_VOLUNTEERS, OBJECTS_SNAPSHOTS, STREAM_ROUTED};
use linkbus_geo_data::Region;
use linkbus_wire::subjects;
use linkbus_wire::{self as wire, SourceSystem};

/// The name of the service's user.
pub const SERVICE_USER: &str = "linkbus";

/// Who a generated user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The linkbus service (every router replica shares it).
    Service,
    /// A source system's adapter, publishing case reports of its kind of system.
    Source(SourceSystem),
    /// A department, by id.
    Department(String),
    /// A volunteer, by id.
    Volunteer(String),
    /// An operator, by name: reads, never writes.
    Operator(String),
}

impl Role {
    /// The user name, also the last token of its inbox prefix and its seed file's name.
    pub fn user(&self) -> String {
        match self {
            Role::Service => SERVICE_USER.to_owned(),
            Role::Source(system) => format!("source-{system}"),
            Role::Department(id) => format!("dept-{id}"),
            Role::Volunteer(id) => format!("volunteer-{id}"),
            Role::Operator(name) => format!("operator-{name}"),
        }
    }

    /// The prefix of the user's reply subjects (`[nats.auth] inbox_prefix`).
    pub fn inbox_prefix(&self) -> String {
        format!("_INBOX.{}", self.user())
    }

    /// What the user may publish and subscribe to.
    pub fn permissions(&self) -> Permissions {
        let inbox = format!("{}.>", self.inbox_prefix());
        match self {
            Role::Service => Permissions {
                publish: vec![
                    subjects::INGEST_ALL.into(), // `linkbus up --replay` publishes through the service
                    subjects::ROUTED_ALL.into(),
                    subjects::CASES_ALL.into(),
                    subjects::DEADLETTER_ALL.into(),
                    subjects::OFFERS.into(),
                    subjects::OFFERS_CLOSED.into(),
                    // `linkbus replay --outcomes real` and the simulated departments.
                    subjects::REPLAY_ACTION.into(),
                    "$JS.API.>".into(),
                    "$JS.ACK.>".into(),
                    "$JS.FC.>".into(),
                    "$KV.>".into(),
                    format!("$O.{OBJECTS_SNAPSHOTS}.>"),
                ],
                subscribe: vec![
                    subjects::action("*"),
                    subjects::volunteer_answer("*"),
                    subjects::REPLAY_ACTION.into(),
                    // `linkbus replay` (as the service) follows outcomes on plain subscriptions.
                    subjects::CASES_ALL.into(),
                    subjects::DEADLETTER_ALL.into(),
                    // The adapters' NATS listeners (CAP, CAD, grid reports).
                    subjects::ADAPTER_ALL.into(),
                    inbox,
                ],
                // Replies to departments' actions and volunteers' answers go to their inboxes.
                allow_responses: true,
            },
            Role::Source(system) => Permissions {
                publish: std::iter::once(format!("ingest.{system}.>"))
                    .chain(adapter_subjects(*system).iter().map(|s| s.to_string()))
                    .collect(),
                subscribe: vec![inbox],
                allow_responses: false,
            },
            Role::Department(id) => {
                let consumer = format!("{STREAM_ROUTED}.dept-{id}");
                Permissions {
                    publish: vec![
                        format!("$JS.API.CONSUMER.MSG.NEXT.{consumer}"),
                        format!("$JS.API.CONSUMER.INFO.{consumer}"),
                        format!("$JS.API.STREAM.INFO.{STREAM_ROUTED}"),
                        format!("$JS.ACK.{consumer}.>"),
                        subjects::action(id),
                    ],
                    subscribe: vec![subjects::routed_department(id, ">"), inbox],
                    allow_responses: false,
                }
            }
            Role::Volunteer(id) => Permissions {
                publish: vec![
                    subjects::volunteer_answer(id),
                    format!("$KV.{BUCKET_VOLUNTEERS}.{id}"),
                    format!("$JS.API.STREAM.INFO.KV_{BUCKET_VOLUNTEERS}"),
                    format!("$JS.API.DIRECT.GET.KV_{BUCKET_VOLUNTEERS}.$KV.{BUCKET_VOLUNTEERS}.{id}"),
                ],
                subscribe: vec![subjects::volunteer_offer(id), subjects::volunteer_offer_closed(id), inbox],
                allow_responses: false,
            },
            Role::Operator(_) => Permissions {
                publish: vec![
                    "$JS.API.INFO".into(),
                    "$JS.API.STREAM.NAMES".into(),
                    "$JS.API.STREAM.LIST".into(),
                    "$JS.API.STREAM.INFO.*".into(),
                    "$JS.API.CONSUMER.NAMES.*".into(),
                    "$JS.API.CONSUMER.LIST.*".into(),
                    "$JS.API.CONSUMER.INFO.*.*".into(),
                ],
                subscribe: vec![
                    subjects::CASES_ALL.into(),
                    subjects::ROUTED_ALL.into(),
                    subjects::DEADLETTER_ALL.into(),
                    inbox,
                ],
                allow_responses: false,
            },
        }
    }
}

/// What one user may do; anything not allowed is denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to (requests included).
    pub publish: Vec<String>,
    /// Subjects it may subscribe to (its inbox included).
    pub subscribe: Vec<String>,
    /// May publish once to the reply subject of each request it receives.
    pub allow_responses: bool,
}

/// What `linkbus nats-auth` was asked for.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// Folder to write `authorization.conf` and `nkeys/<user>.nk` into.
    pub out: PathBuf,
    /// Operators' names, one user each.
    pub operators: Vec<String>,
    /// Make a user for each volunteer of the region's roster.
    pub volunteers: bool,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthReport {
    /// The authorization block.
    pub conf: PathBuf,
    /// Users in it.
    pub users: usize,
    /// Seeds newly made (the others were kept).
    pub new_keys: usize,
}

/// Every role of a deployment: the service, each kind of source system, each department of the
/// region, each roster volunteer (when asked), each operator.
pub fn roles(region: &Region, options: &AuthOptions) -> anyhow::Result<Vec<Role>> {
    let mut roles = vec![Role::Service];
    roles.extend(SourceSystem::ALL.map(Role::Source));
    for d in &region.departments.departments {
        roles.push(Role::Department(token(&d.id, "department id")?));
    }
    if options.volunteers {
        let roster = region.roster().context("reading the volunteer roster")?;
        for v in roster {
            roles.push(Role::Volunteer(token(&v.id, "volunteer id")?));
        }
    }
    for name in &options.operators {
        roles.push(Role::Operator(token(name, "operator name")?));
    }
    Ok(roles)
}

/// Writes `authorization.conf` and a seed per user into `options.out`, keeping seeds already
/// there.
pub fn generate(region: &Region, options: &AuthOptions) -> anyhow::Result<AuthReport> {
    let roles = roles(region, options)?;
    let keys_dir = options.out.join("nkeys");
    std::fs::create_dir_all(&keys_dir).with_context(|| format!("cannot create {}", keys_dir.display()))?;
    let mut text = format!(
        "# Generated by `linkbus nats-auth` for region {} version {}: {} users.\n\
         # Include it in nats-server.conf (`include \"authorization.conf\"`); it holds public keys only.\n\
         authorization {{\n  users = [\n",
        region.manifest.id,
        region.manifest.version,
        roles.len()
    );
    let mut new_keys = 0;
    for role in &roles {
        let (public_key, created) = user_key(&keys_dir.join(format!("{}.nk", role.user())))?;
        new_keys += usize::from(created);
        write_user(&mut text, role, &public_key);
    }
    text.push_str("  ]\n}\n");
    let conf = options.out.join("authorization.conf");
    std::fs::write(&conf, text).with_context(|| format!("cannot write {}", conf.display()))?;
    Ok(AuthReport { conf, users: roles.len(), new_keys })
}

/// One user's entry: a comment with its name, its public key and its permissions.
pub(crate) fn write_user(text: &mut String, role: &Role, public_key: &str) {
    let p = role.permissions();
    let list = |subjects: &[String]| {
        let quoted: Vec<String> = subjects.iter().map(|s| serde_json::Value::from(s.as_str()).to_string()).collect();
        format!("[{}]", quoted.join(", "))
    };
    let _ = writeln!(text, "    # {}", role.user());
    let _ = writeln!(text, "    {{ nkey: \"{public_key}\", permissions: {{");
    let _ = writeln!(text, "      publish: {{ allow: {} }}", list(&p.publish));
    let _ = writeln!(text, "      subscribe: {{ allow: {} }}", list(&p.subscribe));
    if p.allow_responses {
        let _ = writeln!(text, "      allow_responses: true");
    }
    let _ = writeln!(text, "    }} }}");
}

/// The public key of the seed in `path`, made and written (owner-only) if the file is absent;
/// and whether it was made now.
pub(crate) fn user_key(path: &Path) -> anyhow::Result<(String, bool)> {
    if path.exists() {
        let seed = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let pair = nkeys::KeyPair::from_seed(seed.trim())
            .with_context(|| format!("{} holds no valid NKey seed; remove it to make a new one", path.display()))?;
        anyhow::ensure!(
            pair.key_pair_type() == nkeys::KeyPairType::User,
            "{} holds a seed that is not a user's",
            path.display()
        );
        return Ok((pair.public_key(), false));
    }
    let pair = nkeys::KeyPair::new_user();
    let seed = pair.seed().context("encoding a new NKey seed")?;
    write_private(path, &format!("{seed}\n"))?;
    Ok((pair.public_key(), true))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// `name` when it can be one subject token (letters, digits, `-`, `_`).
fn token(name: &str, what: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        wire::is_token(name, 64, b"-_"),
        "{what} {name:?} cannot name a NATS user: letters, digits, '-' and '_' only, at most 64"
    );
    Ok(name.to_owned())
}

/// The adapters' default NATS subjects a source system may publish raw messages on (a
/// deployment that changes `[adapters.*] subject` edits the generated file to match).
fn adapter_subjects(system: SourceSystem) -> &'static [&'static str] {
    match system {
        SourceSystem::Emergency => &[subjects::CAP_ALERTS, subjects::CAD_INCIDENTS],
        SourceSystem::Management => &[subjects::GRID_REPORT],
        SourceSystem::Commercial | SourceSystem::PublicService => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_is_confined_to_its_own_subjects() {
        let dept = Role::Department("puc-sewer-ops".into()).permissions();
        assert!(dept.publish.contains(&"$JS.API.CONSUMER.MSG.NEXT.LINKBUS_ROUTED.dept-puc-sewer-ops".to_owned()));
        assert!(dept.publish.contains(&"action.puc-sewer-ops".to_owned()));
        assert!(dept.subscribe.contains(&"_INBOX.dept-puc-sewer-ops.>".to_owned()));
        assert!(dept.publish.iter().chain(&dept.subscribe).all(|s| !s.contains('*') && s != ">"));
        let source = Role::Source(SourceSystem::PublicService).permissions();
        assert_eq!(source.publish, ["ingest.public_service.>"]);
        let operator = Role::Operator("noc".into()).permissions();
        assert!(operator.publish.iter().all(|s| s.starts_with("$JS.API.") && !s.contains("CREATE")));
        assert!(Role::Service.permissions().allow_responses);
        // Only the service replays actions with a time of their own.
        let service = Role::Service.permissions();
        assert!(service.publish.contains(&subjects::REPLAY_ACTION.to_owned()));
        assert!(service.subscribe.contains(&subjects::REPLAY_ACTION.to_owned()));
        for other in [dept, source, operator, Role::Volunteer("v1".into()).permissions()] {
            assert!(other.publish.iter().all(|s| !s.starts_with("replay")), "{:?}", other.publish);
        }
    }

    #[test]
    fn names_that_are_not_subject_tokens_are_refused() {
        assert!(token("dept.x", "department id").is_err());
        assert!(token("ops>", "operator name").is_err());
        assert_eq!(token("puc-sewer_ops", "department id").expect("a token"), "puc-sewer_ops");
    }

    #[test]
    fn seeds_are_kept_across_runs_and_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dept-x.nk");
        let (first, made) = user_key(&path).expect("made");
        assert!(made && first.starts_with('U'));
        let (again, made) = user_key(&path).expect("kept");
        assert_eq!((again, made), (first, false));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
