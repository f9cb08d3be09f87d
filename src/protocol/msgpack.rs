//! The MessagePack format (`?format=msgpack`): protocol v1's envelope in binary frames.
//!
//! A message is a map of the same five fields as the v1 envelope, in the same order:
//! `type` (`"message"`), `channel`, `offset`, `ts`, `data`, with `data` transcoded once
//! per message from the publisher's JSON (objects to maps with their key order, arrays,
//! strings, integers that fit 64 bits as integers, other numbers as float 64, booleans,
//! null). Replies, notices and errors are the v1 JSON objects transcoded the same way.
//! Transcoding walks simd-json's tape, which keeps the source order, in one pass.

use bytes::Bytes;
use rmp::encode as mp;
use simd_json::{Node, StaticNode};

use super::encode::{self, FrameBuf, OP_BINARY};
use super::format::Message;

/// Appends `json` (one valid JSON value) to `out` as MessagePack. Returns false, leaving
/// `out` as it was, if `json` does not parse.
pub fn transcode(json: &[u8], out: &mut Vec<u8>) -> bool {
    let mut scratch = json.to_vec();
    let Ok(tape) = simd_json::to_tape(&mut scratch) else {
        return false;
    };
    // Writes to a Vec cannot fail, so the results below carry nothing.
    for node in tape.0.iter() {
        match *node {
            Node::String(s) => {
                let _ = mp::write_str(out, s);
            }
            Node::Object { len, .. } => {
                let _ = mp::write_map_len(out, len as u32);
            }
            Node::Array { len, .. } => {
                let _ = mp::write_array_len(out, len as u32);
            }
            Node::Static(StaticNode::Null) => {
                let _ = mp::write_nil(out);
            }
            Node::Static(StaticNode::Bool(b)) => {
                let _ = mp::write_bool(out, b);
            }
            Node::Static(StaticNode::I64(n)) => {
                let _ = mp::write_sint(out, n);
            }
            Node::Static(StaticNode::U64(n)) => {
                let _ = mp::write_uint(out, n);
            }
            Node::Static(StaticNode::F64(x)) => {
                let _ = mp::write_f64(out, x);
            }
        }
    }
    true
}

/// The binary frame of one message.
pub fn message_frame(m: &Message<'_>) -> Bytes {
    let mut b = FrameBuf::with_capacity(48 + m.channel.len() + m.data.len());
    let p = b.payload();
    let _ = mp::write_map_len(p, 5);
    let _ = mp::write_str(p, "type");
    let _ = mp::write_str(p, "message");
    let _ = mp::write_str(p, "channel");
    let _ = mp::write_str(p, m.channel);
    let _ = mp::write_str(p, "offset");
    let _ = mp::write_uint(p, m.offset);
    let _ = mp::write_str(p, "ts");
    let _ = mp::write_uint(p, m.ts);
    let _ = mp::write_str(p, "data");
    if !transcode(m.data, p) {
        // Published data is validated JSON; should it not parse, say so rather than
        // send half a map.
        let _ = mp::write_nil(p);
    }
    b.finish(OP_BINARY)
}

/// A v1 JSON frame (a reply or notice the relay built) as a binary MessagePack frame.
pub fn from_json_frame(frame: &Bytes) -> Bytes {
    let head = encode::decode_head(frame).map_or(0, |h| h.head_len);
    let json = &frame[head..];
    let mut b = FrameBuf::with_capacity(json.len());
    if transcode(json, b.payload()) {
        b.finish(OP_BINARY)
    } else {
        frame.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(f: &Bytes) -> &[u8] {
        let h = encode::decode_head(f).unwrap();
        assert_eq!(h.opcode, OP_BINARY);
        &f[h.head_len..]
    }

    #[test]
    fn every_json_kind_transcodes_in_source_order() {
        let mut out = Vec::new();
        assert!(transcode(
            br#"{"z":1,"a":[true,null,-2,1.5,"x"],"big":18446744073709551615}"#,
            &mut out
        ));
        let mut want = vec![0x83, 0xa1, b'z', 0x01, 0xa1, b'a', 0x95, 0xc3, 0xc0, 0xfe];
        want.extend_from_slice(&[0xcb]);
        want.extend_from_slice(&1.5f64.to_be_bytes());
        want.extend_from_slice(&[0xa1, b'x', 0xa3, b'b', b'i', b'g', 0xcf]);
        want.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(out, want);
        assert!(!transcode(b"{", &mut Vec::new()));
    }

    #[test]
    fn a_message_is_the_envelope_as_a_map() {
        let f = message_frame(&Message {
            channel: "t:A",
            epoch: "abcd1234",
            offset: 7,
            ts: 300,
            data: br#"{"p":2}"#,
        });
        let mut want = vec![0x85, 0xa4];
        want.extend_from_slice(b"type");
        want.push(0xa7);
        want.extend_from_slice(b"message");
        want.push(0xa7);
        want.extend_from_slice(b"channel");
        want.push(0xa3);
        want.extend_from_slice(b"t:A");
        want.push(0xa6);
        want.extend_from_slice(b"offset");
        want.push(0x07);
        want.push(0xa2);
        want.extend_from_slice(b"ts");
        want.extend_from_slice(&[0xcd, 0x01, 0x2c]);
        want.push(0xa4);
        want.extend_from_slice(b"data");
        want.extend_from_slice(&[0x81, 0xa1, b'p', 0x02]);
        assert_eq!(payload(&f), want.as_slice());
    }

    #[test]
    fn replies_are_transcoded_into_binary_frames() {
        let f = from_json_frame(&encode::pong(None));
        assert_eq!(
            payload(&f),
            &[0x81, 0xa4, b't', b'y', b'p', b'e', 0xa4, b'p', b'o', b'n', b'g']
        );
    }
}
