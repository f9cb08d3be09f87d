//! Measurement plumbing: the shared monotonic clock, sharded latency histograms and
//! counters, CPU and memory readings from /proc, and a tiny JSON writer for the summary.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Process-wide monotonic clock in nanoseconds: the publisher stamps with it and the
/// subscribers (same process) read it, so end-to-end latency needs no clock sync.
pub fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Highest latency a histogram records (larger values are clamped to it): 10 minutes.
const MAX_NS: u64 = 600_000_000_000;

/// An empty latency histogram in nanoseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("static histogram bounds are valid")
}

/// One shard: a histogram and a delivery counter, padded to its own cache lines.
#[repr(align(128))]
pub struct Shard {
    /// Latencies recorded by the tasks of this shard.
    pub hist: Mutex<Histogram<u64>>,
    /// Events counted by the tasks of this shard.
    pub count: AtomicU64,
}

/// Latency histograms and counters sharded by task, so tasks on different worker
/// threads rarely touch the same lock or cache line.
pub struct Recorder {
    shards: Box<[Shard]>,
}

impl Recorder {
    /// A recorder with `n` shards.
    pub fn new(n: usize) -> Self {
        Recorder {
            shards: (0..n.max(1))
                .map(|_| Shard {
                    hist: Mutex::new(histogram()),
                    count: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// The shard task `idx` uses.
    pub fn shard(&self, idx: usize) -> &Shard {
        &self.shards[idx % self.shards.len()]
    }

    /// Sum of all counters.
    pub fn count(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.count.load(Ordering::Relaxed))
            .sum()
    }

    /// All histograms merged, each emptied: the samples since the last `take`.
    pub fn take(&self) -> Histogram<u64> {
        let mut h = histogram();
        for s in self.shards.iter() {
            let mut g = s.hist.lock();
            let _ = h.add(&*g);
            g.reset();
        }
        h
    }

    /// All histograms merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut h = histogram();
        for s in self.shards.iter() {
            let _ = h.add(&*s.hist.lock());
        }
        h
    }
}

/// The percentiles every latency report gives.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
    ("p99_99", 99.99),
];

/// Latency percentiles in microseconds as a JSON object (plus max, mean, count).
pub fn latency_json(h: &Histogram<u64>) -> Json {
    let us = |ns: u64| Json::Num(ns as f64 / 1000.0);
    let mut o = vec![("count".to_string(), Json::Int(h.len()))];
    for (name, p) in PERCENTILES {
        o.push((name.into(), us(h.value_at_percentile(p))));
    }
    o.push(("max".into(), us(h.max())));
    o.push(("mean".into(), Json::Num(h.mean() / 1000.0)));
    Json::Obj(o)
}

/// Human form of a duration in nanoseconds.
pub fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2} s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

/// Human form of a rate.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// Kernel clock ticks per second for /proc/*/stat (USER_HZ, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// CPU time (user + system) of a process from /proc/<pid>/stat (`self` for this one).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / CLK_TCK))
}

/// Resident set size in bytes from /proc/<pid>/status (VmRSS).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// CPU use of the load generator and (optionally) the relay over a window.
pub struct CpuWindow {
    start: Instant,
    own: Option<Duration>,
    relay_pid: Option<u32>,
    relay: Option<Duration>,
}

/// CPU use over a window, as a percentage of one core.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// This process.
    pub client_pct: Option<f64>,
    /// The relay (with `--relay-pid`).
    pub relay_pct: Option<f64>,
}

impl CpuWindow {
    /// Starts a window now.
    pub fn start(relay_pid: Option<u32>) -> Self {
        CpuWindow {
            start: Instant::now(),
            own: cpu_time("self"),
            relay_pid,
            relay: relay_pid.and_then(|p| cpu_time(&p.to_string())),
        }
    }

    /// CPU use since the start.
    pub fn read(&self) -> CpuUse {
        let wall = self.start.elapsed().as_secs_f64().max(1e-3);
        let pct = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() / wall * 100.0),
            _ => None,
        };
        CpuUse {
            client_pct: pct(self.own, cpu_time("self")),
            relay_pct: pct(
                self.relay,
                self.relay_pid.and_then(|p| cpu_time(&p.to_string())),
            ),
        }
    }
}

/// Whether the load generator was CPU bound: at least 90% of each of its worker threads.
pub fn client_saturated(cpu: &CpuUse, threads: usize) -> bool {
    cpu.client_pct
        .is_some_and(|p| p >= 90.0 * threads.max(1) as f64)
}

/// A JSON value, enough for the summary line.
#[derive(Debug, Clone)]
pub enum Json {
    /// null
    Null,
    /// true/false
    Bool(bool),
    /// An integer.
    Int(u64),
    /// A float (non-finite becomes null).
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object (keys in order).
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Compact JSON text.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Num(n) if n.is_finite() => {
                let _ = write!(out, "{}", (n * 1000.0).round() / 1000.0);
            }
            Json::Num(_) => out.push_str("null"),
            Json::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Json::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    Json::Str(k.clone()).write(out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// `Some(x)` as a number, `None` as null.
    pub fn opt(x: Option<f64>) -> Json {
        x.map_or(Json::Null, Json::Num)
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.write(&mut s);
        f.write_str(&s)
    }
}

/// Finds `needle` in `hay` from `from` on: a first-byte scan, then a compare. Message
/// frames are ~250 bytes and the keys sit near the front, so this is a few dozen bytes
/// of work per message.
pub fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= hay.len() {
        if hay[i] == first && &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The unsigned integer right after `key` (e.g. `"offset":`), and the index after it.
pub fn u64_after(hay: &[u8], key: &[u8], from: usize) -> Option<(u64, usize)> {
    let mut i = find(hay, key, from)? + key.len();
    let start = i;
    let mut v: u64 = 0;
    while i < hay.len() && hay[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add(u64::from(hay[i] - b'0'))?;
        i += 1;
    }
    (i > start).then_some((v, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_keys_and_numbers() {
        let m = br#"{"type":"message","channel":"load:12","offset":1046,"ts":1,"data":{"t_ns":987,"x":1}}"#;
        assert_eq!(u64_after(m, b"\"offset\":", 0).map(|x| x.0), Some(1046));
        assert_eq!(u64_after(m, b"\"t_ns\":", 0).map(|x| x.0), Some(987));
        assert_eq!(u64_after(m, b"\"nope\":", 0), None);
        assert_eq!(u64_after(br#""offset":x"#, b"\"offset\":", 0), None);
        assert_eq!(
            u64_after(br#""offset":99999999999999999999999"#, b"\"offset\":", 0),
            None
        );
    }

    #[test]
    fn json_is_compact_and_escaped() {
        let j = Json::Obj(vec![
            ("a".into(), Json::Str("x\"y\n".into())),
            ("b".into(), Json::Arr(vec![Json::Int(1), Json::Num(0.5)])),
            ("c".into(), Json::Num(f64::NAN)),
        ]);
        assert_eq!(j.to_string(), r#"{"a":"x\"y\u000a","b":[1,0.5],"c":null}"#);
    }

    #[test]
    fn reads_own_cpu_and_rss() {
        assert!(cpu_time("self").is_some());
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }
}
