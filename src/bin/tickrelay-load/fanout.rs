//! `fanout`: N subscribers over K channels, one publisher, then a drain.
//!
//! The publishers are in [`crate::publishers`], the shared summary rows in
//! [`crate::summary`].

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cli::{FanoutArgs, Via};
use crate::net::Target;
use crate::publishers::{http_publisher, ws_publisher, Pacer, PubStats};
use crate::report::{Report, Ticker};
use crate::stats::{self, fmt_ns, fmt_rate, CpuWindow, Json};
use crate::subs::{self, Shared, Tally};
use crate::summary::{connection_fields, cpu_fields, latency_row, pct, steady_rate};

/// Runs the fanout mode.
pub async fn run(a: FanoutArgs, target: Target, publish_to: Target) -> Report {
    let a = Arc::new(a);
    let c = &a.common;
    let timeout = Duration::from_secs_f64(c.connect_timeout);
    let (stop_tx, stop_rx) = watch::channel(None);
    let shared = Shared::new(
        target.clone(),
        &a.channel_prefix,
        timeout,
        c.concurrency,
        64,
        a.channels,
        stop_rx,
    );
    shared
        .deflate
        .store(a.deflate, std::sync::atomic::Ordering::Relaxed);
    let ps = Arc::new(PubStats {
        finals: Mutex::new(vec![0; a.channels]),
        per_channel: Mutex::new(vec![0; a.channels]),
        ..PubStats::default()
    });

    // Phase 1: subscribers.
    let connect_start = Instant::now();
    let mut tasks = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let chans: Vec<u32> = (0..a.per_conn)
            .map(|j| ((i * a.per_conn + j) % a.channels) as u32)
            .collect();
        tasks.push(tokio::spawn(subs::run(i, chans, shared.clone())));
    }
    let cpu = Arc::new(Mutex::new(CpuWindow::start(c.relay_pid)));
    let ticker_start = Instant::now();
    let ticker = {
        let (sh, ps, a2, cpu) = (shared.clone(), ps.clone(), a.clone(), cpu.clone());
        let (mut last, mut last_t) = (0u64, 0.0f64);
        Ticker::start(c.quiet, move |t| {
            let delivered = sh.rec.count();
            // Per second of the actual interval: a tick may come late on a busy client.
            let rate = (delivered - last) as f64 / (t - last_t).max(1e-3);
            (last, last_t) = (delivered, t);
            let p99 = sh.rec.merged().value_at_percentile(99.0);
            let u = cpu.lock().read();
            let line = format!(
                "conns {}/{} up, {} failed, {} dropped | published {} | deliveries {}/s | p99 {} | cpu client {} relay {}",
                sh.conns.up.load(Ordering::Relaxed),
                a2.connections,
                sh.conns.failed.load(Ordering::Relaxed),
                sh.conns.disconnected.load(Ordering::Relaxed),
                ps.sent.load(Ordering::Relaxed),
                fmt_rate(rate),
                fmt_ns(p99),
                pct(u.client_pct),
                pct(u.relay_pct),
            );
            (line, rate)
        })
    };
    while shared.conns.settled() < a.connections as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = connect_start.elapsed().as_secs_f64();
    let up = shared.conns.up.load(Ordering::Relaxed);

    // Phase 2: publish, then drain.
    *cpu.lock() = CpuWindow::start(c.relay_pid);
    let pub_start = Instant::now();
    let drain = Duration::from_secs_f64(a.drain);
    let pacer = Arc::new(Pacer {
        next: AtomicU64::new(0),
        max: if a.messages == 0 {
            u64::MAX
        } else {
            a.messages
        },
        start: pub_start,
        end: pub_start + Duration::from_secs_f64(a.duration),
        rate: a.rate,
    });
    if up > 0 {
        match a.via {
            Via::Ws => {
                ws_publisher(a.clone(), publish_to.clone(), pacer, ps.clone(), drain).await;
            }
            Via::Http => {
                let mut hs = Vec::new();
                for i in 0..a.in_flight {
                    hs.push(tokio::spawn(http_publisher(
                        a.clone(),
                        publish_to.clone(),
                        i,
                        pacer.clone(),
                        ps.clone(),
                    )));
                }
                for h in hs {
                    let _ = h.await;
                }
            }
        }
    }
    let publish_secs = pub_start.elapsed().as_secs_f64();
    let per_channel = ps.per_channel.lock().clone();
    let expected: u64 = per_channel
        .iter()
        .zip(shared.audience.iter())
        .map(|(n, aud)| n * aud.load(Ordering::Relaxed))
        .sum();
    let drain_deadline = Instant::now() + drain;
    while shared.rec.count() < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let measured_secs = pub_start.elapsed().as_secs_f64();
    let cpu_use = cpu.lock().read();
    let timeline = ticker.stop();
    let steady = steady_rate(
        &timeline,
        pub_start.duration_since(ticker_start).as_secs_f64(),
        publish_secs,
    );

    // Phase 3: stop the subscribers with the final offsets and collect their tallies.
    let finals = Arc::new(ps.finals.lock().clone());
    let _ = stop_tx.send(Some(finals));
    let mut tally = Tally::default();
    let collect = async {
        for t in tasks {
            if let Ok(Some(t)) = t.await {
                tally += t;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), collect).await;

    let hist = shared.rec.merged();
    let delivered = shared.rec.count();
    let mut r = Report::new("fanout", "deliveries", timeline);
    let conns = &shared.conns;
    connection_fields(&mut r, a.connections, conns, connect_secs);
    r.field(
        "channels",
        format!("{} (each subscriber on {})", a.channels, a.per_conn),
        Json::Int(a.channels as u64),
    );
    r.field(
        "publisher",
        format!(
            "{:?}, {}, at most {} in flight, ~{} B payload",
            a.via,
            if a.rate > 0.0 {
                format!("{} msg/s", a.rate)
            } else {
                "flat out".into()
            },
            a.in_flight,
            a.payload_bytes
        ),
        Json::Str(format!("{:?}", a.via).to_lowercase()),
    );
    let sent = ps.sent.load(Ordering::Relaxed);
    let acked = ps.acked.load(Ordering::Relaxed);
    r.field(
        "published",
        format!(
            "{sent} sent, {acked} acknowledged in {publish_secs:.2} s ({}/s)",
            fmt_rate(acked as f64 / publish_secs.max(1e-9))
        ),
        Json::Int(acked),
    );
    r.json.push((
        "publish_errors".into(),
        Json::Int(ps.errors.load(Ordering::Relaxed)),
    ));
    let rate = delivered as f64 / measured_secs.max(1e-9);
    r.field(
        "deliveries",
        format!("{delivered} of {expected} expected"),
        Json::Int(delivered),
    );
    r.json.push(("expected".into(), Json::Int(expected)));
    r.field(
        "deliveries_per_s",
        format!(
            "{} (over {measured_secs:.2} s: publish + drain)",
            fmt_rate(rate)
        ),
        Json::Num(rate),
    );
    match steady {
        Some((median, n)) => r.field(
            "deliveries_per_s_steady",
            format!(
                "{} (median of the {n} whole seconds inside the publish window)",
                fmt_rate(median)
            ),
            Json::Num(median),
        ),
        None => r.json.push(("deliveries_per_s_steady".into(), Json::Null)),
    }
    r.field("latency", latency_row(&hist), stats::latency_json(&hist));
    r.field("lost", tally.lost.to_string(), Json::Int(tally.lost));
    r.field(
        "reordered",
        tally.reordered.to_string(),
        Json::Int(tally.reordered),
    );
    r.json
        .push(("snapshots".into(), Json::Int(tally.snapshots)));
    let bad = shared.bad_frames.load(Ordering::Relaxed);
    r.json.push(("bad_frames".into(), Json::Int(bad)));
    cpu_fields(&mut r, &cpu_use, c.threads);
    r.latency = Some(("End-to-end latency by percentile".into(), hist));
    if let Some(e) = ps.first_error.lock().clone() {
        r.notes.push(format!(
            "{} publish errors; first: {e}",
            ps.errors.load(Ordering::Relaxed)
        ));
    }
    if bad > 0 {
        r.notes
            .push(format!("{bad} message frames could not be parsed"));
    }
    if a.rate > 0.0 && sent + 1 < (a.rate * a.duration) as u64 && a.messages == 0 {
        r.notes.push(format!(
            "the publisher fell behind its rate: {sent} sent of {:.0} due (in-flight bound or relay too slow)",
            a.rate * a.duration
        ));
    }
    r.ok = up == a.connections as u64
        && tally.lost == 0
        && tally.reordered == 0
        && bad == 0
        && delivered >= expected
        && !ps.failed.load(Ordering::Relaxed)
        && ps.errors.load(Ordering::Relaxed) == 0;
    r
}
