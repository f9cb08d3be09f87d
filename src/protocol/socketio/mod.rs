//! Engine.IO v4 and Socket.IO v5, kept pure: the packet parsers (one text message in,
//! no I/O, shared by the dialect, the polling transport and the fuzz target) and the
//! frames the relay sends. The CRS events on top are in [`crs`].
//!
//! An Engine.IO packet is a type digit and its data: `0` open, `1` close, `2` ping,
//! `3` pong, `4` message, `5` upgrade, `6` noop. Over HTTP long-polling several packets
//! travel in one body, separated by `\x1e` (which valid JSON never holds raw). A
//! Socket.IO packet rides in a message (`4`):
//! `<type>[<attachments>-][/<namespace>,][<ack id>][<JSON>]`, types 0 CONNECT,
//! 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR, 5 BINARY_EVENT, 6 BINARY_ACK; the
//! namespace is left out for `/`.
//! ```text
//! 0{"sid":"..","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":37500,"maxPayload":65536}
//! 40{"token":"<jwt>"}          40{"sid":".."}          44{"message":"Invalid namespace"}
//! 42["subscribe",{"symbols":["BTC"]}]     420["subscribe",["ETH"]]     430[{"symbols":["ETH"],..}]
//! ```
//! Every frame here is a complete WebSocket text frame (the outbox holds WebSocket
//! frames); the polling transport sends their payloads ([`payloads_of`]).

pub mod crs;

use bytes::Bytes;

use super::encode::{self, FrameBuf, OP_TEXT};
use super::json;

/// The server's ping: Engine.IO `2` in a text frame.
pub const PING_FRAME: [u8; 3] = [0x81, 0x01, b'2'];
/// The answer to an upgrade probe: `3probe`.
pub const PROBE_REPLY: &[u8] = b"3probe";
/// The probe a client sends on the WebSocket it upgrades to.
pub const PROBE: &[u8] = b"2probe";
/// Engine.IO `6` noop (ends a held poll during an upgrade).
pub const NOOP: &[u8] = b"6";
/// Engine.IO `1` close (the polling form of a close frame).
pub const CLOSE: &[u8] = b"1";
/// The record separator between packets of a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// An Engine.IO packet read from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Eio<'a> {
    /// `1`: the client closes the session.
    Close,
    /// `2` with its data (`probe` during an upgrade; a plain ping is a v3 habit).
    Ping(&'a [u8]),
    /// `3`: the answer to the server's ping.
    Pong,
    /// `4`: a message (a Socket.IO packet).
    Message(&'a mut [u8]),
    /// `5`: the client completes an upgrade.
    Upgrade,
    /// `6`: nothing.
    Noop,
}

/// Why a client's packet was refused.
pub type Refusal = &'static str;

/// Reads one Engine.IO packet (text).
pub fn parse_eio(p: &mut [u8]) -> Result<Eio<'_>, Refusal> {
    let Some((kind, rest)) = p.split_first_mut() else {
        return Err("empty Engine.IO packet");
    };
    match *kind {
        b'1' => Ok(Eio::Close),
        b'2' => Ok(Eio::Ping(rest)),
        b'3' => Ok(Eio::Pong),
        b'4' => Ok(Eio::Message(rest)),
        b'5' => Ok(Eio::Upgrade),
        b'6' => Ok(Eio::Noop),
        b'0' => Err("a client never sends the open packet"),
        b'b' => Err("binary packets are not supported"),
        _ => Err("unknown Engine.IO packet type"),
    }
}

/// A Socket.IO packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 0: join a namespace (data: the `auth` object).
    Connect,
    /// 1: leave a namespace.
    Disconnect,
    /// 2: an event, `["name", args..]`.
    Event,
    /// 3: the answer to an event sent with an ack id.
    Ack,
    /// 4: a namespace was refused (server to client only).
    ConnectError,
    /// 5: an event with binary attachments.
    BinaryEvent,
    /// 6: an ack with binary attachments.
    BinaryAck,
}

/// One Socket.IO packet, borrowing the message it was read from.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Its type.
    pub kind: Kind,
    /// The namespace (`/` when left out).
    pub nsp: &'a str,
    /// The ack id, if any.
    pub ack: Option<u64>,
    /// The JSON data (possibly empty), not yet validated.
    pub data: &'a mut [u8],
}

/// Largest ack id accepted (socket.io-client counts from 0; 2^53 keeps it a JS number).
pub const MAX_ACK: u64 = (1 << 53) - 1;
/// Longest namespace accepted.
pub const MAX_NSP: usize = 128;

/// Reads one Socket.IO packet (the data of an Engine.IO message). Binary packets
/// (types 5 and 6) are read too, for the caller to refuse.
pub fn parse_packet(p: &mut [u8]) -> Result<Packet<'_>, Refusal> {
    let kind = match p.first() {
        Some(b'0') => Kind::Connect,
        Some(b'1') => Kind::Disconnect,
        Some(b'2') => Kind::Event,
        Some(b'3') => Kind::Ack,
        Some(b'4') => Kind::ConnectError,
        Some(b'5') => Kind::BinaryEvent,
        Some(b'6') => Kind::BinaryAck,
        Some(_) => return Err("unknown Socket.IO packet type"),
        None => return Err("empty Socket.IO packet"),
    };
    let mut i = 1;
    if matches!(kind, Kind::BinaryEvent | Kind::BinaryAck) {
        let digits = p[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || p.get(i + digits) != Some(&b'-') {
            return Err("a binary packet needs its attachment count");
        }
        i += digits + 1;
    }
    let (nsp_start, nsp_end) = if p.get(i) == Some(&b'/') {
        let len = p[i..]
            .iter()
            .position(|b| *b == b',')
            .unwrap_or(p.len() - i);
        let range = (i, i + len);
        i += len + usize::from(i + len < p.len());
        range
    } else {
        (0, 0)
    };
    if nsp_end - nsp_start > MAX_NSP {
        return Err("namespace too long");
    }
    let digits = p[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    let ack = match digits {
        0 => None,
        d if d > 16 => return Err("ack id too large"),
        d => {
            let mut n = 0u64;
            for b in &p[i..i + d] {
                n = n * 10 + u64::from(b - b'0');
            }
            if n > MAX_ACK {
                return Err("ack id too large");
            }
            i += d;
            Some(n)
        }
    };
    let (head, data) = p.split_at_mut(i);
    let nsp = match nsp_end {
        0 => "/",
        _ => std::str::from_utf8(&head[nsp_start..nsp_end]).map_err(|_| "namespace not UTF-8")?,
    };
    Ok(Packet {
        kind,
        nsp,
        ack,
        data,
    })
}

/// The handshake's open packet (`0{..}`), as the first frame of a session.
/// `upgrades` lists `websocket` for a polling session and nothing for a WebSocket one.
pub fn open_frame(sid: &str, upgrade: bool, ping_ms: u64, timeout_ms: u64, max: usize) -> Bytes {
    let mut b = FrameBuf::with_capacity(128);
    let p = b.payload();
    p.extend_from_slice(br#"0{"sid":"#);
    json::push_str(p, sid);
    p.extend_from_slice(match upgrade {
        true => br#","upgrades":["websocket"],"pingInterval":"#,
        false => br#","upgrades":[],"pingInterval":"#,
    });
    json::push_u64(p, ping_ms);
    p.extend_from_slice(br#","pingTimeout":"#);
    json::push_u64(p, timeout_ms);
    p.extend_from_slice(br#","maxPayload":"#);
    json::push_u64(p, max as u64);
    p.push(b'}');
    b.finish(OP_TEXT)
}

/// `40{"sid":".."}`: the default namespace is joined.
pub fn connect_frame(sid: &str) -> Bytes {
    let mut b = FrameBuf::with_capacity(32 + sid.len());
    let p = b.payload();
    p.extend_from_slice(br#"40{"sid":"#);
    json::push_str(p, sid);
    p.push(b'}');
    b.finish(OP_TEXT)
}

/// `44[/nsp,]{"message":..}`: the namespace (`/` is left out) was refused.
pub fn connect_error_frame(nsp: &str, message: &str) -> Bytes {
    let mut b = FrameBuf::with_capacity(32 + nsp.len() + message.len());
    let p = b.payload();
    p.extend_from_slice(b"44");
    push_nsp(p, nsp);
    p.extend_from_slice(br#"{"message":"#);
    json::push_str(p, message);
    p.push(b'}');
    b.finish(OP_TEXT)
}

/// `41`: the server ends the namespace (the client does not reconnect).
pub fn disconnect_frame() -> Bytes {
    encode::frame(OP_TEXT, b"41")
}

fn push_nsp(p: &mut Vec<u8>, nsp: &str) {
    if nsp != "/" {
        p.extend_from_slice(nsp.as_bytes());
        p.push(b',');
    }
}

/// `42["<name>",` + what `args` writes + `]`: an event on the default namespace.
/// `name` must need no escaping.
pub fn event_frame(name: &str, hint: usize, args: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut b = FrameBuf::with_capacity(16 + name.len() + hint);
    let p = b.payload();
    p.extend_from_slice(br#"42[""#);
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(br#"","#);
    args(p);
    p.push(b']');
    b.finish(OP_TEXT)
}

/// `43<ack>[` + what `args` writes + `]`: the answer to an event sent with an ack id.
pub fn ack_frame(ack: u64, hint: usize, args: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut b = FrameBuf::with_capacity(24 + hint);
    let p = b.payload();
    p.extend_from_slice(b"43");
    json::push_u64(p, ack);
    p.push(b'[');
    args(p);
    p.push(b']');
    b.finish(OP_TEXT)
}

/// A v1 JSON notice (`lagging`, `caught_up`, `reset`) as the event
/// `42["relay_notice",<notice>]`: a bare JSON object is no Engine.IO packet.
pub fn notice(json_frame: &Bytes) -> Bytes {
    let body = encode::decode_head(json_frame).map_or(&[][..], |h| &json_frame[h.head_len..]);
    if body.is_empty() {
        return json_frame.clone();
    }
    event_frame("relay_notice", body.len(), |p| p.extend_from_slice(body))
}

/// A text frame with this payload (an Engine.IO packet).
pub fn text_frame(payload: &[u8]) -> Bytes {
    encode::frame(OP_TEXT, payload)
}

/// The Engine.IO packets inside one outbox entry (one or more WebSocket frames), for a
/// polling response: each text frame's payload (a slice sharing the entry), `1` for a
/// close frame; pings, pongs and placeholders are skipped. Binary frames are never
/// queued for this dialect.
pub fn payloads_of(entry: &Bytes, out: &mut Vec<Bytes>) {
    let mut at = 0;
    while let Some(head) = encode::decode_head(&entry[at..]) {
        let start = at + head.head_len;
        let Some(end) = usize::try_from(head.len)
            .ok()
            .and_then(|l| start.checked_add(l))
        else {
            return;
        };
        if end > entry.len() {
            return;
        }
        match head.opcode {
            encode::OP_TEXT => out.push(entry.slice(start..end)),
            encode::OP_CLOSE => out.push(Bytes::from_static(CLOSE)),
            _ => {}
        }
        at = end;
    }
}

/// Appends a timestamp as ISO-8601 UTC with milliseconds (`2024-01-01T12:00:00.000Z`),
/// as a JSON string.
pub fn push_iso(p: &mut Vec<u8>, ms: u64) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = format!(
        "\"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z\"",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    );
    p.extend_from_slice(s.as_bytes());
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
