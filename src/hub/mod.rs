//! The hub: every channel, sharded, and the fan-out of published messages.
//!
//! Channels live in N shards (N a power of two, chosen by hashing the name), each a
//! `parking_lot::RwLock<HashMap>` that is held only to find or create a channel. Each
//! channel has its own locks (see [`shard`] for the order). The hub moves neutral
//! messages (channel, epoch, offset, ts, the publisher's verbatim data): a publish builds
//! one complete frame per wire format in use among the channel's subscribers
//! ([`crate::protocol::format`]), compresses it once more for subscribers that negotiated
//! permessage-deflate, and pushes clones of the same `Bytes` to every subscriber of that
//! format's [`Outbox`]: no per-subscriber serialization, compression or allocation,
//! and no lock held while touching a socket (sockets belong to the connections' writers).
//!
//! Subscribing and what a new subscriber is replayed (pushed, or handed back for a
//! dialect's subscribe reply) are in `join.rs` ([`Hub::subscribe`], [`Hub::join`]);
//! namespace-wide subscriptions for dialects in `wild.rs`
//! ([`Hub::subscribe_namespace`]).
//!
//! Offsets are assigned here ([`Hub::publish`]) or elsewhere ([`Hub::publish_at`]: an
//! upstream relay or a backplane), and whoever registered an [`Interest`] is told when a
//! channel gets its first subscriber on this node, loses its last, or is reclaimed.

mod evict;
pub mod history;
pub mod interest;
mod join;
mod mirror;
pub mod shard;
mod wanted;
mod wild;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::ErrorCode;
use crate::metrics::Metrics;
use crate::namespace::Namespaces;
use crate::outbox::{Lane, Push};
use history::{Budget, Coverage, History};
use interest::Watchers;
pub use interest::{Interest, InterestEvent};
pub use join::{Joined, Replay};
use shard::{Channel, ChannelState, Prepared, Shard};
pub use shard::{Epoch, Subscriber};
pub use wanted::Wanted;

/// Where a channel stands, as reported to a new subscriber or a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The channel's epoch.
    pub epoch: Epoch,
    /// Offset of the newest message (0: none yet).
    pub offset: u64,
}

/// The result of one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Where the message landed.
    pub position: Position,
    /// How many subscribers it was queued for.
    pub delivered: usize,
}

/// A message's place assigned elsewhere (an upstream relay, the backplane), for
/// [`Hub::publish_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequenced {
    /// The channel's epoch there.
    pub epoch: Epoch,
    /// The message's offset there (from 1).
    pub offset: u64,
    /// Its publish time, milliseconds since the Unix epoch.
    pub ts: u64,
}

/// Where a reconnecting subscriber left off (`recover` in a subscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recover<'a> {
    /// The epoch it saw.
    pub epoch: &'a str,
    /// The last offset it received.
    pub offset: u64,
}

/// The result of one subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// The channel's id (for [`Outbox::set_rate`] and [`Outbox::forget`]).
    pub key: u64,
    /// The channel's name, shared.
    pub name: Arc<str>,
    /// The channel is on the conflate lane.
    pub conflate_lane: bool,
    /// Where the channel stands: live messages continue after `position.offset`.
    pub position: Position,
    /// Whether the connection was not subscribed before.
    pub new: bool,
    /// With a `recover`: whether every missed message was replayed.
    pub recovered: Option<bool>,
}

/// What `GET /history` shows of a channel.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// Where the channel stands.
    pub position: Position,
    /// Offset of the oldest message held (0: none held).
    pub oldest: u64,
    /// The messages, oldest first.
    pub messages: Vec<history::Entry>,
    /// Whether no message between the `since` asked for and the first returned is gone.
    pub complete: bool,
}

/// The channel table and fan-out.
#[derive(Debug)]
pub struct Hub {
    shards: Box<[Shard]>,
    mask: usize,
    channel_count: AtomicUsize,
    max_channels: usize,
    epoch_state: AtomicU64,
    metrics: Arc<Metrics>,
    namespaces: Arc<Namespaces>,
    budget: Budget,
    next_channel_id: AtomicU64,
    watchers: Watchers,
    /// Channels only publishers may create (see [`Hub::ensure_subscriber_channels`]).
    publisher_reserve: usize,
    /// Namespace-wide subscribers, by namespace (see `wild.rs`).
    wild: parking_lot::RwLock<std::collections::HashMap<Box<str>, Vec<Subscriber>>>,
    /// permessage-deflate for namespaces that do not set their own.
    deflate: crate::protocol::deflate::Setting,
}

/// Milliseconds since the Unix epoch (the `ts` of a message).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    /// A hub with `shards` shards (rounded up to a power of two) holding at most
    /// `max_channels` channels.
    pub fn new(shards: usize, max_channels: usize, metrics: Arc<Metrics>) -> Self {
        let n = shards.max(1).next_power_of_two();
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (std::process::id() as u64).rotate_left(32);
        Hub {
            shards: (0..n).map(|_| Shard::default()).collect(),
            mask: n - 1,
            channel_count: AtomicUsize::new(0),
            max_channels,
            epoch_state: AtomicU64::new(seed),
            metrics,
            namespaces: Arc::default(),
            budget: Budget::new(crate::config::DEFAULT_HISTORY_MAX_BYTES),
            next_channel_id: AtomicU64::new(1),
            watchers: Watchers::default(),
            publisher_reserve: 0,
            wild: Default::default(),
            deflate: Default::default(),
        }
    }

    /// Compresses messages as `setting` says in namespaces that do not set `deflate`.
    pub fn with_deflate(mut self, setting: crate::protocol::deflate::Setting) -> Self {
        self.deflate = setting;
        self
    }

    /// Uses `namespaces` for history sizes and caps all history at `max_bytes`.
    pub fn with_history(mut self, namespaces: Arc<Namespaces>, max_bytes: usize) -> Self {
        self.namespaces = namespaces;
        self.budget = Budget::new(max_bytes);
        self
    }

    /// Keeps the last `reserve` channel places (at most half of them) for publishers.
    pub fn with_publisher_reserve(mut self, reserve: usize) -> Self {
        self.publisher_reserve = reserve.min(self.max_channels / 2);
        self
    }

    /// Bytes held by all channels' history.
    pub fn history_bytes(&self) -> u64 {
        self.budget.bytes.load(Ordering::Relaxed)
    }

    /// Messages forgotten from history for space or age.
    pub fn history_evictions(&self) -> u64 {
        self.budget.evictions.load(Ordering::Relaxed)
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Number of live channels.
    pub fn channel_count(&self) -> usize {
        self.channel_count.load(Ordering::Relaxed)
    }

    fn shard(&self, name: &str) -> &Shard {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        &self.shards[h.finish() as usize & self.mask]
    }

    fn new_epoch(&self) -> Epoch {
        // splitmix64 over a shared counter: distinct, unpredictable-enough epochs.
        let mut z = self
            .epoch_state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Epoch::from_bits(z ^ (z >> 31))
    }

    fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.shard(name).channels.read().get(name).cloned()
    }

    fn channel_or_create(&self, name: &str) -> Result<Arc<Channel>, ErrorCode> {
        if let Some(ch) = self.channel(name) {
            return Ok(ch);
        }
        let mut map = self.shard(name).channels.write();
        if let Some(ch) = map.get(name) {
            return Ok(ch.clone());
        }
        if self.channel_count.load(Ordering::Relaxed) >= self.max_channels {
            return Err(ErrorCode::TooManyChannels);
        }
        let ns = self.namespaces.of(name);
        let history = History::new(ns.history, ns.history_ttl);
        let id = self.next_channel_id.fetch_add(1, Ordering::Relaxed);
        let conflate = ns.delivery == crate::namespace::Delivery::Conflate;
        let deflate = ns.deflate.unwrap_or(self.deflate).threshold();
        let ch = Arc::new(Channel::new(
            id,
            name,
            (conflate, deflate),
            self.new_epoch(),
            history,
        ));
        map.insert(name.into(), ch.clone());
        drop(map);
        self.channel_count.fetch_add(1, Ordering::Relaxed);
        self.add_namespace_subscribers(&ch);
        Ok(ch)
    }

    /// Registers `who` to be told of interest changes from now on (see [`Interest`]).
    pub fn watch(&self, who: Arc<dyn Interest>) {
        self.watchers.add(who);
    }

    /// Publishes `data` (valid JSON, embedded verbatim) to the channel `name` (a
    /// validated name), creating the channel if needed; the hub assigns the offset.
    pub fn publish(&self, name: &str, data: &[u8]) -> Result<Published, ErrorCode> {
        let ts = now_ms();
        loop {
            let ch = self.channel_or_create(name)?;
            let mut st = ch.state.lock();
            if st.removed {
                continue;
            }
            let prepared = st.prepare(name, ts, data, &self.budget, &self.metrics);
            return Ok(self.fan_out(&ch, st, prepared));
        }
    }

    /// Pushes a prepared message to its audience, each subscriber the frame of its format.
    fn fan_out(
        &self,
        ch: &Channel,
        st: parking_lot::MutexGuard<'_, ChannelState>,
        prepared: Prepared,
    ) -> Published {
        // Hand over hand: this fan-out starts only after the previous one of this
        // channel has finished, so every subscriber sees offsets in order.
        let fanout = ch.fanout.lock();
        drop(st);
        let mut delivered = 0;
        let mut overflowed = 0;
        let mut conflated = 0;
        let lane = Lane {
            key: ch.id,
            name: &ch.name,
            conflate: ch.conflate,
            ts: prepared.ts,
        };
        for s in prepared.subscribers.iter() {
            if let Some(Some(reset)) = prepared.reset.as_ref().map(|r| &r[s.format.index()]) {
                s.outbox.push(reset);
            }
            // Every subscriber's format was in use when the frames were built.
            let Some(frame) = prepared.frames.for_subscriber(s.format, s.deflate) else {
                continue;
            };
            match s.outbox.push_lane(frame, &lane) {
                Push::Queued => delivered += 1,
                Push::Conflated => {
                    delivered += 1;
                    conflated += 1;
                }
                Push::Overflow => overflowed += 1,
                Push::Closed => {}
            }
        }
        drop(fanout);
        let m = &self.metrics;
        m.messages_in.fetch_add(1, Ordering::Relaxed);
        m.messages_out
            .fetch_add(delivered as u64, Ordering::Relaxed);
        if conflated > 0 {
            m.conflated.fetch_add(conflated, Ordering::Relaxed);
        }
        if overflowed > 0 {
            m.slow_consumer_closes
                .fetch_add(overflowed, Ordering::Relaxed);
        }
        self.trim_history();
        Published {
            position: Position {
                epoch: prepared.epoch,
                offset: prepared.offset,
            },
            delivered,
        }
    }

    /// Creates every channel of `names` that does not exist, so that a subscribe to all of
    /// them cannot fail half way (and leave last values queued for channels it then
    /// gives up). Fails if the relay cannot hold them all.
    pub fn ensure_channels<S: AsRef<str>>(&self, names: &[S]) -> Result<(), ErrorCode> {
        self.ensure_channels_within(names, self.max_channels)
    }

    /// [`Hub::ensure_channels`] for an untrusted subscriber: it may create channels only
    /// while the table is below `max_channels` minus the publishers' reserve, so that
    /// clients subscribing to made-up names can never stop a feed from publishing to a
    /// new channel.
    pub fn ensure_subscriber_channels<S: AsRef<str>>(&self, names: &[S]) -> Result<(), ErrorCode> {
        let cap = self.max_channels - self.publisher_reserve;
        self.ensure_channels_within(names, cap)
    }

    fn ensure_channels_within<S: AsRef<str>>(
        &self,
        names: &[S],
        cap: usize,
    ) -> Result<(), ErrorCode> {
        let missing = names
            .iter()
            .filter(|n| self.channel(n.as_ref()).is_none())
            .count();
        if missing > 0 && self.channel_count.load(Ordering::Relaxed) + missing > cap {
            return Err(ErrorCode::TooManyChannels);
        }
        for n in names {
            self.channel_or_create(n.as_ref())?;
        }
        Ok(())
    }

    /// What channel `name`'s history holds after offset `since` (the newest `limit`
    /// messages without `since`; the first `limit` after it with). `None`: no such channel.
    pub fn history(&self, name: &str, since: Option<u64>, limit: usize) -> Option<HistoryPage> {
        let ch = self.channel(name)?;
        let mut st = ch.state.lock();
        st.history.expire(Instant::now(), &self.budget);
        let h = &st.history;
        let oldest = h.after(0).next().map_or(0, |e| e.offset);
        let (frames, complete): (Vec<_>, bool) = match since {
            Some(since) => {
                let complete =
                    since >= st.offset || matches!(h.coverage(since, st.offset), Coverage::From(_));
                (h.after(since).take(limit).cloned().collect(), complete)
            }
            None => {
                let skip = h.len().saturating_sub(limit);
                (h.from_index(skip).cloned().collect(), true)
            }
        };
        Some(HistoryPage {
            position: Position {
                epoch: st.epoch,
                offset: st.offset,
            },
            oldest,
            messages: frames,
            complete,
        })
    }

    /// Removes connection `conn` from channel `name`. When this returns, no message of
    /// the channel will be pushed to the connection any more (an in-flight fan-out that
    /// still had it in its snapshot has finished). Returns whether it was subscribed.
    pub fn unsubscribe(&self, name: &str, conn: u64) -> bool {
        let Some(ch) = self.channel(name) else {
            return false;
        };
        let mut st = ch.state.lock();
        let removed = st.remove(conn);
        if removed {
            if st.subscriber_count() == 0 {
                self.watchers.tell(&ch.name, InterestEvent::LastGone);
            }
            drop(st);
            self.metrics.subscriptions.fetch_sub(1, Ordering::Relaxed);
            drop(ch.fanout.lock());
        }
        removed
    }

    /// Reclaims channels that have had no subscriber and no publish for `idle`.
    /// Returns how many were removed.
    pub fn sweep(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut map = shard.channels.write();
            map.retain(|_, ch| {
                let mut st = ch.state.lock();
                st.history.expire(now, &self.budget);
                let reclaim =
                    st.subscriber_count() == 0 && now.duration_since(st.last_active) >= idle;
                if reclaim {
                    st.removed = true;
                    st.history.clear(&self.budget);
                    self.watchers.tell(&ch.name, InterestEvent::Reclaimed);
                    removed += 1;
                }
                !reclaim
            });
        }
        self.channel_count.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Channels with their subscriber counts, most subscribed first, at most `limit`.
    pub fn top_channels(&self, limit: usize) -> Vec<(String, usize)> {
        self.top_channels_where(limit, |_| true)
    }

    /// [`Hub::top_channels`] among the channels `keep` accepts.
    pub fn top_channels_where(
        &self,
        limit: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<(String, usize)> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let map = shard.channels.read();
            for (name, ch) in map.iter().filter(|(n, _)| keep(n)) {
                all.push((name.to_string(), ch.state.lock().subscriber_count()));
            }
        }
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(limit);
        all
    }

    /// Where channel `name` stands, if it exists.
    pub fn position(&self, name: &str) -> Option<Position> {
        let ch = self.channel(name)?;
        let st = ch.state.lock();
        Some(Position {
            epoch: st.epoch,
            offset: st.offset,
        })
    }
}

#[cfg(test)]
mod tests;
