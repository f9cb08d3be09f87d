//! permessage-deflate (RFC 7692) end to end: a real compressing client (Python's
//! `websockets`) beside plain ones, the one-compression-per-message count, inflation of
//! client messages, and the bound on a zip bomb.

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::*;
use tickrelay::Config;
use tokio::io::{AsyncBufReadExt, BufReader};

fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3" // Debian's, where python3-websockets lives
    } else {
        "python3"
    }
}

/// A tick of the demo's shape, padded past the default threshold.
fn tick(seq: u64) -> String {
    format!(
        r#"{{"seq":{seq},"symbol":"BTC-USD","price":43250.5,"bid":43250.0,"ask":43251.0,"bid_size":1.25,"ask_size":0.75,"volume_24h":18234.125,"change_24h":-0.0123,"venue":"demo"}}"#
    )
}

#[tokio::test]
async fn one_compression_per_message_for_every_compressing_subscriber() {
    const SUBS: usize = 5;
    const MESSAGES: u64 = 30;
    let r = start(config()).await;
    let channel = "ticker:DEFLATE";
    // Two plain clients (tungstenite offers no extension) on the same channel.
    let mut plain = Vec::new();
    for _ in 0..2 {
        let mut ws = ws(&r.url(&format!("?channels={channel}"))).await;
        while recv(&mut ws).await["type"] != "subscribed" {}
        plain.push(ws);
    }
    let mut child = tokio::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/deflate.py"
        ))
        .arg(format!("ws://{}", r.addr))
        .arg(channel)
        .arg(SUBS.to_string())
        .arg(MESSAGES.to_string())
        .arg(KEY)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (apt-get install python3-websockets)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line()).await;
    assert_eq!(
        line.expect("ready in time").unwrap().as_deref(),
        Some("ready")
    );
    for seq in 1..=MESSAGES {
        assert_eq!(r.publish(channel, &tick(seq)).await.0, 200);
    }
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let line = line.expect("client finished in time").unwrap();
    assert_eq!(
        line.as_deref(),
        Some("ok"),
        "the client failed (stderr above)"
    );
    assert!(child.wait().await.unwrap().success());
    for ws in &mut plain {
        for seq in 1..=MESSAGES {
            let m = recv(ws).await;
            assert_eq!(m["data"]["seq"], seq, "{m}");
        }
    }
    let stats = r.stats().await;
    assert_eq!(stats["frames_deflated"]["envelope"], MESSAGES, "{stats}");
    assert_eq!(stats["frames_built"]["envelope"], MESSAGES, "{stats}");
    assert_eq!(
        stats["messages_inflated"], 1,
        "the client's compressed publish"
    );
    let (_, _, metrics) = http(r.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains(&format!(
            "tickrelay_frames_deflated_total{{format=\"envelope\"}} {MESSAGES}"
        )),
        "{metrics}"
    );
    r.stop().await;
}

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

#[tokio::test]
async fn the_offer_is_answered_unless_deflate_is_off() {
    let r = start(config()).await;
    let (_, head) = RawWs::connect_with(r.addr, "", OFFER).await;
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "{head}"
    );
    let (_, head) = RawWs::connect_with(r.addr, "", "").await;
    assert!(!head.to_ascii_lowercase().contains("extensions"), "{head}");
    r.stop().await;
    let r = start(Config {
        deflate: "off".parse().unwrap(),
        ..config()
    })
    .await;
    let (_, head) = RawWs::connect_with(r.addr, "", OFFER).await;
    assert!(!head.to_ascii_lowercase().contains("extensions"), "{head}");
    r.stop().await;
}

#[tokio::test]
async fn below_the_threshold_and_in_an_off_namespace_messages_go_plain() {
    let namespaces =
        tickrelay::namespace::Namespaces::from_toml("[namespaces.quiet]\ndeflate = \"off\"")
            .unwrap();
    let r = start(Config {
        namespaces: std::sync::Arc::new(namespaces),
        ..config()
    })
    .await;
    let (mut ws, _) = RawWs::connect_with(r.addr, "?channels=quiet:A,ticker:B", OFFER).await;
    assert_eq!(ws.recv().await["type"], "subscribed");
    r.publish("quiet:A", &tick(1)).await;
    r.publish("ticker:B", r#"{"p":1}"#).await;
    r.publish("ticker:B", &tick(2)).await;
    let first_bytes = ws.first_bytes(3).await;
    assert_eq!(first_bytes, [0x81, 0x81, 0xc1], "plain, plain, compressed");
    let stats = r.stats().await;
    assert_eq!(stats["frames_deflated"]["envelope"], 1, "{stats}");
    r.stop().await;
}

#[tokio::test]
async fn a_zip_bomb_is_closed_with_1009() {
    let r = start(config()).await; // 64 KiB messages
    let (mut ws, _) = RawWs::connect_with(r.addr, "", OFFER).await;
    let zeros = vec![b' '; 8 << 20];
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut bomb = Vec::with_capacity(64 << 10);
    c.compress_vec(&zeros, &mut bomb, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(bomb.len() < 60 << 10, "{} bytes", bomb.len());
    bomb.truncate(bomb.len() - 4);
    // RSV1 | text: a compressed message, 8 MiB once inflated.
    ws.send_frame(true, 0x40 | 0x1, &bomb).await;
    assert_eq!(ws.expect_close().await, Some(1009));
    r.stop().await;
}

#[tokio::test]
async fn rsv1_without_the_extension_or_on_a_continuation_is_1002() {
    let r = start(config()).await;
    let mut ws = RawWs::connect(r.addr, "").await;
    ws.send_frame(true, 0x40 | 0x1, b"x").await;
    assert_eq!(ws.expect_close().await, Some(1002));
    let (mut ws, _) = RawWs::connect_with(r.addr, "", OFFER).await;
    ws.send_frame(false, 0x1, b"{\"op\":").await;
    ws.send_frame(true, 0x40, b"\"ping\"}").await;
    assert_eq!(ws.expect_close().await, Some(1002));
    r.stop().await;
}
