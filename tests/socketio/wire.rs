//! The Socket.IO wire, read by plain HTTP and WebSocket clients: the polling
//! transport's packets and documented errors, CORS and `--allowed-origins`, CONNECT
//! with a credential, refused binary attachments, and stalled clients of both transports
//! beside a healthy one.

use futures_util::StreamExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tickrelay::Config;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

const POLL: &str = "/socket.io/?EIO=4&transport=polling";

/// A polling request; returns (status, head, the body's packets split at `\x1e`).
async fn req(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, Vec<String>) {
    let h = [("Content-Type", "text/plain;charset=UTF-8")];
    let (s, head, b) = http(addr, method, path, &h, body.as_bytes()).await;
    (s, head, b.split('\u{1e}').map(str::to_owned).collect())
}

/// A polling handshake: the sid and the open packet.
async fn handshake(addr: SocketAddr) -> (String, Value) {
    let (s, head, p) = req(addr, "GET", POLL, "").await;
    assert_eq!(s, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; charset=utf-8"),
        "{head}"
    );
    let open: Value = serde_json::from_str(p[0].strip_prefix('0').expect("open packet")).unwrap();
    (open["sid"].as_str().unwrap().to_owned(), open)
}

async fn post(addr: SocketAddr, sid: &str, body: &str) -> u16 {
    let (s, _, p) = req(addr, "POST", &format!("{POLL}&sid={sid}"), body).await;
    if s == 200 {
        assert_eq!(p, ["ok"]);
    }
    s
}

async fn poll(addr: SocketAddr, sid: &str) -> (u16, Vec<String>) {
    let (s, _, p) = req(addr, "GET", &format!("{POLL}&sid={sid}"), "").await;
    (s, p)
}

/// A polling session joined to the default namespace and subscribed to BTC.
async fn polling_client(addr: SocketAddr) -> String {
    let (sid, _) = handshake(addr).await;
    assert_eq!(post(addr, &sid, "40").await, 200);
    let (_, p) = poll(addr, &sid).await;
    assert!(p[0].starts_with("40{\"sid\":"), "{p:?}");
    assert_eq!(post(addr, &sid, r#"42["subscribe",["BTC"]]"#).await, 200);
    sid
}

#[tokio::test]
async fn polling_handshake_packets_and_the_documented_errors() {
    let r = start(Config {
        heartbeat_ms: 30_000,
        ..config()
    })
    .await;
    let a = r.addr;
    let (sid, open) = handshake(a).await;
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(open["pingInterval"], 30_000);
    assert_eq!(open["pingTimeout"], 45_000);
    assert_eq!(open["maxPayload"], 64 * 1024);
    let err = |s: u16, p: &[String]| {
        (
            s,
            serde_json::from_str::<Value>(&p[0]).unwrap()["code"].clone(),
        )
    };
    let (s, _, p) = req(a, "GET", "/socket.io/?EIO=3&transport=polling", "").await;
    assert_eq!(err(s, &p), (400, 5.into()));
    let (s, _, p) = req(a, "GET", "/socket.io/?EIO=4&transport=flash", "").await;
    assert_eq!(err(s, &p), (400, 0.into()));
    let (s, _, p) = req(a, "GET", &format!("{POLL}&sid=nope"), "").await;
    assert_eq!(err(s, &p), (400, 1.into()));
    let (s, _, p) = req(a, "POST", POLL, "40").await;
    assert_eq!(err(s, &p), (400, 2.into()));
    // CONNECT, then everything queued comes in one poll, joined by 0x1e.
    assert_eq!(post(a, &sid, "40").await, 200);
    let (s, p) = poll(a, &sid).await;
    assert_eq!(s, 200);
    assert!(p[0].starts_with("40{\"sid\":"), "{p:?}");
    assert!(
        p[1].starts_with(r#"42["connection_status",{"status":"connected""#),
        "{p:?}"
    );
    // Two packets in one POST (an event with an ack id, a pong), then a publish.
    assert_eq!(
        post(a, &sid, "421[\"subscribe\",{\"symbols\":[\"BTC\"]}]\u{1e}3").await,
        200
    );
    let (_, p) = poll(a, &sid).await;
    assert!(
        p[0].starts_with(r#"42["subscription_confirmed",{"symbols":["BTC"]"#),
        "{p:?}"
    );
    assert!(p[1].starts_with(r#"431[{"symbols":["BTC"]"#), "{p:?}");
    r.publish("ticker:BTC", r#"{"price":1}"#).await;
    assert_eq!(
        poll(a, &sid).await.1,
        [r#"42["market_update",{"BTC":{"price":1}}]"#]
    );
    // A binary body, a body over maxPayload.
    let bin = [("Content-Type", "application/octet-stream")];
    let (s, _, _) = http(a, "POST", &format!("{POLL}&sid={sid}"), &bin, b"x").await;
    assert_eq!(s, 400);
    let big = format!(r#"42["subscribe","{}"]"#, "A".repeat(70_000));
    assert_eq!(post(a, &sid, &big).await, 413);
    // A second GET while one is held: 400, and the session is closed.
    let held_sid = sid.clone();
    let held = tokio::spawn(async move { poll(a, &held_sid).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, p) = poll(a, &sid).await;
    assert_eq!(err(s, &p), (400, 3.into()));
    assert_eq!(
        held.await.unwrap().1,
        ["1"],
        "the held poll carries the close"
    );
    let (s, _) = poll(a, &sid).await;
    assert_eq!(s, 400);
    r.wait_stats("the session gone", |s| s["connections"] == 0)
        .await;
    r.stop().await;
}

#[tokio::test]
async fn cors_follows_allowed_origins() {
    let r = start(Config {
        allowed_origins: vec!["http://app.example".into()],
        ..config()
    })
    .await;
    let ok = [("Origin", "http://app.example")];
    let (s, head, _) = http(r.addr, "GET", POLL, &ok, b"").await;
    let head = head.to_ascii_lowercase();
    assert_eq!(s, 200);
    assert!(
        head.contains("access-control-allow-origin: http://app.example"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-credentials: true"),
        "{head}"
    );
    assert!(head.contains("vary: origin"), "{head}");
    let pre = [
        ("Origin", "http://app.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type"),
    ];
    let (s, head, _) = http(r.addr, "OPTIONS", POLL, &pre, b"").await;
    assert_eq!(s, 204);
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-methods: get, post"),
        "{head}"
    );
    let evil = [("Origin", "http://evil.example")];
    let (s, _, body) = http(r.addr, "GET", POLL, &evil, b"").await;
    assert_eq!((s, body.contains("\"code\":4")), (403, true));
    let (s, _, _) = http(
        r.addr,
        "GET",
        "/socket.io/?EIO=4&transport=websocket",
        &evil,
        b"",
    )
    .await;
    assert_eq!(s, 403);
    r.stop().await;
}

async fn sio_ws(r: &TestRelay) -> Ws {
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", r.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let open = recv_text(&mut ws).await;
    let v: Value = serde_json::from_str(open.strip_prefix('0').expect("open first")).unwrap();
    assert_eq!(
        v["upgrades"],
        serde_json::json!([]),
        "a WebSocket session offers no upgrade"
    );
    ws
}

async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

#[tokio::test]
async fn connect_takes_the_token_and_binary_attachments_are_refused() {
    let r = start(hs_config()).await;
    let mut ws = sio_ws(&r).await;
    send(&mut ws, r#"40{"token":"not-a-jwt"}"#).await;
    let e = recv_text(&mut ws).await;
    assert!(e.starts_with(r#"44{"message":"unauthorized"#), "{e}");
    send(&mut ws, &format!(r#"40{{"token":"{}"}}"#, user("alice"))).await;
    assert!(recv_text(&mut ws).await.starts_with("40{\"sid\":"));
    assert!(recv_text(&mut ws)
        .await
        .starts_with(r#"42["connection_status""#));
    send(&mut ws, "40/admin,").await;
    assert_eq!(
        recv_text(&mut ws).await,
        r#"44/admin,{"message":"Invalid namespace"}"#
    );
    send(&mut ws, r#"42["hello"]"#).await;
    assert!(recv_text(&mut ws)
        .await
        .starts_with(r#"42["error",{"code":"unknown_op""#));
    send(&mut ws, r#"451-["x",{"_placeholder":true,"num":0}]"#).await;
    assert_eq!(recv_text(&mut ws).await, "41");
    assert_eq!(close_code(&mut ws).await, Some(1003));
    r.stop().await;
}

/// A Socket.IO WebSocket client with a small receive window that never reads.
async fn stalled_ws(addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let head = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n{UPGRADE_HEADERS}\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&masked_frame(true, 1, b"40")).await.unwrap();
    s.write_all(&masked_frame(true, 1, br#"42["subscribe",["BTC"]]"#))
        .await
        .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_polling_and_websocket_clients_are_conflated_then_closed_like_v1_clients() {
    let queue = 256 * 1024;
    let r = start(Config {
        queue_bytes: queue,
        conflate_after_bytes: 16 * 1024,
        slow_close_grace_ms: 200,
        close_timeout_ms: 300,
        ..config()
    })
    .await;
    let mut healthy = sio_ws(&r).await;
    send(&mut healthy, "40").await;
    send(&mut healthy, r#"42["subscribe",["BTC"]]"#).await;
    let stalled_poll = polling_client(r.addr).await;
    let _stalled_ws = stalled_ws(r.addr).await;
    r.wait_stats("three subscribers", |s| {
        s["top_channels"].as_array().is_some_and(|t| {
            t.iter()
                .any(|c| c["channel"] == "ticker:BTC" && c["subscribers"] == 3)
        })
    })
    .await;
    // A tick flood: 4.8 MB on a conflate channel.
    let pad = "x".repeat(16 * 1024);
    for k in 1..=300 {
        r.publish("ticker:BTC", &format!(r#"{{"k":{k},"pad":"{pad}"}}"#))
            .await;
    }
    let mut last = 0;
    while last < 300 {
        let t = recv_text(&mut healthy).await;
        if let Some(m) = t.strip_prefix(r#"42["market_update",{"BTC":{"k":"#) {
            last = m.split(',').next().unwrap().parse().unwrap();
        }
    }
    // Both stalled clients hold only a bounded, conflated backlog (the healthy one may
    // have been conflated in a burst too, and caught up: it saw the last tick).
    let consumers = r.relay.consumers();
    let stalled: Vec<_> = consumers
        .iter()
        .filter(|c| c.info.dialect == "socketio-polling" || c.queued_bytes > 0)
        .collect();
    assert!(stalled.len() >= 2, "both stalled clients are behind");
    for c in stalled {
        assert!(
            c.conflated > 0,
            "a stalled {} client is conflated",
            c.info.dialect
        );
        assert!(c.queued_bytes <= queue, "bounded");
    }
    // Reliable messages (signals, subscribed at CONNECT) past the queue bound: both
    // stalled clients are closed as slow consumers; the healthy one gets every one.
    let pad = "y".repeat(2000);
    for i in 1..=200 {
        r.publish("signals", &format!(r#"{{"i":{i},"pad":"{pad}"}}"#))
            .await;
    }
    let mut want = 1;
    while want <= 200 {
        let t = recv_text(&mut healthy).await;
        if let Some(m) = t.strip_prefix(r#"42["trading_signal",{"i":"#) {
            assert_eq!(
                m.split(',').next().unwrap(),
                want.to_string(),
                "in order, none lost"
            );
            want += 1;
        }
    }
    r.wait_stats("two slow-consumer closes", |s| {
        s["slow_consumer_closes"] == 2
    })
    .await;
    let (s, p) = poll(r.addr, &stalled_poll).await;
    assert!(
        s == 400 || p.last().map(String::as_str) == Some("1"),
        "{s} {p:?}"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_polling_session_counts_against_the_limits_and_ends_when_its_client_vanishes() {
    let r = start(Config {
        heartbeat_ms: 200,
        max_connections_per_ip: 1,
        ..config()
    })
    .await;
    let _sid = polling_client(r.addr).await;
    let (s, _, _) = req(r.addr, "GET", POLL, "").await;
    assert_eq!(s, 429, "one session per address here");
    assert_eq!(r.stats().await["connections"], 1);
    // No poll, no pong: gone after 2.5 heartbeat intervals, its subscriptions released.
    r.wait_stats("the vanished client cleaned up", |s| {
        s["connections"] == 0 && s["subscriptions"] == 0
    })
    .await;
    let (_, open) = handshake(r.addr).await;
    assert!(open["sid"].is_string(), "its address slot is free again");
    r.stop().await;
}
