//! Subscriber connections (fanout and idle modes): connect with a bounded number of
//! handshakes in flight, subscribe at connect (`?channels=`), read the `subscribed`
//! offsets, then read messages with a byte scan (no JSON parser per message): latency
//! from the publisher's `t_ns`, loss and reordering from the relay's `offset`.

use fastwebsockets::{OpCode, WebSocket};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::net::{self, ConnError, Failure, Target};
use crate::stats::{self, Recorder};

/// Connection outcomes shared by every connection task of a run.
#[derive(Default)]
pub struct ConnStats {
    /// Connections up (handshake done and, for subscribers, subscribed).
    pub up: AtomicU64,
    /// Connections that failed to come up.
    pub failed: AtomicU64,
    /// Connections that were up and ended before the run told them to.
    pub disconnected: AtomicU64,
    /// Why the first disconnect happened.
    pub first_disconnect: Mutex<Option<String>>,
    /// Failures by kind, with the first detail seen.
    pub failures: Mutex<BTreeMap<Failure, (u64, String)>>,
}

impl ConnStats {
    /// Counts a failed connection.
    pub fn fail(&self, e: ConnError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.failures.lock();
        let slot = f.entry(e.kind).or_insert((0, e.detail));
        slot.0 += 1;
    }

    /// Counts a connection that ended early.
    pub fn disconnect(&self, why: String) {
        self.disconnected.fetch_add(1, Ordering::Relaxed);
        self.first_disconnect.lock().get_or_insert(why);
    }

    /// Connections that finished their attempt, either way.
    pub fn settled(&self) -> u64 {
        self.up.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

/// What every subscriber task shares.
pub struct Shared {
    /// Where to connect.
    pub target: Target,
    /// Channel name prefix (channels are `PREFIX:i`).
    pub prefix: String,
    /// Time limit of one connection attempt (connect, upgrade, subscribed).
    pub timeout: Duration,
    /// The connect phase ends here: tasks still waiting for a handshake slot give up.
    pub phase_deadline: Instant,
    /// Handshakes in flight.
    pub gate: Semaphore,
    /// Latencies and delivery counts.
    pub rec: Recorder,
    /// Connection outcomes.
    pub conns: ConnStats,
    /// Subscribers per channel (of those up).
    pub audience: Vec<AtomicU64>,
    /// Frames that were not what the protocol says (unparsable message, no subscribed).
    pub bad_frames: AtomicU64,
    /// Subscribers offer permessage-deflate (`fanout --deflate`).
    pub deflate: std::sync::atomic::AtomicBool,
    /// Becomes `Some(final offsets per channel)` when subscribers must stop.
    pub stop: watch::Receiver<Option<Arc<Vec<u64>>>>,
}

impl Shared {
    /// State for subscribers to `channels` channels named `prefix:i`, with `concurrency`
    /// handshakes in flight and a recorder of `shards` shards. The connect phase ends a
    /// minute after one connection's `timeout`; `stop` tells the tasks to finish.
    pub fn new(
        target: Target,
        prefix: &str,
        timeout: Duration,
        concurrency: usize,
        shards: usize,
        channels: usize,
        stop: watch::Receiver<Option<Arc<Vec<u64>>>>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            target,
            prefix: prefix.to_string(),
            timeout,
            phase_deadline: Instant::now() + timeout + Duration::from_secs(60),
            gate: Semaphore::new(concurrency),
            rec: Recorder::new(shards),
            conns: ConnStats::default(),
            audience: (0..channels).map(|_| AtomicU64::new(0)).collect(),
            bad_frames: AtomicU64::new(0),
            deflate: Default::default(),
            stop,
        })
    }
}

/// One subscriber's tallies at the end.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Messages with a new offset, in order or after a gap.
    pub received: u64,
    /// Offsets skipped (a gap) plus offsets never received by the end.
    pub lost: u64,
    /// Messages with an offset at or below one already received (late or duplicate).
    pub reordered: u64,
    /// Messages with an offset at or below the one `subscribed` announced (a last-value
    /// snapshot, not part of the measured stream).
    pub snapshots: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.received += o.received;
        self.lost += o.lost;
        self.reordered += o.reordered;
        self.snapshots += o.snapshots;
    }
}

struct Sub {
    ch: u32,
    start: u64,
    next: u64,
}

/// The query of a subscriber to `channels`.
pub fn path(prefix: &str, channels: &[u32]) -> String {
    let mut p = String::from("/ws?channels=");
    for (i, c) in channels.iter().enumerate() {
        if i > 0 {
            p.push(',');
        }
        p.push_str(prefix);
        p.push(':');
        p.push_str(&c.to_string());
    }
    p
}

/// Reads frames until the `subscribed` reply; returns the announced offset of each
/// channel, in the order requested.
pub async fn await_subscribed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    n: usize,
) -> Result<Vec<u64>, ConnError> {
    loop {
        let f = ws.read_frame().await.map_err(|e| ConnError {
            kind: Failure::Other,
            detail: format!("before subscribed: {e}"),
        })?;
        match f.opcode {
            OpCode::Text => {}
            OpCode::Close => {
                return Err(ConnError {
                    kind: Failure::Rejected,
                    detail: "closed before subscribed".into(),
                })
            }
            _ => continue,
        }
        let p: &[u8] = &f.payload;
        if stats::find(p, b"\"type\":\"subscribed\"", 0).is_some() {
            let mut offsets = Vec::with_capacity(n);
            let mut at = 0;
            for _ in 0..n {
                let (o, next) = stats::u64_after(p, b"\"offset\":", at).ok_or(ConnError {
                    kind: Failure::Other,
                    detail: "subscribed reply without an offset per channel".into(),
                })?;
                offsets.push(o);
                at = next;
            }
            return Ok(offsets);
        }
        if stats::find(p, b"\"type\":\"error\"", 0).is_some() {
            return Err(ConnError {
                kind: Failure::Rejected,
                detail: format!("subscribe refused: {}", String::from_utf8_lossy(p)),
            });
        }
        // welcome or anything else: keep reading.
    }
}

/// Channel index, offset and publisher timestamp of a `message` frame.
pub fn parse_message(p: &[u8]) -> Option<(u32, u64, Option<u64>)> {
    const HEAD: &[u8] = b"{\"type\":\"message\"";
    const CH: &[u8] = b"\"channel\":\"";
    if !p.starts_with(HEAD) {
        return None;
    }
    let name = stats::find(p, CH, HEAD.len())? + CH.len();
    let end = name + p[name..].iter().position(|&b| b == b'"')?;
    let colon = name + p[name..end].iter().rposition(|&b| b == b':')?;
    let digits = &p[colon + 1..end];
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ch = digits
        .iter()
        .fold(0u32, |a, &d| a * 10 + u32::from(d - b'0'));
    let (offset, after) = stats::u64_after(p, b"\"offset\":", end)?;
    let t = stats::u64_after(p, b"\"t_ns\":", after).map(|x| x.0);
    Some((ch, offset, t))
}

/// One subscriber connection, from connect to stop. Returns `None` if it never came up.
pub async fn run(idx: usize, channels: Vec<u32>, sh: Arc<Shared>) -> Option<Tally> {
    let mut stop = sh.stop.clone();
    let (mut ws, starts) = {
        let permit = tokio::select! {
            p = sh.gate.acquire() => p.ok()?,
            _ = tokio::time::sleep_until(sh.phase_deadline) => {
                sh.conns.fail(ConnError {
                    kind: Failure::Timeout,
                    detail: "connect phase over before this connection's turn".into(),
                });
                return None;
            }
        };
        let path = path(&sh.prefix, &channels);
        let attempt = async {
            let deflate = sh.deflate.load(Ordering::Relaxed);
            let mut ws = net::ws_inflating(&sh.target, idx, &path, sh.timeout, deflate).await?;
            let starts = await_subscribed(&mut ws, channels.len()).await?;
            Ok::<_, ConnError>((ws, starts))
        };
        let r = match tokio::time::timeout(sh.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(ConnError {
                kind: Failure::Timeout,
                detail: format!("not subscribed within {:?}", sh.timeout),
            }),
        };
        drop(permit);
        match r {
            Ok(x) => x,
            Err(e) => {
                sh.conns.fail(e);
                return None;
            }
        }
    };
    for c in &channels {
        if let Some(a) = sh.audience.get(*c as usize) {
            a.fetch_add(1, Ordering::Relaxed);
        }
    }
    sh.conns.up.fetch_add(1, Ordering::Relaxed);

    let mut subs: Vec<Sub> = channels
        .iter()
        .zip(&starts)
        .map(|(&ch, &start)| Sub {
            ch,
            start,
            next: start + 1,
        })
        .collect();
    let mut t = Tally::default();
    let shard = sh.rec.shard(idx);
    let finals = loop {
        let frame = tokio::select! {
            f = ws.read_frame() => f,
            r = stop.changed() => match (r, stop.borrow().clone()) {
                (_, Some(f)) => break Some(f),
                (Ok(()), None) => continue,
                (Err(_), None) => break None,
            },
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                sh.conns.disconnect(format!("read: {e}"));
                break None;
            }
        };
        match frame.opcode {
            OpCode::Text => {}
            OpCode::Close => {
                let code = frame
                    .payload
                    .get(..2)
                    .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                let reason = String::from_utf8_lossy(frame.payload.get(2..).unwrap_or(&[]));
                sh.conns
                    .disconnect(format!("closed by the relay: {code} {reason}"));
                break None;
            }
            _ => continue,
        }
        let now = stats::now_ns();
        let Some((ch, offset, ts)) = parse_message(&frame.payload) else {
            if frame.payload.starts_with(b"{\"type\":\"message\"") {
                sh.bad_frames.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        };
        let Some(s) = subs.iter_mut().find(|s| s.ch == ch) else {
            sh.bad_frames.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if offset <= s.start {
            t.snapshots += 1;
            continue;
        }
        if offset < s.next {
            t.reordered += 1;
            continue;
        }
        t.lost += offset - s.next;
        t.received += 1;
        s.next = offset + 1;
        shard.count.fetch_add(1, Ordering::Relaxed);
        if let Some(ts) = ts {
            shard
                .hist
                .lock()
                .saturating_record(now.saturating_sub(ts).max(1));
        }
    };
    // Messages announced by the publisher but never seen count as lost.
    let finals = match finals {
        Some(f) => Some(f),
        None => {
            // Disconnected: wait for the end of the run to know what was missed.
            let _ = stop.wait_for(Option::is_some).await;
            stop.borrow().clone()
        }
    };
    if let Some(f) = finals {
        for s in &subs {
            if let Some(&last) = f.get(s.ch as usize) {
                t.lost += (last + 1).saturating_sub(s.next);
            }
        }
    }
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        ws.write_frame(fastwebsockets::Frame::close(1000, b"")),
    )
    .await;
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_frames_parse_without_json() {
        let m = br#"{"type":"message","channel":"load:12","offset":1046,"ts":1,"data":{"t_ns":987,"seq":3}}"#;
        assert_eq!(parse_message(m), Some((12, 1046, Some(987))));
        let no_ts = br#"{"type":"message","channel":"a:b:3","offset":7,"data":{}}"#;
        assert_eq!(parse_message(no_ts), Some((3, 7, None)));
        assert_eq!(parse_message(br#"{"type":"pong"}"#), None);
        assert_eq!(
            parse_message(br#"{"type":"message","channel":"load:x","offset":1}"#),
            None
        );
        assert_eq!(
            parse_message(br#"{"type":"message","channel":"load:1"}"#),
            None
        );
    }

    #[test]
    fn query_lists_channels() {
        assert_eq!(path("load", &[0, 5]), "/ws?channels=load:0,load:5");
    }
}
