//! The HTTP surface, one file per endpoint. Every request is routed by path:
//!
//! | path | method | module |
//! |---|---|---|
//! | `/ws` | GET (upgrade) | [`upgrade`] |
//! | `/sse` | GET (event stream) | [`sse`] |
//! | `/connection/websocket` | GET (upgrade, the Centrifuge protocol) | [`upgrade`] |
//! | `/socket.io/` | GET, POST, OPTIONS (Engine.IO: long-polling, upgrade) | [`socketio`] |
//! | `/publish/{channel}`, `/publish` | POST | [`publish`] |
//! | `/history/{channel}` | GET | [`history`] |
//! | `/stats`, `/metrics`, `/health` | GET | [`stats`] |
//! | `/`, `/dashboard` (+ assets), `/tickrelay.js` | GET | [`dashboard`] |
//! | a listener's own routes (`[[listener]]`), e.g. `/api/ws` | GET (upgrade) | [`upgrade`] |
//! | `<legend route>/stats`, `<legend route>/broadcast/*` | GET, POST | [`legend`] |
//!
//! [`route_with`] looks a path up in the listener's route table ([`crate::routes`])
//! first; [`route`] is the native surface every listener has.
//!
//! Errors are plain text, one line, with the status that fits.

mod body;
pub mod dashboard;
pub mod edge;
pub mod history;
mod launch;
pub mod legend;
pub mod publish;
pub mod socketio;
pub mod sse;
pub mod stats;
pub mod upgrade;

pub use body::Body;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::relay::Relay;
use crate::routes::{LegendHttp, Routes};

/// The response type of every endpoint.
pub type Resp = Response<Body>;

/// Routes one request of a listener whose table is `routes` ([`crate::routes`]): a path
/// the table names speaks its dialect, everything else is the native surface.
pub async fn route_with(
    req: Request<Incoming>,
    relay: Arc<Relay>,
    peer: SocketAddr,
    routes: &Routes,
) -> Resp {
    let path = req.uri().path();
    if let Some(r) = routes.get(path) {
        return match *req.method() {
            Method::GET => upgrade::handle_route(req, relay, peer, r, &routes.sentio).await,
            _ => method_not_allowed("GET"),
        };
    }
    match routes.legend_http(path) {
        Some(LegendHttp::Stats) => match *req.method() {
            Method::GET | Method::HEAD => legend::stats(&relay),
            _ => method_not_allowed("GET"),
        },
        Some(LegendHttp::Broadcast(kind)) => {
            let kind = kind.to_owned();
            match *req.method() {
                Method::POST => legend::broadcast(req, relay, peer, &kind, routes).await,
                _ => method_not_allowed("POST"),
            }
        }
        None => route(req, relay, peer).await,
    }
}

/// Routes one request of the main listener.
pub async fn route(req: Request<Incoming>, relay: Arc<Relay>, peer: SocketAddr) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match path.as_str() {
        "/ws" if method == Method::GET => upgrade::handle(req, relay, peer).await,
        "/ws" => method_not_allowed("GET"),
        "/sse" if method == Method::GET => sse::handle(req, relay, peer).await,
        "/sse" => method_not_allowed("GET"),
        upgrade::CENTRIFUGE_PATH if method == Method::GET => {
            upgrade::handle(req, relay, peer).await
        }
        upgrade::CENTRIFUGE_PATH => method_not_allowed("GET"),
        p if p == "/socket.io" || p.starts_with(socketio::PATH) => {
            socketio::handle(req, relay, peer).await
        }
        "/publish" if method == Method::POST => publish::batch(req, relay).await,
        p if p.starts_with("/publish/") && method == Method::POST => {
            publish::single(req, relay, &p["/publish/".len()..]).await
        }
        p if p == "/publish" || p.starts_with("/publish/") => method_not_allowed("POST"),
        p if p.starts_with("/history/") && method == Method::GET => {
            let raw = &p["/history/".len()..];
            if let (true, Some(name)) = (relay.sequenced_elsewhere(), percent_decode(raw, false)) {
                // A node that never saw the channel loads it (from Redis, from upstream).
                if crate::protocol::channel::validate(name.as_bytes()).is_ok() {
                    relay.warm(&[name]).await;
                }
            }
            history::handle(&req, &relay, raw)
        }
        p if p.starts_with("/history/") => method_not_allowed("GET"),
        "/stats" | "/metrics" | "/health" if method == Method::GET || method == Method::HEAD => {
            stats::handle(&path, req.headers(), &relay)
        }
        "/stats" | "/metrics" | "/health" => method_not_allowed("GET"),
        p if dashboard::serves(p) && (method == Method::GET || method == Method::HEAD) => {
            dashboard::handle(p, req.uri().query(), &relay)
        }
        p if dashboard::serves(p) => method_not_allowed("GET"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try GET /ws, POST /publish/{channel}, GET /history/{channel}, GET /stats, GET /dashboard",
        ),
    }
}

/// A one-line plain-text response.
pub fn text(status: StatusCode, line: &str) -> Resp {
    let mut r = Response::new(Body::full(Bytes::from(format!("{line}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON response.
pub fn json(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut r = Response::new(Body::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed: use {allow}"),
    );
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    r
}

/// Decodes `%XX` escapes (and `+` as space in query values when `plus` is set).
/// `None` for a malformed escape or a result that is not UTF-8.
pub fn percent_decode(s: &str, plus: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("ticker%3ABTC-USD", false).as_deref(),
            Some("ticker:BTC-USD")
        );
        assert_eq!(percent_decode("a%23b+c", true).as_deref(), Some("a#b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%ff", false), None);
    }
}
