//! Socket.IO v5 over Engine.IO v4 (`/socket.io/`), with the CRS events on top: what an
//! unmodified `socket.io-client` 4.x (and python-socketio's client) speaks. The packets
//! are in [`crate::protocol::socketio`], the events in [`crs`].
//!
//! One dialect serves both transports: a WebSocket reads Engine.IO packets from text
//! frames, long-polling feeds the same packets from POST bodies (see
//! [`crate::http::socketio`]). The open packet is the welcome; the heartbeat is the
//! Engine.IO ping `2` (any packet from the client, its pong `3` included, counts as
//! life); CONNECT (`40`, its `auth.token` the credential) is the handshake and must come
//! within `--auth-timeout-ms`; the default namespace is the only one (`44` for others).
//! Binary attachments (packet types 5 and 6, binary frames) are refused: `41` and close
//! 1003.

use bytes::{Bytes, BytesMut};
use simd_json::prelude::*;
use std::cell::Cell;

use super::{Dialect, Inbound};
use crate::error::ErrorCode;
use crate::protocol::close::CloseCode;
use crate::protocol::command::{Command, Id, ProtoError, Request};
use crate::protocol::encode::{self, SubscribedChannel};
use crate::protocol::format::Format;
use crate::protocol::socketio::{self as sio, crs, Eio, Kind};

/// Where the default namespace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nsp {
    /// No CONNECT yet.
    Waiting,
    /// CONNECT read, not yet answered (an error now is a CONNECT_ERROR).
    Connecting,
    /// Joined.
    Joined,
}

/// A Socket.IO connection's protocol state.
#[derive(Debug, Clone)]
pub struct SocketIo {
    nsp: Cell<Nsp>,
    /// The Engine.IO session id (told in the open packet).
    sid: String,
    /// The session started on long-polling (so the open packet offers the upgrade).
    polling: bool,
    /// `maxPayload` (the relay's message size limit).
    max_payload: usize,
    /// Symbols one event may name (the subscription limit).
    max_channels: usize,
}

/// `pingTimeout` for a heartbeat interval: the relay closes a connection silent for 2.5
/// intervals, so the client is told to wait as long (interval + timeout).
pub fn ping_timeout_ms(heartbeat_ms: u64) -> u64 {
    heartbeat_ms.saturating_mul(3) / 2
}

/// A session id nobody can guess: 16 bytes from the OS, base64url.
pub fn new_sid() -> String {
    use base64::Engine as _;
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        // No OS randomness: still unique, from the hasher's per-process random keys.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
        b[..8].copy_from_slice(&h.finish().to_le_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl SocketIo {
    /// A session with id `sid`; `polling` when it started on long-polling.
    pub fn new(sid: String, polling: bool, max_payload: usize, max_channels: usize) -> Self {
        SocketIo {
            nsp: Cell::new(Nsp::Waiting),
            sid,
            polling,
            max_payload,
            max_channels,
        }
    }

    /// The Engine.IO session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    fn invalid<'a>(id: Option<Id>, code: ErrorCode, message: &'static str) -> Inbound<'a> {
        Inbound::Invalid(ProtoError { id, code, message })
    }

    fn on_packet<'a>(&mut self, data: &'a mut [u8]) -> Inbound<'a> {
        let p = match sio::parse_packet(data) {
            Ok(p) => p,
            Err(why) => return Inbound::Fail((CloseCode::PROTOCOL, why)),
        };
        if p.nsp != "/" {
            return match p.kind {
                Kind::Connect => {
                    Inbound::Reply(sio::connect_error_frame(p.nsp, "Invalid namespace"))
                }
                _ => Inbound::Ignore,
            };
        }
        let joined = self.nsp.get() == Nsp::Joined;
        match p.kind {
            Kind::Connect if self.nsp.get() != Nsp::Waiting => Inbound::Ignore,
            Kind::Connect => match auth_token(p.data) {
                Ok(token) => {
                    self.nsp.set(Nsp::Connecting);
                    Inbound::Request(Request {
                        id: None,
                        command: Command::Connect { token },
                    })
                }
                Err(why) => Inbound::Reply(sio::connect_error_frame("/", why)),
            },
            Kind::Disconnect => Inbound::Fail((CloseCode::NORMAL, "client disconnect")),
            Kind::BinaryEvent | Kind::BinaryAck => Inbound::Fail((
                CloseCode::UNSUPPORTED,
                "binary attachments are not supported: send JSON",
            )),
            Kind::ConnectError => {
                Inbound::Fail((CloseCode::PROTOCOL, "CONNECT_ERROR from a client"))
            }
            Kind::Ack => Inbound::Ignore, // the relay never asks for one
            Kind::Event if !joined => Inbound::Fail((CloseCode::PROTOCOL, "CONNECT first")),
            Kind::Event => {
                let id = p.ack.map(Id::from_u64);
                match crs::parse_event(p.data, self.max_channels) {
                    Ok(crs::Event::Subscribe(channels)) => Inbound::Channels {
                        id,
                        subscribe: true,
                        channels,
                    },
                    Ok(crs::Event::Unsubscribe(channels)) => Inbound::Channels {
                        id,
                        subscribe: false,
                        channels,
                    },
                    Ok(crs::Event::Ping) => Inbound::Request(Request {
                        id,
                        command: Command::Ping,
                    }),
                    Err(why) if why.starts_with("unknown event") => {
                        Self::invalid(id, ErrorCode::UnknownOp, why)
                    }
                    Err(why) => Self::invalid(id, ErrorCode::BadRequest, why),
                }
            }
        }
    }

    /// An event, and the same body as the ack when the client asked for one.
    fn answer(&self, id: Option<&Id>, event: &str, body: impl Fn(&mut Vec<u8>)) -> Bytes {
        let ev = sio::event_frame(event, 64, &body);
        match id.and_then(ack_of) {
            None => ev,
            Some(n) => concat(&ev, &sio::ack_frame(n, 64, &body)),
        }
    }
}

/// The ack id inside an [`Id`] made by this dialect.
fn ack_of(id: &Id) -> Option<u64> {
    std::str::from_utf8(id.as_json()).ok()?.parse().ok()
}

fn concat(a: &Bytes, b: &Bytes) -> Bytes {
    let mut out = BytesMut::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out.freeze()
}

/// The `token` of a CONNECT's auth object (`40{"token":".."}`), if any.
fn auth_token(data: &mut [u8]) -> Result<Option<&str>, &'static str> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let tape = simd_json::to_tape(data).map_err(|_| "the auth payload must be a JSON object")?;
    let root = tape.as_value();
    let Some(obj) = root.as_object() else {
        return Err("the auth payload must be a JSON object");
    };
    match obj.get("token") {
        None => Ok(None),
        Some(t) if t.is_null() => Ok(None),
        Some(t) => t
            .into_string()
            .map(Some)
            .ok_or("auth.token must be a string"),
    }
}

impl Dialect for SocketIo {
    const NAME: &'static str = "socketio";
    const HANDSHAKE: bool = true;

    fn format(&self) -> Format {
        Format::SOCKETIO
    }

    fn inbound<'a>(&mut self, text: bool, payload: &'a mut [u8]) -> Inbound<'a> {
        if !text {
            return Inbound::Fail((
                CloseCode::UNSUPPORTED,
                "binary messages are not supported: send JSON",
            ));
        }
        if payload.first() == Some(&b'b') {
            return Inbound::Fail((
                CloseCode::UNSUPPORTED,
                "binary packets are not supported: send JSON",
            ));
        }
        match sio::parse_eio(payload) {
            Ok(Eio::Message(data)) => self.on_packet(data),
            Ok(Eio::Pong | Eio::Noop | Eio::Upgrade) => Inbound::Ignore,
            // v4 clients never ping; answer one as v3 servers did rather than fail.
            Ok(Eio::Ping(data)) => {
                let mut reply = b"3".to_vec();
                reply.extend_from_slice(data);
                Inbound::Reply(sio::text_frame(&reply))
            }
            Ok(Eio::Close) => Inbound::Fail((CloseCode::NORMAL, "client closed")),
            Err(why) => Inbound::Fail((CloseCode::PROTOCOL, why)),
        }
    }

    fn welcome(&self, _conn: u64, heartbeat_ms: u64) -> Option<Bytes> {
        let timeout = ping_timeout_ms(heartbeat_ms);
        Some(sio::open_frame(
            &self.sid,
            self.polling,
            heartbeat_ms,
            timeout,
            self.max_payload,
        ))
    }

    fn heartbeat(&self) -> &'static [u8] {
        &sio::PING_FRAME
    }

    fn connected(&self, _id: Option<&Id>, _sub: Option<&str>, _exp: Option<u64>) -> Bytes {
        self.nsp.set(Nsp::Joined);
        concat(&sio::connect_frame(&self.sid), &crs::connection_status())
    }

    fn channels_at_connect(&self) -> Vec<String> {
        crs::channels().at_connect()
    }

    fn subscribed(&self, id: Option<&Id>, channels: &[SubscribedChannel<'_>]) -> Bytes {
        let names: Vec<&str> = channels.iter().map(|c| c.channel).collect();
        if id.is_none() && !crs::any_ticker(&names) {
            return Bytes::new(); // the silent subscribe made at CONNECT
        }
        self.answer(id, "subscription_confirmed", |p| {
            crs::confirmed_body(p, &names)
        })
    }

    fn unsubscribed(&self, id: Option<&Id>, channels: &[&str]) -> Bytes {
        self.answer(id, "unsubscribed", |p| crs::unsubscribed_body(p, channels))
    }

    fn pong(&self, id: Option<&Id>) -> Bytes {
        self.answer(id, "pong", |p| p.extend_from_slice(b"{}"))
    }

    fn error(&self, id: Option<&Id>, code: ErrorCode, message: &str) -> Bytes {
        if self.nsp.get() == Nsp::Connecting {
            self.nsp.set(Nsp::Waiting);
            return sio::connect_error_frame("/", &format!("{}: {message}", code.as_str()));
        }
        let ev = sio::event_frame("error", 64, |p| crs::error_body(p, code.as_str(), message));
        match id.and_then(ack_of) {
            None => ev,
            Some(n) => sio::ack_frame(n, 64, |p| {
                p.extend_from_slice(br#"{"error":"#);
                crs::error_body(p, code.as_str(), message);
                p.push(b'}');
            }),
        }
    }

    fn close(&self, code: CloseCode, reason: &str) -> Bytes {
        let close = encode::close_frame(code.get(), reason);
        match code {
            // Refused for good: `41` tells the client not to reconnect.
            CloseCode::UNSUPPORTED | CloseCode::AUTH => concat(&sio::disconnect_frame(), &close),
            _ => close,
        }
    }
}
