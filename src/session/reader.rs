//! The reader task of a connection: bytes from the socket's read half, through
//! fastwebsockets' frame reader and fragment reassembly (and, for a compressed message,
//! inflation: see [`super::framing`] for how its frames get past fastwebsockets), into
//! the session.
//!
//! `read_frame` is not cancellation-safe, so it is never raced in a `select!`: the
//! reader runs in its own task and is aborted after `close_timeout` when the connection
//! must end. A silent connection holds no frame buffer (see [`super::framing`]).

use bytes::Bytes;
use fastwebsockets::{OpCode, Role, WebSocketError, WebSocketRead};
use std::sync::Arc;
use tokio::io::AsyncRead;

use super::framing::{self, Tracked};
use super::reassembly::{DataOp, Reassembler, Step};
use super::writer::LastSeen;
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
/// client has sent bytes that are not yet handled (see [`framing`]).
pub(super) async fn read_loop<R: AsyncRead + Unpin, D: Dialect>(
    read: R,
    mut session: Session<D>,
    last_seen: Arc<LastSeen>,
    max_message: usize,
) {
    let deflate = session.outbox.deflate().on();
    let mut src = Tracked::new(read);
    if deflate {
        src = src.with_deflate();
    }
    let rest = src.rest();
    let mut asm = Reassembler::new(max_message);
    // auto_pong and auto_close are off, so fastwebsockets never has a frame to send.
    let mut no_send = |_| async { Ok::<(), std::convert::Infallible>(()) };
    let mut returned = 0u64;
    if session.pending_due(true) {
        Box::pin(session.run_pending()).await; // `?channels=` through the backplane
    }
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
            let compressed = if deflate {
                rest.compressed(returned)
            } else {
                None
            };
            if let Some(end) = on_frame(&mut frame, compressed, &mut session, &mut asm) {
                break 'conn end;
            }
            let idle = rest.drained(returned);
            if session.pending_due(idle) {
                // Backplane work, run once nothing more is buffered (so a publisher's
                // burst is one script run); boxed: it is rare, and this future is held
                // by every idle connection.
                if let Some(fail) = Box::pin(session.run_pending()).await {
                    break 'conn End::Fail(fail);
                }
            }
            if idle {
                break; // nothing buffered: drop the reader until the client sends again
            }
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
