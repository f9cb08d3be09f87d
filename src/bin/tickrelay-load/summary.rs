//! Summary rows the modes share (connection outcome, CPU, latency percentiles) and the
//! fanout's steady delivery rate.

use std::sync::atomic::Ordering;

use crate::net;
use crate::report::Report;
use crate::stats::{self, fmt_ns, Json};
use crate::subs::ConnStats;

pub fn pct(p: Option<f64>) -> String {
    p.map_or("-".into(), |p| format!("{p:.0}%"))
}

/// `p50 / p90 / p99 / p99.9 / max` in one row.
pub fn latency_row(h: &hdrhistogram::Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {} | p90 {} | p99 {} | p99.9 {} | max {}",
        fmt_ns(h.value_at_percentile(50.0)),
        fmt_ns(h.value_at_percentile(90.0)),
        fmt_ns(h.value_at_percentile(99.0)),
        fmt_ns(h.value_at_percentile(99.9)),
        fmt_ns(h.max())
    )
}

/// Connection outcome rows shared by the modes, with a clear note when the open-file
/// limit caused failures.
pub fn connection_fields(r: &mut Report, wanted: usize, conns: &ConnStats, secs: f64) {
    let up = conns.up.load(Ordering::Relaxed);
    let failed = conns.failed.load(Ordering::Relaxed);
    r.field(
        "connections",
        format!("{up} of {wanted} up in {secs:.2} s, {failed} failed"),
        Json::Int(up),
    );
    r.json
        .push(("connections_wanted".into(), Json::Int(wanted as u64)));
    r.json.push(("connection_errors".into(), Json::Int(failed)));
    let dis = conns.disconnected.load(Ordering::Relaxed);
    let why = conns.first_disconnect.lock().clone();
    r.field(
        "disconnects",
        match &why {
            Some(w) => format!("{dis} (first: {w})"),
            None => dis.to_string(),
        },
        Json::Int(dis),
    );
    let failures = conns.failures.lock();
    let mut by_kind = Vec::new();
    for (kind, (n, detail)) in failures.iter() {
        by_kind.push((kind.name().to_string(), Json::Int(*n)));
        r.rows.push((
            format!("failed: {}", kind.name()),
            format!("{n} (first: {detail})"),
        ));
        if *kind == net::Failure::FileLimit {
            r.notes.push(format!(
                "{n} connections failed because the OPEN-FILE LIMIT was reached (EMFILE/ENFILE; \
                 ulimit -n is {}): lower --connections or raise the limit",
                net::open_file_limit().map_or("unknown".into(), |l| l.to_string())
            ));
        }
        if *kind == net::Failure::NoPort {
            r.notes.push(format!(
                "{n} connections failed for lack of ephemeral ports: spread with --dst-addrs 8 \
                 (relay on 0.0.0.0) or --src-addrs 8"
            ));
        }
    }
    r.json.push(("failures".into(), Json::Obj(by_kind)));
}

/// CPU rows: the load generator's next to the relay's, and whether the client saturated.
pub fn cpu_fields(r: &mut Report, u: &stats::CpuUse, threads: usize) {
    let saturated = stats::client_saturated(u, threads);
    r.field(
        "cpu",
        format!(
            "client {} of {threads} thread(s), relay {}{}",
            pct(u.client_pct),
            pct(u.relay_pct),
            if saturated { " (CLIENT SATURATED)" } else { "" }
        ),
        Json::Obj(vec![
            ("client_pct".into(), Json::opt(u.client_pct)),
            ("relay_pct".into(), Json::opt(u.relay_pct)),
            ("client_threads".into(), Json::Int(threads as u64)),
            ("client_saturated".into(), Json::Bool(saturated)),
        ]),
    );
    if saturated {
        r.notes.push(
            "the load generator used ~100% of its threads: it, not the relay, may be the \
             bottleneck (try --threads 2 on a machine with more cores)"
                .into(),
        );
    }
}

/// The sustained delivery rate: the median of the per-second delivery rates whose whole
/// tick interval (from the previous sample, or the timeline's start, to this one) lies
/// inside the publish window (`from` to `from + secs`, in seconds since the timeline
/// started), with how many intervals that was; `None` under three. Intervals, not
/// nominal seconds: a busy client's ticks come late. Unlike publish-plus-drain, it does
/// not charge the last message's latency to the rate.
pub fn steady_rate(timeline: &[(f64, f64)], from: f64, secs: f64) -> Option<(f64, usize)> {
    let mut inside = Vec::new();
    let mut prev = 0.0;
    for &(t, v) in timeline {
        if prev >= from && t <= from + secs {
            inside.push(v);
        }
        prev = t;
    }
    if inside.len() < 3 {
        return None;
    }
    inside.sort_by(f64::total_cmp);
    let n = inside.len();
    let median = if n % 2 == 1 {
        inside[n / 2]
    } else {
        (inside[n / 2 - 1] + inside[n / 2]) / 2.0
    };
    Some((median, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steady_rate_takes_only_whole_seconds_inside_the_publish_window() {
        // Connect phase (t 1-2), publishing from 2.5 s for 5 s, then drain.
        let tl: Vec<(f64, f64)> = [
            (1.0, 0.0),
            (2.0, 0.0),
            (3.0, 400.0),
            (4.0, 990.0),
            (5.0, 1000.0),
            (6.0, 1010.0),
            (7.0, 1000.0),
            (8.0, 600.0),
            (9.0, 5.0),
        ]
        .to_vec();
        let (m, n) = steady_rate(&tl, 2.5, 5.0).unwrap();
        assert_eq!((m, n), (1000.0, 4), "seconds ending at 4, 5, 6, 7");
        // A late tick: the interval (3.0, 4.3] is inside, (4.3, 5.3] too, (5.3, 7.9] not.
        let late = [
            (3.0, 0.0),
            (4.3, 990.0),
            (5.3, 1000.0),
            (6.3, 1010.0),
            (7.9, 1.0),
        ];
        assert_eq!(steady_rate(&late, 2.9, 4.5), Some((1000.0, 3)));
        assert_eq!(
            steady_rate(&tl, 2.5, 2.0),
            None,
            "under three whole seconds"
        );
    }
}
