//! Protocol v1 (`GET /ws`): JSON text commands in; frames out in the connection's
//! format (`?format=envelope`, the default; `raw`; `msgpack`, where replies and notices
//! are the v1 objects in MessagePack).

use super::{Dialect, Inbound};
use crate::protocol::close::CloseCode;
use crate::protocol::command;
use crate::protocol::format::Format;

/// Protocol v1 in one of its formats.
#[derive(Debug, Clone, Copy)]
pub struct V1 {
    format: Format,
    /// Channel lists longer than this are refused while parsing (`--max-subscriptions`).
    max_channels: usize,
}

impl V1 {
    /// Protocol v1 with channel messages in `format`.
    pub fn new(format: Format) -> V1 {
        V1 {
            format,
            max_channels: usize::MAX,
        }
    }

    /// Refuses channel lists of more than `max` distinct names as it parses them.
    pub fn with_max_channels(mut self, max: usize) -> V1 {
        self.max_channels = max;
        self
    }
}

impl Dialect for V1 {
    const NAME: &'static str = "v1";

    fn format(&self) -> Format {
        self.format
    }

    fn inbound<'a>(&mut self, text: bool, payload: &'a mut [u8]) -> Inbound<'a> {
        if !text {
            return Inbound::Fail((
                CloseCode::UNSUPPORTED,
                "binary messages are not supported: send JSON text",
            ));
        }
        match command::parse_limited(payload, self.max_channels) {
            Ok(r) => Inbound::Request(r),
            Err(e) => Inbound::Invalid(e),
        }
    }
}
