//! Graceful shutdown: every WebSocket gets 1001, queued messages first; the binary exits 0
//! on SIGTERM.

mod support;
use std::process::Stdio;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn shutdown_sends_queued_messages_then_1001() {
    let r = start(config()).await;
    let mut a = RawWs::connect(r.addr, "?channels=t").await;
    assert_eq!(a.recv().await["type"], "subscribed");
    let mut b = RawWs::connect(r.addr, "").await;
    r.publish("t", "1").await;
    r.stop().await;
    assert_eq!(
        a.recv().await["offset"],
        1,
        "queued message delivered before the close"
    );
    assert_eq!(a.expect_close().await, Some(1001));
    assert_eq!(b.expect_close().await, Some(1001));
}

#[tokio::test]
async fn health_answers_draining_and_upgrades_503_while_connections_drain() {
    let mut r = start(tickrelay::Config {
        close_timeout_ms: 3_000,
        ..config()
    })
    .await;
    // A client that never answers the close keeps the drain going for close_timeout.
    let mut a = RawWs::connect(r.addr, "").await;
    let (status, _, body) = http(r.addr, "GET", "/health", &[], b"").await;
    assert_eq!((status, body.trim()), (200, r#"{"status":"ok"}"#));
    r.begin_stop();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, body) = http(r.addr, "GET", "/health", &[], b"").await;
        if status == 503 {
            assert_eq!(body.trim(), "draining");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _, body) = http(r.addr, "GET", "/ws", &UPGRADE, b"").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(a.expect_close().await, Some(1001));
    r.stop().await;
}

#[tokio::test]
async fn the_binary_runs_the_demo_and_exits_0_on_sigterm() {
    let bin = env!("CARGO_BIN_EXE_tickrelay");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(bin)
        .args(["--demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "info")
        .stderr(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = tokio::time::timeout(WAIT, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.contains("listening") {
                return;
            }
        }
    })
    .await;
    assert!(started.is_ok(), "the relay logs that it is listening");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = ws(&format!("ws://{addr}/ws?channels=ticker:BTC-USD,signals")).await;
    assert_eq!(recv(&mut c).await["type"], "subscribed");
    let tick = recv(&mut c).await;
    assert_eq!(tick["channel"], "ticker:BTC-USD");
    for field in ["symbol", "price", "bid", "ask", "change_24h", "volume_24h"] {
        assert!(!tick["data"][field].is_null(), "{field} in {tick}");
    }
    let pid = child.id().unwrap() as i32;
    // SAFETY-free: plain kill(2) via the shell's kill, to avoid a libc dependency.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}
