//! `GET /dashboard` (and `/` redirecting to it), its assets, and `GET /tickrelay.js`: the
//! operator's page and the browser client of protocol v1, compiled into the binary (no
//! CDN, no build step).
//!
//! The page itself holds no data: it polls `GET /stats` with the credential the operator
//! gives it (`?token=` once, or the form) as `Authorization: Bearer`, so what it can show
//! is exactly what `/stats` shows that credential. Without `--dashboard-public` it shows
//! nothing until the publish key or an admin JWT is given; with the flag it shows what
//! anonymous `/stats` shows (public channels, no slowest consumers).

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::Resp;
use crate::relay::Relay;

const PAGE: &str = include_str!("../../clients/dashboard/index.html");
const SCRIPT: &str = include_str!("../../clients/dashboard/dashboard.js");
const STYLE: &str = include_str!("../../clients/dashboard/dashboard.css");
/// The client library, kept in `clients/js/` with its type declarations and tests.
const TICKRELAY_JS: &str = include_str!("../../clients/js/tickrelay.js");
const TICKRELAY_DTS: &str = include_str!("../../clients/js/tickrelay.d.ts");

/// Everything the page loads comes from the relay itself; the WebSocket of the demo
/// prices too.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Whether this module serves `path`.
pub fn serves(path: &str) -> bool {
    matches!(
        path,
        "/" | "/dashboard"
            | "/dashboard.js"
            | "/dashboard.css"
            | "/tickrelay.js"
            | "/tickrelay.d.ts"
            | "/favicon.ico"
    )
}

/// Serves one of the paths [`serves`] accepts.
pub fn handle(path: &str, query: Option<&str>, relay: &Relay) -> Resp {
    match path {
        "/" => {
            // Keep the query: `/?token=..` lands on the dashboard with it.
            let to = match query {
                Some(q) => format!("/dashboard?{q}"),
                None => "/dashboard".to_owned(),
            };
            let mut r = asset(
                StatusCode::FOUND,
                "text/plain; charset=utf-8",
                "see /dashboard\n".into(),
            );
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        "/dashboard" => {
            let page = PAGE
                .replace("{{public}}", bool_str(relay.config.dashboard_public))
                .replace("{{demo}}", bool_str(relay.config.demo));
            asset(StatusCode::OK, "text/html; charset=utf-8", page)
        }
        "/dashboard.js" => asset(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            SCRIPT.into(),
        ),
        "/dashboard.css" => asset(StatusCode::OK, "text/css; charset=utf-8", STYLE.into()),
        // Browsers ask for it on any page of the relay; no icon, and no 404 in their console.
        "/favicon.ico" => asset(StatusCode::NO_CONTENT, "image/x-icon", String::new()),
        "/tickrelay.js" => asset(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            TICKRELAY_JS.into(),
        ),
        _ => asset(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            TICKRELAY_DTS.into(),
        ),
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn asset(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut r = Response::new(super::Body::full(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A new binary may bring new assets: revalidate rather than cache for ever.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `?token=` must not leak to other sites through Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}
