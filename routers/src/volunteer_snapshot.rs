//! The volunteer index saved aside, so that a router starts without reading the whole volunteers
//! bucket: every [`save_every`] interval a router writes its index ([`RosterImage`]) with the
//! bucket revision it reflects into the object store [`nats::OBJECTS_SNAPSHOTS`]; at start,
//! [`crate::volunteers::follow_volunteers`] loads it ([`load`]) and reads only the bucket's
//! changes after that revision on top. Replaying a change the image already holds is harmless:
//! a bucket entry is a volunteer's whole state, not a difference.
//!
//! A snapshot is used only when it is certainly the bucket's past ([`accept`]): the same bucket
//! (its stream made at the same moment), a revision the bucket has reached, no sign that the
//! bucket lost entries since, the skills the region in force calls for, and an image whose every
//! part could be in an index. Otherwise the router reads the whole bucket, as it does with no
//! snapshot at all, and says why in its log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, object_store};
use linkbus_bus::nats;
use linkbus_bus::sync::read;
use linkbus_matching::{RosterBuilder, RosterImage};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::service::RouterState;

/// The object's name in [`nats::OBJECTS_SNAPSHOTS`].
pub const SNAPSHOT_OBJECT: &str = "volunteers";
/// The layout of [`SnapshotFile`]; a file of another one is not read.
const FORMAT: u32 = 1;
/// Chunks of the object: fewer round trips than the object store's 128 KiB, within the 1 MiB a
/// nats-server takes in one message by default.
const CHUNK_BYTES: usize = 512 * 1024;
/// The object's metadata key holding the revision, so a save can tell without reading the
/// object whether the one stored is as new.
const REVISION_KEY: &str = "revision";

/// What the snapshot object holds (postcard-encoded): written with the index's image borrowed
/// ([`linkbus_matching::volunteers::ImageView`]), read as a [`RosterImage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotFile<I = RosterImage> {
    /// [`FORMAT`].
    pub format: u32,
    /// When the volunteers bucket's stream was made, Unix nanoseconds: a bucket deleted and made
    /// again is another bucket.
    pub bucket_created_ns: i128,
    /// The bucket revision (stream sequence) of the last entry the image reflects.
    pub revision: u64,
    /// The skills the region called for when every volunteer was taken (sorted): the index
    /// leaves others out, so the image is only good for a region calling for the same.
    pub skills_called: Vec<String>,
    /// The index's content.
    pub image: I,
}

/// What the volunteers bucket's stream says of itself at start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketState {
    /// When its stream was made, Unix nanoseconds.
    pub created_ns: i128,
    /// Its last sequence.
    pub last_sequence: u64,
    /// Messages it holds (one per key: the last put or delete).
    pub messages: u64,
}

impl BucketState {
    fn of(info: &jetstream::stream::Info) -> Self {
        Self {
            created_ns: info.created.unix_timestamp_nanos(),
            last_sequence: info.state.last_sequence,
            messages: info.state.messages,
        }
    }
}

/// The roster a snapshot holds and the revision to read the bucket after, if the snapshot is
/// certainly the bucket's past (the [module docs](self) say when); else why not.
pub fn accept(
    file: SnapshotFile,
    bucket: BucketState,
    skills_called: &[String],
) -> Result<(RosterBuilder, u64), String> {
    if file.format != FORMAT {
        return Err(format!("format {} (this version reads {FORMAT})", file.format));
    }
    if file.bucket_created_ns != bucket.created_ns {
        return Err("it was saved from another volunteers bucket (made at another time)".into());
    }
    if file.revision > bucket.last_sequence {
        return Err(format!("it is at revision {}, past the bucket's last {}", file.revision, bucket.last_sequence));
    }
    // Each volunteer of the image still has its entry at or before the revision, or a later one
    // replaced it: fewer messages than that means entries went missing (a purged stream).
    let changed_since = bucket.last_sequence - file.revision;
    let held = file.image.volunteers.len() as u64;
    if bucket.messages.saturating_add(changed_since) < held {
        return Err(format!(
            "the bucket holds {} entries, too few for the {held} volunteers of the snapshot and {changed_since} changes since",
            bucket.messages
        ));
    }
    if file.skills_called != skills_called {
        return Err("the region in force calls for other skills".into());
    }
    let revision = file.revision;
    let roster = RosterBuilder::from_image(file.image).map_err(|e| format!("its image is invalid: {e}"))?;
    Ok((roster, revision))
}

/// The snapshot to start from, if there is a good one (see [`accept`]); `None` when there is
/// none or it is refused, with the reason logged. `skills_called` are the region's, sorted.
pub async fn load(
    js: &jetstream::Context,
    store: &kv::Store,
    skills_called: &[String],
) -> Option<(RosterBuilder, u64)> {
    let started = Instant::now();
    match read_and_accept(js, store, skills_called).await {
        Ok(Some((roster, revision))) => {
            let load_ms = started.elapsed().as_secs_f64() * 1e3;
            info!(revision, load_ms, "starting from the volunteer snapshot");
            Some((roster, revision))
        }
        Ok(None) => {
            info!("no volunteer snapshot yet: reading the whole bucket");
            None
        }
        Err(reason) => {
            warn!(reason, "the volunteer snapshot is not used: reading the whole bucket");
            None
        }
    }
}

/// [`load`]'s work: the stored snapshot read, decoded and [`accept`]ed; `None` when there is
/// none, else why it cannot be used.
async fn read_and_accept(
    js: &jetstream::Context,
    store: &kv::Store,
    skills_called: &[String],
) -> Result<Option<(RosterBuilder, u64)>, String> {
    let objects = js.get_object_store(nats::OBJECTS_SNAPSHOTS).await.map_err(|e| format!("no snapshot store: {e}"))?;
    let mut object = match objects.get(SNAPSHOT_OBJECT).await {
        Ok(object) => object,
        Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let mut bytes = Vec::with_capacity(object.info().size);
    // The object store checks the content against the SHA-256 digest it stored with it.
    object.read_to_end(&mut bytes).await.map_err(|e| format!("cannot read it: {e}"))?;
    let file = postcard::from_bytes::<SnapshotFile>(&bytes).map_err(|e| format!("cannot decode it: {e}"))?;
    drop(bytes);
    let info = store.stream.get_info().await.map_err(|e| format!("cannot read the bucket's state: {e}"))?;
    accept(file, BucketState::of(&info), skills_called).map(Some)
}

/// What [`save`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// Volunteers in it.
    pub volunteers: usize,
    /// The bucket revision it reflects.
    pub revision: u64,
    /// Its size, bytes.
    pub bytes: usize,
}

/// Why a snapshot could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The store, the bucket or the object could not be reached or written.
    #[error("{what}: {source}")]
    Bus {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: async_nats::Error,
    },
    /// The snapshot could not be encoded.
    #[error("cannot encode the snapshot: {0}")]
    Encode(#[from] postcard::Error),
}

fn bus(what: &'static str) -> impl FnOnce(async_nats::Error) -> SaveError {
    move |source| SaveError::Bus { what, source }
}

/// Saves the volunteer index of `state` as the snapshot, unless it has not loaded yet, mixes two
/// regions' skills, or the stored snapshot is as new (then `None`).
pub async fn save(js: &jetstream::Context, state: &RouterState) -> Result<Option<Saved>, SaveError> {
    let followed = &state.volunteers_followed;
    // Read before the index: the image then holds at least this revision's changes.
    let revision = followed.revision();
    let Some(skills_called) = followed.skills_called() else { return Ok(None) };
    let objects =
        js.get_object_store(nats::OBJECTS_SNAPSHOTS).await.map_err(|e| bus("opening the snapshot store")(e.into()))?;
    let stored = match objects.info(SNAPSHOT_OBJECT).await {
        Ok(info) if !info.deleted => info.metadata.get(REVISION_KEY).and_then(|r| r.parse::<u64>().ok()),
        _ => None,
    };
    if stored.is_some_and(|stored| stored >= revision) {
        return Ok(None);
    }
    let store =
        js.get_key_value(nats::BUCKET_VOLUNTEERS).await.map_err(|e| bus("opening the volunteers bucket")(e.into()))?;
    let info = store.stream.get_info().await.map_err(|e| bus("reading the volunteers bucket's state")(e.into()))?;
    // Encoded under the read lock: routing goes on, volunteer changes wait (about 0.1 s a
    // million volunteers, docs/BENCHMARKS.md).
    let (bytes, volunteers) = {
        let index = read(&state.volunteers);
        let file = SnapshotFile {
            format: FORMAT,
            bucket_created_ns: BucketState::of(&info).created_ns,
            revision,
            skills_called: skills_called.to_vec(),
            image: index.image(),
        };
        (postcard::to_allocvec(&file)?, index.len())
    };
    let meta = object_store::ObjectMetadata {
        name: SNAPSHOT_OBJECT.to_owned(),
        description: Some(format!("linkbus: the volunteer index at bucket revision {revision}")),
        chunk_size: Some(CHUNK_BYTES),
        metadata: HashMap::from([(REVISION_KEY.to_owned(), revision.to_string())]),
        headers: None,
    };
    objects.put(meta, &mut bytes.as_slice()).await.map_err(|e| bus("writing the snapshot")(e.into()))?;
    Ok(Some(Saved { volunteers, revision, bytes: bytes.len() }))
}

/// Saves a snapshot every `every` until `shutdown` (see [`save`]).
pub async fn save_every(js: jetstream::Context, state: Arc<RouterState>, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let started = Instant::now();
        match save(&js, &state).await {
            Ok(Some(saved)) => {
                state.metrics.volunteer_snapshot(true);
                info!(
                    volunteers = saved.volunteers,
                    revision = saved.revision,
                    bytes = saved.bytes,
                    save_ms = started.elapsed().as_secs_f64() * 1e3,
                    "volunteer snapshot saved"
                );
            }
            Ok(None) => debug!("no volunteer snapshot to save"),
            Err(e) => {
                state.metrics.volunteer_snapshot(false);
                warn!(error = %e, "cannot save the volunteer snapshot; trying again later");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use linkbus_matching::VolunteerIndex;
    use linkbus_wire::{Location, VolunteerStatus};

    use super::*;

    fn index() -> VolunteerIndex {
        let roster = ["a", "b", "c"].map(|id| VolunteerStatus {
            id: id.into(),
            location: Location { lon: 116.4, lat: 39.9 },
            available: id != "b",
            skills: vec!["cpr".into()],
        });
        VolunteerIndex::from_roster(roster).expect("valid")
    }

    fn file_of<I>(image: I) -> SnapshotFile<I> {
        SnapshotFile {
            format: FORMAT,
            bucket_created_ns: 1_700_000_000_000_000_000,
            revision: 10,
            skills_called: vec!["cpr".into(), "first_aid".into()],
            image,
        }
    }

    fn file() -> SnapshotFile {
        file_of(index().image().to_image())
    }

    const BUCKET: BucketState = BucketState { created_ns: 1_700_000_000_000_000_000, last_sequence: 12, messages: 3 };

    fn skills() -> Vec<String> {
        vec!["cpr".into(), "first_aid".into()]
    }

    #[test]
    fn a_snapshot_of_the_same_bucket_and_skills_is_taken_after_its_revision() {
        // Written from the index borrowed, read back with its owned image.
        let encoded = postcard::to_allocvec(&file_of(index().image())).expect("encodes");
        let decoded: SnapshotFile = postcard::from_bytes(&encoded).expect("decodes");
        assert_eq!(decoded, file());
        let (roster, revision) = accept(decoded, BUCKET, &skills()).expect("taken");
        assert_eq!(revision, 10);
        assert_eq!(roster.build().len(), 3);
        // Two changes since, which may have replaced two of the three: one message is enough.
        let (_, revision) = accept(file(), BucketState { messages: 1, ..BUCKET }, &skills()).expect("taken");
        assert_eq!(revision, 10);
        let (_, revision) =
            accept(file(), BucketState { last_sequence: 10, messages: 3, ..BUCKET }, &skills()).expect("up to date");
        assert_eq!(revision, 10);
    }

    #[test]
    fn a_snapshot_that_may_not_be_the_buckets_past_is_refused() {
        let refused = |file: SnapshotFile, bucket: BucketState, skills: &[String]| {
            accept(file, bucket, skills).map(|_| ()).expect_err("refused")
        };
        let other_format = SnapshotFile { format: FORMAT + 1, ..file() };
        assert!(refused(other_format, BUCKET, &skills()).contains("format"));
        let remade = BucketState { created_ns: BUCKET.created_ns + 1, ..BUCKET };
        assert!(refused(file(), remade, &skills()).contains("another volunteers bucket"));
        let behind = BucketState { last_sequence: 9, ..BUCKET };
        assert!(refused(file(), behind, &skills()).contains("past the bucket's last"));
        // Purged: two changes since cannot account for three volunteers with no message.
        let purged = BucketState { messages: 0, ..BUCKET };
        assert!(refused(file(), purged, &skills()).contains("too few"));
        assert!(refused(file(), BUCKET, &["cpr".into()]).contains("other skills"));
        let mut bad = file();
        bad.image.volunteers[1].id = "b c".into();
        assert!(refused(bad, BUCKET, &skills()).contains("invalid"));
    }
}
