//! The Centrifuge client protocol, JSON flavour (what centrifuge-js, centrifuge-python and
//! centrifuge-go speak to Centrifugo), kept pure: the command parser ([`command`]), the
//! publication push every subscriber shares, the replies, and the error and close code
//! maps. No I/O.
//!
//! One WebSocket text frame holds one or more JSON objects separated by `\n`, both ways.
//! A reply carries the command's `id`; a push has none:
//! ```json
//! {"id":1,"connect":{"client":"c8f2","version":"0.1.0","ping":25,"pong":true}}
//! {"id":2,"subscribe":{"recoverable":true,"epoch":"k3f9","offset":1045}}
//! {"push":{"channel":"ticker:BTC-USD","pub":{"data":{"price":43250.5},"offset":1046}}}
//! {"id":3,"error":{"code":103,"message":"forbidden: ..."}}
//! ```
//! The publisher's `data` is embedded verbatim. Valid JSON can hold a raw line feed only
//! as white space, so each one is written as a space: the client's line split holds and
//! the value is the same.

pub mod command;

use bytes::Bytes;

use super::close::{CloseCode, AUTH_TIMEOUT, HEARTBEAT_TIMEOUT, SLOW_CONSUMER};
use super::encode::{self, FrameBuf, OP_TEXT};
use super::format::Message;
use super::json;
use crate::error::{ErrorCode, TOKEN_EXPIRED, UNRECOVERABLE};
use crate::protocol::command::Id;

/// The server's ping: an empty object (the client answers `{}` when told `pong: true`).
pub const PING_FRAME: [u8; 4] = [0x81, 0x02, b'{', b'}'];

/// The relay version told in connect and refresh replies.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Error message of a method the relay does not provide (code 108).
pub const NOT_AVAILABLE: &str = "not available: this relay has no rpc or presence";

/// Centrifuge close codes the relay sends besides the mapped ones.
pub mod close_codes {
    use crate::protocol::close::CloseCode;
    /// 3501 bad request: a command before `connect`, a second `connect`.
    pub const BAD_REQUEST: CloseCode = CloseCode(3501);
    /// 3506 inappropriate protocol: binary (protobuf) frames on the JSON protocol.
    pub const INAPPROPRIATE: CloseCode = CloseCode(3506);
}

/// Appends the publisher's JSON with each raw line feed written as a space.
fn push_data(p: &mut Vec<u8>, data: &[u8]) {
    let start = p.len();
    p.extend_from_slice(data);
    if data.contains(&b'\n') {
        for b in &mut p[start..] {
            if *b == b'\n' {
                *b = b' ';
            }
        }
    }
}

/// Appends `{"data":<data>,"offset":N}`.
pub fn push_publication(p: &mut Vec<u8>, data: &[u8], offset: u64) {
    p.extend_from_slice(br#"{"data":"#);
    push_data(p, data);
    p.extend_from_slice(br#","offset":"#);
    json::push_u64(p, offset);
    p.push(b'}');
}

const PUSH_HEAD: &[u8] = br#"{"push":{"channel":""#;
const PUB_KEY: &[u8] = br#"","pub":"#;

/// The publication push of one message, built once and shared by every Centrifuge
/// subscriber: `{"push":{"channel":C,"pub":{"data":D,"offset":N}}}`.
pub fn push_frame(m: &Message<'_>) -> Bytes {
    let mut b = FrameBuf::with_capacity(64 + m.channel.len() + m.data.len());
    let p = b.payload();
    p.extend_from_slice(PUSH_HEAD);
    p.extend_from_slice(m.channel.as_bytes());
    p.extend_from_slice(PUB_KEY);
    push_publication(p, m.data, m.offset);
    p.extend_from_slice(b"}}");
    b.finish(OP_TEXT)
}

/// The `{"data":..,"offset":..}` object inside a [`push_frame`], sharing its bytes (for
/// the `publications` of a subscribe reply). `None` if `frame` is not one.
pub fn publication_in(frame: &Bytes) -> Option<Bytes> {
    let head = encode::decode_head(frame)?;
    let payload = frame.slice(head.head_len..);
    let rest = payload.strip_prefix(PUSH_HEAD)?;
    let quote = rest.iter().position(|b| *b == b'"')?;
    if !rest[quote..].starts_with(PUB_KEY) {
        return None;
    }
    let start = head.head_len + PUSH_HEAD.len() + quote + PUB_KEY.len();
    let end = frame.len().checked_sub(2)?;
    (start < end && frame.get(start) == Some(&b'{')).then(|| frame.slice(start..end))
}

/// A reply frame: `{"id":N,"<kind>":` + body written by `f` + `}`.
fn reply(id: Option<&Id>, kind: &str, hint: usize, f: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut b = FrameBuf::with_capacity(32 + hint);
    let p = b.payload();
    p.push(b'{');
    if let Some(id) = id {
        p.extend_from_slice(br#""id":"#);
        p.extend_from_slice(id.as_json());
        p.push(b',');
    }
    p.push(b'"');
    p.extend_from_slice(kind.as_bytes());
    p.extend_from_slice(b"\":");
    f(p);
    p.push(b'}');
    b.finish(OP_TEXT)
}

/// Whole seconds from now until `exp` (Unix seconds), rounded down so that a client
/// refreshing after `ttl` seconds is never late, and at least 1.
pub fn ttl(exp: u64) -> u64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (exp.saturating_mul(1000).saturating_sub(now_ms) / 1000).max(1)
}

fn push_client(p: &mut Vec<u8>, client: u64) {
    p.extend_from_slice(br#""client":""#);
    p.extend_from_slice(format!("{client:x}").as_bytes());
    p.extend_from_slice(br#"","version":"#);
    json::push_str(p, VERSION);
}

fn push_expiry(p: &mut Vec<u8>, exp: Option<u64>) {
    if let Some(exp) = exp {
        p.extend_from_slice(br#","expires":true,"ttl":"#);
        json::push_u64(p, ttl(exp));
    }
}

/// `{"id":N,"connect":{"client":..,"version":..,"ping":S,"pong":true,"expires"?,"ttl"?}}`
pub fn connect_reply(id: Option<&Id>, client: u64, ping_secs: u64, exp: Option<u64>) -> Bytes {
    reply(id, "connect", 96, |p| {
        p.push(b'{');
        push_client(p, client);
        p.extend_from_slice(br#","ping":"#);
        json::push_u64(p, ping_secs);
        p.extend_from_slice(br#","pong":true"#);
        push_expiry(p, exp);
        p.push(b'}');
    })
}

/// `{"id":N,"refresh":{"client":..,"version":..,"expires"?,"ttl"?}}`
pub fn refresh_reply(id: Option<&Id>, client: u64, exp: Option<u64>) -> Bytes {
    reply(id, "refresh", 80, |p| {
        p.push(b'{');
        push_client(p, client);
        push_expiry(p, exp);
        p.push(b'}');
    })
}

/// What a subscribe reply tells about its channel.
#[derive(Debug, Clone)]
pub struct SubscribeResult<'a> {
    /// The channel keeps history: the client may recover from `epoch`/`offset` later.
    pub recoverable: bool,
    /// The channel's epoch.
    pub epoch: &'a str,
    /// The offset of the newest message (the last of `publications`, if any).
    pub offset: u64,
    /// The client asked to recover.
    pub was_recovering: bool,
    /// Every missed message is in `publications`.
    pub recovered: bool,
    /// The recovered messages, as publication pushes of this protocol, oldest first.
    pub publications: &'a [Bytes],
}

/// `{"id":N,"subscribe":{"recoverable"?,"epoch","offset","was_recovering"?,"recovered"?,"publications"?}}`
pub fn subscribe_reply(id: Option<&Id>, r: &SubscribeResult<'_>) -> Bytes {
    let hint = 96 + r.publications.iter().map(Bytes::len).sum::<usize>();
    reply(id, "subscribe", hint, |p| {
        p.push(b'{');
        if r.recoverable {
            p.extend_from_slice(br#""recoverable":true,"#);
        }
        p.extend_from_slice(br#""epoch":"#);
        json::push_str(p, r.epoch);
        p.extend_from_slice(br#","offset":"#);
        json::push_u64(p, r.offset);
        if r.was_recovering {
            p.extend_from_slice(br#","was_recovering":true"#);
        }
        if r.recovered {
            p.extend_from_slice(br#","recovered":true"#);
        }
        let pubs: Vec<Bytes> = r.publications.iter().filter_map(publication_in).collect();
        if !pubs.is_empty() {
            p.extend_from_slice(br#","publications":["#);
            for (i, pb) in pubs.iter().enumerate() {
                if i > 0 {
                    p.push(b',');
                }
                p.extend_from_slice(pb);
            }
            p.push(b']');
        }
        p.push(b'}');
    })
}

/// `{"id":N,"<kind>":{}}`: the empty result of unsubscribe and publish.
pub fn empty_reply(id: Option<&Id>, kind: &str) -> Bytes {
    reply(id, kind, 8, |p| p.extend_from_slice(b"{}"))
}

/// `{"push":{"channel":C,"unsubscribe":{"code":2000,"reason":..}}}` for each channel, one
/// per line: subscriptions the relay ended (the client does not resubscribe).
pub fn unsubscribe_pushes(channels: &[&str], reason: &str) -> Bytes {
    let mut b = FrameBuf::with_capacity(channels.len() * (80 + reason.len()));
    let p = b.payload();
    for (i, c) in channels.iter().enumerate() {
        if i > 0 {
            p.push(b'\n');
        }
        p.extend_from_slice(br#"{"push":{"channel":"#);
        json::push_str(p, c);
        p.extend_from_slice(br#","unsubscribe":{"code":2000,"reason":"#);
        json::push_str(p, reason);
        p.extend_from_slice(b"}}}");
    }
    b.finish(OP_TEXT)
}

/// `{"id":N,"history":{"publications":[..],"epoch":E,"offset":N}}`
pub fn history_reply(id: Option<&Id>, epoch: &str, offset: u64, pubs: &[Message<'_>]) -> Bytes {
    let hint = 64 + pubs.iter().map(|m| m.data.len() + 32).sum::<usize>();
    reply(id, "history", hint, |p| {
        p.extend_from_slice(br#"{"publications":["#);
        for (i, m) in pubs.iter().enumerate() {
            if i > 0 {
                p.push(b',');
            }
            push_publication(p, m.data, m.offset);
        }
        p.extend_from_slice(br#"],"epoch":"#);
        json::push_str(p, epoch);
        p.extend_from_slice(br#","offset":"#);
        json::push_u64(p, offset);
        p.push(b'}');
    })
}

/// The Centrifuge error code for a tickrelay error, and whether the client should retry
/// (`temporary`). Some situations share a tickrelay code and are told apart by their
/// message (token expired, unrecoverable, not available).
pub fn error_code(code: ErrorCode, message: &str) -> (u32, bool) {
    match code {
        ErrorCode::Unauthorized if message == TOKEN_EXPIRED => (109, false),
        ErrorCode::Unauthorized => (101, false),
        ErrorCode::BadRequest if message == UNRECOVERABLE => (112, false),
        ErrorCode::BadRequest | ErrorCode::InvalidChannel => (107, false),
        ErrorCode::UnknownOp if message == NOT_AVAILABLE => (108, false),
        ErrorCode::UnknownOp => (104, false),
        ErrorCode::Forbidden => (103, false),
        ErrorCode::RateLimited => (111, true),
        ErrorCode::TooManySubscriptions | ErrorCode::PayloadTooLarge => (106, false),
        ErrorCode::TooManyChannels => (106, true),
        // The backplane is down: Centrifugo's internal error, which the SDKs retry.
        ErrorCode::Unavailable => (100, true),
    }
}

/// `{"id":N,"error":{"code":C,"message":"<tickrelay code>: <message>","temporary"?:true}}`
pub fn error_reply(id: Option<&Id>, code: ErrorCode, message: &str) -> Bytes {
    let (c, temporary) = error_code(code, message);
    reply(id, "error", 64 + message.len(), |p| {
        p.extend_from_slice(br#"{"code":"#);
        json::push_u64(p, u64::from(c));
        p.extend_from_slice(br#","message":"#);
        json::push_str(p, &format!("{}: {message}", code.as_str()));
        if temporary {
            p.extend_from_slice(br#","temporary":true"#);
        }
        p.push(b'}');
    })
}

/// The Centrifuge close code and reason for a close the relay sends (see the table in
/// docs/protocol.md): codes below 3500 and 4000–4499 make the SDKs reconnect, 3500–3999
/// and 4500–4999 do not. Codes already in the 3000 range pass through.
pub fn close_code(code: CloseCode, reason: &str) -> (u16, &str) {
    match code {
        CloseCode::GOING_AWAY if reason == HEARTBEAT_TIMEOUT => (3012, "no pong"),
        CloseCode::GOING_AWAY => (3001, "shutdown"),
        CloseCode::POLICY if reason == SLOW_CONSUMER => (3008, "slow"),
        CloseCode::POLICY => (3013, "too many requests"),
        CloseCode::AUTH if reason == AUTH_TIMEOUT => (3502, "stale"),
        CloseCode::AUTH => (3005, "connection expired"),
        other => (other.get(), reason),
    }
}

/// The close frame for a Centrifuge connection.
pub fn close_frame(code: CloseCode, reason: &str) -> Bytes {
    let (code, reason) = close_code(code, reason);
    encode::close_frame(code, reason)
}

#[cfg(test)]
mod tests;
