//! One WebSocket connection: a reader, an outbound queue and a writer, speaking one
//! [`Dialect`], in one task.
//!
//! ```text
//!  socket read half ─► reader: frames ─► reassembly ─► dialect ─► command ─► hub
//!                                                              │ replies
//!  hub fan-out ─────────────────────────────────────────► Outbox (bounded) ─► writer ─► socket write half
//! ```
//! The read and write halves are owned separately, so reader and writer share no lock;
//! they are polled side by side by one hand-written future ([`Both`]), the connection's
//! only task. When the connection must end (close sent, slow consumer, shutdown,
//! heartbeat timeout) the reader is given `close_timeout` to see the peer's close and is
//! then dropped. The subscriptions are released by [`Session`]'s `Drop`, which runs
//! however the reader ends.
//!
//! - [`reader`]: the read half, frames and close handshake.
//! - [`writer`]: the write half: outbox drain, heartbeat, deadlines, vectored writes.
//! - [`access`]: credentials, subscribe/publish checks, the command rate limit.
//! - [`polling`]: an Engine.IO long-polling session and its upgrade to a WebSocket.
//! - `join`: a dialect's handshake, one-channel subscribe with its replay, history reads.
//! - `owned`: commands a seed dialect made from its platform's vocabulary, and
//!   namespace-wide subscriptions.
//! - [`framing`], [`reassembly`]: frame boundaries and fragmented messages.

pub mod access;
pub mod framing;
mod join;
mod owned;
pub mod polling;
pub mod reader;
pub mod reassembly;
mod remote;
pub use remote::refusal;
pub mod sse;
mod task;
pub use task::run;
use task::{resume, Registered};
pub mod writer;

use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::dialect::{Dialect, Inbound};
use crate::error::ErrorCode;
use crate::hub::{Recover, Subscriber};
use crate::namespace::Delivery;
use crate::outbox::{Outbox, Push};
use crate::protocol::close::Fail;
use crate::protocol::command::{Command, Id, RecoverFrom, Request};
use crate::protocol::encode::SubscribedChannel;
use crate::protocol::format::payload_len;
use crate::relay::Relay;

/// Per-connection choices made at the upgrade.
#[derive(Debug, Clone)]
pub struct Params {
    /// The credentials shown at the upgrade.
    pub identity: crate::auth::Identity,
    /// `?channels=`: subscribed before the first frame is read.
    pub channels: Vec<String>,
    /// The client's address (for `/stats`).
    pub peer: std::net::SocketAddr,
    /// permessage-deflate, if the upgrade negotiated it.
    pub deflate: crate::protocol::deflate::Deflate,
}

/// The reader's view of a connection: its dialect, subscriptions and credentials.
pub struct Session<D: Dialect> {
    relay: Arc<Relay>,
    outbox: Arc<Outbox>,
    conn: u64,
    dialect: D,
    access: access::Access,
    /// Subscribed channels with their hub ids.
    subs: Vec<(Box<str>, u64)>,
    /// Backplane work and the replies queued behind it (see [`remote`]); a `RefCell`
    /// because replies are queued from `&self`, boxed so that an idle connection pays one
    /// pointer.
    pending: Option<Box<std::cell::RefCell<remote::Queue>>>,
}

impl<D: Dialect> Drop for Session<D> {
    fn drop(&mut self) {
        for (name, _) in self.subs.drain(..) {
            match owned::wildcard(&name) {
                Some(ns) => {
                    let _ = self.relay.hub.unsubscribe_namespace(ns, self.conn);
                }
                None => {
                    let _ = self.relay.hub.unsubscribe(&name, self.conn);
                }
            }
        }
    }
}

impl<D: Dialect> Session<D> {
    fn new(relay: Arc<Relay>, outbox: Arc<Outbox>, conn: u64, dialect: D, params: &Params) -> Self {
        let access = access::Access::new(&relay, params.identity.clone(), outbox.deadline());
        Session {
            relay,
            outbox,
            conn,
            dialect,
            access,
            subs: Vec::new(),
            pending: None,
        }
    }

    /// Records a subscription. The first takes room for one (most connections hold one
    /// channel; a `Vec`'s first growth would take four).
    fn keep_sub(&mut self, name: Box<str>, key: u64) {
        if self.subs.capacity() == 0 {
            self.subs.reserve_exact(1);
        }
        self.subs.push((name, key));
    }

    /// This connection as the hub's fan-out sees it.
    fn as_subscriber(&self) -> Subscriber {
        Subscriber {
            conn: self.conn,
            outbox: self.outbox.clone(),
            format: self.dialect.format(),
            deflate: self.outbox.deflate(),
        }
    }

    fn reply(&self, frame: Bytes) {
        if let Some(q) = &self.pending {
            // Behind queued publishes: sent after them, in order (see `remote`).
            return q.borrow_mut().push(remote::Slot::Reply(frame));
        }
        if self.outbox.push(&frame) == Push::Overflow {
            self.relay
                .metrics
                .slow_consumer_closes
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers a ping. Relay dialects hold one pending pong (a flood costs nothing);
    /// the conformance dialect answers every ping, as strict RFC 6455 suites expect.
    fn pong(&self, frame: Bytes) {
        let pushed = if D::RELAY {
            self.outbox.pong(frame)
        } else {
            self.outbox.push(&frame)
        };
        if pushed == Push::Overflow {
            self.relay
                .metrics
                .slow_consumer_closes
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn error(&self, id: Option<&Id>, code: ErrorCode, message: &str) {
        self.relay.metrics.error(code);
        if let Some(c) = D::counters(&self.relay.metrics) {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.reply(self.dialect.error(id, code, message));
    }

    /// Handles one complete message. Returns a close to send if the connection must end.
    fn on_message(&mut self, text: bool, payload: &mut [u8]) -> Option<Fail> {
        if let Some(c) = D::counters(&self.relay.metrics) {
            c.received.fetch_add(1, Ordering::Relaxed);
        }
        if !D::LINES {
            return self.on_command_text(text, payload);
        }
        // A line feed never occurs inside a JSON string, so each line is one command.
        for line in payload.split_mut(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Some(fail) = self.on_command_text(text, line) {
                return Some(fail);
            }
        }
        None
    }

    /// Handles one command's text.
    fn on_command_text(&mut self, text: bool, payload: &mut [u8]) -> Option<Fail> {
        if self.keep_for_later(text, payload) {
            return None; // behind a subscribe that waits for the backplane
        }
        let (id, request) = match self.dialect.inbound(text, payload) {
            Inbound::Reply(frame) => {
                // An echo: compressed for this connection alone (nothing to share).
                let z = match self.relay.config.deflate.threshold() {
                    Some(t) if self.outbox.deflate().on() && payload_len(&frame) >= t => {
                        let len = payload_len(&frame);
                        crate::protocol::deflate::compress_frame(&frame)
                            .filter(|_| self.outbox.deflate().fits(len))
                    }
                    _ => None,
                };
                self.reply(z.unwrap_or(frame));
                return None;
            }
            Inbound::Ignore => return None,
            Inbound::Fail(fail) => return Some(fail),
            Inbound::Owned(o) => {
                if D::RELAY {
                    if let Some(end) = self.admit(None) {
                        return end;
                    }
                }
                self.on_owned(o, true);
                return None;
            }
            Inbound::Invalid(e) => (e.id.clone(), Err(e)),
            Inbound::Request(Request { id, command }) => (id, Ok(command)),
            Inbound::Channels {
                id,
                subscribe,
                channels,
            } => {
                if let Some(end) = self.admit(id.as_ref()) {
                    return end;
                }
                match subscribe {
                    true => self.subscribe(id.as_ref(), &channels, &[], None),
                    false => self.unsubscribe(id.as_ref(), &channels),
                }
                return None;
            }
        };
        if D::RELAY {
            if let Some(end) = self.admit(id.as_ref()) {
                return end;
            }
        }
        match request {
            Err(e) => self.error(e.id.as_ref(), e.code, e.message),
            Ok(command) => self.on_command(id.as_ref(), command),
        }
        None
    }

    fn on_command(&mut self, id: Option<&Id>, command: Command<'_>) {
        match command {
            Command::Subscribe {
                channels,
                recover,
                max_rate,
            } => {
                if self.must_warm(&channels) {
                    return self.defer(remote::Slot::subscribe(id, &channels, &recover, max_rate));
                }
                self.subscribe(id, &channels, &recover, max_rate)
            }
            Command::Unsubscribe { channels } => self.unsubscribe(id, &channels),
            Command::Publish { channel, data } => {
                if !self.may_publish(id, channel) {
                    return;
                }
                if data.len() > self.relay.config.max_message_bytes {
                    return self.error(
                        id,
                        ErrorCode::PayloadTooLarge,
                        "data is over the message size limit",
                    );
                }
                if self.relay.sequenced_elsewhere() {
                    return self.defer(remote::Slot::Publish {
                        id: id.cloned(),
                        channel: channel.to_string(),
                        data,
                    });
                }
                match self.relay.publish(channel, &data) {
                    Ok(p) => {
                        let (e, o) = (p.position.epoch, p.position.offset);
                        self.reply(self.dialect.published(id, channel, e.as_str(), o))
                    }
                    Err(code) => {
                        self.error(id, code, "the relay holds its maximum number of channels")
                    }
                }
            }
            Command::Auth { token } => self.authenticate(id, token),
            Command::Ping => self.reply(self.dialect.pong(id)),
            Command::Connect { token } => self.handshake(id, token),
            Command::Join {
                channel,
                recover,
                strict,
            } => {
                if self.must_warm(&[channel]) {
                    return self.defer(remote::Slot::join(id, channel, recover, strict));
                }
                self.join(id, channel, recover, strict)
            }
            Command::History {
                channel,
                since,
                limit,
                reverse,
            } => self.history(id, channel, since, limit, reverse),
        }
    }

    /// Drops the subscriptions to `channels` that this connection holds, and answers.
    fn unsubscribe<S: AsRef<str>>(&mut self, id: Option<&Id>, channels: &[S]) {
        for name in channels.iter().map(AsRef::as_ref) {
            if let Some(i) = self.subs.iter().position(|(s, _)| &**s == name) {
                let (_, key) = self.subs.swap_remove(i);
                self.relay.hub.unsubscribe(name, self.conn);
                self.outbox.forget(key);
            }
        }
        let names: Vec<&str> = channels.iter().map(AsRef::as_ref).collect();
        self.reply(self.dialect.unsubscribed(id, &names));
    }

    /// The checks before a subscribe: `max_rate` only on conflate channels, the
    /// subscription limit, access, room in the channel table. Answers the first refusal
    /// and returns false.
    fn may_add<S: AsRef<str>>(
        &self,
        id: Option<&Id>,
        channels: &[S],
        max_rate: Option<u32>,
    ) -> bool {
        let new = channels
            .iter()
            .filter(|c| !self.subs.iter().any(|(s, _)| &**s == c.as_ref()))
            .count();
        let ns = &self.relay.config.namespaces;
        if max_rate.is_some()
            && channels
                .iter()
                .any(|c| ns.of(c.as_ref()).delivery != Delivery::Conflate)
        {
            self.error(
                id,
                ErrorCode::BadRequest,
                "max_rate applies to conflate channels only (reliable messages are never skipped)",
            );
            return false;
        }
        let max = match self.access.who.relay() {
            true => usize::MAX, // an edge relay subscribes for all its clients
            false => self.relay.config.max_subscriptions,
        };
        if self.subs.len() + new > max {
            self.error(
                id,
                ErrorCode::TooManySubscriptions,
                "this subscribe would exceed the subscription limit per connection",
            );
            return false;
        }
        if !self.may_subscribe(id, channels) {
            return false;
        }
        let hub = &self.relay.hub;
        let ensured = if self.access.who.trusted() {
            hub.ensure_channels(channels)
        } else {
            hub.ensure_subscriber_channels(channels)
        };
        if let Err(code) = ensured {
            self.error(id, code, "the relay holds its maximum number of channels");
            return false;
        }
        true
    }

    /// Subscribes to every channel or to none. The reply is queued ahead of any message of
    /// these channels (see [`Outbox::reserve`]).
    fn subscribe<S: AsRef<str>>(
        &mut self,
        id: Option<&Id>,
        channels: &[S],
        recover: &[RecoverFrom<'_>],
        max_rate: Option<u32>,
    ) {
        if !self.may_add(id, channels, max_rate) {
            return;
        }
        let Some(slot) = self.outbox.reserve() else {
            return; // closing
        };
        let me = self.as_subscriber();
        let mut positions = Vec::with_capacity(channels.len());
        let before = self.subs.len();
        for name in channels {
            let name = name.as_ref();
            let from = recover.iter().find(|r| r.channel == name).map(|r| Recover {
                epoch: r.epoch,
                offset: r.offset,
            });
            match self.relay.hub.subscribe(name, &me, from) {
                Ok(sub) => {
                    if !self.subs.iter().any(|(s, _)| &**s == name) {
                        self.keep_sub(name.into(), sub.key);
                    }
                    if sub.conflate_lane {
                        let interval = max_rate.map(|r| Duration::from_secs(1) / r);
                        self.outbox.set_rate(sub.key, &sub.name, interval);
                    }
                    positions.push(sub);
                }
                Err(code) => {
                    for (gone, _) in self.subs.drain(before..) {
                        self.relay.hub.unsubscribe(&gone, self.conn);
                    }
                    self.relay.metrics.error(code);
                    let frame = self.dialect.error(
                        id,
                        code,
                        "the relay holds its maximum number of channels",
                    );
                    let _ = self.outbox.fill(slot, frame);
                    return;
                }
            }
        }
        let lines: Vec<SubscribedChannel<'_>> = channels
            .iter()
            .zip(&positions)
            .map(|(name, s)| SubscribedChannel {
                channel: name.as_ref(),
                epoch: s.position.epoch.as_str(),
                offset: s.position.offset,
                recovered: s.recovered,
            })
            .collect();
        if self.outbox.fill(slot, self.dialect.subscribed(id, &lines)) == Push::Overflow {
            self.relay
                .metrics
                .slow_consumer_closes
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
