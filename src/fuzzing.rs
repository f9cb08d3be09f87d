//! Entry points of the fuzz targets in `fuzz/` (compiled only with `--cfg fuzzing`, which
//! `cargo fuzz` sets). Each target is one call into this module, rustls style, so the
//! targets stay a few lines long and the properties live next to the code they check.
//!
//! Every function takes the raw fuzzer input, never panics on its own account, and
//! asserts one property; a failed assertion is a finding:
//!
//! | function | property |
//! |---|---|
//! | [`command`] | no panic; a parsed command, re-encoded, parses to the same command |
//! | [`publish`] | publish bodies and channel names: accepted input is what the encoder assumes |
//! | [`read_path`] | a whole session over a duplex: no panic or hang, only well-formed frames out |
//! | [`upgrade`] | `validate` accepts exactly what an independent RFC 6455 oracle accepts |
//! | [`frame_encode`] | a frame built once decodes to its exact length, opcode and FIN |
//!
//! The oracles here are written independently of the code under test (no shared
//! helpers) so that a bug is not repeated on both sides.

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Version};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::error::ErrorCode;
use crate::http::upgrade;
use crate::protocol::command::{self, Command, Id, Request};
use crate::protocol::{channel, encode, json, publish as body};
use crate::server::Relay;
use crate::session::{self, Mode, Params};

// ---------------------------------------------------------------------------------------
// command

/// Re-encodes a parsed command as the JSON a client would send.
fn encode_request(r: &Request<'_>) -> Vec<u8> {
    let mut out = b"{".to_vec();
    if let Some(id) = &r.id {
        out.extend_from_slice(br#""id":"#);
        out.extend_from_slice(id.as_json());
        out.push(b',');
    }
    let list = |out: &mut Vec<u8>, op: &str, channels: &[&str]| {
        out.extend_from_slice(format!(r#""op":"{op}","channels":["#).as_bytes());
        for (i, c) in channels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::push_str(out, c);
        }
        out.push(b']');
    };
    match &r.command {
        Command::Subscribe {
            channels,
            recover,
            max_rate,
        } => {
            list(&mut out, "subscribe", channels);
            if !recover.is_empty() {
                out.extend_from_slice(br#","recover":{"#);
                for (i, r) in recover.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    json::push_str(&mut out, r.channel);
                    out.extend_from_slice(br#":{"epoch":"#);
                    json::push_str(&mut out, r.epoch);
                    out.extend_from_slice(br#","offset":"#);
                    json::push_u64(&mut out, r.offset);
                    out.push(b'}');
                }
                out.push(b'}');
            }
            if let Some(rate) = max_rate {
                out.extend_from_slice(br#","max_rate":"#);
                json::push_u64(&mut out, u64::from(*rate));
            }
        }
        Command::Unsubscribe { channels } => list(&mut out, "unsubscribe", channels),
        Command::Publish { channel, data } => {
            out.extend_from_slice(br#""op":"publish","channel":"#);
            json::push_str(&mut out, channel);
            out.extend_from_slice(br#","data":"#);
            out.extend_from_slice(data);
        }
        Command::Auth { token } => {
            out.extend_from_slice(br#""op":"auth","token":"#);
            json::push_str(&mut out, token);
        }
        Command::Ping => out.extend_from_slice(br#""op":"ping""#),
    }
    out.push(b'}');
    out
}

/// Arbitrary bytes as a client command frame. Never panics; whatever parses was valid
/// JSON, and re-encoding it gives a command that parses to the same thing.
pub fn command(data: &[u8]) {
    let mut again; // declared first: it must outlive the first parse's borrow
    let mut buf = data.to_vec(); // simd-json rewrites its input
    let Ok(req) = command::parse(&mut buf) else {
        return;
    };
    assert!(
        command::validate_json(&mut data.to_vec()),
        "a command was accepted from invalid JSON"
    );
    if let Command::Publish { data: d, .. } = &req.command {
        assert!(
            command::validate_json(&mut d.to_vec()),
            "publish data is not a JSON value on its own: {d:?}"
        );
    }
    again = encode_request(&req);
    let text = String::from_utf8_lossy(&again).into_owned();
    match command::parse(&mut again) {
        Ok(back) => assert_eq!(back, req, "round trip through {text}"),
        Err(e) => panic!("re-encoded command {text} does not parse: {e:?}"),
    };
}

// ---------------------------------------------------------------------------------------
// publish bodies and channel names

/// The channel alphabet, spelled out again (not `channel`'s table).
fn oracle_channel_ok(name: &[u8]) -> bool {
    (1..=128).contains(&name.len())
        && name
            .iter()
            .all(|b| b"_.:@/#-".contains(b) || b.is_ascii_digit() || b.is_ascii_alphabetic())
}

/// A message frame for `channel` and `data` must be one JSON document (the envelope
/// copies the name verbatim, so the name must need no escaping).
fn check_envelope(channel: &str, data: &[u8]) {
    let f = encode::message_frame(channel, 7, 1_700_000_000_000, data);
    let h = encode::decode_head(&f).expect("a whole header");
    let mut p = f[h.head_len..].to_vec();
    assert!(
        command::validate_json(&mut p),
        "envelope for {channel:?} with {data:?} is not JSON"
    );
}

/// Arbitrary bytes as an HTTP publish body (single value and NDJSON batch) and as a
/// channel name. The first byte picks the limits.
pub fn publish(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let max = [0, 1, 16, 64 * 1024][(sel & 3) as usize];
    let max_items = [1, 2, 3, 10_000][((sel >> 2) & 3) as usize];
    let bytes = Bytes::copy_from_slice(rest);

    match channel::validate(rest) {
        Ok(name) => {
            assert!(oracle_channel_ok(rest), "accepted channel {rest:?}");
            assert_eq!(name.as_bytes(), rest);
            let ns = channel::namespace(name);
            assert!(name.starts_with(ns) && !ns.contains(':'));
            let mut quoted = Vec::new();
            json::push_str(&mut quoted, name);
            assert_eq!(
                &quoted[1..quoted.len() - 1],
                rest,
                "a name needs no escaping"
            );
            check_envelope(name, b"null");
        }
        Err(e) => {
            assert!(!oracle_channel_ok(rest), "refused channel {rest:?}: {e:?}");
        }
    }

    if let Ok(d) = body::single(&bytes, max) {
        assert!(!d.is_empty() && d.len() <= max);
        assert!(
            !d[0].is_ascii_whitespace() && !d[d.len() - 1].is_ascii_whitespace(),
            "trimmed"
        );
        assert!(
            command::validate_json(&mut d.to_vec()),
            "single data is JSON"
        );
        check_envelope("c", &d);
    }

    match body::batch(&bytes, max, max_items) {
        Ok(items) => {
            assert!(!items.is_empty() && items.len() <= max_items);
            for it in &items {
                assert!(oracle_channel_ok(it.channel.as_bytes()), "{:?}", it.channel);
                assert!(it.data.len() <= max);
                assert!(
                    command::validate_json(&mut it.data.to_vec()),
                    "batch data {:?} is not a JSON value on its own",
                    it.data
                );
                check_envelope(&it.channel, &it.data);
            }
        }
        Err(e) => {
            let lines = rest.split(|&b| b == b'\n').count();
            assert!(
                (1..=lines.max(1)).contains(&e.line),
                "line {} of {lines}",
                e.line
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// upgrade

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

// ---------------------------------------------------------------------------------------
// frame encoding

/// An independent decoder of a server frame header: (fin, rsv, opcode, masked, len,
/// header length), or `None` if `b` is shorter than the header. Also checks that the
/// length uses the shortest form and that a 64-bit length has its top bit clear.
fn oracle_head(b: &[u8]) -> Option<(bool, u8, u8, bool, u64, usize)> {
    if b.len() < 2 {
        return None;
    }
    let masked = b[1] >> 7 == 1;
    let (len, n) = match b[1] & 0x7f {
        126 => {
            let l = u64::from(*b.get(2)?) << 8 | u64::from(*b.get(3)?);
            assert!(l >= 126, "length {l} not in the shortest form");
            (l, 4)
        }
        127 => {
            let mut l = 0u64;
            for i in 0..8 {
                l = l << 8 | u64::from(*b.get(2 + i)?);
            }
            assert!(l >> 63 == 0, "64-bit length with the top bit set");
            assert!(l > 0xffff, "length {l} not in the shortest form");
            (l, 10)
        }
        l => (u64::from(l), 2),
    };
    let n = n + if masked { 4 } else { 0 };
    (b.len() >= n).then_some((b[0] >> 7 == 1, (b[0] >> 4) & 7, b[0] & 15, masked, len, n))
}

/// Checks one frame built by `encode`: a single FIN, unmasked frame holding `payload`.
fn check_frame(f: &[u8], opcode: u8, payload: Option<&[u8]>) -> Vec<u8> {
    let (fin, rsv, op, masked, len, n) = oracle_head(f).expect("a whole header");
    assert!(fin && rsv == 0 && !masked, "FIN, no RSV bits, unmasked");
    assert_eq!(op, opcode);
    assert_eq!(
        n as u64 + len,
        f.len() as u64,
        "length field is the payload length"
    );
    let h = encode::decode_head(f).expect("decode_head reads it too");
    assert_eq!(
        (h.fin, h.opcode, h.masked, h.len, h.head_len),
        (fin, op, masked, len, n),
        "decode_head agrees"
    );
    if let Some(p) = payload {
        assert_eq!(&f[n..], p, "payload verbatim");
    }
    f[n..].to_vec()
}

/// Reads little-endian integers and slices off the front of the fuzzer input.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u64(&mut self, n: usize) -> u64 {
        (0..n).fold(0, |v, i| v | u64::from(self.byte()) << (8 * i))
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// Arbitrary (kind, channel, payload, offset): a frame built once by `encode` decodes to
/// the exact length, opcode and FIN, with the payload where it belongs. Payload lengths
/// reach past 65536 by repeating the input, so every header size is exercised.
pub fn frame_encode(data: &[u8]) {
    let mut inp = Input(data);
    let kind = inp.byte();
    let offset = inp.u64(8);
    let ts = inp.u64(8);
    let chan_len = inp.byte() as usize;
    let chan = inp.take(chan_len);
    let len_sel = inp.u64(3) as usize;
    let len = match kind >> 6 {
        0 => len_sel % 256,               // around 125/126
        1 => 65_536 - 64 + len_sel % 128, // around 65535/65536
        2 => len_sel % 70_000,            // anything up to past 65536
        _ => inp.0.len(),                 // the rest of the input as is
    };
    let seed = if inp.0.is_empty() { &[0u8][..] } else { inp.0 };
    // Doubling copies: a per-byte loop over 70 000 bytes is slow under ASan.
    let mut payload = Vec::with_capacity(len.max(seed.len()));
    payload.extend_from_slice(seed);
    while payload.len() < len {
        payload.extend_from_within(..payload.len().min(len - payload.len()));
    }
    payload.truncate(len);
    let channel = channel::validate(chan).unwrap_or("ticker:BTC-USD");

    match kind & 7 {
        0 => {
            let op = (kind >> 3) & 0x0f;
            check_frame(&encode::frame(op, &payload), op, Some(&payload));
        }
        1 => {
            check_frame(
                &encode::raw_frame(&payload),
                encode::OP_TEXT,
                Some(&payload),
            );
        }
        2 => {
            let p = check_frame(
                &encode::message_frame(channel, offset, ts, &payload),
                encode::OP_TEXT,
                None,
            );
            let mut want = format!(
                r#"{{"type":"message","channel":"{channel}","offset":{offset},"ts":{ts},"data":"#
            )
            .into_bytes();
            want.extend_from_slice(&payload);
            want.push(b'}');
            assert_eq!(p, want);
        }
        3 => {
            let code = offset as u16;
            let reason = String::from_utf8_lossy(&payload);
            let p = check_frame(&encode::close_frame(code, &reason), encode::OP_CLOSE, None);
            assert!(p.len() <= 125, "control payload over 125");
            assert_eq!(p[..2], code.to_be_bytes());
            let r = std::str::from_utf8(&p[2..]).expect("reason is UTF-8");
            assert!(reason.starts_with(r));
            assert!(
                r.len() == reason.len() || r.len() + 4 > 123,
                "cut only to fit"
            );
        }
        4 => {
            let p = check_frame(
                &encode::frame(encode::OP_PONG, &payload),
                encode::OP_PONG,
                None,
            );
            assert_eq!(p, payload);
        }
        _ => {
            // Replies: always one JSON document, whatever the id and message.
            let id = match kind & 8 {
                0 => Some(Id::from_u64(offset)),
                _ => None,
            };
            let message = String::from_utf8_lossy(&payload);
            let frames = [
                encode::error(id.as_ref(), ErrorCode::BadRequest, &message),
                encode::published(id.as_ref(), channel, offset),
                encode::pong(id.as_ref()),
                encode::unsubscribed(id.as_ref(), &[channel, channel]),
                encode::welcome(offset, ts),
                encode::subscribed(
                    id.as_ref(),
                    &[encode::SubscribedChannel {
                        channel,
                        epoch: "k3f9",
                        offset,
                        recovered: Some(offset % 2 == 0),
                    }],
                ),
            ];
            for f in frames {
                let mut p = check_frame(&f, encode::OP_TEXT, None);
                assert!(
                    command::validate_json(&mut p),
                    "reply {:?} is not JSON",
                    String::from_utf8_lossy(&f)
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// the whole read path

/// Output beyond this is a runaway: no input the fuzzer sends (at most a few tens of KB)
/// justifies it.
const OUTPUT_LIMIT: u64 = 16 << 20;

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
}

/// Close codes an endpoint may put on the wire (RFC 6455 §7.4.1; 1005, 1006 and 1015 are
/// reserved for reporting and never sent).
fn oracle_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses everything the relay wrote and checks each frame: server frames are unmasked,
/// FIN (the relay never fragments), no RSV bits, known opcodes, control payloads of at
/// most 125 bytes, text valid UTF-8 (and JSON in relay mode), a close frame last with a
/// valid code and a UTF-8 reason, and no partial frame at the end.
fn check_output(out: &[u8], mode: Mode) {
    let mut rest = out;
    let mut first = true;
    while !rest.is_empty() {
        let (fin, rsv, op, masked, len, n) =
            oracle_head(rest).unwrap_or_else(|| panic!("partial header at the end: {rest:?}"));
        assert!(
            rest.len() as u64 >= n as u64 + len,
            "partial frame at the end"
        );
        assert!(fin, "the relay sent a fragment");
        assert_eq!(rsv, 0, "RSV bits set");
        assert!(!masked, "a server frame is masked");
        let p = &rest[n..n + len as usize];
        rest = &rest[n + len as usize..];
        match op {
            0x1 => {
                let text = std::str::from_utf8(p).expect("text frame is UTF-8");
                if mode == Mode::Relay {
                    assert!(
                        command::validate_json(&mut p.to_vec()),
                        "text frame is not JSON: {text}"
                    );
                    if first {
                        assert!(text.starts_with(r#"{"type":"welcome""#), "{text}");
                    }
                }
            }
            0x2 => assert_eq!(mode, Mode::Echo, "binary frame in relay mode"),
            0x8 => {
                assert!(p.len() <= 125, "close payload over 125");
                assert_ne!(p.len(), 1, "close payload of one byte");
                if p.len() >= 2 {
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    assert!(oracle_close_code(code), "close code {code}");
                    assert!(std::str::from_utf8(&p[2..]).is_ok(), "close reason UTF-8");
                }
                assert!(rest.is_empty(), "frames after the close frame");
            }
            0x9 | 0xA => assert!(p.len() <= 125, "control payload over 125"),
            other => panic!("opcode {other:#x}"),
        }
        first = false;
    }
}

/// Arbitrary bytes written by a client after a completed handshake, through
/// fastwebsockets and the whole session (reassembly, UTF-8, limits, commands, hub) over
/// an in-memory duplex. Byte 0 picks the connection (echo/relay, raw, publisher, limits),
/// byte 1 how the input is cut into writes; the rest is the client's bytes, then EOF.
/// The session must end in bounded time with only well-formed frames written, and leave
/// no subscription behind.
pub fn read_path(data: &[u8]) {
    let mut inp = Input(data);
    let flags = inp.byte();
    let cut = inp.byte();
    let client_bytes = inp.0;
    let mode = if flags & 1 != 0 {
        Mode::Echo
    } else {
        Mode::Relay
    };
    let config = Config {
        echo: mode == Mode::Echo,
        publish_key: (flags & 2 != 0).then(|| "k".to_owned()),
        shards: Some(1),
        max_message_bytes: [16, 125, 126, 1024][((flags >> 2) & 3) as usize],
        queue_bytes: if flags & 16 != 0 { 300 } else { 64 * 1024 },
        max_subscriptions: 4,
        max_channels: 6,
        // Nothing below may fire during a run: a hang is caught by the timeout instead.
        heartbeat_ms: 60_000,
        close_timeout_ms: 2_000,
        slow_close_grace_ms: 10_000,
        ..Config::default()
    };
    let params = Params {
        mode,
        raw: flags & 32 != 0,
        identity: crate::auth::Identity {
            publisher: flags & 64 != 0,
            claims: None,
        },
        channels: if flags & 128 != 0 {
            vec!["ticker:BTC-USD".into(), "a".into()]
        } else {
            Vec::new()
        },
    };
    let chunk = match cut {
        0 => usize::MAX,
        c => usize::from(c),
    };
    let relay = Relay::new(config);
    let out = RT.with(|rt| {
        rt.block_on(async {
            let (client, server) = tokio::io::duplex(16 * 1024);
            let (sr, sw) = tokio::io::split(server);
            let session = tokio::spawn(session::run(sr, sw, relay.clone(), params));
            let (cr, mut cw) = tokio::io::split(client);
            let reader = tokio::spawn(async move {
                let mut out = Vec::new();
                let _ = cr.take(OUTPUT_LIMIT).read_to_end(&mut out).await;
                out
            });
            for part in client_bytes.chunks(chunk.max(1)) {
                if cw.write_all(part).await.is_err() {
                    break; // the relay has closed the connection
                }
                tokio::task::yield_now().await;
            }
            let _ = cw.shutdown().await;
            let ended = tokio::time::timeout(Duration::from_secs(10), session).await;
            let Ok(joined) = ended else {
                panic!("the session did not end within 10 s of EOF");
            };
            if let Err(e) = joined {
                std::panic::resume_unwind(e.into_panic());
            }
            drop(cw);
            match tokio::time::timeout(Duration::from_secs(10), reader).await {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
                Err(_) => panic!("the relay's stream did not end"),
            }
        })
    });
    assert!((out.len() as u64) < OUTPUT_LIMIT, "runaway output");
    check_output(&out, mode);
    let subs = crate::metrics::Metrics::get(&relay.metrics.subscriptions);
    assert_eq!(subs, 0, "subscriptions left behind after the session");
    assert!(relay.hub.channel_count() <= 6, "channel limit");
    assert_eq!(Arc::strong_count(&relay), 1, "a task still holds the relay");
}

// ---------------------------------------------------------------------------------------
// tokens

/// The secret the `token` target verifies with.
pub const TOKEN_SECRET: &str = "fuzz-jwt-secret-of-a-decent-length";

/// Arbitrary bytes as a JWT, and as claims signed and then tampered with. Never panics;
/// a verdict is deterministic; a validly signed, unexpired token is accepted with its
/// own `sub`; changing any byte of its signed part gets it refused.
pub fn token(data: &[u8]) {
    let config = Config {
        jwt_secret: Some(TOKEN_SECRET.into()),
        ..Config::default()
    };
    let verifier = match crate::auth::Verifier::new(&config.jwt_settings()) {
        Ok(Some(v)) => v,
        other => panic!("the fuzz key must load: {other:?}"),
    };
    // 1. Whatever arrives as a token.
    if let Ok(text) = std::str::from_utf8(data) {
        let first = verifier.verify(text).map(|c| c.sub.clone());
        let again = verifier.verify(text).map(|c| c.sub.clone());
        assert_eq!(first, again, "verdicts differ for {text:?}");
    }
    // 2. A token we sign ourselves over a `sub` taken from the input.
    let Some((&pos, rest)) = data.split_first() else {
        return;
    };
    let sub = String::from_utf8_lossy(rest).into_owned();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let claims = serde_json_lite(&sub, exp);
    let good = match jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()),
    ) {
        Ok(t) => t,
        Err(e) => panic!("signing failed: {e}"),
    };
    match verifier.verify(&good) {
        Ok(c) => assert_eq!(c.sub.as_deref(), Some(sub.as_str())),
        Err(e) => panic!("a valid token was refused ({e}): {good}"),
    }
    // Change one character of the payload segment (never its last, whose spare bits a
    // lenient base64 decoder may ignore): the signature no longer matches.
    let dots: Vec<usize> = good.match_indices('.').map(|(i, _)| i).collect();
    let (start, end) = (dots[0] + 1, dots[1]);
    if end - start < 2 {
        return;
    }
    let at = start + (pos as usize % (end - start - 1));
    let mut bad = good.clone().into_bytes();
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap_or_default();
    assert!(
        verifier.verify(&bad).is_err(),
        "a tampered token was accepted: {bad}"
    );
}

/// The claims of the `token` target as a serializable map.
fn serde_json_lite(sub: &str, exp: u64) -> std::collections::BTreeMap<&'static str, TokenClaim> {
    let mut m = std::collections::BTreeMap::new();
    m.insert("sub", TokenClaim::Text(sub.to_owned()));
    m.insert("exp", TokenClaim::Number(exp));
    m
}

/// One claim value.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum TokenClaim {
    Text(String),
    Number(u64),
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

    #[test]
    fn each_target_runs_on_a_sample() {
        command(br#"{"op":"subscribe","channels":["a","b"],"id":"x"}"#);
        publish(b"\x0f{\"channel\":\"a\",\"data\":{\"p\":1}}\n");
        frame_encode(&[0x42; 40]);
        let mut input = vec![0u8, 0];
        input.extend(masked(br#"{"op":"ping","id":1}"#));
        read_path(&input);
        token(b"\x07user-42");
    }

    /// Replays the committed seeds (and any `fuzz/artifacts/`) on stable:
    /// `RUSTFLAGS="--cfg fuzzing" cargo test --lib fuzzing`.
    #[test]
    fn the_committed_corpus_replays() {
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 6] = [
            ("token", token),
            ("command", command),
            ("publish", publish),
            ("read_path", read_path),
            ("upgrade", upgrade),
            ("frame_encode", frame_encode),
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        for (name, run) in targets {
            let mut seen = 0;
            for dir in ["corpus", "artifacts"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for e in entries {
                    let path = e.unwrap().path();
                    eprintln!("{}", path.display());
                    run(&std::fs::read(&path).unwrap());
                    seen += 1;
                }
            }
            assert!(seen > 0, "no seeds for {name}");
        }
    }

    fn masked(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        f.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        f
    }
}
