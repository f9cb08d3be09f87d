//! The `centrifuge` target: client frames of the Centrifuge protocol through its command
//! parser, line by line as the session reads them, and back.

use crate::protocol::centrifuge::command::parse_line;
use crate::protocol::centrifuge::{publication_in, push_frame};
use crate::protocol::command::{validate_json, Command, Request};
use crate::protocol::format::Message;
use crate::protocol::json;

/// Re-encodes a parsed command as the JSON a Centrifuge client would send.
fn encode_request(r: &Request<'_>) -> Vec<u8> {
    let mut out = b"{".to_vec();
    if let Some(id) = &r.id {
        out.extend_from_slice(br#""id":"#);
        out.extend_from_slice(id.as_json());
        out.push(b',');
    }
    let channel = |out: &mut Vec<u8>, method: &str, c: &str| {
        out.extend_from_slice(format!(r#""{method}":{{"channel":"#).as_bytes());
        json::push_str(out, c);
    };
    match &r.command {
        Command::Connect { token } => {
            out.extend_from_slice(br#""connect":{"#);
            if let Some(t) = token {
                out.extend_from_slice(br#""token":"#);
                json::push_str(&mut out, t);
            }
        }
        Command::Join {
            channel: c,
            recover,
            strict,
        } => {
            channel(&mut out, "subscribe", c);
            out.extend_from_slice(if *strict {
                br#","flag":3"#
            } else {
                br#","flag":1"#
            });
            if let Some(from) = recover {
                out.extend_from_slice(br#","recover":true,"epoch":"#);
                json::push_str(&mut out, from.epoch);
                out.extend_from_slice(br#","offset":"#);
                json::push_u64(&mut out, from.offset);
            }
        }
        Command::Unsubscribe { channels } => {
            assert_eq!(
                channels.len(),
                1,
                "a Centrifuge unsubscribe names one channel"
            );
            channel(&mut out, "unsubscribe", channels[0]);
        }
        Command::Publish { channel: c, data } => {
            channel(&mut out, "publish", c);
            out.extend_from_slice(br#","data":"#);
            out.extend_from_slice(data);
        }
        Command::History {
            channel: c,
            since,
            limit,
            reverse,
        } => {
            channel(&mut out, "history", c);
            out.extend_from_slice(br#","limit":"#);
            match limit {
                Some(n) => json::push_u64(&mut out, *n as u64),
                None => out.extend_from_slice(b"-1"),
            }
            if let Some(s) = since {
                out.extend_from_slice(br#","since":{"offset":"#);
                json::push_u64(&mut out, s.offset);
                out.extend_from_slice(br#","epoch":"#);
                json::push_str(&mut out, s.epoch);
                out.push(b'}');
            }
            if *reverse {
                out.extend_from_slice(br#","reverse":true"#);
            }
        }
        Command::Auth { token } => {
            out.extend_from_slice(br#""refresh":{"token":"#);
            json::push_str(&mut out, token);
        }
        Command::Ping => out.extend_from_slice(br#""ping":{"#),
        other @ Command::Subscribe { .. } => {
            panic!("a v1 command from the Centrifuge parser: {other:?}")
        }
    }
    out.extend_from_slice(b"}}");
    out
}

/// Arbitrary bytes as a Centrifuge client frame, split into lines as the session does.
/// Never panics; whatever parses was valid JSON; published data is a JSON value whose
/// push is one valid line carrying it; re-encoding a command parses to the same command.
pub fn centrifuge(data: &[u8]) {
    for line in data.split(|b| *b == b'\n') {
        let mut again; // declared first: it must outlive the first parse's borrow
        let mut buf = line.to_vec(); // simd-json rewrites its input
        let Ok(Some(req)) = parse_line(&mut buf) else {
            continue;
        };
        assert!(
            validate_json(&mut line.to_vec()),
            "a command was accepted from invalid JSON"
        );
        if let Command::Publish { channel, data: d } = &req.command {
            assert!(
                validate_json(&mut d.to_vec()),
                "data is not a JSON value: {d:?}"
            );
            let m = Message {
                channel,
                epoch: "abcd1234",
                offset: 1,
                ts: 0,
                data: d,
            };
            let push = push_frame(&m);
            let head = super::oracle_head(&push).expect("a whole frame");
            let payload = &push[head.5..];
            assert!(!payload.contains(&b'\n'), "a push is one line");
            assert!(validate_json(&mut payload.to_vec()), "a push is JSON");
            let publication = publication_in(&push).expect("the publication inside the push");
            assert!(validate_json(&mut publication.to_vec()));
        }
        again = encode_request(&req);
        let text = String::from_utf8_lossy(&again).into_owned();
        match parse_line(&mut again) {
            Ok(Some(back)) => assert_eq!(back, req, "round trip through {text}"),
            other => panic!("re-encoded command {text} does not parse: {other:?}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_sample() {
        centrifuge(b"{\"id\":1,\"connect\":{\"token\":\"t\"}}\n{\"id\":2,\"subscribe\":{\"channel\":\"a\",\"recover\":true,\"offset\":3,\"epoch\":\"e\",\"flag\":3}}\n{}");
        centrifuge(br#"{"id":3,"publish":{"channel":"a","data":{"x":[1, 2]}}}"#);
        centrifuge(br#"{"id":4,"history":{"channel":"a","limit":-1,"since":{"offset":2,"epoch":"e"},"reverse":true}}"#);
    }
}
