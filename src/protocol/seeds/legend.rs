//! Legend AI (`/api/ws`): typed frames with ISO timestamps, a history frame after a
//! ticker subscribe, and HTTP broadcast endpoints.
//!
//! ```json
//! {"type":"subscribe","channel":"ticker","ticker":"AAPL"} → {"type":"subscription","action":"subscribed","ticker":"AAPL","timestamp":..}
//!                                                           {"type":"history","ticker":"AAPL","messages":[<≤10 price_update>],"timestamp":..}
//! {"type":"subscribe","channel":"patterns"}               → {"type":"subscription","action":"subscribed","channel":"patterns","timestamp":..}
//! {"type":"unsubscribe",...}                              → … "action":"unsubscribed" …
//! {"type":"ping"}                                         → {"type":"pong","timestamp":..}
//! ```
//! Channel messages (*splice*): `ticker:<T>` →
//! `{"type":"price_update","ticker":T,"timestamp":iso,<the data's members>}`; `patterns`
//! → `pattern_alert`, `alerts` → `alert_trigger`, `market_status` → `market_status`,
//! each `{"type":..,"timestamp":iso,<the data's members>}` (any other namespace: its
//! name as the type).

use bytes::Bytes;
use simd_json::prelude::*;

use super::{push_iso_str, push_spliced, suffix, text_frame, upper, Owned};
use crate::protocol::channel;
use crate::protocol::format::Message;
use crate::protocol::json;

/// Price updates replayed in the history frame after a ticker subscribe.
pub const HISTORY: usize = 10;
/// The platform's per-connection cap, as `max_rate` on conflate subscriptions.
pub const MAX_RATE: u32 = 10;
/// The channels a client may name besides `ticker`.
pub const CHANNELS: [&str; 3] = ["patterns", "alerts", "market_status"];

/// The frame `type` of a channel's messages.
pub fn type_of(channel: &str) -> &str {
    match super::namespace(channel) {
        "ticker" => "price_update",
        "patterns" => "pattern_alert",
        "alerts" => "alert_trigger",
        ns => ns,
    }
}

/// Appends one channel message's JSON.
pub fn push_message(p: &mut Vec<u8>, m: &Message<'_>) {
    p.extend_from_slice(br#"{"type":"#);
    json::push_str(p, type_of(m.channel));
    if super::namespace(m.channel) == "ticker" {
        p.extend_from_slice(br#","ticker":"#);
        json::push_str(p, suffix(m.channel));
    }
    p.extend_from_slice(br#","timestamp":"#);
    push_iso_str(p, m.ts);
    push_spliced(p, m.data, "data");
}

/// The frame of one channel message.
pub fn message_frame(m: &Message<'_>) -> Bytes {
    text_frame(96 + m.channel.len() + m.data.len(), |p| push_message(p, m))
}

fn with_now(hint: usize, now_ms: u64, fill: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    text_frame(hint + 40, |p| {
        fill(p);
        p.extend_from_slice(br#","timestamp":"#);
        push_iso_str(p, now_ms);
        p.push(b'}');
    })
}

/// `{"type":"connection","status":"connected","connection_id":C,"timestamp":..}`.
pub fn welcome(connection_id: &str, now_ms: u64) -> Bytes {
    with_now(64 + connection_id.len(), now_ms, |p| {
        p.extend_from_slice(br#"{"type":"connection","status":"connected","connection_id":"#);
        json::push_str(p, connection_id);
    })
}

/// The ack of a subscribe or unsubscribe of `channel` (`ticker:<T>` names its ticker).
pub fn subscription(channel: &str, subscribed: bool, now_ms: u64) -> Bytes {
    with_now(96 + channel.len(), now_ms, |p| {
        p.extend_from_slice(br#"{"type":"subscription","action":"#);
        p.extend_from_slice(match subscribed {
            true => br#""subscribed""#.as_slice(),
            false => br#""unsubscribed""#.as_slice(),
        });
        match channel.strip_prefix("ticker:") {
            Some(t) => {
                p.extend_from_slice(br#","ticker":"#);
                json::push_str(p, t);
            }
            None => {
                p.extend_from_slice(br#","channel":"#);
                json::push_str(p, channel);
            }
        }
    })
}

/// `{"type":"history","ticker":T,"messages":[..],"timestamp":..}`: `frames` are this
/// format's message frames, oldest first.
pub fn history(ticker: &str, frames: &[Bytes], now_ms: u64) -> Bytes {
    let size: usize = frames.iter().map(|f| f.len()).sum();
    with_now(64 + size + ticker.len(), now_ms, |p| {
        p.extend_from_slice(br#"{"type":"history","ticker":"#);
        json::push_str(p, ticker);
        p.extend_from_slice(br#","messages":["#);
        for (i, f) in frames.iter().enumerate() {
            if i > 0 {
                p.push(b',');
            }
            p.extend_from_slice(super::payload_of(f).unwrap_or(b"null"));
        }
        p.push(b']');
    })
}

/// `{"type":"pong","timestamp":..}`.
pub fn pong(now_ms: u64) -> Bytes {
    with_now(16, now_ms, |p| p.extend_from_slice(br#"{"type":"pong""#))
}

/// `{"type":"error","message":..,"timestamp":..}`.
pub fn error(message: &str, now_ms: u64) -> Bytes {
    with_now(32 + message.len(), now_ms, |p| {
        p.extend_from_slice(br#"{"type":"error","message":"#);
        json::push_str(p, message);
    })
}

/// Reads one client message (`buf` is simd-json scratch afterwards).
pub fn parse(buf: &mut [u8], now_ms: u64) -> Owned {
    let err = |m: &str| Owned::Reply(error(m, now_ms));
    let Some(tape) = super::tape(buf) else {
        return err("Invalid JSON");
    };
    let root = tape.as_value();
    let Some(obj) = root.as_object() else {
        return err("Invalid JSON");
    };
    let field = |k: &str| obj.get(k).and_then(|v| v.into_string());
    let kind = field("type");
    let sub = match kind {
        Some("ping") => return Owned::Ping,
        Some("pong") => return Owned::Ignore,
        Some("subscribe") => true,
        Some("unsubscribe") => false,
        Some(other) => return err(&format!("Unknown message type: {other}")),
        None => return err("Unknown message type: None"),
    };
    let name = match field("channel") {
        Some("ticker") => match field("ticker").filter(|t| !t.is_empty()) {
            None => return err("Ticker symbol required for ticker channel"),
            Some(t) => format!("ticker:{}", upper(t)),
        },
        Some(c) if CHANNELS.contains(&c) => c.to_owned(),
        Some(c) => return err(&format!("Unknown channel: {c}")),
        None => return err("Unknown channel: None"),
    };
    if channel::validate(name.as_bytes()).is_err() {
        return err("Invalid ticker symbol");
    }
    match (sub, name.starts_with("ticker:")) {
        (true, true) => Owned::Join { channel: name },
        (true, false) => Owned::Subscribe {
            max_rate: (name == "market_status").then_some(MAX_RATE),
            channels: vec![name],
        },
        (false, _) => Owned::Unsubscribe {
            channels: vec![name],
        },
    }
}
