//! Sentio 2.0's channel frames: `{"type":T,"data":DATA,"timestamp":iso}`, with the data
//! in an array (*array-wrap*: `[` + data + `]` unless it already is one) for trade
//! signals and market data. `signals[:<SYM>]` → `trade_signals`, `ticker:<SYM>` →
//! `update`, `earnings:<user>` → `earnings`, `notifications:<user>` → `notification`,
//! `admin:<kind>` → `admin_<kind>`; any other namespace: its name.
//!
//! Only the frame template is here: the five endpoints' first-frame identity is not
//! implemented yet (see docs/dialects.md).

use bytes::Bytes;

use super::{push_iso_str, suffix, text_frame};
use crate::protocol::format::Message;
use crate::protocol::json;

/// The frame of one channel message.
pub fn message_frame(m: &Message<'_>) -> Bytes {
    let ns = crate::namespace::Namespaces::name_of(m.channel);
    text_frame(64 + m.channel.len() + m.data.len(), |p| {
        p.extend_from_slice(br#"{"type":"#);
        let array = match ns {
            "signals" => {
                p.extend_from_slice(br#""trade_signals""#);
                true
            }
            "ticker" => {
                p.extend_from_slice(br#""update""#);
                true
            }
            "notifications" => {
                p.extend_from_slice(br#""notification""#);
                false
            }
            "admin" => {
                json::push_str(p, &format!("admin_{}", suffix(m.channel)));
                false
            }
            other => {
                json::push_str(p, other);
                false
            }
        };
        p.extend_from_slice(br#","data":"#);
        let is_array = m.data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        let wrap = array && !is_array;
        if wrap {
            p.push(b'[');
        }
        p.extend_from_slice(m.data);
        if wrap {
            p.push(b']');
        }
        p.extend_from_slice(br#","timestamp":"#);
        push_iso_str(p, m.ts);
        p.push(b'}');
    })
}
