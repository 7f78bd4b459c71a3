//! How the dispatcher console's page travels, against a real `linkbus up` (Beijing, its own
//! nats-server) with a plain HTTP client that decodes nothing itself: a sign-in's page load
//! fetches what a browser fetches (the page, every script and style it names or imports, the
//! sign-in, the region, its boundaries, the volunteers and the first event of the live stream),
//! once asking for no compression, once with `Accept-Encoding: gzip, br` as browsers send, once
//! with gzip alone, and once more as a browser that has the first load in its cache (revalidating
//! what it must, fetching nothing marked immutable). Each compressed body decodes to the same
//! bytes as the uncompressed one, carries `Vary: Accept-Encoding`, an `ETag` that answers `304`
//! on `If-None-Match`, and the scripts and styles are named in a versioned folder and immutable.
//! The bytes transferred (headers and bodies) are printed for docs/console.md.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::process::Command;

use linkbus_tests::{Running, WAIT, repo_root};

use crate::console::DISPATCHER;

/// `linkbus up` on Beijing with its own nats-server in `dir`, one dispatcher key; its base URL.
fn start_beijing(dir: &std::path::Path) -> (Running, String) {
    start_region(dir, "beijing", &[])
}

/// `linkbus up` on region `region` (a folder of `geo-data/`) with its own nats-server in
/// `dir/nats`, one dispatcher key, `args` added; its base URL.
fn start_region(dir: &std::path::Path, region: &str, args: &[&str]) -> (Running, String) {
    let config = linkbus_tests::write_config(
        dir,
        &format!(
            "[nats]\nembedded_data_dir = \"{}\"\nembedded_port = 0\n[region]\ndir = \"{}\"\n\
             [api]\nlisten = \"127.0.0.1:0\"\n[[api.keys]]\nrole = \"dispatcher\"\nid = \"dana\"\nsha256 = \"{}\"\n",
            dir.join("nats").display(),
            repo_root().join("geo-data").join(region).display(),
            linkbus_http::auth::hash_key(DISPATCHER),
        ),
    );
    let (process, announced) = linkbus_tests::start_up(
        Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
            .args(["up", "--config"])
            .arg(&config)
            .args(args)
            .current_dir(repo_root())
            .env_remove("LINKBUS_NATS_URL"),
    );
    let base = format!("http://{}", announced.console());
    (process, base)
}

/// One response as it came over the wire.
pub(crate) struct Fetched {
    status: u16,
    headers: reqwest::header::HeaderMap,
    /// The body as sent (compressed, if it was).
    pub(crate) raw: Vec<u8>,
    /// Status line, headers and body, bytes.
    transferred: usize,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body decoded from its `Content-Encoding`.
    pub(crate) fn decoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.header("content-encoding") {
            None => out.clone_from(&self.raw),
            Some("gzip") => {
                // What is decoded so far: the live stream is cut after its first event.
                let mut decoder = flate2::write::GzDecoder::new(Vec::new());
                decoder.write_all(&self.raw).expect("gzip decodes");
                decoder.flush().expect("gzip decodes");
                out = std::mem::take(decoder.get_mut());
            }
            Some("br") => {
                brotli::Decompressor::new(&self.raw[..], 4096).read_to_end(&mut out).expect("brotli decodes");
            }
            Some(other) => panic!("unexpected content-encoding {other}"),
        }
        out
    }
}

/// What a browser sends with each request of one load.
#[derive(Clone, Copy)]
pub(crate) struct Browser<'a> {
    pub(crate) accept_encoding: Option<&'a str>,
    /// The first load's responses, by path: their `ETag`s go in `If-None-Match`, and what was
    /// marked immutable is not asked for again.
    pub(crate) cache: Option<&'a BTreeMap<String, Fetched>>,
}

/// `path` fetched as `browser` would, with [`DISPATCHER`]'s key; the live stream up to the end of
/// its first event. None when the browser's cache holds it for good.
pub(crate) async fn fetch(http: &reqwest::Client, base: &str, path: &str, browser: Browser<'_>) -> Option<Fetched> {
    let cached = browser.cache.and_then(|c| c.get(path));
    if cached.is_some_and(|c| c.header("cache-control").is_some_and(|v| v.contains("immutable"))) {
        return None;
    }
    let mut request = if path == "/console/session" {
        http.post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "key": DISPATCHER }).to_string())
    } else {
        http.get(format!("{base}{path}")).bearer_auth(DISPATCHER)
    };
    if let Some(accept) = browser.accept_encoding {
        request = request.header("accept-encoding", accept);
    }
    if let Some(etag) = cached.and_then(|c| c.header("etag")) {
        request = request.header("if-none-match", etag);
    }
    let mut response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let head: usize = 17 + headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum::<usize>();
    let mut fetched = Fetched { status, transferred: head, headers, raw: Vec::new() };
    // The live stream never ends: read up to the end of its first event (the `reset`).
    while let Some(chunk) = response.chunk().await.expect("the body").map(|c| c.to_vec()) {
        fetched.raw.extend_from_slice(&chunk);
        if path == "/console/events" && fetched.decoded().windows(2).any(|w| w == b"\n\n") {
            break;
        }
    }
    fetched.transferred += fetched.raw.len();
    Some(fetched)
}

/// The console files a module or style sheet at `path` loads: its relative imports.
fn imports(path: &str, text: &str) -> Vec<String> {
    let folder = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    text.split(['\'', '"'])
        .filter(|s| s.starts_with("./") && s.ends_with(".js"))
        .map(|s| format!("{folder}{}", &s[2..]))
        .collect()
}

/// Every response of one sign-in's page load, by path.
async fn page_load(http: &reqwest::Client, base: &str, browser: Browser<'_>) -> BTreeMap<String, Fetched> {
    let mut loaded = BTreeMap::new();
    let page = fetch(http, base, "/", browser).await.expect("the page is always asked for");
    let first = browser.cache.and_then(|c| c.get("/")).unwrap_or(&page);
    let text = String::from_utf8(first.decoded()).expect("the page is UTF-8");
    let mut queue: Vec<String> =
        text.split('"').filter(|s| s.starts_with("/console/assets/")).map(str::to_owned).collect();
    loaded.insert("/".to_owned(), page);
    while let Some(path) = queue.pop() {
        if loaded.contains_key(&path) {
            continue;
        }
        let known = browser.cache.and_then(|c| c.get(&path));
        let got = fetch(http, base, &path, browser).await;
        let body = match (&got, known) {
            (Some(got), _) if got.status == 200 => got.decoded(),
            (_, Some(known)) => known.decoded(),
            _ => panic!("{path}: neither fetched nor cached"),
        };
        if path.ends_with(".js") {
            queue.extend(imports(&path, &String::from_utf8_lossy(&body)));
        }
        if let Some(got) = got {
            loaded.insert(path, got);
        } else {
            loaded.insert(path, Fetched { status: 0, headers: Default::default(), raw: Vec::new(), transferred: 0 });
        }
    }
    for path in
        ["/console/session", "/console/region", "/console/region/communities", "/console/volunteers", "/console/events"]
    {
        let got = fetch(http, base, path, browser).await.expect("data is always asked for");
        loaded.insert(path.to_owned(), got);
    }
    loaded
}

/// The ids of the cases in the first event of a live stream, a `reset`.
pub(crate) fn reset_cases(events: &Fetched) -> Vec<String> {
    let text = String::from_utf8(events.decoded()).expect("UTF-8");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).expect("a reset with data");
    let reset: serde_json::Value = serde_json::from_str(data).expect("JSON");
    let cases = reset["cases"].as_array().expect("cases");
    cases.iter().map(|c| c["id"].as_str().unwrap_or_default().to_owned()).collect()
}

fn total(load: &BTreeMap<String, Fetched>) -> usize {
    load.values().map(|f| f.transferred).sum()
}

fn report(name: &str, load: &BTreeMap<String, Fetched>) {
    let requests = load.values().filter(|f| f.status != 0).count();
    println!("{name}: {} bytes in {requests} requests", total(load));
    for (path, f) in load {
        println!(
            "  {path}: {} {} bytes{}",
            f.status,
            f.transferred,
            f.header("content-encoding").map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_transfers_compressed_files_and_a_second_load_revalidates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_up, base) = start_beijing(dir.path());
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");

    let plain = page_load(&http, &base, Browser { accept_encoding: None, cache: None }).await;
    let compressed =
        page_load(&http, &base, Browser { accept_encoding: Some("gzip, deflate, br, zstd"), cache: None }).await;
    let gzip = page_load(&http, &base, Browser { accept_encoding: Some("gzip"), cache: None }).await;
    report("uncompressed", &plain);
    report("gzip, br", &compressed);
    report("gzip", &gzip);

    assert!(
        plain.keys().any(|p| p.ends_with("/app.js")) && plain.keys().any(|p| p.ends_with("/detail.js")),
        "{:?}",
        plain.keys()
    );
    for (path, sent) in &plain {
        assert_eq!(sent.status, 200, "{path}");
        assert_eq!(sent.header("content-encoding"), None, "{path}: not asked for compression");
    }
    for (load, coding) in [(&compressed, "br"), (&gzip, "gzip")] {
        assert_eq!(load.keys().collect::<Vec<_>>(), plain.keys().collect::<Vec<_>>());
        for (path, sent) in load {
            let same = &plain[path];
            if path == "/console/session" {
                continue;
            }
            if path == "/console/events" {
                assert_eq!(sent.header("content-encoding"), Some("gzip"), "{path}: gzipped as a stream");
                assert_eq!(reset_cases(sent), reset_cases(same), "{path}");
                continue;
            }
            if path == "/console/volunteers" {
                // Positions move; the same shape is enough.
                assert_eq!(sent.header("content-encoding"), Some(coding), "{path}");
                assert!(serde_json::from_slice::<serde_json::Value>(&sent.decoded()).is_ok(), "{path}");
                continue;
            }
            assert_eq!(sent.decoded(), same.decoded(), "{path}: decodes to the same bytes");
            assert_eq!(sent.header("content-encoding"), Some(coding), "{path}: compressed");
            assert!(sent.raw.len() < same.raw.len(), "{path}: smaller");
            assert!(
                sent.header("vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
                "{path}: Vary"
            );
            assert!(sent.header("etag").is_some(), "{path}: an ETag");
            if let Some(file) = path.strip_prefix("/console/assets/") {
                let version = file.split('/').next().unwrap_or_default();
                assert!(
                    version.len() == 12 && version.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{path}: the page names its files in a versioned folder"
                );
                assert!(sent.header("cache-control").is_some_and(|c| c.contains("immutable")), "{path}");
            } else {
                assert!(sent.header("cache-control").is_some_and(|c| c.contains("no-cache")), "{path}");
            }
        }
    }
    assert!(total(&compressed) * 3 < total(&plain), "{} vs {}", total(&compressed), total(&plain));

    let again =
        page_load(&http, &base, Browser { accept_encoding: Some("gzip, deflate, br, zstd"), cache: Some(&compressed) })
            .await;
    report("second load", &again);
    // No volunteer moved meanwhile: their positions revalidate too.
    for path in ["/", "/console/region", "/console/region/communities", "/console/volunteers"] {
        assert_eq!(again[path].status, 304, "{path}: revalidated");
        assert!(again[path].raw.is_empty() && again[path].header("etag").is_some(), "{path}");
    }
    assert!(
        again.iter().filter(|(p, _)| p.starts_with("/console/assets/")).all(|(_, f)| f.status == 0),
        "cached for good"
    );
    assert!(total(&again) * 20 < total(&compressed), "{} vs {}", total(&again), total(&compressed));

    // The files are still served under their plain names (revalidated each time), and a stale
    // ETag gets the body.
    let plain_name =
        fetch(&http, &base, "/console/assets/app.js", Browser { accept_encoding: Some("br"), cache: None })
            .await
            .expect("fetched");
    assert_eq!(plain_name.status, 200);
    assert_eq!(plain_name.header("cache-control"), Some("no-cache"));
    let stale =
        http.get(format!("{base}/")).header("if-none-match", "\"0000000000000000\"").send().await.expect("answer");
    assert_eq!(stale.status(), 200);
}

/// The live stream with every San Francisco case of the 311 sample: its first event (every live
/// case) is gzipped, and a case published later still reaches the open stream at once (each
/// event is flushed, not held for more to compress).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_is_gzipped_event_by_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_up, base) =
        start_region(dir.path(), "san-francisco", &["--replay", "geo-data/san-francisco/sf311-cases-sample.csv"]);
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let plain = Browser { accept_encoding: None, cache: None };
    // Until the replay is in (4,980 live cases once duplicates are merged): two resets a second
    // apart with the same cases.
    let deadline = std::time::Instant::now() + 4 * WAIT;
    let mut last = Vec::new();
    let identity = loop {
        let events = fetch(&http, &base, "/console/events", plain).await.expect("fetched");
        let cases = reset_cases(&events);
        if cases.len() >= 4_900 && cases == last {
            break events;
        }
        assert!(std::time::Instant::now() < deadline, "the replay did not settle: {} cases", cases.len());
        last = cases;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };

    // The stream is read for as long as the test needs: no timeout for the whole response.
    let streaming = reqwest::Client::builder().connect_timeout(WAIT).build().expect("client");
    let mut response = streaming
        .get(format!("{base}/console/events"))
        .bearer_auth(DISPATCHER)
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .send()
        .await
        .expect("an answer");
    let headers = response.headers().clone();
    let mut gzipped = Fetched { status: 200, headers, raw: Vec::new(), transferred: 0 };
    while !gzipped.decoded().windows(2).any(|w| w == b"\n\n") {
        gzipped.raw.extend(next_chunk(&mut response).await);
    }
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    assert!(gzipped.header("vary").is_some_and(|v| v.contains("accept-encoding")));
    assert_eq!(reset_cases(&gzipped), last, "the same cases");
    println!(
        "reset with {} cases: {} bytes uncompressed, {} gzipped",
        last.len(),
        identity.raw.len(),
        gzipped.raw.len()
    );
    assert!(gzipped.raw.len() * 4 < identity.raw.len());

    let nats = linkbus_tests::connect_embedded(&dir.path().join("nats")).await;
    let js = async_nats::jetstream::new(nats);
    let id = "sf311-delivery-1";
    let report = linkbus_tests::case(id, linkbus_wire::SourceSystem::PublicService, "graffiti", -122.4194, 37.7749);
    linkbus_tests::publish_case(&js, &report).await;
    let arrived = tokio::time::timeout(WAIT, async {
        while !String::from_utf8_lossy(&gzipped.decoded()).contains(&format!("\"id\":\"{id}\"")) {
            gzipped.raw.extend(next_chunk(&mut response).await);
        }
    })
    .await;
    assert!(arrived.is_ok(), "the new case reached the gzipped stream");
}

async fn next_chunk(response: &mut reqwest::Response) -> Vec<u8> {
    let chunk = tokio::time::timeout(WAIT, response.chunk()).await.expect("more of the stream in time");
    chunk.expect("the body").expect("the stream goes on").to_vec()
}

/// chromedriver (and every Chromium it starts) in a process group of its own, stopped with the
/// whole group when dropped.
struct Chromedriver {
    group: Running,
    url: String,
}

impl Chromedriver {
    fn start() -> Self {
        use std::os::unix::process::CommandExt as _;
        let binary = std::env::var("LINKBUS_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary}: {e}; run ops/scripts/ensure-test-tools"));
        let up = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < up, "chromedriver did not listen");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { group: Running(child), url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.group.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
}

/// What headless Chromium's Resource Timing says of the page's load so far: bytes on the wire
/// (`transferSize`: headers and the body as sent; 0 from the cache) and the bodies decoded.
pub(crate) async fn chromium_bytes(browser: &fantoccini::Client) -> (u64, u64, u64) {
    let script =
        "const all = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
                  return [all.reduce((n, e) => n + e.transferSize, 0), all.reduce((n, e) => n + e.decodedBodySize, 0),
                          all.filter(e => e.transferSize > 0).length];";
    let value = browser.execute(script, vec![]).await.expect("script runs");
    let n = |i: usize| value[i].as_u64().unwrap_or_default();
    (n(0), n(1), n(2))
}

/// Waits until the page has loaded the region's boundaries and the volunteers.
async fn loaded(browser: &fantoccini::Client) {
    let script = "const names = performance.getEntriesByType('resource').map(e => e.name);
                  return ['/console/region/communities', '/console/volunteers'].every(p => names.some(n => n.endsWith(p)))
                         && !document.getElementById('app').hidden;";
    let deadline = std::time::Instant::now() + WAIT;
    while browser.execute(script, vec![]).await.expect("script runs") != serde_json::Value::Bool(true) {
        assert!(std::time::Instant::now() < deadline, "the console did not load");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The same sign-in in headless Chromium: what its Resource Timing entries say was transferred
/// (the live stream is not among them: an open EventSource has no entry), then on a second
/// visit with the cache of the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_with_compressed_files_and_comes_back_from_its_cache() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_up, base) = start_beijing(dir.path());
    let driver = Chromedriver::start();
    let chromium = std::env::var("LINKBUS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let profile = dir.path().join("profile");
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium, "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--window-size=1400,900",
            format!("--user-data-dir={}", profile.display()) ] },
    }))
    .expect("capabilities");
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser =
        fantoccini::ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.expect("a session");

    browser.goto(&base).await.expect("the page");
    let key =
        browser.wait().at_most(WAIT).for_element(fantoccini::Locator::Id("login-key")).await.expect("the sign-in form");
    key.send_keys(DISPATCHER).await.expect("typed");
    browser.find(fantoccini::Locator::Id("login-submit")).await.expect("button").click().await.expect("clicked");
    loaded(&browser).await;
    let (first, decoded, requests) = chromium_bytes(&browser).await;
    // Signed in by its cookie now: a second visit, as the next morning.
    browser.goto("about:blank").await.expect("away");
    browser.goto(&base).await.expect("the page again");
    loaded(&browser).await;
    let (second, _, requests_again) = chromium_bytes(&browser).await;
    println!(
        "Chromium sign-in: {first} bytes transferred in {requests} requests ({decoded} decoded); \
         second visit: {second} bytes in {requests_again} requests"
    );
    browser.close().await.expect("closed");
    assert!(first * 4 < decoded, "compressed: {first} transferred for {decoded} decoded");
    assert!(second * 20 < first, "from the cache: {second} vs {first}");
}
