//! The PostGIS baseline: the same decision a user would otherwise ask a spatial database for —
//! the community containing the case (`ST_Contains` on a GiST index) and the k nearest
//! available volunteers with the skill within the radius, ranked by `<->` on **geography** (true
//! ground distance; on SRID 4326 *geometry* `<->` ranks by degrees, which at Beijing's latitude
//! stretches east–west distances by 1 / cos 40° and picks the wrong volunteers), served by a
//! partial GiST index on the available ones — over one connection per client from Rust.
//!
//! Before anything is timed, a sample of cases is answered by both PostGIS and linkbus's own
//! indexes on the same synthetic city ([`crate::synthetic`]); any community that differs, or any
//! top-k that differs other than by the order of equidistant volunteers, stops the run. The
//! same sample ranked by degrees is counted too, to show why geography is used.
//!
//! Besides the round trips, each run reads the CPU time of the PostgreSQL backends serving its
//! connections (`pg_backend_pid()`, then `/proc/<pid>/stat`'s user and system time before and after,
//! [`cpu::process_seconds`]), so that
//! PostGIS is compared per CPU-second as linkbus is: a round trip also waits on the client, the
//! socket and the scheduler, and a server can serve other clients meanwhile. Only where the
//! server runs on this host (as `ops/scripts/bench`'s throwaway cluster does).

use std::time::Instant;

use anyhow::Context as _;
use futures::SinkExt as _;
use hdrhistogram::Histogram;
use linkbus_matching::communities::Located;
use linkbus_matching::geodesy::haversine_m;
use linkbus_matching::{Router, RoutingParams, VolunteerIndex};
use linkbus_wire::VolunteerStatus;
use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Statement};

use crate::cpu;
use crate::decisions::Percentiles;
use crate::synthetic;

/// Rows per COPY chunk.
const CHUNK: usize = 10_000;

/// What to measure.
#[derive(Debug, Clone)]
pub struct PostgisOptions {
    /// libpq connection string, e.g. `host=127.0.0.1 port=5433 user=postgres dbname=postgres`.
    pub conninfo: String,
    /// Communities in the synthetic city.
    pub communities: usize,
    /// Volunteers in it.
    pub volunteers: usize,
    /// Cases checked against linkbus before timing.
    pub verify: usize,
    /// Decisions timed per run.
    pub decisions: usize,
    /// Concurrent clients of each run, one connection each.
    pub clients: Vec<usize>,
}

/// One timed run.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRun {
    /// Concurrent clients.
    pub clients: usize,
    /// Decisions made.
    pub decisions: usize,
    /// Decisions per second, all clients together.
    pub decisions_per_second: f64,
    /// CPU time the backends serving the clients spent over the run, seconds (none where their
    /// `/proc` entries cannot be read: a server on another host).
    pub backend_cpu_seconds: Option<f64>,
    /// Decisions per CPU-second of the backends: PostGIS's throughput per core.
    pub decisions_per_cpu_second: Option<f64>,
    /// Each decision's round trip.
    pub latency: Percentiles,
}

/// What the baseline measured.
#[derive(Debug, Clone, Serialize)]
pub struct PostgisReport {
    /// `SELECT postgis_full_version()`'s first words.
    pub version: String,
    /// Communities.
    pub communities: usize,
    /// Volunteers.
    pub volunteers: usize,
    /// Seconds to load and index the data.
    pub load_seconds: f64,
    /// Cases compared with linkbus.
    pub verified: usize,
    /// Of which the top-k by degrees (geometry `<->`) differed from the true one.
    pub degrees_top_k_wrong: usize,
    /// The timed runs.
    pub runs: Vec<ClientRun>,
}

/// The decision as one statement: $1 lon, $2 lat, $3 skill, $4 radius (m), $5 k.
const DECIDE: &str = "\
SELECT (SELECT id FROM communities
         WHERE ST_Contains(geom, ST_SetSRID(ST_MakePoint($1, $2), 4326)) ORDER BY id LIMIT 1),
       ARRAY(SELECT id FROM volunteers
              WHERE available AND $3 = ANY (skills)
                AND ST_DWithin(geog, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, $4, false)
              ORDER BY geog <-> ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography
              LIMIT $5)";

/// The volunteer search ranked by degrees, as a naive `<->` on SRID 4326 geometry would.
const BY_DEGREES: &str = "\
SELECT ARRAY(SELECT id FROM volunteers
              WHERE available AND $3 = ANY (skills)
                AND ST_DWithin(geog, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, $4, false)
              ORDER BY geog::geometry <-> ST_SetSRID(ST_MakePoint($1, $2), 4326)
              LIMIT $5)";

const PARAMS: [Type; 5] = [Type::FLOAT8, Type::FLOAT8, Type::TEXT, Type::FLOAT8, Type::INT8];

async fn connect(conninfo: &str) -> anyhow::Result<Client> {
    let (client, connection) =
        tokio_postgres::connect(conninfo, NoTls).await.with_context(|| format!("cannot connect to {conninfo}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection: {e}");
        }
    });
    Ok(client)
}

/// One case's question: where, which skill (none: no volunteer search).
struct Question {
    lon: f64,
    lat: f64,
    skill: Option<String>,
}

/// Loads the city, checks PostGIS against linkbus, and times it.
pub async fn run(options: &PostgisOptions) -> anyhow::Result<PostgisReport> {
    let grid = synthetic::grid(options.communities, synthetic::VERTICES);
    let (min, max) = (grid.min, grid.max);
    let region = synthetic::region(grid);
    let roster = synthetic::volunteers(options.volunteers);
    let params = RoutingParams::default();
    let router = Router::new(&region, params.clone());
    let index = VolunteerIndex::from_roster(&roster)?;
    let questions: Vec<Question> = synthetic::cases(8, options.decisions.max(options.verify), &region, min, max)
        .into_iter()
        .map(|c| Question {
            lon: c.location.lon,
            lat: c.location.lat,
            skill: region.category(&c.category).and_then(|c| c.volunteer_skill.clone()),
        })
        .collect();

    let client = connect(&options.conninfo).await?;
    let started = Instant::now();
    load(&client, &region.communities, &roster).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let version: String = client.query_one("SELECT postgis_lib_version()", &[]).await?.get(0);

    // The same answers as linkbus, or no timing.
    let decide = client.prepare_typed(DECIDE, &PARAMS).await?;
    let by_degrees = client.prepare_typed(BY_DEGREES, &PARAMS).await?;
    let (k, radius) = (params.volunteers_k as i64, params.volunteer_radius_m);
    let mut degrees_top_k_wrong = 0;
    for q in &questions[..options.verify] {
        let skill = q.skill.clone().unwrap_or_default();
        let limit = if q.skill.is_some() { k } else { 0 };
        let row = client.query_one(&decide, &[&q.lon, &q.lat, &skill, &radius, &limit]).await?;
        let (community, volunteers): (Option<String>, Vec<String>) = (row.get(0), row.get(1));
        let want_community = match router.communities().locate(q.lon, q.lat) {
            Located::Inside(c) => Some(router.communities().communities()[c].id.clone()),
            other => anyhow::bail!("synthetic case at ({}, {}) not inside a community: {other:?}", q.lon, q.lat),
        };
        anyhow::ensure!(
            community == want_community,
            "PostGIS puts ({}, {}) in {community:?}, linkbus in {want_community:?}",
            q.lon,
            q.lat
        );
        let want: Vec<String> = match &q.skill {
            Some(skill) => index.nearest(q.lon, q.lat, skill, k as usize, radius).0.into_iter().map(|v| v.id).collect(),
            None => vec![],
        };
        anyhow::ensure!(
            same_ranking(&roster, q, &volunteers, &want),
            "PostGIS and linkbus disagree on the volunteers at ({}, {}): {volunteers:?} vs {want:?}",
            q.lon,
            q.lat
        );
        let row = client.query_one(&by_degrees, &[&q.lon, &q.lat, &skill, &radius, &limit]).await?;
        let degrees: Vec<String> = row.get(0);
        if !same_ranking(&roster, q, &degrees, &want) {
            degrees_top_k_wrong += 1;
        }
    }

    let mut runs = Vec::with_capacity(options.clients.len());
    for &clients in &options.clients {
        runs.push(timed(options, &questions, clients, k, radius).await?);
    }
    Ok(PostgisReport {
        version,
        communities: options.communities,
        volunteers: options.volunteers,
        load_seconds,
        verified: options.verify,
        degrees_top_k_wrong,
        runs,
    })
}

/// Whether `got` ranks the same volunteers as `want`, but for the order of equidistant ones
/// (distances equal to the centimetre, as linkbus rounds them).
fn same_ranking(roster: &[VolunteerStatus], q: &Question, got: &[String], want: &[String]) -> bool {
    if got == want {
        return true;
    }
    let distances = |ids: &[String]| -> Option<Vec<i64>> {
        ids.iter()
            .map(|id| {
                let n: usize = id.strip_prefix('v')?.parse().ok()?;
                let v = roster.get(n)?;
                Some((haversine_m(q.lon, q.lat, v.location.lon, v.location.lat) * 100.0).round() as i64)
            })
            .collect()
    };
    got.len() == want.len() && distances(got).is_some() && distances(got) == distances(want)
}

/// `decisions` decisions from `clients` connections at once.
async fn timed(
    options: &PostgisOptions,
    questions: &[Question],
    clients: usize,
    k: i64,
    radius: f64,
) -> anyhow::Result<ClientRun> {
    let per_client = options.decisions / clients;
    let mut connections: Vec<(Client, Statement)> = Vec::with_capacity(clients);
    let mut backends: Vec<u32> = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = connect(&options.conninfo).await?;
        let statement = client.prepare_typed(DECIDE, &PARAMS).await?;
        let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        backends.push(pid as u32);
        connections.push((client, statement));
    }
    let backend_cpu = || backends.iter().map(|pid| cpu::process_seconds(*pid)).sum::<Option<f64>>();
    let cpu_before = backend_cpu();
    let started = Instant::now();
    let tasks = connections.into_iter().enumerate().map(|(c, (client, statement))| {
        // Each client its own stretch of the questions.
        let mine: Vec<(f64, f64, String, i64)> = questions
            .iter()
            .cycle()
            .skip(c * per_client)
            .take(per_client)
            .map(|q| (q.lon, q.lat, q.skill.clone().unwrap_or_default(), if q.skill.is_some() { k } else { 0 }))
            .collect();
        tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
            for (lon, lat, skill, limit) in &mine {
                let t = Instant::now();
                client.query_one(&statement, &[lon, lat, skill, &radius, limit]).await?;
                h.saturating_record(t.elapsed().as_nanos() as u64);
            }
            // The client too: closing it ends its backend, whose CPU time is read after.
            anyhow::Ok((h, client))
        })
    });
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut open = Vec::with_capacity(clients);
    for task in futures::future::join_all(tasks).await {
        let (h, client) = task??;
        all.add(h)?;
        open.push(client);
    }
    let seconds = started.elapsed().as_secs_f64();
    let backend_cpu_seconds = cpu_before.zip(backend_cpu()).map(|(before, after)| after - before);
    drop(open);
    let decisions = per_client * clients;
    Ok(ClientRun {
        clients,
        decisions,
        decisions_per_second: decisions as f64 / seconds,
        backend_cpu_seconds,
        decisions_per_cpu_second: backend_cpu_seconds.map(|s| decisions as f64 / s.max(f64::EPSILON)),
        latency: Percentiles::of(&all),
    })
}

/// Creates the tables, copies the city in, indexes it.
async fn load(
    client: &Client,
    communities: &[linkbus_geo_data::Community],
    roster: &[VolunteerStatus],
) -> anyhow::Result<()> {
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS postgis;
             DROP TABLE IF EXISTS communities, volunteers;
             CREATE TABLE communities (id text PRIMARY KEY, geom geometry(MultiPolygon, 4326) NOT NULL);
             CREATE TABLE volunteers (id text PRIMARY KEY, available boolean NOT NULL, skills text[] NOT NULL,
                                      geog geography(Point, 4326) NOT NULL);",
        )
        .await
        .context("creating the tables (is postgresql-15-postgis-3 installed?)")?;
    copy(
        client,
        "COPY communities (id, geom) FROM STDIN",
        communities.iter().map(|c| {
            let rings: Vec<String> = c
                .boundary
                .0
                .iter()
                .map(|p| {
                    let ring: Vec<String> = p.exterior().coords().map(|c| format!("{} {}", c.x, c.y)).collect();
                    format!("(({}))", ring.join(","))
                })
                .collect();
            format!("{}\tSRID=4326;MULTIPOLYGON({})\n", c.id, rings.join(","))
        }),
    )
    .await?;
    copy(
        client,
        "COPY volunteers (id, available, skills, geog) FROM STDIN",
        roster.iter().map(|v| {
            format!(
                "{}\t{}\t{{{}}}\tSRID=4326;POINT({} {})\n",
                v.id,
                if v.available { 't' } else { 'f' },
                v.skills.join(","),
                v.location.lon,
                v.location.lat
            )
        }),
    )
    .await?;
    client
        .batch_execute(
            "CREATE INDEX communities_geom ON communities USING gist (geom);
             CREATE INDEX volunteers_available ON volunteers USING gist (geog) WHERE available;
             ANALYZE communities; ANALYZE volunteers;",
        )
        .await
        .context("indexing")?;
    Ok(())
}

async fn copy(client: &Client, statement: &str, rows: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let sink = client.copy_in::<_, bytes::Bytes>(statement).await.with_context(|| statement.to_owned())?;
    futures::pin_mut!(sink);
    let mut chunk = String::new();
    for (n, row) in rows.enumerate() {
        chunk.push_str(&row);
        if (n + 1) % CHUNK == 0 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut chunk))).await?;
        }
    }
    if !chunk.is_empty() {
        sink.send(bytes::Bytes::from(chunk)).await?;
    }
    sink.finish().await.with_context(|| statement.to_owned())?;
    Ok(())
}
