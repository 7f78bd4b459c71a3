//! [`StorageLimits`]: the byte limit of every stream and KV bucket (`[storage]` in the
//! configuration). JetStream reserves each stream's limit against its `max_file_store` when the
//! stream is created, so the limits together can never fill the store; a stream at its limit
//! refuses new messages (or, for dead letters and offers, drops its oldest).

use serde::Deserialize;

use crate::names;

/// The byte limits of the bus's streams and buckets, in MiB (`[storage]`). The defaults hold a
/// week (`[nats] retention_days`) of a city of about two million people, 20,000 cases a day,
/// and a million volunteers, with the message sizes measured in docs/operations.md ("Storage"):
/// 4.8 GiB in all (what a laptop can reserve too: nats-server reserves them in 75 % of the
/// disk's free space when it has no `max_file_store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageLimits {
    /// Each of the four ingest streams (one per kind of source system). Full, it refuses new
    /// reports: the source is told to retry, and what it sent before is never dropped.
    pub ingest_mib: u64,
    /// Routed cases, per department and community (`LINKBUS_ROUTED`). Full, it refuses: routing
    /// stops, loudly, rather than dropping copies a department has not read yet.
    pub routed_mib: u64,
    /// Case timeline events (`LINKBUS_CASES`), which the case book reads. Full, it refuses.
    pub cases_mib: u64,
    /// Volunteer offers (`LINKBUS_OFFERS`). Full, it drops its oldest: offers live minutes.
    pub offers_mib: u64,
    /// Dead letters (`LINKBUS_DEADLETTER`). Full, it drops its oldest: refused input never
    /// blocks routing (each dead letter is also counted in `linkbus_deadletters_total`).
    pub deadletter_mib: u64,
    /// Case records (KV `linkbus_cases`), one per case, kept until moved out.
    pub case_records_mib: u64,
    /// Volunteers' live state (KV `linkbus_volunteers`), one entry per volunteer.
    pub volunteers_mib: u64,
    /// The routers' snapshot of the volunteer index (object store `linkbus_snapshots`): 27 bytes
    /// a volunteer and its id's length (10^6: 35 MB), held twice while a new one replaces the
    /// old. Full, a snapshot is not saved and routers start by reading the whole volunteers
    /// bucket.
    pub snapshots_mib: u64,
    /// Each other bucket: the console's, region versions, commerce deliveries, webhook
    /// delivery records, dead-letter replays.
    pub small_bucket_mib: u64,
}

impl Default for StorageLimits {
    fn default() -> Self {
        Self {
            ingest_mib: 128,
            routed_mib: 1024,
            cases_mib: 1024,
            offers_mib: 256,
            deadletter_mib: 128,
            case_records_mib: 1024,
            volunteers_mib: 512,
            snapshots_mib: 256,
            small_bucket_mib: 32,
        }
    }
}

const MIB: u64 = 1024 * 1024;

impl StorageLimits {
    /// Every limit is at least 1 MiB and at most 1 PiB.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("ingest_mib", self.ingest_mib),
            ("routed_mib", self.routed_mib),
            ("cases_mib", self.cases_mib),
            ("offers_mib", self.offers_mib),
            ("deadletter_mib", self.deadletter_mib),
            ("case_records_mib", self.case_records_mib),
            ("volunteers_mib", self.volunteers_mib),
            ("snapshots_mib", self.snapshots_mib),
            ("small_bucket_mib", self.small_bucket_mib),
        ];
        match fields.iter().find(|(_, mib)| !(1..=1 << 30).contains(mib)) {
            Some((name, mib)) => Err(format!("storage.{name} must be 1 MiB to 1 PiB, not {mib}")),
            None => Ok(()),
        }
    }

    /// The limit of stream `name`, bytes (`-1`: none, for a stream linkbus does not make).
    pub fn stream_bytes(&self, name: &str) -> i64 {
        let mib = match name {
            names::STREAM_ROUTED => self.routed_mib,
            names::STREAM_CASES => self.cases_mib,
            names::STREAM_OFFERS => self.offers_mib,
            names::STREAM_DEADLETTER => self.deadletter_mib,
            ingest if names::INGEST_STREAMS.contains(&ingest) => self.ingest_mib,
            _ => return -1,
        };
        bytes(mib)
    }

    /// The limit of KV bucket or object store `bucket`, bytes.
    pub fn bucket_bytes(&self, bucket: &str) -> i64 {
        bytes(match bucket {
            names::BUCKET_CASES => self.case_records_mib,
            names::BUCKET_VOLUNTEERS => self.volunteers_mib,
            names::OBJECTS_SNAPSHOTS => self.snapshots_mib,
            _ => self.small_bucket_mib,
        })
    }

    /// Everything linkbus reserves in a JetStream store, bytes, per replica: the streams, the two
    /// large buckets, the snapshots and the six small buckets. An embedded server's
    /// `max_file_store` must be at least this (and the disk must hold it).
    pub fn reserved_bytes(&self) -> u64 {
        (4 * self.ingest_mib
            + self.routed_mib
            + self.cases_mib
            + self.offers_mib
            + self.deadletter_mib
            + self.case_records_mib
            + self.volunteers_mib
            + self.snapshots_mib
            + 6 * self.small_bucket_mib)
            .saturating_mul(MIB)
    }
}

fn bytes(mib: u64) -> i64 {
    i64::try_from(mib.saturating_mul(MIB)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_cover_every_stream_and_bucket() {
        let limits = StorageLimits::default();
        assert!(limits.check().is_ok());
        for stream in names::INGEST_STREAMS {
            assert_eq!(limits.stream_bytes(stream), 128 * MIB as i64);
        }
        assert_eq!(limits.stream_bytes("SOMEONE_ELSES"), -1);
        assert_eq!(limits.bucket_bytes(names::BUCKET_CASES), 1024 * MIB as i64);
        assert_eq!(limits.bucket_bytes("linkbus_console"), 32 * MIB as i64);
        assert_eq!(limits.bucket_bytes(names::OBJECTS_SNAPSHOTS), 256 * MIB as i64);
        assert_eq!(limits.reserved_bytes(), 4_928 * MIB, "4.8 GiB");
        assert!(StorageLimits { routed_mib: 0, ..limits }.check().expect_err("zero").contains("routed_mib"));
    }
}
