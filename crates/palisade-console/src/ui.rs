//! The dashboard: a few static files embedded in the binary, served on the admin listener.
//!
//! The pages are plain HTML, CSS and JavaScript with charts drawn as inline SVG: no build step,
//! no framework, no CDN. The files carry no data and need no key; the page asks for the admin
//! key once, keeps it in `sessionStorage` (gone when the tab closes) and sends it as a bearer
//! token on every `/admin/...` call, so no secret ever appears in a URL.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

const INDEX: &str = include_str!("ui/index.html");
const APP: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

/// The file at `path` (`/`, `/ui`, `/ui/`, `/ui/app.js`, `/ui/style.css`).
pub fn asset(path: &str) -> Response<Full<Bytes>> {
    let (body, kind) = match path {
        "/" | "/ui" | "/ui/" | "/ui/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/ui/app.js" => (APP, "text/javascript; charset=utf-8"),
        "/ui/style.css" => (STYLE, "text/css; charset=utf-8"),
        _ => ("not found", "text/plain; charset=utf-8"),
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    if body == "not found" {
        *r.status_mut() = StatusCode::NOT_FOUND;
    }
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}
