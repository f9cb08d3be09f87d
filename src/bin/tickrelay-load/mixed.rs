//! The churn mode's unhealthy clients, each a task that reconnects until the load ends:
//! churners (connect, subscribe, hold a random time, close cleanly or reset), storms
//! (--storm-size connections at once, held until all are up, then all reset), stalled
//! readers (subscribed behind a 4 KiB receive window, never reading) and flooders (JSON
//! pings, WebSocket pings and subscribe/unsubscribe at --flood-rate until the relay's rate
//! limit closes them).

use fastwebsockets::{Frame, OpCode, Payload};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cli::ChurnArgs;
use crate::net::{self, ConnError, Failure, Target};
use crate::subs::{self, ConnStats};

/// Counters of the unhealthy clients.
#[derive(Default)]
pub struct Load {
    /// Failures of every kind of attempt (the steady subscribers count their own).
    pub conns: ConnStats,
    /// Connection attempts.
    pub attempts: AtomicU64,
    /// Churner connections that came up.
    pub churn_cycles: AtomicU64,
    /// Storms run.
    pub storms: AtomicU64,
    /// Storm connections that came up.
    pub storm_conns: AtomicU64,
    /// Stalled connections held.
    pub stalled_cycles: AtomicU64,
    /// Flooder connections that came up.
    pub flood_cycles: AtomicU64,
    /// Frames the flooders sent.
    pub flood_frames: AtomicU64,
    /// Flooder connections the relay closed.
    pub flood_closed: AtomicU64,
    /// Connections of these kinds open now (counted by [`Open`]).
    pub open: AtomicU64,
    /// Most of them open at once.
    pub peak_open: AtomicU64,
    /// Picks the address pair of the next connection.
    next_idx: AtomicUsize,
}

impl Load {
    /// Connections that came up, every kind together.
    pub fn cycles(&self) -> u64 {
        let g = |x: &AtomicU64| x.load(Ordering::Relaxed);
        g(&self.churn_cycles)
            + g(&self.storm_conns)
            + g(&self.stalled_cycles)
            + g(&self.flood_cycles)
    }

    fn idx(&self) -> usize {
        // Past the steady subscribers' indexes, so both spread over the addresses.
        self.next_idx.fetch_add(1, Ordering::Relaxed)
    }
}

/// Counts a connection as open while it lives.
struct Open<'a>(&'a Load);

impl<'a> Open<'a> {
    fn new(l: &'a Load) -> Self {
        let now = l.open.fetch_add(1, Ordering::Relaxed) + 1;
        l.peak_open.fetch_max(now, Ordering::Relaxed);
        Open(l)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A small xorshift generator: hold times and channels, no crate needed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            self.0 % n
        }
    }
}

/// Starts every unhealthy client of one phase; all end by `end` (plus one connect
/// timeout). `secs` is the phase's length (the first storm comes at half of it when
/// that is sooner than --storm-every).
pub fn spawn_all(
    a: &Arc<ChurnArgs>,
    target: &Target,
    load: &Arc<Load>,
    end: Instant,
    secs: f64,
) -> Vec<JoinHandle<()>> {
    let mut v = Vec::new();
    for i in 0..a.churners {
        v.push(tokio::spawn(churner(
            i,
            a.clone(),
            target.clone(),
            load.clone(),
            end,
        )));
    }
    for i in 0..a.stalled {
        v.push(tokio::spawn(stalled(
            i,
            a.clone(),
            target.clone(),
            load.clone(),
            end,
        )));
    }
    for i in 0..a.flooders {
        v.push(tokio::spawn(flooder(
            i,
            a.clone(),
            target.clone(),
            load.clone(),
            end,
        )));
    }
    if a.storm_size > 0 {
        let first = Duration::from_secs_f64(a.storm_every.min(secs / 2.0));
        v.push(tokio::spawn(storms(
            a.clone(),
            target.clone(),
            load.clone(),
            end,
            first,
        )));
    }
    v
}

fn timeout_of(a: &ChurnArgs) -> Duration {
    Duration::from_secs_f64(a.common.connect_timeout)
}

/// Connect, upgrade and read `subscribed`, within the connect timeout.
async fn subscribed(
    target: &Target,
    idx: usize,
    path: &str,
    timeout: Duration,
    channels: usize,
) -> Result<fastwebsockets::WebSocket<tokio::net::TcpStream>, ConnError> {
    let attempt = async {
        let mut ws = net::ws(target, idx, path, timeout).await?;
        subs::await_subscribed(&mut ws, channels).await?;
        Ok(ws)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(ConnError {
                kind: Failure::Timeout,
                detail: format!("not subscribed within {timeout:?}"),
            })
        })
}

/// After a failed attempt: a pause, so a refusing relay is not hammered.
async fn back_off(end: Instant) {
    tokio::time::sleep_until(end.min(Instant::now() + Duration::from_millis(200))).await;
}

async fn churner(i: usize, a: Arc<ChurnArgs>, target: Target, load: Arc<Load>, end: Instant) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    let timeout = timeout_of(&a);
    let mut cycle = 0u64;
    while Instant::now() < end {
        let ch = rng.below(a.channels as u64) as u32;
        let path = subs::path(&a.channel_prefix, &[ch]);
        load.attempts.fetch_add(1, Ordering::Relaxed);
        let mut ws = match subscribed(&target, load.idx(), &path, timeout, 1).await {
            Ok(ws) => ws,
            Err(e) => {
                load.conns.fail(e);
                back_off(end).await;
                continue;
            }
        };
        load.churn_cycles.fetch_add(1, Ordering::Relaxed);
        let _open = Open::new(&load);
        let hold = Duration::from_millis(rng.below(a.churn_hold_ms + 1));
        let until = end.min(Instant::now() + hold);
        // Read what arrives while held, as a live client would.
        loop {
            tokio::select! {
                f = ws.read_frame() => match f {
                    Ok(f) if f.opcode != OpCode::Close => continue,
                    _ => break,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        if cycle.is_multiple_of(2) {
            // A clean close: send ours, wait briefly for the relay's.
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                ws.write_frame(Frame::close(1000, b"")).await?;
                loop {
                    if ws.read_frame().await?.opcode == OpCode::Close {
                        return Ok::<_, fastwebsockets::WebSocketError>(());
                    }
                }
            })
            .await;
        }
        // Dropped: a reset (net::ws sets a zero linger).
        drop(ws);
        cycle += 1;
    }
}

async fn storms(a: Arc<ChurnArgs>, target: Target, load: Arc<Load>, end: Instant, first: Duration) {
    let timeout = timeout_of(&a);
    let every = Duration::from_secs_f64(a.storm_every);
    let mut at = Instant::now() + first;
    loop {
        tokio::time::sleep_until(at.min(end)).await;
        if Instant::now() >= end {
            return;
        }
        load.storms.fetch_add(1, Ordering::Relaxed);
        let gate = Arc::new(Semaphore::new(a.common.concurrency));
        let tasks: Vec<_> = (0..a.storm_size)
            .map(|j| {
                let (a, target, load, gate) =
                    (a.clone(), target.clone(), load.clone(), gate.clone());
                tokio::spawn(async move {
                    let _permit = gate.acquire().await.ok()?;
                    let ch = (j % a.channels) as u32;
                    let path = subs::path(&a.channel_prefix, &[ch]);
                    load.attempts.fetch_add(1, Ordering::Relaxed);
                    match subscribed(&target, load.idx(), &path, timeout, 1).await {
                        Ok(ws) => {
                            load.storm_conns.fetch_add(1, Ordering::Relaxed);
                            Some(ws)
                        }
                        Err(e) => {
                            load.conns.fail(e);
                            None
                        }
                    }
                })
            })
            .collect();
        let mut held = Vec::with_capacity(tasks.len());
        for t in tasks {
            if let Ok(Some(ws)) = t.await {
                held.push(ws);
            }
        }
        // Counted once all are up (each one as it came up would only add contention).
        let n = held.len() as u64;
        let now = load.open.fetch_add(n, Ordering::Relaxed) + n;
        load.peak_open.fetch_max(now, Ordering::Relaxed);
        load.open.fetch_sub(n, Ordering::Relaxed);
        // All up (or failed): reset them at once.
        drop(held);
        at += every;
    }
}

async fn stalled(i: usize, a: Arc<ChurnArgs>, target: Target, load: Arc<Load>, end: Instant) {
    let timeout = timeout_of(&a);
    let per = a.channels.min(16);
    let chans: Vec<u32> = (0..per)
        .map(|j| ((i * per + j) % a.channels) as u32)
        .collect();
    let path = subs::path(&a.channel_prefix, &chans);
    let hold = Duration::from_secs_f64(a.stall_secs);
    while Instant::now() < end {
        load.attempts.fetch_add(1, Ordering::Relaxed);
        let attempt = async {
            let mut s = net::tcp_with(&target, load.idx(), false, Some(4096)).await?;
            net::reset_on_close(&s);
            net::upgrade(&mut s, &target.host, &path, net::Head::Discard).await?;
            Ok::<_, ConnError>(s)
        };
        let r = tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(ConnError {
                    kind: Failure::Timeout,
                    detail: format!("no upgrade within {timeout:?}"),
                })
            });
        match r {
            Ok(s) => {
                load.stalled_cycles.fetch_add(1, Ordering::Relaxed);
                let _open = Open::new(&load);
                // Never read: the relay's queue for it fills until it is cut off or
                // this reader goes away.
                tokio::time::sleep_until(end.min(Instant::now() + hold)).await;
                drop(s);
            }
            Err(e) => {
                load.conns.fail(e);
                back_off(end).await;
            }
        }
    }
}

async fn flooder(i: usize, a: Arc<ChurnArgs>, target: Target, load: Arc<Load>, end: Instant) {
    let timeout = timeout_of(&a);
    // Frames per 10 ms tick.
    let per_tick = a.flood_rate.div_ceil(100) as u64;
    let mut n = 0u64;
    while Instant::now() < end {
        load.attempts.fetch_add(1, Ordering::Relaxed);
        let ws = match net::ws(&target, load.idx(), "/ws", timeout).await {
            Ok(ws) => ws,
            Err(e) => {
                load.conns.fail(e);
                back_off(end).await;
                continue;
            }
        };
        load.flood_cycles.fetch_add(1, Ordering::Relaxed);
        let _open = Open::new(&load);
        let (mut rd, mut wr) = ws.split(|s| s.into_split());
        rd.set_auto_pong(false);
        rd.set_auto_close(false);
        let mut reader = tokio::spawn(async move {
            let mut no_send = |_| async { Ok::<(), std::convert::Infallible>(()) };
            loop {
                match rd.read_frame(&mut no_send).await {
                    Ok(f) if f.opcode == OpCode::Close => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        });
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let closed = 'conn: loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = &mut reader => break 'conn r.unwrap_or(false),
                _ = tokio::time::sleep_until(end) => break 'conn false,
            }
            for _ in 0..per_tick {
                let ch = format!(
                    "{}:{}",
                    a.channel_prefix,
                    (i as u64 + n) % a.channels as u64
                );
                let text = match n % 4 {
                    0 => format!(r#"{{"op":"ping","id":{n}}}"#),
                    2 => format!(r#"{{"op":"subscribe","channels":["{ch}"],"id":{n}}}"#),
                    _ => format!(r#"{{"op":"unsubscribe","channels":["{ch}"],"id":{n}}}"#),
                };
                let frame = if n % 4 == 1 {
                    Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b""))
                } else {
                    Frame::text(Payload::Owned(text.into_bytes()))
                };
                n += 1;
                if wr.write_frame(frame).await.is_err() {
                    let r = tokio::time::timeout(Duration::from_secs(1), &mut reader).await;
                    break 'conn matches!(r, Ok(Ok(true)));
                }
                load.flood_frames.fetch_add(1, Ordering::Relaxed);
            }
        };
        if closed {
            load.flood_closed.fetch_add(1, Ordering::Relaxed);
        }
        reader.abort();
        tokio::time::sleep_until(end.min(Instant::now() + Duration::from_millis(50))).await;
    }
}
