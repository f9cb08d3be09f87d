//! The churn mode's report: a row per interval (relay RSS, fds, connections, queued
//! bytes, history, errors, and what the clients saw), the summary rows, and the verdict
//! (steady subscribers whole, publisher clean, few failed attempts, RSS and fds back
//! within the limits).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::cli::ChurnArgs;
use crate::mixed::Load;
use crate::probe::{RelayStats, Sample};
use crate::publishers::PubStats;
use crate::report::Report;
use crate::stats::{self, fmt_ns, Json};
use crate::subs::{Shared, Tally};
use crate::summary::{connection_fields, cpu_fields, latency_row};

pub const MIB: f64 = 1048576.0;

pub fn mib(b: Option<u64>) -> String {
    b.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / MIB))
}

fn opt_int(x: Option<u64>) -> Json {
    x.map_or(Json::Null, Json::Int)
}

/// What one load phase leaves (the measured one is reported here).
pub struct Phase {
    pub rows: Vec<Row>,
    pub shared: Arc<Shared>,
    pub load: Arc<Load>,
    pub ps: Arc<PubStats>,
    pub tally: Tally,
    pub expected: u64,
    pub latency: hdrhistogram::Histogram<u64>,
    pub relay: RelayStats,
    pub peak_connections: u64,
    pub peak_rss: Option<u64>,
    pub connect_secs: f64,
    pub timeline: Vec<(f64, f64)>,
    pub cpu: stats::CpuUse,
}

/// One report row: the state at the end of an interval and what happened in it.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub t: f64,
    pub at: Sample,
    pub peak_connections: u64,
    pub peak_queued: u64,
    /// Counters over the interval (relay side).
    pub delta: RelayStats,
    pub client_failures: u64,
    pub cycles: u64,
    pub deliveries: u64,
    pub p99_ns: u64,
}

impl Row {
    pub fn human(&self) -> String {
        let st = self.at.stats.unwrap_or_default();
        format!(
            "RSS {} | fds {} | conns {} (peak {}) | queued {} (peak {}) | history {} | errors +{} \
             (slow closes +{}, upgrade refusals +{}) | client failures +{} | cycles +{} | \
             deliveries +{} | p99 {}",
            mib(self.at.rss),
            self.at.fds.map_or("-".into(), |f| f.to_string()),
            st.connections,
            self.peak_connections,
            st.queued_bytes,
            self.peak_queued,
            mib(Some(st.history_bytes)),
            self.delta.errors,
            self.delta.slow_consumer_closes,
            self.delta.handshake_rejects,
            self.client_failures,
            self.cycles,
            self.deliveries,
            fmt_ns(self.p99_ns)
        )
    }

    pub fn json(&self) -> Json {
        let st = self.at.stats.unwrap_or_default();
        Json::Obj(vec![
            ("t_s".into(), Json::Num(self.t)),
            ("rss_bytes".into(), opt_int(self.at.rss)),
            ("fds".into(), opt_int(self.at.fds)),
            ("connections".into(), Json::Int(st.connections)),
            ("peak_connections".into(), Json::Int(self.peak_connections)),
            ("queued_bytes".into(), Json::Int(st.queued_bytes)),
            ("peak_queued_bytes".into(), Json::Int(self.peak_queued)),
            ("history_bytes".into(), Json::Int(st.history_bytes)),
            ("relay_errors".into(), Json::Int(self.delta.errors)),
            (
                "slow_consumer_closes".into(),
                Json::Int(self.delta.slow_consumer_closes),
            ),
            (
                "handshake_rejects".into(),
                Json::Int(self.delta.handshake_rejects),
            ),
            ("client_failures".into(), Json::Int(self.client_failures)),
            ("cycles".into(), Json::Int(self.cycles)),
            ("deliveries".into(), Json::Int(self.deliveries)),
            ("p99_us".into(), Json::Num(self.p99_ns as f64 / 1000.0)),
        ])
    }
}

pub fn delta(now: RelayStats, then: RelayStats) -> RelayStats {
    RelayStats {
        connections: now.connections,
        connections_total: now.connections_total.saturating_sub(then.connections_total),
        queued_bytes: now.queued_bytes,
        errors: now.errors.saturating_sub(then.errors),
        slow_consumer_closes: now
            .slow_consumer_closes
            .saturating_sub(then.slow_consumer_closes),
        handshake_rejects: now.handshake_rejects.saturating_sub(then.handshake_rejects),
        history_bytes: now.history_bytes,
    }
}

/// What the end reading is held to.
pub struct Limits {
    pub rss: Option<u64>,
    pub fds: Option<u64>,
    pub history_growth: u64,
}

/// The summary of the run from the readings before the warm-up, after it (the
/// baseline) and after the load, and the verdict.
pub fn report(
    a: &ChurnArgs,
    pid: Option<u32>,
    [cold, base, end]: [Sample; 3],
    waited: f64,
    limits: Limits,
    p: Phase,
) -> Report {
    let (rss_limit, fd_limit) = (limits.rss, limits.fds);
    let mut r = Report::new("churn", "relay connections", p.timeline);
    r.field(
        "relay_pid",
        pid.map_or("- (not found: give --relay-pid)".into(), |p| p.to_string()),
        opt_int(pid.map(u64::from)),
    );
    for (i, row) in p.rows.iter().enumerate() {
        r.rows
            .push((format!("row {} ({:.0} s)", i + 1, row.t), row.human()));
    }
    r.json.push((
        "intervals".into(),
        Json::Arr(p.rows.iter().map(Row::json).collect()),
    ));
    let fd = |s: &Sample| s.fds.map_or("-".into(), |f| f.to_string());
    r.field(
        "rss",
        format!(
            "cold {}, baseline {}, peak {}, end {} (limit {}, history grew {})",
            mib(cold.rss),
            mib(base.rss),
            mib(p.peak_rss),
            mib(end.rss),
            mib(rss_limit),
            mib(Some(limits.history_growth))
        ),
        Json::Obj(vec![
            ("cold".into(), opt_int(cold.rss)),
            ("baseline".into(), opt_int(base.rss)),
            ("peak".into(), opt_int(p.peak_rss)),
            ("end".into(), opt_int(end.rss)),
            ("limit".into(), opt_int(rss_limit)),
            ("history_growth".into(), Json::Int(limits.history_growth)),
        ]),
    );
    r.field(
        "fds",
        format!(
            "cold {}, baseline {}, end {} (limit {})",
            fd(&cold),
            fd(&base),
            fd(&end),
            fd_limit.map_or("-".into(), |f| f.to_string())
        ),
        Json::Obj(vec![
            ("cold".into(), opt_int(cold.fds)),
            ("baseline".into(), opt_int(base.fds)),
            ("end".into(), opt_int(end.fds)),
            ("limit".into(), opt_int(fd_limit)),
        ]),
    );
    let end_conns = end.stats.map(|s| s.connections);
    r.field(
        "settle",
        format!(
            "{waited:.1} s; relay connections at the end: {}",
            end_conns.map_or("-".into(), |c| c.to_string())
        ),
        Json::Num(waited),
    );
    r.field(
        "peak_connections",
        format!("{} (relay, sampled once a second)", p.peak_connections),
        Json::Int(p.peak_connections),
    );
    // Steady subscribers are all up for the whole load, the rest come and go.
    let peak_client =
        p.shared.conns.up.load(Ordering::Relaxed) + p.load.peak_open.load(Ordering::Relaxed) + 1;
    r.field(
        "peak_open_client",
        format!("{peak_client} (this tool: steady + publisher + most unhealthy at once)"),
        Json::Int(peak_client),
    );
    connection_fields(&mut r, a.connections, &p.shared.conns, p.connect_secs);
    let l = &p.load;
    let get = |x: &AtomicU64| x.load(Ordering::Relaxed);
    let attempts = get(&l.attempts);
    let failed = get(&l.conns.failed);
    r.field(
        "mixed",
        format!(
            "{} churn cycles, {} storms ({} connections), {} stalled cycles, {} flood cycles \
             ({} frames, {} closed by the relay); {failed} of {attempts} attempts failed",
            get(&l.churn_cycles),
            get(&l.storms),
            get(&l.storm_conns),
            get(&l.stalled_cycles),
            get(&l.flood_cycles),
            get(&l.flood_frames),
            get(&l.flood_closed),
        ),
        Json::Obj(vec![
            ("churn_cycles".into(), Json::Int(get(&l.churn_cycles))),
            ("storms".into(), Json::Int(get(&l.storms))),
            ("storm_connections".into(), Json::Int(get(&l.storm_conns))),
            ("stalled_cycles".into(), Json::Int(get(&l.stalled_cycles))),
            ("flood_cycles".into(), Json::Int(get(&l.flood_cycles))),
            ("flood_frames".into(), Json::Int(get(&l.flood_frames))),
            ("flood_closed".into(), Json::Int(get(&l.flood_closed))),
            ("attempts".into(), Json::Int(attempts)),
            ("failed".into(), Json::Int(failed)),
        ]),
    );
    for (kind, (n, detail)) in l.conns.failures.lock().iter() {
        r.rows.push((
            format!("mixed failed: {}", kind.name()),
            format!("{n} (first: {detail})"),
        ));
    }
    let rel = p.relay;
    r.field(
        "relay_counters",
        format!(
            "{} connections accepted, {} errors, {} slow-consumer closes, {} upgrade refusals",
            rel.connections_total, rel.errors, rel.slow_consumer_closes, rel.handshake_rejects
        ),
        Json::Obj(vec![
            ("connections_total".into(), Json::Int(rel.connections_total)),
            ("errors".into(), Json::Int(rel.errors)),
            (
                "slow_consumer_closes".into(),
                Json::Int(rel.slow_consumer_closes),
            ),
            ("handshake_rejects".into(), Json::Int(rel.handshake_rejects)),
        ]),
    );
    let published = get(&p.ps.acked);
    let pub_errors = get(&p.ps.errors);
    r.field("published", published.to_string(), Json::Int(published));
    let deliveries = p.tally.received;
    r.field(
        "deliveries",
        format!("{deliveries} of {} expected", p.expected),
        Json::Int(deliveries),
    );
    r.json.push(("expected".into(), Json::Int(p.expected)));
    r.field("lost", p.tally.lost.to_string(), Json::Int(p.tally.lost));
    r.field(
        "reordered",
        p.tally.reordered.to_string(),
        Json::Int(p.tally.reordered),
    );
    r.field(
        "latency",
        latency_row(&p.latency),
        stats::latency_json(&p.latency),
    );
    cpu_fields(&mut r, &p.cpu, a.common.threads);

    // The verdict.
    let up = get(&p.shared.conns.up);
    let dropped = get(&p.shared.conns.disconnected);
    let mut fail = |ok: bool, why: String| {
        if !ok {
            r.ok = false;
            r.notes.push(why);
        }
    };
    fail(
        up == a.connections as u64,
        format!("only {up} of {} steady subscribers came up", a.connections),
    );
    fail(
        dropped == 0,
        format!("{dropped} steady subscribers were disconnected"),
    );
    fail(
        p.tally.lost == 0 && p.tally.reordered == 0 && deliveries >= p.expected,
        format!(
            "steady subscribers lost {} and reordered {} messages ({deliveries} of {} \
             delivered)",
            p.tally.lost, p.tally.reordered, p.expected
        ),
    );
    fail(
        published > 0 && pub_errors == 0,
        format!(
            "the publisher had {pub_errors} errors ({published} acknowledged); first: {}",
            p.ps.first_error.lock().clone().unwrap_or_default()
        ),
    );
    fail(
        failed * 100 <= attempts,
        format!("{failed} of {attempts} churn/storm/stalled/flood connections failed (over 1%)"),
    );
    fail(
        pid.is_some(),
        "the relay's pid is unknown (give --relay-pid): RSS and fds were not checked".into(),
    );
    if let (Some(e), Some(l)) = (end.rss, rss_limit) {
        fail(
            e <= l,
            format!(
                "relay RSS did not come back: {} after {waited:.0} s of settling, baseline {} \
                 + tolerance + history growth {} = {}",
                mib(Some(e)),
                mib(base.rss),
                mib(Some(limits.history_growth)),
                mib(Some(l))
            ),
        );
    }
    if let (Some(e), Some(l)) = (end.fds, fd_limit) {
        fail(
            e <= l,
            format!("relay fds did not come back: {e} after {waited:.0} s of settling, limit {l}"),
        );
    }
    fail(
        end_conns == Some(0),
        format!(
            "the relay still has {} connections after the load",
            end_conns.map_or("?".into(), |c| c.to_string())
        ),
    );
    r
}
