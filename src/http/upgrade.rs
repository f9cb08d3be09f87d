//! The WebSocket upgrade, written by hand (RFC 6455 §4.2).
//!
//! [`validate`] is pure: it checks the request head and computes `Sec-WebSocket-Accept`,
//! so the fuzz target and unit tests call it without a socket. [`handle`] adds the
//! relay's own checks (query, credentials, connection limit), negotiates
//! permessage-deflate ([`deflate::negotiate`]), answers 101, and hands the upgraded
//! stream to a session.

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use sha1::{Digest, Sha1};
use std::net::SocketAddr;
use std::sync::Arc;

use super::{percent_decode, text, Resp};
use crate::dialect::{socketio, Legend, Sentio, SocketIo, V1};
use crate::protocol::channel;
use crate::protocol::deflate::{self, Deflate};
use crate::protocol::format::Format;
use crate::relay::Relay;
use crate::routes::Route;
use crate::session::Params;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A refused upgrade: status and one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status.
    pub status: StatusCode,
    /// One-line reason.
    pub reason: &'static str,
}

fn reject(status: StatusCode, reason: &'static str) -> Rejection {
    Rejection { status, reason }
}

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether any value of header `name` holds `token` in its comma-separated list
/// (case-insensitive, as RFC 7230 lists are).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Checks a WebSocket upgrade request head; returns the `Sec-WebSocket-Accept` value.
pub fn validate(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<String, Rejection> {
    if method != Method::GET {
        return Err(reject(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade must be a GET",
        ));
    }
    if version < Version::HTTP_11 {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs HTTP/1.1",
        ));
    }
    // RFC 6455 §4.2.1 and RFC 9112 §3.2: exactly one Host (hyper does not check it).
    if headers.get_all(header::HOST).iter().count() != 1 {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs exactly one Host header",
        ));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "missing Connection: upgrade",
        ));
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "missing Upgrade: websocket",
        ));
    }
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes() == b"13" => {}
        (None, _) => {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "missing Sec-WebSocket-Version",
            ))
        }
        _ => {
            return Err(reject(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported Sec-WebSocket-Version: use 13",
            ))
        }
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k.as_bytes(),
        (None, _) => return Err(reject(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key")),
        _ => {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "more than one Sec-WebSocket-Key",
            ))
        }
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if key.len() != 24 || !matches!(decoded, Ok(ref k) if k.len() == 16) {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    Ok(accept_key(key))
}

/// What the query string of `/ws` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// `token`.
    pub token: Option<String>,
    /// `channels`, validated.
    pub channels: Vec<String>,
    /// `format`: the wire format of the connection's messages.
    pub format: Format,
}

/// Parses `token`, `channels` (comma list) and `format` (`envelope` | `raw` | `msgpack`).
/// Unknown parameters are ignored.
pub fn parse_query(query: Option<&str>, max_subscriptions: usize) -> Result<Query, Rejection> {
    let mut q = Query::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // `+` is a space in form encoding, but a token or key never holds a space and may
        // hold a `+` (a publish key, standard base64): keep it as it is there.
        let v = percent_decode(v, k != "token").ok_or(reject(
            StatusCode::BAD_REQUEST,
            "malformed percent-escape in the query",
        ))?;
        match k {
            "token" => q.token = Some(v),
            "format" => {
                q.format = match v.as_str() {
                    "" => Format::ENVELOPE,
                    name => Format::from_name(name).filter(|f| f.v1()).ok_or(reject(
                        StatusCode::BAD_REQUEST,
                        "format must be envelope, raw or msgpack",
                    ))?,
                }
            }
            "channels" => {
                let mut seen = std::collections::HashSet::new();
                seen.extend(q.channels.iter().cloned());
                for name in v.split(',').filter(|c| !c.is_empty()) {
                    let name = channel::validate(name.as_bytes())
                        .map_err(|e| reject(StatusCode::BAD_REQUEST, e.reason()))?;
                    if !seen.insert(name.to_owned()) {
                        continue;
                    }
                    // Refused at the limit, before reading (and validating) the rest.
                    if q.channels.len() == max_subscriptions {
                        return Err(reject(
                            StatusCode::BAD_REQUEST,
                            "more channels than the subscription limit",
                        ));
                    }
                    q.channels.push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(q)
}

/// The query of a seed platform's path: only `token` is the relay's (the platforms'
/// own parameters, `channels` included, mean other things).
fn seed_query(query: Option<&str>) -> Result<Query, Rejection> {
    Ok(Query {
        token: query_value(query, "token"),
        ..Query::default()
    })
}

/// The decoded value of parameter `key` in `query`, if present and well-formed.
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key)
            .then(|| percent_decode(v, k != "token"))
            .flatten()
    })
}

/// The token of `Authorization: Bearer <t>`, if that header is there.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The path of the Centrifuge client protocol (JSON), as Centrifugo serves it.
pub const CENTRIFUGE_PATH: &str = "/connection/websocket";

/// Answers `GET /ws` (protocol v1), `GET /connection/websocket` (the Centrifuge
/// protocol, whose `connect` command carries the token) and a Socket.IO session opened
/// on a WebSocket (`GET /socket.io/?EIO=4&transport=websocket`, checked by
/// [`super::socketio`] first). Checks, in order: the request head (400/405/426), `Origin` (403),
/// the query (400), the credential (401), shutdown (503), the client address's
/// connection limit (429), the relay's (503).
pub async fn handle(req: Request<Incoming>, relay: Arc<Relay>, peer: SocketAddr) -> Resp {
    let route = match req.uri().path() {
        CENTRIFUGE_PATH => Route::Centrifuge,
        p if p.starts_with(super::socketio::PATH) => Route::SocketIo,
        _ => Route::V1,
    };
    handle_route(req, relay, peer, route, &Default::default()).await
}

/// [`handle`] for a path whose protocol a listener's route table chose. The seed
/// platforms' dialects read only `token` of the query (and Legend AI `user_id` and
/// `connection_id`); their subscriptions at connect are their own.
pub async fn handle_route(
    mut req: Request<Incoming>,
    relay: Arc<Relay>,
    peer: SocketAddr,
    route: Route,
    sentio: &crate::routes::SentioSettings,
) -> Resp {
    use crate::error::ErrorCode;
    let refuse = |r: Rejection| {
        relay
            .metrics
            .handshake_rejects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match r.status {
            StatusCode::UNAUTHORIZED => relay.metrics.error(ErrorCode::Unauthorized),
            StatusCode::FORBIDDEN => relay.metrics.error(ErrorCode::Forbidden),
            _ => {}
        }
        let mut resp = text(r.status, r.reason);
        let h = resp.headers_mut();
        match r.status {
            StatusCode::UPGRADE_REQUIRED => {
                h.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(crate::limits::RETRY_AFTER.as_secs()),
                );
            }
            StatusCode::UNAUTHORIZED => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    };
    let accept = match validate(req.method(), req.version(), req.headers()) {
        Ok(a) => a,
        Err(r) => return refuse(r),
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("\u{fffd}"));
    if !crate::auth::origin_allowed(&relay.config.allowed_origins, origin) {
        return refuse(reject(
            StatusCode::FORBIDDEN,
            "origin not allowed (see --allowed-origins)",
        ));
    }
    let seed = route.seed();
    let query = match seed {
        true => seed_query(req.uri().query()),
        false => parse_query(req.uri().query(), relay.config.max_subscriptions),
    };
    let mut query = match query {
        Ok(q) => q,
        Err(r) => return refuse(r),
    };
    let mut identity = crate::auth::Identity::default();
    if let Some(t) = bearer(req.headers()).or(query.token.as_deref()) {
        match crate::auth::check(relay.keys(), t) {
            Ok(cred) => cred.apply(&mut identity),
            Err(reason) => return refuse(reject(StatusCode::UNAUTHORIZED, reason)),
        }
    }
    // An edge relay says who it is: a relay never takes itself as an edge.
    let Ok(chain) = super::edge::chain(&relay, req.headers()) else {
        return refuse(reject(
            StatusCode::LOOP_DETECTED,
            "an upstream loop: this relay is the edge itself",
        ));
    };
    if relay.is_shutting_down() {
        return refuse(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "relay is shutting down: reconnect elsewhere",
        ));
    }
    // A feed handler with the publish key (or an admin) behind the same address as many
    // subscribers (a proxy, NAT, a loopback load test) is not counted per address.
    let trusted = identity.trusted();
    let ip_slot = match trusted {
        true => None,
        false => match relay.per_ip.acquire(peer.ip()) {
            Some(s) => Some(s),
            None => {
                return refuse(reject(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address (see --max-connections-per-ip)",
                ))
            }
        },
    };
    let Some(slot) = relay.ws_slot(trusted) else {
        return refuse(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "connection limit reached",
        ));
    };
    // An edge relay subscribes for all its clients at once.
    let per_command = match identity.relay() {
        true => usize::MAX,
        false => relay.config.max_subscriptions,
    };
    let v1 = V1::new(query.format).with_max_channels(per_command);
    let echo = relay.config.echo && route == Route::V1;
    let legend = match route {
        Route::Legend => {
            let q = |k: &str| query_value(req.uri().query(), k);
            Some(Legend::new(
                q("user_id").as_deref(),
                q("connection_id").as_deref(),
            ))
        }
        _ => None,
    };
    let sentio = route
        .sentio()
        .map(|e| Sentio::new(e, sentio.clone(), identity.sub(), identity.admin()));
    if seed {
        query.channels.clear();
    }
    let sio = (route == Route::SocketIo).then(|| {
        SocketIo::new(
            socketio::new_sid(),
            false,
            relay.config.max_message_bytes,
            relay.config.max_subscriptions,
        )
    });
    let agreed = relay
        .config
        .namespaces
        .any_deflate(relay.config.deflate)
        .then(|| {
            let offers = req.headers().get_all(header::SEC_WEBSOCKET_EXTENSIONS);
            deflate::negotiate(offers.iter().filter_map(|v| v.to_str().ok()))
        })
        .flatten();
    let params = Params {
        identity,
        channels: query.channels,
        peer,
        deflate: agreed.as_ref().map_or(Deflate::OFF, |a| a.deflate),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Every candidate dialect and the parameters wait for the upgrade in one box; the
    // session then gets a task of its own, sized for its dialect (see `launch`).
    let chosen = Box::new(super::launch::Chosen {
        route,
        echo,
        legend,
        sentio,
        sio,
        v1,
        params,
    });
    // The upgrade resolves only after hyper has written this 101 response, so it must be
    // awaited in its own task rather than here.
    let task_relay = relay.clone();
    let live = relay.track();
    tokio::spawn(async move {
        let held = (slot, ip_slot, live);
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        super::launch::start(upgraded, chosen, task_relay, held)
    });
    let mut resp = Response::new(super::Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(Ok(v)) = chain.map(|c| HeaderValue::from_str(&c)) {
        h.insert(crate::upstream::PATH_HEADER, v);
    }
    if let Some(Ok(v)) = agreed.map(|a| HeaderValue::from_str(&a.response)) {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const GOOD: &[(&str, &str)] = &[
        ("host", "example.com"),
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn rfc_example_key_gives_the_rfc_accept() {
        assert_eq!(
            validate(&Method::GET, Version::HTTP_11, &head(GOOD)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn each_missing_or_wrong_header_is_refused_with_the_right_status() {
        let without = |name: &str| {
            head(
                &GOOD
                    .iter()
                    .copied()
                    .filter(|(k, _)| *k != name)
                    .collect::<Vec<_>>(),
            )
        };
        let with = |name: &str, v: &str| {
            let mut pairs: Vec<_> = GOOD.iter().copied().filter(|(k, _)| *k != name).collect();
            pairs.push((name, v));
            head(&pairs)
        };
        let status = |h: &HeaderMap| {
            validate(&Method::GET, Version::HTTP_11, h)
                .unwrap_err()
                .status
        };
        assert_eq!(status(&without("connection")), StatusCode::BAD_REQUEST);
        // Found by the upgrade fuzz target: no Host, or two, used to be accepted.
        assert_eq!(status(&without("host")), StatusCode::BAD_REQUEST);
        let mut hosts = head(GOOD);
        hosts.append(header::HOST, HeaderValue::from_static("other.example"));
        assert_eq!(status(&hosts), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(&with("connection", "upgrades")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(&without("upgrade")), StatusCode::BAD_REQUEST);
        assert_eq!(status(&with("upgrade", "h2c")), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(&without("sec-websocket-version")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(&with("sec-websocket-version", "8")),
            StatusCode::UPGRADE_REQUIRED
        );
        assert_eq!(
            status(&without("sec-websocket-key")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(&with("sec-websocket-key", "c2hvcnQ=")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(&with("sec-websocket-key", "!!!!!!!!!!!!!!!!!!!!!!==")),
            StatusCode::BAD_REQUEST
        );
        let mut two = head(GOOD);
        two.append(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(status(&two), StatusCode::BAD_REQUEST);
        assert_eq!(
            validate(&Method::POST, Version::HTTP_11, &head(GOOD))
                .unwrap_err()
                .status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            validate(&Method::GET, Version::HTTP_10, &head(GOOD))
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn query_parameters() {
        let q = parse_query(
            Some("channels=ticker%3ABTC-USD,signals,signals&format=raw&token=k%2B1&x=y"),
            10,
        )
        .unwrap();
        assert_eq!(q.channels, vec!["ticker:BTC-USD", "signals"]);
        assert_eq!(q.format, Format::RAW);
        assert_eq!(q.token.as_deref(), Some("k+1"));
        // A literal `+` in a token is a `+`, not a space (keys may be standard base64).
        let q = parse_query(Some("token=a+b/c=="), 10).unwrap();
        assert_eq!(q.token.as_deref(), Some("a+b/c=="));
        assert!(parse_query(Some("channels=bad%20name"), 10).is_err());
        assert!(parse_query(Some("format=xml"), 10).is_err());
        assert!(parse_query(Some("channels=a,b,c"), 2).is_err());
        assert_eq!(
            parse_query(Some("channels=a,b,a,b,a"), 2).unwrap().channels,
            ["a", "b"]
        );
        // Stopped at the limit: the bad name after it is never looked at.
        let e = parse_query(Some("channels=a,b,c,bad%20name"), 2).unwrap_err();
        assert!(format!("{e:?}").contains("subscription limit"), "{e:?}");
        assert_eq!(parse_query(None, 1).unwrap(), Query::default());
    }
}
