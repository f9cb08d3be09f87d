//! The `read_path` target: a whole session over an in-memory duplex.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{oracle_head, Input};
use crate::config::Config;
use crate::dialect::{Echo, V1};
use crate::protocol::command;
use crate::protocol::format::Format;
use crate::relay::Relay;
use crate::session::{self, Params};

/// Which dialect the session under test speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Protocol v1.
    Relay,
    /// `--echo`.
    Echo,
}

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
    let format = if flags & 32 != 0 {
        Format::RAW
    } else {
        Format::ENVELOPE
    };
    let params = Params {
        identity: crate::auth::Identity {
            publisher: flags & 64 != 0,
            relay: false,
            claims: None,
        },
        channels: if flags & 128 != 0 {
            vec!["ticker:BTC-USD".into(), "a".into()]
        } else {
            Vec::new()
        },
        peer: ([127, 0, 0, 1], 9).into(),
        deflate: Default::default(),
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
            let session = match mode {
                Mode::Echo => tokio::spawn(session::run(sr, sw, relay.clone(), Echo, params)),
                Mode::Relay => {
                    let v1 = V1::new(format);
                    tokio::spawn(session::run(sr, sw, relay.clone(), v1, params))
                }
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_sample() {
        let mut input = vec![0u8, 0];
        input.extend(masked(br#"{"op":"ping","id":1}"#));
        read_path(&input);
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
