//! The console's files, embedded in the binary at build time: the page, its scripts and styles
//! (`http/console/`), and Leaflet (vendored under `http/console/vendor/`). Served compressed and
//! cached as module `delivery` says: under `/console/assets/<`[`version`]`>/`, immutable.

use std::sync::{Arc, LazyLock};

use axum::body::Bytes;
use sha2::{Digest, Sha256};

use super::delivery::Compressed;

/// One embedded file: its path under `/console/assets/`, content type and bytes.
pub(super) struct Asset {
    pub(super) path: &'static str,
    pub(super) content_type: &'static str,
    pub(super) body: &'static [u8],
}

/// JavaScript, CSS, text and PNG, as served.
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const PNG: &str = "image/png";

/// The file `http/console/<path>`, served as `/console/assets/<path>` with `content_type`.
macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset { path: $path, content_type: $content_type, body: include_bytes!(concat!("../../console/", $path)) }
    };
}

/// The console's files, embedded at build time: the entry module `app.js` and the modules it
/// imports, the styles, and Leaflet (a classic script that sets `window.L`).
pub(super) const ASSETS: &[Asset] = &[
    asset!("app.js", JS),
    asset!("alerts.js", JS),
    asset!("api.js", JS),
    asset!("board.js", JS),
    asset!("cases.js", JS),
    asset!("detail.js", JS),
    asset!("dom.js", JS),
    asset!("events.js", JS),
    asset!("i18n.js", JS),
    asset!("map.js", JS),
    asset!("map_clusters.js", JS),
    asset!("map_labels.js", JS),
    asset!("record.js", JS),
    asset!("search.js", JS),
    asset!("state.js", JS),
    asset!("sup_chart.js", JS),
    asset!("supervision.js", JS),
    asset!("app.css", CSS),
    asset!("vendor/leaflet/leaflet.js", JS),
    asset!("vendor/leaflet/leaflet.css", CSS),
    asset!("vendor/leaflet/LICENSE", TEXT),
    asset!("vendor/leaflet/images/layers.png", PNG),
    asset!("vendor/leaflet/images/layers-2x.png", PNG),
];

/// The page as written: it names its files under `/console/assets/`.
const INDEX: &str = include_str!("../../console/index.html");

/// What names this build's files: the first 12 hex digits of the SHA-256 of every file's path
/// and bytes. The page names its files under `/console/assets/<version>/`.
pub(super) fn version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        let mut hash = Sha256::new();
        for asset in ASSETS {
            hash.update(asset.path.as_bytes());
            hash.update([0]);
            hash.update((asset.body.len() as u64).to_le_bytes());
            hash.update(asset.body);
        }
        hex::encode(&hash.finalize()[..6])
    });
    &VERSION
}

/// The page, naming its files in [`version`]'s folder, ready to send.
pub(super) fn index() -> &'static Arc<Compressed> {
    static PAGE: LazyLock<Arc<Compressed>> = LazyLock::new(|| {
        let page = INDEX.replace("\"/console/assets/", &format!("\"/console/assets/{}/", version()));
        Compressed::new(Bytes::from(page), true)
    });
    &PAGE
}

/// Each of [`ASSETS`], ready to send (in the same order).
pub(super) fn encoded() -> &'static [Arc<Compressed>] {
    static ENCODED: LazyLock<Vec<Arc<Compressed>>> = LazyLock::new(|| {
        ASSETS.iter().map(|a| Compressed::new(Bytes::from_static(a.body), a.content_type != PNG)).collect()
    });
    &ENCODED
}

/// The file at `path` under `/console/assets/`, and whether it was asked for under this build's
/// [`version`] (so may be cached for good): `<file>` or `<some version>/<file>`.
pub(super) fn find(path: &str) -> Option<(&'static Asset, &'static Arc<Compressed>, bool)> {
    let at = |file: &str| ASSETS.iter().position(|a| a.path == file);
    let (index, versioned) = match at(path) {
        Some(index) => (index, false),
        None => {
            let (folder, file) = path.split_once('/')?;
            (at(file)?, folder == version())
        }
    };
    Some((&ASSETS[index], &encoded()[index], versioned))
}

#[cfg(test)]
mod tests {
    use super::{ASSETS, find, index, version};

    #[test]
    fn every_script_and_style_of_the_console_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("http/console reads") {
            let name = entry.expect("an entry").file_name().to_string_lossy().into_owned();
            let served = name.ends_with(".js") || name.ends_with(".css");
            if served && !ASSETS.iter().any(|a| a.path == name) {
                missing.push(name);
            }
        }
        assert!(missing.is_empty(), "not embedded: {missing:?}");
    }

    #[test]
    fn the_page_names_its_files_in_the_versioned_folder() {
        let page = String::from_utf8(index().identity().to_vec()).expect("utf-8");
        let folder = format!("/console/assets/{}/", version());
        assert_eq!(page.matches("/console/assets/").count(), page.matches(&folder).count(), "{page}");
        assert!(page.contains(&format!("{folder}app.js")));
        assert!(
            find(&format!("{}/app.js", version())).is_some_and(|(a, _, versioned)| a.path == "app.js" && versioned)
        );
        assert!(find("app.js").is_some_and(|(_, _, versioned)| !versioned));
        assert!(find("0123456789ab/vendor/leaflet/leaflet.js").is_some_and(|(_, _, versioned)| !versioned));
        assert!(find("nothing.js").is_none() && find("x/nothing.js").is_none() && find("").is_none());
    }
}
