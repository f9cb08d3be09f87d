//! The hand-written upgrade: accepted requests and every rejection, over real sockets.

mod support;
use support::*;
use tickrelay::Config;

async fn upgrade(addr: std::net::SocketAddr, path: &str, headers: &str) -> (u16, String, String) {
    let mut pairs = Vec::new();
    for line in headers.split("\r\n").filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(": ").unwrap();
        pairs.push((k, v));
    }
    http(addr, "GET", path, &pairs, b"").await
}

#[tokio::test]
async fn a_valid_upgrade_gets_101_with_the_rfc_accept_key() {
    let r = start(config()).await;
    let mut raw = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET /ws HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}\r\n");
    raw.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = raw.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert!(head.contains("upgrade: websocket"));
    // A standard client works too.
    let mut ws = ws(&r.url("")).await;
    send(&mut ws, r#"{"op":"ping","id":1}"#).await;
    assert_eq!(
        recv(&mut ws).await,
        serde_json::json!({"type":"pong","id":1})
    );
    r.stop().await;
}

#[tokio::test]
async fn bad_upgrades_get_plain_4xx_with_a_reason() {
    let r = start(config()).await;
    let a = r.addr;
    let good = UPGRADE_HEADERS;
    let cases: Vec<(String, u16, &str)> = vec![
        (
            good.replace("Connection: Upgrade\r\n", ""),
            400,
            "Connection",
        ),
        (good.replace("Upgrade: websocket\r\n", ""), 400, "Upgrade"),
        (
            good.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            400,
            "Sec-WebSocket-Key",
        ),
        (
            good.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
            400,
            "16 bytes",
        ),
        (
            good.replace("Sec-WebSocket-Version: 13\r\n", ""),
            400,
            "Version",
        ),
    ];
    for (headers, status, word) in cases {
        let (s, _, body) = upgrade(a, "/ws", &headers).await;
        assert_eq!(s, status, "{headers}: {body}");
        assert!(body.contains(word), "{body}");
        assert_eq!(body.lines().count(), 1, "one-line reason: {body}");
    }
    let (s, head, _) = upgrade(a, "/ws", &good.replace("Version: 13", "Version: 8")).await;
    assert_eq!(s, 426);
    assert!(
        head.to_lowercase().contains("sec-websocket-version: 13"),
        "{head}"
    );

    assert_eq!(upgrade(a, "/nope", good).await.0, 404);
    assert_eq!(http(a, "POST", "/ws", &[], b"").await.0, 405);
    assert_eq!(http(a, "GET", "/publish/x", &[], b"").await.0, 405);
    assert_eq!(http(a, "DELETE", "/stats", &[], b"").await.0, 405);
    let (s, _, body) = upgrade(a, "/ws?channels=bad%20name", good).await;
    assert_eq!((s, body.contains("channel")), (400, true), "{body}");
    assert_eq!(upgrade(a, "/ws?format=xml", good).await.0, 400);
    assert_eq!(upgrade(a, "/ws?token=wrong", good).await.0, 401);
    let stats = r.stats().await;
    assert!(stats["handshake_rejects"].as_u64().unwrap() >= 9, "{stats}");
    r.stop().await;
}

#[tokio::test]
async fn the_connection_limit_answers_503_and_frees_places_on_close() {
    let r = start(Config {
        max_connections: 2,
        ..config()
    })
    .await;
    let a = ws(&r.url("")).await;
    let _b = ws(&r.url("")).await;
    let (s, _, body) = http(r.addr, "GET", "/ws", &UPGRADE, b"").await;
    assert_eq!((s, body.trim()), (503, "connection limit reached"));
    drop(a);
    r.wait_stats("a place to free up", |s| s["connections"] == 1)
        .await;
    let _c = ws(&r.url("")).await;
    r.stop().await;
}

/// Found by the `upgrade` fuzz target: RFC 6455 §4.2.1 needs exactly one Host header, and
/// hyper does not check it, so the relay upgraded requests without one (or with two).
#[tokio::test]
async fn an_upgrade_without_exactly_one_host_gets_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let r = start(config()).await;
    for hosts in ["", "Host: a\r\nHost: b\r\n", "Host: x\r\n"] {
        let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
        let req = format!("GET /ws HTTP/1.1\r\n{hosts}{UPGRADE_HEADERS}\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        let want = if hosts == "Host: x\r\n" {
            "HTTP/1.1 101"
        } else {
            "HTTP/1.1 400"
        };
        assert!(head.starts_with(want), "{hosts:?}: {head}");
        if want.ends_with("400") {
            assert!(head.contains("exactly one Host"), "{head}");
        }
    }
    r.stop().await;
}
