//! AI-Trading-V2 (`/api/ws/realtime`): `{"action":..}` commands, flat upper-case frames
//! in the [`Format::AITRADING`] format. Every connection gets positions, portfolio and
//! order updates from the start; `get_positions` / `get_portfolio` answer the channel's
//! last value. The wire details are in [`crate::protocol::seeds::aitrading`].

use bytes::Bytes;

use super::{Dialect, Inbound, Owned};
use crate::error::ErrorCode;
use crate::protocol::close::CloseCode;
use crate::protocol::command::Id;
use crate::protocol::encode::SubscribedChannel;
use crate::protocol::format::Format;
use crate::protocol::seeds::aitrading as wire;

/// An AI-Trading-V2 connection (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct AiTrading;

impl Dialect for AiTrading {
    const NAME: &'static str = "aitrading";

    fn format(&self) -> Format {
        Format::AITRADING
    }

    fn inbound<'a>(&mut self, text: bool, payload: &'a mut [u8]) -> Inbound<'a> {
        if !text {
            return Inbound::Owned(Owned::Reply(wire::error("Invalid JSON format")));
        }
        Inbound::Owned(wire::parse(payload, crate::hub::now_ms()))
    }

    fn opened(&mut self) -> Option<Owned> {
        Some(Owned::Subscribe {
            channels: wire::CONNECT_CHANNELS.map(str::to_owned).to_vec(),
            max_rate: None,
        })
    }

    fn welcome(&self, _conn: u64, _heartbeat_ms: u64) -> Option<Bytes> {
        Some(wire::welcome())
    }

    fn subscribed(&self, _id: Option<&Id>, channels: &[SubscribedChannel<'_>]) -> Bytes {
        match channels
            .first()
            .and_then(|c| c.channel.strip_prefix("ticker:"))
        {
            Some(symbol) => wire::subscription(symbol, true),
            None => Bytes::new(), // the subscriptions at connect: no ack
        }
    }

    fn unsubscribed(&self, _id: Option<&Id>, channels: &[&str]) -> Bytes {
        match channels.first().and_then(|c| c.strip_prefix("ticker:")) {
            Some(symbol) => wire::subscription(symbol, false),
            None => Bytes::new(),
        }
    }

    fn pong(&self, _id: Option<&Id>) -> Bytes {
        Bytes::new() // AI-Trading has no application ping
    }

    fn error(&self, _id: Option<&Id>, code: ErrorCode, message: &str) -> Bytes {
        wire::error(&format!("{}: {message}", code.as_str()))
    }

    fn close(&self, code: CloseCode, reason: &str) -> Bytes {
        crate::protocol::encode::close_frame(code.get(), reason)
    }
}
