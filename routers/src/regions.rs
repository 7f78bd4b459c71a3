//! Region versions on the bus, and live reload.
//!
//! `linkbus geo publish DIR` stores a region version in the JetStream KV bucket
//! [`BUCKET_REGIONS`], so that every router replica sees it:
//!
//! - `<region>.<version>.<file>.<n>`: the files of the version (manifest, communities,
//!   departments, categories, facilities) in chunks of [`CHUNK_BYTES`];
//! - `<region>.<version>.index`: the files and their chunk counts ([`VersionIndex`]);
//! - `<region>.current`: the version in force ([`Current`]), written last.
//!
//! - `bus-region`: the region this bus's cases are routed against ([`BusRegion`]), written by
//!   the first router to start on it; [`claim_bus`] refuses to start a router of another region
//!   there, so one region's cases never reach another region's routers or console.
//!
//! Versions are never overwritten, and each router archives the version it starts with
//! ([`archive`]), so a past case can be re-run against the version it was routed with
//! ([`load_version`]). [`follow_region`] watches `<region>.current` in every
//! router: a new version is fetched and loaded into a temporary folder, checked
//! ([`Region::load`] validates the map) and its indexes built, all while routing goes on with
//! the old one; then [`RouterState::swap_router`] swaps it in, which holds a lock only for the
//! time of replacing one pointer. Each decision takes the router once, so it never mixes
//! versions. A version that fails is refused with the reason in the log and on
//! `deadletter.regions`, and the old one stays.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use linkbus_bus::nats::{self, StreamSettings};
use linkbus_geo_data::{Region, files};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::service::RouterState;
use linkbus_matching::{Router, RoutingParams};

/// The KV bucket of region versions.
pub const BUCKET_REGIONS: &str = "linkbus_regions";
/// Largest chunk of a file stored under one key (below NATS's default 1 MiB message limit).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// The files of a region that travel with a version (the volunteer roster and replay samples
/// do not: they are not routing data).
pub const VERSION_FILES: [&str; 6] =
    [files::MANIFEST, files::COMMUNITIES, files::DEPARTMENTS, files::CATEGORIES, files::FACILITIES, files::GEOCODES];

/// What can go wrong publishing, fetching or applying a version.
#[derive(Debug, thiserror::Error)]
pub enum RegionVersionError {
    /// The bucket could not be opened, read or written.
    #[error("region bucket: {0}")]
    Bucket(String),
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The version is not in the bucket.
    #[error("version {version} of region {region} is not in the bucket {BUCKET_REGIONS}")]
    Missing {
        /// Region id.
        region: String,
        /// Version.
        version: String,
    },
    /// The version's data is refused.
    #[error("{0}")]
    Invalid(#[from] linkbus_geo_data::GeoDataError),
    /// A version string that cannot be part of a key.
    #[error("version {0:?} must be letters, digits, '.', '-', '_'")]
    BadVersion(String),
    /// The bus holds another region's cases.
    #[error(
        "this bus holds the cases of region {bus} ({bus_name}){since}, and this linkbus is for region {ours} \
         ({ours_name}): starting would route {ours}'s reports against the wrong map and show {bus}'s cases on \
         {ours}'s console. Give each region a bus of its own: with the embedded nats-server, leave [nats] \
         embedded_data_dir unset (each region gets .linkbus/nats-<region id>) or give it a folder of its own; \
         with a NATS URL, another server or JetStream account. To run {bus} here again, start linkbus with \
         its region (--region {bus})",
        since = .since.as_ref().map(|s| format!(", routed there since {s}")).unwrap_or_default()
    )]
    OtherRegion {
        /// The region the bus was made for.
        bus: String,
        /// Its name.
        bus_name: String,
        /// When it claimed the bus, if known.
        since: Option<String>,
        /// The region of this linkbus.
        ours: String,
        /// Its name.
        ours_name: String,
    },
}

fn bucket_err(e: impl std::fmt::Display) -> RegionVersionError {
    RegionVersionError::Bucket(e.to_string())
}

/// `<region>.<version>.index`: the files of a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionIndex {
    /// File name and number of chunks.
    pub files: Vec<(String, usize)>,
}

/// `<region>.current`: the version in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Current {
    /// Version.
    pub version: String,
    /// Its effective date.
    pub effective_date: String,
}

fn version_ok(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The key of [`BusRegion`] in [`BUCKET_REGIONS`] (no region's key: theirs all hold a `.`).
pub const BUS_REGION_KEY: &str = "bus-region";

/// `bus-region`: the region whose cases this bus holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusRegion {
    /// Region id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When a router of it first started on this bus (RFC 3339).
    pub since: String,
}

/// Checks that the bus of `store` is `region`'s, and claims it if it is no region's yet: refuses
/// ([`RegionVersionError::OtherRegion`]) a bus claimed by another region, or one that holds
/// another region's archived versions (a bus used before claims existed). Safe for replicas
/// starting together: the claim is created once, and whoever loses the race checks the winner's.
pub async fn claim_bus(store: &kv::Store, region: &Region) -> Result<(), RegionVersionError> {
    let ours = BusRegion {
        id: region.manifest.id.clone(),
        name: region.manifest.name.clone(),
        since: jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .map(|t| t.to_string())
            .unwrap_or_default(),
    };
    let other = |bus: BusRegion| RegionVersionError::OtherRegion {
        bus: bus.id,
        bus_name: bus.name,
        since: Some(bus.since).filter(|s| !s.is_empty()),
        ours: ours.id.clone(),
        ours_name: ours.name.clone(),
    };
    for _ in 0..2 {
        if let Some(value) = store.get(BUS_REGION_KEY).await.map_err(bucket_err)? {
            let bus: BusRegion = serde_json::from_slice(&value)
                .map_err(|e| bucket_err(format!("{BUS_REGION_KEY} is not a region claim ({e})")))?;
            return if bus.id == ours.id { Ok(()) } else { Err(other(bus)) };
        }
        if let Some(id) = archived_regions(store).await?.into_iter().find(|id| *id != ours.id) {
            return Err(other(BusRegion {
                name: format!("its versions are archived here as {id}.*"),
                id,
                since: String::new(),
            }));
        }
        let value = serde_json::to_vec(&ours).map_err(bucket_err)?;
        match store.create(BUS_REGION_KEY, value.into()).await {
            Ok(_) => {
                info!(region = %ours.id, "this bus now holds the cases of region {}", ours.id);
                return Ok(());
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
            Err(e) => return Err(bucket_err(e)),
        }
    }
    Err(bucket_err(format!("{BUS_REGION_KEY} was claimed and then removed while starting; start again")))
}

/// The regions whose versions are archived in the bucket (`<region>.<version>.index`).
async fn archived_regions(store: &kv::Store) -> Result<Vec<String>, RegionVersionError> {
    use futures::TryStreamExt as _;
    let keys: Vec<String> = store.keys().await.map_err(bucket_err)?.try_collect().await.map_err(bucket_err)?;
    let mut regions: Vec<String> = keys
        .iter()
        .filter(|k| k.ends_with(".index"))
        .filter_map(|k| k.split_once('.').map(|(region, _)| region.to_owned()))
        .collect();
    regions.sort();
    regions.dedup();
    Ok(regions)
}

/// The key of `<region>.current`.
pub fn current_key(region: &str) -> String {
    format!("{region}.current")
}

/// Opens the bucket, creating it if needed (with `settings`' replicas and byte limit).
pub async fn open_bucket(js: &jetstream::Context, settings: &StreamSettings) -> Result<kv::Store, RegionVersionError> {
    nats::provision_bucket(js, BUCKET_REGIONS, "region data versions", Duration::ZERO, settings)
        .await
        .map_err(bucket_err)?;
    js.get_key_value(BUCKET_REGIONS).await.map_err(bucket_err)
}

/// Stores the region in `dir` (checked first) as a version and makes it current; returns it.
pub async fn publish_region(store: &kv::Store, dir: &Path) -> Result<Current, RegionVersionError> {
    let region = Region::load(dir)?;
    store_version(store, &region).await?;
    let current =
        Current { version: region.manifest.version.clone(), effective_date: region.manifest.effective_date.clone() };
    let value = serde_json::to_vec(&current).map_err(bucket_err)?;
    store.put(current_key(&region.manifest.id), value.into()).await.map_err(bucket_err)?;
    Ok(current)
}

/// Stores a loaded region's files as its version, unless the bucket has that version already
/// (versions are never overwritten): a router archives the version it starts with, so cases
/// routed with it can be re-run later.
pub async fn archive(store: &kv::Store, region: &Region) -> Result<(), RegionVersionError> {
    let index = format!("{}.{}.index", region.manifest.id, region.manifest.version);
    if store.get(index).await.map_err(bucket_err)?.is_none() {
        store_version(store, region).await?;
    }
    Ok(())
}

async fn store_version(store: &kv::Store, region: &Region) -> Result<(), RegionVersionError> {
    let (id, version) = (&region.manifest.id, &region.manifest.version);
    if !version_ok(version) {
        return Err(RegionVersionError::BadVersion(version.clone()));
    }
    let mut index = VersionIndex { files: Vec::new() };
    for file in VERSION_FILES {
        let path = region.dir.join(file);
        if !path.exists() {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            let key = format!("{id}.{version}.{file}.{n}");
            store.put(key, Bytes::copy_from_slice(chunk)).await.map_err(bucket_err)?;
        }
        index.files.push((file.to_owned(), chunks.len()));
    }
    let index = serde_json::to_vec(&index).map_err(bucket_err)?;
    store.put(format!("{id}.{version}.index"), index.into()).await.map_err(bucket_err)?;
    Ok(())
}

/// Writes version `version` of `region` from the bucket into `into` (a folder).
pub async fn fetch_version(
    store: &kv::Store,
    region: &str,
    version: &str,
    into: &Path,
) -> Result<(), RegionVersionError> {
    if !version_ok(version) {
        return Err(RegionVersionError::BadVersion(version.to_owned()));
    }
    let missing = || RegionVersionError::Missing { region: region.to_owned(), version: version.to_owned() };
    let index = store.get(format!("{region}.{version}.index")).await.map_err(bucket_err)?.ok_or_else(missing)?;
    let index: VersionIndex = serde_json::from_slice(&index).map_err(bucket_err)?;
    for (file, chunks) in &index.files {
        if !VERSION_FILES.contains(&file.as_str()) {
            return Err(bucket_err(format!("the index names an unexpected file {file:?}")));
        }
        let mut bytes = Vec::new();
        for n in 0..*chunks {
            let chunk =
                store.get(format!("{region}.{version}.{file}.{n}")).await.map_err(bucket_err)?.ok_or_else(missing)?;
            bytes.extend_from_slice(&chunk);
        }
        std::fs::write(into.join(file), bytes)?;
    }
    Ok(())
}

/// Fetches and loads version `version` of `region` (checked as at start-up).
pub async fn load_version(store: &kv::Store, region: &str, version: &str) -> Result<Region, RegionVersionError> {
    let dir = tempfile::tempdir()?;
    fetch_version(store, region, version, dir.path()).await?;
    Ok(Region::load(dir.path())?)
}

/// Watches `<region>.current` until `shutdown`; each version other than the one routing is
/// built aside and swapped in (then `swapped` is told, e.g. to update the process's metrics),
/// or refused (logged, dead-lettered) with the old one kept.
pub async fn follow_region(
    js: jetstream::Context,
    store: kv::Store,
    state: Arc<RouterState>,
    region: String,
    params: RoutingParams,
    swapped: impl Fn(&Region) + Send + Sync,
    shutdown: CancellationToken,
) {
    let key = current_key(&region);
    let follower = RegionFollower { js: &js, store: &store, state: &state, region: &region, params: &params, swapped };
    nats::follow_bucket_with(&store, &key, 0, &CancellationToken::new(), &shutdown, follower).await;
}

/// Follows `<region>.current` for [`follow_region`]: the version in force when it starts, then
/// each one published.
struct RegionFollower<'a, S> {
    js: &'a jetstream::Context,
    store: &'a kv::Store,
    state: &'a RouterState,
    region: &'a str,
    params: &'a RoutingParams,
    swapped: S,
}

impl<S: Fn(&Region) + Send + Sync> nats::BucketFollower for RegionFollower<'_, S> {
    async fn apply(&mut self, entry: kv::Entry) {
        if entry.operation != kv::Operation::Put {
            return;
        }
        if let Some(loaded) = apply(self.js, self.store, self.state, self.region, self.params, &entry).await {
            (self.swapped)(&loaded);
        }
    }
}

/// Builds the version an entry of `<region>.current` names and swaps it in (returning it), or
/// refuses it.
async fn apply(
    js: &jetstream::Context,
    store: &kv::Store,
    state: &RouterState,
    region: &str,
    params: &RoutingParams,
    entry: &kv::Entry,
) -> Option<Region> {
    let wanted = match serde_json::from_slice::<Current>(&entry.value) {
        Ok(current) => current.version,
        Err(e) => {
            refuse(js, state, entry, &format!("not a current-version record: {e}")).await;
            return None;
        }
    };
    let geo_version = format!("{region}@{wanted}");
    if state.router().geo_version() == geo_version {
        return None;
    }
    let started = Instant::now();
    let built = match load_version(store, region, &wanted).await {
        Ok(loaded) if loaded.manifest.id != region => Err(format!("the version is of region {}", loaded.manifest.id)),
        Ok(loaded) if loaded.manifest.version != wanted => {
            Err(format!("its manifest says version {}", loaded.manifest.version))
        }
        Ok(loaded) => Ok((Router::new(&loaded, params.clone()), loaded)),
        Err(e) => Err(e.to_string()),
    };
    match built {
        Ok((router, loaded)) => {
            let build = started.elapsed();
            let pause = state.swap_router(router);
            let nanos = u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX);
            state.stats.region_swap_pause_ns.store(nanos, Ordering::Relaxed);
            state.stats.region_reloads.fetch_add(1, Ordering::Relaxed);
            state.metrics.region_swaps.inc();
            info!(
                version = %geo_version,
                build_ms = build.as_secs_f64() * 1e3,
                swap_pause_us = pause.as_secs_f64() * 1e6,
                "region version swapped in"
            );
            Some(loaded)
        }
        Err(reason) => {
            let reason =
                format!("region version {geo_version} refused, {} stays: {reason}", state.router().geo_version());
            refuse(js, state, entry, &reason).await;
            None
        }
    }
}

async fn refuse(js: &jetstream::Context, state: &RouterState, entry: &kv::Entry, reason: &str) {
    state.stats.region_refused.fetch_add(1, Ordering::Relaxed);
    warn!(key = %entry.key, reason, "region version refused");
    match crate::service::dead_letter_entry(js, BUCKET_REGIONS, "regions", "invalid", reason, entry).await {
        Ok(()) => state.metrics.deadletter_region(),
        Err(e) => warn!(error = %e, "could not dead-letter a refused region version"),
    }
}
