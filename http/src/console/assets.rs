//! The console's files, embedded in the binary at build time: the page, its scripts and styles
//! (`http/console/`), and Leaflet (vendored under `http/console/vendor/`).

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
    asset!("app.css", CSS),
    asset!("vendor/leaflet/leaflet.js", JS),
    asset!("vendor/leaflet/leaflet.css", CSS),
    asset!("vendor/leaflet/LICENSE", TEXT),
    asset!("vendor/leaflet/images/layers.png", PNG),
    asset!("vendor/leaflet/images/layers-2x.png", PNG),
];

/// The page.
pub(super) const INDEX: &str = include_str!("../../console/index.html");

#[cfg(test)]
mod tests {
    use super::ASSETS;

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
}
