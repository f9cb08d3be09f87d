//! `fanout`: N subscribers over K channels, one publisher, then a drain.

use fastwebsockets::{Frame, OpCode, Payload};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::cli::{FanoutArgs, Via};
use crate::net::{self, Target};
use crate::report::{Report, Ticker};
use crate::stats::{self, fmt_ns, fmt_rate, CpuWindow, Json};
use crate::subs::{self, ConnStats, Shared, Tally};

/// Hands out publish slots: bounded by count and time, paced when a rate is set.
struct Pacer {
    next: AtomicU64,
    max: u64,
    start: Instant,
    end: Instant,
    rate: f64,
}

impl Pacer {
    async fn slot(&self) -> Option<u64> {
        if Instant::now() >= self.end {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if n >= self.max {
            return None;
        }
        if self.rate > 0.0 {
            let due = self.start + Duration::from_secs_f64(n as f64 / self.rate);
            if due >= self.end {
                return None;
            }
            tokio::time::sleep_until(due).await;
        }
        Some(n)
    }
}

/// Publisher progress and results.
#[derive(Default)]
struct PubStats {
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    /// Highest acknowledged offset per channel.
    finals: Mutex<Vec<u64>>,
    /// Acknowledged publishes per channel.
    per_channel: Mutex<Vec<u64>>,
    /// First error seen.
    first_error: Mutex<Option<String>>,
    failed: AtomicBool,
}

impl PubStats {
    fn ack(&self, ch: usize, offset: u64) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        let mut f = self.finals.lock();
        if let Some(x) = f.get_mut(ch) {
            *x = (*x).max(offset);
        }
        drop(f);
        if let Some(x) = self.per_channel.lock().get_mut(ch) {
            *x += 1;
        }
    }
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().get_or_insert(what);
    }
}

/// Writes the tick `data` JSON for message `seq` into `out`: ~`size` bytes with the
/// publisher's monotonic nanosecond timestamp first.
fn tick(out: &mut Vec<u8>, seq: u64, size: usize) {
    use std::io::Write;
    out.clear();
    let _ = write!(
        out,
        "{{\"t_ns\":{},\"seq\":{seq},\"symbol\":\"BTC-USD\",\"price\":43250.50,\"bid\":43248.25,\
         \"ask\":43252.75,\"pad\":\"",
        stats::now_ns()
    );
    while out.len() + 2 < size {
        out.push(b'x');
    }
    out.extend_from_slice(b"\"}");
}

fn pct_encode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Channel index of a `published` reply or HTTP answer (`"channel":"PREFIX:i"`).
fn channel_of(p: &[u8]) -> Option<usize> {
    let at = stats::find(p, b"\"channel\":\"", 0)? + 11;
    let end = at + p[at..].iter().position(|&b| b == b'"')?;
    let colon = at + p[at..end].iter().rposition(|&b| b == b':')?;
    std::str::from_utf8(&p[colon + 1..end]).ok()?.parse().ok()
}

async fn ws_publisher(
    a: Arc<FanoutArgs>,
    target: Target,
    pacer: Arc<Pacer>,
    ps: Arc<PubStats>,
    drain: Duration,
) {
    let mut path = String::from("/ws");
    if let Some(k) = &a.publish_key {
        path.push_str("?token=");
        path.push_str(&pct_encode(k));
    }
    let timeout = Duration::from_secs_f64(a.common.connect_timeout);
    let ws = match net::ws(&target, 0, &path, timeout).await {
        Ok(ws) => ws,
        Err(e) => {
            ps.error(format!("publisher connection: {}", e.detail));
            ps.failed.store(true, Ordering::Relaxed);
            return;
        }
    };
    let (mut rd, mut wr) = ws.split(|s| s.into_split());
    rd.set_auto_pong(false);
    rd.set_auto_close(false);
    let window = Arc::new(Semaphore::new(a.in_flight));
    let reader = {
        let (ps, window) = (ps.clone(), window.clone());
        tokio::spawn(async move {
            let mut no_send = |_| async { Ok::<(), std::convert::Infallible>(()) };
            loop {
                let f = match rd.read_frame(&mut no_send).await {
                    Ok(f) => f,
                    Err(e) => {
                        ps.error(format!("publisher connection lost: {e}"));
                        break;
                    }
                };
                if f.opcode == OpCode::Close {
                    ps.error("publisher connection closed by the relay".into());
                    break;
                }
                if f.opcode != OpCode::Text {
                    continue;
                }
                let p: &[u8] = &f.payload;
                // Key order is the relay's business: look for the type anywhere.
                if stats::find(p, b"\"type\":\"published\"", 0).is_some() {
                    match (channel_of(p), stats::u64_after(p, b"\"offset\":", 0)) {
                        (Some(ch), Some((off, _))) => ps.ack(ch, off),
                        _ => ps.error(format!(
                            "unparsable published reply: {}",
                            String::from_utf8_lossy(p)
                        )),
                    }
                    window.add_permits(1);
                } else if stats::find(p, b"\"type\":\"error\"", 0).is_some() {
                    ps.error(format!("publish refused: {}", String::from_utf8_lossy(p)));
                    window.add_permits(1);
                }
            }
            window.close();
        })
    };
    let k = a.channels;
    let mut data = Vec::with_capacity(a.payload_bytes + 64);
    let mut msg = Vec::with_capacity(a.payload_bytes + 128);
    while let Some(n) = pacer.slot().await {
        // Bounded by the publishing time even if acks stop coming.
        tokio::select! {
            p = window.acquire() => match p {
                Ok(p) => p.forget(),
                Err(_) => break,
            },
            _ = tokio::time::sleep_until(pacer.end) => break,
        }
        let ch = (n % k as u64) as usize;
        tick(&mut data, n, a.payload_bytes);
        msg.clear();
        msg.extend_from_slice(b"{\"op\":\"publish\",\"channel\":\"");
        msg.extend_from_slice(a.channel_prefix.as_bytes());
        msg.push(b':');
        msg.extend_from_slice(ch.to_string().as_bytes());
        msg.extend_from_slice(b"\",\"data\":");
        msg.extend_from_slice(&data);
        msg.push(b'}');
        if let Err(e) = wr.write_frame(Frame::text(Payload::Borrowed(&msg))).await {
            ps.error(format!("publisher write: {e}"));
            break;
        }
        ps.sent.fetch_add(1, Ordering::Relaxed);
    }
    // Wait until every publish in flight is answered (all permits back), bounded.
    let all = a.in_flight as u32;
    let _ = tokio::time::timeout(drain, window.acquire_many(all)).await;
    reader.abort();
    let answered = ps.acked.load(Ordering::Relaxed) + ps.errors.load(Ordering::Relaxed);
    let sent = ps.sent.load(Ordering::Relaxed);
    if answered < sent {
        ps.error(format!(
            "{} publishes never answered (acks stopped coming)",
            sent - answered
        ));
    }
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        wr.write_frame(Frame::close(1000, b"")),
    )
    .await;
}

/// Reads one HTTP/1.1 response (Content-Length bodies only); returns (status, body).
async fn http_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Error, ErrorKind};
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16384 {
            return Err(Error::new(ErrorKind::InvalidData, "response head too long"));
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    if len > 1 << 20 {
        return Err(Error::new(ErrorKind::InvalidData, "response body too long"));
    }
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Ok((status, body))
}

/// One keep-alive HTTP publisher connection (there are --in-flight of them).
async fn http_publisher(
    a: Arc<FanoutArgs>,
    target: Target,
    idx: usize,
    pacer: Arc<Pacer>,
    ps: Arc<PubStats>,
) {
    let mut s = match net::tcp(&target, idx, true).await {
        Ok(s) => s,
        Err(e) => {
            ps.error(format!("HTTP publisher connection: {}", e.detail));
            ps.failed.store(true, Ordering::Relaxed);
            return;
        }
    };
    let auth = a
        .publish_key
        .as_ref()
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let mut data = Vec::new();
    let mut req = Vec::new();
    let mut buf = Vec::new();
    let k = a.channels as u64;
    while let Some(n) = pacer.slot().await {
        let ch = (n % k) as usize;
        tick(&mut data, n, a.payload_bytes);
        req.clear();
        req.extend_from_slice(
            format!(
                "POST /publish/{}:{ch} HTTP/1.1\r\nHost: {}\r\n{auth}\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                a.channel_prefix,
                target.host,
                data.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(&data);
        let r = async {
            s.write_all(&req).await?;
            http_response(&mut s, &mut buf).await
        };
        match r.await {
            Ok((200, body)) => match stats::u64_after(&body, b"\"offset\":", 0) {
                Some((off, _)) => ps.ack(ch, off),
                None => ps.error(format!(
                    "HTTP publish answer without offset: {}",
                    String::from_utf8_lossy(&body)
                )),
            },
            Ok((status, body)) => ps.error(format!(
                "HTTP publish answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )),
            Err(e) => {
                ps.error(format!("HTTP publisher connection lost: {e}"));
                break;
            }
        }
        ps.sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the fanout mode.
pub async fn run(a: FanoutArgs, target: Target) -> Report {
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
                ws_publisher(a.clone(), target.clone(), pacer, ps.clone(), drain).await;
            }
            Via::Http => {
                let mut hs = Vec::new();
                for i in 0..a.in_flight {
                    hs.push(tokio::spawn(http_publisher(
                        a.clone(),
                        target.clone(),
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

fn pct(p: Option<f64>) -> String {
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
    fn ticks_have_the_size_and_the_timestamp() {
        let mut v = Vec::new();
        tick(&mut v, 7, 150);
        assert_eq!(v.len(), 150);
        assert!(stats::u64_after(&v, b"\"t_ns\":", 0).is_some());
        let s = std::str::from_utf8(&v).unwrap();
        assert!(s.starts_with('{') && s.ends_with('}'), "{s}");
    }

    #[test]
    fn channel_index_from_replies() {
        assert_eq!(
            channel_of(br#"{"type":"published","channel":"load:17","offset":3}"#),
            Some(17)
        );
        assert_eq!(channel_of(br#"{"channel":"x"}"#), None);
    }

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
