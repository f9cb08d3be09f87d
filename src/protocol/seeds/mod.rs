//! The seed platforms' wire formats (see docs/dialects.md): what ARIA PRO, AI-Trading-V2
//! and Legend AI front ends expect on their WebSockets, kept pure like the rest of
//! [`crate::protocol`].
//!
//! Each platform's channel messages are the publisher's verbatim data put into a
//! template, once per message per platform ([`crate::protocol::format`]), never
//! re-parsed or re-serialized:
//!
//! - *wrap*: `prefix + data + suffix` (ARIA: `{"type":"tick","timestamp":..,"data":DATA}`);
//! - *splice*, when the data is an object: `{` + the relay's fields + `,` + the data's
//!   members (`{}` adds no comma). The relay's fields come first, so a key the publisher
//!   also wrote wins: `JSON.parse` keeps the last one (AI-Trading, Legend).
//!
//! - [`aria`], [`aitrading`], [`legend`]: each platform's frames, replies and client
//!   command parser.
//! - [`sentio`]: Sentio 2.0's frames and its five endpoints' client side.
//! - [`broadcast`]: Legend AI's HTTP broadcast bodies (query or JSON).

pub mod aitrading;
pub mod aria;
pub mod broadcast;
pub mod legend;
pub mod sentio;

use bytes::Bytes;
use std::cell::RefCell;

use super::encode::{FrameBuf, OP_TEXT};
use super::json;

/// What one client message of a seed platform asks for, with the channel names the
/// parser made from the platform's own vocabulary (`{"action":"subscribe_ticker",
/// "symbol":"BTCUSDT"}` → `ticker:BTCUSDT`), so they are owned rather than borrowed from
/// the frame. The session runs it like the neutral command it stands for, after the
/// command rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    /// Subscribe to every channel (validated names), with an optional `max_rate`.
    Subscribe {
        /// Channel names.
        channels: Vec<String>,
        /// Messages per second per channel at most (conflate channels only).
        max_rate: Option<u32>,
    },
    /// Unsubscribe.
    Unsubscribe {
        /// Channel names.
        channels: Vec<String>,
    },
    /// Subscribe to one channel; the reply carries its newest messages (see
    /// `Dialect::JOIN_REPLAY`) instead of the last value being pushed.
    Join {
        /// Channel name.
        channel: String,
    },
    /// Send the channel's newest message (a history read of one), or `empty` when it
    /// has none.
    Last {
        /// Channel name.
        channel: String,
        /// The answer when the channel holds no message.
        empty: Option<Bytes>,
    },
    /// An application-level ping.
    Ping,
    /// From now on the connection is user `sub` (a dialect that trusts the user id its
    /// client names, by the operator's choice), as if a token had said so.
    Trust {
        /// The user id.
        sub: String,
    },
    /// Several, in order.
    Many(Vec<Owned>),
    /// Answer with this frame (an error in the platform's own shape).
    Reply(Bytes),
    /// Nothing to do.
    Ignore,
}

thread_local! {
    // simd-json's scratch buffers, reused across calls on this thread (as in the v1
    // parser). Never held across an await.
    static BUFFERS: RefCell<simd_json::Buffers> = RefCell::new(simd_json::Buffers::default());
}

/// Parses `buf` (scratch afterwards) into a simd-json tape; `None` if it is not JSON.
pub fn tape(buf: &mut [u8]) -> Option<simd_json::tape::Tape<'_>> {
    BUFFERS
        .with(|b| simd_json::to_tape_with_buffers(buf, &mut b.borrow_mut()))
        .ok()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `ms` since the Unix epoch (the seeds' ISO-8601 UTC).
pub fn push_iso(out: &mut Vec<u8>, ms: u64) {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let two = |n: u64, out: &mut Vec<u8>| {
        out.push(b'0' + (n / 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    let y = year.clamp(0, 9999) as u64;
    two(y / 100, out);
    two(y % 100, out);
    out.push(b'-');
    two(month as u64, out);
    out.push(b'-');
    two(day as u64, out);
    out.push(b'T');
    two(rem / 3600, out);
    out.push(b':');
    two(rem % 3600 / 60, out);
    out.push(b':');
    two(rem % 60, out);
    out.push(b'.');
    let m = ms % 1000;
    out.push(b'0' + (m / 100) as u8);
    two(m % 100, out);
    out.push(b'Z');
}

/// A JSON string of [`push_iso`] (quotes included).
pub fn push_iso_str(out: &mut Vec<u8>, ms: u64) {
    out.push(b'"');
    push_iso(out, ms);
    out.push(b'"');
}

/// The members of `data` after its opening brace, if it is an object: the bytes to put
/// behind the relay's own fields, and whether the object has members (a comma is
/// needed). `None`: not an object.
pub fn object_rest(data: &[u8]) -> Option<(&[u8], bool)> {
    let start = data.iter().position(|b| !b.is_ascii_whitespace())?;
    if data[start] != b'{' {
        return None;
    }
    let rest = &data[start + 1..];
    let has_members = rest
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b != b'}');
    Some((rest, has_members))
}

/// Ends a splice: `, ` + the data's members (or the data under `key` when it is not an
/// object), closing the frame's object. `p` holds `{` and the relay's fields.
pub fn push_spliced(p: &mut Vec<u8>, data: &[u8], key: &str) {
    match object_rest(data) {
        Some((rest, members)) => {
            if members {
                p.push(b',');
            }
            p.extend_from_slice(rest);
        }
        None => {
            p.push(b',');
            json::push_str(p, key);
            p.push(b':');
            p.extend_from_slice(data);
            p.push(b'}');
        }
    }
}

/// A text frame of a JSON object built by `fill` into an empty payload.
pub fn text_frame(hint: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut b = FrameBuf::with_capacity(hint);
    fill(b.payload());
    b.finish(OP_TEXT)
}

/// The namespace of a channel name (the part before the first `:`), as
/// `Namespaces::name_of` says (spelled out here: the protocol stays below the namespace
/// table).
pub fn namespace(channel: &str) -> &str {
    channel.split_once(':').map_or(channel, |(ns, _)| ns)
}

/// The part of a channel name after the namespace (`""` for a bare namespace).
pub fn suffix(channel: &str) -> &str {
    channel.split_once(':').map_or("", |(_, s)| s)
}

/// The payload of a complete unmasked frame built by this relay (`None` if it is not one).
pub fn payload_of(frame: &[u8]) -> Option<&[u8]> {
    let head = super::encode::decode_head(frame)?;
    frame.get(head.head_len..)
}

/// Upper-cases a symbol the way the platforms do (`aapl` → `AAPL`): ASCII only, so the
/// result is still a valid channel-name suffix.
pub fn upper(s: &str) -> String {
    s.to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_timestamps() {
        let iso = |ms| {
            let mut v = Vec::new();
            push_iso(&mut v, ms);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_704_110_400_007), "2024-01-01T12:00:00.007Z");
        assert_eq!(
            iso(951_782_400_000 + 86_399_999),
            "2000-02-29T23:59:59.999Z"
        );
        assert_eq!(iso(1_732_270_000_123), "2024-11-22T10:06:40.123Z");
    }

    #[test]
    fn splices_keep_the_data_verbatim() {
        let splice = |data: &[u8]| {
            let mut p = b"{\"type\":\"x\"".to_vec();
            push_spliced(&mut p, data, "data");
            String::from_utf8(p).unwrap()
        };
        assert_eq!(
            splice(br#"{"b":1.50,"a":"\u00e9"}"#),
            r#"{"type":"x","b":1.50,"a":"\u00e9"}"#
        );
        assert_eq!(
            splice(b" {\n  \"a\": 1\n}"),
            "{\"type\":\"x\",\n  \"a\": 1\n}"
        );
        assert_eq!(splice(b"{ }"), r#"{"type":"x" }"#);
        assert_eq!(splice(b"[1,2]"), r#"{"type":"x","data":[1,2]}"#);
        assert_eq!(splice(b"7"), r#"{"type":"x","data":7}"#);
    }
}
