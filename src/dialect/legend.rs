//! Legend AI (`/api/ws?user_id=U&connection_id=C`): `{"type":..}` commands, typed
//! frames in the [`Format::LEGEND`] format, ISO timestamps. A ticker subscribe is a
//! one-channel join whose reply is the acknowledgement plus a `history` frame of the
//! newest 10 price updates (instead of the last value), capped at 10 messages/s
//! (`max_rate`: the newest wins). The wire details are in
//! [`crate::protocol::seeds::legend`]; the HTTP side in [`crate::http::legend`].

use bytes::{Bytes, BytesMut};

use super::{Dialect, Inbound, JoinedChannel, Owned};
use crate::error::ErrorCode;
use crate::hub::now_ms;
use crate::metrics::{DialectCounters, Metrics};
use crate::protocol::command::Id;
use crate::protocol::encode::SubscribedChannel;
use crate::protocol::format::Format;
use crate::protocol::seeds::legend as wire;

/// A Legend AI connection: its connection id.
#[derive(Debug, Clone, Default)]
pub struct Legend {
    connection_id: String,
}

impl Legend {
    /// A connection opened with `user_id` / `connection_id` from its query (the platform's
    /// defaults: `default`, and `<user_id>_<8 hex digits>`).
    pub fn new(user_id: Option<&str>, connection_id: Option<&str>) -> Legend {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let conn = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let user = user_id.filter(|u| !u.is_empty()).unwrap_or("default");
        let connection_id = match connection_id.filter(|c| !c.is_empty()) {
            Some(c) => c.to_owned(),
            None => {
                let mix = conn.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ now_ms();
                format!("{user}_{:08x}", mix as u32)
            }
        };
        Legend { connection_id }
    }
}

impl Dialect for Legend {
    const NAME: &'static str = "legend";
    const JOIN_REPLAY: usize = wire::HISTORY;
    const JOIN_MAX_RATE: Option<u32> = Some(wire::MAX_RATE);

    fn counters(metrics: &Metrics) -> Option<&DialectCounters> {
        Some(&metrics.legend)
    }

    fn format(&self) -> Format {
        Format::LEGEND
    }

    fn inbound<'a>(&mut self, text: bool, payload: &'a mut [u8]) -> Inbound<'a> {
        if !text {
            return Inbound::Owned(Owned::Reply(wire::error("Invalid JSON", now_ms())));
        }
        Inbound::Owned(wire::parse(payload, now_ms()))
    }

    fn welcome(&self, _conn: u64, _heartbeat_ms: u64) -> Option<Bytes> {
        Some(wire::welcome(&self.connection_id, now_ms()))
    }

    fn subscribed(&self, _id: Option<&Id>, channels: &[SubscribedChannel<'_>]) -> Bytes {
        match channels.first() {
            Some(c) => wire::subscription(c.channel, true, now_ms()),
            None => Bytes::new(),
        }
    }

    fn joined(&self, _id: Option<&Id>, j: &JoinedChannel<'_>) -> Bytes {
        let now = now_ms();
        let ack = wire::subscription(j.channel, true, now);
        if j.replay.is_empty() {
            return ack;
        }
        let ticker = j.channel.strip_prefix("ticker:").unwrap_or(j.channel);
        let history = wire::history(ticker, j.replay, now);
        // Two frames, queued as one: nothing of the channel can come in between.
        let mut both = BytesMut::with_capacity(ack.len() + history.len());
        both.extend_from_slice(&ack);
        both.extend_from_slice(&history);
        both.freeze()
    }

    fn unsubscribed(&self, _id: Option<&Id>, channels: &[&str]) -> Bytes {
        match channels.first() {
            Some(c) => wire::subscription(c, false, now_ms()),
            None => Bytes::new(),
        }
    }

    fn pong(&self, _id: Option<&Id>) -> Bytes {
        wire::pong(now_ms())
    }

    fn error(&self, _id: Option<&Id>, code: ErrorCode, message: &str) -> Bytes {
        wire::error(&format!("{}: {message}", code.as_str()), now_ms())
    }
}
