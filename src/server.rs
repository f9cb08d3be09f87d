//! The accept loop, the background tasks, and the shutdown sequence (the state they
//! share is [`crate::relay`], the drain [`crate::shutdown`]).
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
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::relay::Relay;
use crate::routes::Routes;
use crate::stream::write_timeout::WriteTimeout;
use crate::tls::Tls;

/// Serves one accepted connection: TLS first when `tls` is set, then HTTP/1.1 (and its
/// upgrade). Accepted during the drain, it answers one request and closes: `/health`
/// says `draining`, an upgrade gets 503.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    relay: Arc<Relay>,
    routes: Arc<Routes>,
    tls: Option<Arc<Tls>>,
) {
    // Connections not (yet) upgraded are counted: idle or slow HTTP clients, and TLS
    // handshakes in progress, cannot hold more than --max-http-connections descriptors
    // (an upgrade ends the count: the WebSocket limits take over).
    let Some(_http) = relay.http_slot() else {
        // A TLS client could not read a plain answer: it is closed before any TLS work.
        if tls.is_none() {
            busy(stream).await;
        }
        return;
    };
    let timeout = Duration::from_millis(relay.config.handshake_timeout_ms);
    match tls {
        Some(tls) => {
            if let Some(s) = tls.accept(stream, timeout).await {
                serve_http(s, peer, relay, routes).await;
            }
        }
        None => serve_http(stream, peer, relay, routes).await,
    }
}

/// Answers 503 to a connection over `--max-http-connections`.
async fn busy(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 55\r\nconnection: close\r\n\r\ntoo many HTTP connections (see --max-http-connections)\n";
    // Answer, then read (and drop) what the client sent for a moment: closing with
    // its request unread would reset the connection before it reads the answer.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        let mut left: usize = 16 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// HTTP/1.1 over `io` (a TCP stream, or TLS over one) until the client or the drain
/// ends it.
async fn serve_http<S>(io: S, peer: SocketAddr, relay: Arc<Relay>, routes: Arc<Routes>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let draining = relay.is_shutting_down();
    // Drain-time connections are not waited for: they hold no session.
    let _live = (!draining).then(|| relay.track());
    let cfg = &relay.config;
    let svc_relay = relay.clone();
    let svc = service_fn(move |req| {
        let relay = svc_relay.clone();
        let routes = routes.clone();
        async move {
            let resp = crate::http::route_with(req, relay, peer, &routes).await;
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(cfg.handshake_timeout_ms))
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .max_header_size(cfg.max_header_bytes)
        .keep_alive(!draining)
        .serve_connection(
            TokioIo::new(WriteTimeout::new(
                io,
                Duration::from_millis(cfg.http_write_timeout_ms),
            )),
            svc,
        )
        .with_upgrades();
    tokio::pin!(conn);
    if draining {
        let _ = conn.await;
        return;
    }
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = relay.shutdown_started() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A listener on `addr` with a backlog of `backlog` pending connections (tokio's own
/// `bind` uses the standard library's 128, which a burst of reconnects overflows: the
/// kernel then drops SYNs and clients wait a second or more to retry).
pub fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `listener` until `shutdown` resolves, then drains.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) {
    let relay = Relay::new(config);
    serve(listener, relay, shutdown).await
}

/// [`run`] with more listeners, each with its own route table (`[[listener]]`).
pub async fn run_with(
    listener: TcpListener,
    extra: Vec<(TcpListener, Arc<Routes>)>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) {
    let relay = Relay::new(config);
    serve_with(listener, extra, relay, shutdown).await
}

/// [`run`] with relay state made by the caller (to read its metrics or hub).
pub async fn serve(listener: TcpListener, relay: Arc<Relay>, shutdown: impl Future<Output = ()>) {
    serve_with(listener, Vec::new(), relay, shutdown).await
}

/// [`serve`] with more listeners, each with its own route table. They stop accepting
/// when the shutdown starts; the main listener answers during the drain.
pub async fn serve_with(
    listener: TcpListener,
    extra: Vec<(TcpListener, Arc<Routes>)>,
    relay: Arc<Relay>,
    shutdown: impl Future<Output = ()>,
) {
    for (l, routes) in extra {
        tokio::spawn(accept_routed(l, routes, relay.clone()));
    }
    let cfg = &relay.config;
    if cfg.demo {
        tokio::spawn(crate::demo::run(relay.clone()));
    }
    tokio::spawn(sweep_channels(relay.clone()));
    if let Some(tls) = &cfg.tls_state {
        let r = relay.clone();
        tokio::spawn(crate::tls::watch(tls.clone(), async move {
            r.shutdown_started().await
        }));
    }
    if let Some(bp) = &relay.backplane {
        let max = cfg.max_message_bytes;
        let task = crate::backplane::run(relay.clone(), bp.clone(), relay.drain.clone(), max);
        tokio::spawn(task);
    }
    if let Some(up) = &relay.upstream {
        let (r, up) = (relay.clone(), up.clone());
        tokio::spawn(async move {
            let ctx = crate::upstream::Ctx {
                hub: &r.hub,
                namespaces: &r.config.namespaces,
                drain: &r.drain,
                max_message: r.config.max_message_bytes,
            };
            crate::upstream::run(ctx, up).await
        });
    }
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
        tokio::spawn(serve_connection(
            stream,
            peer,
            relay.clone(),
            Routes::native(),
            cfg.tls_state.clone(),
        ));
    }
    tracing::info!("shutting down: closing connections with 1001");
    relay.drain.begin();
    relay.close_all();
    // The listener stays open while connections drain, so load balancers see
    // `/health` answer 503 `draining` (and new upgrades 503) instead of a refused port.
    let grace = Duration::from_millis(cfg.shutdown_grace_ms);
    let answer_while_draining = async {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    nodelay.apply(&stream);
                    let (native, tls) = (Routes::native(), cfg.tls_state.clone());
                    tokio::spawn(serve_connection(stream, peer, relay.clone(), native, tls));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    let drained = tokio::select! {
        d = relay.drain.wait_all_gone(grace) => d,
        _ = answer_while_draining => false,
    };
    drop(listener);
    if !drained {
        tracing::warn!(
            left = relay.drain.live(),
            "shutdown grace over; dropping connections"
        );
    }
}

/// The accept loop of a listener with its own routes, until the shutdown starts.
async fn accept_routed(listener: TcpListener, routes: Arc<Routes>, relay: Arc<Relay>) {
    let mut nodelay = NoDelay::on(&listener);
    let tls = if routes.plain {
        None
    } else {
        relay.config.tls_state.clone()
    };
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = relay.shutdown_started() => return,
        };
        nodelay.apply(&stream);
        tokio::spawn(serve_connection(
            stream,
            peer,
            relay.clone(),
            routes.clone(),
            tls.clone(),
        ));
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
    /// Connects `n` clients at once to a listener nobody accepts on; returns how many
    /// connected within a second (the rest sit in SYN retries: the backlog is full).
    async fn connected_without_accept(l: &super::TcpListener, n: usize) -> usize {
        let addr = l.local_addr().unwrap();
        let tries = (0..n).map(|_| {
            tokio::spawn(async move {
                let c = super::TcpStream::connect(addr);
                tokio::time::timeout(super::Duration::from_secs(1), c)
                    .await
                    .ok()
                    .and_then(Result::ok)
            })
        });
        let mut held = Vec::new();
        for t in tries.collect::<Vec<_>>() {
            if let Some(s) = t.await.unwrap() {
                held.push(s);
            }
        }
        held.len()
    }

    #[tokio::test]
    async fn the_listen_backlog_takes_a_reconnect_burst() {
        const BURST: usize = 600;
        let ours = super::listen("127.0.0.1:0".parse().unwrap(), 4096).unwrap();
        assert_eq!(connected_without_accept(&ours, BURST).await, BURST);
        // tokio's default (128) does not, which is what this guards against.
        let default = super::TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert!(connected_without_accept(&default, BURST).await < BURST);
    }

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
}
