//! The console's files, embedded in the binary at build time: the page, its scripts and styles
//! (`http/console/`), and Leaflet (vendored under `http/console/vendor/`).

/// One embedded file: its path under `/console/assets/`, content type and bytes.
pub(super) struct Asset {
    pub(super) path: &'static str,
    pub(super) content_type: &'static str,
    pub(super) body: &'static [u8],
}

/// The console's files, embedded at build time.
pub(super) const ASSETS: &[Asset] = &[
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/app.js"),
    },
    Asset { path: "app.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../../console/app.css") },
    Asset {
        path: "vendor/leaflet/leaflet.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/vendor/leaflet/leaflet.js"),
    },
    Asset {
        path: "vendor/leaflet/leaflet.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/vendor/leaflet/leaflet.css"),
    },
    Asset {
        path: "vendor/leaflet/LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../console/vendor/leaflet/LICENSE"),
    },
    Asset {
        path: "vendor/leaflet/images/layers.png",
        content_type: "image/png",
        body: include_bytes!("../../console/vendor/leaflet/images/layers.png"),
    },
    Asset {
        path: "vendor/leaflet/images/layers-2x.png",
        content_type: "image/png",
        body: include_bytes!("../../console/vendor/leaflet/images/layers-2x.png"),
    },
];
/// The page.
pub(super) const INDEX: &str = include_str!("../../console/index.html");
