//! The `frame_encode` target: every frame `protocol::encode` builds, decoded again.

use super::{oracle_head, Input};
use crate::error::ErrorCode;
use crate::protocol::command::{self, Id};
use crate::protocol::{channel, encode};

/// Checks one frame built by `encode`: a single FIN, unmasked frame holding `payload`.
fn check_frame(f: &[u8], opcode: u8, payload: Option<&[u8]>) -> Vec<u8> {
    let (fin, rsv, op, masked, len, n) = oracle_head(f).expect("a whole header");
    assert!(fin && rsv == 0 && !masked, "FIN, no RSV bits, unmasked");
    assert_eq!(op, opcode);
    assert_eq!(
        n as u64 + len,
        f.len() as u64,
        "length field is the payload length"
    );
    let h = encode::decode_head(f).expect("decode_head reads it too");
    assert_eq!(
        (h.fin, h.opcode, h.masked, h.len, h.head_len),
        (fin, op, masked, len, n),
        "decode_head agrees"
    );
    if let Some(p) = payload {
        assert_eq!(&f[n..], p, "payload verbatim");
    }
    f[n..].to_vec()
}

/// Arbitrary (kind, channel, payload, offset): a frame built once by `encode` decodes to
/// the exact length, opcode and FIN, with the payload where it belongs. Payload lengths
/// reach past 65536 by repeating the input, so every header size is exercised.
pub fn frame_encode(data: &[u8]) {
    let mut inp = Input(data);
    let kind = inp.byte();
    let offset = inp.u64(8);
    let ts = inp.u64(8);
    let chan_len = inp.byte() as usize;
    let chan = inp.take(chan_len);
    let len_sel = inp.u64(3) as usize;
    let len = match kind >> 6 {
        0 => len_sel % 256,               // around 125/126
        1 => 65_536 - 64 + len_sel % 128, // around 65535/65536
        2 => len_sel % 70_000,            // anything up to past 65536
        _ => inp.0.len(),                 // the rest of the input as is
    };
    let seed = if inp.0.is_empty() { &[0u8][..] } else { inp.0 };
    // Doubling copies: a per-byte loop over 70 000 bytes is slow under ASan.
    let mut payload = Vec::with_capacity(len.max(seed.len()));
    payload.extend_from_slice(seed);
    while payload.len() < len {
        payload.extend_from_within(..payload.len().min(len - payload.len()));
    }
    payload.truncate(len);
    let channel = channel::validate(chan).unwrap_or("ticker:BTC-USD");

    match kind & 7 {
        0 => {
            let op = (kind >> 3) & 0x0f;
            check_frame(&encode::frame(op, &payload), op, Some(&payload));
        }
        1 => {
            check_frame(
                &encode::raw_frame(&payload),
                encode::OP_TEXT,
                Some(&payload),
            );
        }
        2 => {
            let p = check_frame(
                &encode::message_frame(channel, offset, ts, &payload),
                encode::OP_TEXT,
                None,
            );
            let mut want = format!(
                r#"{{"type":"message","channel":"{channel}","offset":{offset},"ts":{ts},"data":"#
            )
            .into_bytes();
            want.extend_from_slice(&payload);
            want.push(b'}');
            assert_eq!(p, want);
        }
        3 => {
            let code = offset as u16;
            let reason = String::from_utf8_lossy(&payload);
            let p = check_frame(&encode::close_frame(code, &reason), encode::OP_CLOSE, None);
            assert!(p.len() <= 125, "control payload over 125");
            assert_eq!(p[..2], code.to_be_bytes());
            let r = std::str::from_utf8(&p[2..]).expect("reason is UTF-8");
            assert!(reason.starts_with(r));
            assert!(
                r.len() == reason.len() || r.len() + 4 > 123,
                "cut only to fit"
            );
        }
        4 => {
            let p = check_frame(
                &encode::frame(encode::OP_PONG, &payload),
                encode::OP_PONG,
                None,
            );
            assert_eq!(p, payload);
        }
        _ => {
            // Replies: always one JSON document, whatever the id and message.
            let id = match kind & 8 {
                0 => Some(Id::from_u64(offset)),
                _ => None,
            };
            let message = String::from_utf8_lossy(&payload);
            let frames = [
                encode::error(id.as_ref(), ErrorCode::BadRequest, &message),
                encode::published(id.as_ref(), channel, "k3f9ab2x", offset),
                encode::pong(id.as_ref()),
                encode::unsubscribed(id.as_ref(), &[channel, channel]),
                encode::welcome(offset, ts),
                encode::subscribed(
                    id.as_ref(),
                    &[encode::SubscribedChannel {
                        channel,
                        epoch: "k3f9",
                        offset,
                        recovered: Some(offset % 2 == 0),
                    }],
                ),
            ];
            for f in frames {
                let mut p = check_frame(&f, encode::OP_TEXT, None);
                assert!(
                    command::validate_json(&mut p),
                    "reply {:?} is not JSON",
                    String::from_utf8_lossy(&f)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_sample() {
        frame_encode(&[0x42; 40]);
    }
}
