//! The backplane's one task: the pub/sub connection to Redis, which subscribes to what
//! this node wants, mirrors every message into the hub in order, repairs gaps from the
//! stream, heartbeats, and reconnects (see the [module docs](super)).

use bytes::{Buf, BytesMut};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

use super::resp::{self, Value};
use super::script::Wire;
use super::Backplane;
use crate::hub::{Hub, Sequenced};
use crate::shutdown::Drain;

/// Stream entries read per round trip of a repair.
const REPAIR_BATCH: usize = 512;
/// Channels per SUBSCRIBE / UNSUBSCRIBE command.
const PER_COMMAND: usize = 128;

/// What the task mirrors into: the relay's hub (the relay itself, which owns it).
pub trait Mirror: Send + Sync + 'static {
    /// The hub messages are mirrored into (with `publish_at` and `align`).
    fn hub(&self) -> &Hub;
}

/// Runs the pub/sub connection until `drain` starts, reconnecting with a backoff of
/// 50 ms doubling to 1 s. `max_message` bounds one pushed message (`--max-message-bytes`).
pub async fn run<M: Mirror>(
    relay: Arc<M>,
    bp: Arc<Backplane>,
    drain: Arc<Drain>,
    max_message: usize,
) {
    let relay = Ctx {
        hub: relay.hub(),
        drain: &drain,
        max_message,
    };
    let relay = &relay;
    let mut backoff = Duration::from_millis(50);
    let mut connected_before = false;
    loop {
        let started = Instant::now();
        let r = connection(relay, &bp, &mut connected_before).await;
        bp.up.store(false, Ordering::Relaxed);
        bp.wanted.lost();
        match r {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "backplane: pub/sub connection lost"),
        }
        if started.elapsed() > Duration::from_secs(5) {
            backoff = Duration::from_millis(50);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = relay.drain.wait_started() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// What the task's functions need of the relay.
struct Ctx<'a> {
    hub: &'a Hub,
    drain: &'a Drain,
    max_message: usize,
}

/// One pub/sub connection, until it fails (`Err`) or the relay shuts down (`Ok`).
async fn connection(
    relay: &Ctx<'_>,
    bp: &Arc<Backplane>,
    connected_before: &mut bool,
) -> Result<(), String> {
    let info = bp.client.get_connection_info();
    let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
        return Err("not a TCP address".into());
    };
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect((host.as_str(), *port)),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let limit = relay.max_message + 64 * 1024;
    let settings = info.redis_settings();
    if let Some(pw) = settings.password() {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = settings.username() {
            args.push(user.as_bytes());
        }
        args.push(pw.as_bytes());
        send(&mut wr, &args).await?;
        if let Value::Error(e) = next_value(&mut rd, &mut buf, limit).await? {
            return Err(String::from_utf8_lossy(&e).into_owned());
        }
    }
    send(&mut wr, &[b"SUBSCRIBE", bp.keys.nodes().as_bytes()]).await?;
    let mut subscribed = HashSet::new();
    sync(bp, &mut wr, &mut subscribed).await?;
    bp.up.store(true, Ordering::Relaxed);
    if *connected_before {
        bp.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::info!("backplane: reconnected to Redis");
    }
    *connected_before = true;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    loop {
        while let Some((v, used)) = resp::parse(&buf).map_err(|_| "malformed reply")? {
            buf.advance(used);
            on_value(relay, bp, &subscribed, v).await?;
        }
        if buf.len() > limit {
            return Err("pub/sub frame over the message size limit".into());
        }
        buf.reserve(16 * 1024);
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => return Err("Redis closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            },
            _ = bp.wanted.notified() => sync(bp, &mut wr, &mut subscribed).await?,
            _ = tick.tick() => sync(bp, &mut wr, &mut subscribed).await?,
            _ = beat.tick() => {
                let bp = bp.clone();
                tokio::spawn(async move { bp.beat().await });
            }
            _ = relay.drain.wait_started() => return Ok(()),
        }
    }
}

async fn send(wr: &mut OwnedWriteHalf, args: &[&[u8]]) -> Result<(), String> {
    wr.write_all(&resp::command(args))
        .await
        .map_err(|e| e.to_string())
}

async fn next_value(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Value, String> {
    loop {
        if let Some((v, used)) = resp::parse(buf).map_err(|_| "malformed reply")? {
            buf.advance(used);
            return Ok(v);
        }
        if buf.len() > limit {
            return Err("reply over the limit".into());
        }
        buf.reserve(4096);
        if rd.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("Redis closed the connection".into());
        }
    }
}

/// Subscribes to what is wanted and not subscribed, unsubscribes from what is no longer
/// wanted (lingered out).
async fn sync(
    bp: &Backplane,
    wr: &mut OwnedWriteHalf,
    subscribed: &mut HashSet<String>,
) -> Result<(), String> {
    let (add, drop) = bp.wanted.diff(subscribed);
    for (verb, list) in [(&b"SUBSCRIBE"[..], &add), (b"UNSUBSCRIBE", &drop)] {
        for chunk in list.chunks(PER_COMMAND) {
            let names: Vec<String> = chunk.iter().map(|c| bp.keys.pubsub(c)).collect();
            let mut args: Vec<&[u8]> = vec![verb];
            args.extend(names.iter().map(|n| n.as_bytes()));
            send(wr, &args).await?;
        }
    }
    subscribed.extend(add);
    for c in &drop {
        subscribed.remove(c);
    }
    Ok(())
}

/// One reply or pushed message from the pub/sub connection.
async fn on_value(
    relay: &Ctx<'_>,
    bp: &Backplane,
    subscribed: &HashSet<String>,
    v: Value,
) -> Result<(), String> {
    let Value::Array(parts) = v else {
        if let Value::Error(e) = v {
            tracing::warn!(error = %String::from_utf8_lossy(&e), "backplane: Redis error");
        }
        return Ok(());
    };
    let (Some(kind), Some(name)) = (
        parts.first().and_then(Value::bytes),
        parts.get(1).and_then(Value::bytes),
    ) else {
        return Ok(());
    };
    let name = std::str::from_utf8(name).unwrap_or("");
    match kind {
        b"message" => {
            let Some(payload) = parts.get(2).and_then(Value::bytes) else {
                return Ok(());
            };
            if name == bp.keys.nodes() {
                let node = String::from_utf8_lossy(payload).into_owned();
                bp.nodes.lock().insert(node, Instant::now());
            } else if let Some(channel) = bp.keys.channel_of(name) {
                mirror(relay, bp, channel, payload).await?;
            }
        }
        b"subscribe" => {
            let Some(channel) = bp.keys.channel_of(name) else {
                return Ok(());
            };
            if !subscribed.contains(channel) {
                return Ok(());
            }
            // Everything published from now on arrives on this connection, after what
            // the stream already holds: load that first.
            repair(relay, bp, channel).await?;
            bp.wanted.loaded(channel);
        }
        _ => {}
    }
    Ok(())
}

/// Mirrors one pushed message: the next offset goes straight to the hub; anything else
/// (a gap, another epoch, a channel not loaded) is repaired from the stream first.
async fn mirror(
    relay: &Ctx<'_>,
    bp: &Backplane,
    channel: &str,
    payload: &[u8],
) -> Result<(), String> {
    let Some(w) = Wire::parse(payload) else {
        tracing::warn!(channel, "backplane: malformed message ignored");
        return Ok(());
    };
    match relay.hub.position(channel) {
        Some(p) if p.epoch == w.epoch && w.offset == p.offset + 1 => {}
        Some(p) if p.epoch == w.epoch && w.offset <= p.offset => return Ok(()),
        _ => repair(relay, bp, channel).await?,
    }
    let at = Sequenced {
        epoch: w.epoch,
        offset: w.offset,
        ts: w.ts,
    };
    if let Err(code) = relay.hub.publish_at(channel, at, w.data) {
        tracing::warn!(
            channel,
            code = code.as_str(),
            "backplane: message not mirrored"
        );
    }
    Ok(())
}

/// Brings the hub's copy of `channel` up to Redis's: the stream's entries after the hub's
/// position (all of them for another epoch), then the head position itself (a new epoch
/// with no message yet, or entries trimmed or expired). An error ends the connection:
/// the repair runs again when it is back.
async fn repair(relay: &Ctx<'_>, bp: &Backplane, channel: &str) -> Result<(), String> {
    let ttl = bp.namespaces.of(channel).history_ttl;
    loop {
        let (epoch, since) = relay.hub.position(channel).map_or((String::new(), 0), |p| {
            (p.epoch.as_str().to_string(), p.offset)
        });
        let (e, head, entries) = bp
            .read(channel, &epoch, since, REPAIR_BATCH)
            .await
            .map_err(|_| "stream read failed".to_string())?;
        let full = entries.len() == REPAIR_BATCH;
        let last = entries.last().map_or(0, |x| x.0);
        let now = crate::hub::now_ms();
        let mut moved = false;
        for (offset, ts, data) in entries {
            if ttl.is_some_and(|t| now.saturating_sub(ts) > t.as_millis() as u64) {
                continue; // too old to serve: skipped, the history restarts after it
            }
            let at = Sequenced {
                epoch: e,
                offset,
                ts,
            };
            moved |= matches!(relay.hub.publish_at(channel, at, &data), Ok(Some(_)));
        }
        if moved {
            bp.repairs.fetch_add(1, Ordering::Relaxed);
        }
        if full {
            // A batch that only held expired entries still moves the position on.
            let _ = relay.hub.align(channel, e, last);
            continue;
        }
        if matches!(relay.hub.align(channel, e, head), Ok(true)) {
            tracing::info!(channel, epoch = e.as_str(), "backplane: channel reset");
        }
        return Ok(());
    }
}

impl Backplane {
    /// Announces this node on the heartbeat channel.
    async fn beat(&self) {
        let Ok(mut conn) = self.connection().await else {
            return;
        };
        let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(self.keys.nodes())
            .arg(&self.node)
            .query_async(&mut conn)
            .await;
        if let Err(e) = r {
            self.broken(&e).await;
        }
    }
}
