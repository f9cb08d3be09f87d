//! Message reassembly with the limits fastwebsockets leaves to us. Pure, no I/O.
//!
//! fastwebsockets checks each *frame* against the size limit before allocating for it
//! and validates complete (FIN) text frames, but its fragment collector grows without
//! bound and checks UTF-8 only at the end. This reassembler bounds the whole *message*
//! (RFC 6455 close 1009) and validates UTF-8 as fragments arrive, so invalid text fails
//! fast (close 1007) instead of after the last fragment.
//!
//! A compressed message (permessage-deflate) is inflated here as its frames arrive, into
//! the same buffer and under the same bound: the inflater never holds more than the
//! limit, so a small frame that would inflate to gigabytes (a zip bomb) is closed with
//! 1009 having cost at most the limit. Its inflate state lives only while the message
//! does (the relay asks `client_no_context_takeover`).

/// A reason to fail the connection: RFC 6455 close code and a short reason.
use crate::protocol::close::CloseCode;
pub use crate::protocol::close::Fail;
use crate::protocol::deflate::Inflater;

/// What a data frame contributed.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The frame was a whole message on its own: use its payload as is.
    Whole {
        /// Text (true) or binary.
        text: bool,
    },
    /// The frame completed a fragmented message.
    Assembled {
        /// Text (true) or binary.
        text: bool,
        /// The reassembled payload.
        payload: Vec<u8>,
    },
    /// More fragments are expected.
    More,
}

/// Frame opcodes as the reassembler sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOp {
    /// First frame of a text message.
    Text,
    /// First frame of a binary message.
    Binary,
    /// A continuation frame.
    Continuation,
}

/// Reassembles fragmented messages.
#[derive(Debug)]
pub struct Reassembler {
    max: usize,
    /// `Some(is_text)` while a fragmented message is in progress.
    open: Option<bool>,
    buf: Vec<u8>,
    /// Bytes of `buf` known to be valid UTF-8 (text messages).
    valid: usize,
    /// The message in progress is compressed: its inflater.
    inflater: Option<Inflater>,
}

impl Reassembler {
    /// A reassembler for messages of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Reassembler {
            max,
            open: None,
            buf: Vec::new(),
            valid: 0,
            inflater: None,
        }
    }

    /// Feeds one data frame of a message that may be compressed (`compressed`: its first
    /// frame had RSV1). Complete text payloads are valid UTF-8.
    pub fn push_frame(
        &mut self,
        fin: bool,
        op: DataOp,
        payload: &[u8],
        compressed: bool,
    ) -> Result<Step, Fail> {
        if compressed && op != DataOp::Continuation {
            if self.open.is_some() {
                return Err((
                    CloseCode::PROTOCOL,
                    "new message before the fragmented one ended",
                ));
            }
            self.open = Some(op == DataOp::Text);
            self.buf = Vec::new();
            self.valid = 0;
            self.inflater = Some(Inflater::default());
        }
        let Some(inflater) = self.inflater.as_mut() else {
            return self.push(fin, op, payload);
        };
        if op != DataOp::Continuation && !compressed {
            return Err((
                CloseCode::PROTOCOL,
                "new message before the fragmented one ended",
            ));
        }
        let grown = inflater.inflate(payload, fin, &mut self.buf, self.max);
        let checked = grown.and_then(|()| self.check_utf8());
        if let Err(f) = checked {
            self.abandon();
            return Err(f);
        }
        if !fin {
            return Ok(Step::More);
        }
        let text = self.open == Some(true);
        let ends_inside = text && self.valid != self.buf.len();
        let payload = std::mem::take(&mut self.buf);
        self.abandon();
        if ends_inside {
            return Err((
                CloseCode::INVALID_DATA,
                "text message ends inside a UTF-8 sequence",
            ));
        }
        Ok(Step::Assembled { text, payload })
    }

    /// Whether a compressed message is in progress.
    pub fn inflating(&self) -> bool {
        self.inflater.is_some()
    }

    fn abandon(&mut self) {
        self.open = None;
        self.inflater = None;
        self.buf = Vec::new();
        self.valid = 0;
    }

    /// Feeds one data frame. Complete text payloads are valid UTF-8.
    pub fn push(&mut self, fin: bool, op: DataOp, payload: &[u8]) -> Result<Step, Fail> {
        match op {
            DataOp::Text | DataOp::Binary => {
                if self.open.is_some() {
                    return Err((
                        CloseCode::PROTOCOL,
                        "new message before the fragmented one ended",
                    ));
                }
                let text = op == DataOp::Text;
                if payload.len() > self.max {
                    return Err((CloseCode::TOO_BIG, "message too big"));
                }
                if fin {
                    if text && std::str::from_utf8(payload).is_err() {
                        return Err((CloseCode::INVALID_DATA, "invalid UTF-8 in text message"));
                    }
                    return Ok(Step::Whole { text });
                }
                self.open = Some(text);
                self.buf.clear();
                self.valid = 0;
                self.append(payload)?;
                Ok(Step::More)
            }
            DataOp::Continuation => {
                let Some(text) = self.open else {
                    return Err((
                        CloseCode::PROTOCOL,
                        "continuation frame without a message to continue",
                    ));
                };
                self.append(payload)?;
                if !fin {
                    return Ok(Step::More);
                }
                self.open = None;
                if text && self.valid != self.buf.len() {
                    return Err((
                        CloseCode::INVALID_DATA,
                        "text message ends inside a UTF-8 sequence",
                    ));
                }
                Ok(Step::Assembled {
                    text,
                    payload: std::mem::take(&mut self.buf),
                })
            }
        }
    }

    fn append(&mut self, payload: &[u8]) -> Result<(), Fail> {
        if self.buf.len() + payload.len() > self.max {
            return Err((CloseCode::TOO_BIG, "message too big"));
        }
        self.buf.extend_from_slice(payload);
        self.check_utf8()
    }

    /// Checks the bytes of a text message added since the last check.
    fn check_utf8(&mut self) -> Result<(), Fail> {
        if self.open == Some(true) {
            match std::str::from_utf8(&self.buf[self.valid..]) {
                Ok(_) => self.valid = self.buf.len(),
                // An incomplete sequence at the end may be finished by the next fragment.
                Err(e) if e.error_len().is_none() => self.valid += e.valid_up_to(),
                Err(_) => return Err((CloseCode::INVALID_DATA, "invalid UTF-8 in text message")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataOp::*;

    #[test]
    fn whole_and_fragmented_messages() {
        let mut r = Reassembler::new(10);
        assert_eq!(r.push(true, Text, b"hi"), Ok(Step::Whole { text: true }));
        assert_eq!(r.push(false, Text, b"ab"), Ok(Step::More));
        assert_eq!(r.push(false, Continuation, b""), Ok(Step::More));
        assert_eq!(
            r.push(true, Continuation, b"cd"),
            Ok(Step::Assembled {
                text: true,
                payload: b"abcd".to_vec()
            })
        );
        assert_eq!(
            r.push(true, Binary, &[0xff]),
            Ok(Step::Whole { text: false })
        );
    }

    #[test]
    fn utf8_split_across_fragments_is_fine_and_invalid_fails_fast() {
        let euro = "€".as_bytes(); // e2 82 ac
        let mut r = Reassembler::new(100);
        assert_eq!(r.push(false, Text, &euro[..1]), Ok(Step::More));
        assert_eq!(r.push(false, Continuation, &euro[1..2]), Ok(Step::More));
        assert!(matches!(
            r.push(true, Continuation, &euro[2..]),
            Ok(Step::Assembled { .. })
        ));

        let mut r = Reassembler::new(100);
        assert_eq!(r.push(false, Text, b"ok"), Ok(Step::More));
        assert_eq!(
            r.push(false, Continuation, &[0xff]).unwrap_err().0,
            CloseCode(1007),
            "fails before FIN"
        );

        let mut r = Reassembler::new(100);
        r.push(false, Text, &euro[..2]).unwrap();
        assert_eq!(
            r.push(true, Continuation, b"").unwrap_err().0,
            CloseCode(1007)
        );
        assert_eq!(
            Reassembler::new(9).push(true, Text, &[0xc3]).unwrap_err().0,
            CloseCode(1007)
        );
    }

    #[test]
    fn the_size_limit_is_exact_over_all_fragments() {
        let mut r = Reassembler::new(4);
        assert_eq!(
            r.push(true, Binary, b"1234"),
            Ok(Step::Whole { text: false })
        );
        assert_eq!(
            r.push(true, Binary, b"12345").unwrap_err().0,
            CloseCode(1009)
        );
        r.push(false, Binary, b"12").unwrap();
        assert!(r.push(true, Continuation, b"34").is_ok());
        r.push(false, Binary, b"12").unwrap();
        r.push(false, Continuation, b"3").unwrap();
        assert_eq!(
            r.push(true, Continuation, b"45").unwrap_err().0,
            CloseCode(1009)
        );
    }

    /// `text` deflated the way a client sends it (sync flush, its tail removed).
    fn compressed(text: &[u8]) -> Vec<u8> {
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        let mut out = Vec::with_capacity(text.len() + 64);
        c.compress_vec(text, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn compressed_messages_whole_fragmented_and_between_plain_ones() {
        let json = br#"{"op":"publish","channel":"ticker:A","data":{"p":1,"q":1,"r":1,"s":1}}"#;
        let z = compressed(json);
        let mut r = Reassembler::new(1000);
        let whole = r.push_frame(true, Text, &z, true).unwrap();
        assert_eq!(
            whole,
            Step::Assembled {
                text: true,
                payload: json.to_vec()
            }
        );
        assert_eq!(
            r.push_frame(true, Text, b"hi", false),
            Ok(Step::Whole { text: true })
        );
        let (a, b) = z.split_at(5);
        assert_eq!(r.push_frame(false, Binary, a, true), Ok(Step::More));
        assert_eq!(
            r.push_frame(false, Text, b"x", false).unwrap_err().0,
            CloseCode(1002),
            "a new message inside a compressed one"
        );
        let mut r = Reassembler::new(1000);
        r.push_frame(false, Binary, a, true).unwrap();
        assert_eq!(
            r.push_frame(true, Continuation, b, false),
            Ok(Step::Assembled {
                text: false,
                payload: json.to_vec()
            })
        );
        assert!(r.inflater.is_none(), "no inflate state between messages");
    }

    #[test]
    fn compressed_messages_keep_the_size_limit_and_utf8_checks() {
        let big = "x".repeat(5000);
        let mut r = Reassembler::new(4999);
        let e = r.push_frame(true, Text, &compressed(big.as_bytes()), true);
        assert_eq!(e.unwrap_err().0, CloseCode(1009));
        assert!(r.buf.capacity() <= 5000);
        let mut r = Reassembler::new(9999);
        let bad = compressed(
            &[b'a'; 200]
                .iter()
                .chain(&[0xff])
                .copied()
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            r.push_frame(true, Text, &bad, true).unwrap_err().0,
            CloseCode(1007)
        );
        // The same bytes as binary are fine.
        assert!(r.push_frame(true, Binary, &bad, true).is_ok());
    }

    #[test]
    fn fragment_order_violations_are_protocol_errors() {
        assert_eq!(
            Reassembler::new(9)
                .push(true, Continuation, b"x")
                .unwrap_err()
                .0,
            CloseCode(1002)
        );
        let mut r = Reassembler::new(9);
        r.push(false, Text, b"a").unwrap();
        assert_eq!(r.push(true, Text, b"b").unwrap_err().0, CloseCode(1002));
    }
}
