//! The wire protocol, kept pure: parsing client bytes and building relay frames, no I/O.
//!
//! - [`centrifuge`]: the Centrifuge client protocol (JSON): its parser, pushes, replies
//!   and code maps.
//! - [`channel`]: what a valid channel name is.
//! - [`close`]: the close codes the relay sends.
//! - [`command`]: client command frames → [`command::Request`].
//! - [`deflate`]: permessage-deflate: negotiation, a frame compressed once, bounded
//!   inflation.
//! - [`encode`]: frame building, and protocol v1's replies, built once as `Bytes`.
//! - [`format`]: wire formats (v1 envelope, v1 raw, MessagePack, Centrifuge): one frame
//!   per message per format in use, shared.
//! - [`json`]: raw-span scanning and small JSON writers.
//! - [`msgpack`]: the MessagePack format, transcoded from JSON in one pass.
//! - [`publish`]: HTTP publish bodies (single JSON value, NDJSON batch).
//! - [`seeds`]: the seed platforms' formats (ARIA PRO, Sentio 2.0, AI-Trading-V2,
//!   Legend AI): frame templates, replies, client parsers.
//! - [`socketio`]: Engine.IO v4 / Socket.IO v5 packets and the CRS events.

pub mod centrifuge;
pub mod channel;
pub mod close;
pub mod command;
pub mod deflate;
pub mod encode;
pub mod format;
pub mod json;
pub mod msgpack;
pub mod publish;
pub mod seeds;
pub mod socketio;
pub mod sse;
