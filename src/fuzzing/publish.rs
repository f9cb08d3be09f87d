//! The `publish` target: HTTP publish bodies and channel names.

use bytes::Bytes;

use super::oracle_channel_ok;
use crate::protocol::command;
use crate::protocol::{channel, encode, json, publish as body};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_sample() {
        publish(b"\x0f{\"channel\":\"a\",\"data\":{\"p\":1}}\n");
    }
}
