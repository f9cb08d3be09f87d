//! The relay-wide state every connection and source shares: settings, the hub, counters,
//! the open connections' outboxes, credentials, and the publish funnel.
//!
//! Every source of messages publishes through [`Relay::publish`] (or
//! [`Relay::publish_at`] for messages sequenced elsewhere), never into the hub directly,
//! so a backplane can take the assignment of offsets over in one place.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::error::ErrorCode;
use crate::hub::{Hub, Published, Sequenced};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::close::CloseCode;
use crate::protocol::format::Format;
use crate::shutdown::{Drain, LiveGuard};

/// The close every connection gets when the relay shuts down, in its format.
pub fn shutdown_close(format: Format) -> bytes::Bytes {
    format.close(CloseCode::GOING_AWAY, "server shutting down")
}

/// Everything connections share.
#[derive(Debug)]
pub struct Relay {
    /// Settings and limits.
    pub config: Config,
    /// The channel table.
    pub hub: Hub,
    /// Counters.
    pub metrics: Arc<Metrics>,
    next_conn: AtomicU64,
    /// The shutdown flag and the live connections it waits for.
    pub drain: Arc<Drain>,
    /// Every open connection, for `/stats` and shutdown (registered and removed by
    /// sessions).
    conns: parking_lot::Mutex<std::collections::HashMap<u64, Conn>>,
    /// JWT verification (`None`: no JWT key configured).
    pub jwt: Option<Arc<crate::auth::Verifier>>,
    /// Open WebSockets per client address.
    pub per_ip: Arc<crate::limits::PerIp>,
    /// HTTP connections not upgraded (yet), against `--max-http-connections`.
    http_connections: std::sync::atomic::AtomicUsize,
    /// `/stats` and `/metrics` bodies, reused for `--stats-cache-ms`.
    pub snapshots: crate::metrics::SnapshotCache,
    /// The Redis backplane (`--redis`): when set, it assigns every offset.
    pub backplane: Option<Arc<crate::backplane::Backplane>>,
    /// The upstream relay (`--upstream`): when set, it assigns every offset.
    pub upstream: Option<Arc<crate::upstream::Upstream>>,
    /// This relay's node id (`--node-id`, else random): the backplane's node list, the
    /// edge chain's loop detection.
    pub node: String,
}

impl crate::backplane::Mirror for Relay {
    fn hub(&self) -> &Hub {
        &self.hub
    }
}

/// An open connection as `/stats` and shutdown see it.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Its outbound queue.
    pub outbox: Arc<Outbox>,
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// When it was upgraded.
    pub since: std::time::Instant,
    /// The dialect it speaks ([`crate::dialect::Dialect::NAME`]).
    pub dialect: &'static str,
}

/// One connection in the slowest-consumer list (see [`Relay::slowest`]).
#[derive(Debug, Clone)]
pub struct Consumer {
    /// The connection's id.
    pub conn: u64,
    /// The connection.
    pub info: Conn,
    /// Bytes queued, in flight or held back.
    pub queued_bytes: usize,
    /// Age of the oldest channel message not sent yet, ms ([`Outbox::lag_ms`]).
    pub lag_ms: u64,
    /// Messages replaced by newer ones before they were sent.
    pub conflated: u64,
}

/// Holds one of the `--max-http-connections` places until dropped.
#[derive(Debug)]
pub struct HttpSlot(Arc<Relay>);

impl Drop for HttpSlot {
    fn drop(&mut self) {
        self.0.http_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Holds one of the `max_connections` WebSocket places until dropped.
#[derive(Debug)]
pub struct WsSlot(Arc<Relay>);

impl Drop for WsSlot {
    fn drop(&mut self) {
        self.0.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Relay {
    /// Relay state for `config`.
    pub fn new(config: Config) -> Arc<Relay> {
        // The verifier `Config::load_file` built; without one, build it here.
        let jwt = config.jwt.clone().or_else(|| {
            let built = crate::auth::Verifier::new(&config.jwt_settings()).unwrap_or_else(|e| {
                // `Config::load_file` reports this at start-up; fail closed here.
                tracing::error!(error = %e, "JWT key unusable: every token will be refused");
                None
            });
            built.map(Arc::new)
        });
        // `Config::load_file` checked it at start-up; the Socket.IO frames read it.
        if let Ok(c) = crate::protocol::socketio::crs::Channels::parse(&config.socketio_channels) {
            crate::protocol::socketio::crs::configure(c);
        }
        let per_ip = crate::limits::PerIp::new(config.max_connections_per_ip);
        let metrics = Arc::new(Metrics::default());
        let hub = Hub::new(config.shard_count(), config.max_channels, metrics.clone())
            .with_history(config.namespaces.clone(), config.history_max_bytes)
            .with_deflate(config.deflate)
            .with_publisher_reserve(
                config
                    .publisher_channel_reserve
                    .min(config.max_channels / 10),
            );
        let node = config.node_id.clone().unwrap_or_else(|| {
            let seed = crate::hub::now_ms() ^ ((std::process::id() as u64) << 40);
            format!("node-{}", crate::hub::Epoch::from_bits(seed).as_str())
        });
        let backplane = config.redis.as_deref().map(|url| {
            let bp = crate::backplane::Backplane::new(
                url,
                &config.redis_prefix,
                Some(&node),
                config.namespaces.clone(),
                std::time::Duration::from_millis(config.redis_linger_ms),
            )
            // `Config::load_file` checked the URL at start-up.
            .unwrap_or_else(|e| panic!("{e}"));
            let bp = Arc::new(bp);
            hub.watch(bp.clone());
            bp
        });
        let upstream = crate::upstream::Upstream::new(&config.upstream, &node).map(|up| {
            let up = Arc::new(up);
            hub.watch(up.clone());
            up
        });
        Arc::new(Relay {
            backplane,
            upstream,
            node,
            config,
            hub,
            metrics,
            next_conn: AtomicU64::new(1),
            drain: Arc::default(),
            conns: Default::default(),
            jwt,
            per_ip,
            snapshots: Default::default(),
            http_connections: Default::default(),
        })
    }

    /// Registers a connection until [`Relay::unregister`].
    pub fn register(&self, conn: u64, info: Conn) {
        self.conns.lock().insert(conn, info);
    }

    /// Forgets a closed connection.
    pub fn unregister(&self, conn: u64) {
        self.conns.lock().remove(&conn);
    }

    fn outboxes(&self) -> Vec<Arc<Outbox>> {
        self.conns
            .lock()
            .values()
            .map(|c| c.outbox.clone())
            .collect()
    }

    /// Bytes queued or in flight over all connections (walks every outbox: for `/stats`,
    /// not for hot paths).
    pub fn queued_bytes(&self) -> u64 {
        self.outboxes()
            .iter()
            .map(|o| o.queued_bytes() as u64)
            .sum()
    }

    /// Every open connection with its queue figures, the furthest behind first (by lag,
    /// then queued bytes). Walks every connection: for `/stats` and `/metrics` (cached
    /// snapshots), not for hot paths.
    pub fn consumers(&self) -> Vec<Consumer> {
        let all: Vec<(u64, Conn)> = self
            .conns
            .lock()
            .iter()
            .map(|(k, c)| (*k, c.clone()))
            .collect();
        let now = crate::hub::now_ms();
        let mut out: Vec<Consumer> = all
            .into_iter()
            .map(|(conn, info)| Consumer {
                conn,
                queued_bytes: info.outbox.queued_bytes(),
                lag_ms: info.outbox.lag_ms(now),
                conflated: info.outbox.conflated(),
                info,
            })
            .collect();
        out.sort_unstable_by(|a, b| {
            (b.lag_ms, b.queued_bytes, a.conn).cmp(&(a.lag_ms, a.queued_bytes, b.conn))
        });
        out
    }

    /// Queues `1001 server shutting down` (in each connection's format) behind what every
    /// open connection already has queued. Sessions registered after this walk see the
    /// shutdown flag instead.
    pub fn close_all(&self) {
        for o in self.outboxes() {
            o.close_with(shutdown_close(o.format()));
        }
    }

    /// The funnel for sources that can wait (HTTP, WebSocket, the demo feed): through the
    /// backplane when there is one (Redis assigns the offsets, all or none), else
    /// [`Relay::publish`] item by item, stopping at the first failure.
    pub async fn publish_many(&self, items: &[(&str, &[u8])]) -> Result<Vec<Published>, ErrorCode> {
        if let Some(bp) = &self.backplane {
            return bp.publish(items).await;
        }
        if let Some(up) = &self.upstream {
            return up.publish(items).await;
        }
        items.iter().map(|(c, d)| self.hub.publish(c, d)).collect()
    }

    /// Whether offsets are assigned elsewhere (Redis, an upstream relay): publishes go
    /// through [`Relay::publish_many`] and channels are loaded before they are served.
    pub fn sequenced_elsewhere(&self) -> bool {
        self.backplane.is_some() || self.upstream.is_some()
    }

    /// Whether `channel` can be served now (loaded from where it is sequenced, or nothing
    /// to load).
    pub fn is_warm(&self, channel: &str) -> bool {
        match (&self.backplane, &self.upstream) {
            (Some(bp), _) => bp.is_warm(channel),
            (None, Some(up)) => up.is_warm(channel),
            (None, None) => true,
        }
    }

    /// Loads `channels` from where they are sequenced before they are served (at most
    /// 2 s).
    pub async fn warm<S: AsRef<str>>(&self, channels: &[S]) {
        if let Some(bp) = &self.backplane {
            bp.warm(channels).await;
        } else if let Some(up) = &self.upstream {
            up.warm(channels).await;
        }
    }

    /// The single entry for every source of publishes on a relay without backplane (the
    /// sources that can wait use [`Relay::publish_many`], which takes the backplane when
    /// there is one): `data` is valid JSON of at most `--max-message-bytes` and `channel`
    /// a validated name. The hub assigns the offset.
    pub fn publish(&self, channel: &str, data: &[u8]) -> Result<Published, ErrorCode> {
        self.hub.publish(channel, data)
    }

    /// The funnel for a message sequenced elsewhere (epoch and offset assigned by an
    /// upstream relay or the backplane); `None` for a duplicate. See [`Hub::publish_at`].
    pub fn publish_at(
        &self,
        channel: &str,
        at: Sequenced,
        data: &[u8],
    ) -> Result<Option<Published>, ErrorCode> {
        self.hub.publish_at(channel, at, data)
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Resolves once shutdown has begun.
    pub async fn shutdown_started(&self) {
        self.drain.wait_started().await
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.drain.started()
    }

    /// Counts a connection as live for the shutdown drain until the guard is dropped.
    pub fn track(&self) -> LiveGuard {
        self.drain.track()
    }

    /// Takes a WebSocket place, or `None` at `max_connections`. The last
    /// `trusted_reserve` places (at most a tenth of them) are for `trusted` connections
    /// only (the publish key, admin tokens).
    pub fn ws_slot(self: &Arc<Self>, trusted: bool) -> Option<WsSlot> {
        let cfg = &self.config;
        let reserve = cfg.trusted_reserve.min(cfg.max_connections / 10);
        let limit = if trusted {
            cfg.max_connections
        } else {
            cfg.max_connections - reserve
        };
        let m = &self.metrics;
        let before = m.connections.fetch_add(1, Ordering::Relaxed);
        if before as usize >= limit {
            m.connections.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        m.connections_total.fetch_add(1, Ordering::Relaxed);
        Some(WsSlot(self.clone()))
    }

    /// Counts an HTTP connection until the guard is dropped, or `None` at
    /// `--max-http-connections`.
    pub fn http_slot(self: &Arc<Self>) -> Option<HttpSlot> {
        let before = self.http_connections.fetch_add(1, Ordering::Relaxed);
        if before >= self.config.max_http_connections {
            self.http_connections.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(HttpSlot(self.clone()))
    }

    /// Plain HTTP connections open now (not upgraded).
    pub fn http_connections(&self) -> usize {
        self.http_connections.load(Ordering::Relaxed)
    }

    /// The credentials this relay accepts, for [`crate::auth::check`].
    pub fn keys(&self) -> crate::auth::Keys<'_> {
        crate::auth::Keys {
            publish_key: self.config.publish_key.as_deref(),
            relay_key: self.config.upstream.relay_key.as_deref(),
            jwt: self.jwt.as_deref(),
        }
    }

    /// Constant-time check of a presented publish key.
    pub fn check_publish_key(&self, presented: &str) -> bool {
        self.keys().is_publish_key(presented)
    }
}

/// Spawns a WebSocket session holding `slot`, counted as live for the shutdown drain.
pub(crate) fn spawn_session<F>(relay: &Arc<Relay>, slot: WsSlot, session: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(Holding {
        session,
        held: Some((slot, relay.track())),
    });
}

/// Spawns `session` as a task that keeps `held` (its places in the connection limits,
/// the shutdown's count of live sessions) until it ends.
pub(crate) fn spawn_holding<F, H>(session: F, held: H)
where
    F: Future<Output = ()> + Send + 'static,
    H: Send + 'static,
{
    tokio::spawn(Holding {
        session,
        held: Some(held),
    });
}

pin_project_lite::pin_project! {
    /// A session and what it holds, released as it ends. Not an `async` block: one
    /// awaiting a captured future keeps it twice, the capture and the awaited copy
    /// (W3 measured the connection's task at 2.6 KB for a 1.2 KB session).
    struct Holding<F, H> {
        #[pin]
        session: F,
        held: Option<H>,
    }
}

impl<F: Future<Output = ()>, H> Future for Holding<F, H> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let me = self.project();
        let done = me.session.poll(cx);
        if done.is_ready() {
            drop(me.held.take());
        }
        done
    }
}

#[cfg(test)]
mod tests {
    /// A spawned session costs its own size and its guard's, not twice its size (an
    /// `async` block awaiting a captured future holds it twice).
    #[test]
    fn holding_a_session_does_not_copy_it() {
        let big = [0u8; 1000];
        let session = async move {
            tokio::task::yield_now().await;
            std::hint::black_box(&big);
        };
        let alone = std::mem::size_of_val(&session);
        let held = super::Holding {
            session,
            held: Some(0u64),
        };
        assert!(alone >= 1000, "the test future holds its array: {alone}");
        let both = std::mem::size_of_val(&held);
        assert!(
            both <= alone + 16,
            "{both} bytes for a {alone}-byte session"
        );
    }

    #[test]
    fn the_relay_takes_the_verifier_load_file_built() {
        let mut config = crate::Config {
            jwt_secret: Some("a-secret".into()),
            ..crate::Config::default()
        };
        config.load_file().unwrap();
        let built = config.jwt.clone().expect("load_file builds the verifier");
        let relay = super::Relay::new(config);
        let used = relay.jwt.as_ref().expect("the relay has a verifier");
        assert!(
            std::sync::Arc::ptr_eq(&built, used),
            "built once, not again"
        );
        // Without load_file the relay builds its own.
        let config = crate::Config {
            jwt_secret: Some("a-secret".into()),
            ..crate::Config::default()
        };
        assert!(super::Relay::new(config).jwt.is_some());
    }
}
