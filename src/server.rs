//! The accept loop, the relay-wide state, and graceful shutdown.
//!
//! [`run`] takes a bound listener and a shutdown future (mini-redis style): `main` passes
//! SIGINT/SIGTERM, tests pass a oneshot. On shutdown the listener is dropped, plain HTTP
//! connections finish their request, every WebSocket is sent `1001 going away` after what
//! is already queued for it, and `run` returns once all connections are gone or
//! `shutdown_grace_ms` has passed.

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::hub::outbox::Outbox;
use crate::hub::Hub;
use crate::metrics::Metrics;

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
    shutdown: watch::Sender<bool>,
    /// Open TCP connections (HTTP and WebSocket), for the shutdown drain.
    live: AtomicUsize,
    all_gone: Notify,
    /// Every open connection's outbox, for `/stats` (registered and removed by sessions).
    outboxes: parking_lot::Mutex<std::collections::HashMap<u64, Arc<Outbox>>>,
    /// JWT verification (`None`: no JWT key configured).
    pub jwt: Option<Arc<crate::auth::Verifier>>,
    /// Open WebSockets per client address.
    pub per_ip: Arc<crate::limits::PerIp>,
}

/// Counts a connection as live until dropped.
#[derive(Debug)]
pub struct LiveGuard(Arc<Relay>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_gone.notify_waiters();
        }
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
        let per_ip = crate::limits::PerIp::new(config.max_connections_per_ip);
        let metrics = Arc::new(Metrics::default());
        let hub = Hub::new(config.shard_count(), config.max_channels, metrics.clone())
            .with_history(config.namespaces.clone(), config.history_max_bytes);
        Arc::new(Relay {
            config,
            hub,
            metrics,
            next_conn: AtomicU64::new(1),
            shutdown: watch::Sender::new(false),
            live: AtomicUsize::new(0),
            all_gone: Notify::new(),
            outboxes: Default::default(),
            jwt,
            per_ip,
        })
    }

    /// Registers a connection's outbox until [`Relay::unregister`].
    pub fn register(&self, conn: u64, outbox: Arc<Outbox>) {
        self.outboxes.lock().insert(conn, outbox);
    }

    /// Forgets a closed connection's outbox.
    pub fn unregister(&self, conn: u64) {
        self.outboxes.lock().remove(&conn);
    }

    /// Bytes queued or in flight over all connections (walks every outbox: for `/stats`,
    /// not for hot paths).
    pub fn queued_bytes(&self) -> u64 {
        let all: Vec<Arc<Outbox>> = self.outboxes.lock().values().cloned().collect();
        all.iter().map(|o| o.queued_bytes() as u64).sum()
    }

    /// Queues `1001 server shutting down` behind what every open connection already has
    /// queued. Sessions registered after this walk see the shutdown flag instead.
    fn close_all(&self) {
        let all: Vec<Arc<Outbox>> = self.outboxes.lock().values().cloned().collect();
        for o in all {
            o.close_with(crate::session::shutdown_close());
        }
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Resolves once shutdown has begun.
    pub async fn shutdown_started(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn track(self: &Arc<Self>) -> LiveGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        LiveGuard(self.clone())
    }

    /// Takes a WebSocket place, or `None` at `max_connections`.
    pub fn ws_slot(self: &Arc<Self>) -> Option<WsSlot> {
        let m = &self.metrics;
        let before = m.connections.fetch_add(1, Ordering::Relaxed);
        if before as usize >= self.config.max_connections {
            m.connections.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        m.connections_total.fetch_add(1, Ordering::Relaxed);
        Some(WsSlot(self.clone()))
    }

    /// The credentials this relay accepts, for [`crate::auth::check`].
    pub fn keys(&self) -> crate::auth::Keys<'_> {
        crate::auth::Keys {
            publish_key: self.config.publish_key.as_deref(),
            jwt: self.jwt.as_deref(),
        }
    }

    /// Constant-time check of a presented publish key.
    pub fn check_publish_key(&self, presented: &str) -> bool {
        self.keys().is_publish_key(presented)
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, relay: Arc<Relay>) {
    let _live = relay.track();
    let cfg = &relay.config;
    let svc_relay = relay.clone();
    let svc = service_fn(move |req| {
        let relay = svc_relay.clone();
        async move { Ok::<_, std::convert::Infallible>(crate::http::route(req, relay, peer).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(cfg.handshake_timeout_ms))
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .max_header_size(cfg.max_header_bytes)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = relay.shutdown_started() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Spawns a WebSocket session holding `slot`, counted as live for the shutdown drain.
pub(crate) fn spawn_session<F>(relay: &Arc<Relay>, slot: WsSlot, session: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let live = relay.track();
    tokio::spawn(async move {
        session.await;
        drop(slot);
        drop(live);
    });
}

/// Serves `listener` until `shutdown` resolves, then drains.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) {
    let relay = Relay::new(config);
    serve(listener, relay, shutdown).await
}

/// [`run`] with relay state made by the caller (to read its metrics or hub).
pub async fn serve(listener: TcpListener, relay: Arc<Relay>, shutdown: impl Future<Output = ()>) {
    let cfg = &relay.config;
    if cfg.demo {
        tokio::spawn(crate::demo::run(relay.clone()));
    }
    tokio::spawn(sweep_channels(relay.clone()));
    let mut nodelay = NoDelay::on(&listener);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning on accept.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        nodelay.apply(&stream);
        tokio::spawn(serve_connection(stream, peer, relay.clone()));
    }
    drop(listener);
    tracing::info!("shutting down: closing connections with 1001");
    relay.shutdown.send_replace(true);
    relay.close_all();
    let grace = Duration::from_millis(cfg.shutdown_grace_ms);
    let drained = tokio::time::timeout(grace, async {
        loop {
            let notified = relay.all_gone.notified();
            if relay.live.load(Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = relay.live.load(Ordering::Acquire),
            "shutdown grace over; dropping connections"
        );
    }
}

/// TCP_NODELAY for accepted sockets (every frame is written whole; Nagle would only
/// delay it). Linux copies it from the listening socket to each accepted one, which saves
/// a system call per connection; the first accepted socket shows whether that happened,
/// and if not, each socket is set on its own.
struct NoDelay {
    inherited: Option<bool>,
}

impl NoDelay {
    fn on(listener: &TcpListener) -> NoDelay {
        NoDelay {
            inherited: if set_listener_nodelay(listener) {
                None
            } else {
                Some(false)
            },
        }
    }

    fn apply(&mut self, stream: &TcpStream) {
        match self.inherited {
            Some(true) => {}
            Some(false) => {
                let _ = stream.set_nodelay(true);
            }
            None => {
                let got = stream.nodelay().unwrap_or(false);
                if !got {
                    let _ = stream.set_nodelay(true);
                }
                self.inherited = Some(got);
            }
        }
    }
}

#[cfg(unix)]
fn set_listener_nodelay(listener: &TcpListener) -> bool {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a live socket with a pointer to a local int and its size.
    unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

#[cfg(not(unix))]
fn set_listener_nodelay(_: &TcpListener) -> bool {
    false
}

async fn sweep_channels(relay: Arc<Relay>) {
    let idle = Duration::from_secs(relay.config.channel_idle_secs);
    let every = (idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = relay.shutdown_started() => return,
        }
        let n = relay.hub.sweep(idle);
        if n > 0 {
            tracing::debug!(reclaimed = n, "idle channels reclaimed");
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn every_accepted_socket_has_nagle_off() {
        let l = super::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut nd = super::NoDelay::on(&l);
        for _ in 0..3 {
            let _c = super::TcpStream::connect(addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            nd.apply(&s);
            assert!(s.nodelay().unwrap());
        }
        #[cfg(target_os = "linux")]
        assert_eq!(
            nd.inherited,
            Some(true),
            "Linux copies it from the listener"
        );
    }

    #[test]
    fn the_relay_takes_the_verifier_load_file_built() {
        let mut config = super::Config {
            jwt_secret: Some("a-secret".into()),
            ..super::Config::default()
        };
        config.load_file().unwrap();
        let built = config.jwt.clone().expect("load_file builds the verifier");
        let relay = super::Relay::new(config);
        let used = relay.jwt.as_ref().expect("the relay has a verifier");
        assert!(super::Arc::ptr_eq(&built, used), "built once, not again");
        // Without load_file the relay builds its own.
        let config = super::Config {
            jwt_secret: Some("a-secret".into()),
            ..super::Config::default()
        };
        assert!(super::Relay::new(config).jwt.is_some());
    }
}
