//! One shard of the channel table, and the channel itself. Synchronous methods only:
//! no lock here can be held across an `.await`.
//!
//! Locking, outermost first: shard map (`RwLock`, held only to find, insert or reclaim a
//! channel) → channel `state` (offset, epoch, subscriber list) → channel `fanout` →
//! a subscriber's outbox. A publish assigns its offset and snapshots the subscriber list
//! under `state`, takes `fanout` *before* releasing `state` (hand over hand, so fan-outs
//! of one channel run in offset order), then pushes to the outboxes with `state` free:
//! subscribes and unsubscribes never wait for a fan-out to finish.

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::history::{Budget, Entry, History};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::deflate::Deflate;
use crate::protocol::format::{Format, FormatCounts, Frames, Message};

/// A subscriber as the hub sees it: where to push, and which frame it wants.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The connection's id (unique for the relay's lifetime).
    pub conn: u64,
    /// The connection's outbound queue.
    pub outbox: Arc<Outbox>,
    /// The wire format of the frames it is pushed.
    pub format: Format,
    /// Whether (and within which window) it takes compressed frames.
    pub deflate: Deflate,
}

/// A channel epoch: 8 characters of `[a-z0-9]`, new whenever a channel (and with it its
/// offset sequence) is created afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch([u8; 8]);

impl Epoch {
    /// An epoch from 64 random-ish bits.
    pub fn from_bits(mut bits: u64) -> Epoch {
        const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut e = [0u8; 8];
        for c in &mut e {
            *c = ALPHABET[(bits % 36) as usize];
            bits /= 36;
        }
        Epoch(e)
    }

    /// The epoch written as text by [`Epoch::as_str`] (an epoch assigned elsewhere: an
    /// upstream relay, the backplane). `None` unless 8 characters of `[a-z0-9]`.
    pub fn parse(s: &str) -> Option<Epoch> {
        let b: [u8; 8] = s.as_bytes().try_into().ok()?;
        b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .then_some(Epoch(b))
    }

    /// The epoch as text.
    pub fn as_str(&self) -> &str {
        // Built from ASCII only.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

#[derive(Debug)]
pub(crate) struct ChannelState {
    /// Offset of the newest message (0: none yet).
    pub(crate) offset: u64,
    pub(crate) epoch: Epoch,
    subs: Vec<Subscriber>,
    index: HashMap<u64, usize>,
    /// Copy of `subs` shared with fan-outs; rebuilt on the first publish after a change.
    snapshot: Option<Arc<[Subscriber]>>,
    /// Subscribers per format: a publish builds the frames of these formats only.
    formats: FormatCounts,
    /// Payloads from this size are compressed for subscribers that negotiated
    /// permessage-deflate (the namespace's setting; `None`: never).
    pub(crate) deflate: Option<usize>,
    pub(crate) last_active: Instant,
    /// The last messages, as frames.
    pub(crate) history: History,
    /// Unlinked from its shard: whoever holds this `Arc` must look the name up again.
    pub(crate) removed: bool,
}

/// One channel.
#[derive(Debug)]
pub struct Channel {
    /// Unique for the relay's lifetime (a recreated channel gets a new one).
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    /// Its namespace conflates (else reliable).
    pub(crate) conflate: bool,
    pub(crate) state: Mutex<ChannelState>,
    pub(crate) fanout: Mutex<()>,
}

/// A publish's frames and audience, taken under the channel lock.
pub(crate) struct Prepared {
    pub(crate) offset: u64,
    pub(crate) epoch: Epoch,
    /// Publish time, ms since the Unix epoch.
    pub(crate) ts: u64,
    /// One frame per format some subscriber uses.
    pub(crate) frames: Frames,
    pub(crate) subscribers: Arc<[Subscriber]>,
    /// `reset` notices to push ahead of the message (its epoch replaced one that
    /// subscribers held a position in).
    pub(crate) reset: Option<ResetNotices>,
}

impl Channel {
    pub(crate) fn new(
        id: u64,
        name: &str,
        (conflate, deflate): (bool, Option<usize>),
        epoch: Epoch,
        history: History,
    ) -> Self {
        Channel {
            id,
            name: name.into(),
            conflate,
            state: Mutex::new(ChannelState {
                offset: 0,
                epoch,
                subs: Vec::new(),
                index: HashMap::new(),
                snapshot: None,
                formats: FormatCounts::default(),
                deflate,
                last_active: Instant::now(),
                history,
                removed: false,
            }),
            fanout: Mutex::new(()),
        }
    }
}

impl ChannelState {
    /// Adds `sub` unless its connection is already subscribed. Returns whether it was new.
    pub(crate) fn add(&mut self, sub: &Subscriber) -> bool {
        if self.index.contains_key(&sub.conn) {
            return false;
        }
        self.index.insert(sub.conn, self.subs.len());
        self.subs.push(sub.clone());
        self.formats.add(sub.format, sub.deflate.on());
        self.snapshot = None;
        true
    }

    /// Whether connection `conn` is subscribed.
    pub(crate) fn has(&self, conn: u64) -> bool {
        self.index.contains_key(&conn)
    }

    /// Removes connection `conn`. Returns whether it was subscribed.
    pub(crate) fn remove(&mut self, conn: u64) -> bool {
        let Some(i) = self.index.remove(&conn) else {
            return false;
        };
        let gone = self.subs.swap_remove(i);
        if let Some(moved) = self.subs.get(i) {
            self.index.insert(moved.conn, i);
        }
        self.formats.remove(gone.format, gone.deflate.on());
        self.snapshot = None;
        self.last_active = Instant::now();
        true
    }

    pub(crate) fn subscriber_count(&self) -> usize {
        self.subs.len()
    }

    /// Assigns the next offset, builds the frame of each format in use once for
    /// everyone (and its compressed form once for every compressing subscriber), and
    /// keeps the message in the history.
    pub(crate) fn prepare(
        &mut self,
        name: &str,
        ts_ms: u64,
        data: &[u8],
        budget: &Budget,
        metrics: &Metrics,
    ) -> Prepared {
        self.offset += 1;
        let now = Instant::now();
        self.last_active = now;
        let epoch = self.epoch;
        let m = Message {
            channel: name,
            epoch: epoch.as_str(),
            offset: self.offset,
            ts: ts_ms,
            data,
        };
        let mut frames = Frames::default();
        for f in self.formats.present() {
            frames.get_or_build(f, &m);
            metrics.frame_built(f);
        }
        if let Some(threshold) = self.deflate {
            for f in self.formats.deflating() {
                if frames.deflate(f, threshold) {
                    metrics.deflated(f);
                }
            }
        }
        self.history.expire(now, budget);
        if self.history.keeps() {
            let entry = Entry::new(self.offset, now, ts_ms, data, &frames);
            self.history.push(entry, budget);
        }
        let subs = &self.subs;
        let subscribers = self
            .snapshot
            .get_or_insert_with(|| Arc::from(subs.as_slice()))
            .clone();
        Prepared {
            offset: self.offset,
            epoch: self.epoch,
            ts: ts_ms,
            frames,
            subscribers,
            reset: None,
        }
    }

    /// Moves the channel to a position assigned elsewhere, so that the next
    /// [`prepare`](Self::prepare) takes `offset`: a new `epoch` or a gap in the offsets
    /// forgets the history (it must stay contiguous). Returns `None`, changing nothing,
    /// when `offset` was already had in this epoch (a duplicate); else whether a position
    /// subscribers held was lost (a new epoch after at least one message, or a gap).
    pub(crate) fn seek(&mut self, epoch: Epoch, offset: u64, budget: &Budget) -> Option<bool> {
        if offset == 0 || (epoch == self.epoch && offset <= self.offset) {
            return None;
        }
        let lost = self.align(epoch, offset - 1, budget);
        Some(lost)
    }

    /// Moves the channel to `epoch`/`head` (the newest offset there) with no message: a
    /// new epoch or a gap forgets the history. A `head` behind the channel's in the same
    /// epoch changes nothing. Returns whether a position subscribers held was lost (a new
    /// epoch after at least one message, or a gap).
    pub(crate) fn align(&mut self, epoch: Epoch, head: u64, budget: &Budget) -> bool {
        if epoch != self.epoch {
            let lost = self.offset > 0;
            self.epoch = epoch;
            self.history.clear(budget);
            self.offset = head;
            return lost;
        }
        if head > self.offset {
            // Messages between were never had here (longer gap than the source keeps).
            self.history.clear(budget);
            self.offset = head;
            return true;
        }
        false
    }

    /// The `reset` notice in each format in use, and the audience to push it to.
    pub(crate) fn reset_notices(&mut self, name: &str) -> (ResetNotices, Arc<[Subscriber]>) {
        let mut notices: ResetNotices = Default::default();
        for f in self.formats.present() {
            notices[f.index()] = Some(f.reset(name, self.epoch.as_str(), self.offset));
        }
        let subs = &self.subs;
        let audience = self
            .snapshot
            .get_or_insert_with(|| Arc::from(subs.as_slice()))
            .clone();
        (notices, audience)
    }
}

/// One `reset` frame per format (`None` for formats no subscriber uses).
pub(crate) type ResetNotices = [Option<bytes::Bytes>; Format::COUNT];

/// A shard: a map from channel name to channel.
#[derive(Debug, Default)]
pub struct Shard {
    pub(crate) channels: RwLock<HashMap<Box<str>, Arc<Channel>>>,
}
