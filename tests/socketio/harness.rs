//! What the client scripts of tests/clients/socketio/ talk to besides the relay: a
//! loopback TCP proxy in front of it that can cut every socket at once (so the relay's
//! side of every connection goes away), and a small HTTP control server on another
//! origin that serves the browser page and socket.io-client's bundle, publishes with
//! POST /publish on the relay, cuts the proxied sockets and mints tokens.

use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tickrelay::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{self, TestRelay};

/// Where the client scripts live.
pub const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/socketio");

/// The heartbeat of these tests: short, so that three ping intervals pass quickly, and
/// long enough that a client on a loaded machine (CI runs Autobahn beside the tests) is
/// not starved past its ping timeout (~2.5 heartbeats): 400 ms was, in Chromium.
pub const HEARTBEAT_MS: u64 = 800;

/// The relay settings of these tests: HS256 tokens, a short heartbeat.
pub fn relay_config() -> Config {
    Config {
        heartbeat_ms: HEARTBEAT_MS,
        ..support::hs_config()
    }
}

type Pipes = Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>>;

/// The relay behind a proxy, and the control server.
pub struct Control {
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Control {
    pub async fn start(config: Config) -> Control {
        let relay = Arc::new(support::start(config).await);
        let upstream = relay.addr;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        let pipes: Pipes = Arc::default();
        let p = pipes.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                p.lock().push(pipe);
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = relay.clone();
        let control = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, r.clone(), pipes.clone(), proxy));
            }
        });
        Control {
            addr,
            tasks: vec![accept, control],
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
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

async fn serve(mut s: TcpStream, relay: Arc<TestRelay>, pipes: Pipes, proxy: SocketAddr) {
    let Some((method, target, body)) = read_request(&mut s).await else {
        return;
    };
    let path = target.split('?').next().unwrap_or("").to_string();
    let file = |name: &str| std::fs::read(format!("{CLIENTS}/{name}"));
    let js = "text/javascript";
    let (status, kind, out): (u16, &str, Vec<u8>) = match (method.as_str(), path.as_str()) {
        ("GET", "/") => (200, "text/html", file("page.html").unwrap()),
        ("GET", "/favicon.ico") => (204, "text/plain", Vec::new()),
        ("GET", "/scenario.mjs") => (200, js, file("scenario.mjs").unwrap()),
        ("GET", "/socket.io.js") => {
            match file("node_modules/socket.io-client/dist/socket.io.min.js") {
                Ok(b) => (200, js, b),
                Err(e) => (
                    500,
                    "text/plain",
                    format!("bundle missing: {e}").into_bytes(),
                ),
            }
        }
        ("GET", "/config") => {
            let url = format!("http://{proxy}");
            let c = json!({ "url": url, "heartbeat_ms": HEARTBEAT_MS });
            (200, "application/json", c.to_string().into_bytes())
        }
        ("GET", "/token") => {
            let t = support::user("alice");
            (200, "text/plain", t.into_bytes())
        }
        ("POST", p) if p.starts_with("/publish/") => {
            let (code, text) = relay
                .publish(&p["/publish/".len()..], &String::from_utf8_lossy(&body))
                .await;
            (code, "application/json", text.into_bytes())
        }
        ("POST", "/cut") => {
            let all = std::mem::take(&mut *pipes.lock());
            let live = all.iter().filter(|p| !p.is_finished()).count();
            for p in all {
                p.abort();
            }
            (200, "text/plain", live.to_string().into_bytes())
        }
        _ => (404, "text/plain", b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
        out.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(&out).await;
    let _ = s.shutdown().await;
}
