//! Abuse that used to cost more than the limits promise (issue 13): ping floods, peers
//! that stop reading, subscribers filling the channel table, batches that never yield.

mod support;

use std::time::Duration;
use support::*;
use tickrelay::Config;
use tokio::io::AsyncWriteExt;

/// A client that sends pings and never reads: the relay holds one pong for it, not one per
/// ping; with the command rate limit on, the flood is refused and then closed with 1008.
#[tokio::test]
async fn a_ping_flood_holds_one_pong_and_is_rate_limited() {
    let r = start(Config {
        max_commands_per_sec: 0, // off: only the one-pending-pong rule is at work
        ..config()
    })
    .await;
    let mut c = RawWs::connect_small_window(r.addr, "").await;
    let pings: Vec<u8> = (0..20_000)
        .flat_map(|_| masked_frame(true, 0x9, b"0123456789"))
        .collect();
    c.stream.write_all(&pings).await.unwrap();
    // However many of them the relay has read by now, it holds at most one pong (before:
    // one per ping, 12 bytes each, past what the 4 KiB window took).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = r.stats().await;
    assert!(
        s["queued_bytes"].as_u64().unwrap() <= 12 + tickrelay::outbox::FRAME_COST as u64,
        "one 12-byte pong at most, not one per ping: {s}"
    );
    assert_eq!(s["slow_consumer_closes"], 0, "{s}");
    r.stop().await;

    let r = start(Config {
        max_commands_per_sec: 10,
        command_burst: 10,
        rate_limit_close_after: 20,
        ..config()
    })
    .await;
    let mut c = RawWs::connect(r.addr, "").await;
    let pings: Vec<u8> = (0..100)
        .flat_map(|_| masked_frame(true, 0x9, b""))
        .collect();
    c.stream.write_all(&pings).await.unwrap();
    let mut pongs = 0;
    let code = loop {
        match c.read_frame().await {
            Some((0xA, _)) => pongs += 1,
            Some((0x8, payload)) => break u16::from_be_bytes([payload[0], payload[1]]),
            Some(_) => {}
            None => panic!("closed without a close frame"),
        }
    };
    assert_eq!(code, 1008);
    // The burst is answered (pongs of pings read together coalesce), the rest not.
    assert!((1..=10).contains(&pongs), "{pongs} pongs");
    let s = r.stats().await;
    assert_eq!(s["errors"]["rate_limited"], 1, "the close is counted: {s}");
    r.stop().await;
}

/// A peer with a zero window on a quiet channel: the write blocks, and the heartbeat's
/// idle timeout must still end the session (it used to hold its place forever).
#[tokio::test]
async fn a_writer_blocked_on_a_full_socket_still_times_out_an_idle_peer() {
    let r = start(Config {
        heartbeat_ms: 200, // silent for 500 ms: gone
        queue_bytes: 64 << 20,
        conflate_after_bytes: 64 << 20,
        ..config()
    })
    .await;
    let c = RawWs::connect_small_window(r.addr, "?channels=signals").await;
    // Enough to fill the 4 KiB window and the relay's send buffer, far under the queue.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(60_000));
    for _ in 0..80 {
        r.publish("signals", &big).await;
    }
    let s = r.stats().await;
    assert_eq!(s["connections"], 1, "{s}");
    assert!(
        s["queued_bytes"].as_u64().unwrap() > 1 << 20,
        "the write is blocked: {s}"
    );
    r.wait_stats("the silent, blocked peer dropped", |s| {
        s["connections"] == 0
    })
    .await;
    assert_eq!(
        r.stats().await["slow_consumer_closes"],
        0,
        "not a slow-consumer close"
    );
    drop(c);
    r.stop().await;
}

/// Anonymous clients subscribing to made-up names fill the channel table up to the
/// publishers' reserve, never past it: a feed can still publish to new channels.
#[tokio::test]
async fn subscribers_cannot_take_the_channels_publishers_need() {
    let r = start(Config {
        max_channels: 20,
        publisher_channel_reserve: 2, // places 19 and 20 (at most a tenth)
        max_subscriptions: 100,
        ..config()
    })
    .await;
    let mut c = ws(&r.url("")).await;
    let names: Vec<String> = (0..18).map(|i| format!("ticker:made-up-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(subscribe(&mut c, &names).await["type"], "subscribed");
    send(
        &mut c,
        r#"{"op":"subscribe","channels":["ticker:one-more"],"id":9}"#,
    )
    .await;
    let e = recv(&mut c).await;
    assert_eq!(e["code"], "too_many_channels", "{e}");
    // Existing channels can still be subscribed to.
    let mut d = ws(&r.url("")).await;
    assert_eq!(
        subscribe(&mut d, &["ticker:made-up-0"]).await["type"],
        "subscribed"
    );
    // The publisher creates its two new channels, then the table is full for it too.
    for ch in ["ticker:NEW1", "ticker:NEW2"] {
        assert_eq!(r.publish(ch, "1").await.0, 200, "{ch}");
    }
    assert_eq!(r.publish("ticker:NEW3", "1").await.0, 503);
    r.stop().await;
}

/// A 10,000-item batch yields to the runtime as it goes: a subscriber that reads at once
/// keeps up instead of finding its queue full before its writer ever ran (this test's
/// runtime has one thread, the relay's and the client's tasks share it).
#[tokio::test]
async fn a_large_batch_lets_subscribers_drain_while_it_publishes() {
    let r = start(Config {
        queue_bytes: 32 * 1024,
        max_batch_items: 10_000,
        max_batch_bytes: 4 << 20,
        ..config()
    })
    .await;
    let mut c = ws(&r.url("?channels=signals")).await;
    assert_eq!(recv(&mut c).await["type"], "subscribed");
    let reader = tokio::spawn(async move {
        for want in 1..=10_000u64 {
            let m = recv(&mut c).await;
            assert_eq!(m["offset"], want, "{m}");
        }
    });
    let batch: String = (0..10_000)
        .map(|i| format!("{{\"channel\":\"signals\",\"data\":{{\"i\":{i}}}}}\n"))
        .collect();
    r.publish_batch(&batch).await;
    tokio::time::timeout(WAIT, reader)
        .await
        .expect("all read")
        .unwrap();
    assert_eq!(r.stats().await["slow_consumer_closes"], 0);
    r.stop().await;
}

/// Idle HTTP connections (no request yet, or a keep-alive left open) are counted: past
/// --max-http-connections the next one is answered 503 at once; WebSockets do not count.
#[tokio::test]
async fn plain_http_connections_are_capped() {
    let r = start(Config {
        max_http_connections: 3,
        ..config()
    })
    .await;
    let _ws = ws(&r.url("")).await; // upgraded: not an HTTP connection any more
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(r.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, body) = http(r.addr, "GET", "/health", &[], b"").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("--max-http-connections"), "{body}");
    drop(idle.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, _) = http(r.addr, "GET", "/health", &[], b"").await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.stop().await;
}

/// A client that asks for a large response and stops reading is dropped once the write
/// has made no progress for --http-write-timeout-ms: it no longer holds its place (nor
/// the response's memory).
#[tokio::test]
async fn an_http_response_nobody_reads_times_out() {
    let r = start(Config {
        http_write_timeout_ms: 300,
        max_response_bytes: 32 << 20,
        ..config()
    })
    .await;
    // 100 messages of 60 KB in history: a 6 MB response, past any socket buffer here.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(60_000));
    for _ in 0..100 {
        assert_eq!(r.publish("signals:big", &big).await.0, 200);
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(r.addr).await.unwrap();
    let req = format!(
        "GET /history/signals:big?limit=100 HTTP/1.1\r\nHost: {}\r\n\r\n",
        r.addr
    );
    stalled.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = r.stats().await;
    assert_eq!(
        s["http_connections"], 2,
        "the stalled one and this one: {s}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = r.stats().await;
        if s["http_connections"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled response was never timed out: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What it can still read is the part that was written: not the whole response.
    let mut got = 0usize;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut stalled, &mut buf))
            .await
            .expect("the connection ends")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if head.len() < 12 {
                    head.extend_from_slice(&buf[..n.min(12)]);
                }
                got += n
            }
        }
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    assert!(got < 6_000_000, "{got} bytes: the response was not cut off");
    r.stop().await;
}
