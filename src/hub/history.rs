//! A channel's history: the last N messages, kept neutral (offset, ts, the publisher's
//! verbatim data) with the frames fan-out already built for them.
//!
//! Replay and last-value delivery push clones of those `Bytes`: no serialization, no
//! copy. A format that no subscriber used at publish time is built on first replay and
//! kept (and counted) like the others, so any format can be served without re-parsing.
//! The data shares the allocation of a frame that embeds it verbatim (the v1 envelope or
//! raw frame) and is then not counted twice. Memory is bounded three ways: N per channel
//! (per namespace), an optional age (TTL), and a relay-wide byte budget ([`Budget`]).
//! Past the budget, the channel that is publishing forgets its own oldest messages first,
//! down to its newest one (the last value); if that is not enough, the hub trims every
//! channel, oldest history first, to its last value, and then forgets the stalest last
//! values (see `hub::evict`). Every message forgotten for space or age is counted as an
//! eviction.

use bytes::Bytes;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::protocol::deflate::{self, Deflate};
use crate::protocol::format::{Format, Frames, Message};

/// Bytes an entry costs beyond its frame (the ring slot and the `Bytes` handle).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>();

/// The relay-wide history byte budget and its counters.
#[derive(Debug)]
pub struct Budget {
    /// Bytes held by every channel's history (gauge).
    pub bytes: AtomicU64,
    /// Messages forgotten for space or age.
    pub evictions: AtomicU64,
    /// The cap on `bytes`.
    pub max: u64,
    /// Held by the one thread trimming all channels (see `hub::evict`).
    pub(crate) sweeping: parking_lot::Mutex<()>,
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Self {
        Budget {
            bytes: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            max: max as u64,
            sweeping: parking_lot::Mutex::new(()),
        }
    }

    /// Whether all history together holds more than the cap.
    pub(crate) fn over(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) > self.max
    }

    /// Where a relay-wide trim stops: an eighth under the cap, so that trims are rare.
    pub(crate) fn target(&self) -> u64 {
        self.max - self.max / 8
    }
}

/// One kept message.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The message's offset.
    pub offset: u64,
    /// When it was kept (for the TTL).
    pub at: Instant,
    /// Publish time, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The publisher's `data`, verbatim.
    pub data: Bytes,
    /// The frames built for this message so far, by format (plain, or compressed:
    /// `true`; an empty compressed frame: compressing gained nothing).
    frames: SmallVec<[(Format, bool, Bytes); 1]>,
    /// `data` lies inside one of `frames` (one allocation, counted once).
    data_shared: bool,
}

impl Entry {
    /// A kept message with the frames its publish built (`data` is copied only if no
    /// frame embeds it).
    pub fn new(offset: u64, at: Instant, ts: u64, data: &[u8], built: &Frames) -> Entry {
        let mut frames = SmallVec::new();
        let mut shared = None;
        for f in Format::ALL {
            if let Some(frame) = built.get(f) {
                if shared.is_none() {
                    shared = f.data_in(frame, data.len());
                }
                frames.push((f, false, frame.clone()));
            }
            if let Some(z) = built.get_deflated(f) {
                frames.push((f, true, z.clone()));
            }
        }
        Entry {
            offset,
            at,
            ts,
            data_shared: shared.is_some(),
            data: shared.unwrap_or_else(|| Bytes::copy_from_slice(data)),
            frames,
        }
    }

    fn cost(&self) -> usize {
        let frames: usize = self.frames.iter().map(|(_, _, b)| b.len()).sum();
        frames + if self.data_shared { 0 } else { self.data.len() } + ENTRY_OVERHEAD
    }

    /// The message as every format sees it (`epoch`: its channel's).
    pub fn message<'a>(&'a self, channel: &'a str, epoch: &'a str) -> Message<'a> {
        Message {
            channel,
            epoch,
            offset: self.offset,
            ts: self.ts,
            data: &self.data,
        }
    }

    /// The frame of `format`, if built.
    pub fn frame(&self, format: Format) -> Option<&Bytes> {
        self.encoded(format, false)
    }

    fn encoded(&self, format: Format, deflated: bool) -> Option<&Bytes> {
        self.frames
            .iter()
            .find(|(f, z, _)| *f == format && *z == deflated)
            .map(|(_, _, b)| b)
    }
}

/// A channel's ring.
#[derive(Debug)]
pub struct History {
    ring: VecDeque<Entry>,
    cap: usize,
    ttl: Option<Duration>,
    bytes: usize,
}

/// What a subscriber asked to recover from, checked against the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Nothing was missed.
    UpToDate,
    /// Every missed message is in the ring, from this index on.
    From(usize),
    /// Some missed message is gone (or the offset is from the future).
    Gap,
}

impl History {
    /// A ring keeping `cap` messages (0: none) for at most `ttl`.
    pub fn new(cap: usize, ttl: Option<Duration>) -> Self {
        History {
            ring: VecDeque::new(),
            cap,
            ttl,
            bytes: 0,
        }
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Bytes held (frames plus per-entry overhead).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn pop_oldest(&mut self, budget: &Budget) {
        if let Some(e) = self.ring.pop_front() {
            let c = e.cost();
            self.bytes -= c;
            budget.bytes.fetch_sub(c as u64, Ordering::Relaxed);
        }
    }

    /// Whether this ring keeps anything (a capacity of 0 keeps nothing).
    pub fn keeps(&self) -> bool {
        self.cap > 0
    }

    /// Keeps a new message, forgetting the oldest past the cap or the budget.
    pub fn push(&mut self, entry: Entry, budget: &Budget) {
        if self.cap == 0 {
            return;
        }
        let c = entry.cost();
        self.bytes += c;
        budget.bytes.fetch_add(c as u64, Ordering::Relaxed);
        self.ring.push_back(entry);
        while self.ring.len() > self.cap {
            // Rolling off the end of the ring is the ring working, not an eviction.
            self.pop_oldest(budget);
        }
        while self.ring.len() > 1 && budget.over() {
            self.pop_oldest(budget);
            budget.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets messages older than the TTL. Returns how many.
    pub fn expire(&mut self, now: Instant, budget: &Budget) -> usize {
        let Some(ttl) = self.ttl else { return 0 };
        let mut n = 0;
        while self
            .ring
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.at) > ttl)
        {
            self.pop_oldest(budget);
            n += 1;
        }
        budget.evictions.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// When the oldest held message was kept.
    pub fn oldest_at(&self) -> Option<Instant> {
        self.ring.front().map(|e| e.at)
    }

    /// Forgets the oldest messages while more than `keep` are held and all history holds
    /// more than `target` bytes; counts them as evictions.
    pub fn evict_to(&mut self, keep: usize, target: u64, budget: &Budget) {
        let mut n = 0;
        while self.ring.len() > keep && budget.bytes.load(Ordering::Relaxed) > target {
            self.pop_oldest(budget);
            n += 1;
        }
        budget.evictions.fetch_add(n, Ordering::Relaxed);
    }

    /// Forgets everything (the channel is being reclaimed).
    pub fn clear(&mut self, budget: &Budget) {
        budget.bytes.fetch_sub(self.bytes as u64, Ordering::Relaxed);
        self.bytes = 0;
        self.ring = VecDeque::new();
    }

    /// The newest message.
    pub fn newest(&self) -> Option<&Entry> {
        self.ring.back()
    }

    /// Whether every message after `offset`, up to `newest_offset` (the channel's), is
    /// still held.
    pub fn coverage(&self, offset: u64, newest_offset: u64) -> Coverage {
        if offset == newest_offset {
            return Coverage::UpToDate;
        }
        if offset > newest_offset {
            return Coverage::Gap;
        }
        match self.ring.front() {
            // Offsets in the ring are contiguous and end at `newest_offset`.
            Some(first) if first.offset <= offset + 1 => {
                Coverage::From((offset + 1 - first.offset) as usize)
            }
            _ => Coverage::Gap,
        }
    }

    /// The frame of `format` for the message at ring index `i`, built from the neutral
    /// message and kept if no publish or replay built it before (then `built.0` is true).
    /// With `deflate` (the subscriber's agreement and the channel's threshold), its
    /// compressed form where that applies, likewise compressed once and kept (then
    /// `built.1` is true).
    pub fn frame_at(
        &mut self,
        i: usize,
        format: Format,
        deflate: Option<(Deflate, usize)>,
        (channel, epoch): (&str, &str),
        budget: &Budget,
    ) -> Option<(Bytes, (bool, bool))> {
        let e = self.ring.get_mut(i)?;
        let mut built = (false, false);
        let plain = match e.frame(format) {
            Some(b) => b.clone(),
            None => {
                let b = format.message(&e.message(channel, epoch));
                e.frames.push((format, false, b.clone()));
                self.bytes += b.len();
                budget.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                built.0 = true;
                b
            }
        };
        let Some((agreed, threshold)) = deflate else {
            return Some((plain, built));
        };
        let len = crate::protocol::format::payload_len(&plain);
        if len < threshold || !agreed.fits(len) {
            return Some((plain, built));
        }
        let z = match e.encoded(format, true) {
            Some(z) => z.clone(),
            None => {
                let z = deflate::compress_frame(&plain).unwrap_or_default();
                e.frames.push((format, true, z.clone()));
                self.bytes += z.len();
                budget.bytes.fetch_add(z.len() as u64, Ordering::Relaxed);
                built.1 = true;
                z
            }
        };
        Some((if z.is_empty() { plain } else { z }, built))
    }

    /// Held messages from ring index `i` on, oldest first.
    pub fn from_index(&self, i: usize) -> impl Iterator<Item = &Entry> {
        self.ring.range(i.min(self.ring.len())..)
    }

    /// Held messages with an offset above `since`, oldest first.
    pub fn after(&self, since: u64) -> impl Iterator<Item = &Entry> {
        let first = self.ring.front().map_or(0, |e| e.offset);
        let skip = since.saturating_add(1).saturating_sub(first);
        self.from_index(usize::try_from(skip).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64, data: &str) -> Entry {
        let mut frames = Frames::default();
        let m = Message {
            channel: "c",
            epoch: "abcd1234",
            offset,
            ts: 1,
            data: data.as_bytes(),
        };
        frames.get_or_build(Format::ENVELOPE, &m);
        Entry::new(offset, Instant::now(), 1, data.as_bytes(), &frames)
    }

    #[test]
    fn ring_keeps_the_last_n_contiguous_offsets() {
        let b = Budget::new(usize::MAX);
        let mut h = History::new(3, None);
        for o in 1..=5 {
            h.push(entry(o, "{}"), &b);
        }
        let offsets: Vec<u64> = h.after(0).map(|e| e.offset).collect();
        assert_eq!(offsets, [3, 4, 5]);
        assert_eq!(h.coverage(5, 5), Coverage::UpToDate);
        assert_eq!(h.coverage(2, 5), Coverage::From(0));
        assert_eq!(h.coverage(3, 5), Coverage::From(1));
        assert_eq!(h.coverage(1, 5), Coverage::Gap, "offset 2 is gone");
        assert_eq!(h.coverage(6, 5), Coverage::Gap, "from the future");
        assert_eq!(h.after(4).map(|e| e.offset).collect::<Vec<_>>(), [5]);
        assert_eq!(h.after(9).count(), 0);
        assert_eq!(b.evictions.load(Ordering::Relaxed), 0);
        assert_eq!(b.bytes.load(Ordering::Relaxed) as usize, h.bytes());
    }

    #[test]
    fn data_shares_the_envelope_and_other_formats_are_built_once_on_replay() {
        let b = Budget::new(usize::MAX);
        let mut h = History::new(3, None);
        let e = entry(7, r#"{"p":"\u00e9"}"#);
        let env = e.frame(Format::ENVELOPE).unwrap().clone();
        assert_eq!(&e.data[..], br#"{"p":"\u00e9"}"#);
        let inside = env.as_ptr_range();
        assert!(
            inside.contains(&e.data.as_ptr()),
            "data is a slice of the frame"
        );
        assert_eq!(e.cost(), env.len() + ENTRY_OVERHEAD, "counted once");
        h.push(e, &b);
        let before = h.bytes();
        let at = ("c", "abcd1234");
        let (raw, (built, _)) = h.frame_at(0, Format::RAW, None, at, &b).unwrap();
        assert!(built);
        assert_eq!(&raw[2..], br#"{"p":"\u00e9"}"#);
        assert_eq!(h.bytes(), before + raw.len(), "a cached frame is counted");
        let (again, (built, _)) = h.frame_at(0, Format::RAW, None, at, &b).unwrap();
        assert!(!built);
        assert_eq!(again.as_ptr(), raw.as_ptr());
        let (env2, (built, _)) = h.frame_at(0, Format::ENVELOPE, None, at, &b).unwrap();
        assert!(!built);
        assert_eq!(env2, env);
        assert_eq!(b.bytes.load(Ordering::Relaxed) as usize, h.bytes());
    }

    #[test]
    fn a_replay_compresses_once_and_keeps_it() {
        let b = Budget::new(usize::MAX);
        let mut h = History::new(3, None);
        h.push(entry(1, &format!("[{}]", "1,".repeat(100) + "1")), &b);
        let at = ("c", "abcd1234");
        let wide = Some((Deflate::with_window(15), 64));
        let (z, (_, compressed)) = h.frame_at(0, Format::ENVELOPE, wide, at, &b).unwrap();
        assert!(compressed);
        assert_eq!(z[0] & deflate::RSV1, deflate::RSV1);
        let (again, (_, compressed)) = h.frame_at(0, Format::ENVELOPE, wide, at, &b).unwrap();
        assert!(!compressed);
        assert_eq!(again.as_ptr(), z.as_ptr(), "kept and shared");
        // A window of 256 bytes cannot take this payload; a high threshold skips it.
        for other in [
            (Deflate::with_window(8), 64),
            (Deflate::with_window(15), 1 << 20),
        ] {
            let (plain, _) = h
                .frame_at(0, Format::ENVELOPE, Some(other), at, &b)
                .unwrap();
            assert_eq!(plain[0] & deflate::RSV1, 0);
        }
        assert_eq!(b.bytes.load(Ordering::Relaxed) as usize, h.bytes());
    }

    #[test]
    fn without_a_frame_the_data_is_copied_and_counted() {
        let e = Entry::new(1, Instant::now(), 1, b"[1,2]", &Frames::default());
        assert_eq!(&e.data[..], b"[1,2]");
        assert_eq!(e.cost(), 5 + ENTRY_OVERHEAD);
    }

    #[test]
    fn the_budget_evicts_oldest_but_keeps_the_last_value() {
        let one = entry(1, "{}").cost() as u64;
        let b = Budget::new((one * 2) as usize);
        let mut h = History::new(100, None);
        for o in 1..=5 {
            h.push(entry(o, "{}"), &b);
        }
        assert_eq!(h.len(), 2);
        assert_eq!(b.evictions.load(Ordering::Relaxed), 3);
        let tiny = Budget::new(1);
        let mut g = History::new(100, None);
        g.push(entry(1, "{}"), &tiny);
        g.push(entry(2, "{}"), &tiny);
        assert_eq!(g.newest().map(|e| e.offset), Some(2), "newest always kept");
        g.clear(&tiny);
        h.clear(&b);
        assert_eq!(tiny.bytes.load(Ordering::Relaxed), 0);
        assert_eq!(b.bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn ttl_expires_old_messages() {
        let b = Budget::new(usize::MAX);
        let mut h = History::new(10, Some(Duration::from_millis(50)));
        h.push(entry(1, "{}"), &b);
        let later = Instant::now() + Duration::from_millis(100);
        assert_eq!(h.expire(later, &b), 1);
        assert!(h.is_empty());
        assert_eq!(h.coverage(0, 1), Coverage::Gap);
        assert_eq!(b.bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let b = Budget::new(usize::MAX);
        let mut h = History::new(0, None);
        h.push(entry(1, "{}"), &b);
        assert!(h.is_empty());
        assert_eq!(h.coverage(0, 1), Coverage::Gap);
    }
}
