//! The Redis backplane (`--redis`): several relays on one Redis, every channel with one
//! offset sequence and one epoch across all of them.
//!
//! ```text
//!  publish on any node ─► Backplane::publish ─► EVALSHA script::PUBLISH (atomic per batch):
//!                          next offset, keep epoch, XADD P{C}:h (trimmed), PUBLISH P{C}
//!  every node with local subscribers of C ◄─ SUBSCRIBE P{C} ◄─┘
//!        └─► task: next offset? Hub::publish_at : repair from the stream, then publish_at
//! ```
//!
//! - **Redis assigns, nodes mirror.** With `--redis` no node assigns an offset: a publish
//!   (HTTP, a batch, WS, the demo feed) runs [`script::PUBLISH`], and the publishing
//!   node's own subscribers get the message like everyone else's, from the pub/sub
//!   connection, so every node delivers the same messages in the same order.
//! - **Interest.** A node subscribes in Redis only to channels with local subscribers
//!   (told by the hub, see [`crate::hub::Interest`]) and unsubscribes `--redis-linger-ms`
//!   after the last one left.
//! - **Warm before serving.** Before a node serves a channel it has not mirrored (a
//!   subscribe, `GET /history`), it subscribes in Redis and loads the channel's stream
//!   into its hub ([`Backplane::warm`]), so last value, `recover` and history work on a
//!   node that never saw the channel.
//! - **Gaps** (a message past the next offset, a pub/sub reconnect) are repaired from the
//!   stream with [`script::READ`] before anything newer is delivered. If Redis lost the
//!   channel (restarted empty), the node takes the new epoch and subscribers of reliable
//!   channels get a `reset` notice.
//! - **Redis down**: publishes fail with [`ErrorCode::Unavailable`] (HTTP 503);
//!   connections stay open; `/health` and `/metrics` say so; the task reconnects.
//! - **Nodes** announce themselves on `P:nodes` once a second; `/stats` lists those heard
//!   from in the last [`NODE_TIMEOUT`].
//!
//! Redis Cluster: every key and pub/sub name of a channel has the hash tag `{C}`, so
//! moving to sharded pub/sub is `PUBLISH` → `SPUBLISH` in the script and `SUBSCRIBE` →
//! `SSUBSCRIBE` on one connection per shard; a batch must then stay within one slot.

pub mod resp;
pub mod script;
mod task;

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::ErrorCode;
use crate::hub::{Epoch, Interest, InterestEvent, Position, Published, Wanted};
use crate::namespace::Namespaces;
pub use task::{run, Mirror};

/// A node not heard from for this long is no longer listed.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a command to Redis may take before the publish fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a subscribe waits for a channel to be loaded from Redis.
const WARM_TIMEOUT: Duration = Duration::from_secs(2);

/// The backplane's shared state (the task that reads pub/sub is [`run`]).
#[derive(Debug)]
pub struct Backplane {
    client: redis::Client,
    /// Key and channel names.
    pub keys: script::Keys,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    publish: redis::Script,
    read: redis::Script,
    /// This node's name.
    pub node: String,
    namespaces: Arc<Namespaces>,
    epoch_seed: AtomicU64,
    /// The pub/sub connection is up.
    up: AtomicBool,
    /// Pub/sub reconnects after the first connection.
    pub reconnects: AtomicU64,
    /// Publishes refused because Redis could not be reached.
    pub failed_publishes: AtomicU64,
    /// Gap repairs (a stream read that delivered or realigned something).
    pub repairs: AtomicU64,
    /// The channels this node wants from Redis (see [`Wanted`]).
    pub(crate) wanted: Wanted,
    nodes: Mutex<HashMap<String, Instant>>,
}

impl Backplane {
    /// A backplane on the Redis at `url` (nothing is connected yet).
    pub fn new(
        url: &str,
        prefix: &str,
        node: Option<&str>,
        namespaces: Arc<Namespaces>,
        linger: Duration,
    ) -> Result<Backplane, String> {
        let client = redis::Client::open(url).map_err(|e| format!("--redis {url:?}: {e}"))?;
        if !matches!(
            client.get_connection_info().addr(),
            redis::ConnectionAddr::Tcp(..)
        ) {
            return Err("--redis: only redis:// (TCP) URLs are supported".into());
        }
        let seed = crate::hub::now_ms() ^ ((std::process::id() as u64) << 40);
        let node = node.map_or_else(|| format!("node-{}", fresh(seed).as_str()), str::to_string);
        Ok(Backplane {
            client,
            keys: script::Keys::new(prefix),
            conn: Default::default(),
            publish: redis::Script::new(script::PUBLISH),
            read: redis::Script::new(script::READ),
            node,
            namespaces,
            epoch_seed: AtomicU64::new(seed),
            up: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            failed_publishes: AtomicU64::new(0),
            repairs: AtomicU64::new(0),
            wanted: Wanted::new(linger),
            nodes: Default::default(),
        })
    }

    /// Whether the pub/sub connection to Redis is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether `channel` can be served without [`Backplane::warm`] (loaded, or Redis
    /// down: nothing to load from).
    pub fn is_warm(&self, channel: &str) -> bool {
        !self.is_up() || self.wanted.is_warm(channel)
    }

    /// `up` or `down`, for `/health`, `/stats`.
    pub fn state(&self) -> &'static str {
        if self.is_up() {
            "up"
        } else {
            "down"
        }
    }

    /// Nodes heard from within [`NODE_TIMEOUT`], sorted.
    pub fn live_nodes(&self) -> Vec<String> {
        let now = Instant::now();
        let mut v: Vec<String> = self
            .nodes
            .lock()
            .iter()
            .filter(|(_, t)| now.duration_since(**t) < NODE_TIMEOUT)
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }

    fn new_epoch(&self) -> Epoch {
        fresh(
            self.epoch_seed
                .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed),
        )
    }

    /// The command connection, connected if needed.
    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, ErrorCode> {
        let mut held = self.conn.lock().await;
        if let Some(c) = held.as_ref() {
            return Ok(c.clone());
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        match self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
        {
            Ok(c) => {
                *held = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                tracing::debug!(error = %e, "backplane: cannot connect to Redis");
                Err(ErrorCode::Unavailable)
            }
        }
    }

    /// Forgets the command connection after an error: it may be broken (Redis restarted,
    /// a timeout), and a fresh one costs one connect.
    async fn broken(&self, e: &redis::RedisError) {
        tracing::debug!(error = %e, "backplane: dropping the command connection");
        *self.conn.lock().await = None;
    }

    /// Publishes `items` (validated channel, valid JSON data) through Redis, all or none:
    /// one script run assigns every offset. The `delivered` of each result is the number
    /// of relay nodes that received the message. Local subscribers get it from the
    /// pub/sub connection, like every other node's.
    pub async fn publish(&self, items: &[(&str, &[u8])]) -> Result<Vec<Published>, ErrorCode> {
        let r = self.try_publish(items).await;
        if r.is_err() {
            self.failed_publishes.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn try_publish(&self, items: &[(&str, &[u8])]) -> Result<Vec<Published>, ErrorCode> {
        let mut conn = self.connection().await?;
        let ts = crate::hub::now_ms().to_string();
        let mut inv = self.publish.prepare_invoke();
        inv.arg(items.len()).arg(script::META_TTL_MS);
        for (channel, data) in items {
            let ns = self.namespaces.of(channel);
            let ttl = ns.history_ttl.map_or(0, |d| d.as_millis().max(1) as u64);
            inv.key(self.keys.meta(channel))
                .key(self.keys.log(channel))
                .arg(self.keys.pubsub(channel))
                .arg(*data)
                .arg(&ts)
                .arg(ns.history)
                .arg(ttl)
                .arg(self.new_epoch().as_str());
        }
        let out: Vec<(String, u64, u64)> = match inv.invoke_async(&mut conn).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "backplane: publish failed");
                self.broken(&e).await;
                return Err(ErrorCode::Unavailable);
            }
        };
        out.into_iter()
            .map(|(epoch, offset, nodes)| {
                Ok(Published {
                    position: Position {
                        epoch: Epoch::parse(&epoch).ok_or(ErrorCode::Unavailable)?,
                        offset,
                    },
                    delivered: nodes as usize,
                })
            })
            .collect()
    }

    /// Reads where `channel` stands in Redis and up to `count` entries after the node's
    /// position (`since`, in epoch `epoch`): `(epoch, head, [(offset, ts, data)])`.
    async fn read(
        &self,
        channel: &str,
        epoch: &str,
        since: u64,
        count: usize,
    ) -> Result<(Epoch, u64, Vec<(u64, u64, Vec<u8>)>), ErrorCode> {
        let mut conn = self.connection().await?;
        let mut inv = self.read.prepare_invoke();
        inv.key(self.keys.meta(channel))
            .key(self.keys.log(channel))
            .arg(self.new_epoch().as_str())
            .arg(script::META_TTL_MS)
            .arg(epoch)
            .arg(since)
            .arg(count);
        type Raw = (String, u64, Vec<(String, Vec<(String, Vec<u8>)>)>);
        let (e, head, raw): Raw = match inv.invoke_async(&mut conn).await {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(error = %err, "backplane: stream read failed");
                self.broken(&err).await;
                return Err(ErrorCode::Unavailable);
            }
        };
        let epoch = Epoch::parse(&e).ok_or(ErrorCode::Unavailable)?;
        let mut entries = Vec::with_capacity(raw.len());
        for (id, fields) in raw {
            let Some(offset) = id.split('-').next().and_then(|o| o.parse().ok()) else {
                continue;
            };
            let mut ts = 0;
            let mut data = None;
            for (k, v) in fields {
                match k.as_str() {
                    "ts" => {
                        ts = std::str::from_utf8(&v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0)
                    }
                    "d" => data = Some(v),
                    _ => {}
                }
            }
            if let Some(d) = data {
                entries.push((offset, ts, d));
            }
        }
        Ok((epoch, head, entries))
    }

    /// Makes sure every channel of `channels` is subscribed in Redis and loaded into the
    /// hub before it is served (see the module docs); waits at most [`WARM_TIMEOUT`],
    /// and not at all while Redis is down (the channel is repaired when it returns).
    pub async fn warm<S: AsRef<str>>(&self, channels: &[S]) {
        if !self.is_up() {
            return;
        }
        self.wanted.warm(channels, WARM_TIMEOUT).await
    }
}

impl Interest for Backplane {
    fn changed(&self, channel: &str, event: InterestEvent) {
        self.wanted.changed(channel, event)
    }
}

/// An epoch from 64 bits, spread (splitmix64).
fn fresh(seed: u64) -> Epoch {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    Epoch::from_bits(z ^ (z >> 31))
}
