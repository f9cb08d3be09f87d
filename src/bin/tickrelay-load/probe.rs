//! The relay seen from outside, for the churn mode: its pid (given, or found by the port
//! it listens on), its resident memory and open file descriptors from /proc, and the
//! counters of its `GET /stats`.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats;

/// Largest `/stats` answer read (it lists at most 1000 channels).
const MAX_STATS_BYTES: usize = 1 << 20;

/// Where and how to read the relay.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The relay's process, when known.
    pub pid: Option<u32>,
    /// Where `GET /stats` goes (the first destination address: loopback-checked).
    pub addr: SocketAddr,
    /// `Host` header.
    pub host: String,
    /// `Authorization` header value, if any.
    pub auth: Option<String>,
}

/// The counters of one `/stats` answer the churn mode reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayStats {
    /// Open WebSocket connections.
    pub connections: u64,
    /// WebSocket connections accepted so far.
    pub connections_total: u64,
    /// Bytes queued or being written, over all connections.
    pub queued_bytes: u64,
    /// Error replies, all codes together.
    pub errors: u64,
    /// Connections closed as slow consumers.
    pub slow_consumer_closes: u64,
    /// Upgrade requests refused.
    pub handshake_rejects: u64,
    /// Bytes held by channel history rings (retained by design, not a leak: the warm-up
    /// should fill them, see `--warmup`).
    pub history_bytes: u64,
}

/// One reading.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// VmRSS in bytes.
    pub rss: Option<u64>,
    /// Entries of /proc/PID/fd.
    pub fds: Option<u64>,
    /// `/stats`, if it answered.
    pub stats: Option<RelayStats>,
}

impl Probe {
    /// Reads RSS, fds and `/stats` now.
    pub async fn sample(&self) -> Sample {
        Sample {
            rss: self.pid.and_then(stats::rss_bytes),
            fds: self.pid.and_then(fd_count),
            stats: self.stats().await.ok(),
        }
    }

    /// `GET /stats` on a fresh connection, within 5 s.
    pub async fn stats(&self) -> Result<RelayStats, String> {
        let fut = async {
            let mut s = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let mut req = format!(
                "GET /stats HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
                self.host
            );
            if let Some(a) = &self.auth {
                req.push_str(&format!("Authorization: {a}\r\n"));
            }
            req.push_str("\r\n");
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| format!("send: {e}"))?;
            let mut body = Vec::new();
            (&mut s)
                .take(MAX_STATS_BYTES as u64)
                .read_to_end(&mut body)
                .await
                .map_err(|e| format!("read: {e}"))?;
            Ok::<_, String>(body)
        };
        let raw = tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .map_err(|_| "no /stats answer within 5 s".to_string())??;
        parse_stats(&raw)
    }
}

/// The counters of a `/stats` HTTP response (head and JSON body).
pub fn parse_stats(raw: &[u8]) -> Result<RelayStats, String> {
    if !raw.starts_with(b"HTTP/1.1 200") {
        let line = String::from_utf8_lossy(raw.split(|&b| b == b'\r').next().unwrap_or(&[]));
        return Err(format!("/stats answered {line}"));
    }
    let body = stats::find(raw, b"\r\n\r\n", 0).map_or(raw, |i| &raw[i + 4..]);
    let n = |k: &[u8]| stats::u64_after(body, k, 0).map(|x| x.0);
    let want = |k: &'static str| {
        let key = format!("\"{k}\":");
        n(key.as_bytes()).ok_or(format!("/stats without {k}"))
    };
    Ok(RelayStats {
        connections: want("connections")?,
        connections_total: want("connections_total")?,
        queued_bytes: want("queued_bytes")?,
        slow_consumer_closes: want("slow_consumer_closes")?,
        handshake_rejects: want("handshake_rejects")?,
        history_bytes: want("history_bytes")?,
        errors: error_sum(body).ok_or("/stats without an errors object")?,
    })
}

/// Sum of the numbers in the `"errors":{...}` object (error replies by code).
fn error_sum(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"errors\":{";
    let from = stats::find(body, KEY, 0)? + KEY.len();
    let end = from + body[from..].iter().position(|&b| b == b'}')?;
    let mut sum = 0u64;
    let mut at = from;
    while let Some((v, next)) = stats::u64_after(&body[..end], b"\":", at) {
        sum = sum.saturating_add(v);
        at = next;
    }
    Some(sum)
}

/// Open file descriptors of `pid` (entries of /proc/PID/fd).
pub fn fd_count(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(dir.count() as u64)
}

/// The process that has a TCP socket listening on `port` (from /proc/net/tcp and tcp6,
/// then the socket inodes in /proc/*/fd; only processes this user may inspect).
pub fn find_listener(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        inodes.extend(
            text.lines()
                .skip(1)
                .filter_map(|l| listening_inode(l, port)),
        );
    }
    if inodes.is_empty() {
        return None;
    }
    let links: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = proc_entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if links.iter().any(|l| target.as_os_str() == l.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// The inode of a /proc/net/tcp line if it is a socket listening on `port`.
fn listening_inode(line: &str, port: u16) -> Option<u64> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let local = f.get(1)?;
    let (_, p) = local.rsplit_once(':')?;
    // State 0A is LISTEN.
    if u16::from_str_radix(p, 16).ok()? != port || *f.get(3)? != "0A" {
        return None;
    }
    f.get(9)?.parse().ok().filter(|&i| i != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_counters_and_the_error_sum_are_read() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n\
            {\"uptime_s\":3,\"connections\":12,\"connections_total\":40,\"handshake_rejects\":1,\
            \"channels\":2,\"queued_bytes\":300,\"history_bytes\":77,\"slow_consumer_closes\":2,\
            \"errors\":{\"bad_request\":1,\"rate_limited\":5,\"forbidden\":0},\
            \"frames_built\":{\"json\":9},\"top_channels\":[]}";
        let s = parse_stats(raw).unwrap();
        assert_eq!((s.connections, s.connections_total), (12, 40));
        assert_eq!((s.queued_bytes, s.slow_consumer_closes), (300, 2));
        assert_eq!((s.errors, s.handshake_rejects), (6, 1));
        assert_eq!(s.history_bytes, 77);
        let e = parse_stats(b"HTTP/1.1 401 Unauthorized\r\n\r\nno").unwrap_err();
        assert!(e.contains("401"), "{e}");
    }

    #[test]
    fn a_listening_socket_is_found_with_its_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(find_listener(port), Some(std::process::id()));
        assert!(fd_count(std::process::id()).unwrap() > 2);
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 \
                    00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0";
        assert_eq!(listening_inode(line, 8080), Some(123456));
        assert_eq!(listening_inode(line, 8081), None);
    }
}
