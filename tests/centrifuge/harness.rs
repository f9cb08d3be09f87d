//! What the SDK scripts of tests/clients/centrifuge/ talk to besides the relay: a loopback
//! TCP proxy in front of it that can cut every socket at once, and a small HTTP control
//! server (the test's side of the scenario) that serves the browser page and the SDK
//! bundle, mints tokens, publishes with POST /publish on the relay, cuts the proxied
//! sockets and restarts the relay (a new one, so new epochs, behind the same proxy).

use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tickrelay::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::support::{self, TestRelay};

/// Where the SDK scripts live.
pub const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/centrifuge");

/// The relay settings of these tests: HS256 tokens with a one-second leeway (so a token
/// that was not refreshed really ends soon after its `exp`).
pub fn relay_config() -> Config {
    Config {
        jwt_leeway_secs: 1,
        ..support::hs_config()
    }
}

/// The proxy: accepts on its own port, connects each client to the current upstream.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: Arc<parking_lot::Mutex<SocketAddr>>,
    pipes: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(parking_lot::Mutex::new(upstream));
        let pipes: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up, p) = (upstream.clone(), pipes.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let to = *up.lock();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                p.lock().push(pipe);
            }
        });
        Proxy {
            addr,
            upstream,
            pipes,
            accept,
        }
    }

    /// Drops every proxied connection (both sockets) at once; returns how many were live.
    pub fn cut(&self) -> usize {
        let pipes = std::mem::take(&mut *self.pipes.lock());
        let live = pipes.iter().filter(|p| !p.is_finished()).count();
        for p in pipes {
            p.abort();
        }
        live
    }

    fn point_to(&self, upstream: SocketAddr) {
        *self.upstream.lock() = upstream;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

struct State {
    relay: Option<TestRelay>,
    proxy: Proxy,
}

/// The control server and what it controls.
pub struct Control {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Control {
    pub async fn start() -> Control {
        let relay = support::start(relay_config()).await;
        let proxy = Proxy::start(relay.addr).await;
        let state = Arc::new(Mutex::new(State {
            relay: Some(relay),
            proxy,
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, st.clone()));
            }
        });
        Control { addr, state, task }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) {
        self.task.abort();
        let relay = self.state.lock().await.relay.take();
        if let Some(r) = relay {
            r.stop().await;
        }
    }
}

async fn read_request(s: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut body = buf[head_end + 4..].to_vec();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let mut first = head.lines().next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    Some((method, target, body))
}

fn query<'a>(target: &'a str, key: &str) -> Option<&'a str> {
    let (_, q) = target.split_once('?')?;
    q.split('&')
        .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
}

async fn serve(mut s: TcpStream, state: Arc<Mutex<State>>) {
    let Some((method, target, body)) = read_request(&mut s).await else {
        return;
    };
    let path = target.split('?').next().unwrap_or("").to_string();
    let file = |name: &str| std::fs::read(format!("{CLIENTS}/{name}"));
    let (status, kind, out): (u16, &str, Vec<u8>) = match (method.as_str(), path.as_str()) {
        ("GET", "/") => (200, "text/html", file("page.html").unwrap()),
        ("GET", "/favicon.ico") => (204, "text/plain", Vec::new()),
        ("GET", "/scenario.mjs") => (200, "text/javascript", file("scenario.mjs").unwrap()),
        ("GET", "/centrifuge.js") => match file("node_modules/centrifuge/dist/centrifuge.js") {
            Ok(js) => (200, "text/javascript", js),
            Err(e) => (
                500,
                "text/plain",
                format!("SDK bundle missing: {e}").into_bytes(),
            ),
        },
        ("GET", "/config") => {
            let proxy = state.lock().await.proxy.addr;
            let ws = format!("ws://{proxy}/connection/websocket");
            (
                200,
                "application/json",
                json!({ "ws": ws }).to_string().into_bytes(),
            )
        }
        ("GET", "/token") => {
            let sub = query(&target, "sub").unwrap_or("user");
            let ttl: u64 = query(&target, "ttl")
                .and_then(|t| t.parse().ok())
                .unwrap_or(60);
            let t = support::hs(json!({ "sub": sub, "exp": support::now() + ttl }));
            (200, "text/plain", t.into_bytes())
        }
        ("POST", p) if p.starts_with("/publish/") => {
            let st = state.lock().await;
            let relay = st.relay.as_ref().expect("a relay");
            let (code, text) = relay
                .publish(&p["/publish/".len()..], &String::from_utf8_lossy(&body))
                .await;
            (code, "application/json", text.into_bytes())
        }
        ("POST", "/cut") => {
            let n = state.lock().await.proxy.cut();
            (200, "text/plain", n.to_string().into_bytes())
        }
        ("POST", "/restart") => {
            // The new relay first, so a reconnecting client never finds nobody there.
            let fresh = support::start(relay_config()).await;
            let mut st = state.lock().await;
            st.proxy.point_to(fresh.addr);
            let old = st.relay.replace(fresh);
            drop(st);
            if let Some(old) = old {
                old.stop().await;
            }
            (200, "text/plain", b"restarted".to_vec())
        }
        _ => (404, "text/plain", b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        out.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(&out).await;
    let _ = s.shutdown().await;
}
