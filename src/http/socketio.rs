//! `/socket.io/`: Engine.IO v4's HTTP side, for Socket.IO clients (the session itself
//! is [`crate::session::polling`] on long-polling, [`crate::dialect::SocketIo`] on a
//! WebSocket).
//!
//! | request | answer |
//! |---|---|
//! | `GET ?EIO=4&transport=polling` | `200 text/plain`: the open packet (a new session, counted like a WebSocket) |
//! | `POST ?EIO=4&transport=polling&sid=S`, packets joined by `\x1e` | `200 text/html` `ok` |
//! | `GET ?EIO=4&transport=polling&sid=S` | held until something is queued, then every queued packet joined by `\x1e` |
//! | `GET ?EIO=4&transport=websocket` (upgrade) | a session opened on a WebSocket (open packet first, `upgrades: []`) |
//! | `GET ?EIO=4&transport=websocket&sid=S` (upgrade) | session S moves to this WebSocket (`2probe`/`3probe`/`6`/`5`) |
//! | `OPTIONS` | the CORS preflight |
//!
//! Errors are Engine.IO's: `400 {"code":0,"message":"Transport unknown"}`, 1 `Session ID
//! unknown`, 2 `Bad handshake method`, 3 `Bad request` (an overlapping GET or POST,
//! which also closes the session; a binary body), 5 `Unsupported protocol version`,
//! `403` for an origin outside `--allowed-origins` (code 4), `413` over `maxPayload`
//! (`--max-message-bytes`), and the relay's 429/503 for the connection limits. Every
//! answer to a browser on an allowed origin carries `Access-Control-Allow-Origin: <it>`
//! and `Access-Control-Allow-Credentials: true`.
//!
//! The session table is process-wide, keyed by unguessable ids (a sid is the only
//! credential of a polling request), each entry holding its relay's connection slots,
//! so it is bounded by `--max-connections`; an entry leaves when its session ends.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use super::{percent_decode, upgrade, Body, Resp};
use crate::auth;
use crate::relay::{spawn_session, Relay};
use crate::session::polling::{Polling, Refused};

/// The path prefix (socket.io-client always adds the trailing slash; `/socket.io` is
/// accepted too).
pub const PATH: &str = "/socket.io/";

type Table = Mutex<HashMap<String, (Arc<Relay>, Arc<Polling>)>>;

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(Table::default)
}

fn find(relay: &Arc<Relay>, sid: &str) -> Option<Arc<Polling>> {
    let t = table().lock();
    let (r, p) = t.get(sid)?;
    Arc::ptr_eq(r, relay).then(|| p.clone())
}

/// An Engine.IO error: `{"code":N,"message":".."}`.
fn eio_error(status: StatusCode, code: u8, message: &str) -> Resp {
    let body = format!(r#"{{"code":{code},"message":"{message}"}}"#);
    let mut r = super::json(status, body.into_bytes());
    *r.status_mut() = status;
    r
}

/// What the query string says.
#[derive(Debug, Default)]
struct Query {
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
    token: Option<String>,
}

fn parse_query(q: Option<&str>) -> Query {
    let mut out = Query::default();
    for pair in q.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v, false);
        match k {
            "EIO" => out.eio = v,
            "transport" => out.transport = v,
            "sid" => out.sid = v,
            "token" => out.token = v,
            _ => {}
        }
    }
    out
}

/// Adds the CORS headers for an allowed `origin`.
fn cors(mut r: Resp, origin: Option<&HeaderValue>) -> Resp {
    if let Some(o) = origin {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}

fn text_plain(status: StatusCode, body: Body, content_type: &'static str) -> Resp {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Routes one `/socket.io/` request.
pub async fn handle(req: Request<Incoming>, relay: Arc<Relay>, peer: SocketAddr) -> Resp {
    let origin_hdr = req.headers().get(header::ORIGIN).cloned();
    let origin = origin_hdr
        .as_ref()
        .map(|o| o.to_str().unwrap_or("\u{fffd}"));
    if !auth::origin_allowed(&relay.config.allowed_origins, origin) {
        relay.metrics.error(crate::error::ErrorCode::Forbidden);
        return eio_error(StatusCode::FORBIDDEN, 4, "Forbidden");
    }
    let allow = origin_hdr.as_ref();
    if req.method() == Method::OPTIONS {
        return cors(preflight(&req), allow);
    }
    let q = parse_query(req.uri().query());
    let resp = match (q.eio.as_deref(), q.transport.as_deref()) {
        (Some("4"), Some("websocket")) => return websocket(req, relay, peer, q).await,
        (Some("4"), Some("polling")) => polling(req, relay, peer, q).await,
        (Some("4"), _) => eio_error(StatusCode::BAD_REQUEST, 0, "Transport unknown"),
        _ => eio_error(StatusCode::BAD_REQUEST, 5, "Unsupported protocol version"),
    };
    cors(resp, allow)
}

fn preflight(req: &Request<Incoming>) -> Resp {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    let asked = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        asked
            .cloned()
            .unwrap_or(HeaderValue::from_static("content-type")),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

async fn websocket(req: Request<Incoming>, relay: Arc<Relay>, peer: SocketAddr, q: Query) -> Resp {
    let Some(sid) = q.sid else {
        // A session opened on the WebSocket: the relay's own upgrade, Socket.IO dialect.
        return upgrade::handle(req, relay, peer).await;
    };
    let accept = match upgrade::validate(req.method(), req.version(), req.headers()) {
        Ok(a) => a,
        Err(_) => return eio_error(StatusCode::BAD_REQUEST, 3, "Bad request"),
    };
    let Some(session) = find(&relay, &sid).filter(|s| !s.is_gone()) else {
        return eio_error(StatusCode::BAD_REQUEST, 1, "Session ID unknown");
    };
    let mut req = req;
    let on_upgrade = hyper::upgrade::on(&mut req);
    // The upgrade resolves only after hyper has written the 101, so it is awaited in
    // its own task; the session's task takes it from there.
    tokio::spawn(async move {
        if let Ok(io) = on_upgrade.await {
            session.upgrade(io);
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

async fn polling(req: Request<Incoming>, relay: Arc<Relay>, peer: SocketAddr, q: Query) -> Resp {
    let Some(sid) = q.sid else {
        if req.method() != Method::GET {
            return eio_error(StatusCode::BAD_REQUEST, 2, "Bad handshake method");
        }
        return handshake(&req, relay, peer, q.token.as_deref()).await;
    };
    let Some(session) = find(&relay, &sid) else {
        return eio_error(StatusCode::BAD_REQUEST, 1, "Session ID unknown");
    };
    let refused = |r: Refused| match r {
        Refused::Gone => eio_error(StatusCode::BAD_REQUEST, 1, "Session ID unknown"),
        Refused::Overlap => eio_error(StatusCode::BAD_REQUEST, 3, "Bad request"),
    };
    match *req.method() {
        Method::GET => match session.poll().await {
            Ok(packets) => payload_response(packets),
            Err(r) => refused(r),
        },
        Method::POST => {
            let binary = req
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
            if binary {
                return eio_error(StatusCode::BAD_REQUEST, 3, "Bad request");
            }
            let max = relay.config.max_message_bytes;
            let body = http_body_util::Limited::new(req.into_body(), max);
            let mut body = match body.collect().await {
                Ok(b) => b.to_bytes().to_vec(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return eio_error(StatusCode::PAYLOAD_TOO_LARGE, 3, "Payload too large")
                }
                Err(_) => return eio_error(StatusCode::BAD_REQUEST, 3, "Bad request"),
            };
            if std::str::from_utf8(&body).is_err() {
                return eio_error(StatusCode::BAD_REQUEST, 3, "Bad request");
            }
            match session.post(&mut body).await {
                Ok(()) => text_plain(
                    StatusCode::OK,
                    Body::full(Bytes::from_static(b"ok")),
                    "text/html",
                ),
                Err(r) => refused(r),
            }
        }
        _ => eio_error(StatusCode::BAD_REQUEST, 2, "Bad handshake method"),
    }
}

/// Packets joined by `\x1e`, each a slice of a shared frame.
fn payload_response(packets: Vec<Bytes>) -> Resp {
    let mut chunks = Vec::with_capacity(packets.len() * 2);
    for (i, p) in packets.into_iter().enumerate() {
        if i > 0 {
            chunks.push(Bytes::from_static(&[crate::protocol::socketio::SEPARATOR]));
        }
        chunks.push(p);
    }
    text_plain(
        StatusCode::OK,
        Body::chunks(chunks),
        "text/plain; charset=UTF-8",
    )
}

async fn handshake(
    req: &Request<Incoming>,
    relay: Arc<Relay>,
    peer: SocketAddr,
    token: Option<&str>,
) -> Resp {
    let mut who = auth::Identity::default();
    if let Some(t) = upgrade::bearer(req.headers()).or(token) {
        match auth::check(relay.keys(), t) {
            Ok(cred) => cred.apply(&mut who),
            Err(reason) => return super::text(StatusCode::UNAUTHORIZED, reason),
        }
    }
    if relay.is_shutting_down() {
        return super::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "relay is shutting down: reconnect elsewhere",
        );
    }
    let trusted = who.trusted();
    let ip_slot = match trusted {
        true => None,
        false => match relay.per_ip.acquire(peer.ip()) {
            Some(s) => Some(s),
            None => {
                return super::text(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address (see --max-connections-per-ip)",
                )
            }
        },
    };
    let Some(slot) = relay.ws_slot(trusted) else {
        return super::text(StatusCode::SERVICE_UNAVAILABLE, "connection limit reached");
    };
    let session = Polling::open(&relay, peer, who);
    let sid = session.sid.clone();
    table()
        .lock()
        .insert(sid.clone(), (relay.clone(), session.clone()));
    let task = session.clone();
    let task_relay = relay.clone();
    spawn_session(&relay, slot, async move {
        let _ip_slot = ip_slot;
        task.run(task_relay).await;
        table().lock().remove(&sid);
    });
    match session.poll().await {
        Ok(packets) => payload_response(packets),
        Err(_) => eio_error(StatusCode::BAD_REQUEST, 3, "Bad request"),
    }
}
