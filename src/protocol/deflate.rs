//! permessage-deflate (RFC 7692), kept pure: the upgrade's negotiation, a relay frame
//! compressed once, and client messages inflated within a bound. No I/O.
//!
//! The relay always answers `server_no_context_takeover`: every message is compressed
//! on its own, so one compressed frame is correct for every subscriber and is built at
//! most once per message per format ([`super::format::Frames`]), like the plain frame.
//! It also asks `client_no_context_takeover`, so a connection keeps no inflate state
//! between messages: an idle compressing connection costs nothing extra.
//!
//! The compressor's window is 32 KiB (15 bits). A client that asks for a smaller
//! `server_max_window_bits` is sent compressed only the messages no longer than its
//! window (no back-reference can then reach further); longer ones go uncompressed, which
//! RFC 7692 allows per message. `client_max_window_bits` needs nothing of the relay: its
//! inflater takes any window up to 15 bits, so the client may use what it offered.
//!
//! Compression uses `flate2`'s raw deflate (its pure-Rust miniz_oxide backend).

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use super::close::{CloseCode, Fail};
use super::encode::{self, FrameBuf};

/// The RSV1 bit of a frame's first byte: "this message is compressed".
pub const RSV1: u8 = 0x40;
/// The relay compressor's window, in bits (32 KiB).
pub const MAX_WINDOW_BITS: u8 = 15;
/// Payload size from which messages are compressed by default (`--deflate on`).
pub const DEFAULT_THRESHOLD: usize = 128;
/// The four bytes a sync flush ends with, removed from each message (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Whether and from which size messages are compressed: `off`, `on` (from
/// [`DEFAULT_THRESHOLD`] bytes) or a threshold in bytes. For `--deflate` and a
/// namespace's `deflate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting(Option<usize>);

impl Default for Setting {
    fn default() -> Self {
        Setting(Some(DEFAULT_THRESHOLD))
    }
}

impl Setting {
    /// Never compress.
    pub const OFF: Setting = Setting(None);

    /// Compress payloads of at least `bytes`.
    pub fn from_bytes(bytes: usize) -> Setting {
        Setting(Some(bytes))
    }

    /// The smallest payload compressed, unless off.
    pub fn threshold(self) -> Option<usize> {
        self.0
    }
}

impl FromStr for Setting {
    type Err = String;
    fn from_str(s: &str) -> Result<Setting, String> {
        match s {
            "off" => Ok(Setting::OFF),
            "on" => Ok(Setting::default()),
            n => n
                .parse()
                .map(Setting::from_bytes)
                .map_err(|_| format!("deflate must be off, on or a size in bytes, not {n:?}")),
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(n) => write!(f, "{n}"),
        }
    }
}

/// What one connection agreed at the upgrade: off, or on with the window its
/// compressed frames may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deflate(u8);

impl Deflate {
    /// Not negotiated.
    pub const OFF: Deflate = Deflate(0);

    /// Negotiated, frames limited to a window of `bits` (8..=15).
    pub fn with_window(bits: u8) -> Deflate {
        Deflate(bits.clamp(8, MAX_WINDOW_BITS))
    }

    /// Whether the connection takes compressed messages (and may send them).
    #[inline]
    pub fn on(self) -> bool {
        self.0 != 0
    }

    /// Whether a frame compressed from a payload of `plain_len` bytes may be sent here:
    /// the relay's window is 32 KiB, so a smaller window fits only a payload no longer
    /// than itself.
    #[inline]
    pub fn fits(self, plain_len: usize) -> bool {
        self.0 == MAX_WINDOW_BITS || (self.0 != 0 && plain_len <= 1 << self.0)
    }
}

/// The upgrade's outcome: the connection's setting and the `Sec-WebSocket-Extensions`
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// What the connection agreed.
    pub deflate: Deflate,
    /// The response header's value.
    pub response: String,
}

/// Picks the first acceptable permessage-deflate offer among the values of the request's
/// `Sec-WebSocket-Extensions` headers; `None` if there is none (the connection then
/// runs uncompressed).
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Agreement> {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .find_map(accept_offer)
}

/// One offer (`permessage-deflate; param[=value]; ...`), accepted or declined.
fn accept_offer(offer: &str) -> Option<Agreement> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut seen = [false; 4];
    let mut window = MAX_WINDOW_BITS;
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        let bits = |v: Option<&str>| {
            v.and_then(|v| v.parse::<u8>().ok())
                .filter(|b| (8..=15).contains(b))
        };
        let i = match name {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                window = bits(value)?;
                2
            }
            // Without a value the client only says it could honour one; with one, it
            // must be a valid size (the inflater takes any).
            "client_max_window_bits" if value.is_none() || bits(value).is_some() => 3,
            _ => return None, // unknown parameter or bad value: decline this offer
        };
        if std::mem::replace(&mut seen[i], true) {
            return None; // a parameter twice
        }
    }
    let mut response =
        String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    if window < MAX_WINDOW_BITS {
        response.push_str(&format!("; server_max_window_bits={window}"));
    }
    Some(Agreement {
        deflate: Deflate::with_window(window),
        response,
    })
}

thread_local! {
    /// One compressor per thread, reset for every message (no context takeover): no
    /// allocation per message.
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), false));
}

/// The compressed form of `frame` (a complete unmasked FIN frame the relay built): the
/// same opcode with RSV1 set. `None` when compressing would not make it smaller.
pub fn compress_frame(frame: &[u8]) -> Option<Bytes> {
    let head = encode::decode_head(frame)?;
    let payload = frame.get(head.head_len..)?;
    let mut out = FrameBuf::with_capacity(payload.len() / 2 + 16);
    COMPRESSOR.with_borrow_mut(|c| {
        c.reset();
        deflate_into(c, payload, out.payload())
    })?;
    let body = out.payload();
    if !body.ends_with(&TAIL) {
        return None;
    }
    body.truncate(body.len() - TAIL.len());
    let compressed = out.finish(RSV1 | head.opcode);
    (compressed.len() < frame.len()).then_some(compressed)
}

fn deflate_into(c: &mut Compress, mut input: &[u8], out: &mut Vec<u8>) -> Option<()> {
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        let before = c.total_in();
        c.compress_vec(input, out, FlushCompress::Sync).ok()?;
        input = &input[(c.total_in() - before) as usize..];
        // Done when all input is in and the flush left room to spare.
        if input.is_empty() && out.capacity() - out.len() >= 64 {
            return Some(());
        }
    }
}

/// Inflates one compressed message, frame by frame, into a buffer that never grows past
/// the message size limit (plus one byte, to see that the limit was passed).
pub struct Inflater {
    d: Box<Decompress>,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Inflater")
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            d: Box::new(Decompress::new(false)),
        }
    }
}

impl Inflater {
    /// Forgets the previous message (no context takeover), keeping the allocation.
    pub fn reset(&mut self) {
        self.d.reset(false);
    }

    /// Inflates `input` (one frame's compressed payload) onto `out`; `last`: the
    /// message's final frame (the removed sync-flush tail is fed after it). Fails with
    /// 1009 as soon as `out` would hold more than `max` bytes, 1007 on corrupt data.
    pub fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), Fail> {
        self.run(input, out, max, FlushDecompress::None)?;
        if last {
            self.run(&TAIL, out, max, FlushDecompress::Sync)?;
        }
        Ok(())
    }

    fn run(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
        flush: FlushDecompress,
    ) -> Result<(), Fail> {
        const TOO_BIG: Fail = (CloseCode::TOO_BIG, "message too big");
        const CORRUPT: Fail = (CloseCode::INVALID_DATA, "invalid compressed data");
        loop {
            if out.len() == out.capacity() {
                // Grow geometrically, but never past the limit (+1 to detect it).
                let cap = (out.capacity() * 2).max(1024).min(max.saturating_add(1));
                if cap <= out.len() {
                    return Err(TOO_BIG);
                }
                out.reserve_exact(cap - out.len());
            }
            let (in0, out0) = (self.d.total_in(), self.d.total_out());
            let status = self
                .d
                .decompress_vec(input, out, flush)
                .map_err(|_| CORRUPT)?;
            if out.len() > max {
                return Err(TOO_BIG);
            }
            let used = (self.d.total_in() - in0) as usize;
            input = &input[used..];
            let progress = used > 0 || self.d.total_out() > out0;
            let room = out.len() < out.capacity();
            match status {
                // A final block: nothing more may follow in this message.
                Status::StreamEnd if input.is_empty() => return Ok(()),
                Status::StreamEnd => return Err(CORRUPT),
                _ if input.is_empty() && room => return Ok(()),
                _ if !progress && room => return Err(CORRUPT),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
