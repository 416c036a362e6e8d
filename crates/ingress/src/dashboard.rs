//! The web dashboard: static assets compiled into the binary (`crates/ingress/ui/`), served at
//! `/` and under `/ui/`.
//!
//! The dashboard is plain HTML, CSS and JavaScript modules written by hand: nothing to build, no
//! Node.js. It holds no server logic: the browser signs in with the admin token (kept in
//! `sessionStorage`) and calls the management API under `/api/v1`, so everything it shows or does
//! is also scriptable. Every answer carries a strict `Content-Security-Policy` (only this origin's
//! scripts and styles, no inline code, no framing), so a value that slipped past the scripts'
//! escaping (they build the DOM with `textContent`, never `innerHTML`) still could not run.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

use crate::Body;

/// The dashboard's policy: its own scripts, styles and API only; no inline code, no plugins, no
/// framing (clickjacking), no `<base>` tricks, forms post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One compiled-in file: its path under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../ui/", $name)),
        }
    };
}

/// Every file of `crates/ingress/ui/`. The page is `index.html`; the rest are what it loads.
const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("pages.js", JS),
    asset!("triggers.js", JS),
    asset!("runs.js", JS),
    asset!("cron.js", JS),
    asset!("chart.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Whether `path` is the dashboard's: `/`, `/ui` or anything under `/ui/`.
pub fn is_dashboard_path(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// Answers a request for a dashboard path (see [`is_dashboard_path`]): the page for `/`, `/ui`
/// and `/ui/`, a compiled-in asset for `/ui/<name>`, 404 for an unknown name, 405 for methods
/// other than GET and HEAD. Assets are revalidated on each load (`no-cache` with an `ETag`), so
/// a new binary's dashboard is seen at once without a fingerprinting build step.
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let name = match path.strip_prefix("/ui/") {
        None | Some("") => "index.html",
        Some(name) => name,
    };
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return plain(StatusCode::NOT_FOUND, "no such dashboard file\n");
    };
    let etag = etag(asset.bytes);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if matches {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(asset.bytes)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(h);
    response
}

/// A plain-text answer with the dashboard's security headers.
fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(h);
    response
}

fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A strong validator of an asset's bytes: FNV-1a, 64 bits (the bytes are fixed per binary, so
/// this only has to tell builds apart, not resist collisions made on purpose).
fn etag(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Response<Body> {
        serve(&Method::GET, path, &HeaderMap::new())
    }

    #[test]
    fn root_and_ui_serve_the_page_with_a_strict_policy() {
        for path in ["/", "/ui", "/ui/", "/ui/index.html"] {
            let r = get(path);
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], HTML);
            let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap();
            assert!(csp.contains("default-src 'self'"));
            assert!(csp.contains("frame-ancestors 'none'"));
            assert!(!csp.contains("unsafe-inline"));
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
        }
    }

    #[test]
    fn assets_have_their_content_types_and_unknown_names_are_404() {
        assert_eq!(get("/ui/app.js").headers()[header::CONTENT_TYPE], JS);
        assert_eq!(
            get("/ui/app.css").headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert_eq!(get("/ui/nope.js").status(), StatusCode::NOT_FOUND);
        assert_eq!(get("/ui/../Cargo.toml").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_matching_etag_answers_304_and_other_methods_405() {
        let etag = get("/ui/app.js").headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        let r = serve(&Method::GET, "/ui/app.js", &headers);
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = serve(&Method::POST, "/", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn no_asset_has_inline_script_or_style_or_uses_inner_html() {
        for asset in ASSETS {
            let text = String::from_utf8_lossy(asset.bytes);
            for sink in [
                ".innerHTML",
                ".outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!text.contains(sink), "{} uses {sink}", asset.name);
            }
            if asset.name == "index.html" {
                assert!(!text.contains("<style"), "inline style in index.html");
                assert!(!text.contains("style=\""), "style attribute in index.html");
                // Every script is an external file.
                for part in text.split("<script").skip(1) {
                    assert!(part.contains("src="), "inline script in index.html");
                }
            }
        }
    }
}
