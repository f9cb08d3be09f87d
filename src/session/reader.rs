//! The reader of a connection: bytes from the socket's read half, through
//! fastwebsockets' frame reader and fragment reassembly (and, for a compressed message,
//! inflation: see [`super::framing`] for how its frames get past fastwebsockets), into
//! the session.
//!
//! `read_frame` is not cancellation-safe, so it is never raced in a `select!`: the
//! reader is polled beside the writer (`session::Both`) and dropped after
//! `close_timeout` when the connection must end. A silent connection holds no frame buffer (see [`super::framing`]).

use bytes::Bytes;
use fastwebsockets::{OpCode, Role, WebSocketError, WebSocketRead};
use std::sync::Arc;
use tokio::io::AsyncRead;

use super::framing::{self, Tracked};
use super::reassembly::{DataOp, Reassembler, Step};
use super::Session;
use crate::dialect::Dialect;
use crate::protocol::close::{CloseCode, Fail};
use crate::protocol::encode;

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
        WebSocketError::FrameTooLarge => End::Fail((CloseCode::TOO_BIG, "message too big")),
        WebSocketError::InvalidUTF8 => {
            End::Fail((CloseCode::INVALID_DATA, "invalid UTF-8 in text message"))
        }
        WebSocketError::ReservedBitsNotZero => End::Fail((
            CloseCode::PROTOCOL,
            "reserved bits set (no extension negotiated)",
        )),
        WebSocketError::ControlFrameFragmented => {
            End::Fail((CloseCode::PROTOCOL, "fragmented control frame"))
        }
        WebSocketError::PingFrameTooLarge => {
            End::Fail((CloseCode::PROTOCOL, "control frame over 125 bytes"))
        }
        WebSocketError::InvalidValue => End::Fail((CloseCode::PROTOCOL, "unknown opcode")),
        WebSocketError::InvalidFragment | WebSocketError::InvalidContinuationFrame => {
            End::Fail((CloseCode::PROTOCOL, "invalid fragmentation"))
        }
        WebSocketError::InvalidCloseFrame | WebSocketError::InvalidCloseCode => {
            End::Fail((CloseCode::PROTOCOL, "invalid close frame"))
        }
        WebSocketError::IoError(e) => io_end(e),
        _ => End::Gone,
    }
}

fn io_end(e: &std::io::Error) -> End {
    if e.kind() == std::io::ErrorKind::InvalidData && e.to_string() == framing::UNMASKED {
        End::Fail((CloseCode::PROTOCOL, framing::UNMASKED))
    } else {
        End::Gone
    }
}

fn on_close(payload: &[u8]) -> End {
    match payload.len() {
        0 => End::PeerClosed(encode::frame(encode::OP_CLOSE, &[])),
        1 => End::Fail((CloseCode::PROTOCOL, "close frame with a 1-byte payload")),
        n if n > encode::MAX_CONTROL_PAYLOAD => {
            End::Fail((CloseCode::PROTOCOL, "control frame over 125 bytes"))
        }
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !CloseCode(code).valid_from_peer() {
                End::Fail((CloseCode::PROTOCOL, "invalid close code"))
            } else if std::str::from_utf8(&payload[2..]).is_err() {
                End::Fail((CloseCode::INVALID_DATA, "close reason is not UTF-8"))
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

/// What one frame does to the connection. `compressed`: the frame began a compressed
/// message, and was text if `Some(true)` (its opcode now says binary).
fn on_frame<D: Dialect>(
    frame: &mut fastwebsockets::Frame<'_>,
    compressed: Option<bool>,
    session: &mut Session<D>,
    asm: &mut Reassembler,
) -> Option<End> {
    let op = match frame.opcode {
        OpCode::Close => return Some(on_close(&frame.payload)),
        OpCode::Ping => {
            return match session.admit_control() {
                None => {
                    session.pong(encode::frame(encode::OP_PONG, &frame.payload));
                    None
                }
                Some(end) => end.map(End::Fail),
            };
        }
        OpCode::Pong if frame.payload.len() > encode::MAX_CONTROL_PAYLOAD => {
            return Some(End::Fail((
                CloseCode::PROTOCOL,
                "control frame over 125 bytes",
            )))
        }
        OpCode::Pong => return None,
        OpCode::Text => DataOp::Text,
        OpCode::Binary if compressed == Some(true) => DataOp::Text,
        OpCode::Binary => DataOp::Binary,
        OpCode::Continuation => DataOp::Continuation,
    };
    let inflating = compressed.is_some() || asm.inflating();
    let pushed = asm.push_frame(frame.fin, op, &frame.payload, compressed.is_some());
    if inflating && matches!(pushed, Ok(Step::Assembled { .. })) {
        let m = &session.relay.metrics;
        m.messages_inflated
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let closing = match pushed {
        Err(f) => Some(f),
        Ok(Step::More) => None,
        Ok(Step::Whole { text }) => session.on_message(text, frame.payload.to_mut()),
        Ok(Step::Assembled { text, mut payload }) => session.on_message(text, &mut payload),
    };
    closing.map(End::Fail)
}

/// Reads the client's frames until the connection ends. A silent connection holds no
/// frame buffer: fastwebsockets' reader (and its 8 KiB buffer) exists only while the
/// client has sent bytes that are not yet handled (see [`framing`]). Nor does it hold
/// the frame reader's state: a burst of frames is read by a boxed future made when
/// bytes arrive, so what an idle connection keeps here is the session, the socket and
/// the reassembler. (A plain function: an `async fn`'s arguments would be kept in its
/// future beside the locals they are moved into.)
pub(super) fn read_loop<R: AsyncRead + Unpin, D: Dialect>(
    read: R,
    session: Session<D>,
    max_message: usize,
) -> impl std::future::Future<Output = ()> {
    let mut src = Tracked::new(read);
    if session.outbox.deflate().on() {
        src = src.with_deflate();
    }
    let conn = Reading {
        rest: src.rest(),
        src,
        asm: Reassembler::new(max_message),
        returned: 0,
        max_message,
    };
    conn.run(session)
}

/// A connection's read side between bursts.
struct Reading<R> {
    src: Tracked<R>,
    rest: Arc<framing::Rest>,
    asm: Reassembler,
    /// Frames fastwebsockets has returned (matched against the tracker's count).
    returned: u64,
    max_message: usize,
}

impl<R: AsyncRead + Unpin> Reading<R> {
    /// The read loop. An `async` block, not an `async fn`: an `async fn` keeps its
    /// arguments and the locals they are bound to side by side (rust-lang/rust#62958),
    /// which doubled this, the largest part of an idle connection.
    #[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
    fn run<D: Dialect>(mut self, mut session: Session<D>) -> impl std::future::Future<Output = ()> {
        async move {
            if session.pending_due(true) {
                Box::pin(session.run_pending()).await; // `?channels=` through the backplane
            }
            let end = loop {
                match self.src.fill().await {
                    Ok(0) => break End::Gone,
                    Ok(_) => {}
                    Err(e) => break io_end(&e),
                }
                if let Some(end) = Box::pin(self.burst(&mut session)).await {
                    break end;
                }
            };
            // Commands read before the end still run (a publisher may close right after its
            // last publish), as they would without a backplane.
            if session.pending_due(true) {
                let _ = Box::pin(session.run_pending()).await;
            }
            match end {
                End::PeerClosed(reply) => {
                    session.outbox.close_with(reply);
                }
                End::Gone => session.outbox.abort(),
                End::Fail((code, reason)) => {
                    session
                        .outbox
                        .close_with(session.dialect.close(code, reason));
                    // Wait for the peer's close (or EOF); the session drops this after
                    // close_timeout. Anything else the peer sends meanwhile is discarded.
                    Box::pin(self.until_close()).await;
                }
            }
        }
    }

    /// Reads and handles frames until nothing more is buffered. `Some` when the
    /// connection must end.
    async fn burst<D: Dialect>(&mut self, session: &mut Session<D>) -> Option<End> {
        let deflate = session.outbox.deflate().on();
        // auto_pong and auto_close are off, so fastwebsockets never has a frame to send.
        let mut no_send = |_| async { Ok::<(), std::convert::Infallible>(()) };
        let mut ws = frame_reader(&mut self.src, self.max_message);
        loop {
            let mut frame = match ws.read_frame(&mut no_send).await {
                Ok(f) => f,
                Err(e) => return Some(fail_for(&e)),
            };
            self.returned += 1;
            session.outbox.seen().touch();
            let compressed = match deflate {
                true => self.rest.compressed(self.returned),
                false => None,
            };
            if let Some(end) = on_frame(&mut frame, compressed, session, &mut self.asm) {
                return Some(end);
            }
            let idle = self.rest.drained(self.returned);
            if session.pending_due(idle) {
                // Backplane work, run once nothing more is buffered (so a publisher's
                // burst is one script run).
                if let Some(fail) = Box::pin(session.run_pending()).await {
                    return Some(End::Fail(fail));
                }
            }
            if idle {
                return None; // nothing buffered: drop the reader until the client sends again
            }
        }
    }

    /// Discards frames until the peer's close, EOF or an error.
    async fn until_close(&mut self) {
        let mut no_send = |_| async { Ok::<(), std::convert::Infallible>(()) };
        let mut ws = frame_reader(&mut self.src, self.max_message);
        loop {
            match ws.read_frame(&mut no_send).await {
                Ok(f) if f.opcode == OpCode::Close => break,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
}
