//! The wire protocol, kept pure: parsing client bytes and building relay frames, no I/O.
//!
//! - [`channel`]: what a valid channel name is.
//! - [`command`]: client command frames → [`command::Request`].
//! - [`encode`]: every frame the relay sends, built once as `Bytes`.
//! - [`json`]: raw-span scanning and small JSON writers.
//! - [`publish`]: HTTP publish bodies (single JSON value, NDJSON batch).

pub mod channel;
pub mod command;
pub mod encode;
pub mod json;
pub mod publish;
