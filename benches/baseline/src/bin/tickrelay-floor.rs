//! Bench only: the handshake floor of W4. The least a WebSocket server can do per
//! connection: accept, read the request head, answer `101` with the computed
//! `Sec-WebSocket-Accept`, then hold the connection until the client closes it. No HTTP
//! parser, no routing, no session, no limits, a single-threaded runtime (so its
//! descriptor table grows without RCU waits).
//!
//! `benches/bar.sh` runs W4 against it beside tickrelay and the baseline: what it reaches
//! is what the load generator and the kernel allow on the machine, whatever the server.
//!
//!     tickrelay-floor --listen 0.0.0.0:8082 [--max-secs 600]

use sha1::{Digest, Sha1};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let mut listen = "0.0.0.0:8082".to_string();
    let mut max_secs = 600u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            "--max-secs" => {
                max_secs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--max-secs N")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let l = TcpListener::bind(&listen).await.expect("bind");
        let serve = async {
            loop {
                match l.accept().await {
                    Ok((s, _)) => {
                        let _ = s.set_nodelay(true);
                        tokio::spawn(handle(s));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(max_secs), serve).await;
    });
}

async fn handle(mut s: TcpStream) {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let end = loop {
        match s.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => return,
            Ok(k) => n += k,
        }
        if let Some(i) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if n == buf.len() {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let Some(key) = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| v.trim().to_string())
    }) else {
        return;
    };
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64(&sha.finalize());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {accept}\r\n\r\n"
    );
    if s.write_all(resp.as_bytes()).await.is_err() {
        return;
    }
    let mut sink = [0u8; 64];
    while let Ok(k) = s.read(&mut sink).await {
        if k == 0 {
            return;
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc_6455_example_accept() {
        use sha1::{Digest, Sha1};
        let mut sha = Sha1::new();
        sha.update(b"dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        assert_eq!(super::base64(&sha.finalize()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
