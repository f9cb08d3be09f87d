//! Limits at their edges over real sockets: exactly at a limit is accepted, one over is
//! refused with the documented code. And after abusive clients leave, connections,
//! queue bytes, per-address entries and memory are back where they started.

mod support;
use serde_json::json;
use std::time::Duration;
use support::*;
use tickrelay::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A plain TCP connection to the relay from a chosen loopback address.
async fn tcp_from(from: &str, to: std::net::SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Upgrades over `stream`: Ok(ws) or Err((status, head+body)).
async fn upgrade_over(stream: TcpStream, url: &str) -> Result<Ws, (u16, String)> {
    use tokio_tungstenite::tungstenite::Error;
    match tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
    {
        Ok((mut ws, _)) => {
            assert_eq!(recv(&mut ws).await["type"], "welcome");
            Ok(ws)
        }
        Err(Error::Http(resp)) => {
            let mut text = format!("{:?}\n", resp.headers());
            text.push_str(&String::from_utf8_lossy(
                resp.body().as_deref().unwrap_or_default(),
            ));
            Err((resp.status().as_u16(), text))
        }
        Err(e) => panic!("upgrade: {e}"),
    }
}

#[tokio::test]
async fn the_publish_key_is_not_counted_per_address_and_has_reserved_places() {
    let r = start(Config {
        max_connections_per_ip: 2,
        max_connections: 20,
        trusted_reserve: 2, // places 19 and 20
        ..config()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(ws(&r.url("")).await);
    }
    assert_eq!(
        ws_with(&r.url(""), &[]).await.err(),
        Some(429),
        "anonymous: per address"
    );
    let key = format!("Bearer {KEY}");
    let publisher = ws_with(&r.url(""), &[("Authorization", &key)]).await;
    assert!(
        publisher.is_ok(),
        "the publish key shown at the upgrade is exempt"
    );
    held.push(publisher.unwrap());
    // 18 places are for anyone (20 - 2 reserved); the publisher holds one of them
    // like any connection, so 15 more anonymous ones fill them, from other addresses.
    let url = r.url("");
    for n in 0..15 {
        let from = format!("127.0.0.{}", 2 + n / 2);
        let c = upgrade_over(tcp_from(&from, r.addr).await, &url).await;
        held.push(c.expect("an untrusted place"));
    }
    r.wait_stats("18 connections", |s| s["connections"] == 18)
        .await;
    let Err((status, _)) = upgrade_over(tcp_from("127.0.0.9", r.addr).await, &url).await else {
        panic!("an anonymous connection took a reserved place");
    };
    assert_eq!(status, 503);
    // The publish key still gets the two reserved places, then none is left.
    for _ in 0..2 {
        let p = ws_with(&r.url(""), &[("Authorization", &key)]).await;
        held.push(p.expect("a reserved place for the publish key"));
    }
    assert_eq!(
        ws_with(&r.url(""), &[("Authorization", &key)]).await.err(),
        Some(503)
    );
    r.stop().await;
}

#[tokio::test]
async fn connections_per_address_are_exact_and_the_next_gets_429() {
    let r = start(Config {
        max_connections_per_ip: 3,
        ..config()
    })
    .await;
    let url = r.url("");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            upgrade_over(tcp_from("127.0.0.1", r.addr).await, &url)
                .await
                .expect("within the limit"),
        );
    }
    let Err((status, text)) = upgrade_over(tcp_from("127.0.0.1", r.addr).await, &url).await else {
        panic!("one over the limit was accepted");
    };
    assert_eq!(status, 429);
    assert!(
        text.contains("too many connections from this address"),
        "{text}"
    );
    assert!(text.contains("\"retry-after\""), "{text}");
    // Another address is counted on its own.
    let _other = upgrade_over(tcp_from("127.0.0.2", r.addr).await, &url)
        .await
        .expect("127.0.0.2 has its own count");
    // A freed place can be taken again.
    drop(held.pop());
    r.wait_stats("the place to free up", |s| s["connections"] == 3)
        .await;
    held.push(
        upgrade_over(tcp_from("127.0.0.1", r.addr).await, &url)
            .await
            .expect("freed"),
    );
    drop(held);
    r.wait_stats("all gone", |s| s["connections"] == 1).await;
    r.stop().await;
}

#[tokio::test]
async fn the_command_rate_is_exact_and_sustained_abuse_closes_with_1008() {
    let r = start(Config {
        max_commands_per_sec: 1,
        command_burst: 5,
        rate_limit_close_after: 3,
        ..config()
    })
    .await;
    let mut c = RawWs::connect(r.addr, "").await;
    let started = tokio::time::Instant::now();
    let mut burst = Vec::new();
    for i in 1..=8 {
        burst.extend(masked_frame(
            true,
            0x1,
            json!({"op":"ping","id":i}).to_string().as_bytes(),
        ));
    }
    c.stream.write_all(&burst).await.unwrap();
    // The burst (5) runs; the next two are refused with their ids; the third refusal in a
    // row closes the connection.
    for i in 1..=5 {
        assert_eq!(c.recv().await, json!({"type":"pong","id":i}));
    }
    let fast = started.elapsed() < Duration::from_millis(900);
    for i in 6..=7 {
        let e = c.recv().await;
        if fast {
            assert_eq!(
                (e["code"].as_str(), e["id"].as_i64()),
                (Some("rate_limited"), Some(i)),
                "{e}"
            );
        }
    }
    if fast {
        assert_eq!(c.expect_close().await, Some(1008));
    }
    // The rate refills: one command per second after the burst.
    let mut c = ws(&r.url("")).await;
    for i in 0..5 {
        send(&mut c, &json!({"op":"ping","id":i}).to_string()).await;
        assert_eq!(recv(&mut c).await["type"], "pong");
    }
    send(&mut c, r#"{"op":"ping","id":"over"}"#).await;
    assert_eq!(recv(&mut c).await["code"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send(&mut c, r#"{"op":"ping","id":"refilled"}"#).await;
    assert_eq!(recv(&mut c).await["id"], "refilled");
    // Publishers (the publish key) are trusted ingest and not limited.
    let mut publisher = ws(&r.url(&format!("?token={KEY}"))).await;
    for i in 0..100 {
        send(&mut publisher, &json!({"op":"ping","id":i}).to_string()).await;
    }
    for i in 0..100 {
        assert_eq!(recv(&mut publisher).await["id"], i);
    }
    let stats = r.stats().await;
    assert!(
        stats["errors"]["rate_limited"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    r.stop().await;
}

#[tokio::test]
async fn subscriptions_per_connection_are_exact() {
    let r = start(Config {
        max_subscriptions: 3,
        ..config()
    })
    .await;
    let mut c = ws(&r.url("")).await;
    subscribe(&mut c, &["a", "b"]).await;
    subscribe(&mut c, &["c", "a"]).await; // `a` again costs nothing: 3 held
    send(&mut c, r#"{"op":"subscribe","channels":["d"],"id":1}"#).await;
    assert_eq!(recv(&mut c).await["code"], "too_many_subscriptions");
    // One command naming more than the limit is refused while it is read: the bad
    // name past the limit is never reached (and duplicates count once).
    let mut fresh = ws(&r.url("")).await;
    let cmd = r#"{"op":"subscribe","id":2,"channels":["a","a","b","c","d","bad name"]}"#;
    send(&mut fresh, cmd).await;
    let e = recv(&mut fresh).await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("too_many_subscriptions"), Some(2))
    );
    // At the upgrade: 3 channels accepted, 4 refused with 400.
    let mut c = ws(&r.url("?channels=a,b,c")).await;
    assert_eq!(recv(&mut c).await["type"], "subscribed");
    let (s, _, body) = http(
        r.addr,
        "GET",
        "/ws?channels=a,b,c,d",
        &UPGRADE_HEADERS
            .trim_end()
            .split("\r\n")
            .map(|l| l.split_once(": ").unwrap())
            .collect::<Vec<_>>(),
        b"",
    )
    .await;
    assert_eq!(
        (s, body.contains("subscription limit")),
        (400, true),
        "{body}"
    );
    r.stop().await;
}

/// A request head of exactly `len` bytes (padded with a header).
fn head_of(len: usize) -> Vec<u8> {
    let start = format!("GET /ws HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}X-Pad: ");
    let end = "\r\n\r\n";
    let pad = len - start.len() - end.len();
    format!("{start}{}{end}", "p".repeat(pad)).into_bytes()
}

async fn status_of(addr: std::net::SocketAddr, head: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn the_request_head_limit_is_exact() {
    let limit = 9000;
    let r = start(Config {
        max_header_bytes: limit,
        ..config()
    })
    .await;
    assert_eq!(head_of(limit).len(), limit);
    assert!(status_of(r.addr, &head_of(limit))
        .await
        .starts_with("HTTP/1.1 101"));
    assert!(
        status_of(r.addr, &head_of(limit + 1))
            .await
            .starts_with("HTTP/1.1 431"),
        "one byte over"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_slow_request_head_that_completes_in_time_is_served() {
    // The other side of tests/frames.rs `a_request_head_trickled_too_slowly_is_cut_off`.
    let r = start(Config {
        handshake_timeout_ms: 2000,
        ..config()
    })
    .await;
    let head = head_of(400);
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    for chunk in head.chunks(40) {
        s.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await; // ~0.5 s in all
    }
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    r.stop().await;
}

#[tokio::test]
async fn the_channel_table_full_at_connect_closes_with_1013_and_a_retry_hint() {
    let r = start(Config {
        max_channels: 2,
        ..config()
    })
    .await;
    let mut ok = ws(&r.url("?channels=a,b")).await;
    assert_eq!(recv(&mut ok).await["type"], "subscribed");
    let mut c = RawWs::connect(r.addr, "?channels=c").await;
    assert_eq!(c.recv().await["code"], "too_many_channels");
    let (op, p) = c.read_frame().await.expect("close");
    assert_eq!(op, 0x8);
    assert_eq!(u16::from_be_bytes([p[0], p[1]]), 1013);
    assert!(String::from_utf8_lossy(&p[2..]).contains("retry in"));
    // A subscribe op on a live connection gets the error and stays open.
    send(&mut ok, r#"{"op":"subscribe","channels":["z"],"id":1}"#).await;
    assert_eq!(recv(&mut ok).await["code"], "too_many_channels");
    send(&mut ok, r#"{"op":"ping"}"#).await;
    assert_eq!(recv(&mut ok).await["type"], "pong");
    r.stop().await;
}

/// One round of abuse: stalled readers on a busy channel, command flooders, and more
/// connections from one address than it may hold. Returns when all have left.
async fn abuse(r: &TestRelay) {
    let url = r.url("?channels=signals:FLOOD");
    let mut stalled = Vec::new();
    for _ in 0..40 {
        // Never read after the upgrade.
        stalled.push(RawWs::connect(r.addr, "?channels=signals:FLOOD").await);
    }
    let mut flooders = Vec::new();
    for _ in 0..40 {
        let mut c = RawWs::connect(r.addr, "").await;
        let mut burst = Vec::new();
        for i in 0..200 {
            burst.extend(masked_frame(
                true,
                0x1,
                json!({"op":"subscribe","channels":[format!("junk{i}")]})
                    .to_string()
                    .as_bytes(),
            ));
        }
        c.stream.write_all(&burst).await.unwrap();
        flooders.push(c);
    }
    let mut refused = 0;
    let mut extra = Vec::new();
    // Flooders may already be closed for abuse, so open until the address is full.
    for _ in 0..100 {
        match upgrade_over(tcp_from("127.0.0.1", r.addr).await, &url).await {
            Ok(ws) => extra.push(ws),
            Err((429, _)) => {
                refused += 1;
                break;
            }
            Err((s, t)) => panic!("{s}: {t}"),
        }
    }
    assert!(refused > 0, "the per-address limit was reached");
    // Fill the stalled readers' queues.
    let body: String = (0..40)
        .map(|i| {
            format!(
                "{{\"channel\":\"signals:FLOOD\",\"data\":{{\"pad\":\"{}\",\"i\":{i}}}}}\n",
                "x".repeat(4000)
            )
        })
        .collect();
    for _ in 0..25 {
        r.publish_batch(&body).await;
    }
    let peak = r.stats().await;
    eprintln!(
        "peak: queued_bytes {} slow_consumer_closes {} connections {}",
        peak["queued_bytes"], peak["slow_consumer_closes"], peak["connections"]
    );
    assert!(
        peak["queued_bytes"].as_u64().unwrap() > 0
            || peak["slow_consumer_closes"].as_u64().unwrap() > 0,
        "the abuse filled queues: {peak}"
    );
    drop((stalled, flooders, extra));
}

#[tokio::test]
async fn after_abusive_clients_leave_counts_queues_and_memory_return_to_baseline() {
    let r = start(Config {
        queue_bytes: 256 * 1024,
        max_connections_per_ip: 100,
        max_commands_per_sec: 10,
        command_burst: 10,
        rate_limit_close_after: 20,
        slow_close_grace_ms: 200,
        close_timeout_ms: 200,
        ..config()
    })
    .await;
    let baseline = r.stats().await;
    let rss0 = baseline["rss_bytes"].as_u64().unwrap();
    assert_eq!(baseline["connections"], 0);
    assert_eq!(baseline["queued_bytes"], 0);
    let mut rss = Vec::new();
    for round in 0..2 {
        abuse(&r).await;
        let s = r
            .wait_stats("abusers gone", |s| {
                s["connections"] == 0 && s["queued_bytes"] == 0 && s["subscriptions"] == 0
            })
            .await;
        assert_eq!(
            r.relay.per_ip.addresses(),
            0,
            "round {round}: per-address table empty"
        );
        rss.push(s["rss_bytes"].as_u64().unwrap());
    }
    let stats = r.stats().await;
    assert!(
        stats["errors"]["rate_limited"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert!(stats["handshake_rejects"].as_u64().unwrap() > 0, "{stats}");
    // Memory: within a tolerance of the start (allocator caches, thread stacks), and a
    // second round of the same abuse does not grow it further.
    const MIB: u64 = 1024 * 1024;
    eprintln!("rss: start {rss0}, after each round {rss:?}");
    assert!(rss[0] < rss0 + 32 * MIB, "start {rss0}, after {rss:?}");
    assert!(rss[1] < rss[0] + 16 * MIB, "no growth per round: {rss:?}");
    r.stop().await;
}
