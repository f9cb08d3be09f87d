//! The `command` target: client command frames through the parser, and back.

use crate::protocol::command::{self, Command, Request};
use crate::protocol::json;

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
        // Dialect commands: the v1 parser never makes them.
        other @ (Command::Connect { .. } | Command::Join { .. } | Command::History { .. }) => {
            panic!("the v1 parser made a dialect command: {other:?}")
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_sample() {
        command(br#"{"op":"subscribe","channels":["a","b"],"id":"x"}"#);
    }
}
