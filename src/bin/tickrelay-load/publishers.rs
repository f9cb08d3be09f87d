//! The fanout mode's publishers: one WebSocket connection with up to --in-flight
//! publishes awaiting their `published` reply, or --in-flight keep-alive HTTP
//! connections; both take publish slots from a [`Pacer`] (bounded by --messages and
//! --duration, paced when --rate is set) and record acks in [`PubStats`].

use fastwebsockets::{Frame, OpCode, Payload};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cli::FanoutArgs;
use crate::net::{self, Target};
use crate::stats;

/// Hands out publish slots: bounded by count and time, paced when a rate is set.
pub struct Pacer {
    pub next: AtomicU64,
    pub max: u64,
    pub start: Instant,
    pub end: Instant,
    pub rate: f64,
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
pub struct PubStats {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    /// Highest acknowledged offset per channel.
    pub finals: Mutex<Vec<u64>>,
    /// Acknowledged publishes per channel.
    pub per_channel: Mutex<Vec<u64>>,
    /// First error seen.
    pub first_error: Mutex<Option<String>>,
    pub failed: AtomicBool,
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

pub async fn ws_publisher(
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
    let ws = match net::ws_any(&target, 0, &path, timeout).await {
        Ok(ws) => ws,
        Err(e) => {
            ps.error(format!("publisher connection: {}", e.detail));
            ps.failed.store(true, Ordering::Relaxed);
            return;
        }
    };
    let (mut rd, mut wr) = ws.split(|s| s.split());
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
pub async fn http_publisher(
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
}
