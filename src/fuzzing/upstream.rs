//! The `upstream` target: what an edge reads from its upstream relay
//! ([`crate::upstream::wire::message`]). Arbitrary bytes never panic; when they read as a
//! message, encoding that message again gives exactly the bytes read (so the edge
//! mirrors the upstream's frame, not something like it).

use crate::protocol::encode;
use crate::upstream::wire;

/// Runs the target on one input.
pub fn upstream(data: &[u8]) {
    let Some(m) = wire::message(data) else {
        return;
    };
    let frame = encode::message_frame(m.channel, m.offset, m.ts, m.data);
    let head = encode::decode_head(&frame).expect("a frame head");
    assert_eq!(
        &frame[head.head_len..],
        data,
        "the message re-encodes to its bytes"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_and_near_misses() {
        super::upstream(
            br#"{"type":"message","channel":"a:b","offset":1,"ts":2,"data":{"x":[1]}}"#,
        );
        super::upstream(br#"{"type":"message","channel":"a:b","offset":01,"ts":2,"data":1}"#);
        super::upstream(b"");
    }
}
