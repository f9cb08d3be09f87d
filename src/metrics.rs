//! Relay-wide counters, read by `GET /stats` and `GET /metrics`.
//!
//! Plain relaxed atomics: each is bumped at most once per publish, per write syscall or
//! per connection event, never once per subscriber.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::error::ErrorCode;
use crate::protocol::format::Format;

/// Counters and gauges.
#[derive(Debug)]
pub struct Metrics {
    /// When the relay started.
    pub started: Instant,
    /// Open WebSocket connections (gauge).
    pub connections: AtomicU64,
    /// WebSocket connections accepted since start.
    pub connections_total: AtomicU64,
    /// Upgrade requests refused (4xx/5xx).
    pub handshake_rejects: AtomicU64,
    /// Subscriptions held (gauge).
    pub subscriptions: AtomicU64,
    /// Messages published.
    pub messages_in: AtomicU64,
    /// Messages queued to subscribers (one per subscriber per message).
    pub messages_out: AtomicU64,
    /// Bytes written to WebSocket connections.
    pub bytes_out: AtomicU64,
    /// Connections closed with 1008 `slow consumer`.
    pub slow_consumer_closes: AtomicU64,
    /// Frames discarded unsent when a slow consumer was closed.
    pub dropped: AtomicU64,
    /// Conflate-lane messages replaced by a newer one before a lagging or rate-capped
    /// connection got them.
    pub conflated: AtomicU64,
    /// Channels reset under their subscribers: the position they held is gone (the
    /// backplane's Redis lost the channel), and subscribers of a reliable channel were
    /// sent a `reset` notice.
    pub resets: AtomicU64,
    /// Error replies sent, by code (index: [`ErrorCode::index`]).
    pub errors: [AtomicU64; ErrorCode::ALL.len()],
    /// Message frames built, by wire format (index: [`Format::index`]): at most one per
    /// message per format in use at publish, plus formats first built for a replay.
    pub frames_built: [AtomicU64; Format::COUNT],
    /// Message frames compressed (permessage-deflate), by wire format: at most one per
    /// message per format however many subscribers take it compressed.
    pub frames_deflated: [AtomicU64; Format::COUNT],
    /// Client messages that arrived compressed and were inflated.
    pub messages_inflated: AtomicU64,
    /// Legend AI connections' own counters (its `GET /api/ws/stats`).
    pub legend: DialectCounters,
}

/// One dialect's counters, for a platform whose stats endpoint shows them.
#[derive(Debug, Default)]
pub struct DialectCounters {
    /// Connections opened since start.
    pub opened: AtomicU64,
    /// Client messages read.
    pub received: AtomicU64,
    /// Frames written to its connections.
    pub sent: AtomicU64,
    /// Error replies sent.
    pub errors: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            connections: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            handshake_rejects: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            slow_consumer_closes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            conflated: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            errors: Default::default(),
            frames_built: Default::default(),
            legend: DialectCounters::default(),
            frames_deflated: Default::default(),
            messages_inflated: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts an error reply.
    pub fn error(&self, code: ErrorCode) {
        self.errors[code.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message frame built in `format`.
    #[inline]
    pub fn frame_built(&self, format: Format) {
        self.frames_built[format.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message frame compressed in `format`.
    #[inline]
    pub fn deflated(&self, format: Format) {
        self.frames_deflated[format.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The last rendered `/stats` and `/metrics` bodies, reused for a short while so that a
/// scraper (or many) does not walk every channel and connection per request.
#[derive(Debug, Default)]
pub struct SnapshotCache(
    parking_lot::Mutex<[Option<(Instant, bytes::Bytes)>; SnapshotCache::SLOTS]>,
);

impl SnapshotCache {
    /// How many bodies it holds (a slot each: one per endpoint and view).
    pub const SLOTS: usize = 4;

    /// The body in `slot` if it is younger than `ttl`, else a fresh one from `build`
    /// (built under the lock: concurrent requests wait for one build, not do many).
    pub fn get_or(
        &self,
        slot: usize,
        ttl: std::time::Duration,
        build: impl FnOnce() -> Vec<u8>,
    ) -> bytes::Bytes {
        let mut slots = self.0.lock();
        if let Some((at, body)) = &slots[slot] {
            if at.elapsed() < ttl {
                return body.clone();
            }
        }
        let body = bytes::Bytes::from(build());
        slots[slot] = Some((Instant::now(), body.clone()));
        body
    }
}

/// Resident memory of this process in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
