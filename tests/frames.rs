//! Frame-level behaviour, driven by a raw client: fragmentation, UTF-8, size limits,
//! control frames and close codes.

mod support;
use std::time::Duration;
use support::*;
use tickrelay::protocol::encode::{OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use tickrelay::Config;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn fragmented_commands_are_reassembled_even_with_pings_between() {
    let r = start(config()).await;
    let mut c = RawWs::connect(r.addr, "").await;
    let cmd = r#"{"op":"ping","id":"frag€"}"#.as_bytes();
    let euro = cmd.iter().position(|&b| b == 0xe2).unwrap();
    c.send_frame(false, OP_TEXT, &cmd[..euro + 1]).await; // split inside the UTF-8 sequence
    c.send_frame(true, OP_PING, b"hi").await;
    c.send_frame(false, 0, &cmd[euro + 1..euro + 2]).await;
    c.send_frame(true, 0, &cmd[euro + 2..]).await;
    assert_eq!(
        c.read_frame().await,
        Some((OP_PONG, b"hi".to_vec())),
        "ping answered mid-message"
    );
    assert_eq!(
        c.recv().await,
        serde_json::json!({"type":"pong","id":"frag€"})
    );
    r.stop().await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let r = start(config()).await;
    let mut c = RawWs::connect(r.addr, "").await;
    c.send_frame(true, OP_TEXT, b"{\"op\":\"ping\xff\"}").await;
    assert_eq!(c.expect_close().await, Some(1007));
    let mut c = RawWs::connect(r.addr, "").await;
    c.send_frame(false, OP_TEXT, b"{\"op\":").await;
    c.send_frame(false, 0, b"\xc0\xaf").await; // invalid before the message ends
    assert_eq!(c.expect_close().await, Some(1007));
    r.stop().await;
}

#[tokio::test]
async fn the_message_limit_is_exact_and_over_it_closes_with_1009() {
    let r = start(Config {
        max_message_bytes: 1000,
        ..config()
    })
    .await;
    let pad = |n: usize| format!(r#"{{"op":"ping","id":1,"p":"{}"}}"#, "x".repeat(n - 27));
    assert_eq!(pad(1000).len(), 1000);
    let mut c = RawWs::connect(r.addr, "").await;
    c.send_text(&pad(1000)).await;
    assert_eq!(
        c.recv().await["type"],
        "pong",
        "exactly the limit is accepted"
    );
    c.send_text(&pad(1001)).await;
    assert_eq!(c.expect_close().await, Some(1009));
    // Over the limit across fragments, each fragment small.
    let mut c = RawWs::connect(r.addr, "").await;
    for _ in 0..10 {
        c.send_frame(false, if c_first() { OP_TEXT } else { 0 }, &[b' '; 100])
            .await;
    }
    c.send_frame(true, 0, b" ").await;
    assert_eq!(c.expect_close().await, Some(1009));
    // A 64 MiB length header is refused before any payload arrives.
    let mut c = RawWs::connect(r.addr, "").await;
    let mut head = vec![0x81, 0x80 | 127];
    head.extend_from_slice(&(64u64 << 20).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    c.stream.write_all(&head).await.unwrap();
    assert_eq!(c.expect_close().await, Some(1009));
    // Others are unaffected.
    let mut ok = ws(&r.url("")).await;
    send(&mut ok, r#"{"op":"ping"}"#).await;
    assert_eq!(recv(&mut ok).await["type"], "pong");
    r.stop().await;
}

// The first fragment is text, the rest continuations.
fn c_first() -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRST: AtomicBool = AtomicBool::new(true);
    FIRST.swap(false, Ordering::Relaxed)
}

#[tokio::test]
async fn protocol_violations_close_with_1002_and_binary_with_1003() {
    let r = start(config()).await;
    let cases: Vec<(&str, Vec<Vec<u8>>, u16)> = vec![
        ("reserved opcode", vec![masked_frame(true, 0x3, b"")], 1002),
        (
            "continuation first",
            vec![masked_frame(true, 0, b"x")],
            1002,
        ),
        (
            "new message mid-fragment",
            vec![
                masked_frame(false, OP_TEXT, b"a"),
                masked_frame(true, OP_TEXT, b"b"),
            ],
            1002,
        ),
        (
            "fragmented ping",
            vec![masked_frame(false, OP_PING, b"")],
            1002,
        ),
        (
            "ping over 125",
            vec![masked_frame(true, OP_PING, &[0; 126])],
            1002,
        ),
        (
            "close over 125",
            vec![masked_frame(
                true,
                OP_CLOSE,
                &[3, 232]
                    .iter()
                    .chain(&[b'x'; 124])
                    .copied()
                    .collect::<Vec<_>>(),
            )],
            1002,
        ),
        (
            "close with 1 byte",
            vec![masked_frame(true, OP_CLOSE, &[3])],
            1002,
        ),
        (
            "close code 1005",
            vec![masked_frame(true, OP_CLOSE, &1005u16.to_be_bytes())],
            1002,
        ),
        (
            "close reason not UTF-8",
            vec![masked_frame(true, OP_CLOSE, &[3, 232, 0xff])],
            1007,
        ),
        (
            "reserved bit",
            vec![{
                let mut f = masked_frame(true, OP_TEXT, b"{}");
                f[0] |= 0x40;
                f
            }],
            1002,
        ),
        ("binary", vec![masked_frame(true, OP_BINARY, b"{}")], 1003),
        (
            "unmasked text frame (RFC 6455 5.1)",
            vec![vec![0x81, 0x02, b'{', b'}']],
            1002,
        ),
        (
            "unmasked ping after a good frame",
            vec![
                masked_frame(true, OP_TEXT, br#"{"op":"ping"}"#),
                vec![0x89, 0x00],
            ],
            1002,
        ),
    ];
    for (what, frames, code) in cases {
        let mut c = RawWs::connect(r.addr, "").await;
        for f in frames {
            c.stream.write_all(&f).await.unwrap();
        }
        assert_eq!(c.expect_close().await, Some(code), "{what}");
    }
    r.stop().await;
}

#[tokio::test]
async fn a_client_close_is_echoed_and_pings_are_answered() {
    let r = start(config()).await;
    let mut c = RawWs::connect(r.addr, "").await;
    c.send_frame(true, OP_PING, b"abc").await;
    assert_eq!(c.read_frame().await, Some((OP_PONG, b"abc".to_vec())));
    c.send_frame(true, OP_CLOSE, &[0x0f, 0xa0, b'o', b'k'])
        .await; // 4000
    assert_eq!(c.expect_close().await, Some(4000));
    assert_eq!(
        c.read_frame().await,
        None,
        "the relay closes the TCP connection after the handshake"
    );
    r.wait_stats("the connection to go", |s| s["connections"] == 0)
        .await;
    r.stop().await;
}

#[tokio::test]
async fn a_first_frame_sent_with_the_handshake_is_not_lost() {
    let r = start(config()).await;
    let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let mut bytes = format!("GET /ws HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}\r\n").into_bytes();
    bytes.extend(masked_frame(true, OP_TEXT, br#"{"op":"ping","id":42}"#));
    s.write_all(&bytes).await.unwrap();
    drop(s);
    let mut c = RawWs::connect(r.addr, "").await; // sanity: relay alive
    c.send_text(r#"{"op":"ping","id":1}"#).await;
    assert_eq!(c.recv().await["id"], 1);
    // The real check: the same bytes in one write, read back.
    let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !String::from_utf8_lossy(&got).contains(r#""id":42"#) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pong for the early frame"
        );
        let mut chunk = [0u8; 4096];
        use tokio::io::AsyncReadExt;
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    r.stop().await;
}

#[tokio::test]
async fn heartbeat_pings_and_closes_a_silent_connection_with_1001() {
    let r = start(Config {
        heartbeat_ms: 100,
        ..config()
    })
    .await;
    // A client that answers nothing gets pings, then 1001 after 2.5 heartbeats of silence.
    let mut silent = RawWs::connect(r.addr, "").await;
    let started = tokio::time::Instant::now();
    let mut pings = 0;
    let code = loop {
        match silent.read_frame().await {
            Some((OP_PING, _)) => pings += 1,
            Some((OP_CLOSE, p)) => break u16::from_be_bytes([p[0], p[1]]),
            other => panic!("unexpected {other:?}"),
        }
    };
    let waited = started.elapsed();
    assert_eq!(code, 1001);
    assert!(pings >= 2, "pinged before giving up ({pings})");
    assert!(
        waited >= std::time::Duration::from_millis(250),
        "not before 2.5 heartbeats: {waited:?}"
    );
    // A client that keeps talking (JSON pings, as browsers do) stays open.
    let mut chatty = RawWs::connect(r.addr, "").await;
    for i in 0..8 {
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        chatty
            .send_text(&format!(r#"{{"op":"ping","id":{i}}}"#))
            .await;
        assert_eq!(
            chatty.recv().await["id"],
            i,
            "still open after {}ms",
            (i + 1) * 60
        );
    }
    r.stop().await;
}

#[tokio::test]
async fn a_request_head_trickled_too_slowly_is_cut_off() {
    use tokio::io::AsyncReadExt;
    let r = start(Config {
        handshake_timeout_ms: 300,
        ..config()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 512];
    // Keep trickling a header byte now and then; the relay must still give up.
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                n = s.read(&mut buf) => return n.map_or(0, |n| n),
                _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                    if s.write_all(b"X").await.is_err() { return 0; }
                }
            }
        }
    })
    .await
    .expect("closed in time");
    let waited = started.elapsed();
    assert!(
        closed == 0 || String::from_utf8_lossy(&buf[..closed]).contains("408"),
        "closed, not served"
    );
    assert!(
        waited >= std::time::Duration::from_millis(250)
            && waited < std::time::Duration::from_secs(3),
        "{waited:?}"
    );
    r.stop().await;
}

/// A silent connection holds no frame buffer, and one that speaks again after being
/// silent is served as before: frames split across the silence and commands arriving
/// one byte at a time are all handled.
#[tokio::test]
async fn a_connection_that_goes_quiet_and_speaks_again_is_served() {
    let r = start(config()).await;
    let mut c = RawWs::connect(r.addr, "").await;
    for round in 0..3 {
        let cmd = format!(r#"{{"op":"ping","id":{round}}}"#);
        let f = masked_frame(true, OP_TEXT, cmd.as_bytes());
        // Half a frame, a pause, the rest.
        c.stream.write_all(&f[..3]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.stream.write_all(&f[3..]).await.unwrap();
        assert_eq!(c.recv().await["id"], round);
        // One byte at a time.
        for b in &f {
            c.stream.write_all(&[*b]).await.unwrap();
            c.stream.flush().await.unwrap();
        }
        assert_eq!(c.recv().await["id"], round);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.stop().await;
}

#[tokio::test]
async fn a_frame_trickled_after_the_handshake_is_cut_off_by_the_heartbeat() {
    let r = start(Config {
        heartbeat_ms: 100,
        ..config()
    })
    .await;
    let mut c = RawWs::connect(r.addr, "").await;
    let frame = masked_frame(
        true,
        OP_TEXT,
        format!(r#"{{"op":"ping","id":1,"pad":"{}"}}"#, "x".repeat(60)).as_bytes(),
    );
    // One byte per 40 ms (a byte a second, scaled to the 100 ms heartbeat): the frame
    // would take over 3 s to complete, the idle timeout is 250 ms.
    let started = tokio::time::Instant::now();
    let mut sent = 0;
    let code = loop {
        assert!(started.elapsed() < WAIT, "still open after {sent} bytes");
        if sent < frame.len() && c.stream.write_all(&frame[sent..sent + 1]).await.is_ok() {
            sent += 1;
        }
        match tokio::time::timeout(std::time::Duration::from_millis(40), c.read_frame()).await {
            Err(_) | Ok(Some((OP_PING, _))) => continue,
            Ok(Some((OP_CLOSE, p))) => break u16::from_be_bytes([p[0], p[1]]),
            Ok(other) => panic!("expected a close frame, got {other:?}"),
        }
    };
    let waited = started.elapsed();
    assert_eq!(code, 1001);
    assert!(sent < frame.len(), "closed before the frame was complete");
    assert!(
        waited >= std::time::Duration::from_millis(200)
            && waited < std::time::Duration::from_secs(3),
        "closed after {waited:?}"
    );
    assert_eq!(c.read_frame().await, None, "and the TCP connection ends");
    r.wait_stats("the connection to go", |s| s["connections"] == 0)
        .await;
    r.stop().await;
}
