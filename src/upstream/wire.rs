//! The edge's side of the wire: the client upgrade to the upstream, and reading what the
//! upstream sends (protocol v1 text frames in the envelope format).

use base64::Engine as _;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Target, PATH_HEADER, VIA_HEADER};
use crate::protocol::channel;

/// A response head longer than this is refused.
const MAX_HEAD: usize = 16 * 1024;
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The upgraded connection (bytes read past the head stay in the buffer) and the relay
/// chain the upstream answered with.
pub type Upgraded = (BufReader<TcpStream>, String);

/// Connects to `t` and upgrades, showing `token` and this relay's `node` id.
pub async fn connect(t: &Target, token: Option<&str>, node: &str) -> Result<Upgraded, String> {
    let stream = TcpStream::connect(&t.authority)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    let seed = crate::hub::now_ms() ^ u64::from(std::process::id()) << 32;
    let key = base64::engine::general_purpose::STANDARD.encode(seed.to_le_bytes().repeat(2));
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{VIA_HEADER}: {node}\r\n{auth}\r\n",
        t.path, t.authority
    );
    stream
        .get_mut()
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = stream
            .read_until(b'\n', &mut head)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed during the upgrade".into());
        }
        if head.len() > MAX_HEAD {
            return Err("response head too long".into());
        }
        if &head[before..] == b"\r\n" {
            break;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if status.starts_with("HTTP/1.1 508") {
        return Err(format!("loop: the upstream is this relay ({status})"));
    }
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("upgrade refused: {status}"));
    }
    let mut accept = None;
    let mut path = String::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("sec-websocket-accept") {
                accept = Some(v.to_string());
            } else if k.eq_ignore_ascii_case(PATH_HEADER) {
                path = v.to_string();
            }
        }
    }
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID);
    let want = base64::engine::general_purpose::STANDARD.encode(h.finalize());
    if accept.as_deref() != Some(want.as_str()) {
        return Err("wrong Sec-WebSocket-Accept".into());
    }
    Ok((stream, path))
}

/// One message of a channel, as the upstream framed it.
#[derive(Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    /// The channel (validated).
    pub channel: &'a str,
    /// Its offset upstream.
    pub offset: u64,
    /// Its publish time upstream.
    pub ts: u64,
    /// The publisher's data, verbatim.
    pub data: &'a [u8],
}

fn number(b: &[u8]) -> Option<(u64, &[u8])> {
    let end = b.iter().position(|c| !c.is_ascii_digit())?;
    // Relays write numbers canonically: no leading zero (found by the upstream fuzz target).
    if end == 0 || end > 19 || (end > 1 && b[0] == b'0') {
        return None;
    }
    let n = std::str::from_utf8(&b[..end]).ok()?.parse().ok()?;
    Some((n, &b[end..]))
}

/// Reads a v1 envelope, `{"type":"message","channel":..,"offset":..,"ts":..,"data":..}`,
/// exactly as relays write it (no parse of `data`); `None` for any other frame.
pub fn message(p: &[u8]) -> Option<Msg<'_>> {
    let rest = p.strip_prefix(br#"{"type":"message","channel":""#)?;
    let q = rest.iter().position(|&c| c == b'"')?;
    let channel = channel::validate(&rest[..q]).ok()?;
    let rest = rest[q..].strip_prefix(br#"","offset":"#)?;
    let (offset, rest) = number(rest)?;
    let rest = rest.strip_prefix(br#","ts":"#)?;
    let (ts, rest) = number(rest)?;
    let rest = rest.strip_prefix(br#","data":"#)?;
    let data = rest.strip_suffix(b"}")?;
    if data.is_empty() {
        return None;
    }
    Some(Msg {
        channel,
        offset,
        ts,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;

    #[test]
    fn reads_back_the_envelope_relays_write() {
        let f = encode::message_frame("ticker:BTC", 42, 1_700_000_000_123, br#"{"p":"1.50"}"#);
        let payload = &f[2..];
        assert_eq!(
            message(payload),
            Some(Msg {
                channel: "ticker:BTC",
                offset: 42,
                ts: 1_700_000_000_123,
                data: br#"{"p":"1.50"}"#
            })
        );
        for bad in [
            &br#"{"type":"subscribed","channels":[]}"#[..],
            br#"{"type":"message","channel":"bad name","offset":1,"ts":2,"data":1}"#,
            br#"{"type":"message","channel":"a","offset":,"ts":2,"data":1}"#,
            br#"{"type":"message","channel":"a","offset":1,"ts":2,"data":}"#,
            br#"{"type":"message","channel":"a","offset":1,"ts":2,"data":1"#,
            br#"{"type":"message","channel":"a","offset":123456789012345678901,"ts":2,"data":1}"#,
            br#"{"type":"message","channel":"a","offset":1,"ts":0002,"data":1}"#,
        ] {
            assert_eq!(message(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
