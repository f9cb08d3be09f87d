//! `churn`: a soak. Steady subscribers (the healthy clients, checked for loss, order and
//! disconnects) and one WebSocket publisher run for --duration next to the abuse a relay
//! meets in production: churners (connect, subscribe, hold briefly, close or reset,
//! again), storms (hundreds of connections at once, then all reset), stalled readers
//! (subscribed behind a 4 KiB window, never reading) and flooders (commands and pings
//! until the rate limit closes them). The same load first runs for --warmup seconds; the
//! baseline (relay RSS and open fds, from /proc) is taken after it, once the relay has
//! no connection left, so the allocator's first high-water mark is in the baseline and
//! only growth is measured. A row per --interval gives RSS, fds, connections, queued
//! bytes and errors (the relay's `GET /stats`). After the load the relay gets --settle
//! seconds to come back within the tolerance; the run fails if it does not.
//!
//! The load tasks themselves are in [`crate::mixed`], the rows and the verdict in
//! [`crate::churn_report`].

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::churn_report::{delta, mib, report, Limits, Phase, Row, MIB};
use crate::cli::{self, ChurnArgs, FanoutArgs, Via};
use crate::mixed::{self, Load};
use crate::net::Target;
use crate::probe::{self, Probe, RelayStats, Sample};
use crate::publishers::{ws_publisher, Pacer, PubStats};
use crate::report::{Report, Ticker};
use crate::stats::{self, CpuWindow};
use crate::subs::{self, Shared, Tally};

/// Checks the churn options.
pub fn check(a: &ChurnArgs) -> Result<(), String> {
    if a.channels == 0 || a.channels > 1_000_000 {
        return Err("--channels must be 1..=1000000".into());
    }
    if !(a.rate > 0.0 && a.rate <= 100_000.0) {
        return Err("--rate must be in (0, 100000] messages per second".into());
    }
    if a.payload_bytes > 60_000 {
        return Err("--payload-bytes must be at most 60000".into());
    }
    if a.flood_rate == 0 || a.flood_rate > 100_000 {
        return Err("--flood-rate must be 1..=100000".into());
    }
    if a.churn_hold_ms > 600_000 {
        return Err("--churn-hold-ms must be at most 600000".into());
    }
    for (name, v) in [
        ("--duration", a.duration),
        ("--interval", a.interval),
        ("--settle", a.settle),
        ("--storm-every", a.storm_every),
        ("--stall-secs", a.stall_secs),
    ] {
        cli::secs(name, v)?;
    }
    if !(a.warmup == 0.0 || (a.warmup > 0.0 && a.warmup <= cli::MAX_SECS)) {
        return Err(format!(
            "--warmup must be in [0, {}] seconds",
            cli::MAX_SECS
        ));
    }
    let tol = [a.rss_tolerance_mib, a.rss_tolerance_pct];
    if !tol.iter().all(|t| t.is_finite() && *t >= 0.0) {
        return Err("--rss-tolerance-mib and --rss-tolerance-pct must be >= 0".into());
    }
    Ok(())
}

/// Runs the whole load for `secs`; `rows` says whether to report (the warm-up does not).
async fn phase(a: &Arc<ChurnArgs>, target: &Target, probe: &Probe, secs: f64, rows: bool) -> Phase {
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
    let latest = Arc::new(Mutex::new(probe.sample().await));
    let load = Arc::new(Load::default());
    let ticker = {
        let (sh, load, latest, n) = (shared.clone(), load.clone(), latest.clone(), a.connections);
        Ticker::start(c.quiet || !rows, move |_| {
            let s = *latest.lock();
            let st = s.stats.unwrap_or_default();
            let line = format!(
                "steady {}/{n} up, {} dropped | relay conns {}, queued {} B, RSS {}, fds {} | \
                 cycles {}, failures {}",
                sh.conns.up.load(Ordering::Relaxed),
                sh.conns.disconnected.load(Ordering::Relaxed),
                st.connections,
                st.queued_bytes,
                mib(s.rss),
                s.fds.map_or("-".into(), |f| f.to_string()),
                load.cycles(),
                load.conns.failed.load(Ordering::Relaxed),
            );
            (line, st.connections as f64)
        })
    };
    let connect_start = Instant::now();
    let half = (a.channels / 2).max(1);
    let steady: Vec<_> = (0..a.connections)
        .map(|i| {
            let mut ch = vec![(i % a.channels) as u32];
            let second = ((i + half) % a.channels) as u32;
            if second != ch[0] {
                ch.push(second);
            }
            tokio::spawn(subs::run(i, ch, shared.clone()))
        })
        .collect();
    while shared.conns.settled() < a.connections as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = connect_start.elapsed().as_secs_f64();

    let cpu = CpuWindow::start(c.relay_pid.or(probe.pid));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let ps = Arc::new(PubStats {
        finals: Mutex::new(vec![0; a.channels]),
        per_channel: Mutex::new(vec![0; a.channels]),
        ..PubStats::default()
    });
    let publisher = {
        let fa = Arc::new(FanoutArgs {
            common: c.clone(),
            connections: a.connections,
            channels: a.channels,
            per_conn: 1,
            channel_prefix: a.channel_prefix.clone(),
            via: Via::Ws,
            publish_target: None,
            deflate: false,
            publish_key: a.publish_key.clone(),
            rate: a.rate,
            in_flight: 10,
            payload_bytes: a.payload_bytes,
            duration: secs,
            messages: 0,
            drain: 5.0,
        });
        let pacer = Arc::new(Pacer {
            next: AtomicU64::new(0),
            max: u64::MAX,
            start,
            end,
            rate: a.rate,
        });
        tokio::spawn(ws_publisher(
            fa,
            target.clone(),
            pacer,
            ps.clone(),
            Duration::from_secs(5),
        ))
    };
    let tasks = mixed::spawn_all(a, target, &load, end, secs);

    // Sample once a second for the peaks; a row per interval.
    let interval = Duration::from_secs_f64(a.interval);
    let mut out = Vec::new();
    let mut latency = stats::histogram();
    let first = latest.lock().stats.unwrap_or_default();
    let (mut last_stats, mut last_fail, mut last_cycles, mut last_del) = (first, 0, 0, 0);
    let (mut peak_conn, mut peak_q, mut peak_conn_all) = (0u64, 0u64, 0u64);
    let mut peak_rss: Option<u64> = None;
    let mut next_row = start + interval;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let s = probe.sample().await;
        *latest.lock() = s;
        if let Some(st) = s.stats {
            peak_conn = peak_conn.max(st.connections);
            peak_conn_all = peak_conn_all.max(st.connections);
            peak_q = peak_q.max(st.queued_bytes);
        }
        peak_rss = peak_rss.max(s.rss);
        let over = now >= end;
        // A last, shorter row only if it covers at least a second.
        if now >= next_row || (over && now + interval > next_row + Duration::from_secs(1)) {
            let st = s.stats.unwrap_or(last_stats);
            let (fail, cyc, del) = (
                load.conns.failed.load(Ordering::Relaxed)
                    + shared.conns.failed.load(Ordering::Relaxed),
                load.cycles(),
                shared.rec.count(),
            );
            let h = shared.rec.take();
            let _ = latency.add(&h);
            let row = Row {
                t: now.duration_since(start).as_secs_f64(),
                at: s,
                peak_connections: peak_conn,
                peak_queued: peak_q,
                delta: delta(st, last_stats),
                client_failures: fail - last_fail,
                cycles: cyc - last_cycles,
                deliveries: del - last_del,
                p99_ns: h.value_at_percentile(99.0),
            };
            if rows && !c.quiet {
                eprintln!("[row {:6.1}s] {}", row.t, row.human());
            }
            out.push(row);
            (last_stats, last_fail, last_cycles, last_del) = (st, fail, cyc, del);
            (peak_conn, peak_q) = (0, 0);
            next_row += interval;
        }
        if over {
            break;
        }
    }
    let _ = publisher.await;
    let finals = Arc::new(ps.finals.lock().clone());
    let per_channel = ps.per_channel.lock().clone();
    let expected: u64 = per_channel
        .iter()
        .zip(shared.audience.iter())
        .map(|(n, aud)| n * aud.load(Ordering::Relaxed))
        .sum();
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while shared.rec.count() < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = latency.add(shared.rec.take());
    let cpu_use = cpu.read();
    let _ = stop_tx.send(Some(finals));
    let mut tally = Tally::default();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        for t in steady {
            if let Ok(Some(t)) = t.await {
                tally += t;
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;
    let relay = probe
        .stats()
        .await
        .map_or(RelayStats::default(), |st| delta(st, first));
    Phase {
        rows: out,
        shared,
        load,
        ps,
        tally,
        expected,
        latency,
        relay,
        peak_connections: peak_conn_all,
        peak_rss,
        connect_secs,
        timeline: ticker.stop(),
        cpu: cpu_use,
    }
}

/// Waits (at most `secs`) until the relay has no connection and, with `limit`, RSS and
/// fds are within it; then reads once more, a second later when there is no limit.
async fn settle(probe: &Probe, secs: f64, limit: Option<(u64, u64)>) -> (Sample, f64) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    loop {
        let s = probe.sample().await;
        let quiet = s.stats.is_some_and(|st| st.connections == 0);
        let within = limit.is_none_or(|(rss, fds)| {
            s.rss.is_none_or(|r| r <= rss) && s.fds.is_none_or(|f| f <= fds)
        });
        if quiet && within {
            if limit.is_some() {
                return (s, start.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            return (probe.sample().await, start.elapsed().as_secs_f64());
        }
        if Instant::now() >= deadline {
            return (s, start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the churn mode.
pub async fn run(a: ChurnArgs, target: Target) -> Report {
    let a = Arc::new(a);
    let port = target.dst[0].port();
    let pid = a.common.relay_pid.or_else(|| probe::find_listener(port));
    let probe = Probe {
        pid,
        addr: target.dst[0],
        host: target.host.clone(),
        auth: a.publish_key.as_ref().map(|k| format!("Bearer {k}")),
    };
    let cold = probe.sample().await;
    if let Err(e) = probe.stats().await {
        let mut r = Report::new("churn", "relay connections", Vec::new());
        r.ok = false;
        r.notes
            .push(format!("the relay's GET /stats does not answer: {e}"));
        return r;
    }
    if a.warmup > 0.0 {
        if !a.common.quiet {
            eprintln!("warm-up: {:.0} s of the same load", a.warmup);
        }
        let _ = phase(&a, &target, &probe, a.warmup, false).await;
    }
    let (base, _) = settle(&probe, a.settle, None).await;
    if !a.common.quiet {
        eprintln!(
            "baseline: relay RSS {}, fds {}; load for {:.0} s",
            mib(base.rss),
            base.fds.map_or("-".into(), |f| f.to_string()),
            a.duration
        );
    }
    let p = phase(&a, &target, &probe, a.duration, true).await;
    // History rings keep messages by design (bounded by the namespace's `history` and
    // --history-max-bytes, counted by /stats): what they grew by is allowed on top.
    let base_history = base.stats.map_or(0, |s| s.history_bytes);
    let history_growth = p.relay.history_bytes.saturating_sub(base_history);
    let rss_limit = base.rss.map(|b| {
        let pct = b as f64 * a.rss_tolerance_pct / 100.0;
        b + pct.max(a.rss_tolerance_mib * MIB) as u64 + history_growth
    });
    let fd_limit = base.fds.map(|f| f + a.fd_tolerance);
    let limit = match (rss_limit, fd_limit) {
        (Some(r), Some(f)) => Some((r, f)),
        _ => None,
    };
    let (end, waited) = settle(&probe, a.settle, limit.or(Some((u64::MAX, u64::MAX)))).await;
    let limits = Limits {
        rss: rss_limit,
        fds: fd_limit,
        history_growth,
    };
    report(&a, pid, [cold, base, end], waited, limits, p)
}
