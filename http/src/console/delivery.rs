//! How the console's files and data travel: compressed (gzip or brotli, as the request's
//! `Accept-Encoding` allows, brotli first) and cached by the browser.
//!
//! A body that does not change while the service runs (the page, its scripts and styles, the
//! region and its boundaries) is a [`Compressed`]: each encoding is made once, the first time it
//! is needed or when [`Compressed::warm`] runs at start, and kept; each carries an `ETag` (a hash
//! of the uncompressed bytes), so a browser revalidating it gets `304 Not Modified` without a
//! body. The scripts and styles are also served under a versioned folder,
//! `/console/assets/<version>/…`, where `<version>` hashes every embedded file: the page names
//! them there, the ES modules import one another by relative paths (`./board.js`) and so stay in
//! that folder, and a changed file changes the folder; so they are sent `immutable` for a year and
//! a second load asks for none of them. The volunteers' positions change, so they are compressed
//! per request, quickly, with an `ETag` of that moment's bytes ([`compress_now`]). The live events are gzipped as a stream
//! ([`gzip_stream`]), each event flushed as it goes.

use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use sha2::{Digest, Sha256};

/// A response body's encoding (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    /// Uncompressed.
    Identity,
    /// `gzip`.
    Gzip,
    /// `br`.
    Brotli,
}

impl Coding {
    fn name(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }

    /// The encoding of a response to a request with `headers`: brotli if its `Accept-Encoding`
    /// takes it (`br`, or `*`, with a q-value above 0), else gzip, else none.
    pub(super) fn negotiate(headers: &HeaderMap) -> Self {
        let (mut br, mut gzip, mut any) = (None, None, None);
        for value in headers.get_all(header::ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut parts = item.split(';');
                let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                let accepted = q > 0.0;
                match name.as_str() {
                    "br" => br = Some(accepted),
                    "gzip" | "x-gzip" => gzip = Some(accepted),
                    "*" => any = Some(accepted),
                    _ => {}
                }
            }
        }
        let takes = |named: Option<bool>| named.or(any).unwrap_or(false);
        if takes(br) {
            Self::Brotli
        } else if takes(gzip) {
            Self::Gzip
        } else {
            Self::Identity
        }
    }
}

/// How hard [`compress`] works: the most for what is compressed once, a quick pass per request.
#[derive(Debug, Clone, Copy)]
pub(super) enum Effort {
    /// gzip 9, brotli 10 (11 makes Beijing's boundaries 3 % smaller in 3x the time: 4 s).
    Once,
    /// gzip 6, brotli 5.
    PerRequest,
}

/// `body` in `coding`.
pub(super) fn compress(body: &[u8], coding: Coding, effort: Effort) -> Bytes {
    match coding {
        Coding::Identity => Bytes::copy_from_slice(body),
        Coding::Gzip => {
            let level = match effort {
                Effort::Once => flate2::Compression::best(),
                Effort::PerRequest => flate2::Compression::default(),
            };
            let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3), level);
            // Writing into a Vec cannot fail.
            let _ = encoder.write_all(body);
            Bytes::from(encoder.finish().unwrap_or_default())
        }
        Coding::Brotli => {
            let params = brotli::enc::BrotliEncoderParams {
                quality: match effort {
                    Effort::Once => 10,
                    Effort::PerRequest => 5,
                },
                lgwin: 22,
                size_hint: body.len(),
                ..Default::default()
            };
            let mut out = Vec::with_capacity(body.len() / 3);
            let _ = brotli::BrotliCompress(&mut &body[..], &mut out, &params);
            Bytes::from(out)
        }
    }
}

/// `body`, which changes between requests, in the encoding `headers` ask for, compressed now off
/// the async threads, quickly; `304` if their `If-None-Match` names it (it did not change).
pub(super) async fn compress_now(headers: &HeaderMap, content_type: &'static str, body: Bytes) -> Response {
    let fresh = Arc::new(Compressed { effort: Effort::PerRequest, ..Compressed::unmade(body, true) });
    fresh.respond(headers, content_type, "private, no-cache").await
}

/// `response`, a stream of events, gzipped if `headers` take gzip (brotli is not used here: its
/// encoder keeps a window of megabytes per open stream): each chunk is compressed with what came
/// before as its dictionary and flushed at once, so an event reaches the page as soon as it is
/// made. The first event, every live case, shrinks the most.
pub(super) fn gzip_stream(headers: &HeaderMap, response: Response) -> Response {
    let takes_gzip = Coding::negotiate(&only_gzip(headers)) == Coding::Gzip;
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if !takes_gzip {
        return Response::from_parts(parts, body);
    }
    parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts.headers.remove(header::CONTENT_LENGTH);
    // Level 3: the stream is compressed per connection as it goes.
    let encoder = Arc::new(Mutex::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(3))));
    let compressed = body.into_data_stream().then(move |chunk| {
        let encoder = encoder.clone();
        async move {
            let chunk = chunk?;
            let out = tokio::task::spawn_blocking(move || {
                let mut encoder = encoder.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                encoder.write_all(&chunk)?;
                encoder.flush()?;
                Ok::<_, std::io::Error>(Bytes::from(std::mem::take(encoder.get_mut())))
            })
            .await
            .map_err(axum::Error::new)?;
            out.map_err(axum::Error::new)
        }
    });
    Response::from_parts(parts, Body::from_stream(compressed))
}

/// The `Accept-Encoding` of `headers` with brotli struck out.
fn only_gzip(headers: &HeaderMap) -> HeaderMap {
    let mut only = HeaderMap::new();
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        only.append(header::ACCEPT_ENCODING, value.clone());
    }
    only.append(header::ACCEPT_ENCODING, HeaderValue::from_static("br;q=0"));
    only
}

/// A body that does not change while the service runs, with each encoding made once and its
/// `ETag`.
#[derive(Debug)]
pub(crate) struct Compressed {
    identity: Bytes,
    /// Whether compressing it pays (not for PNG).
    compressible: bool,
    /// The first 16 hex digits of the identity's SHA-256.
    hash: String,
    gzip: OnceLock<Bytes>,
    brotli: OnceLock<Bytes>,
    /// How hard each encoding is worked for.
    effort: Effort,
}

impl Compressed {
    /// `body`, compressed when asked for if `compressible`.
    pub(crate) fn new(body: Bytes, compressible: bool) -> Arc<Self> {
        Arc::new(Self::unmade(body, compressible))
    }

    fn unmade(body: Bytes, compressible: bool) -> Self {
        let hash = hex::encode(&Sha256::digest(&body)[..8]);
        Self {
            identity: body,
            compressible,
            hash,
            gzip: OnceLock::new(),
            brotli: OnceLock::new(),
            effort: Effort::Once,
        }
    }

    /// The uncompressed bytes.
    #[cfg(test)]
    pub(super) fn identity(&self) -> &Bytes {
        &self.identity
    }

    fn cell(&self, coding: Coding) -> Option<&OnceLock<Bytes>> {
        match coding {
            Coding::Identity => None,
            _ if !self.compressible => None,
            Coding::Gzip => Some(&self.gzip),
            Coding::Brotli => Some(&self.brotli),
        }
    }

    /// Makes every encoding now (blocking: call it off the async threads).
    pub(super) fn warm(&self) {
        for coding in [Coding::Gzip, Coding::Brotli] {
            if let Some(cell) = self.cell(coding) {
                cell.get_or_init(|| compress(&self.identity, coding, self.effort));
            }
        }
    }

    /// The body in `coding`, made off the async threads if not yet; the identity instead when
    /// compressing did not make it smaller.
    async fn body(self: &Arc<Self>, coding: Coding) -> (Bytes, Coding) {
        let Some(cell) = self.cell(coding) else { return (self.identity.clone(), Coding::Identity) };
        let compressed = match cell.get() {
            Some(body) => body.clone(),
            None => {
                let this = self.clone();
                let made = tokio::task::spawn_blocking(move || {
                    this.cell(coding)
                        .map(|cell| cell.get_or_init(|| compress(&this.identity, coding, this.effort)).clone())
                })
                .await;
                match made {
                    Ok(Some(body)) => body,
                    _ => return (self.identity.clone(), Coding::Identity),
                }
            }
        };
        if compressed.len() < self.identity.len() {
            (compressed, coding)
        } else {
            (self.identity.clone(), Coding::Identity)
        }
    }

    /// Whether `If-None-Match` in `headers` names this content (in any encoding).
    fn not_modified(&self, headers: &HeaderMap) -> bool {
        headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
            |tag| {
                let tag = tag.trim();
                let tag = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
                tag == "*" || tag.split('-').next() == Some(self.hash.as_str())
            },
        )
    }

    /// The response to a request with `headers`: `304` if it names this content, else the body
    /// in the encoding it takes, with `content_type` and `cache_control`; both with the `ETag`
    /// (one per encoding: `"<hash>"`, `"<hash>-gzip"`, `"<hash>-br"`) and `Vary: Accept-Encoding`.
    pub(crate) async fn respond(
        self: &Arc<Self>,
        headers: &HeaderMap,
        content_type: &'static str,
        cache_control: &'static str,
    ) -> Response {
        let coding = Coding::negotiate(headers);
        let (mut response, coding) = if self.not_modified(headers) {
            let coding = if self.cell(coding).is_some() { coding } else { Coding::Identity };
            (StatusCode::NOT_MODIFIED.into_response(), coding)
        } else {
            let (body, coding) = self.body(coding).await;
            let mut response = Response::new(Body::from(body));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if let Some(name) = coding.name() {
                response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(name));
            }
            (response, coding)
        };
        let etag = match coding.name() {
            Some(name) => format!("\"{}-{name}\"", self.hash),
            None => format!("\"{}\"", self.hash),
        };
        let out = response.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            out.insert(header::ETAG, etag);
        }
        out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
        response
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn accepting(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).expect("a header value"));
        headers
    }

    #[test]
    fn the_encoding_is_the_best_one_the_request_takes() {
        assert_eq!(Coding::negotiate(&HeaderMap::new()), Coding::Identity);
        assert_eq!(Coding::negotiate(&accepting("gzip, deflate, br, zstd")), Coding::Brotli);
        assert_eq!(Coding::negotiate(&accepting("gzip")), Coding::Gzip);
        assert_eq!(Coding::negotiate(&accepting("br;q=0, gzip;q=0.5")), Coding::Gzip);
        assert_eq!(Coding::negotiate(&accepting("*")), Coding::Brotli);
        assert_eq!(Coding::negotiate(&accepting("*, br;q=0")), Coding::Gzip);
        assert_eq!(Coding::negotiate(&accepting("identity")), Coding::Identity);
        assert_eq!(Coding::negotiate(&accepting("gzip;q=0, *;q=0")), Coding::Identity);
        assert_eq!(Coding::negotiate(&accepting("GZIP ; q=1")), Coding::Gzip);
    }

    #[test]
    fn each_encoding_decodes_to_the_same_bytes() {
        let body: Vec<u8> = (0..20_000u32).flat_map(|n| format!("{{\"n\":{n}}},").into_bytes()).collect();
        for effort in [Effort::Once, Effort::PerRequest] {
            let gz = compress(&body, Coding::Gzip, effort);
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).expect("gunzip");
            assert_eq!(out, body);
            let br = compress(&body, Coding::Brotli, effort);
            let mut out = Vec::new();
            brotli::Decompressor::new(&br[..], 4096).read_to_end(&mut out).expect("unbrotli");
            assert_eq!(out, body);
            assert!(br.len() * 2 < body.len() && gz.len() * 2 < body.len(), "{} {} {}", br.len(), gz.len(), body.len());
        }
    }
}
