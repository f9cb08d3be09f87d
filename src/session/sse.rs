//! The session of a `GET /sse` event stream (the request side is
//! [`crate::http::sse`]).
//!
//! An event stream is a [`Session`] like a WebSocket connection (the same access rules,
//! subscription limit, outbox with its lanes and queue bound, registry, shutdown), in the
//! `sse` format ([`crate::protocol::sse`]), with no reader: the client sends nothing
//! after its request. [`Stream::pump`] moves the outbox into the response body through a
//! bounded channel and writes a comment line every `--heartbeat-ms`. A client that goes
//! away drops the body, which ends the pump; one that stops reading fills its queue and
//! is closed as a slow consumer, or its connection is dropped by the HTTP write timeout.

use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use super::{Params, Registered, Session};
use crate::auth::Identity;
use crate::dialect::{Dialect, Inbound};
use crate::outbox::Outbox;
use crate::protocol::close::CloseCode;
use crate::protocol::command::RecoverFrom;
use crate::protocol::format::Format;
use crate::protocol::sse;
use crate::relay::{Conn, Relay};

/// The event-stream dialect: messages and notices as events, nothing read.
#[derive(Debug, Clone, Copy)]
pub struct Sse;

impl Dialect for Sse {
    const NAME: &'static str = "sse";

    fn format(&self) -> Format {
        Format::SSE
    }

    fn inbound<'a>(&mut self, _text: bool, _payload: &'a mut [u8]) -> Inbound<'a> {
        Inbound::Fail((CloseCode::UNSUPPORTED, "an event stream reads nothing"))
    }

    fn heartbeat(&self) -> &'static [u8] {
        sse::HEARTBEAT
    }
}

/// An open event stream: registered, welcomed and subscribed.
pub struct Stream {
    session: Session<Sse>,
    _registered: Registered,
}

impl Stream {
    /// Opens a stream for `who` (whose access to every channel the caller has checked)
    /// and subscribes it to `channels`. With `last` (a `Last-Event-ID`: an epoch and
    /// offset), the channel whose epoch that is recovers from that offset and every other
    /// channel answers `recovered: false` (an id names one channel's position).
    pub fn open(
        relay: &Arc<Relay>,
        peer: SocketAddr,
        who: Identity,
        channels: &[String],
        last: Option<(&str, u64)>,
    ) -> Stream {
        let cfg = &relay.config;
        let conn = relay.next_conn_id();
        let outbox = Arc::new(
            Outbox::with_lanes(
                cfg.queue_bytes,
                cfg.conflate_after_bytes,
                Duration::from_millis(cfg.lagging_notice_ms),
            )
            .for_format(Format::SSE),
        );
        relay.register(
            conn,
            Conn {
                outbox: outbox.clone(),
                peer,
                since: std::time::Instant::now(),
                dialect: Sse::NAME,
            },
        );
        let registered = Registered(relay.clone(), conn);
        if relay.is_shutting_down() {
            outbox.close_with(crate::relay::shutdown_close(Format::SSE));
        }
        let params = Params {
            identity: who,
            channels: Vec::new(),
            peer,
            deflate: Default::default(),
        };
        let mut session = Session::new(relay.clone(), outbox, conn, Sse, &params);
        if let Some(w) = session.dialect.welcome(conn, cfg.heartbeat_ms) {
            session.reply(w);
        }
        let recover: Vec<RecoverFrom<'_>> = match last {
            None => Vec::new(),
            Some((epoch, offset)) => channels
                .iter()
                .map(|c| {
                    let here = relay.hub.position(c);
                    match here.filter(|p| p.epoch.as_str() == epoch) {
                        Some(_) => RecoverFrom {
                            channel: c,
                            epoch,
                            offset,
                        },
                        None => RecoverFrom {
                            channel: c,
                            epoch: "",
                            offset: 0,
                        },
                    }
                })
                .collect(),
        };
        session.subscribe(None, channels, &recover, None);
        Stream {
            session,
            _registered: registered,
        }
    }

    /// Moves the outbox into `tx` until the stream ends: the close event was sent, the
    /// client went away, the connection was doomed (slow consumer), or its token expired.
    /// Then unsubscribes and unregisters.
    pub async fn pump(self, tx: mpsc::Sender<Bytes>) {
        let cfg = &self.session.relay.config;
        let heartbeat = Duration::from_millis(cfg.heartbeat_ms.max(1));
        let grace = Duration::from_millis(cfg.slow_close_grace_ms);
        pump(&self.session.outbox, &tx, heartbeat, grace).await;
        self.session.outbox.abort();
    }
}

async fn pump(outbox: &Outbox, tx: &mpsc::Sender<Bytes>, heartbeat: Duration, grace: Duration) {
    let ping = Bytes::from_static(sse::HEARTBEAT);
    let deadline = outbox.deadline();
    let mut batch = VecDeque::new();
    loop {
        let t = outbox.take(&mut batch);
        for frame in batch.drain(..) {
            if frame.is_empty() {
                continue;
            }
            tokio::select! {
                sent = tx.send(frame) => if sent.is_err() { return },
                _ = outbox.doomed(grace) => return,
            }
        }
        outbox.release(t.bytes);
        if t.last {
            return;
        }
        if t.bytes > 0 {
            continue;
        }
        let due = t.next_due;
        let auth_due = deadline.due();
        tokio::select! {
            _ = outbox.ready() => {}
            _ = tx.closed() => return,
            _ = tokio::time::sleep(heartbeat) => {
                if tx.send(ping.clone()).await.is_err() {
                    return;
                }
            }
            _ = sleep_until(due), if due.is_some() => {}
            _ = sleep_until(auth_due), if auth_due.is_some() => {
                if let Some(reason) = deadline.fire(tokio::time::Instant::now()) {
                    outbox.close_with(Format::SSE.close(CloseCode::AUTH, reason));
                }
            }
        }
    }
}

async fn sleep_until<I: Into<tokio::time::Instant>>(at: Option<I>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
