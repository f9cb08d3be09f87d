//! `GET /sse`: Server-Sent Events for HTTP-only clients and proxies that block
//! WebSocket. This side checks the request (origin, query, credential, every channel's
//! access, the connection limits) and streams the body; the stream itself is a session
//! ([`crate::session::sse`]).
//!
//! **Recovery.** Every message event has `id: <epoch>:<offset>`, so a browser's
//! `EventSource` reconnects with `Last-Event-ID`. The channel of the stream whose epoch
//! is that one recovers from that offset, exactly as a v1 `recover` does: every missed
//! message, then live ones, `recovered: true` in the `subscribed` event; otherwise
//! `recovered: false` and the newest message. An id names one channel's position, so in
//! a stream of several channels only that channel recovers and the `subscribed` event
//! says `recovered: false` for the others: use one stream per channel where every message
//! matters.

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::{percent_decode, text, upgrade, Body, Resp};
use crate::auth;
use crate::error::ErrorCode;
use crate::protocol::sse;
use crate::relay::{spawn_session, Relay};
use crate::session::sse::Stream;

/// Chunks the pump may have handed to the body that hyper has not written yet.
const IN_BODY: usize = 16;

fn refuse(status: StatusCode, reason: &str) -> Resp {
    text(status, reason)
}

/// Answers `GET /sse?channels=...` (credential: `Authorization: Bearer` or `?token=`;
/// `Last-Event-ID` header or `?last_event_id=` to recover).
pub async fn handle(req: Request<Incoming>, relay: Arc<Relay>, peer: SocketAddr) -> Resp {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("\u{fffd}"));
    if !auth::origin_allowed(&relay.config.allowed_origins, origin) {
        return refuse(
            StatusCode::FORBIDDEN,
            "origin not allowed (see --allowed-origins)",
        );
    }
    let cors = origin.and_then(|o| HeaderValue::from_str(o).ok());
    let query = match upgrade::parse_query(req.uri().query(), relay.config.max_subscriptions) {
        Ok(q) => q,
        Err(r) => return refuse(r.status, r.reason),
    };
    if query.channels.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "name the channels: /sse?channels=a,b",
        );
    }
    let mut who = auth::Identity::default();
    if let Some(t) = upgrade::bearer(req.headers()).or(query.token.as_deref()) {
        match auth::check(relay.keys(), t) {
            Ok(cred) => cred.apply(&mut who),
            Err(reason) => return refuse(StatusCode::UNAUTHORIZED, reason),
        }
    }
    // No `auth` op on a stream: every channel must be allowed by the request's credential.
    for c in &query.channels {
        if let Err(d) = auth::may_subscribe(&relay.config.namespaces, &who, c) {
            relay.metrics.error(d.code);
            let status = match d.code {
                ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
                _ => StatusCode::FORBIDDEN,
            };
            return refuse(status, d.message);
        }
    }
    if relay.is_shutting_down() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "relay is shutting down: reconnect elsewhere",
        );
    }
    let last_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| last_event_id_param(req.uri().query()));
    let trusted = who.trusted();
    let ip_slot = match trusted {
        true => None,
        false => match relay.per_ip.acquire(peer.ip()) {
            Some(s) => Some(s),
            None => {
                return refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address (see --max-connections-per-ip)",
                )
            }
        },
    };
    let Some(slot) = relay.ws_slot(trusted) else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "connection limit reached");
    };

    let position = last_id.as_deref().and_then(sse::parse_last_event_id);
    let stream = Stream::open(&relay, peer, who, &query.channels, position);
    let (tx, rx) = mpsc::channel(IN_BODY);
    spawn_session(&relay, slot, async move {
        let _ip_slot = ip_slot;
        stream.pump(tx).await;
    });
    let mut resp = Response::new(Body::stream(rx));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx and similar proxies buffer responses unless told not to.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(o) = cors {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

fn last_event_id_param(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|p| p.strip_prefix("last_event_id="))
        .and_then(|v| percent_decode(v, true))
}
