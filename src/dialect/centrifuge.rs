//! The Centrifuge client protocol, JSON (`GET /connection/websocket`): what Centrifugo's
//! SDKs (centrifuge-js, centrifuge-python, centrifuge-go) speak. Commands come several to
//! a frame, one per line; `connect` must come first; replies carry the command's `id`;
//! channel messages are publication pushes built once per message in the
//! [`Format::CENTRIFUGE`] format. The wire details are in [`crate::protocol::centrifuge`],
//! the code tables in docs/protocol.md.

use bytes::Bytes;

use super::{Dialect, Inbound, JoinedChannel};
use crate::error::ErrorCode;
use crate::protocol::centrifuge::{self as wire, close_codes, command};
use crate::protocol::close::CloseCode;
use crate::protocol::command::{Command, Id};
use crate::protocol::encode::SubscribedChannel;
use crate::protocol::format::{Format, Message};

/// A Centrifuge connection's protocol state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Centrifuge {
    /// `connect` has been read.
    connected: bool,
    /// The connection id, told as `client`.
    client: u64,
    /// The server ping interval in seconds, told in the connect reply.
    ping_secs: u64,
}

impl Centrifuge {
    /// A connection that has not sent `connect` yet.
    pub fn new() -> Self {
        Centrifuge::default()
    }
}

impl Dialect for Centrifuge {
    const NAME: &'static str = "centrifuge";
    const LINES: bool = true;
    const HANDSHAKE: bool = true;

    fn format(&self) -> Format {
        Format::CENTRIFUGE
    }

    fn inbound<'a>(&mut self, text: bool, payload: &'a mut [u8]) -> Inbound<'a> {
        if !text {
            return Inbound::Fail((
                close_codes::INAPPROPRIATE,
                "binary frames: this relay speaks the JSON protocol",
            ));
        }
        match command::parse_line(payload) {
            Ok(None) => Inbound::Ignore,
            Ok(Some(r)) => match (&r.command, self.connected) {
                (Command::Connect { .. }, false) => {
                    self.connected = true;
                    Inbound::Request(r)
                }
                (Command::Connect { .. }, true) => {
                    Inbound::Fail((close_codes::BAD_REQUEST, "connect sent twice"))
                }
                (_, false) => Inbound::Fail((close_codes::BAD_REQUEST, "connect first")),
                (_, true) => Inbound::Request(r),
            },
            Err(_) if !self.connected => Inbound::Fail((close_codes::BAD_REQUEST, "connect first")),
            Err(e) => Inbound::Invalid(e),
        }
    }

    fn attach(&mut self, conn: u64, heartbeat_ms: u64) {
        self.client = conn;
        self.ping_secs = heartbeat_ms.div_ceil(1000).max(1);
    }

    fn welcome(&self, _conn: u64, _heartbeat_ms: u64) -> Option<Bytes> {
        None // the connect reply comes first
    }

    fn heartbeat(&self) -> &'static [u8] {
        &wire::PING_FRAME
    }

    fn connected(&self, id: Option<&Id>, _sub: Option<&str>, exp: Option<u64>) -> Bytes {
        wire::connect_reply(id, self.client, self.ping_secs, exp)
    }

    fn joined(&self, id: Option<&Id>, j: &JoinedChannel<'_>) -> Bytes {
        let r = wire::SubscribeResult {
            recoverable: j.recoverable,
            epoch: j.epoch,
            offset: j.offset,
            was_recovering: j.recovered.is_some(),
            recovered: j.recovered == Some(true),
            publications: j.replay,
        };
        wire::subscribe_reply(id, &r)
    }

    fn subscribed(&self, id: Option<&Id>, channels: &[SubscribedChannel<'_>]) -> Bytes {
        // Only `?channels=`-style subscribes end here, which this dialect never makes.
        let line = channels.first();
        let r = wire::SubscribeResult {
            recoverable: false,
            epoch: line.map_or("", |c| c.epoch),
            offset: line.map_or(0, |c| c.offset),
            was_recovering: false,
            recovered: false,
            publications: &[],
        };
        wire::subscribe_reply(id, &r)
    }

    fn unsubscribed(&self, id: Option<&Id>, channels: &[&str]) -> Bytes {
        match id {
            Some(_) => wire::empty_reply(id, "unsubscribe"),
            // The relay ended them (a refreshed token no longer allows them).
            None => wire::unsubscribe_pushes(channels, "the token no longer allows it"),
        }
    }

    fn published(&self, id: Option<&Id>, _channel: &str, _epoch: &str, _offset: u64) -> Bytes {
        wire::empty_reply(id, "publish")
    }

    fn authenticated(&self, id: Option<&Id>, _sub: Option<&str>, exp: Option<u64>) -> Bytes {
        wire::refresh_reply(id, self.client, exp)
    }

    fn history(&self, id: Option<&Id>, epoch: &str, offset: u64, m: &[Message<'_>]) -> Bytes {
        wire::history_reply(id, epoch, offset, m)
    }

    fn pong(&self, id: Option<&Id>) -> Bytes {
        wire::empty_reply(id, "ping")
    }

    fn error(&self, id: Option<&Id>, code: ErrorCode, message: &str) -> Bytes {
        wire::error_reply(id, code, message)
    }

    fn close(&self, code: CloseCode, reason: &str) -> Bytes {
        wire::close_frame(code, reason)
    }
}
