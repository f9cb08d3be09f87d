//! ARIA PRO (`/ws` of a seed listener): every client gets everything, no subscription
//! needed; frames `{"type":T,"timestamp":iso,"data":DATA}`.
//!
//! ```json
//! {"type":"ping"}                                → {"type":"pong","timestamp":..}
//! {"type":"subscribe","channels":["tick:EURUSD"]} → {"type":"subscription_confirmed","channels":[..sorted]}
//! {"type":"unsubscribe","channels":["signal"]}   → {"type":"subscription_updated","channels":[..sorted]}
//! {"type":"whoami"}                              → {"type":"identity","client_id":N,"subscriptions":[..],"server_time":..}
//! {"type":"echo","payload":P}                    → {"type":"echo","payload":P,"server_time":..}
//! ```
//! ARIA channel names map onto namespaces: `tick` → `ticker`, `bar` → `bars`, `signal` →
//! `signals`, `order_update` → `order_updates`, `idea` → `ideas`, `prepared_payload` →
//! `prepared_payloads`; `tick:EURUSD` is the channel `ticker:EURUSD`, a bare `tick` the
//! whole namespace (`ticker:*`), and `all` (the default) every one of them.

use bytes::Bytes;
use simd_json::prelude::*;
use std::collections::BTreeSet;

use super::{push_iso_str, text_frame, Owned};
use crate::protocol::channel;
use crate::protocol::format::Message;
use crate::protocol::json;

/// ARIA message types and the namespaces they are published on.
pub const TYPES: [(&str, &str); 6] = [
    ("tick", "ticker"),
    ("bar", "bars"),
    ("signal", "signals"),
    ("order_update", "order_updates"),
    ("idea", "ideas"),
    ("prepared_payload", "prepared_payloads"),
];

/// The frame `type` of a channel's messages (a namespace not in [`TYPES`]: its name).
pub fn type_of(channel: &str) -> &str {
    let ns = super::namespace(channel);
    TYPES.iter().find(|(_, n)| *n == ns).map_or(ns, |(t, _)| t)
}

/// The frame of one channel message (*wrap*).
pub fn message_frame(m: &Message<'_>) -> Bytes {
    text_frame(64 + m.data.len(), |p| {
        p.extend_from_slice(br#"{"type":"#);
        json::push_str(p, type_of(m.channel));
        p.extend_from_slice(br#","timestamp":"#);
        push_iso_str(p, m.ts);
        p.extend_from_slice(br#","data":"#);
        p.extend_from_slice(m.data);
        p.push(b'}');
    })
}

/// The relay channels (or `<ns>:*` namespaces) an ARIA channel name stands for; `None`
/// for a name ARIA does not have.
pub fn channels_of(aria: &str) -> Option<Vec<String>> {
    if aria == "all" {
        return Some(TYPES.iter().map(|(_, ns)| format!("{ns}:*")).collect());
    }
    let (t, sym) = match aria.split_once(':') {
        Some((t, s)) => (t, Some(s)),
        None => (aria, None),
    };
    let (_, ns) = TYPES.iter().find(|(name, _)| *name == t)?;
    let name = match sym {
        None => return Some(vec![format!("{ns}:*")]),
        Some(s) => format!("{ns}:{s}"),
    };
    channel::validate(name.as_bytes()).ok()?;
    Some(vec![name])
}

fn push_names(p: &mut Vec<u8>, names: &BTreeSet<String>) {
    p.push(b'[');
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            p.push(b',');
        }
        json::push_str(p, n);
    }
    p.push(b']');
}

/// The first frame.
pub fn welcome(client_id: u64) -> Bytes {
    text_frame(128, |p| {
        p.extend_from_slice(
            br#"{"type":"connection","message":"Connected to ARIA trading system","client_id":"#,
        );
        json::push_u64(p, client_id);
        p.extend_from_slice(br#","subscriptions":["all"]}"#);
    })
}

/// `subscription_confirmed` (after a subscribe) or `subscription_updated`.
pub fn subscriptions(kind: &str, names: &BTreeSet<String>) -> Bytes {
    text_frame(64, |p| {
        p.extend_from_slice(br#"{"type":"#);
        json::push_str(p, kind);
        p.extend_from_slice(br#","channels":"#);
        push_names(p, names);
        p.push(b'}');
    })
}

/// `{"type":T,"timestamp":now}` (`pong`, and the `ping` ARIA's server sends).
pub fn stamped(kind: &str, now_ms: u64) -> Bytes {
    text_frame(64, |p| {
        p.extend_from_slice(br#"{"type":"#);
        json::push_str(p, kind);
        p.extend_from_slice(br#","timestamp":"#);
        push_iso_str(p, now_ms);
        p.push(b'}');
    })
}

/// `{"type":"error","message":..,"timestamp":now}`.
pub fn error(message: &str, now_ms: u64) -> Bytes {
    text_frame(64 + message.len(), |p| {
        p.extend_from_slice(br#"{"type":"error","message":"#);
        json::push_str(p, message);
        p.extend_from_slice(br#","timestamp":"#);
        push_iso_str(p, now_ms);
        p.push(b'}');
    })
}

/// One connection's ARIA subscriptions (the names it asked for, as ARIA spells them).
#[derive(Debug, Clone)]
pub struct State {
    /// The connection id, told as `client_id`.
    pub client_id: u64,
    /// Effective ARIA channel names (`all` at first).
    pub names: BTreeSet<String>,
}

impl Default for State {
    fn default() -> Self {
        State {
            client_id: 0,
            names: BTreeSet::from(["all".to_string()]),
        }
    }
}

/// Reads one client message (`buf` is simd-json scratch afterwards), updating the
/// connection's ARIA names.
pub fn parse(buf: &mut [u8], st: &mut State, now_ms: u64) -> Owned {
    let payload = json::top_level_span(buf, b"payload")
        .ok()
        .flatten()
        .map(|r| buf[r].to_vec());
    let Some(tape) = super::tape(buf) else {
        return Owned::Reply(error("invalid JSON", now_ms));
    };
    let root = tape.as_value();
    let Some(obj) = root.as_object() else {
        return Owned::Reply(error("a message must be a JSON object", now_ms));
    };
    let kind = obj.get("type").and_then(|v| v.into_string()).unwrap_or("");
    let names = || -> Option<Vec<String>> {
        let arr = obj.get("channels")?;
        let arr = arr.as_array()?;
        arr.iter().map(|v| v.as_str().map(str::to_owned)).collect()
    };
    match kind {
        "ping" => Owned::Ping,
        "pong" => Owned::Ignore,
        "subscribe" | "unsubscribe" => {
            let Some(asked) = names() else {
                return Owned::Reply(error("channels must be an array of names", now_ms));
            };
            let mut channels = Vec::new();
            for a in &asked {
                match channels_of(a) {
                    Some(c) => channels.extend(c),
                    None => return Owned::Reply(error(&format!("unknown channel: {a}"), now_ms)),
                }
            }
            if kind == "subscribe" {
                st.names.extend(asked);
                Owned::Subscribe {
                    channels,
                    max_rate: None,
                }
            } else {
                for a in &asked {
                    st.names.remove(a);
                }
                Owned::Unsubscribe { channels }
            }
        }
        "whoami" => Owned::Reply(text_frame(128, |p| {
            p.extend_from_slice(br#"{"type":"identity","client_id":"#);
            json::push_u64(p, st.client_id);
            p.extend_from_slice(br#","subscriptions":"#);
            push_names(p, &st.names);
            p.extend_from_slice(br#","server_time":"#);
            push_iso_str(p, now_ms);
            p.push(b'}');
        })),
        "echo" => Owned::Reply(text_frame(64, |p| {
            p.extend_from_slice(br#"{"type":"echo","payload":"#);
            p.extend_from_slice(payload.as_deref().unwrap_or(b"null"));
            p.extend_from_slice(br#","server_time":"#);
            push_iso_str(p, now_ms);
            p.push(b'}');
        })),
        other => Owned::Reply(error(&format!("unknown message type: {other}"), now_ms)),
    }
}
