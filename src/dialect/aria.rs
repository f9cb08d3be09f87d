//! ARIA PRO (`/ws` of a seed listener): every connection gets every message of the
//! platform's namespaces (`ticker`, `bars`, `signals`, `order_updates`, `ideas`,
//! `prepared_payloads`) without subscribing, through namespace-wide subscriptions;
//! `{"type":"subscribe","channels":[..]}` narrows or widens that with ARIA's names.
//! Frames in the [`Format::ARIA`] format; wire details in
//! [`crate::protocol::seeds::aria`].

use bytes::Bytes;

use super::{Dialect, Inbound, Owned};
use crate::error::ErrorCode;
use crate::hub::now_ms;
use crate::protocol::command::Id;
use crate::protocol::encode::SubscribedChannel;
use crate::protocol::format::Format;
use crate::protocol::seeds::aria as wire;

/// An ARIA PRO connection: its ARIA subscription names.
#[derive(Debug, Clone, Default)]
pub struct Aria {
    st: wire::State,
}

impl Aria {
    /// A connection subscribed to `all`.
    pub fn new() -> Aria {
        Aria::default()
    }
}

impl Dialect for Aria {
    const NAME: &'static str = "aria";

    fn format(&self) -> Format {
        Format::ARIA
    }

    fn inbound<'a>(&mut self, text: bool, payload: &'a mut [u8]) -> Inbound<'a> {
        if !text {
            let e = wire::error(
                "binary messages are not supported: send JSON text",
                now_ms(),
            );
            return Inbound::Owned(Owned::Reply(e));
        }
        Inbound::Owned(wire::parse(payload, &mut self.st, now_ms()))
    }

    fn attach(&mut self, conn: u64, _heartbeat_ms: u64) {
        self.st.client_id = conn;
    }

    fn opened(&mut self) -> Option<Owned> {
        Some(Owned::Subscribe {
            channels: wire::channels_of("all").unwrap_or_default(),
            max_rate: None,
        })
    }

    fn welcome(&self, conn: u64, _heartbeat_ms: u64) -> Option<Bytes> {
        Some(wire::welcome(conn))
    }

    fn subscribed(&self, _id: Option<&Id>, _channels: &[SubscribedChannel<'_>]) -> Bytes {
        wire::subscriptions("subscription_confirmed", &self.st.names)
    }

    fn unsubscribed(&self, _id: Option<&Id>, _channels: &[&str]) -> Bytes {
        wire::subscriptions("subscription_updated", &self.st.names)
    }

    fn pong(&self, _id: Option<&Id>) -> Bytes {
        wire::stamped("pong", now_ms())
    }

    fn error(&self, _id: Option<&Id>, code: ErrorCode, message: &str) -> Bytes {
        wire::error(&format!("{}: {message}", code.as_str()), now_ms())
    }
}
