//! `connect` (handshakes per second) and `idle` (memory per held connection).

use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cli::{ConnectArgs, IdleArgs};
use crate::net::{self, ConnError, Target};
use crate::report::{Report, Ticker};
use crate::stats::{self, fmt_rate, CpuWindow, Json, Recorder};
use crate::subs::{self, ConnStats, Shared};
use crate::summary::{connection_fields, cpu_fields, latency_row};

/// Runs the connect mode: N connections, C handshakes in flight, all held until the last
/// is done.
pub async fn connect(a: ConnectArgs, target: Target) -> Report {
    let c = &a.common;
    let timeout = Duration::from_secs_f64(c.connect_timeout);
    let conns = Arc::new(ConnStats::default());
    let rec = Arc::new(Recorder::new(64));
    let next = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(Mutex::new(Vec::with_capacity(a.connections)));
    let cpu = CpuWindow::start(c.relay_pid);
    let ticker = {
        let (conns, rec) = (conns.clone(), rec.clone());
        let n = a.connections;
        let mut last = 0u64;
        Ticker::start(c.quiet, move |_| {
            let up = conns.up.load(Ordering::Relaxed);
            let rate = up - last;
            last = up;
            let p99 = rec.merged().value_at_percentile(99.0);
            (
                format!(
                    "connections {up}/{n} up, {} failed | {}/s | handshake p99 {}",
                    conns.failed.load(Ordering::Relaxed),
                    fmt_rate(rate as f64),
                    stats::fmt_ns(p99)
                ),
                rate as f64,
            )
        })
    };
    let start = Instant::now();
    let deadline = start + timeout + Duration::from_secs(60);
    let workers = c.concurrency.min(a.connections);
    let mut ws = Vec::new();
    for _ in 0..workers {
        let (target, conns, rec, next, held) = (
            target.clone(),
            conns.clone(),
            rec.clone(),
            next.clone(),
            held.clone(),
        );
        let n = a.connections;
        ws.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if Instant::now() >= deadline {
                    conns.fail(ConnError {
                        kind: net::Failure::Timeout,
                        detail: "connect phase over before this connection's turn".into(),
                    });
                    continue;
                }
                let t0 = stats::now_ns();
                let r = tokio::time::timeout(timeout, async {
                    let mut s = net::tcp(&target, i, false).await?;
                    net::upgrade(&mut s, &target.host, "/ws", net::Head::Discard).await?;
                    Ok::<_, ConnError>(s)
                })
                .await;
                match r {
                    Ok(Ok(s)) => {
                        let shard = rec.shard(i);
                        shard.hist.lock().saturating_record(stats::now_ns() - t0);
                        shard.count.fetch_add(1, Ordering::Relaxed);
                        conns.up.fetch_add(1, Ordering::Relaxed);
                        held.lock().push(s);
                    }
                    Ok(Err(e)) => conns.fail(e),
                    Err(_) => conns.fail(ConnError {
                        kind: net::Failure::Timeout,
                        detail: format!("no upgrade within {timeout:?}"),
                    }),
                }
            }
        }));
    }
    for w in ws {
        let _ = w.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_use = cpu.read();
    let timeline = ticker.stop();
    // Verify the held connections are still there (the relay did not drop them), then
    // close them all.
    let mut streams = std::mem::take(&mut *held.lock());
    let mut alive = 0u64;
    for s in &mut streams {
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(0), s.peek(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            _ => alive += 1,
        }
    }
    for s in &streams {
        net::reset_on_close(s);
    }
    drop(streams);
    let up = conns.up.load(Ordering::Relaxed);
    let hist = rec.merged();
    let mut r = Report::new("connect", "handshakes", timeline);
    r.ok = up == a.connections as u64;
    connection_fields(&mut r, a.connections, &conns, secs);
    let rate = up as f64 / secs.max(1e-9);
    r.field(
        "handshakes_per_s",
        format!("{} ({} in flight)", fmt_rate(rate), c.concurrency),
        Json::Num(rate),
    );
    r.field(
        "handshake_latency",
        latency_row(&hist),
        stats::latency_json(&hist),
    );
    r.field("still_open_at_end", alive.to_string(), Json::Int(alive));
    cpu_fields(&mut r, &cpu_use, c.threads);
    r.latency = Some((
        "Handshake latency (connect to 101) by percentile".into(),
        hist,
    ));
    r
}

/// Runs the idle mode: N subscribed connections held for --hold seconds, with the
/// relay's RSS before and after.
pub async fn idle(a: IdleArgs, target: Target) -> Report {
    let c = &a.common;
    let timeout = Duration::from_secs_f64(c.connect_timeout);
    let rss_before = c.relay_pid.and_then(stats::rss_bytes);
    let (stop_tx, stop_rx) = watch::channel(None);
    let shared = Shared::new(
        target,
        &a.channel_prefix,
        timeout,
        c.concurrency,
        1,
        a.channels,
        stop_rx,
    );
    let ticker = {
        let sh = shared.clone();
        let (n, pid) = (a.connections, c.relay_pid);
        Ticker::start(c.quiet, move |_| {
            let up = sh.conns.up.load(Ordering::Relaxed);
            let rss = pid
                .and_then(stats::rss_bytes)
                .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
            (
                format!(
                    "connections {up}/{n} up, {} failed, {} dropped | relay RSS {rss}",
                    sh.conns.failed.load(Ordering::Relaxed),
                    sh.conns.disconnected.load(Ordering::Relaxed),
                ),
                up as f64,
            )
        })
    };
    let start = Instant::now();
    let tasks: Vec<_> = (0..a.connections)
        .map(|i| {
            let ch = vec![(i % a.channels) as u32];
            tokio::spawn(subs::run(i, ch, shared.clone()))
        })
        .collect();
    while shared.conns.settled() < a.connections as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = start.elapsed().as_secs_f64();
    let cpu = CpuWindow::start(c.relay_pid);
    // Let the relay settle (allocator, task wake-ups) before reading its memory.
    tokio::time::sleep(Duration::from_secs_f64(a.hold.min(1.0))).await;
    let rss_up = c.relay_pid.and_then(stats::rss_bytes);
    tokio::time::sleep(Duration::from_secs_f64((a.hold - 1.0).max(0.0))).await;
    let rss_end = c.relay_pid.and_then(stats::rss_bytes);
    let cpu_use = cpu.read();
    let timeline = ticker.stop();
    let dropped = shared.conns.disconnected.load(Ordering::Relaxed);
    let _ = stop_tx.send(Some(Arc::new(Vec::new())));
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;

    let up = shared.conns.up.load(Ordering::Relaxed);
    let mut r = Report::new("idle", "connections up", timeline);
    r.ok = up == a.connections as u64 && dropped == 0;
    connection_fields(&mut r, a.connections, &shared.conns, connect_secs);
    r.field(
        "held",
        format!("{:.1} s, {} channel(s)", a.hold, a.channels),
        Json::Num(a.hold),
    );
    let mib = |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
    let j = |b: Option<u64>| b.map_or(Json::Null, Json::Int);
    r.field("relay_rss_before", mib(rss_before), j(rss_before));
    r.field("relay_rss_up", mib(rss_up), j(rss_up));
    r.field("relay_rss_end", mib(rss_end), j(rss_end));
    let per = match (rss_before, rss_up) {
        (Some(b), Some(u)) if up > 0 => Some(u.saturating_sub(b) as f64 / up as f64),
        _ => None,
    };
    r.field(
        "relay_bytes_per_conn",
        per.map_or("- (give --relay-pid)".into(), |p| {
            format!("{p:.0} B ({:.2} KiB)", p / 1024.0)
        }),
        Json::opt(per),
    );
    cpu_fields(&mut r, &cpu_use, c.threads);
    r
}
