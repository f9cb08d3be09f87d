//! Sentio 2.0 (`/ws/trade-signals`, `/ws/earnings`, `/ws/notifications`, `/ws/admin`,
//! `/ws/market-data`): the first client frame names the identity, later frames
//! subscribe symbols without an acknowledgement; frames in the [`Format::SENTIO`]
//! format. The wire details and the trust rule are in [`crate::protocol::seeds::sentio`].

use bytes::Bytes;

use super::{Dialect, Inbound, Owned};
use crate::error::ErrorCode;
use crate::hub::now_ms;
use crate::protocol::close::CloseCode;
use crate::protocol::command::Id;
use crate::protocol::encode::SubscribedChannel;
use crate::protocol::format::Format;
use crate::protocol::seeds::sentio as wire;

/// A Sentio connection on one of its endpoints.
#[derive(Debug, Clone)]
pub struct Sentio {
    st: wire::State,
}

impl Sentio {
    /// A connection on `endpoint`, which showed a JWT with `token_sub` (and the admin
    /// claim if `token_admin`) at the upgrade, on a listener with `settings`.
    pub fn new(
        endpoint: wire::Endpoint,
        settings: wire::Settings,
        token_sub: Option<&str>,
        token_admin: bool,
    ) -> Sentio {
        Sentio {
            st: wire::State {
                endpoint,
                settings,
                token_sub: token_sub.map(str::to_owned),
                token_admin,
                identified: false,
                symbols: Default::default(),
            },
        }
    }
}

impl Dialect for Sentio {
    const NAME: &'static str = "sentio";

    fn format(&self) -> Format {
        Format::SENTIO
    }

    fn inbound<'a>(&mut self, text: bool, payload: &'a mut [u8]) -> Inbound<'a> {
        if !text {
            return Inbound::Owned(Owned::Reply(wire::error("Invalid JSON", now_ms())));
        }
        match wire::parse(payload, &mut self.st, now_ms()) {
            wire::Parsed::Run(o) => Inbound::Owned(o),
            wire::Parsed::Close(reason) => Inbound::Fail((CloseCode::POLICY, reason)),
        }
    }

    fn welcome(&self, _conn: u64, _heartbeat_ms: u64) -> Option<Bytes> {
        None // the platform sends nothing until it has read the first frame
    }

    fn subscribed(&self, _id: Option<&Id>, _channels: &[SubscribedChannel<'_>]) -> Bytes {
        Bytes::new() // no acknowledgement
    }

    fn unsubscribed(&self, _id: Option<&Id>, _channels: &[&str]) -> Bytes {
        Bytes::new()
    }

    fn pong(&self, _id: Option<&Id>) -> Bytes {
        wire::pong(now_ms())
    }

    fn error(&self, _id: Option<&Id>, code: ErrorCode, message: &str) -> Bytes {
        wire::error(&format!("{}: {message}", code.as_str()), now_ms())
    }
}
