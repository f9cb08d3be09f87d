//! # tickrelay
//!
//! A WebSocket edge relay for real-time market data. Publishers push JSON messages in
//! (HTTP or WebSocket); clients subscribe to channels over WebSocket; every message is
//! serialized once, into one complete WebSocket frame, and the same bytes are written to
//! every subscriber.
//!
//! ## Map
//!
//! | concept | module |
//! |---|---|
//! | settings and limits, with defaults | [`config`] |
//! | per-namespace delivery, history and access (`--config`) | [`namespace`] |
//! | JWT verification, channel patterns, subscribe/publish rules, origins | [`auth`] |
//! | command rate limit, connections per client address | [`limits`] |
//! | relay-wide state and the publish funnel every source goes through | [`relay`] |
//! | the Redis backplane: offsets assigned in Redis, mirrored by every node | [`backplane`] |
//! | edge chaining: a relay subscribed to an upstream relay for its clients' channels | [`upstream`] |
//! | the shutdown flag and the drain of live connections | [`shutdown`] |
//! | accept loop, background tasks, the shutdown sequence | [`server`] |
//! | TLS termination (rustls), certificate reload on SIGHUP or on change | [`tls`] |
//! | the HTTP write timeout; an upgraded connection's halves, out of hyper's wrappers | [`stream`] |
//! | open-file limit, descriptor table sized at start-up | [`fds`] |
//! | HTTP routing; upgrade, publish, history, stats endpoints | [`http`] |
//! | route tables: which protocol each path of a listener speaks (`[[listener]]`) | [`routes`] |
//! | the hand-written WebSocket upgrade | [`http::upgrade`] |
//! | client protocols (v1, echo, Centrifuge, the seed platforms, Socket.IO): the [`dialect::Dialect`] trait | [`dialect`] |
//! | the seed platforms' frame templates and command parsers | [`protocol::seeds`] |
//! | one connection: reader, writer, heartbeat, generic over its dialect | [`session`] |
//! | Socket.IO: Engine.IO/Socket.IO packets and the CRS events (pure); long-polling sessions and their upgrade | [`protocol::socketio`], [`http::socketio`], [`session::polling`] |
//! | fragment reassembly with message limits | [`session::reassembly`] |
//! | frame boundaries, masking check, no buffer while idle | [`session::framing`] |
//! | channel table, shards, fan-out of neutral messages; interest events | [`hub`] |
//! | a connection's bounded outbound queue, lanes, `max_rate` | [`outbox`] |
//! | wire formats: one frame per message per format in use | [`protocol::format`] |
//! | command parsing, frame building, close codes (pure, no I/O) | [`protocol`] |
//! | error codes | [`error`] |
//! | counters for `/stats` and `/metrics` | [`metrics`] |
//! | the simulated market of `--demo` | [`demo`] |
//! | fuzz-target entry points and their oracles (`--cfg fuzzing` only) | `fuzzing` |
//!
//! ## Data flow
//!
//! ```text
//! POST /publish/{ch} ─┐                             ┌─► Outbox ─► writer ─► socket
//! WS {"op":"publish"} ┼─► Relay::publish ─► Hub ─────┼─► Outbox ─► writer ─► socket
//! demo feed ──────────┘   (one funnel)     offset,   └─► ...
//!                                          one frame per format in use (Bytes)
//! ```

#![warn(missing_docs)]

pub mod auth;
pub mod backplane;
pub mod config;
pub mod demo;
pub mod dialect;
pub mod error;
pub mod fds;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod namespace;
pub mod outbox;
pub mod protocol;
pub mod relay;
pub mod routes;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod stream;
pub mod tls;
pub mod upstream;

pub use config::Config;
pub use relay::Relay;
pub use server::{run, serve};
