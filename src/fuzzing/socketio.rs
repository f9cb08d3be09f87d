//! The `socketio` target: a long-polling POST body (Engine.IO packets joined by `\x1e`)
//! through the packet parsers and the dialect as the session reads it, and a Socket.IO
//! message frame built from any accepted JSON.

use crate::dialect::{Dialect, Inbound, SocketIo};
use crate::protocol::command::validate_json;
use crate::protocol::format::Message;
use crate::protocol::socketio::{self as sio, crs, Eio, Kind};

/// Writes a parsed packet back the way the relay's encoder would (types 0..=4).
fn encode(kind: Kind, nsp: &str, ack: Option<u64>, data: &[u8]) -> Vec<u8> {
    let digit = match kind {
        Kind::Connect => b'0',
        Kind::Disconnect => b'1',
        Kind::Event => b'2',
        Kind::Ack => b'3',
        _ => b'4',
    };
    let mut out = vec![digit];
    // An explicit `/,` keeps data that starts with `/` from reading as a namespace.
    if nsp != "/" || data.first() == Some(&b'/') {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(n) = ack {
        out.extend_from_slice(n.to_string().as_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Any bytes as a polling body: no panic; every Socket.IO packet that parses parses the
/// same after re-encoding; a subscribe names only valid ticker channels; the dialect
/// reads every packet without panicking, before and after CONNECT.
pub fn socketio(data: &[u8]) {
    let mut body = data.to_vec();
    let mut dialect = SocketIo::new("fuzz".into(), true, 64 * 1024, 16);
    let _ = dialect.inbound(true, &mut b"40".to_vec());
    let _ = dialect.connected(None, None, None);
    for packet in body.split_mut(|b| *b == sio::SEPARATOR) {
        let mut copy = packet.to_vec();
        if let Ok(Eio::Message(m)) = sio::parse_eio(&mut copy) {
            check_packet(m);
        }
        match dialect.inbound(true, packet) {
            Inbound::Channels { channels, .. } => {
                assert!(!channels.is_empty() && channels.len() <= 16);
                for c in &channels {
                    assert!(super::oracle_channel_ok(c.as_bytes()), "{c:?}");
                    assert!(
                        crs::channels().symbol(c).is_some(),
                        "{c:?} is a ticker channel"
                    );
                }
            }
            Inbound::Fail(_) | Inbound::Ignore | Inbound::Reply(_) => {}
            Inbound::Request(_) | Inbound::Invalid(_) => {}
            Inbound::Owned(_) => panic!("Socket.IO makes no seed-platform command"),
        }
    }
    let mut json = data.to_vec();
    if validate_json(&mut json) {
        let m = Message {
            channel: "ticker:BTC",
            epoch: "e",
            offset: 1,
            ts: 0,
            data,
        };
        let mut out = Vec::new();
        sio::payloads_of(&crs::message_frame(&m), &mut out);
        assert_eq!(out.len(), 1, "one packet");
        let mut event = out[0].strip_prefix(b"42").expect("an event").to_vec();
        assert!(validate_json(&mut event), "the event is JSON");
        assert!(
            !out[0].contains(&sio::SEPARATOR),
            "no separator inside a packet"
        );
    }
}

fn check_packet(m: &mut [u8]) {
    let mut copy = m.to_vec();
    let Ok(p) = sio::parse_packet(&mut copy) else {
        return;
    };
    if matches!(p.kind, Kind::BinaryEvent | Kind::BinaryAck) {
        return;
    }
    let (kind, nsp, ack, data) = (p.kind, p.nsp.to_owned(), p.ack, p.data.to_vec());
    let mut again = encode(kind, &nsp, ack, &data);
    let q = sio::parse_packet(&mut again).expect("a re-encoded packet parses");
    assert_eq!(
        (q.kind, q.nsp, q.ack, &q.data[..]),
        (kind, &nsp[..], ack, &data[..])
    );
    if kind == Kind::Event {
        let mut d = data.clone();
        if let Ok(crs::Event::Subscribe(c) | crs::Event::Unsubscribe(c)) =
            crs::parse_event(&mut d, 16)
        {
            assert!(c.iter().all(|c| super::oracle_channel_ok(c.as_bytes())));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_inputs_hold() {
        for input in [
            &b"40\x1e42[\"subscribe\",{\"symbols\":[\"BTC\"]}]\x1e3"[..],
            b"2/,/x",
            b"0/admin",
            b"451-[\"x\"]",
            b"42[\"subscribe\",[\"\"]]",
            b"{\"a\":1}",
            b"",
        ] {
            super::socketio(input);
        }
    }
}
