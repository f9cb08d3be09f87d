//! AI-Trading-V2 (`/api/ws/realtime`): flat frames, upper-case types, integer-ms
//! timestamps.
//!
//! ```json
//! {"action":"subscribe_ticker","symbol":"BTCUSDT"}      → {"type":"subscription","status":"success","symbol":"BTCUSDT","message":"Subscribed to BTCUSDT"}
//! {"action":"unsubscribe_ticker","symbol":"BTCUSDT"}    → … "message":"Unsubscribed from BTCUSDT"
//! {"action":"get_positions"} / {"action":"get_portfolio"} → the channel's last value
//! ```
//! Channel messages (*splice*: the relay's fields, then the data's members):
//! - `ticker:<S>`: `{"type":"MARKET_UPDATE","symbol":S,"timestamp":ts,<members>}`;
//! - `positions`: `{"type":"POSITION_UPDATE","positions":DATA,"timestamp":ts}` (an
//!   object is spliced instead);
//! - `portfolio`: `{"type":"PORTFOLIO_UPDATE","portfolio":DATA,"timestamp":ts}`;
//! - `order_updates`: `{"type":"ORDER_UPDATE","timestamp":ts,<members>}`;
//! - any other namespace: `{"type":"<NS>_UPDATE","timestamp":ts,<members>}`.

use bytes::Bytes;
use simd_json::prelude::*;

use super::{push_spliced, suffix, text_frame, Owned};
use crate::protocol::channel;
use crate::protocol::format::Message;
use crate::protocol::json;

/// Channels every connection is subscribed to at the upgrade (the platform pushes
/// positions, portfolio and order updates to everyone: single-user paper trading).
pub const CONNECT_CHANNELS: [&str; 3] = ["positions", "portfolio", "order_updates"];

/// The frame of one channel message.
pub fn message_frame(m: &Message<'_>) -> Bytes {
    let ns = super::namespace(m.channel);
    text_frame(64 + m.channel.len() + m.data.len(), |p| {
        let ts = |p: &mut Vec<u8>| {
            p.extend_from_slice(br#""timestamp":"#);
            json::push_u64(p, m.ts);
        };
        match ns {
            "positions" | "portfolio" => {
                let (t, key) = match ns {
                    "positions" => ("POSITION_UPDATE", "positions"),
                    _ => ("PORTFOLIO_UPDATE", "portfolio"),
                };
                p.extend_from_slice(br#"{"type":""#);
                p.extend_from_slice(t.as_bytes());
                p.extend_from_slice(b"\",");
                if ns == "positions" && super::object_rest(m.data).is_some() {
                    ts(p);
                    push_spliced(p, m.data, key);
                } else {
                    json::push_str(p, key);
                    p.push(b':');
                    p.extend_from_slice(m.data);
                    p.push(b',');
                    ts(p);
                    p.push(b'}');
                }
            }
            "ticker" => {
                p.extend_from_slice(br#"{"type":"MARKET_UPDATE","symbol":"#);
                json::push_str(p, suffix(m.channel));
                p.push(b',');
                ts(p);
                push_spliced(p, m.data, "data");
            }
            _ => {
                p.extend_from_slice(br#"{"type":""#);
                match ns {
                    "order_updates" => p.extend_from_slice(b"ORDER"),
                    _ => p.extend_from_slice(ns.to_ascii_uppercase().as_bytes()),
                }
                p.extend_from_slice(b"_UPDATE\",");
                ts(p);
                push_spliced(p, m.data, "data");
            }
        }
    })
}

/// `{"type":"connection",..}`, the first frame.
pub fn welcome() -> Bytes {
    text_frame(96, |p| {
        p.extend_from_slice(
            br#"{"type":"connection","status":"connected","message":"Real-time WebSocket connected"}"#,
        )
    })
}

/// The ack of a ticker subscribe (`subscribed`) or unsubscribe.
pub fn subscription(symbol: &str, subscribed: bool) -> Bytes {
    text_frame(96 + 2 * symbol.len(), |p| {
        p.extend_from_slice(br#"{"type":"subscription","status":"success","symbol":"#);
        json::push_str(p, symbol);
        p.extend_from_slice(br#","message":"#);
        let verb = if subscribed {
            "Subscribed to "
        } else {
            "Unsubscribed from "
        };
        json::push_str(p, &format!("{verb}{symbol}"));
        p.push(b'}');
    })
}

/// `get_positions` before any position was published.
pub fn no_positions(now_ms: u64) -> Bytes {
    text_frame(64, |p| {
        p.extend_from_slice(br#"{"type":"POSITION_UPDATE","positions":[],"timestamp":"#);
        json::push_u64(p, now_ms);
        p.push(b'}');
    })
}

/// `{"type":"error","message":..}`.
pub fn error(message: &str) -> Bytes {
    text_frame(32 + message.len(), |p| {
        p.extend_from_slice(br#"{"type":"error","message":"#);
        json::push_str(p, message);
        p.push(b'}');
    })
}

/// Reads one client message (`buf` is simd-json scratch afterwards); `now_ms` stamps
/// an empty positions answer.
pub fn parse(buf: &mut [u8], now_ms: u64) -> Owned {
    let Some(tape) = super::tape(buf) else {
        return Owned::Reply(error("Invalid JSON format"));
    };
    let root = tape.as_value();
    let action = root
        .as_object()
        .and_then(|o| o.get("action"))
        .and_then(|v| v.as_str().map(str::to_owned));
    let symbol = root
        .as_object()
        .and_then(|o| o.get("symbol"))
        .and_then(|v| v.as_str().map(str::to_owned));
    let Some(action) = action else {
        return Owned::Reply(error("Unknown action: None"));
    };
    let ticker = |sub: bool| match symbol.as_deref() {
        Some(s) if channel::validate(format!("ticker:{s}").as_bytes()).is_ok() => {
            let channels = vec![format!("ticker:{s}")];
            if sub {
                Owned::Subscribe {
                    channels,
                    max_rate: None,
                }
            } else {
                Owned::Unsubscribe { channels }
            }
        }
        Some(_) => Owned::Reply(error("Invalid symbol")),
        None => Owned::Reply(error("Symbol required")),
    };
    match action.as_str() {
        "subscribe_ticker" => ticker(true),
        "unsubscribe_ticker" => ticker(false),
        "get_positions" => Owned::Last {
            channel: "positions".into(),
            empty: Some(no_positions(now_ms)),
        },
        "get_portfolio" => Owned::Last {
            channel: "portfolio".into(),
            empty: None,
        },
        other => Owned::Reply(error(&format!("Unknown action: {other}"))),
    }
}
