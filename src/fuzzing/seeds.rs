//! The `seeds` target: client frames of the seed platforms' protocols (ARIA PRO,
//! AI-Trading-V2, Legend AI, Sentio 2.0's five endpoints) through their command parsers, and published data through
//! their frame templates.

use crate::protocol::format::{Format, Message};
use crate::protocol::seeds::{aitrading, aria, legend, sentio, Owned};

/// Whether `payload` is one JSON document (simd-json, on a copy).
fn oracle_json(payload: &[u8]) -> bool {
    let mut copy = payload.to_vec();
    simd_json::to_tape(&mut copy).is_ok()
}

/// The payload of a complete text frame, checked with the shared header oracle.
fn text_payload(frame: &[u8]) -> &[u8] {
    let (fin, rsv, opcode, masked, len, n) = super::oracle_head(frame).expect("a whole header");
    assert!(
        fin && rsv == 0 && opcode == 1 && !masked,
        "an unmasked FIN text frame"
    );
    assert_eq!(
        frame.len() as u64,
        n as u64 + len,
        "the frame is exactly its length"
    );
    &frame[n..]
}

fn check(o: &Owned) {
    let names_ok = |names: &[String]| {
        for c in names {
            let plain = c.strip_suffix(":*").unwrap_or(c);
            assert!(super::oracle_channel_ok(plain.as_bytes()), "channel {c:?}");
        }
    };
    match o {
        Owned::Subscribe { channels, max_rate } => {
            names_ok(channels);
            assert!(max_rate.is_none_or(|r| (1..=1000).contains(&r)));
        }
        Owned::Unsubscribe { channels } => names_ok(channels),
        Owned::Join { channel } | Owned::Last { channel, .. } => {
            names_ok(std::slice::from_ref(channel))
        }
        Owned::Reply(frame) => {
            let p = text_payload(frame);
            assert!(
                oracle_json(p),
                "a reply is JSON: {:?}",
                String::from_utf8_lossy(p)
            );
        }
        Owned::Trust { sub } => assert!(super::oracle_channel_ok(format!("u:{sub}").as_bytes())),
        Owned::Many(all) => all.iter().for_each(check),
        Owned::Ping | Owned::Ignore => {}
    }
    if let Owned::Last {
        empty: Some(frame), ..
    } = o
    {
        assert!(oracle_json(text_payload(frame)));
    }
}

/// Input: one byte choosing the platform (`% 8`: ARIA, AI-Trading, Legend, then the
/// five Sentio endpoints; for Sentio, bit 7 trusts named user ids and bit 6 skips the
/// first frame), then a client frame. Never panics; every
/// channel a parser makes is valid (or a whole namespace, `<ns>:*`); every reply is
/// one JSON text frame. If the frame is itself valid JSON, it is also published: each
/// platform's channel message of it is one JSON text frame holding it verbatim (whole,
/// or its members after the relay's fields).
pub fn seeds(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut buf = rest.to_vec();
    let now = 1_700_000_000_000;
    let o = match which % 8 {
        0 => aria::parse(&mut buf, &mut aria::State::default(), now),
        1 => aitrading::parse(&mut buf, now),
        2 => legend::parse(&mut buf, now),
        n => {
            use sentio::Endpoint::*;
            let endpoint =
                [TradeSignals, Earnings, Notifications, Admin, MarketData][n as usize - 3];
            let mut st = sentio::State {
                endpoint,
                settings: sentio::Settings {
                    trust_user_id: which & 0x80 != 0,
                    admin_token: Some("admin-token".into()),
                },
                token_sub: Some("u1".into()),
                token_admin: false,
                identified: which & 0x40 != 0,
                symbols: Default::default(),
            };
            match sentio::parse(&mut buf, &mut st, now) {
                sentio::Parsed::Run(o) => o,
                sentio::Parsed::Close(reason) => {
                    assert!(reason.len() <= 123, "a close reason fits its frame");
                    return;
                }
            }
        }
    };
    check(&o);
    if !oracle_json(rest) {
        return;
    }
    for channel in [
        "ticker:A",
        "positions",
        "patterns",
        "signals:S",
        "admin:users",
    ] {
        let m = Message {
            channel,
            epoch: "e",
            offset: 1,
            ts: u64::from(which) << 33,
            data: rest,
        };
        for f in [
            Format::ARIA,
            Format::SENTIO,
            Format::AITRADING,
            Format::LEGEND,
        ] {
            let frame = f.message(&m);
            let p = text_payload(&frame);
            assert!(
                oracle_json(p),
                "{f:?} {channel}: {}",
                String::from_utf8_lossy(p)
            );
            let start = rest
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(0);
            let tail = match rest[start] {
                b'{' => &rest[start + 1..],
                _ => rest,
            };
            let has = p.windows(tail.len().max(1)).any(|w| w == tail) || tail.is_empty();
            assert!(has, "{f:?} {channel}: the data verbatim");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::seeds;

    #[test]
    fn seeds_of_each_platform() {
        seeds(b"\x00{\"type\":\"subscribe\",\"channels\":[\"all\",\"tick:EURUSD\"]}");
        seeds(b"\x01{\"action\":\"subscribe_ticker\",\"symbol\":\"BTC\"}");
        seeds(b"\x02{\"type\":\"subscribe\",\"channel\":\"ticker\",\"ticker\":\"aapl\"}");
        seeds(b"\x02 {\n \"type\" : \"ping\" }");
        seeds(b"\x01[1,2]");
        seeds(b"\x00\"x\"");
        seeds(b"\x02{}");
        seeds(b"\x04{\"action\":\"subscribe\",\"user_id\":\"u1\"}");
        seeds(b"\x83{\"action\":\"subscribe\",\"symbols\":[\"a\"]}");
        seeds(b"\x46{\"action\":\"ping\"}");
    }
}
