//! Faulty clients next to healthy ones (issue 13): subscriber processes stopped and
//! continued with SIGSTOP / SIGCONT (python3-websockets), readers behind a zero window
//! (4 KiB receive buffer, never reading), frames sent in half, and slowloris upgrade
//! heads. The healthy subscribers must keep their latency and receive every message in
//! order; the faulty clients must be cut off by the relay while they still hold their
//! sockets; and the relay's connections and this process's descriptors (the relay runs
//! in it) must come back to the baseline. `tests/abuse.rs` has each defence on its own;
//! this is all of them at once, under publishing load.

mod support;

use futures_util::{SinkExt, StreamExt};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;
use tickrelay::Config;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Messages published, at one per `PERIOD`: 5 s of publishing.
const MESSAGES: u64 = 1000;
const PERIOD: Duration = Duration::from_millis(5);
/// Healthy subscribers.
const HEALTHY: usize = 4;
/// Latency bound of the healthy subscribers, generous for a busy 2-core CI machine.
const P99_BOUND: Duration = Duration::from_millis(250);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What the descriptors are (for the failure message).
fn fd_list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| {
            let to = std::fs::read_link(e.path()).map(|p| p.display().to_string());
            format!(
                "{}->{}",
                e.file_name().to_string_lossy(),
                to.unwrap_or_default()
            )
        })
        .collect();
    v.sort();
    v
}

/// Sends `sig` (STOP, CONT) to a child process this test started.
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// A python3-websockets subscriber on `channel`, started and subscribed.
async fn python_subscriber(
    r: &TestRelay,
    channel: &str,
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3" // Debian's, where python3-websockets lives
    } else {
        "python3"
    };
    let mut child = tokio::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/subscriber.py"
        ))
        .arg(format!("ws://{}", r.addr))
        .arg(channel)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (apt-get install python3-websockets)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("python subscriber ready in time")
        .unwrap();
    assert_eq!(first.as_deref(), Some("ready"), "needs python3-websockets");
    (child, lines)
}

/// Reads `MESSAGES` messages in order; returns each one's latency from `clock`, and the
/// connection (still open).
async fn healthy_reader(mut c: Ws, clock: Instant) -> (Vec<Duration>, Ws) {
    let mut lat = Vec::with_capacity(MESSAGES as usize);
    for want in 1..=MESSAGES {
        let m = recv(&mut c).await;
        assert_eq!(m["type"], "message", "{m}");
        assert_eq!(m["offset"], want, "every message, in order: {m}");
        let sent = Duration::from_micros(m["data"]["t"].as_u64().expect("t"));
        lat.push(clock.elapsed().saturating_sub(sent));
    }
    (lat, c)
}

/// Slowloris: an upgrade head sent a byte every 100 ms. Returns how long the relay let
/// it go on (it must cut it at --handshake-timeout-ms).
async fn slowloris(addr: std::net::SocketAddr) -> Duration {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let dribble = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for b in dribble.iter().cycle().take(200) {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            // A 408-style answer, then the close.
            Ok(Ok(_)) => continue,
            Err(_) => {}
        }
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_subscribers_keep_latency_and_order_while_faulty_ones_are_cut_off() {
    let r = start(Config {
        heartbeat_ms: 400, // silent for 1 s: cut off
        handshake_timeout_ms: 1000,
        close_timeout_ms: 500,
        ..config()
    })
    .await;
    // The first child process sets up the runtime's SIGCHLD handling (descriptors that
    // stay): spawn one before the baseline.
    let ok = tokio::process::Command::new("true").status().await.unwrap();
    assert!(ok.success());
    let base_fds = open_fds();
    let base_list = fd_list();
    let clock = Instant::now();

    let mut healthy = Vec::new();
    for _ in 0..HEALTHY {
        let mut c = ws(&r.url("?channels=signals")).await;
        assert_eq!(recv(&mut c).await["type"], "subscribed");
        healthy.push(tokio::spawn(healthy_reader(c, clock)));
    }
    // Subscriber processes: one stopped briefly (it resumes), one for longer than the
    // idle timeout (the relay must cut it off while it is stopped).
    let (mut brief, brief_out) = python_subscriber(&r, "signals").await;
    let (mut long, mut long_out) = python_subscriber(&r, "signals").await;
    let (brief_pid, long_pid) = (brief.id().unwrap(), long.id().unwrap());
    // Zero window: subscribed, never reading.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(RawWs::connect_small_window(r.addr, "?channels=signals").await);
    }
    // Half frames: a text frame head announcing 100 bytes, then 10 of them, then nothing.
    let mut halves = Vec::new();
    for _ in 0..3 {
        let mut c = RawWs::connect(r.addr, "?channels=signals").await;
        let f = masked_frame(true, 0x1, &[b' '; 100]);
        c.stream.write_all(&f[..f.len() - 90]).await.unwrap();
        halves.push(c);
    }
    let lorises: Vec<_> = (0..3).map(|_| tokio::spawn(slowloris(r.addr))).collect();

    let publisher = ws(&r.url(&format!("?token={KEY}"))).await;
    let (mut tx, mut rx) = publisher.split();
    let acks = tokio::spawn(async move {
        let mut n = 0u64;
        while n < MESSAGES {
            match tokio::time::timeout(WAIT, rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains("\"published\"") => n += 1,
                Ok(Some(Ok(_))) => {}
                other => panic!("publisher: {other:?}"),
            }
        }
        rx
    });
    let start = tokio::time::Instant::now();
    for i in 1..=MESSAGES {
        match i {
            200 => {
                signal(brief_pid, "STOP");
                signal(long_pid, "STOP");
            }
            240 => signal(brief_pid, "CONT"),
            700 => signal(long_pid, "CONT"),
            _ => {}
        }
        let t = clock.elapsed().as_micros();
        let cmd = format!(r#"{{"op":"publish","channel":"signals","data":{{"t":{t}}}}}"#);
        tx.send(Message::text(cmd)).await.unwrap();
        tokio::time::sleep_until(start + PERIOD * i as u32).await;
    }
    let rx = tokio::time::timeout(WAIT, acks)
        .await
        .expect("acks")
        .unwrap();

    let mut all = Vec::new();
    let mut kept = Vec::new();
    for h in healthy {
        let (lat, c) = tokio::time::timeout(WAIT, h)
            .await
            .expect("healthy done")
            .unwrap();
        assert_eq!(lat.len() as u64, MESSAGES);
        all.extend(lat);
        kept.push(c);
    }
    all.sort();
    let p99 = all[all.len() * 99 / 100];
    eprintln!("healthy subscribers: p99 {p99:?}, max {:?}", all.last());
    assert!(
        p99 < P99_BOUND,
        "healthy p99 {p99:?} (max {:?}) while the faults ran",
        all.last()
    );

    // The long-stopped process was cut off while stopped: once continued it reads what
    // was buffered, the close, and exits by itself.
    let line = tokio::time::timeout(WAIT, long_out.next_line())
        .await
        .expect("the long-stopped subscriber ends by itself")
        .unwrap()
        .unwrap_or_default();
    assert!(line.starts_with("closed after"), "{line}");
    assert!(tokio::time::timeout(WAIT, long.wait())
        .await
        .unwrap()
        .unwrap()
        .success());
    for l in lorises {
        let held = tokio::time::timeout(WAIT, l)
            .await
            .expect("loris cut")
            .unwrap();
        assert!(held < Duration::from_secs(5), "slowloris held for {held:?}");
    }
    // Zero-window readers and half frames were cut off while this test still held their
    // sockets: each reads what the relay had sent, then the end (a close frame or EOF),
    // never the 10 s silence of a connection the relay forgot.
    for c in stalled.iter_mut().chain(halves.iter_mut()) {
        c.expect_close().await;
    }
    let s = r.stats().await;
    assert_eq!(s["slow_consumer_closes"], 0, "cut by the heartbeat: {s}");
    // Left: the healthy subscribers, the publisher, and the briefly stopped process if it
    // kept up (all of them idle now, so the heartbeat may be taking them too).
    assert!(
        s["connections"].as_u64().unwrap() <= HEALTHY as u64 + 2,
        "{s}"
    );
    brief.kill().await.unwrap();

    // Everyone goes away: connections and descriptors back to the baseline.
    drop((stalled, halves, tx, rx, kept));
    drop((brief, brief_out, long, long_out));
    r.wait_stats("no connection left", |s| s["connections"] == 0)
        .await;
    let deadline = Instant::now() + WAIT;
    while open_fds() > base_fds && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        open_fds() <= base_fds,
        "descriptors: {:?} now, {base_list:?} before the clients",
        fd_list()
    );
    r.stop().await;
}
