//! What the HTTP adapters share: who is calling (their key, their address), reading a bounded
//! body, and a small XML writer for the formats that answer in XML.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest};
use axum::http::{HeaderMap, Request, StatusCode, header};
use bytes::Bytes;

/// The client's address: the connection's, or the one a test set (`MockConnectInfo`).
pub fn client_ip(request: &Request<Body>) -> IpAddr {
    let extensions = request.extensions();
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|MockConnectInfo(addr)| addr.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The key of an `Authorization: Bearer <key>` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim().to_owned())
        .filter(|key| !key.is_empty())
}

/// The media type of a request (`text/csv`, …), lowercase, without parameters.
pub fn media_type(headers: &HeaderMap) -> String {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// A body that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the route's `DefaultBodyLimit` (the body is not kept: it could be anything up
    /// to the client's patience).
    #[error("the body is larger than the route takes")]
    TooLarge,
    /// The connection failed while reading.
    #[error("cannot read the body: {0}")]
    Broken(#[source] BytesRejection),
}

/// Reads the whole body of `request`, at most the route's `DefaultBodyLimit`.
pub async fn read_body(request: Request<Body>) -> Result<Bytes, BodyError> {
    match Bytes::from_request(request, &()).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Broken(e)),
    }
}

/// An XML document written element by element, text escaped; characters XML 1.0 cannot carry
/// (control characters other than tab, newline and carriage return) are left out.
#[derive(Debug)]
pub struct Xml(String);

impl Xml {
    /// A document with the UTF-8 declaration.
    pub fn new() -> Self {
        Self(String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"))
    }

    /// `<tag>`
    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    /// `</tag>`
    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    /// `<tag>text</tag>`, or `<tag/>` for no value.
    pub fn field(&mut self, tag: &str, value: Option<&str>) -> &mut Self {
        match value {
            None => {
                self.0.push('<');
                self.0.push_str(tag);
                self.0.push_str("/>");
            }
            Some(text) => {
                self.open(tag);
                escape_into(&mut self.0, text);
                self.close(tag);
            }
        }
        self
    }

    /// The document.
    pub fn finish(self) -> String {
        self.0
    }
}

impl Default for Xml {
    fn default() -> Self {
        Self::new()
    }
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_escaped_and_control_characters_dropped() {
        let mut xml = Xml::new();
        xml.open("a").field("b", Some("x < y & \"z\"\u{1}")).field("c", None).close("a");
        assert_eq!(
            xml.finish(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<a><b>x &lt; y &amp; &quot;z&quot;</b><c/></a>"
        );
    }
}
