//! The `upgrade` target: request heads through the upgrade validation, against an
//! independent RFC 6455 oracle.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Version};

use super::oracle_channel_ok;
use crate::http::upgrade;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(input: &[u8]) -> String {
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= n {
                out.push(B64[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 6455 §4.1: a key is 16 random bytes in base64, which is always 22 symbols and
/// `==`; the last symbol carries 2 bits, so its low 4 bits are zero (canonical form).
fn oracle_key_ok(key: &[u8]) -> bool {
    key.len() == 24
        && key[..22].iter().all(|b| B64.contains(b))
        && b"AQgw".contains(&key[21])
        && &key[22..] == b"=="
}

/// Whether one header value lists `token` (RFC 7230 `#token`, case-insensitive). A value
/// with bytes outside visible ASCII, SP and HTAB is no list at all.
fn oracle_lists(value: &[u8], token: &str) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        && value.split(|&b| b == b',').any(|item| {
            let item = item
                .iter()
                .copied()
                .skip_while(|b| *b == b' ' || *b == b'\t')
                .collect::<Vec<u8>>();
            let end = item
                .iter()
                .rposition(|b| *b != b' ' && *b != b'\t')
                .map_or(0, |i| i + 1);
            item[..end].eq_ignore_ascii_case(token.as_bytes())
        })
}

/// RFC 6455 §4.2.1, written from the RFC over the raw header lines: the accept value the
/// server must answer with, or `None` when the request must be refused.
fn oracle_upgrade(req: &httparse::Request<'_, '_>) -> Option<String> {
    fn values<'h>(
        req: &'h httparse::Request<'_, '_>,
        name: &'static str,
    ) -> impl Iterator<Item = &'h [u8]> {
        req.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
    let named = |n: &'static str| values(req, n);
    let one = |n: &'static str| {
        let mut it = named(n);
        match (it.next(), it.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    };
    let ok = req.method == Some("GET")
        && req.version == Some(1)
        && one("host").is_some()
        && named("connection").any(|v| oracle_lists(v, "upgrade"))
        && named("upgrade").any(|v| oracle_lists(v, "websocket"))
        && one("sec-websocket-version") == Some(&b"13"[..])
        && one("sec-websocket-key").is_some_and(oracle_key_ok);
    if !ok {
        return None;
    }
    let key = one("sec-websocket-key")?;
    let mut sha = <sha1::Sha1 as sha1::Digest>::new();
    sha1::Digest::update(&mut sha, key);
    sha1::Digest::update(&mut sha, GUID.as_bytes());
    Some(b64_encode(&sha1::Digest::finalize(sha)))
}

/// Arbitrary request-head bytes, parsed the way hyper parses them (httparse), into the
/// upgrade validation and the query parser. `validate` must accept exactly the requests
/// RFC 6455 allows, with the right `Sec-WebSocket-Accept`.
pub fn upgrade(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(data) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return,
    }
    // Build what hyper hands the service.
    let Some(Ok(method)) = req.method.map(|m| Method::from_bytes(m.as_bytes())) else {
        return;
    };
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return,
    };
    let mut map = HeaderMap::new();
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return; // hyper answers 400 itself
        };
        map.append(name, value);
    }
    let got = upgrade::validate(&method, version, &map);
    let want = oracle_upgrade(&req);
    match (&got, &want) {
        (Ok(a), Some(b)) => {
            assert_eq!(a, b, "accept value");
            let key = map
                .get(hyper::header::SEC_WEBSOCKET_KEY)
                .expect("accepted with a key");
            assert_eq!(&upgrade::accept_key(key.as_bytes()), b);
        }
        (Err(r), None) => {
            assert!(r.status.is_client_error(), "{r:?}");
            assert!(!r.reason.is_empty());
        }
        (Ok(_), None) => panic!("accepted a request RFC 6455 refuses"),
        (Err(r), Some(_)) => panic!("refused a valid upgrade: {r:?}"),
    }
    let query = req.path.and_then(|p| p.split_once('?')).map(|(_, q)| q);
    if let Ok(q) = upgrade::parse_query(query, 4) {
        assert!(q.channels.len() <= 4);
        for (i, c) in q.channels.iter().enumerate() {
            assert!(oracle_channel_ok(c.as_bytes()), "{c:?}");
            assert!(!q.channels[..i].contains(c), "duplicate {c:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64_matches_the_rfc_4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64_encode(i.as_bytes()), o);
        }
    }

    #[test]
    fn the_rfc_example_upgrade_is_accepted() {
        upgrade(
            b"GET /ws?channels=a,b HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        );
    }
}
