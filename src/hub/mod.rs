//! The hub: every channel, sharded, and the fan-out of published messages.
//!
//! Channels live in N shards (N a power of two, chosen by hashing the name), each a
//! `parking_lot::RwLock<HashMap>` that is held only to find or create a channel. Each
//! channel has its own locks (see [`shard`] for the order). A publish builds the complete
//! WebSocket frame once and pushes clones of the same `Bytes` to every subscriber's
//! [`outbox::Outbox`]: no per-subscriber serialization or allocation, and no lock held
//! while touching a socket (sockets belong to the writer tasks).

pub mod outbox;
pub mod shard;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::ErrorCode;
use crate::metrics::Metrics;
use outbox::Push;
use shard::{Channel, Shard};
pub use shard::{Epoch, Subscriber};

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

/// The channel table and fan-out.
#[derive(Debug)]
pub struct Hub {
    shards: Box<[Shard]>,
    mask: usize,
    channel_count: AtomicUsize,
    max_channels: usize,
    epoch_state: AtomicU64,
    metrics: Arc<Metrics>,
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
        }
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
        let ch = Arc::new(Channel::new(self.new_epoch()));
        map.insert(name.into(), ch.clone());
        self.channel_count.fetch_add(1, Ordering::Relaxed);
        Ok(ch)
    }

    /// Publishes `data` (valid JSON, embedded verbatim) to the channel `name` (a
    /// validated name), creating the channel if needed.
    pub fn publish(&self, name: &str, data: &[u8]) -> Result<Published, ErrorCode> {
        let ts = now_ms();
        loop {
            let ch = self.channel_or_create(name)?;
            let mut st = ch.state.lock();
            if st.removed {
                continue;
            }
            let prepared = st.prepare(name, ts, data);
            // Hand over hand: this fan-out starts only after the previous one of this
            // channel has finished, so every subscriber sees offsets in order.
            let fanout = ch.fanout.lock();
            drop(st);
            let mut delivered = 0;
            let mut overflowed = 0;
            for s in prepared.subscribers.iter() {
                let frame = match (&prepared.raw, s.raw) {
                    (Some(raw), true) => raw,
                    _ => &prepared.frame,
                };
                match s.outbox.push(frame) {
                    Push::Queued => delivered += 1,
                    Push::Overflow => overflowed += 1,
                    Push::Closed => {}
                }
            }
            drop(fanout);
            let m = &self.metrics;
            m.messages_in.fetch_add(1, Ordering::Relaxed);
            m.messages_out
                .fetch_add(delivered as u64, Ordering::Relaxed);
            if overflowed > 0 {
                m.slow_consumer_closes
                    .fetch_add(overflowed, Ordering::Relaxed);
            }
            return Ok(Published {
                position: Position {
                    epoch: prepared.epoch,
                    offset: prepared.offset,
                },
                delivered,
            });
        }
    }

    /// Adds `sub` to channel `name` (idempotent) and says where the channel stands:
    /// every message after `offset` will be pushed to `sub`.
    pub fn subscribe(&self, name: &str, sub: &Subscriber) -> Result<Position, ErrorCode> {
        loop {
            let ch = self.channel_or_create(name)?;
            let mut st = ch.state.lock();
            if st.removed {
                continue;
            }
            if st.add(sub) {
                self.metrics.subscriptions.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(Position {
                epoch: st.epoch,
                offset: st.offset,
            });
        }
    }

    /// Removes connection `conn` from channel `name`. When this returns, no message of
    /// the channel will be pushed to the connection any more (an in-flight fan-out that
    /// still had it in its snapshot has finished). Returns whether it was subscribed.
    pub fn unsubscribe(&self, name: &str, conn: u64) -> bool {
        let Some(ch) = self.channel(name) else {
            return false;
        };
        let removed = ch.state.lock().remove(conn);
        if removed {
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
                let reclaim =
                    st.subscriber_count() == 0 && now.duration_since(st.last_active) >= idle;
                if reclaim {
                    st.removed = true;
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
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let map = shard.channels.read();
            for (name, ch) in map.iter() {
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
