//! An Engine.IO long-polling session (the request side is [`crate::http::socketio`]):
//! a [`Session`] that outlives every HTTP request, speaking [`SocketIo`].
//!
//! The session is the same as a WebSocket's (access rules, subscription limit, outbox
//! with its lanes and queue bound, command rate limit, registry, shutdown); only its
//! reader and writer differ. A POST feeds its packets to the session like frames, a
//! held GET takes everything queued and answers it joined by `\x1e` (the payloads of
//! the shared frames, not copies). One task per session ([`Polling::run`]) owns the
//! connection slots, sends the ping `2` every `--heartbeat-ms`, ends a session whose
//! client has not sent anything (its pong included) for 2.5 intervals, and carries out
//! the upgrade: it answers the probe on the new WebSocket (`2probe` → `3probe`), ends
//! the held GET with a noop `6`, waits for `5`, and then runs the very same session
//! (subscriptions, queued frames) on the WebSocket.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};

use super::{Params, Registered, Session};
use crate::auth::Identity;
use crate::dialect::{Dialect, SocketIo};
use crate::outbox::LastSeen;
use crate::outbox::Outbox;
use crate::protocol::close::{CloseCode, HEARTBEAT_TIMEOUT};
use crate::protocol::format::Format;
use crate::protocol::socketio as sio;
use crate::relay::{Conn, Relay};

/// How long an upgrade may wait for the client's `5` after the probe.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request may do to a polling session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The session moved to a WebSocket, or ended.
    Gone,
    /// A second GET or POST while one is under way (the session is closed).
    Overlap,
}

/// An upgraded connection handed to the session's task.
pub type Upgraded = hyper::upgrade::Upgraded;

/// One long-polling session, shared by its requests and its task.
pub struct Polling {
    /// The session id.
    pub sid: String,
    outbox: Arc<Outbox>,
    session: tokio::sync::Mutex<Option<Session<SocketIo>>>,
    registered: Mutex<Option<Registered>>,
    last_seen: LastSeen,
    getting: AtomicBool,
    posting: AtomicBool,
    /// Set once the session is over or on a WebSocket: requests get 400.
    gone: AtomicBool,
    ended: Notify,
    upgrade: Mutex<Option<oneshot::Sender<Upgraded>>>,
    upgrade_rx: Mutex<Option<oneshot::Receiver<Upgraded>>>,
}

/// Clears a request's busy flag however the request ends (a client that goes away
/// drops its held GET).
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Polling {
    /// Opens a session for `who` (registered, its open packet queued).
    pub fn open(relay: &Arc<Relay>, peer: SocketAddr, who: Identity) -> Arc<Polling> {
        let cfg = &relay.config;
        let conn = relay.next_conn_id();
        let outbox = Arc::new(
            Outbox::with_lanes(
                cfg.queue_bytes,
                cfg.conflate_after_bytes,
                Duration::from_millis(cfg.lagging_notice_ms),
            )
            .for_format(Format::SOCKETIO),
        );
        relay.register(
            conn,
            Conn {
                outbox: outbox.clone(),
                peer,
                since: std::time::Instant::now(),
                dialect: "socketio-polling",
            },
        );
        let registered = Registered(relay.clone(), conn);
        if relay.is_shutting_down() {
            outbox.close_with(crate::relay::shutdown_close(Format::SOCKETIO));
        }
        let sid = crate::dialect::socketio::new_sid();
        let dialect = SocketIo::new(
            sid.clone(),
            true,
            cfg.max_message_bytes,
            cfg.max_subscriptions,
        );
        let params = Params {
            identity: who,
            channels: Vec::new(),
            peer,
            deflate: Default::default(), // long-polling: no WebSocket extension
        };
        let mut session = Session::new(relay.clone(), outbox.clone(), conn, dialect, &params);
        session.dialect.attach(conn, cfg.heartbeat_ms);
        if let Some(w) = session.dialect.welcome(conn, cfg.heartbeat_ms) {
            session.reply(w);
        }
        session.connect(Vec::new()); // the CONNECT deadline
        let (tx, rx) = oneshot::channel();
        let last_seen = LastSeen::new();
        last_seen.touch();
        Arc::new(Polling {
            sid,
            outbox,
            session: tokio::sync::Mutex::new(Some(session)),
            registered: Mutex::new(Some(registered)),
            last_seen,
            getting: AtomicBool::new(false),
            posting: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            ended: Notify::new(),
            upgrade: Mutex::new(Some(tx)),
            upgrade_rx: Mutex::new(Some(rx)),
        })
    }

    fn end(&self) {
        self.gone.store(true, Ordering::Release);
        self.ended.notify_waiters();
        self.ended.notify_one();
    }

    fn overlap(&self) -> Refused {
        self.outbox
            .close_with(encode_close(CloseCode::PROTOCOL, "overlapping requests"));
        self.end();
        Refused::Overlap
    }

    /// A long poll: waits until something is queued, then takes all of it, as the
    /// Engine.IO packets of one response (to join with `\x1e`).
    pub async fn poll(&self) -> Result<Vec<Bytes>, Refused> {
        if self.gone.load(Ordering::Acquire) {
            return Err(Refused::Gone);
        }
        if self.getting.swap(true, Ordering::AcqRel) {
            return Err(self.overlap());
        }
        let _busy = Busy(&self.getting);
        let mut batch = VecDeque::new();
        let mut out = Vec::new();
        loop {
            let ready = self.outbox.ready();
            let t = self.outbox.take(&mut batch);
            for frame in batch.drain(..) {
                sio::payloads_of(&frame, &mut out);
            }
            self.outbox.release(t.bytes);
            if t.last {
                self.end();
                if out.is_empty() {
                    out.push(Bytes::from_static(sio::CLOSE));
                }
                return Ok(out);
            }
            if !out.is_empty() {
                return Ok(out);
            }
            if self.gone.load(Ordering::Acquire) {
                return Err(Refused::Gone);
            }
            let ended = self.ended.notified();
            tokio::select! {
                _ = ready => {}
                _ = ended => {}
                _ = sleep_until(t.next_due) => {}
            }
        }
    }

    /// A POST body: its packets, read as the session reads WebSocket messages.
    pub async fn post(&self, body: &mut [u8]) -> Result<(), Refused> {
        if self.gone.load(Ordering::Acquire) {
            return Err(Refused::Gone);
        }
        if self.posting.swap(true, Ordering::AcqRel) {
            return Err(self.overlap());
        }
        let _busy = Busy(&self.posting);
        self.last_seen.touch();
        let mut guard = self.session.lock().await;
        let Some(session) = guard.as_mut() else {
            return Err(Refused::Gone);
        };
        for packet in body.split_mut(|b| *b == sio::SEPARATOR) {
            if let Some((code, reason)) = session.on_message(true, packet) {
                session
                    .outbox
                    .close_with(session.dialect.close(code, reason));
                break;
            }
            if session.pending_due(true) {
                if let Some((code, reason)) = Box::pin(session.run_pending()).await {
                    session
                        .outbox
                        .close_with(session.dialect.close(code, reason));
                    break;
                }
            }
        }
        Ok(())
    }

    /// Whether the session has ended or moved to a WebSocket.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Hands an upgraded connection (a WebSocket naming this session) to the task.
    /// False if an upgrade is already under way.
    pub fn upgrade(&self, io: Upgraded) -> bool {
        match self.upgrade.lock().take() {
            Some(tx) => tx.send(io).is_ok(),
            None => false,
        }
    }

    /// The session's task: pings, the liveness check, the upgrade. Returns when the
    /// session is over (on whichever transport).
    pub async fn run(self: Arc<Self>, relay: Arc<Relay>) {
        let cfg = &relay.config;
        let interval = Duration::from_millis(cfg.heartbeat_ms.max(1));
        let silence = interval * 5 / 2;
        let grace = Duration::from_millis(cfg.slow_close_grace_ms);
        let outbox = match self.session.lock().await.as_ref() {
            Some(s) => s.outbox.clone(),
            None => return,
        };
        let deadline = outbox.deadline();
        let ping = Bytes::from_static(&sio::PING_FRAME);
        let Some(mut upgrade) = self.upgrade_rx.lock().take() else {
            return;
        };
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let io = loop {
            let ended = self.ended.notified();
            if self.gone.load(Ordering::Acquire) {
                break None;
            }
            let auth_due = deadline.due();
            tokio::select! {
                _ = tick.tick() => {
                    if self.last_seen.silent_for() > silence {
                        self.outbox.close_with(encode_close(CloseCode::GOING_AWAY, HEARTBEAT_TIMEOUT));
                        break None;
                    }
                    self.outbox.push(&ping);
                }
                io = &mut upgrade => match io {
                    Ok(io) => break Some(io),
                    Err(_) => break None,
                },
                _ = ended => break None,
                _ = self.outbox.doomed(grace) => break None,
                _ = sleep_until(auth_due), if auth_due.is_some() => {
                    if let Some(reason) = deadline.fire(tokio::time::Instant::now()) {
                        self.outbox.close_with(encode_close(CloseCode::AUTH, reason));
                    }
                }
            }
        };
        let Some(io) = io else {
            // Give a held GET the chance to carry the close, then drop the session.
            let _ = tokio::time::timeout(grace, async {
                while self.getting.load(Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            self.end();
            self.drop_session().await;
            return;
        };
        let Some((mut r, mut w)) = crate::stream::halves::halves(io) else {
            self.end();
            self.drop_session().await;
            return;
        };
        if !self.probe(&mut r, &mut w).await {
            // A probe that fails or times out ends the session (one upgrade per
            // session); the client reconnects.
            self.end();
            self.drop_session().await;
            return;
        }
        self.gone.store(true, Ordering::Release);
        self.ended.notify_waiters();
        let session = self.session.lock().await.take();
        let registered = self.registered.lock().take();
        if let (Some(session), Some(registered)) = (session, registered) {
            super::resume(r, w, relay.clone(), session, registered).await;
        }
    }

    async fn drop_session(&self) {
        self.outbox.abort();
        let session = self.session.lock().await.take();
        drop(session);
        self.registered.lock().take();
    }

    /// The upgrade probe on the new WebSocket: `2probe` → `3probe`, the held poll ends
    /// with `6`, then the client's `5`. False if it does not go that way in time.
    async fn probe<R, W>(&self, r: &mut R, w: &mut W) -> bool
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let steps = async {
            if read_text(r).await?.as_slice() != sio::PROBE {
                return None;
            }
            w.write_all(&sio::text_frame(sio::PROBE_REPLY)).await.ok()?;
            self.outbox.push(&sio::text_frame(sio::NOOP));
            loop {
                let t = read_text(r).await?;
                if t.as_slice() == b"5" {
                    return Some(());
                }
            }
        };
        matches!(
            tokio::time::timeout(UPGRADE_TIMEOUT, steps).await,
            Ok(Some(()))
        )
    }
}

fn encode_close(code: CloseCode, reason: &str) -> Bytes {
    crate::protocol::encode::close_frame(code.get(), reason)
}

/// Largest probe-phase frame read (`2probe`, `5`; anything longer fails the upgrade).
const MAX_PROBE_FRAME: usize = 125;

/// Reads one masked client text frame of at most [`MAX_PROBE_FRAME`] bytes, exactly
/// (nothing past it is read, so the session's reader starts at the next frame).
async fn read_text<R: AsyncRead + Unpin>(r: &mut R) -> Option<Vec<u8>> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await.ok()?;
    let len = usize::from(head[1] & 0x7f);
    if head[0] != 0x81 || head[1] & 0x80 == 0 || len > MAX_PROBE_FRAME {
        return None;
    }
    let mut mask = [0u8; 4];
    r.read_exact(&mut mask).await.ok()?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.ok()?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Some(payload)
}

async fn sleep_until<I: Into<tokio::time::Instant>>(at: Option<I>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
