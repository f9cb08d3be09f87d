//! `GET /stats` (JSON), `GET /metrics` (Prometheus text) and `GET /health`.

use hyper::StatusCode;
use std::fmt::Write as _;

use super::{json, text, Resp};
use crate::error::ErrorCode;
use crate::metrics::Metrics;
use crate::protocol::format::Format;
use crate::protocol::json as j;
use crate::relay::Relay;

/// How many channels `/stats` lists (most subscribed first).
pub const STATS_CHANNELS: usize = 1000;

/// How many connections `/stats` lists as the slowest consumers (furthest behind first).
pub const STATS_SLOWEST: usize = 20;

/// Upper bounds of the `/metrics` buckets of per-connection lag, ms.
const LAG_BUCKETS_MS: [u64; 10] = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];

/// Upper bounds of the `/metrics` buckets of per-connection queued bytes.
const QUEUED_BUCKETS: [u64; 7] = [0, 1024, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

/// Serves the three read-only endpoints. `/stats` lists private channels (their names
/// say which users are online) only to the publish key or an admin token
/// (`Authorization: Bearer`); `/stats` and `/metrics` answer from a snapshot at most
/// `--stats-cache-ms` old.
pub fn handle(path: &str, headers: &hyper::HeaderMap, relay: &Relay) -> Resp {
    let ttl = std::time::Duration::from_millis(relay.config.stats_cache_ms);
    match path {
        "/health" if relay.is_shutting_down() => text(StatusCode::SERVICE_UNAVAILABLE, "draining"),
        "/health" => match (&relay.backplane, &relay.upstream) {
            (None, None) => json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()),
            // An edge with its upstream down still serves what it has, and reconnects.
            (None, Some(up)) if up.is_up() => json(
                StatusCode::OK,
                br#"{"status":"ok","upstream":"up"}"#.to_vec(),
            ),
            (None, Some(_)) => json(
                StatusCode::OK,
                br#"{"status":"degraded","upstream":"down"}"#.to_vec(),
            ),
            // Still 200 with Redis down: subscribers are served (and repaired when it
            // returns); only publishes fail, on every node alike.
            (Some(bp), _) if bp.is_up() => json(
                StatusCode::OK,
                br#"{"status":"ok","backplane":"up"}"#.to_vec(),
            ),
            (Some(_), _) => json(
                StatusCode::OK,
                br#"{"status":"degraded","backplane":"down"}"#.to_vec(),
            ),
        },
        "/stats" => {
            let trusted = match super::upgrade::bearer(headers) {
                None => false,
                Some(t) => match crate::auth::check(relay.keys(), t) {
                    Ok(cred) => {
                        let mut who = crate::auth::Identity::default();
                        cred.apply(&mut who);
                        who.trusted()
                    }
                    Err(reason) => return text(StatusCode::UNAUTHORIZED, reason),
                },
            };
            let body = relay
                .snapshots
                .get_or(trusted as usize, ttl, || stats_json(relay, trusted));
            json(StatusCode::OK, body.to_vec())
        }
        _ => {
            let body = relay
                .snapshots
                .get_or(2, ttl, || prometheus(relay).into_bytes());
            let mut r = text(StatusCode::OK, std::str::from_utf8(&body).unwrap_or(""));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
    }
}

/// One exported number: Prometheus name (after `tickrelay_`), `/stats` key, type, help.
struct Counter {
    prom: &'static str,
    json: &'static str,
    kind: &'static str,
    help: &'static str,
    value: u64,
}

fn counters(relay: &Relay) -> [Counter; 16] {
    let m = &relay.metrics;
    let g = Metrics::get;
    let c = |prom, json, kind, help, value| Counter {
        prom,
        json,
        kind,
        help,
        value,
    };
    [
        c(
            "connections",
            "connections",
            "gauge",
            "Open WebSocket connections.",
            g(&m.connections),
        ),
        c(
            "http_connections",
            "http_connections",
            "gauge",
            "Open plain HTTP connections (not upgraded; at most --max-http-connections).",
            relay.http_connections() as u64,
        ),
        c(
            "connections_total",
            "connections_total",
            "counter",
            "WebSocket connections accepted.",
            g(&m.connections_total),
        ),
        c(
            "handshake_rejects_total",
            "handshake_rejects",
            "counter",
            "Upgrade requests refused.",
            g(&m.handshake_rejects),
        ),
        c(
            "channels",
            "channels",
            "gauge",
            "Channels held.",
            relay.hub.channel_count() as u64,
        ),
        c(
            "subscriptions",
            "subscriptions",
            "gauge",
            "Subscriptions held.",
            g(&m.subscriptions),
        ),
        c(
            "messages_in_total",
            "messages_in",
            "counter",
            "Messages published.",
            g(&m.messages_in),
        ),
        c(
            "messages_out_total",
            "messages_out",
            "counter",
            "Messages queued to subscribers.",
            g(&m.messages_out),
        ),
        c(
            "bytes_out_total",
            "bytes_out",
            "counter",
            "Bytes written to WebSocket connections.",
            g(&m.bytes_out),
        ),
        c(
            "slow_consumer_closes_total",
            "slow_consumer_closes",
            "counter",
            "Connections closed as slow consumers.",
            g(&m.slow_consumer_closes),
        ),
        c(
            "dropped_messages_total",
            "dropped",
            "counter",
            "Frames discarded when slow consumers were closed.",
            g(&m.dropped),
        ),
        c(
            "queued_bytes",
            "queued_bytes",
            "gauge",
            "Bytes queued or being written, over all connections.",
            relay.queued_bytes(),
        ),
        c(
            "conflated_total",
            "conflated",
            "counter",
            "Conflate-lane messages replaced by a newer one for a lagging or rate-capped connection.",
            g(&m.conflated),
        ),
        c(
            "history_bytes",
            "history_bytes",
            "gauge",
            "Bytes held by channel history rings.",
            relay.hub.history_bytes(),
        ),
        c(
            "history_evictions_total",
            "history_evictions",
            "counter",
            "History messages forgotten for the byte cap or their TTL.",
            relay.hub.history_evictions(),
        ),
        c(
            "resident_memory_bytes",
            "rss_bytes",
            "gauge",
            "Resident memory of the relay process.",
            crate::metrics::rss_bytes(),
        ),
    ]
}

fn stats_json(relay: &Relay, trusted: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(br#"{"uptime_s":"#);
    j::push_u64(&mut out, relay.metrics.started.elapsed().as_secs());
    for c in counters(relay) {
        out.extend_from_slice(b",");
        j::push_str(&mut out, c.json);
        out.push(b':');
        j::push_u64(&mut out, c.value);
    }
    out.extend_from_slice(br#","errors":{"#);
    for (i, code) in ErrorCode::ALL.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        j::push_str(&mut out, code.as_str());
        out.push(b':');
        j::push_u64(&mut out, Metrics::get(&relay.metrics.errors[code.index()]));
    }
    out.extend_from_slice(br#"},"frames_built":{"#);
    for (i, f) in Format::ALL.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        j::push_str(&mut out, f.name());
        out.push(b':');
        j::push_u64(
            &mut out,
            Metrics::get(&relay.metrics.frames_built[f.index()]),
        );
    }
    out.extend_from_slice(br#"},"frames_deflated":{"#);
    for (i, f) in Format::ALL.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        j::push_str(&mut out, f.name());
        out.push(b':');
        j::push_u64(
            &mut out,
            Metrics::get(&relay.metrics.frames_deflated[f.index()]),
        );
    }
    out.extend_from_slice(br#"},"messages_inflated":"#);
    j::push_u64(&mut out, Metrics::get(&relay.metrics.messages_inflated));
    if let Some(bp) = &relay.backplane {
        backplane_json(&mut out, bp, &relay.metrics);
    }
    if let Some(up) = &relay.upstream {
        upstream_json(&mut out, up, &relay.metrics);
    }
    if let Some(tls) = &relay.config.tls_state {
        tls.push_json(&mut out);
    }
    out.extend_from_slice(br#","top_channels":["#);
    let ns = &relay.config.namespaces;
    // Anyone else sees public channels only.
    let shown = |name: &str| trusted || ns.owner(name).is_none();
    let top = relay.hub.top_channels_where(STATS_CHANNELS, shown);
    for (i, (name, subs)) in top.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"channel":"#);
        j::push_str(&mut out, name);
        out.extend_from_slice(br#","subscribers":"#);
        j::push_u64(&mut out, *subs as u64);
        out.push(b'}');
    }
    out.push(b']');
    if trusted {
        // Client addresses are for operators only, like private channel names.
        out.extend_from_slice(br#","slowest":["#);
        for (i, c) in relay.consumers().iter().take(STATS_SLOWEST).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"conn":"#);
            j::push_u64(&mut out, c.conn);
            out.extend_from_slice(br#","dialect":"#);
            j::push_str(&mut out, c.info.dialect);
            out.extend_from_slice(br#","address":"#);
            j::push_str(&mut out, &c.info.peer.to_string());
            out.extend_from_slice(br#","age_s":"#);
            j::push_u64(&mut out, c.info.since.elapsed().as_secs());
            out.extend_from_slice(br#","queued_bytes":"#);
            j::push_u64(&mut out, c.queued_bytes as u64);
            out.extend_from_slice(br#","lag_ms":"#);
            j::push_u64(&mut out, c.lag_ms);
            out.extend_from_slice(br#","conflated":"#);
            j::push_u64(&mut out, c.conflated);
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

/// A histogram over the connections open now (one observation each) in Prometheus text.
fn snapshot_histogram(s: &mut String, name: &str, help: &str, bounds: &[u64], values: &[u64]) {
    let _ = writeln!(
        s,
        "# HELP tickrelay_{name} {help}\n# TYPE tickrelay_{name} histogram"
    );
    for b in bounds {
        let n = values.iter().filter(|v| **v <= *b).count();
        let _ = writeln!(s, "tickrelay_{name}_bucket{{le=\"{b}\"}} {n}");
    }
    let _ = writeln!(s, "tickrelay_{name}_bucket{{le=\"+Inf\"}} {}", values.len());
    let _ = writeln!(s, "tickrelay_{name}_sum {}", values.iter().sum::<u64>());
    let _ = writeln!(s, "tickrelay_{name}_count {}", values.len());
}

/// `,"backplane":{"state":..,"node":..,"nodes":[..],"reconnects":N,..}`
fn backplane_json(out: &mut Vec<u8>, bp: &crate::backplane::Backplane, m: &Metrics) {
    out.extend_from_slice(br#","backplane":{"state":"#);
    j::push_str(out, bp.state());
    out.extend_from_slice(br#","node":"#);
    j::push_str(out, &bp.node);
    out.extend_from_slice(br#","nodes":["#);
    for (i, n) in bp.live_nodes().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        j::push_str(out, n);
    }
    out.push(b']');
    for (k, v) in backplane_counters(bp, m) {
        out.push(b',');
        j::push_str(out, k);
        out.push(b':');
        j::push_u64(out, v);
    }
    out.push(b'}');
}

/// The backplane's counters; `resets` is the relay's (a reset is the hub's, whichever
/// source moved the channel).
fn backplane_counters(bp: &crate::backplane::Backplane, m: &Metrics) -> [(&'static str, u64); 4] {
    let g = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    [
        ("reconnects", g(&bp.reconnects)),
        ("failed_publishes", g(&bp.failed_publishes)),
        ("repairs", g(&bp.repairs)),
        ("resets", g(&m.resets)),
    ]
}

fn backplane_prometheus(s: &mut String, bp: &crate::backplane::Backplane, m: &Metrics) {
    let _ = writeln!(s, "# HELP tickrelay_backplane_up Whether the pub/sub connection to Redis is up.\n# TYPE tickrelay_backplane_up gauge\ntickrelay_backplane_up {}", bp.is_up() as u8);
    let _ = writeln!(s, "# HELP tickrelay_backplane_nodes Relay nodes heard from on the heartbeat channel.\n# TYPE tickrelay_backplane_nodes gauge\ntickrelay_backplane_nodes {}", bp.live_nodes().len());
    for (k, v) in backplane_counters(bp, m) {
        let _ = writeln!(s, "# HELP tickrelay_backplane_{k}_total Backplane {k}.\n# TYPE tickrelay_backplane_{k}_total counter\ntickrelay_backplane_{k}_total {v}");
    }
}

fn prometheus(relay: &Relay) -> String {
    let mut s = String::with_capacity(2048);
    let _ = writeln!(s, "# HELP tickrelay_uptime_seconds Seconds since start.\n# TYPE tickrelay_uptime_seconds gauge");
    let _ = writeln!(
        s,
        "tickrelay_uptime_seconds {}",
        relay.metrics.started.elapsed().as_secs()
    );
    for c in counters(relay) {
        let (name, kind, help, v) = (c.prom, c.kind, c.help, c.value);
        let _ = writeln!(
            s,
            "# HELP tickrelay_{name} {help}\n# TYPE tickrelay_{name} {kind}\ntickrelay_{name} {v}"
        );
    }
    let _ = writeln!(s, "# HELP tickrelay_errors_total Error replies by code.\n# TYPE tickrelay_errors_total counter");
    for code in ErrorCode::ALL {
        let v = Metrics::get(&relay.metrics.errors[code.index()]);
        let _ = writeln!(
            s,
            "tickrelay_errors_total{{code=\"{}\"}} {v}",
            code.as_str()
        );
    }
    let _ = writeln!(s, "# HELP tickrelay_frames_built_total Message frames built, by wire format (once per message per format in use).\n# TYPE tickrelay_frames_built_total counter");
    for f in Format::ALL {
        let v = Metrics::get(&relay.metrics.frames_built[f.index()]);
        let _ = writeln!(
            s,
            "tickrelay_frames_built_total{{format=\"{}\"}} {v}",
            f.name()
        );
    }
    let _ = writeln!(s, "# HELP tickrelay_frames_deflated_total Message frames compressed (permessage-deflate), by wire format (once per message per format, whatever the subscriber count).\n# TYPE tickrelay_frames_deflated_total counter");
    for f in Format::ALL {
        let v = Metrics::get(&relay.metrics.frames_deflated[f.index()]);
        let _ = writeln!(
            s,
            "tickrelay_frames_deflated_total{{format=\"{}\"}} {v}",
            f.name()
        );
    }
    let _ = writeln!(s, "# HELP tickrelay_messages_inflated_total Client messages received compressed and inflated.\n# TYPE tickrelay_messages_inflated_total counter\ntickrelay_messages_inflated_total {}", Metrics::get(&relay.metrics.messages_inflated));
    let consumers = relay.consumers();
    let lags: Vec<u64> = consumers.iter().map(|c| c.lag_ms).collect();
    let queued: Vec<u64> = consumers.iter().map(|c| c.queued_bytes as u64).collect();
    snapshot_histogram(
        &mut s,
        "connection_lag_ms",
        "Open connections by lag: age of the oldest channel message not yet sent to each (ms), over the connections open at this scrape.",
        &LAG_BUCKETS_MS,
        &lags,
    );
    snapshot_histogram(
        &mut s,
        "connection_queued_bytes",
        "Open connections by bytes queued, in flight or held back, over the connections open at this scrape.",
        &QUEUED_BUCKETS,
        &queued,
    );
    if let Some(bp) = &relay.backplane {
        backplane_prometheus(&mut s, bp, &relay.metrics);
    }
    if let Some(up) = &relay.upstream {
        upstream_prometheus(&mut s, up, &relay.metrics);
    }
    if let Some(tls) = &relay.config.tls_state {
        tls.push_prometheus(&mut s);
    }
    s.pop(); // `text` adds the final newline
    s
}

fn upstream_counters(up: &crate::upstream::Upstream, m: &Metrics) -> [(&'static str, u64); 5] {
    let g = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    [
        ("reconnects", g(&up.reconnects)),
        ("resyncs", g(&up.resyncs)),
        ("loops", g(&up.loops)),
        ("forwarded", g(&up.forwarded)),
        ("resets", g(&m.resets)),
    ]
}

/// `,"upstream":{"state":..,"url":..,"path":..,"reconnects":N,..}`
fn upstream_json(out: &mut Vec<u8>, up: &crate::upstream::Upstream, m: &Metrics) {
    out.extend_from_slice(br#","upstream":{"state":"#);
    j::push_str(out, up.state());
    out.extend_from_slice(br#","url":"#);
    match up.url() {
        Some(u) => j::push_str(out, &u),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","path":"#);
    j::push_str(out, &up.path());
    for (k, v) in upstream_counters(up, m) {
        out.push(b',');
        j::push_str(out, k);
        out.push(b':');
        j::push_u64(out, v);
    }
    out.push(b'}');
}

fn upstream_prometheus(s: &mut String, up: &crate::upstream::Upstream, m: &Metrics) {
    let _ = writeln!(s, "# HELP tickrelay_upstream_up Whether the connection to the upstream relay is up.\n# TYPE tickrelay_upstream_up gauge\ntickrelay_upstream_up {}", up.is_up() as u8);
    for (k, v) in upstream_counters(up, m) {
        let _ = writeln!(s, "# HELP tickrelay_upstream_{k}_total Upstream {k}.\n# TYPE tickrelay_upstream_{k}_total counter\ntickrelay_upstream_{k}_total {v}");
    }
}
