//! Client sockets: where they go (loopback only, spread over addresses), the hand-written
//! WebSocket upgrade, and errors classified so that the open-file limit is named when it
//! is the cause.

use base64::Engine as _;
use fastwebsockets::{Role, WebSocket};
use sha1::{Digest, Sha1};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Where client sockets connect from and to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Destination addresses, used round robin (all with the same port).
    pub dst: Vec<SocketAddr>,
    /// Source addresses to bind before connecting, round robin (empty: kernel's choice).
    pub src: Vec<IpAddr>,
    /// `Host` header value.
    pub host: String,
    /// `--tls-ca`: connect over TLS (fanout's subscribers and WebSocket publisher).
    pub tls: Option<std::sync::Arc<crate::conn::TlsClient>>,
}

/// Builds the target from `host:port`, refusing anything that is not loopback unless
/// `allow_remote` is set. `dst_addrs > 1` spreads over 127.0.0.1..127.0.0.N (same port);
/// `src_addrs > 0` binds client sockets to 127.0.0.1..127.0.0.N.
pub async fn target(
    spec: &str,
    dst_addrs: u8,
    src_addrs: u8,
    allow_remote: bool,
) -> Result<Target, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(spec)
        .await
        .map_err(|e| format!("cannot resolve --target {spec}: {e}"))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(format!("--target {spec} resolves to no address"));
    };
    let remote: Vec<_> = addrs.iter().filter(|a| !a.ip().is_loopback()).collect();
    if !remote.is_empty() && !allow_remote {
        return Err(format!(
            "--target {spec} is not a loopback address ({}); this tool loads only loopback \
             relays unless --allow-remote-test-host says the target is your own test host",
            remote[0]
        ));
    }
    let spread = |n: u8, what: &str| -> Result<Vec<IpAddr>, String> {
        if n > 1 && !first.ip().is_loopback() {
            return Err(format!(
                "--{what} spreads over 127.0.0.x and needs a loopback --target"
            ));
        }
        Ok((1..=n)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect())
    };
    let dst = if dst_addrs > 1 {
        spread(dst_addrs, "dst-addrs")?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, first.port()))
            .collect()
    } else {
        vec![first]
    };
    let src = if src_addrs > 0 {
        if !first.is_ipv4() {
            return Err("--src-addrs needs an IPv4 --target".into());
        }
        spread(src_addrs, "src-addrs")?
    } else {
        Vec::new()
    };
    Ok(Target {
        dst,
        src,
        host: spec.to_string(),
        tls: None,
    })
}

/// Why a connection failed, in the categories a summary reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// EMFILE/ENFILE: the open-file limit.
    FileLimit,
    /// EADDRNOTAVAIL / EADDRINUSE: no ephemeral port left for this address pair.
    NoPort,
    /// Connection refused.
    Refused,
    /// No answer in time.
    Timeout,
    /// The relay answered the upgrade with something other than 101.
    Rejected,
    /// Anything else (reset, EOF, malformed answer).
    Other,
}

impl Failure {
    /// Short name for summaries.
    pub fn name(self) -> &'static str {
        match self {
            Failure::FileLimit => "file_limit",
            Failure::NoPort => "no_ephemeral_port",
            Failure::Refused => "refused",
            Failure::Timeout => "timeout",
            Failure::Rejected => "rejected",
            Failure::Other => "other",
        }
    }

    /// Classifies an I/O error.
    pub fn of(e: &io::Error) -> Failure {
        match e.raw_os_error() {
            Some(24) | Some(23) => Failure::FileLimit, // EMFILE, ENFILE
            Some(99) | Some(98) => Failure::NoPort,    // EADDRNOTAVAIL, EADDRINUSE
            _ => match e.kind() {
                io::ErrorKind::ConnectionRefused => Failure::Refused,
                io::ErrorKind::TimedOut => Failure::Timeout,
                _ => Failure::Other,
            },
        }
    }
}

/// A failed connection attempt with a one-line reason.
#[derive(Debug)]
pub struct ConnError {
    /// Category.
    pub kind: Failure,
    /// What happened.
    pub detail: String,
}

impl ConnError {
    /// An I/O error while doing `what`.
    pub fn io(what: &str, e: io::Error) -> Self {
        ConnError {
            kind: Failure::of(&e),
            detail: format!("{what}: {e}"),
        }
    }
    fn new(kind: Failure, detail: String) -> Self {
        ConnError { kind, detail }
    }
}

/// Opens a TCP connection number `idx` (which picks the source/destination pair).
/// `nodelay` turns Nagle off: wanted where the client keeps sending (commands,
/// publishes), a wasted system call where it sends one request and then only listens.
pub async fn tcp(target: &Target, idx: usize, nodelay: bool) -> Result<TcpStream, ConnError> {
    tcp_with(target, idx, nodelay, None).await
}

/// [`tcp`] with a receive buffer of `rcvbuf` bytes set before connecting (the window
/// the kernel then advertises): a reader that never reads backs the relay up after
/// kilobytes instead of megabytes.
pub async fn tcp_with(
    target: &Target,
    idx: usize,
    nodelay: bool,
    rcvbuf: Option<u32>,
) -> Result<TcpStream, ConnError> {
    let dst = target.dst[idx % target.dst.len()];
    let sock = if dst.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| ConnError::io("socket", e))?;
    if let Some(b) = rcvbuf {
        sock.set_recv_buffer_size(b)
            .map_err(|e| ConnError::io("SO_RCVBUF", e))?;
    }
    if !target.src.is_empty() {
        let src = target.src[(idx / target.dst.len()) % target.src.len()];
        sock.bind(SocketAddr::new(src, 0))
            .map_err(|e| ConnError::io("bind", e))?;
    }
    let s = sock
        .connect(dst)
        .await
        .map_err(|e| ConnError::io("connect", e))?;
    if nodelay {
        let _ = s.set_nodelay(true);
    }
    Ok(s)
}

/// Makes closing `s` send RST, not FIN, so a run leaves no TIME_WAIT sockets behind.
/// Tens of thousands of them (60 s each) slow the kernel's ephemeral-port search in
/// connect() for the next run: back-to-back W4 runs measured 24k, then 17k handshakes/s.
/// Load connections are closed only after the measurement, once everything sent has been
/// answered, so nothing is cut short.
pub fn reset_on_close(s: &TcpStream) {
    // A zero linger never blocks: close discards the socket at once (the deprecation is
    // about non-zero lingers blocking the runtime thread).
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
}

static KEY_STATE: AtomicU64 = AtomicU64::new(0x243f_6a88_85a3_08d3);

/// A fresh `Sec-WebSocket-Key` (16 bytes, base64). Uniqueness matters, not secrecy.
fn ws_key() -> String {
    let mut z = KEY_STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    let mut out = [0u8; 16];
    for half in out.chunks_mut(8) {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        half.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Largest upgrade response head accepted.
pub const MAX_HEAD: usize = 4096;

/// How the upgrade answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Peek, then consume exactly the head: frames the relay sends right behind it stay
    /// in the socket for fastwebsockets. Two `recv` calls.
    Exact,
    /// One `recv` for the head; whatever follows it in the same read is dropped. For
    /// connections that are only held (`connect`), where no frame follows the head.
    Discard,
}

/// Sends the upgrade request for `path_query` (e.g. `/ws?channels=a,b`) and reads the
/// response head as `how` says.
pub async fn upgrade(
    stream: &mut TcpStream,
    host: &str,
    path_query: &str,
    how: Head,
) -> Result<(), ConnError> {
    upgrade_with(stream, host, path_query, how, "").await
}

/// [`upgrade`] with `extra` header lines (each ending in `\r\n`).
pub async fn upgrade_with(
    stream: &mut TcpStream,
    host: &str,
    path_query: &str,
    how: Head,
    extra: &str,
) -> Result<(), ConnError> {
    let (req, key) = upgrade_request(host, path_query, extra);
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| ConnError::io("send upgrade", e))?;
    let mut buf = vec![0u8; MAX_HEAD];
    let head_len = match how {
        Head::Exact => {
            let n = peek_head(stream, &mut buf).await?;
            stream
                .read_exact(&mut buf[..n])
                .await
                .map_err(|e| ConnError::io("read upgrade answer", e))?;
            n
        }
        Head::Discard => read_head(stream, &mut buf).await?,
    };
    check_head(&buf[..head_len], &key)
}

/// The upgrade request for `path_query` with `extra` header lines, and its key.
pub fn upgrade_request(host: &str, path_query: &str, extra: &str) -> (String, String) {
    let key = ws_key();
    let req = format!(
        "GET {path_query} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{extra}\r\n"
    );
    (req, key)
}

fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn closed_early() -> ConnError {
    ConnError::new(
        Failure::Other,
        "connection closed before the upgrade answer".into(),
    )
}

fn head_too_long() -> ConnError {
    ConnError::new(Failure::Other, "upgrade answer head over 4 KiB".into())
}

/// Peeks until the whole head is in the socket; returns its length.
async fn peek_head(stream: &mut TcpStream, buf: &mut [u8]) -> Result<usize, ConnError> {
    loop {
        let n = stream
            .peek(buf)
            .await
            .map_err(|e| ConnError::io("read upgrade answer", e))?;
        if n == 0 {
            return Err(closed_early());
        }
        if let Some(end) = head_end(&buf[..n]) {
            return Ok(end);
        }
        if n == buf.len() {
            return Err(head_too_long());
        }
        // Part of the head is there: wait briefly for the rest (peek does not consume).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Reads until the head is complete; returns its length (bytes past it are dropped).
async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> Result<usize, ConnError> {
    let mut have = 0;
    loop {
        let n = stream
            .read(&mut buf[have..])
            .await
            .map_err(|e| ConnError::io("read upgrade answer", e))?;
        if n == 0 {
            return Err(closed_early());
        }
        // The end marker may straddle two reads.
        let from = have.saturating_sub(3);
        have += n;
        if let Some(end) = head_end(&buf[from..have]) {
            return Ok(from + end);
        }
        if have == buf.len() {
            return Err(head_too_long());
        }
    }
}

/// Checks the status line and `Sec-WebSocket-Accept` of a response head.
pub fn check_head(head: &[u8], key: &str) -> Result<(), ConnError> {
    let head = String::from_utf8_lossy(head);
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "101" {
        let line = head.lines().next().unwrap_or("").to_string();
        return Err(ConnError::new(
            Failure::Rejected,
            format!("upgrade refused: {line}"),
        ));
    }
    let want = accept_for(key);
    let ok = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == want
        })
    });
    if !ok {
        return Err(ConnError::new(
            Failure::Other,
            "upgrade answer without the right Sec-WebSocket-Accept".into(),
        ));
    }
    Ok(())
}

/// [`ws`] for a subscriber: with `deflate`, it offers permessage-deflate and its
/// compressed frames are inflated before fastwebsockets sees them.
pub async fn ws_inflating(
    target: &Target,
    idx: usize,
    path_query: &str,
    timeout: Duration,
    deflate: bool,
) -> Result<WebSocket<crate::inflate::Inflating>, ConnError> {
    let offer = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        ""
    };
    let fut = async {
        let s = crate::conn::upgraded(target, idx, path_query, offer).await?;
        let s = crate::inflate::Inflating::new(s, deflate);
        Ok(WebSocket::after_handshake(s, Role::Client))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ConnError::new(
            Failure::Timeout,
            format!("no upgrade answer within {timeout:?}"),
        )),
    }
}

/// TCP connect plus upgrade, as a client WebSocket (frames it sends are masked), within
/// `timeout`.
pub async fn ws(
    target: &Target,
    idx: usize,
    path_query: &str,
    timeout: Duration,
) -> Result<WebSocket<TcpStream>, ConnError> {
    let fut = async {
        let mut s = tcp(target, idx, true).await?;
        reset_on_close(&s);
        upgrade(&mut s, &target.host, path_query, Head::Exact).await?;
        Ok(WebSocket::after_handshake(s, Role::Client))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ConnError::new(
            Failure::Timeout,
            format!("no connection and upgrade within {timeout:?}"),
        )),
    }
}

/// [`ws`] over TLS when the target has `--tls-ca` (the WebSocket publisher).
pub async fn ws_any(
    target: &Target,
    idx: usize,
    path_query: &str,
    timeout: Duration,
) -> Result<WebSocket<crate::conn::Conn>, ConnError> {
    let fut = crate::conn::upgraded(target, idx, path_query, "");
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => Ok(WebSocket::after_handshake(r?, Role::Client)),
        Err(_) => Err(ConnError::new(
            Failure::Timeout,
            format!("no connection and upgrade within {timeout:?}"),
        )),
    }
}

/// The process's open-file limit (soft), from /proc/self/limits.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_example() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn keys_are_distinct_16_byte_values() {
        let a = ws_key();
        let b = ws_key();
        assert_ne!(a, b);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&a)
                .unwrap()
                .len(),
            16
        );
    }

    #[tokio::test]
    async fn non_loopback_targets_are_refused_without_the_flag() {
        let e = target("10.1.2.3:80", 1, 0, false).await.unwrap_err();
        assert!(e.contains("--allow-remote-test-host"), "{e}");
        assert!(target("10.1.2.3:80", 1, 0, true).await.is_ok());
        let t = target("127.0.0.1:9000", 8, 2, false).await.unwrap();
        assert_eq!(t.dst.len(), 8);
        assert_eq!(t.dst[7], "127.0.0.8:9000".parse().unwrap());
        assert_eq!(t.src.len(), 2);
    }

    #[test]
    fn file_limit_errors_are_named() {
        assert_eq!(
            Failure::of(&io::Error::from_raw_os_error(24)),
            Failure::FileLimit
        );
        assert_eq!(
            Failure::of(&io::Error::from_raw_os_error(99)),
            Failure::NoPort
        );
    }

    /// A server that answers the upgrade with its head cut at `cut` (the second part sent
    /// a little later), followed by `tail`.
    async fn split_answer(cut: usize, tail: &'static [u8]) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).await.unwrap();
            let req = String::from_utf8_lossy(&req[..n]).to_string();
            let key = req
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                 sec-websocket-accept: {}\r\n\r\n",
                accept_for(key.trim())
            );
            s.write_all(&head.as_bytes()[..cut]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(&head.as_bytes()[cut..]).await.unwrap();
            s.write_all(tail).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        addr
    }

    #[tokio::test]
    async fn a_head_split_inside_its_end_marker_is_read_either_way() {
        for how in [Head::Exact, Head::Discard] {
            // Cut between the two CRLFs that end the head.
            let head_len = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                 sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .len();
            let addr = split_answer(head_len - 2, b"\x81\x02hi").await;
            let mut s = TcpStream::connect(addr).await.unwrap();
            upgrade(&mut s, "h", "/ws", how).await.unwrap();
            if how == Head::Exact {
                // The frame behind the head is still in the socket.
                let mut f = [0u8; 4];
                s.read_exact(&mut f).await.unwrap();
                assert_eq!(&f, b"\x81\x02hi");
            }
        }
    }
}
