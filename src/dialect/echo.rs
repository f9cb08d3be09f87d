//! `--echo`: every message is sent back unchanged, nothing else (for RFC 6455
//! conformance runs such as Autobahn; the frame layer is the same as every dialect's).

use super::{Dialect, Inbound};
use crate::protocol::encode;
use crate::protocol::format::Format;

/// The echo conformance mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Dialect for Echo {
    const RELAY: bool = false;
    const NAME: &'static str = "echo";

    fn format(&self) -> Format {
        Format::ENVELOPE
    }

    fn inbound<'a>(&mut self, text: bool, payload: &'a mut [u8]) -> Inbound<'a> {
        let op = if text {
            encode::OP_TEXT
        } else {
            encode::OP_BINARY
        };
        Inbound::Reply(encode::frame(op, payload))
    }

    fn welcome(&self, _conn: u64, _heartbeat_ms: u64) -> Option<bytes::Bytes> {
        None
    }
}
