//! Wire formats: how one published message looks on one kind of connection.
//!
//! The hub moves neutral messages (channel, offset, ts, the publisher's verbatim JSON);
//! a [`Format`] turns one into the exact bytes a connection of that kind is written.
//! Every format's frame is built at most once per message, only when some subscriber of
//! the channel uses that format, and shared by all of them ([`Frames`]). Notices and
//! close frames are asked of the connection's format too, so the outbox and the hub never
//! build wire bytes of their own.
//!
//! | id | name | frames |
//! |---|---|---|
//! | 0 | `envelope` | protocol v1 text: `{"type":"message","channel":..,"offset":..,"ts":..,"data":..}` |
//! | 1 | `raw` | protocol v1 text: the publisher's `data` alone |
//! | 2 | `msgpack` | binary MessagePack: the envelope's fields, `data` transcoded |
//! | 3 | `centrifuge` | Centrifuge text: `{"push":{"channel":..,"pub":{"data":..,"offset":..}}}` |
//! | 4 | `sse` | Server-Sent Events (`GET /sse`): `id: <epoch>:<offset>` and the envelope ([`super::sse`]) |
//! | 5 | `aria` | ARIA PRO: `{"type":"tick","timestamp":iso,"data":..}` ([`super::seeds::aria`]) |
//! | 6 | `sentio` | Sentio 2.0: `{"type":"trade_signals","data":[..],"timestamp":iso}` ([`super::seeds::sentio`]) |
//! | 7 | `aitrading` | AI-Trading-V2: `{"type":"MARKET_UPDATE","symbol":..,"timestamp":ms,<data's members>}` ([`super::seeds::aitrading`]) |
//! | 8 | `legend` | Legend AI: `{"type":"price_update","ticker":..,"timestamp":iso,<data's members>}` ([`super::seeds::legend`]) |
//! | 9 | `socketio` | Socket.IO text: `42["market_update",{"<SYM>":..}]` and the other CRS events ([`super::socketio::crs`]) |
//!
//! A new format (a dialect's message template) is one more id here and one more arm in
//! each `match`. A compressed variant is not a format: a connection that negotiated
//! permessage-deflate takes its format's *deflated* frame, a second slot per format in
//! [`Frames`], built from the plain frame once per message and shared the same way
//! ([`super::deflate`]).

use bytes::Bytes;

use super::close::CloseCode;
use super::deflate::{self, Deflate};
use super::seeds::{aitrading, aria, legend, sentio};
use super::{centrifuge, encode, msgpack, socketio, sse};

/// A wire format's id (an index into per-format tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Format(u8);

impl Default for Format {
    /// Protocol v1's envelope.
    fn default() -> Self {
        Format::ENVELOPE
    }
}

/// One published message as every format sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The channel (a validated name).
    pub channel: &'a str,
    /// The channel's epoch (with `offset`, the message's position).
    pub epoch: &'a str,
    /// Its offset in the channel.
    pub offset: u64,
    /// Publish time, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The publisher's `data`: valid JSON, verbatim.
    pub data: &'a [u8],
}

impl Format {
    /// Protocol v1's envelope (the default).
    pub const ENVELOPE: Format = Format(0);
    /// Protocol v1's `format=raw`: the data alone.
    pub const RAW: Format = Format(1);
    /// MessagePack: the envelope's fields in a binary frame.
    pub const MSGPACK: Format = Format(2);
    /// The Centrifuge protocol's publication push (the data verbatim, line feeds as
    /// spaces).
    pub const CENTRIFUGE: Format = Format(3);
    /// Server-Sent Events: a message is an event whose id is its position.
    pub const SSE: Format = Format(4);
    /// ARIA PRO's `{"type":..,"timestamp":..,"data":..}` (the data wrapped).
    pub const ARIA: Format = Format(5);
    /// Sentio 2.0's `{"type":..,"data":..,"timestamp":..}` (arrays for signals, quotes).
    pub const SENTIO: Format = Format(6);
    /// AI-Trading-V2's flat upper-case frames (the data's members spliced in).
    pub const AITRADING: Format = Format(7);
    /// Legend AI's typed frames (the data's members spliced in).
    pub const LEGEND: Format = Format(8);
    /// Socket.IO: a message is a CRS event (`market_update`, `trading_signal`, ..).
    pub const SOCKETIO: Format = Format(9);
    /// How many formats there are (the length of per-format tables).
    pub const COUNT: usize = 10;
    /// Every format, by id.
    pub const ALL: [Format; Format::COUNT] = [
        Format::ENVELOPE,
        Format::RAW,
        Format::MSGPACK,
        Format::CENTRIFUGE,
        Format::SSE,
        Format::ARIA,
        Format::SENTIO,
        Format::AITRADING,
        Format::LEGEND,
        Format::SOCKETIO,
    ];

    /// The index of this format in per-format tables.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The name used in `?format=`, `/stats` and `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Format::RAW => "raw",
            Format::MSGPACK => "msgpack",
            Format::CENTRIFUGE => "centrifuge",
            Format::SSE => "sse",
            Format::ARIA => "aria",
            Format::SENTIO => "sentio",
            Format::AITRADING => "aitrading",
            Format::LEGEND => "legend",
            Format::SOCKETIO => "socketio",
            _ => "envelope",
        }
    }

    /// The format named `name` (as in `?format=`).
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether protocol v1 speaks it (`?format=` may name it).
    pub fn v1(self) -> bool {
        self <= Format::MSGPACK
    }

    /// Whether it is a seed platform's format (whose clients know no relay notices).
    pub fn seed(self) -> bool {
        Format::ARIA <= self && self <= Format::LEGEND
    }

    /// Whether its frames are binary (else text).
    pub fn binary(self) -> bool {
        self == Format::MSGPACK
    }

    /// Builds the frame of `m` in this format.
    pub fn message(self, m: &Message<'_>) -> Bytes {
        match self {
            Format::RAW => encode::raw_frame(m.data),
            Format::MSGPACK => msgpack::message_frame(m),
            Format::CENTRIFUGE => centrifuge::push_frame(m),
            Format::SSE => sse::message(m.channel, m.epoch, m.offset, m.ts, m.data),
            Format::ARIA => aria::message_frame(m),
            Format::SENTIO => sentio::message_frame(m),
            Format::AITRADING => aitrading::message_frame(m),
            Format::LEGEND => legend::message_frame(m),
            Format::SOCKETIO => socketio::crs::message_frame(m),
            _ => encode::message_frame(m.channel, m.offset, m.ts, m.data),
        }
    }

    /// The publisher's data inside `frame` (a frame of this format for a message whose
    /// data is `data_len` bytes), if this format embeds it verbatim: a slice sharing the
    /// frame's allocation.
    pub fn data_in(self, frame: &Bytes, data_len: usize) -> Option<Bytes> {
        let end = match self {
            // `...,"data":<data>}`
            Format::ENVELOPE => frame.len().checked_sub(1)?,
            // the payload is the data
            Format::RAW => frame.len(),
            _ => return None,
        };
        Some(frame.slice(end.checked_sub(data_len)?..end))
    }

    /// `lagging`: this connection has been getting only the newest of the channel's
    /// messages (`skipped` so far).
    pub fn lagging(self, channel: &str, skipped: u64) -> Bytes {
        if self.seed() {
            return Bytes::new(); // the platforms' front ends have no such message
        }
        self.notice(encode::lagging(channel, skipped))
    }

    /// `caught_up`: full flow again, `skipped` in all.
    pub fn caught_up(self, channel: &str, skipped: u64) -> Bytes {
        if self.seed() {
            return Bytes::new();
        }
        self.notice(encode::caught_up(channel, skipped))
    }

    /// `reset`: the channel's history was lost where it is kept; it now stands at
    /// `epoch`/`offset` (see [`encode::reset`]).
    pub fn reset(self, channel: &str, epoch: &str, offset: u64) -> Bytes {
        if self.seed() {
            return Bytes::new();
        }
        self.notice(encode::reset(channel, epoch, offset))
    }

    /// A v1 JSON notice or reply, in this format's framing (MessagePack transcodes it;
    /// Centrifuge clients take a message without `id` or `push` for a server ping, so a
    /// `lagging` notice reaches them as one).
    pub fn notice(self, json_frame: Bytes) -> Bytes {
        match self {
            Format::MSGPACK => msgpack::from_json_frame(&json_frame),
            Format::SSE => sse::notice(&json_frame),
            Format::SOCKETIO => socketio::notice(&json_frame),
            _ => json_frame,
        }
    }

    /// The frame that ends a connection of this format.
    pub fn close(self, code: CloseCode, reason: &str) -> Bytes {
        match self {
            Format::CENTRIFUGE => centrifuge::close_frame(code, reason),
            Format::SSE => sse::close(code.get(), reason),
            _ => encode::close_frame(code.get(), reason),
        }
    }
}

/// One message's frames: at most one per format, built on first use, then shared; and
/// beside each, its permessage-deflate encoding when some subscriber takes one.
#[derive(Debug, Default, Clone)]
pub struct Frames {
    slots: [Option<Bytes>; Format::COUNT],
    /// Compressed frames; an empty one: compressing was tried and gained nothing.
    deflated: [Option<Bytes>; Format::COUNT],
}

impl Frames {
    /// The frame of `format`, if built.
    #[inline]
    pub fn get(&self, format: Format) -> Option<&Bytes> {
        self.slots[format.index()].as_ref()
    }

    /// The compressed frame of `format`, if built and smaller than the plain one.
    #[inline]
    pub fn get_deflated(&self, format: Format) -> Option<&Bytes> {
        self.deflated[format.index()]
            .as_ref()
            .filter(|b| !b.is_empty())
    }

    /// The frame of `format`, building it from `m` if this is its first use. Returns the
    /// frame and whether it was built now.
    pub fn get_or_build(&mut self, format: Format, m: &Message<'_>) -> (&Bytes, bool) {
        let slot = &mut self.slots[format.index()];
        let built = slot.is_none();
        (slot.get_or_insert_with(|| format.message(m)), built)
    }

    /// Compresses the (built) frame of `format` unless done before or its payload is
    /// under `threshold` bytes. Returns whether a compression ran.
    pub fn deflate(&mut self, format: Format, threshold: usize) -> bool {
        let i = format.index();
        let Some(plain) = &self.slots[i] else {
            return false;
        };
        if self.deflated[i].is_some() || payload_len(plain) < threshold {
            return false;
        }
        self.deflated[i] = Some(deflate::compress_frame(plain).unwrap_or_default());
        true
    }

    /// What a subscriber of `format` that agreed `deflate` is sent: the compressed frame
    /// when there is one its window fits, else the plain one.
    #[inline]
    pub fn for_subscriber(&self, format: Format, deflate: Deflate) -> Option<&Bytes> {
        let plain = self.get(format)?;
        match self.get_deflated(format) {
            Some(z) if deflate.fits(payload_len(plain)) => Some(z),
            _ => Some(plain),
        }
    }
}

/// The payload length of a frame the relay built (its header is at most 10 bytes).
pub fn payload_len(frame: &[u8]) -> usize {
    encode::decode_head(frame).map_or(frame.len(), |h| h.len as usize)
}

/// How many subscribers use each format, and how many of those take it compressed (so
/// a publish builds and compresses only what is in use).
#[derive(Debug, Default, Clone, Copy)]
pub struct FormatCounts {
    plain: [u32; Format::COUNT],
    deflating: [u32; Format::COUNT],
}

impl FormatCounts {
    /// One more subscriber of `f` (`deflate`: that negotiated compression).
    pub fn add(&mut self, f: Format, deflate: bool) {
        self.plain[f.index()] += 1;
        self.deflating[f.index()] += deflate as u32;
    }

    /// One subscriber of `f` fewer.
    pub fn remove(&mut self, f: Format, deflate: bool) {
        let c = &mut self.plain[f.index()];
        *c = c.saturating_sub(1);
        let d = &mut self.deflating[f.index()];
        *d = d.saturating_sub(deflate as u32);
    }

    /// The formats that at least one subscriber uses.
    pub fn present(&self) -> impl Iterator<Item = Format> + '_ {
        Format::ALL
            .into_iter()
            .filter(|f| self.plain[f.index()] > 0)
    }

    /// The formats that at least one compressing subscriber uses.
    pub fn deflating(&self) -> impl Iterator<Item = Format> + '_ {
        Format::ALL
            .into_iter()
            .filter(|f| self.deflating[f.index()] > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ids_index_the_tables() {
        let mut seen = std::collections::HashSet::new();
        for f in Format::ALL {
            assert!(f.index() < Format::COUNT && seen.insert(f.index()));
            assert_eq!(Format::from_name(f.name()), Some(f));
        }
        assert_eq!(Format::from_name("xml"), None);
    }

    #[test]
    fn frames_are_built_once_per_format() {
        let m = Message {
            channel: "ticker:A",
            epoch: "abcd1234",
            offset: 3,
            ts: 9,
            data: br#"{"p":1}"#,
        };
        let mut frames = Frames::default();
        let (a, built) = frames.get_or_build(Format::RAW, &m);
        let a = a.clone();
        assert!(built);
        let (b, built) = frames.get_or_build(Format::RAW, &m);
        assert!(!built);
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same shared bytes");
        assert!(frames.get(Format::ENVELOPE).is_none());
        let (env, _) = frames.get_or_build(Format::ENVELOPE, &m);
        let env = env.clone();
        for (f, frame) in [(Format::ENVELOPE, &env), (Format::RAW, &a)] {
            assert_eq!(&f.data_in(frame, m.data.len()).unwrap()[..], m.data);
        }
        assert!(Format::MSGPACK.data_in(&env, 3).is_none());
    }

    #[test]
    fn the_deflated_frame_is_built_once_and_only_above_the_threshold() {
        let data =
            br#"{"price":43250.5,"bid":43250.0,"ask":43251.0,"volume":1234.5,"venue":"demo"}"#;
        let m = Message {
            channel: "ticker:BTC-USD",
            epoch: "abcd1234",
            offset: 3,
            ts: 9,
            data,
        };
        let mut frames = Frames::default();
        assert!(!frames.deflate(Format::ENVELOPE, 0), "no plain frame yet");
        let plain = frames.get_or_build(Format::ENVELOPE, &m).0.clone();
        assert!(
            !frames.deflate(Format::ENVELOPE, plain.len()),
            "under the threshold"
        );
        assert!(frames.deflate(Format::ENVELOPE, 64));
        assert!(!frames.deflate(Format::ENVELOPE, 64), "once");
        let z = frames.get_deflated(Format::ENVELOPE).unwrap().clone();
        assert!(z.len() < plain.len());
        let wide = frames.for_subscriber(Format::ENVELOPE, Deflate::with_window(15));
        assert_eq!(wide.map(|b| b.as_ptr()), Some(z.as_ptr()), "shared");
        let narrow = frames.for_subscriber(Format::ENVELOPE, Deflate::with_window(8));
        assert_eq!(narrow, Some(&z), "the payload fits 256 bytes");
        assert_eq!(
            frames.for_subscriber(Format::ENVELOPE, Deflate::OFF),
            Some(&plain)
        );
        assert_eq!(frames.for_subscriber(Format::RAW, Deflate::OFF), None);
    }

    #[test]
    fn counts_say_which_formats_are_present() {
        let mut c = FormatCounts::default();
        c.add(Format::MSGPACK, false);
        c.add(Format::MSGPACK, true);
        c.add(Format::ENVELOPE, false);
        assert_eq!(c.deflating().collect::<Vec<_>>(), vec![Format::MSGPACK]);
        c.remove(Format::MSGPACK, false);
        assert_eq!(
            c.present().collect::<Vec<_>>(),
            vec![Format::ENVELOPE, Format::MSGPACK]
        );
        c.remove(Format::MSGPACK, true);
        c.remove(Format::MSGPACK, false);
        assert_eq!(c.present().collect::<Vec<_>>(), vec![Format::ENVELOPE]);
        assert_eq!(c.deflating().count(), 0);
    }
}
