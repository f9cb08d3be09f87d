//! Dialects: the client protocols a connection can speak, at the session edge.
//!
//! A [`Dialect`] holds every difference between one client protocol and another (the
//! way hyper's `Http1Transaction` holds every difference between server and client): it
//! turns a client message into the neutral [`Command`](crate::protocol::command::Command),
//! encodes replies, errors and notices, names the [`Format`] its channel messages are
//! built in, and picks its heartbeat. Sessions are generic over it (static dispatch, no
//! vtable on the read path); outboxes, lanes, limits, auth and metrics are the same for
//! every dialect.
//!
//! | dialect | path | what |
//! |---|---|---|
//! | [`V1`] | `/ws` | protocol v1: JSON commands; frames in the `envelope`, `raw` or `msgpack` format |
//! | [`Echo`] | `/ws` with `--echo` | every message sent back unchanged (RFC 6455 conformance runs) |
//! | [`Centrifuge`] | `/connection/websocket` | the Centrifuge client protocol (JSON): Centrifugo's SDKs |
//! | [`Aria`] | `/ws` of a seed listener | ARIA PRO's front end: everything to everyone |
//! | [`Sentio`] | `/ws/trade-signals`, `/ws/earnings`, `/ws/notifications`, `/ws/admin`, `/ws/market-data` | Sentio 2.0's front end: identity in the first frame |
//! | [`AiTrading`] | `/api/ws/realtime` | AI-Trading-V2's front end |
//! | [`Legend`] | `/api/ws` | Legend AI's front end (plus its HTTP endpoints, [`crate::http::legend`]) |
//! | [`SocketIo`] | `/socket.io/` | Socket.IO v5 over Engine.IO v4 (WebSocket and long-polling) with the CRS events |
//!
//! Which path speaks which dialect is the listener's route table ([`crate::routes`]).//!
//! The default methods speak protocol v1's replies (JSON, in the dialect's format's
//! framing); a dialect with its own replies overrides them.

mod aitrading;
mod aria;
mod centrifuge;
mod echo;
mod legend;
mod sentio;
pub mod socketio;
mod v1;

pub use aitrading::AiTrading;
pub use aria::Aria;
pub use centrifuge::Centrifuge;
pub use echo::Echo;
pub use legend::Legend;
pub use sentio::Sentio;
pub use socketio::SocketIo;
pub use v1::V1;

use bytes::Bytes;

use crate::error::ErrorCode;
use crate::metrics::{DialectCounters, Metrics};
use crate::protocol::close::{CloseCode, Fail};
use crate::protocol::command::{Id, ProtoError, Request};
use crate::protocol::encode::{self, SubscribedChannel};
use crate::protocol::format::{Format, Message};
pub use crate::protocol::seeds::Owned;

/// What one complete client message asks of the session.
#[derive(Debug)]
pub enum Inbound<'a> {
    /// A command to run (after the rate limit).
    Request(Request<'a>),
    /// A command that could not be read: answer with this error (after the rate limit).
    Invalid(ProtoError),
    /// Send this frame back as it is (no command).
    Reply(Bytes),
    /// Fail the connection.
    Fail(Fail),
    /// Nothing to do (a client's pong, an asynchronous message nobody handles).
    Ignore,
    /// A command whose channel names the dialect made (a seed platform's vocabulary
    /// mapped onto channels), run like [`Inbound::Request`] after the rate limit.
    Owned(Owned),
    /// Subscribe to (or unsubscribe from) channels whose names the dialect built (CRS
    /// symbols become `ticker:<SYM>`), after the rate limit.
    Channels {
        /// Echoed in the reply.
        id: Option<Id>,
        /// Subscribe; else unsubscribe.
        subscribe: bool,
        /// Validated channel names, duplicates removed.
        channels: Vec<String>,
    },
}

/// Where a channel stands after a one-channel subscribe ([`Dialect::joined`]).
#[derive(Debug, Clone)]
pub struct JoinedChannel<'a> {
    /// The channel.
    pub channel: &'a str,
    /// The channel keeps history: a client may recover from its position later.
    pub recoverable: bool,
    /// The channel's epoch.
    pub epoch: &'a str,
    /// The offset of the newest message (0: none yet).
    pub offset: u64,
    /// With a recovery: whether every missed message is in `replay`.
    pub recovered: Option<bool>,
    /// A successful recovery's messages, frames of the dialect's format, oldest first.
    pub replay: &'a [Bytes],
}

/// One client protocol (see the module docs).
pub trait Dialect: Send + 'static {
    /// Whether connections run the relay protocol: a welcome, subscriptions, the command
    /// rate limit. False for a conformance mode that only answers frames.
    const RELAY: bool = true;

    /// The dialect's name in `/stats` (the slowest consumers).
    const NAME: &'static str;
    /// A client message holds one or more commands, one per line (`\n`); each line is
    /// read by [`Dialect::inbound`] on its own.
    const LINES: bool = false;

    /// The client must open with a handshake ([`Command::Connect`]) within
    /// `--auth-timeout-ms`, whatever the namespaces allow anonymously.
    ///
    /// [`Command::Connect`]: crate::protocol::command::Command::Connect
    const HANDSHAKE: bool = false;

    /// With `n > 0`, a one-channel subscribe ([`Owned::Join`]) hands the channel's newest
    /// `n` messages to [`Dialect::joined`] instead of pushing the last value.
    const JOIN_REPLAY: usize = 0;

    /// `max_rate` of a one-channel subscribe on a conflate channel.
    const JOIN_MAX_RATE: Option<u32> = None;

    /// The counters of this dialect's connections, if its platform shows them (Legend
    /// AI's `/api/ws/stats`).
    fn counters(_metrics: &Metrics) -> Option<&DialectCounters> {
        None
    }

    /// The format channel messages, notices and closes are built in for this connection.
    fn format(&self) -> Format;

    /// Reads one complete client message (`text`: a text message, else binary).
    fn inbound<'a>(&mut self, text: bool, payload: &'a mut [u8]) -> Inbound<'a>;

    /// Told the connection's id and heartbeat before anything else happens.
    fn attach(&mut self, _conn: u64, _heartbeat_ms: u64) {}

    /// What the connection does right after the welcome, without an acknowledgement (a
    /// seed platform's subscriptions at connect).
    fn opened(&mut self) -> Option<Owned> {
        None
    }

    /// The first frame after the upgrade, if any.
    fn welcome(&self, conn: u64, heartbeat_ms: u64) -> Option<Bytes> {
        Some(self.format().notice(encode::welcome(conn, heartbeat_ms)))
    }

    /// What the writer sends every heartbeat interval (the connection is closed after
    /// 2.5 intervals of silence from the peer).
    fn heartbeat(&self) -> &'static [u8] {
        &encode::PING_FRAME
    }

    /// Channels subscribed right after a successful handshake (CRS: sentiment and
    /// signals reach every client without a subscribe).
    fn channels_at_connect(&self) -> Vec<String> {
        Vec::new()
    }

    /// The reply to a subscribe.
    fn subscribed(&self, id: Option<&Id>, channels: &[SubscribedChannel<'_>]) -> Bytes {
        self.format().notice(encode::subscribed(id, channels))
    }

    /// The reply to an unsubscribe, or the notice of subscriptions dropped.
    fn unsubscribed(&self, id: Option<&Id>, channels: &[&str]) -> Bytes {
        self.format().notice(encode::unsubscribed(id, channels))
    }

    /// The reply to a publish.
    fn published(&self, id: Option<&Id>, channel: &str, epoch: &str, offset: u64) -> Bytes {
        self.format()
            .notice(encode::published(id, channel, epoch, offset))
    }

    /// The reply to a credential (`sub` and `exp` when a token was shown).
    fn authenticated(&self, id: Option<&Id>, sub: Option<&str>, exp: Option<u64>) -> Bytes {
        self.format().notice(encode::authenticated(id, sub, exp))
    }

    /// The reply to a handshake (`sub` and `exp` when a token was shown).
    fn connected(&self, id: Option<&Id>, sub: Option<&str>, exp: Option<u64>) -> Bytes {
        self.authenticated(id, sub, exp)
    }

    /// The reply to a one-channel subscribe that reports its position.
    fn joined(&self, id: Option<&Id>, j: &JoinedChannel<'_>) -> Bytes {
        let line = SubscribedChannel {
            channel: j.channel,
            epoch: j.epoch,
            offset: j.offset,
            recovered: j.recovered,
        };
        self.subscribed(id, &[line])
    }

    /// The reply to a history read: the channel's position and the messages asked for.
    fn history(&self, id: Option<&Id>, _epoch: &str, _offset: u64, _m: &[Message<'_>]) -> Bytes {
        self.error(
            id,
            ErrorCode::UnknownOp,
            "history is read with GET /history",
        )
    }

    /// The reply to an application-level ping.
    fn pong(&self, id: Option<&Id>) -> Bytes {
        self.format().notice(encode::pong(id))
    }

    /// An error reply.
    fn error(&self, id: Option<&Id>, code: ErrorCode, message: &str) -> Bytes {
        self.format().notice(encode::error(id, code, message))
    }

    /// The frame that ends the connection.
    fn close(&self, code: CloseCode, reason: &str) -> Bytes {
        self.format().close(code, reason)
    }
}
