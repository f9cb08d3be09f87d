//! Building outbound WebSocket frames, each exactly once.
//!
//! Server frames are never masked (RFC 6455 §5.1), so a frame built here is correct for
//! every subscriber byte for byte: the hub builds a `message` frame once per publish and
//! hands each subscriber a clone of the same [`Bytes`] (a refcount bump). Replies are
//! built the same way; the writer never re-encodes anything.
//!
//! Payloads are written after a 10-byte gap, then the header (2, 4 or 10 bytes) is written
//! right-aligned into the gap and the frame is the slice that starts there: one
//! allocation per frame, no copy of the payload to prepend a header.

use bytes::Bytes;

use super::json;
use crate::error::ErrorCode;
use crate::protocol::command::Id;

/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;

const GAP: usize = 10;

/// An empty ping frame (the v1 heartbeat).
pub const PING_FRAME: [u8; 2] = [0x89, 0x00];

/// Largest control-frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A payload being written, with room for the header in front.
pub struct FrameBuf(Vec<u8>);

impl FrameBuf {
    /// A buffer for a payload of about `payload_hint` bytes.
    pub fn with_capacity(payload_hint: usize) -> Self {
        let mut v = Vec::with_capacity(GAP + payload_hint);
        v.resize(GAP, 0);
        FrameBuf(v)
    }

    /// The payload bytes, to write into.
    pub fn payload(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// Finishes a FIN frame with `opcode` around what was written.
    pub fn finish(self, opcode: u8) -> Bytes {
        let mut v = self.0;
        let len = v.len() - GAP;
        let head = header(opcode, len);
        let start = GAP - head.len();
        v[start..GAP].copy_from_slice(&head);
        Bytes::from(v).slice(start..)
    }
}

/// The header of an unmasked FIN frame: at most 10 bytes.
fn header(opcode: u8, len: usize) -> smallvec::SmallVec<[u8; 10]> {
    let mut h = smallvec::SmallVec::new();
    h.push(0x80 | opcode);
    if len < 126 {
        h.push(len as u8);
    } else if len <= u16::MAX as usize {
        h.push(126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    h
}

/// A complete FIN frame holding `payload`.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut b = FrameBuf::with_capacity(payload.len());
    b.payload().extend_from_slice(payload);
    b.finish(opcode)
}

/// The `message` frame every subscriber of a channel receives (`format=envelope`):
/// `{"type":"message","channel":..,"offset":..,"ts":..,"data":<raw>}`. `channel` must be a
/// validated name (its alphabet needs no escaping) and `data` valid JSON.
pub fn message_frame(channel: &str, offset: u64, ts_ms: u64, data: &[u8]) -> Bytes {
    let mut b = FrameBuf::with_capacity(ENVELOPE_FIXED + channel.len() + data.len());
    push_envelope(b.payload(), channel, offset, ts_ms, data);
    b.finish(OP_TEXT)
}

/// Bytes of an envelope besides the channel name and the data (numbers at their widest).
pub const ENVELOPE_FIXED: usize = 96;

/// Appends the v1 envelope JSON of one message to `p` (the payload of
/// [`message_frame`], and each message of `GET /history`).
pub fn push_envelope(p: &mut Vec<u8>, channel: &str, offset: u64, ts_ms: u64, data: &[u8]) {
    p.extend_from_slice(br#"{"type":"message","channel":""#);
    p.extend_from_slice(channel.as_bytes());
    p.extend_from_slice(br#"","offset":"#);
    json::push_u64(p, offset);
    p.extend_from_slice(br#","ts":"#);
    json::push_u64(p, ts_ms);
    p.extend_from_slice(br#","data":"#);
    p.extend_from_slice(data);
    p.push(b'}');
}

/// The frame a `format=raw` subscriber receives: the publisher's `data` alone.
pub fn raw_frame(data: &[u8]) -> Bytes {
    frame(OP_TEXT, data)
}

/// A close frame with `code` and a reason cut to fit the 125-byte control limit.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut b = FrameBuf::with_capacity(2 + cut);
    b.payload().extend_from_slice(&code.to_be_bytes());
    b.payload().extend_from_slice(&reason.as_bytes()[..cut]);
    b.finish(OP_CLOSE)
}

fn reply(kind: &str, id: Option<&Id>, extra: usize) -> FrameBuf {
    let mut b = FrameBuf::with_capacity(32 + extra);
    let p = b.payload();
    p.extend_from_slice(br#"{"type":""#);
    p.extend_from_slice(kind.as_bytes());
    p.push(b'"');
    if let Some(id) = id {
        p.extend_from_slice(br#","id":"#);
        p.extend_from_slice(id.as_json());
    }
    b
}

fn close_reply(mut b: FrameBuf) -> Bytes {
    b.payload().push(b'}');
    b.finish(OP_TEXT)
}

/// `{"type":"welcome","conn":"..","heartbeat_ms":..}`
pub fn welcome(conn: u64, heartbeat_ms: u64) -> Bytes {
    let mut b = reply("welcome", None, 48);
    let p = b.payload();
    p.extend_from_slice(br#","conn":""#);
    p.extend_from_slice(format!("{conn:x}").as_bytes());
    p.extend_from_slice(br#"","heartbeat_ms":"#);
    json::push_u64(p, heartbeat_ms);
    close_reply(b)
}

/// One channel's line in a `subscribed` reply.
#[derive(Debug, Clone)]
pub struct SubscribedChannel<'a> {
    /// The channel name.
    pub channel: &'a str,
    /// The channel's epoch.
    pub epoch: &'a str,
    /// The offset of the newest message published so far (0: none yet).
    pub offset: u64,
    /// With a `recover`: whether every missed message is being replayed.
    pub recovered: Option<bool>,
}

/// `{"type":"subscribed","id":..,"channels":[{"channel":..,"epoch":..,"offset":..}]}`
pub fn subscribed(id: Option<&Id>, channels: &[SubscribedChannel<'_>]) -> Bytes {
    let mut b = reply("subscribed", id, channels.len() * 64);
    let p = b.payload();
    p.extend_from_slice(br#","channels":["#);
    for (i, c) in channels.iter().enumerate() {
        if i > 0 {
            p.push(b',');
        }
        p.extend_from_slice(br#"{"channel":"#);
        json::push_str(p, c.channel);
        p.extend_from_slice(br#","epoch":"#);
        json::push_str(p, c.epoch);
        p.extend_from_slice(br#","offset":"#);
        json::push_u64(p, c.offset);
        if let Some(r) = c.recovered {
            p.extend_from_slice(if r {
                br#","recovered":true"#
            } else {
                br#","recovered":false"#
            });
        }
        p.push(b'}');
    }
    p.push(b']');
    close_reply(b)
}

/// `{"type":"lagging","channel":..,"skipped":N}`: this connection has been getting only
/// the newest of the channel's messages (N skipped so far).
pub fn lagging(channel: &str, skipped: u64) -> Bytes {
    staleness("lagging", channel, skipped)
}

/// `{"type":"caught_up","channel":..,"skipped":N}`: full flow again, N skipped in all.
pub fn caught_up(channel: &str, skipped: u64) -> Bytes {
    staleness("caught_up", channel, skipped)
}

fn staleness(kind: &str, channel: &str, skipped: u64) -> Bytes {
    let mut b = reply(kind, None, 48 + channel.len());
    let p = b.payload();
    p.extend_from_slice(br#","channel":"#);
    json::push_str(p, channel);
    p.extend_from_slice(br#","skipped":"#);
    json::push_u64(p, skipped);
    close_reply(b)
}

/// `{"type":"reset","channel":..,"epoch":..,"offset":N}`: the channel's history was lost
/// where it is kept (the backplane came back empty): the subscriber's position is gone,
/// the channel now stands at `epoch`/`offset` and live messages continue from `offset+1`.
pub fn reset(channel: &str, epoch: &str, offset: u64) -> Bytes {
    let mut b = reply("reset", None, 64 + channel.len());
    let p = b.payload();
    p.extend_from_slice(br#","channel":"#);
    json::push_str(p, channel);
    p.extend_from_slice(br#","epoch":"#);
    json::push_str(p, epoch);
    p.extend_from_slice(br#","offset":"#);
    json::push_u64(p, offset);
    close_reply(b)
}

/// `{"type":"unsubscribed","id":..,"channels":[..]}`
pub fn unsubscribed(id: Option<&Id>, channels: &[&str]) -> Bytes {
    let mut b = reply("unsubscribed", id, channels.len() * 32);
    let p = b.payload();
    p.extend_from_slice(br#","channels":["#);
    for (i, c) in channels.iter().enumerate() {
        if i > 0 {
            p.push(b',');
        }
        json::push_str(p, c);
    }
    p.push(b']');
    close_reply(b)
}

/// `{"type":"published","id":..,"channel":..,"epoch":..,"offset":..}`
pub fn published(id: Option<&Id>, channel: &str, epoch: &str, offset: u64) -> Bytes {
    let mut b = reply("published", id, 56 + channel.len());
    let p = b.payload();
    p.extend_from_slice(br#","channel":"#);
    json::push_str(p, channel);
    p.extend_from_slice(br#","epoch":"#);
    json::push_str(p, epoch);
    p.extend_from_slice(br#","offset":"#);
    json::push_u64(p, offset);
    close_reply(b)
}

/// `{"type":"authenticated","id":..,"sub":..,"exp":..}` (`sub`, `exp` when a token was
/// presented), so a client knows when to refresh.
pub fn authenticated(id: Option<&Id>, sub: Option<&str>, exp: Option<u64>) -> Bytes {
    let mut b = FrameBuf::with_capacity(96);
    let p = b.payload();
    p.extend_from_slice(br#"{"type":"authenticated""#);
    if let Some(id) = id {
        p.extend_from_slice(br#","id":"#);
        p.extend_from_slice(id.as_json());
    }
    if let Some(exp) = exp {
        if let Some(sub) = sub {
            p.extend_from_slice(br#","sub":"#);
            json::push_str(p, sub);
        }
        p.extend_from_slice(br#","exp":"#);
        json::push_u64(p, exp);
    }
    p.push(b'}');
    b.finish(OP_TEXT)
}

/// `{"type":"pong","id":..}`
pub fn pong(id: Option<&Id>) -> Bytes {
    close_reply(reply("pong", id, 0))
}

/// `{"type":"error","id":..,"code":..,"message":..}`
pub fn error(id: Option<&Id>, code: ErrorCode, message: &str) -> Bytes {
    let mut b = reply("error", id, 48 + message.len());
    let p = b.payload();
    p.extend_from_slice(br#","code":""#);
    p.extend_from_slice(code.as_str().as_bytes());
    p.extend_from_slice(br#"","message":"#);
    json::push_str(p, message);
    close_reply(b)
}

/// A decoded frame header: what a client would read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// FIN bit.
    pub fin: bool,
    /// Opcode (low four bits of the first byte).
    pub opcode: u8,
    /// Whether a masking key follows.
    pub masked: bool,
    /// Payload length.
    pub len: u64,
    /// Header length in bytes (mask included).
    pub head_len: usize,
}

/// Decodes the header at the start of `b`; `None` if `b` is too short.
pub fn decode_head(b: &[u8]) -> Option<Head> {
    let (b0, b1) = (*b.first()?, *b.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, mut head_len) = match b1 & 0x7f {
        126 => (u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as u64, 4),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
        n => (n as u64, 2),
    };
    if masked {
        head_len += 4;
    }
    Some(Head {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        masked,
        len,
        head_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(f: &Bytes) -> &[u8] {
        let h = decode_head(f).unwrap();
        assert_eq!(
            h.head_len + h.len as usize,
            f.len(),
            "length field matches the frame"
        );
        &f[h.head_len..]
    }

    #[test]
    fn header_sizes_switch_at_126_and_65536() {
        for (len, head) in [
            (0, 2),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (70000, 10),
        ] {
            let f = frame(OP_TEXT, &vec![b'x'; len]);
            let h = decode_head(&f).unwrap();
            assert_eq!(
                (h.head_len, h.len as usize, h.fin, h.opcode, h.masked),
                (head, len, true, OP_TEXT, false)
            );
        }
    }

    #[test]
    fn message_frame_embeds_data_verbatim() {
        let f = message_frame(
            "ticker:BTC-USD",
            1046,
            1732270000123,
            br#"{"price":43250.50}"#,
        );
        assert_eq!(
            payload(&f),
            br#"{"type":"message","channel":"ticker:BTC-USD","offset":1046,"ts":1732270000123,"data":{"price":43250.50}}"#
        );
    }

    #[test]
    fn replies_are_valid_json_with_the_documented_shape() {
        let id = Id::from_u64(3);
        let cases: Vec<(Bytes, &[u8])> = vec![
            (welcome(0xc8f2, 25000), br#"{"type":"welcome","conn":"c8f2","heartbeat_ms":25000}"#),
            (
                subscribed(Some(&id), &[SubscribedChannel { channel: "a", epoch: "k3f9", offset: 5, recovered: None }]),
                br#"{"type":"subscribed","id":3,"channels":[{"channel":"a","epoch":"k3f9","offset":5}]}"#,
            ),
            (
                subscribed(None, &[
                    SubscribedChannel { channel: "a", epoch: "e", offset: 1, recovered: Some(true) },
                    SubscribedChannel { channel: "b", epoch: "f", offset: 0, recovered: Some(false) },
                ]),
                br#"{"type":"subscribed","channels":[{"channel":"a","epoch":"e","offset":1,"recovered":true},{"channel":"b","epoch":"f","offset":0,"recovered":false}]}"#,
            ),
            (unsubscribed(None, &["a", "b"]), br#"{"type":"unsubscribed","channels":["a","b"]}"#),
            (published(Some(&id), "a", "k3f9ab2x", 7), br#"{"type":"published","id":3,"channel":"a","epoch":"k3f9ab2x","offset":7}"#),
            (pong(Some(&id)), br#"{"type":"pong","id":3}"#),
            (lagging("ticker:X", 4), br#"{"type":"lagging","channel":"ticker:X","skipped":4}"#),
            (
                reset("orders:1", "k3f9abcd", 0),
                br#"{"type":"reset","channel":"orders:1","epoch":"k3f9abcd","offset":0}"#,
            ),
            (caught_up("ticker:X", 9), br#"{"type":"caught_up","channel":"ticker:X","skipped":9}"#),
            (
                error(Some(&id), ErrorCode::Forbidden, "no \"way\""),
                br#"{"type":"error","id":3,"code":"forbidden","message":"no \"way\""}"#,
            ),
        ];
        for (f, want) in cases {
            assert_eq!(payload(&f), want);
            let mut copy = payload(&f).to_vec();
            assert!(crate::protocol::command::validate_json(&mut copy));
        }
    }

    #[test]
    fn close_reason_is_cut_to_the_control_limit_on_a_char_boundary() {
        let f = close_frame(1008, &"é".repeat(100));
        let p = payload(&f);
        assert!(p.len() <= MAX_CONTROL_PAYLOAD);
        assert_eq!(&p[..2], &1008u16.to_be_bytes());
        assert!(std::str::from_utf8(&p[2..]).is_ok());
        assert_eq!(decode_head(&f).unwrap().opcode, OP_CLOSE);
    }
}
