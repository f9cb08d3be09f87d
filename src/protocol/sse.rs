//! Server-Sent Events framing (`GET /sse`): what the `sse` format writes.
//!
//! A message is one event with the channel position as its id, so that a browser's
//! `EventSource` sends it back as `Last-Event-ID` when it reconnects:
//!
//! ```text
//! id: <epoch>:<offset>
//! data: {"type":"message","channel":..,"offset":..,"ts":..,"data":..}
//!
//! ```
//!
//! Notices and replies are events named by their v1 `type` (`event: subscribed`,
//! `lagging`, `caught_up`, `error`, `welcome`) with the v1 JSON as data; the end of a
//! stream is `event: close` with `{"code":..,"reason":..}` (the WebSocket close code the
//! same condition would get). A heartbeat is a comment line. `data:` lines cannot hold a
//! line break, and JSON can only hold raw ones as whitespace between tokens, so each CR
//! or LF in the publisher's data is written as a space: the data stays the same JSON.

use bytes::Bytes;

use super::{encode, json};

/// What a heartbeat writes: a comment, which `EventSource` ignores.
pub const HEARTBEAT: &[u8] = b": ping\n\n";

/// Appends `json` with every CR and LF written as a space.
fn push_one_line(out: &mut Vec<u8>, json: &[u8]) {
    let start = out.len();
    out.extend_from_slice(json);
    for b in &mut out[start..] {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
}

/// The event of one channel message.
pub fn message(channel: &str, epoch: &str, offset: u64, ts_ms: u64, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(40 + encode::ENVELOPE_FIXED + channel.len() + data.len());
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(epoch.as_bytes());
    out.push(b':');
    json::push_u64(&mut out, offset);
    out.extend_from_slice(b"\ndata: ");
    let mut envelope = Vec::with_capacity(encode::ENVELOPE_FIXED + channel.len() + data.len());
    encode::push_envelope(&mut envelope, channel, offset, ts_ms, data);
    push_one_line(&mut out, &envelope);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A v1 notice or reply (a WebSocket text frame as the encoders build it) as an event
/// named by its `type`.
pub fn notice(json_frame: &[u8]) -> Bytes {
    let payload = match encode::decode_head(json_frame) {
        Some(h) => json_frame.get(h.head_len..).unwrap_or_default(),
        None => json_frame,
    };
    let name = payload
        .strip_prefix(br#"{"type":""#)
        .and_then(|rest| rest.split(|b| *b == b'"').next())
        .filter(|n| !n.is_empty() && n.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap_or(b"notice");
    let mut out = Vec::with_capacity(16 + name.len() + payload.len());
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\ndata: ");
    push_one_line(&mut out, payload);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The last event of a stream.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut out = Vec::with_capacity(48 + reason.len());
    out.extend_from_slice(b"event: close\ndata: {\"code\":");
    json::push_u64(&mut out, u64::from(code));
    out.extend_from_slice(b",\"reason\":");
    json::push_str(&mut out, reason);
    out.extend_from_slice(b"}\n\n");
    Bytes::from(out)
}

/// The `epoch` and `offset` of a `Last-Event-ID` this relay wrote (`<epoch>:<offset>`).
pub fn parse_last_event_id(id: &str) -> Option<(&str, u64)> {
    let (epoch, offset) = id.trim().split_once(':')?;
    let offset = offset.parse().ok()?;
    (!epoch.is_empty() && epoch.len() <= 64).then_some((epoch, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_one_event_with_its_position_as_id_and_no_raw_line_break() {
        let e = message("ticker:A", "abcd1234", 7, 99, b"{\"p\":\n1,\r\n\"q\":2}");
        assert_eq!(
            &e[..],
            b"id: abcd1234:7\ndata: {\"type\":\"message\",\"channel\":\"ticker:A\",\"offset\":7,\"ts\":99,\"data\":{\"p\": 1,  \"q\":2}}\n\n"
        );
    }

    #[test]
    fn notices_are_named_by_their_type_and_closes_carry_the_code() {
        let n = notice(&encode::lagging("ticker:A", 3));
        assert_eq!(
            &n[..],
            b"event: lagging\ndata: {\"type\":\"lagging\",\"channel\":\"ticker:A\",\"skipped\":3}\n\n"
        );
        assert_eq!(
            &close(1008, "slow consumer")[..],
            b"event: close\ndata: {\"code\":1008,\"reason\":\"slow consumer\"}\n\n"
        );
    }

    #[test]
    fn last_event_ids_parse_only_in_our_shape() {
        assert_eq!(parse_last_event_id("abcd1234:42"), Some(("abcd1234", 42)));
        for bad in ["", "abcd", ":1", "abcd:x", "abcd:-1"] {
            assert_eq!(parse_last_event_id(bad), None, "{bad}");
        }
    }
}
