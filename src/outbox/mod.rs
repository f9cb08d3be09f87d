//! A connection's outbound queue: bounded in bytes, shared by fan-out and replies.
//!
//! Everything a connection will be sent goes through its [`Outbox`]: channel messages
//! pushed by the hub, command replies, pongs and the close frame. One queue means one
//! total order per connection. The writer takes everything queued at once and
//! writes it with vectored writes.
//!
//! Bytes count from the moment a frame is queued until the writer has handed it to the
//! socket, so queued plus in-flight never exceeds the limit. A frame counts as its length
//! plus [`FRAME_COST`], what holding it costs beyond its bytes, so that a flood of tiny
//! frames is bounded by memory and not by payload; messages held back by conflation or a
//! `max_rate` cap count the same way until they are queued or replaced. A push over the limit marks
//! the connection a *slow consumer*: its queue is dropped, a `1008 slow consumer` close
//! frame takes its place, and the writer gets a short grace to deliver it before the
//! socket is dropped. Nothing else waits on a slow connection: a push is a short,
//! uncontended mutex section and never touches a socket.
//!
//! ## Lanes
//!
//! Channel messages arrive with a [`Lane`]. *Reliable* ones queue like replies and are
//! bounded only by the limit above. *Conflate* ones (prices) queue only while the
//! connection keeps up: once its queue passes the soft bound (`conflate_after`), the
//! connection is *lagging* and each conflate channel keeps just its newest pending message
//! here, replaced in place (the replaced one is counted as conflated). When the writer
//! brings the queue under half the soft bound, the newest messages are queued, one per
//! channel, and normal flow resumes. A tick flood can therefore occupy at most the soft
//! bound of the queue, leaving the rest to the reliable lane. A channel that has been
//! conflated for longer than `notice_after` gets a `lagging` notice once, and a
//! `caught_up` notice when it is flushed. A subscription with a `max_rate` is held back
//! the same way between its sends, and the writer is woken when its next send is due.
//!
//! A subscribe reply must precede every message of the channels it announces, but it can
//! only be written once all channels are registered. [`Outbox::reserve`] puts a
//! placeholder at the tail that the writer may not pass until [`Outbox::fill`] puts the
//! reply there; messages queued meanwhile wait behind it.

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

use crate::protocol::close::CloseCode;

use crate::protocol::format::Format;
use lanes::Held;
use rate::Rate;

mod lanes;
mod rate;
mod seen;
mod wake;
pub use seen::LastSeen;
pub use wake::Ready;

/// What a queued or held frame costs beyond its length, counted against the limit: an
/// upper estimate of its queue slot (a `Bytes`, 32 bytes), the reference count of a shared
/// frame, or the allocator's header and rounding of a frame of its own (a reply, a pong).
pub const FRAME_COST: usize = 64;

/// What `frame` counts as against the limit.
#[inline]
pub(crate) fn cost(frame: &Bytes) -> usize {
    frame.len() + FRAME_COST
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued for the writer (or held as its channel's newest pending message).
    Queued,
    /// Held as its channel's newest pending message, replacing an older one, which will
    /// never be sent (conflated).
    Conflated,
    /// This push took the queue over its limit: the connection is now closing as a slow
    /// consumer (reported once per connection).
    Overflow,
    /// The connection is closing; the frame was dropped.
    Closed,
}

/// How a channel's messages travel (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Lane<'a> {
    /// The channel's id (unique for the relay's lifetime).
    pub key: u64,
    /// The channel's name, for notices.
    pub name: &'a Arc<str>,
    /// A conflate channel; otherwise reliable.
    pub conflate: bool,
    /// The message's publish time, ms since the Unix epoch (for [`Outbox::lag_ms`]).
    pub ts: u64,
}

/// A placeholder in the queue, see [`Outbox::reserve`].
#[derive(Debug)]
#[must_use]
pub struct Slot(u64);

/// What the writer learns from [`Outbox::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Bytes taken (to [`Outbox::release`] once written).
    pub bytes: usize,
    /// The batch ends the connection: write it, then shut the socket.
    pub last: bool,
    /// When a rate-limited message is next due (take again then).
    pub next_due: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    /// Sequence number of `queue[0]`; lets a [`Slot`] find its place after takes.
    head_seq: u64,
    pending: Option<u64>,
    /// Queued plus taken-but-unwritten bytes (each frame at its [`cost`]; a reserved
    /// place counts [`FRAME_COST`] until it is filled).
    bytes: usize,
    /// The cost of the frames held back in `held` and in `rates`; counts against the limit
    /// with `bytes`, but not towards the soft bound (a lagging connection catches up
    /// when its queue drains, whatever it holds).
    held_bytes: usize,
    /// No more frames are accepted; the queue ends with the close frame (if any).
    closing: bool,
    /// Set when the connection must go soon (slow consumer): the writer stops waiting
    /// on the socket at this instant plus its grace.
    doomed_at: Option<Instant>,
    /// Frames discarded unsent when the connection was closed as a slow consumer.
    dropped: u64,
    /// Over the soft bound: conflate channels are held in `held`.
    lagging: bool,
    held: Vec<Held>,
    rates: Vec<Rate>,
    /// Messages this connection never got because a newer one replaced them.
    conflated: u64,
    /// The answer to the latest ping, sent ahead of the queue: at most one is pending
    /// (RFC 6455 §5.5.3 lets a pong answer only the most recent ping).
    pong: Option<Bytes>,
    /// Publish time of the first channel message queued since the connection was last
    /// caught up (everything written, nothing held back by conflation), or [`CAUGHT_UP`].
    behind_ms: u64,
}

/// A connection's bounded outbound queue.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    wake: Notify,
    doom: Notify,
    limit: usize,
    soft: usize,
    notice_after: Duration,
    /// The connection's wire format: builds its notices and its slow-consumer close.
    format: Format,
    /// permessage-deflate as the upgrade negotiated it.
    deflate: crate::protocol::deflate::Deflate,
    /// When the peer last sent a frame (the reader touches it, the writer's heartbeat
    /// reads it): here, because both already share the outbox.
    seen: LastSeen,
    /// The authentication deadline (the reader sets it, the writer closes with 4001 when
    /// it passes): here for the same reason.
    deadline: crate::auth::Deadline,
    /// Set while the connection's own task runs its reader, whose writer it polls next:
    /// a wake then would only reschedule the running task (see [`Outbox::quiet`]).
    quiet: AtomicBool,
    /// A wake held back while `quiet`; the writer's [`Outbox::ready`] takes it.
    missed: AtomicBool,
}

/// How far behind its channels a connection is: see [`Outbox::lag_ms`].
const CAUGHT_UP: u64 = 0;

impl Outbox {
    /// An empty outbox holding at most `limit` bytes, conflating only at the limit.
    pub fn new(limit: usize) -> Self {
        Outbox::with_lanes(limit, limit, Duration::from_secs(1))
    }

    /// An empty outbox holding at most `limit` bytes that conflates past `conflate_after`
    /// bytes and sends a `lagging` notice for a channel conflated longer than
    /// `notice_after`.
    pub fn with_lanes(limit: usize, conflate_after: usize, notice_after: Duration) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            doom: Notify::new(),
            limit,
            soft: conflate_after.min(limit),
            notice_after,
            format: Format::ENVELOPE,
            deflate: Default::default(),
            seen: LastSeen::new(),
            deadline: Default::default(),
            quiet: AtomicBool::new(false),
            missed: AtomicBool::new(false),
        }
    }

    /// The connection's authentication deadline.
    pub fn deadline(&self) -> &crate::auth::Deadline {
        &self.deadline
    }

    /// The connection's liveness clock.
    pub fn seen(&self) -> &LastSeen {
        &self.seen
    }

    /// The same outbox for a connection of `format` (notices and closes in its framing).
    pub fn for_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// The connection's wire format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Sets the connection's permessage-deflate agreement.
    pub fn with_deflate(mut self, deflate: crate::protocol::deflate::Deflate) -> Self {
        self.deflate = deflate;
        self
    }

    /// The connection's permessage-deflate agreement (off unless negotiated).
    pub fn deflate(&self) -> crate::protocol::deflate::Deflate {
        self.deflate
    }

    /// Queues a shared frame (a refcount bump, no copy) on the reliable lane: replies,
    /// pings, replayed history.
    pub fn push(&self, frame: &Bytes) -> Push {
        let st = self.state.lock();
        self.enqueue(st, frame)
    }

    /// Queues a channel message on its lane (see the module docs).
    #[inline]
    pub fn push_lane(&self, frame: &Bytes, lane: &Lane<'_>) -> Push {
        let mut st = self.state.lock();
        if st.behind_ms == CAUGHT_UP {
            st.behind_ms = lane.ts.max(1);
        }
        // The common case, kept to what `push` did before lanes: keeping up, no rate cap.
        let bound = if lane.conflate { self.soft } else { self.limit };
        if !st.lagging && !st.closing && st.rates.is_empty() && st.bytes + cost(frame) <= bound {
            return self.append(st, frame);
        }
        if st.closing {
            return Push::Closed;
        }
        if !lane.conflate {
            return self.enqueue(st, frame);
        }
        let st = match self.rate_cap(st, frame, lane.key) {
            Ok(st) => st,
            Err(held) => return held,
        };
        self.conflate(st, frame, lane.key, lane.name)
    }

    /// Appends to the queue, or closes the connection if that would pass the limit.
    fn enqueue(&self, st: MutexGuard<'_, State>, frame: &Bytes) -> Push {
        if st.closing {
            return Push::Closed;
        }
        if st.bytes + st.held_bytes + cost(frame) > self.limit {
            return self.overflow(st);
        }
        self.append(st, frame)
    }

    /// Appends a frame the caller has checked against the bounds, and wakes the writer if
    /// the queue was empty.
    #[inline]
    fn append(&self, mut st: MutexGuard<'_, State>, frame: &Bytes) -> Push {
        let was_empty = st.queue.is_empty();
        st.bytes += cost(frame);
        st.queue.push_back(frame.clone());
        drop(st);
        if was_empty {
            self.notify();
        }
        Push::Queued
    }

    /// The queue would pass its limit: drop it, queue `1008 slow consumer`, wake the writer.
    fn overflow(&self, mut st: MutexGuard<'_, State>) -> Push {
        let dropped: usize = st.queue.iter().map(cost).sum();
        st.bytes -= dropped;
        if let Some(p) = st.pong.take() {
            st.bytes -= cost(&p);
        }
        st.held_bytes = 0;
        st.dropped += st.queue.iter().filter(|f| !f.is_empty()).count() as u64;
        st.dropped += st.held.len() as u64;
        st.dropped += st.rates.iter().filter(|r| r.held.is_some()).count() as u64;
        st.held = Vec::new();
        st.rates = Vec::new();
        st.lagging = false;
        st.head_seq += st.queue.len() as u64;
        st.queue.clear();
        st.pending = None;
        let close = self
            .format
            .close(CloseCode::POLICY, crate::protocol::close::SLOW_CONSUMER);
        st.bytes += cost(&close);
        st.queue.push_back(close);
        st.closing = true;
        st.doomed_at = Some(Instant::now());
        drop(st);
        self.notify();
        self.doom.notify_one();
        Push::Overflow
    }

    /// Queues the answer to a ping, replacing one not sent yet: however many pings a
    /// client sends without reading, it holds one pong here.
    pub fn pong(&self, frame: Bytes) -> Push {
        let mut st = self.state.lock();
        if st.closing {
            return Push::Closed;
        }
        let old = st.pong.as_ref().map_or(0, cost);
        if st.bytes + st.held_bytes - old + cost(&frame) > self.limit {
            return self.overflow(st);
        }
        st.bytes = st.bytes - old + cost(&frame);
        let was_idle = st.queue.is_empty() && st.pong.is_none();
        st.pong = Some(frame);
        drop(st);
        if was_idle {
            self.notify();
        }
        Push::Queued
    }

    /// Reserves the next place in the queue for a frame that is not built yet. Returns
    /// `None` when the connection is closing. Only one slot may be open at a time.
    pub fn reserve(&self) -> Option<Slot> {
        let mut st = self.state.lock();
        if st.closing || st.pending.is_some() {
            return None;
        }
        let seq = st.head_seq + st.queue.len() as u64;
        st.queue.push_back(Bytes::new());
        st.bytes += FRAME_COST;
        st.pending = Some(seq);
        Some(Slot(seq))
    }

    /// Puts `frame` into a reserved place and lets the writer pass it. The frame counts
    /// against the limit like any other.
    pub fn fill(&self, slot: Slot, frame: Bytes) -> Push {
        let mut st = self.state.lock();
        if st.pending != Some(slot.0) {
            return Push::Closed; // the queue was dropped in between (slow consumer)
        }
        st.pending = None;
        if st.bytes + st.held_bytes + frame.len() > self.limit {
            return self.overflow(st);
        }
        let idx = (slot.0 - st.head_seq) as usize;
        st.bytes += frame.len();
        st.queue[idx] = frame;
        drop(st);
        self.notify();
        Push::Queued
    }

    /// Queues `frame` (a close frame) as the last thing this connection will be sent,
    /// after everything already queued. Later pushes are dropped. Returns false if the
    /// connection was already closing.
    pub fn close_with(&self, frame: Bytes) -> bool {
        let mut st = self.state.lock();
        if st.closing {
            return false;
        }
        if let Some(seq) = st.pending.take() {
            // A reply that will never be filled must not block the close.
            let idx = (seq - st.head_seq) as usize;
            st.queue.remove(idx);
            st.bytes -= FRAME_COST;
        }
        st.bytes += cost(&frame);
        st.queue.push_back(frame);
        st.closing = true;
        drop(st);
        self.notify();
        true
    }

    /// Ends the connection without sending anything more (the peer is gone).
    pub fn abort(&self) {
        let mut st = self.state.lock();
        st.closing = true;
        st.bytes = 0;
        st.held_bytes = 0;
        st.pong = None;
        st.head_seq += st.queue.len() as u64;
        st.queue.clear();
        st.pending = None;
        st.held = Vec::new();
        st.rates = Vec::new();
        st.doomed_at.get_or_insert_with(Instant::now);
        drop(st);
        self.notify();
        self.doom.notify_one();
    }

    /// Frees the queue's buffer if it is empty (a quiet connection holds none).
    pub fn trim(&self) {
        let mut st = self.state.lock();
        if st.queue.is_empty() && st.queue.capacity() > 0 {
            st.queue = VecDeque::new();
        }
    }

    /// Moves every frame the writer may send now into `batch` (which must be empty).
    pub fn take(&self, batch: &mut VecDeque<Bytes>) -> Taken {
        let mut st = self.state.lock();
        let mut next_due = None;
        if !st.rates.is_empty() && !st.closing {
            match self.release_due(st) {
                Some((guard, due)) => {
                    st = guard;
                    next_due = due;
                }
                // An overflow dropped everything: take what is left (the close).
                None => return self.take(batch),
            }
        }
        let n = match st.pending {
            Some(seq) => (seq - st.head_seq) as usize,
            None => st.queue.len(),
        };
        let mut bytes = 0;
        if n == st.queue.len() {
            // Swap rather than drain: both deques keep their capacity, no allocation.
            std::mem::swap(&mut st.queue, batch);
            bytes = batch.iter().map(cost).sum();
        } else {
            for f in st.queue.drain(..n) {
                bytes += cost(&f);
                batch.push_back(f);
            }
        }
        st.head_seq += n as u64;
        if let Some(p) = st.pong.take() {
            bytes += cost(&p);
            batch.push_front(p);
        }
        Taken {
            bytes,
            last: st.closing && st.queue.is_empty(),
            next_due,
        }
    }

    /// The writer has handed `bytes` to the socket. A lagging connection that is back
    /// under half the soft bound gets its held messages, newest only, and resumes.
    pub fn release(&self, bytes: usize) {
        let mut st = self.state.lock();
        st.bytes = st.bytes.saturating_sub(bytes);
        if st.bytes == 0 && st.held.is_empty() {
            st.behind_ms = CAUGHT_UP;
        }
        if !st.lagging || st.bytes > self.soft / 2 || st.closing {
            return;
        }
        self.flush_held(st);
    }

    /// Forgets anything held for channel `key` (after an unsubscribe), so no message of
    /// the channel follows the `unsubscribed` reply.
    pub fn forget(&self, key: u64) {
        let mut st = self.state.lock();
        let State {
            rates,
            held,
            held_bytes,
            ..
        } = &mut *st;
        rates.retain(|r| match &r.held {
            Some(f) if r.key == key => {
                *held_bytes -= cost(f);
                false
            }
            _ => r.key != key,
        });
        held.retain(|h| {
            if h.key == key {
                *held_bytes -= cost(&h.frame);
            }
            h.key != key
        });
    }

    /// How far behind its channels the connection is at `now_ms` (ms since the Unix
    /// epoch): the age of the oldest channel message it has not been sent yet, counted
    /// from its publish time; 0 when caught up. A value held back by a `max_rate` cap the
    /// connection asked for does not count as behind.
    pub fn lag_ms(&self, now_ms: u64) -> u64 {
        match self.state.lock().behind_ms {
            CAUGHT_UP => 0,
            since => now_ms.saturating_sub(since),
        }
    }

    /// Messages this connection never got because newer ones replaced them.
    pub fn conflated(&self) -> u64 {
        self.state.lock().conflated
    }

    /// Resolves once the connection is doomed, at the instant it was doomed plus `grace`.
    pub async fn doomed(&self, grace: std::time::Duration) {
        loop {
            let at = self.state.lock().doomed_at;
            if let Some(at) = at {
                tokio::time::sleep_until((at + grace).into()).await;
                return;
            }
            self.doom.notified().await;
        }
    }

    /// Whether the connection is closing (no more frames accepted).
    pub fn is_closing(&self) -> bool {
        self.state.lock().closing
    }

    /// Frames discarded unsent because the connection fell too far behind.
    pub fn dropped(&self) -> u64 {
        self.state.lock().dropped
    }

    /// Bytes that may still be queued before the limit (frames at their [`cost`]).
    pub fn room(&self) -> usize {
        let st = self.state.lock();
        self.limit.saturating_sub(st.bytes + st.held_bytes)
    }

    /// Bytes queued, in flight or held back, each frame at its [`cost`]: what counts
    /// against the limit.
    pub fn queued_bytes(&self) -> usize {
        let st = self.state.lock();
        st.bytes + st.held_bytes
    }
}

#[cfg(test)]
mod tests;
