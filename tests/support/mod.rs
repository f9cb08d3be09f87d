//! Test helpers: a real relay on 127.0.0.1:0, a standard WebSocket client
//! (tokio-tungstenite), a raw frame-level client for protocol edge cases, raw HTTP, and
//! HS256 tokens and upgrade refusals for the auth and access tests.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tickrelay::protocol::encode;
use tickrelay::{Config, Relay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Default time any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub const KEY: &str = "test-publish-key";

/// A relay running in this process on an ephemeral port.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub relay: Arc<Relay>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// The test defaults: a publish key, everything else as shipped.
pub fn config() -> Config {
    Config {
        publish_key: Some(KEY.into()),
        // Tests read counters right after acting; the snapshot cache has its own test.
        stats_cache_ms: 0,
        ..Config::default()
    }
}

pub async fn start(config: Config) -> TestRelay {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let relay = Relay::new(config);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(tickrelay::serve(listener, relay.clone(), async {
        let _ = rx.await;
    }));
    TestRelay {
        addr,
        relay,
        stop: Some(tx),
        task,
    }
}

impl TestRelay {
    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/ws{}", self.addr, query)
    }

    /// Signals shutdown without waiting for it (then [`TestRelay::stop`] waits).
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("serve returned")
            .unwrap();
    }

    /// GET /stats as JSON.
    pub async fn stats(&self) -> Value {
        let (status, _, body) = http(self.addr, "GET", "/stats", &[], b"").await;
        assert_eq!(status, 200);
        serde_json::from_str(&body).expect("stats is JSON")
    }

    /// POST /publish (NDJSON batch) with the test key; asserts 200 and returns the body.
    pub async fn publish_batch(&self, ndjson: &str) -> String {
        let auth = format!("Bearer {KEY}");
        let (status, _, body) = http(
            self.addr,
            "POST",
            "/publish",
            &[("Authorization", &auth)],
            ndjson.as_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until `pred(stats)` holds.
    pub async fn wait_stats(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.stats().await;
            if pred(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POST /publish/{channel} with the test key; returns (status, body).
    pub async fn publish(&self, channel: &str, data: &str) -> (u16, String) {
        let auth = format!("Bearer {KEY}");
        let (s, _, b) = http(
            self.addr,
            "POST",
            &format!("/publish/{channel}"),
            &[("Authorization", &auth)],
            data.as_bytes(),
        )
        .await;
        (s, b)
    }
}

/// One HTTP/1.1 request on a fresh connection; returns (status, head, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Connects a standard client and reads the welcome.
pub async fn ws(url: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    let w = recv(&mut ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    ws
}

pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// Next data frame (text or binary), skipping pings and pongs.
pub async fn next_frame(ws: &mut Ws) -> Message {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("message in time")
            .expect("stream open")
            .expect("ws ok");
        match m {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// Next text message, raw.
pub async fn recv_text(ws: &mut Ws) -> String {
    match next_frame(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

pub async fn recv(ws: &mut Ws) -> Value {
    let t = recv_text(ws).await;
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
}

/// Subscribes and returns the `subscribed` reply.
pub async fn subscribe(ws: &mut Ws, channels: &[&str]) -> Value {
    let cmd = serde_json::json!({"op":"subscribe","channels":channels,"id":"s"});
    send(ws, &cmd.to_string()).await;
    let r = recv(ws).await;
    assert_eq!(r["type"], "subscribed", "{r}");
    r
}

/// Asserts nothing arrives for `d`.
pub async fn assert_silent(ws: &mut Ws, d: Duration) {
    if let Ok(Some(m)) = tokio::time::timeout(d, ws.next()).await {
        panic!("expected silence, got {m:?}");
    }
}

/// A frame-level client: hand-written handshake, masked frames of any shape.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// A valid upgrade request's headers, for [`http`].
pub const UPGRADE: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

pub const UPGRADE_HEADERS: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

impl RawWs {
    /// Connects, upgrades, and (in relay mode) reads the welcome frame.
    pub async fn connect(addr: SocketAddr, query: &str) -> RawWs {
        let stream = TcpStream::connect(addr).await.unwrap();
        RawWs::upgrade(stream, addr, query).await
    }

    /// Like [`RawWs::connect`] with a small receive buffer, so a client that stops reading
    /// backs the relay up after kilobytes instead of megabytes.
    pub async fn connect_small_window(addr: SocketAddr, query: &str) -> RawWs {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        RawWs::upgrade(stream, addr, query).await
    }

    async fn upgrade(stream: TcpStream, addr: SocketAddr, query: &str) -> RawWs {
        RawWs::upgrade_with(stream, addr, query, "").await.0
    }

    /// Connects and upgrades with `extra` header lines (each ending in `\r\n`); returns
    /// the response head too.
    pub async fn connect_with(addr: SocketAddr, query: &str, extra: &str) -> (RawWs, String) {
        let stream = TcpStream::connect(addr).await.unwrap();
        RawWs::upgrade_with(stream, addr, query, extra).await
    }

    async fn upgrade_with(
        mut stream: TcpStream,
        addr: SocketAddr,
        query: &str,
        extra: &str,
    ) -> (RawWs, String) {
        let req =
            format!("GET /ws{query} HTTP/1.1\r\nHost: {addr}\r\n{UPGRADE_HEADERS}{extra}\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
        };
        let head = ws.read_until_head_end().await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let (op, payload) = ws.read_frame().await.expect("welcome");
        assert_eq!(op, encode::OP_TEXT);
        assert!(String::from_utf8_lossy(&payload).contains("welcome"));
        (ws, head)
    }

    async fn read_until_head_end(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..i]).to_string();
                self.buf.drain(..i + 4);
                return head;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("head in time")
                .unwrap();
            assert!(n > 0, "EOF before the response head");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.stream
            .write_all(&masked_frame(fin, opcode, payload))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(true, encode::OP_TEXT, text.as_bytes())
            .await;
    }

    /// Next frame (opcode, payload), or `None` at EOF.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some(h) = encode::decode_head(&self.buf) {
                let total = h.head_len + h.len as usize;
                if self.buf.len() >= total {
                    assert!(h.fin && !h.masked, "server frames are FIN and unmasked");
                    let payload = self.buf[h.head_len..total].to_vec();
                    self.buf.drain(..total);
                    return Some((h.opcode, payload));
                }
            }
            let mut chunk = [0u8; 65536];
            let n = match tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("frame in time")
            {
                Ok(n) => n,
                Err(_) => return None, // reset
            };
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The first byte (FIN, RSV1, opcode) of each of the next `n` frames, pings skipped.
    pub async fn first_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < n {
            let b0 = loop {
                if let Some(&b) = self.buf.first() {
                    break b;
                }
                let mut chunk = [0u8; 4096];
                let k = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                    .await
                    .expect("frame in time")
                    .unwrap();
                assert!(k > 0, "EOF");
                self.buf.extend_from_slice(&chunk[..k]);
            };
            let (op, _) = self.read_frame().await.expect("a frame");
            if op != encode::OP_PING {
                out.push(b0);
            }
        }
        out
    }

    /// Next text frame as JSON, skipping pings.
    pub async fn recv(&mut self) -> Value {
        loop {
            let (op, p) = self.read_frame().await.expect("a frame");
            if op == encode::OP_PING {
                continue;
            }
            assert_eq!(
                op,
                encode::OP_TEXT,
                "payload {:?}",
                String::from_utf8_lossy(&p)
            );
            return serde_json::from_slice(&p).expect("JSON");
        }
    }

    /// Reads until a close frame; returns its code (None: EOF without close).
    pub async fn expect_close(&mut self) -> Option<u16> {
        while let Some((op, p)) = self.read_frame().await {
            if op == encode::OP_CLOSE {
                return if p.len() >= 2 {
                    Some(u16::from_be_bytes([p[0], p[1]]))
                } else {
                    Some(1005)
                };
            }
        }
        None
    }
}

/// A client frame: masked with a fixed key.
pub fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

// ---------------------------------------------------------------------------------------
// JWTs and upgrade refusals, for the auth and access tests

pub const SECRET: &str = "test-jwt-secret-of-a-decent-length";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

pub fn hs(claims: Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &claims,
    )
}

/// An HS256 token for `sub`, valid for an hour.
pub fn user(sub: &str) -> String {
    hs(json!({"sub": sub, "exp": now() + 3600}))
}

pub fn hs_config() -> Config {
    Config {
        jwt_secret: Some(SECRET.into()),
        ..config()
    }
}

/// The upgrade answer for `query` and extra headers: (status, one-line body). Only for
/// refusals (a 101 keeps the connection open).
pub async fn refused(r: &TestRelay, query: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut h: Vec<(&str, &str)> = vec![
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    h.extend_from_slice(headers);
    let (s, _, body) = http(r.addr, "GET", &format!("/ws{query}"), &h, b"").await;
    assert_eq!(body.lines().count(), 1, "one-line reason: {body:?}");
    (s, body.trim().to_string())
}

/// Connects with extra request headers; returns the socket or the refusal status.
pub async fn ws_with(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, _)) => {
            assert_eq!(recv(&mut ws).await["type"], "welcome");
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("connect: {e}"),
    }
}

pub async fn try_subscribe(ws: &mut Ws, channels: &[&str]) -> Value {
    send(
        ws,
        &json!({"op":"subscribe","channels":channels,"id":"s"}).to_string(),
    )
    .await;
    recv(ws).await
}
