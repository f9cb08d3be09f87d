//! The edge's one task: the WebSocket to the upstream relay, which subscribes to what
//! local clients want (with `recover` from what the hub mirrored), mirrors every message
//! into the hub with the upstream's offsets, forwards publishes, and reconnects (see the
//! [module docs](super)).

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use simd_json::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::{wire, Request, Upstream};
use crate::error::ErrorCode;
use crate::hub::{Epoch, Hub, Position, Published, Sequenced};
use crate::namespace::Namespaces;
use crate::protocol::json;
use crate::shutdown::Drain;

/// Channels per upstream subscribe / unsubscribe command.
const PER_COMMAND: usize = 256;
/// Frames read ahead of the task by the reader.
const READ_AHEAD: usize = 256;

/// What the task needs of the relay.
pub struct Ctx<'a> {
    /// The hub mirrored into.
    pub hub: &'a Hub,
    /// Namespaces (which channels keep a last value).
    pub namespaces: &'a Namespaces,
    /// Shutdown.
    pub drain: &'a Drain,
    /// `--max-message-bytes`.
    pub max_message: usize,
}

/// Runs the edge's upstream connection until shutdown, reconnecting with a backoff of
/// 50 ms doubling to 1 s and trying the `--upstream` URLs in order.
pub async fn run(ctx: Ctx<'_>, up: Arc<Upstream>) {
    let Some(mut inbox) = up.inbox.lock().take() else {
        return;
    };
    let mut backoff = Duration::from_millis(50);
    let mut connected_before = false;
    let mut next = 0;
    loop {
        let target = up.targets[next % up.targets.len()].clone();
        let started = Instant::now();
        let r = connection(&ctx, &up, &target, &mut inbox, &mut connected_before).await;
        up.up.store(false, Ordering::Relaxed);
        *up.current.lock() = None;
        up.wanted.lost();
        // Publishes queued while down are answered at once.
        while let Ok(req) = inbox.try_recv() {
            let _ = req.reply.send(Err(ErrorCode::Unavailable));
        }
        match r {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(upstream = %target.url, error = %e, "upstream: connection lost")
            }
        }
        if started.elapsed() > Duration::from_secs(5) {
            backoff = Duration::from_millis(50);
        } else {
            next += 1; // failed fast: try the next upstream
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = ctx.drain.wait_started() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// What the reader hands the task.
enum Event {
    Text(Bytes),
    Ping(Bytes),
    Closed(String),
}

/// A forwarded batch waiting for its answers.
struct Inflight {
    first_id: u64,
    results: Vec<Option<Result<Published, ErrorCode>>>,
    reply: Option<tokio::sync::oneshot::Sender<Result<Vec<Published>, ErrorCode>>>,
}

/// One connection's state.
#[derive(Default)]
struct Conn {
    subscribed: HashSet<String>,
    /// The upstream's epoch of each subscribed channel.
    epochs: HashMap<String, Epoch>,
    /// Channels answered but not loaded yet: loaded when this offset is mirrored.
    loading: HashMap<String, u64>,
    inflight: Vec<Inflight>,
    next_id: u64,
    /// Channels subscribed again to load their history (once per connection).
    reloaded: HashSet<String>,
}

async fn connection(
    ctx: &Ctx<'_>,
    up: &Arc<Upstream>,
    target: &super::Target,
    inbox: &mut mpsc::Receiver<Request>,
    connected_before: &mut bool,
) -> Result<(), String> {
    let (stream, path) = tokio::time::timeout(
        Duration::from_secs(5),
        wire::connect(target, up.token.as_deref(), &up.node),
    )
    .await
    .map_err(|_| "upgrade timed out".to_string())?
    .inspect_err(|e| {
        if e.starts_with("loop") {
            up.loops.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    if path.split(',').any(|n| n.trim() == up.node) {
        up.loops.fetch_add(1, Ordering::Relaxed);
        return Err(format!(
            "loop: this relay ({}) is upstream of {} (chain {path})",
            up.node, target.url
        ));
    }
    let mut ws = WebSocket::after_handshake(stream, Role::Client);
    ws.set_auto_pong(false);
    ws.set_auto_close(false);
    ws.set_max_message_size(ctx.max_message + 64 * 1024);
    let (mut rd, mut wr) = ws.split(tokio::io::split);
    let (tx, mut events) = mpsc::channel(READ_AHEAD);
    let reader = tokio::spawn(async move {
        let mut none = |_| async { Ok::<(), std::convert::Infallible>(()) };
        loop {
            let ev = match rd.read_frame(&mut none).await {
                Ok(f) => match f.opcode {
                    OpCode::Text => Event::Text(Bytes::copy_from_slice(&f.payload)),
                    OpCode::Ping => Event::Ping(Bytes::copy_from_slice(&f.payload)),
                    OpCode::Close => Event::Closed("the upstream closed".into()),
                    _ => continue,
                },
                Err(e) => Event::Closed(e.to_string()),
            };
            let end = matches!(ev, Event::Closed(_));
            if tx.send(ev).await.is_err() || end {
                return;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    // The welcome comes first.
    match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        Ok(Some(Event::Text(t))) if t.windows(9).any(|w| w == b"\"welcome\"") => {}
        _ => return Err("no welcome from the upstream".into()),
    }
    *up.current.lock() = Some((target.url.clone(), path));
    up.up.store(true, Ordering::Relaxed);
    if *connected_before {
        up.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    *connected_before = true;
    tracing::info!(upstream = %target.url, "upstream: connected");
    let mut conn = Conn {
        next_id: 1,
        ..Conn::default()
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let out: Vec<Bytes> = tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Text(t)) => on_text(ctx, up, &mut conn, &t),
                Some(Event::Ping(p)) => {
                    wr.write_frame(Frame::pong(Payload::Owned(p.to_vec()))).await.map_err(|e| e.to_string())?;
                    Vec::new()
                }
                Some(Event::Closed(why)) => return Err(why),
                None => return Err("reader gone".into()),
            },
            _ = up.wanted.notified() => sync(ctx, up, &mut conn),
            _ = tick.tick() => sync(ctx, up, &mut conn),
            req = inbox.recv() => match req {
                Some(req) => forward(&mut conn, req),
                None => return Ok(()),
            },
            _ = ctx.drain.wait_started() => return Ok(()),
        };
        for cmd in out {
            wr.write_frame(Frame::text(Payload::Owned(cmd.to_vec())))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The subscribe and unsubscribe commands that bring the upstream subscription in line
/// with what is wanted; a subscribe recovers from what the hub mirrored.
fn sync(ctx: &Ctx<'_>, up: &Upstream, conn: &mut Conn) -> Vec<Bytes> {
    let (add, drop) = up.wanted.diff(&conn.subscribed);
    let mut out = Vec::new();
    for chunk in add.chunks(PER_COMMAND) {
        let mut c = br#"{"op":"subscribe","channels":["#.to_vec();
        for (i, ch) in chunk.iter().enumerate() {
            if i > 0 {
                c.push(b',');
            }
            json::push_str(&mut c, ch);
        }
        c.extend_from_slice(br#"],"recover":{"#);
        let mut first = true;
        for ch in chunk {
            let Some(p) = ctx.hub.position(ch).filter(|p| p.offset > 0) else {
                continue;
            };
            if !first {
                c.push(b',');
            }
            first = false;
            json::push_str(&mut c, ch);
            c.extend_from_slice(br#":{"epoch":"#);
            json::push_str(&mut c, p.epoch.as_str());
            c.extend_from_slice(br#","offset":"#);
            json::push_u64(&mut c, p.offset);
            c.push(b'}');
        }
        c.extend_from_slice(b"}}");
        out.push(Bytes::from(c));
    }
    for chunk in drop.chunks(PER_COMMAND) {
        let mut c = br#"{"op":"unsubscribe","channels":["#.to_vec();
        for (i, ch) in chunk.iter().enumerate() {
            if i > 0 {
                c.push(b',');
            }
            json::push_str(&mut c, ch);
        }
        c.extend_from_slice(b"]}");
        out.push(Bytes::from(c));
    }
    conn.subscribed.extend(add);
    for c in &drop {
        conn.subscribed.remove(c);
        conn.epochs.remove(c);
        conn.loading.remove(c);
    }
    out
}

/// The publish commands of a forwarded batch, ids from the connection's sequence.
fn forward(conn: &mut Conn, req: Request) -> Vec<Bytes> {
    let first_id = conn.next_id;
    conn.next_id += req.items.len() as u64;
    let mut out = Vec::with_capacity(req.items.len());
    for (i, (channel, data)) in req.items.iter().enumerate() {
        let mut c = Vec::with_capacity(64 + channel.len() + data.len());
        c.extend_from_slice(br#"{"op":"publish","id":"#);
        json::push_u64(&mut c, first_id + i as u64);
        c.extend_from_slice(br#","channel":"#);
        json::push_str(&mut c, channel);
        c.extend_from_slice(br#","data":"#);
        c.extend_from_slice(data);
        c.push(b'}');
        out.push(Bytes::from(c));
    }
    conn.inflight.push(Inflight {
        first_id,
        results: (0..req.items.len()).map(|_| None).collect(),
        reply: Some(req.reply),
    });
    out
}

/// One text frame from the upstream; returns the commands it calls for.
fn on_text(ctx: &Ctx<'_>, up: &Upstream, conn: &mut Conn, t: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    if let Some(m) = wire::message(t) {
        mirror(ctx, up, conn, &m);
        return out;
    }
    let mut buf = t.to_vec();
    let Ok(tape) = simd_json::to_tape(&mut buf) else {
        tracing::warn!("upstream: a frame that is not JSON, ignored");
        return out;
    };
    let root = tape.as_value();
    let Some(obj) = root.as_object() else {
        return out;
    };
    let kind = obj.get("type").and_then(|v| v.into_string()).unwrap_or("");
    let id = obj.get("id").and_then(|v| v.as_u64());
    match kind {
        "subscribed" => {
            let Some(lines) = obj.get("channels").and_then(|v| v.as_array()) else {
                return out;
            };
            for line in lines.iter() {
                let Some(line) = line.as_object() else {
                    continue;
                };
                let channel = line.get("channel").and_then(|v| v.into_string());
                let epoch = line
                    .get("epoch")
                    .and_then(|v| v.into_string())
                    .and_then(Epoch::parse);
                let offset = line.get("offset").and_then(|v| v.as_u64());
                let recovered = line.get("recovered").and_then(|v| v.as_bool());
                if let (Some(c), Some(e), Some(o)) = (channel, epoch, offset) {
                    out.extend(answered(ctx, up, conn, c, e, o, recovered));
                }
            }
        }
        "reset" => {
            let channel = obj.get("channel").and_then(|v| v.into_string());
            let epoch = obj
                .get("epoch")
                .and_then(|v| v.into_string())
                .and_then(Epoch::parse);
            let offset = obj.get("offset").and_then(|v| v.as_u64());
            if let (Some(c), Some(e), Some(o)) = (channel, epoch, offset) {
                conn.epochs.insert(c.to_string(), e);
                let _ = ctx.hub.align(c, e, o);
            }
        }
        "published" => {
            let channel = obj
                .get("channel")
                .and_then(|v| v.into_string())
                .unwrap_or("");
            let offset = obj.get("offset").and_then(|v| v.as_u64()).unwrap_or(0);
            let epoch = obj
                .get("epoch")
                .and_then(|v| v.into_string())
                .and_then(Epoch::parse)
                .or_else(|| conn.epochs.get(channel).copied())
                .unwrap_or_else(|| Epoch::from_bits(0));
            let p = Published {
                position: Position { epoch, offset },
                delivered: 0,
            };
            answer(conn, id, Ok(p));
        }
        "error" => {
            let code = obj
                .get("code")
                .and_then(|v| v.into_string())
                .and_then(|n| ErrorCode::ALL.into_iter().find(|c| c.as_str() == n))
                .unwrap_or(ErrorCode::Unavailable);
            if id.is_some() {
                answer(conn, id, Err(code));
            } else {
                let msg = obj
                    .get("message")
                    .and_then(|v| v.into_string())
                    .unwrap_or("");
                tracing::warn!(code = code.as_str(), message = msg, "upstream: error");
            }
        }
        _ => {}
    }
    out
}

/// The upstream answered a subscribe for `channel`: it stands at epoch `e`, offset `o`.
fn answered(
    ctx: &Ctx<'_>,
    up: &Upstream,
    conn: &mut Conn,
    channel: &str,
    e: Epoch,
    o: u64,
    recovered: Option<bool>,
) -> Vec<Bytes> {
    if !conn.subscribed.contains(channel) {
        return Vec::new();
    }
    let here = ctx.hub.position(channel);
    let keep = ctx.namespaces.of(channel).history as u64;
    if here.is_none()
        && recovered != Some(true)
        && o > 0
        && keep > 0
        && conn.reloaded.insert(channel.to_string())
    {
        // A channel this edge never had: take its history too, not just the newest
        // message, so that clients recover here as at the upstream. Subscribed again,
        // recovering from `keep` messages back. Until that answer, this subscription's
        // messages (the snapshot) are not mirrored.
        conn.epochs.remove(channel);
        let mut c = br#"{"op":"unsubscribe","channels":["#.to_vec();
        json::push_str(&mut c, channel);
        c.extend_from_slice(b"]}");
        let mut s = br#"{"op":"subscribe","channels":["#.to_vec();
        json::push_str(&mut s, channel);
        s.extend_from_slice(br#"],"recover":{"#);
        json::push_str(&mut s, channel);
        s.extend_from_slice(br#":{"epoch":"#);
        json::push_str(&mut s, e.as_str());
        s.extend_from_slice(br#","offset":"#);
        json::push_u64(&mut s, o.saturating_sub(keep));
        s.extend_from_slice(b"}}}");
        return vec![Bytes::from(c), Bytes::from(s)];
    }
    conn.epochs.insert(channel.to_string(), e);
    if recovered == Some(true) {
        // The missed messages follow, up to `o`.
    } else if here
        != Some(Position {
            epoch: e,
            offset: o,
        })
    {
        if recovered == Some(false) {
            up.resyncs.fetch_add(1, Ordering::Relaxed);
        }
        // The newest message follows as a snapshot when the channel keeps one: stand
        // just before it (a reliable channel's subscribers are told of the jump).
        let snapshot = o > 0 && ctx.namespaces.of(channel).history > 0;
        let _ = ctx.hub.align(channel, e, if snapshot { o - 1 } else { o });
    }
    let at = ctx.hub.position(channel).map_or(0, |p| p.offset);
    if at >= o {
        up.wanted.loaded(channel);
    } else {
        conn.loading.insert(channel.to_string(), o);
    }
    Vec::new()
}

/// Mirrors one message with the upstream's position.
fn mirror(ctx: &Ctx<'_>, up: &Upstream, conn: &mut Conn, m: &wire::Msg<'_>) {
    let Some(&epoch) = conn.epochs.get(m.channel) else {
        return; // not subscribed (any more)
    };
    let at = Sequenced {
        epoch,
        offset: m.offset,
        ts: m.ts,
    };
    if let Err(code) = ctx.hub.publish_at(m.channel, at, m.data) {
        tracing::warn!(
            channel = m.channel,
            code = code.as_str(),
            "upstream: message not mirrored"
        );
    }
    if conn.loading.get(m.channel).is_some_and(|o| m.offset >= *o) {
        conn.loading.remove(m.channel);
        up.wanted.loaded(m.channel);
    }
}

/// Records the upstream's answer to forwarded publish `id`; a batch complete is replied.
fn answer(conn: &mut Conn, id: Option<u64>, r: Result<Published, ErrorCode>) {
    let Some(id) = id else { return };
    let Some(k) = conn
        .inflight
        .iter()
        .position(|f| id >= f.first_id && id < f.first_id + f.results.len() as u64)
    else {
        return;
    };
    let f = &mut conn.inflight[k];
    f.results[(id - f.first_id) as usize] = Some(r);
    if f.results.iter().all(Option::is_some) {
        let f = conn.inflight.remove(k);
        let all: Result<Vec<Published>, ErrorCode> = f.results.into_iter().flatten().collect();
        if let Some(reply) = f.reply {
            let _ = reply.send(all);
        }
    }
}
