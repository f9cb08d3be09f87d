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

pub mod access;
pub mod framing;
pub mod reassembly;
pub mod writer;

use bytes::Bytes;
use fastwebsockets::{OpCode, Role, WebSocketError, WebSocketRead};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::error::ErrorCode;
use crate::hub::outbox::{Outbox, Push};
use crate::hub::{Recover, Subscriber};
use crate::namespace::Delivery;
use crate::protocol::command::{self, Command, Id, RecoverFrom, Request};
use crate::protocol::encode::{self, SubscribedChannel};
use crate::server::Relay;
use framing::Tracked;
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
    /// The credentials shown at the upgrade.
    pub identity: crate::auth::Identity,
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
    access: access::Access,
    /// Subscribed channels with their hub ids.
    subs: Vec<(Box<str>, u64)>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for (name, _) in self.subs.drain(..) {
            self.relay.hub.unsubscribe(&name, self.conn);
        }
    }
}

impl Session {
    fn new(relay: Arc<Relay>, outbox: Arc<Outbox>, conn: u64, params: &Params) -> Self {
        let access = access::Access::new(&relay, params.identity.clone());
        Session {
            relay,
            outbox,
            conn,
            raw: params.raw,
            mode: params.mode,
            access,
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
        if let Some(end) = self.admit(payload) {
            return end;
        }
        match command::parse(payload) {
            Err(e) => self.error(e.id.as_ref(), e.code, e.message),
            Ok(Request { id, command }) => self.on_command(id.as_ref(), command),
        }
        None
    }

    fn on_command(&mut self, id: Option<&Id>, command: Command<'_>) {
        match command {
            Command::Subscribe {
                channels,
                recover,
                max_rate,
            } => self.subscribe(id, &channels, &recover, max_rate),
            Command::Unsubscribe { channels } => {
                for name in channels.iter() {
                    if let Some(i) = self.subs.iter().position(|(s, _)| &**s == *name) {
                        let (_, key) = self.subs.swap_remove(i);
                        self.relay.hub.unsubscribe(name, self.conn);
                        self.outbox.forget(key);
                    }
                }
                self.reply(encode::unsubscribed(id, &channels));
            }
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
                match self.relay.hub.publish(channel, &data) {
                    Ok(p) => self.reply(encode::published(id, channel, p.position.offset)),
                    Err(code) => {
                        self.error(id, code, "the relay holds its maximum number of channels")
                    }
                }
            }
            Command::Auth { token } => self.authenticate(id, token),
            Command::Ping => self.reply(encode::pong(id)),
        }
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
            return self.error(
                id,
                ErrorCode::BadRequest,
                "max_rate applies to conflate channels only (reliable messages are never skipped)",
            );
        }
        let max = self.relay.config.max_subscriptions;
        if self.subs.len() + new > max {
            return self.error(
                id,
                ErrorCode::TooManySubscriptions,
                "this subscribe would exceed the subscription limit per connection",
            );
        }
        if !self.may_subscribe(id, channels) {
            return;
        }
        if let Err(code) = self.relay.hub.ensure_channels(channels) {
            return self.error(id, code, "the relay holds its maximum number of channels");
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
            let from = recover.iter().find(|r| r.channel == name).map(|r| Recover {
                epoch: r.epoch,
                offset: r.offset,
            });
            match self.relay.hub.subscribe(name, &me, from) {
                Ok(sub) => {
                    if !self.subs.iter().any(|(s, _)| &**s == name) {
                        self.subs.push((name.into(), sub.key));
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
            .map(|(name, s)| SubscribedChannel {
                channel: name.as_ref(),
                epoch: s.position.epoch.as_str(),
                offset: s.position.offset,
                recovered: s.recovered,
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
        WebSocketError::IoError(e) => io_end(e),
        _ => End::Gone,
    }
}

fn io_end(e: &std::io::Error) -> End {
    if e.kind() == std::io::ErrorKind::InvalidData && e.to_string() == framing::UNMASKED {
        End::Fail((1002, framing::UNMASKED))
    } else {
        End::Gone
    }
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

/// A fastwebsockets reader over `src` with the relay's settings.
fn frame_reader<R: AsyncRead + Unpin>(src: R, max_message: usize) -> WebSocketRead<R> {
    let (mut ws, _) = fastwebsockets::after_handshake_split(src, tokio::io::sink(), Role::Server);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    // fastwebsockets refuses frames of `>= max` bytes; ours is inclusive.
    ws.set_max_message_size(max_message.saturating_add(1));
    ws
}

/// What one frame does to the connection.
fn on_frame(
    frame: &mut fastwebsockets::Frame<'_>,
    session: &mut Session,
    asm: &mut Reassembler,
) -> Option<End> {
    let op = match frame.opcode {
        OpCode::Close => return Some(on_close(&frame.payload)),
        OpCode::Ping => {
            session.reply(encode::frame(encode::OP_PONG, &frame.payload));
            return None;
        }
        OpCode::Pong if frame.payload.len() > encode::MAX_CONTROL_PAYLOAD => {
            return Some(End::Fail((1002, "control frame over 125 bytes")))
        }
        OpCode::Pong => return None,
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
    closing.map(End::Fail)
}

/// Reads the client's frames until the connection ends. A silent connection holds no
/// frame buffer: fastwebsockets' reader (and its 8 KiB buffer) exists only while the
/// client has sent bytes that are not yet handled (see [`framing`]).
async fn read_loop<R: AsyncRead + Unpin>(
    read: R,
    mut session: Session,
    last_seen: Arc<LastSeen>,
    max_message: usize,
) {
    let mut src = Tracked::new(read);
    let rest = src.rest();
    let mut asm = Reassembler::new(max_message);
    // auto_pong and auto_close are off, so fastwebsockets never has a frame to send.
    let mut no_send = |_| async { Ok::<(), std::convert::Infallible>(()) };
    let mut returned = 0u64;
    let end = 'conn: loop {
        match src.fill().await {
            Ok(0) => break End::Gone,
            Ok(_) => {}
            Err(e) => break io_end(&e),
        }
        let mut ws = frame_reader(&mut src, max_message);
        loop {
            let mut frame = match ws.read_frame(&mut no_send).await {
                Ok(f) => f,
                Err(e) => break 'conn fail_for(&e),
            };
            returned += 1;
            last_seen.touch();
            if let Some(end) = on_frame(&mut frame, &mut session, &mut asm) {
                break 'conn end;
            }
            if rest.drained(returned) {
                break; // nothing buffered: drop the reader until the client sends again
            }
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
            let mut ws = frame_reader(&mut src, max_message);
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

/// The close every connection gets when the relay shuts down.
pub fn shutdown_close() -> Bytes {
    encode::close_frame(1001, "server shutting down")
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    outbox: &Outbox,
    relay: &Relay,
    last_seen: &LastSeen,
    deadline: &crate::auth::Deadline,
) {
    let cfg = &relay.config;
    let beat = cfg.heartbeat();
    let mut next_beat = Instant::now() + beat;
    let mut batch = VecDeque::new();
    let grace = Duration::from_millis(cfg.slow_close_grace_ms);
    // Shutdown reaches the writer through the outbox (see `Relay::close_all`), not through
    // a watch each wait would have to register with. The timer is made per wait: one kept
    // for the life of the connection saved ~15% of the instructions per delivery but cost
    // ~380 B of RSS per idle connection (W3 5.65 -> 6.05 KiB), and W2 did not move.
    loop {
        let now = Instant::now();
        if let Some(reason) = deadline.fire(now) {
            outbox.close_with(encode::close_frame(crate::auth::CLOSE_AUTH, reason));
        }
        if now >= next_beat {
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
            let mut wake_at = taken
                .next_due
                .map_or(next_beat, |due| next_beat.min(due.into()));
            if let Some(d) = deadline.due() {
                wake_at = wake_at.min(d);
            }
            tokio::select! {
                biased;
                _ = outbox.ready() => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
            continue;
        }
        // Most writes complete at once; only a write that has to wait for the socket is
        // raced against the slow-consumer grace.
        let res = {
            let write = writer::write_batch(&mut w, &batch);
            tokio::pin!(write);
            match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
                Poll::Ready(r) => r,
                Poll::Pending => tokio::select! {
                    r = &mut write => r,
                    _ = outbox.doomed(grace) => Err(std::io::ErrorKind::TimedOut.into()),
                },
            }
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

/// Unregisters a connection's outbox however its task ends.
struct Registered(Arc<Relay>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.unregister(self.1);
    }
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
    let outbox = Arc::new(Outbox::with_lanes(
        limit,
        cfg.conflate_after_bytes,
        Duration::from_millis(cfg.lagging_notice_ms),
    ));
    relay.register(conn, outbox.clone());
    let _registered = Registered(relay.clone(), conn);
    // Registered before this check, so a shutdown either sees this outbox in its walk
    // or has already raised the flag seen here.
    if relay.is_shutting_down() {
        outbox.close_with(shutdown_close());
    }
    let mut session = Session::new(relay.clone(), outbox.clone(), conn, &params);
    if params.mode == Mode::Relay {
        session.reply(encode::welcome(conn, cfg.heartbeat_ms));
        session.connect(params.channels);
    }
    let last_seen = Arc::new(LastSeen::new());
    let deadline = session.access.deadline.clone();
    let mut reader = tokio::spawn(read_loop(
        read,
        session,
        last_seen.clone(),
        cfg.max_message_bytes,
    ));
    write_loop(write, &outbox, &relay, &last_seen, &deadline).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection's tasks are mostly their futures' state: keep it small. (The
    /// writer once held its 64-entry `IoSlice` array across the await: +1 KB a connection.)
    #[test]
    fn session_futures_stay_small() {
        let relay = Relay::new(crate::Config::default());
        let (a, b) = tokio::io::duplex(64);
        let (r, w) = tokio::io::split(a);
        let params = Params {
            mode: Mode::Relay,
            raw: false,
            identity: Default::default(),
            channels: vec![],
        };
        let run_size = std::mem::size_of_val(&run(r, w, relay.clone(), params));
        let outbox = Outbox::new(10);
        let last_seen = LastSeen::new();
        let (_r, w) = tokio::io::split(b);
        let deadline = crate::auth::Deadline::default();
        let write_size =
            std::mem::size_of_val(&write_loop(w, &outbox, &relay, &last_seen, &deadline));
        let (batch, mut sink) = (VecDeque::new(), tokio::io::sink());
        let batch_size = std::mem::size_of_val(&writer::write_batch(&mut sink, &batch));
        assert!(batch_size <= 128, "write_batch future: {batch_size} bytes");
        assert!(write_size <= 768, "write_loop future: {write_size} bytes");
        assert!(run_size <= 1200, "run future: {run_size} bytes");
    }
}
