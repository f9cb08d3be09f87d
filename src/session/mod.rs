//! One WebSocket connection: a reader task, an outbound queue and a writer.
//!
//! ```text
//!  socket read half ─► reader task: frames ─► reassembly ─► command ─► hub
//!                                                    │ replies
//!  hub fan-out ───────────────────────────────► Outbox (bounded) ─► writer ─► socket write half
//! ```
//! The read and write halves are owned separately, so reader and writer share no lock.
//! `read_frame` is not cancellation-safe, so it is never raced in a `select!`: the reader
//! runs in its own task, and when the connection must end (close sent, slow consumer,
//! shutdown, heartbeat timeout) that task is given `close_timeout` to see the peer's
//! close and is then aborted. The subscriptions are released by [`Session`]'s `Drop`,
//! which runs however the reader ends.

pub mod reassembly;
pub mod writer;

use bytes::Bytes;
use fastwebsockets::{OpCode, Role, WebSocketError, WebSocketRead};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::error::ErrorCode;
use crate::hub::outbox::{Outbox, Push};
use crate::hub::Subscriber;
use crate::protocol::command::{self, Command, Id, Request};
use crate::protocol::encode::{self, SubscribedChannel};
use crate::server::Relay;
use reassembly::{DataOp, Fail, Reassembler, Step};

/// What a connection does with the messages it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The relay protocol (DESIGN.md §3).
    Relay,
    /// Send every message back unchanged (conformance testing).
    Echo,
}

/// Per-connection choices made at the upgrade.
#[derive(Debug, Clone)]
pub struct Params {
    /// Relay or echo.
    pub mode: Mode,
    /// `format=raw`.
    pub raw: bool,
    /// Authenticated with the publish key (`?token=`).
    pub publisher: bool,
    /// `?channels=`: subscribed before the first frame is read.
    pub channels: Vec<String>,
}

/// The reader's view of a connection: its subscriptions and credentials.
pub struct Session {
    relay: Arc<Relay>,
    outbox: Arc<Outbox>,
    conn: u64,
    raw: bool,
    mode: Mode,
    publisher: bool,
    subs: Vec<Box<str>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for name in self.subs.drain(..) {
            self.relay.hub.unsubscribe(&name, self.conn);
        }
    }
}

impl Session {
    fn new(relay: Arc<Relay>, outbox: Arc<Outbox>, conn: u64, params: &Params) -> Self {
        Session {
            relay,
            outbox,
            conn,
            raw: params.raw,
            mode: params.mode,
            publisher: params.publisher,
            subs: Vec::new(),
        }
    }

    fn reply(&self, frame: Bytes) {
        if self.outbox.push(&frame) == Push::Overflow {
            self.relay
                .metrics
                .slow_consumer_closes
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn error(&self, id: Option<&Id>, code: ErrorCode, message: &str) {
        self.relay.metrics.error(code);
        self.reply(encode::error(id, code, message));
    }

    /// Handles one complete message. Returns a close to send if the connection must end.
    fn on_message(&mut self, text: bool, payload: &mut [u8]) -> Option<Fail> {
        if self.mode == Mode::Echo {
            let op = if text {
                encode::OP_TEXT
            } else {
                encode::OP_BINARY
            };
            self.reply(encode::frame(op, payload));
            return None;
        }
        if !text {
            return Some((1003, "binary messages are not supported: send JSON text"));
        }
        match command::parse(payload) {
            Err(e) => self.error(e.id.as_ref(), e.code, e.message),
            Ok(Request { id, command }) => self.on_command(id.as_ref(), command),
        }
        None
    }

    fn on_command(&mut self, id: Option<&Id>, command: Command<'_>) {
        match command {
            Command::Subscribe { channels } => self.subscribe(id, &channels),
            Command::Unsubscribe { channels } => {
                for name in channels.iter() {
                    if let Some(i) = self.subs.iter().position(|s| &**s == *name) {
                        self.subs.swap_remove(i);
                        self.relay.hub.unsubscribe(name, self.conn);
                    }
                }
                self.reply(encode::unsubscribed(id, &channels));
            }
            Command::Publish { channel, data } => {
                if self.relay.config.publish_key.is_none() {
                    return self.error(
                        id,
                        ErrorCode::Forbidden,
                        "publishing is disabled on this relay (no publish key set)",
                    );
                }
                if !self.publisher {
                    return self.error(
                        id,
                        ErrorCode::Unauthorized,
                        "publishing needs the publish key: connect with ?token= or send an auth op",
                    );
                }
                if data.len() > self.relay.config.max_message_bytes {
                    return self.error(
                        id,
                        ErrorCode::PayloadTooLarge,
                        "data is over the message size limit",
                    );
                }
                match self.relay.hub.publish(channel, &data) {
                    Ok(p) => self.reply(encode::published(id, channel, p.position.offset)),
                    Err(code) => {
                        self.error(id, code, "the relay holds its maximum number of channels")
                    }
                }
            }
            Command::Auth { token } => {
                if self.relay.check_publish_key(token) {
                    self.publisher = true;
                    self.reply(auth_reply(id));
                } else {
                    self.error(id, ErrorCode::Unauthorized, "invalid token");
                }
            }
            Command::Ping => self.reply(encode::pong(id)),
        }
    }

    /// Subscribes to every channel or to none. The reply is queued ahead of any message of
    /// these channels (see [`Outbox::reserve`]).
    fn subscribe<S: AsRef<str>>(&mut self, id: Option<&Id>, channels: &[S]) {
        let new = channels
            .iter()
            .filter(|c| !self.subs.iter().any(|s| &**s == c.as_ref()))
            .count();
        let max = self.relay.config.max_subscriptions;
        if self.subs.len() + new > max {
            return self.error(
                id,
                ErrorCode::TooManySubscriptions,
                "this subscribe would exceed the subscription limit per connection",
            );
        }
        let Some(slot) = self.outbox.reserve() else {
            return; // closing
        };
        let me = Subscriber {
            conn: self.conn,
            outbox: self.outbox.clone(),
            raw: self.raw,
        };
        let mut positions = Vec::with_capacity(channels.len());
        let before = self.subs.len();
        for name in channels {
            let name = name.as_ref();
            match self.relay.hub.subscribe(name, &me) {
                Ok(pos) => {
                    if !self.subs.iter().any(|s| &**s == name) {
                        self.subs.push(name.into());
                    }
                    positions.push(pos);
                }
                Err(code) => {
                    for gone in self.subs.drain(before..) {
                        self.relay.hub.unsubscribe(&gone, self.conn);
                    }
                    self.relay.metrics.error(code);
                    let frame =
                        encode::error(id, code, "the relay holds its maximum number of channels");
                    let _ = self.outbox.fill(slot, frame);
                    return;
                }
            }
        }
        let lines: Vec<SubscribedChannel<'_>> = channels
            .iter()
            .zip(&positions)
            .map(|(name, pos)| SubscribedChannel {
                channel: name.as_ref(),
                epoch: pos.epoch.as_str(),
                offset: pos.offset,
            })
            .collect();
        if self.outbox.fill(slot, encode::subscribed(id, &lines)) == Push::Overflow {
            self.relay
                .metrics
                .slow_consumer_closes
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn auth_reply(id: Option<&Id>) -> Bytes {
    let mut b = encode::FrameBuf::with_capacity(48);
    let p = b.payload();
    p.extend_from_slice(br#"{"type":"authenticated""#);
    if let Some(id) = id {
        p.extend_from_slice(br#","id":"#);
        p.extend_from_slice(id.as_json());
    }
    p.push(b'}');
    b.finish(encode::OP_TEXT)
}

/// Liveness clock shared by reader (touch on every frame) and writer (heartbeat check).
struct LastSeen {
    base: Instant,
    ms: AtomicU64,
}

impl LastSeen {
    fn new() -> Self {
        LastSeen {
            base: Instant::now(),
            ms: AtomicU64::new(0),
        }
    }
    fn touch(&self) {
        self.ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// How the reader ended.
enum End {
    /// The peer sent a close: echo this frame and finish.
    PeerClosed(Bytes),
    /// We fail the connection with this code.
    Fail(Fail),
    /// The peer is gone (EOF, reset).
    Gone,
}

fn fail_for(e: &WebSocketError) -> End {
    match e {
        WebSocketError::FrameTooLarge => End::Fail((1009, "message too big")),
        WebSocketError::InvalidUTF8 => End::Fail((1007, "invalid UTF-8 in text message")),
        WebSocketError::ReservedBitsNotZero => {
            End::Fail((1002, "reserved bits set (no extension negotiated)"))
        }
        WebSocketError::ControlFrameFragmented => End::Fail((1002, "fragmented control frame")),
        WebSocketError::PingFrameTooLarge => End::Fail((1002, "control frame over 125 bytes")),
        WebSocketError::InvalidValue => End::Fail((1002, "unknown opcode")),
        WebSocketError::InvalidFragment | WebSocketError::InvalidContinuationFrame => {
            End::Fail((1002, "invalid fragmentation"))
        }
        WebSocketError::InvalidCloseFrame | WebSocketError::InvalidCloseCode => {
            End::Fail((1002, "invalid close frame"))
        }
        _ => End::Gone,
    }
}

/// RFC 6455 §5.1: a server must close on an unmasked client frame. fastwebsockets
/// keeps the mask private; the header it would write back shows it (`fmt_head`).
fn is_masked(frame: &mut fastwebsockets::Frame<'_>) -> bool {
    let mut head = [0u8; 16];
    frame.fmt_head(&mut head);
    head[1] & 0x80 != 0
}

/// Close codes a peer may send (RFC 6455 §7.4 and the IANA registry): 1000–1003,
/// 1007–1014, and 3000–4999 for libraries and applications.
pub fn close_code_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn on_close(payload: &[u8]) -> End {
    match payload.len() {
        0 => End::PeerClosed(encode::frame(encode::OP_CLOSE, &[])),
        1 => End::Fail((1002, "close frame with a 1-byte payload")),
        n if n > encode::MAX_CONTROL_PAYLOAD => End::Fail((1002, "control frame over 125 bytes")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code_valid(code) {
                End::Fail((1002, "invalid close code"))
            } else if std::str::from_utf8(&payload[2..]).is_err() {
                End::Fail((1007, "close reason is not UTF-8"))
            } else {
                End::PeerClosed(encode::close_frame(code, ""))
            }
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut ws: WebSocketRead<R>,
    mut session: Session,
    last_seen: Arc<LastSeen>,
    max_message: usize,
) {
    let mut asm = Reassembler::new(max_message);
    // auto_pong and auto_close are off, so fastwebsockets never has a frame to send.
    let mut no_send = |_| async { Ok::<(), std::convert::Infallible>(()) };
    let end = loop {
        let mut frame = match ws.read_frame(&mut no_send).await {
            Ok(f) => f,
            Err(e) => break fail_for(&e),
        };
        last_seen.touch();
        if !is_masked(&mut frame) {
            break End::Fail((1002, "client frames must be masked"));
        }
        let op = match frame.opcode {
            OpCode::Close => break on_close(&frame.payload),
            OpCode::Ping => {
                session.reply(encode::frame(encode::OP_PONG, &frame.payload));
                continue;
            }
            OpCode::Pong if frame.payload.len() > encode::MAX_CONTROL_PAYLOAD => {
                break End::Fail((1002, "control frame over 125 bytes"))
            }
            OpCode::Pong => continue,
            OpCode::Text => DataOp::Text,
            OpCode::Binary => DataOp::Binary,
            OpCode::Continuation => DataOp::Continuation,
        };
        let closing = match asm.push(frame.fin, op, &frame.payload) {
            Err(f) => Some(f),
            Ok(Step::More) => None,
            Ok(Step::Whole { text }) => session.on_message(text, frame.payload.to_mut()),
            Ok(Step::Assembled { text, mut payload }) => session.on_message(text, &mut payload),
        };
        if let Some(f) = closing {
            break End::Fail(f);
        }
    };
    match end {
        End::PeerClosed(reply) => {
            session.outbox.close_with(reply);
        }
        End::Gone => session.outbox.abort(),
        End::Fail((code, reason)) => {
            session.outbox.close_with(encode::close_frame(code, reason));
            // Wait for the peer's close (or EOF); the session aborts this after
            // close_timeout. Anything else the peer sends meanwhile is discarded.
            loop {
                match ws.read_frame(&mut no_send).await {
                    Ok(f) if f.opcode == OpCode::Close => break,
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
        }
    }
}

const PING: Bytes = Bytes::from_static(&[0x89, 0x00]);

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    outbox: &Outbox,
    relay: &Relay,
    last_seen: &LastSeen,
) {
    let cfg = &relay.config;
    let beat = cfg.heartbeat();
    let mut next_beat = Instant::now() + beat;
    let mut shutdown = relay.shutdown_signal();
    let mut draining = false;
    let mut batch = VecDeque::new();
    let grace = Duration::from_millis(cfg.slow_close_grace_ms);
    loop {
        if !draining && *shutdown.borrow() {
            draining = true;
            outbox.close_with(encode::close_frame(1001, "server shutting down"));
        }
        if Instant::now() >= next_beat {
            next_beat += beat;
            if last_seen.silent_for() >= cfg.idle_timeout() {
                outbox.close_with(encode::close_frame(1001, "heartbeat timeout"));
            } else {
                outbox.push(&PING);
            }
        }
        let taken = outbox.take(&mut batch);
        if batch.is_empty() {
            if taken.last {
                break;
            }
            tokio::select! {
                _ = outbox.ready() => {}
                _ = tokio::time::sleep_until(next_beat) => {}
                _ = shutdown.changed(), if !draining => {}
            }
            continue;
        }
        let res = tokio::select! {
            r = writer::write_batch(&mut w, &batch) => r,
            _ = outbox.doomed(grace) => Err(std::io::ErrorKind::TimedOut.into()),
        };
        batch.clear();
        outbox.release(taken.bytes);
        match res {
            Ok(n) => {
                relay
                    .metrics
                    .bytes_out
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => {
                outbox.abort();
                break;
            }
        }
        if taken.last {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
}

/// Runs a connection whose handshake is complete, until it is closed. `read` and
/// `write` are the two halves of the upgraded stream.
pub async fn run<R, W>(read: R, write: W, relay: Arc<Relay>, params: Params)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &relay.config;
    let conn = relay.next_conn_id();
    let limit = match params.mode {
        Mode::Relay => cfg.queue_bytes,
        // Echo must hold a whole echoed message however small the queue setting is.
        Mode::Echo => cfg.queue_bytes.max(2 * cfg.max_message_bytes + 1024),
    };
    let outbox = Arc::new(Outbox::new(limit));
    let mut session = Session::new(relay.clone(), outbox.clone(), conn, &params);
    if params.mode == Mode::Relay {
        session.reply(encode::welcome(conn, cfg.heartbeat_ms));
        if !params.channels.is_empty() {
            session.subscribe(None, &params.channels);
        }
    }
    let (mut ws, _) = fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    // fastwebsockets refuses frames of `>= max` bytes; ours is inclusive.
    ws.set_max_message_size(cfg.max_message_bytes.saturating_add(1));
    let last_seen = Arc::new(LastSeen::new());
    let mut reader = tokio::spawn(read_loop(
        ws,
        session,
        last_seen.clone(),
        cfg.max_message_bytes,
    ));
    write_loop(write, &outbox, &relay, &last_seen).await;
    let close_timeout = Duration::from_millis(cfg.close_timeout_ms);
    if tokio::time::timeout(close_timeout, &mut reader)
        .await
        .is_err()
    {
        reader.abort();
        let _ = reader.await;
    }
    relay
        .metrics
        .dropped
        .fetch_add(outbox.dropped(), Ordering::Relaxed);
}
