//! Legend AI's HTTP endpoints, below a listener's `legend` route (`/api/ws`):
//!
//! - `GET /api/ws/stats`: `{"active_connections","ticker_subscriptions":{"AAPL":10,..},
//!   "pattern_subscribers","alert_subscribers","market_status_subscribers",
//!   "total_connections","messages_sent","messages_received","errors","uptime"}`,
//!   computed when read: subscriber counts from the hub (every subscriber of the
//!   channels, whatever protocol it speaks), the rest from Legend connections' own
//!   counters ([`crate::metrics::DialectCounters`]).
//! - `POST /api/ws/broadcast/{price,pattern,alert,market_status}`: fields as query
//!   parameters or a JSON body ([`crate::protocol::seeds::broadcast`]), published like
//!   `POST /publish/{channel}`; `{"status":"success","ticker":T,"subscribers":N}` (or
//!   `pattern_type`, `alert_type`, `market_status`). The publish key is required unless
//!   the listener says `legend_broadcast = "loopback"` and the caller is on loopback.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{json, percent_decode, text, Resp};
use crate::protocol::json as j;
use crate::protocol::seeds::broadcast;
use crate::relay::Relay;
use crate::routes::{BroadcastAuth, Routes};

/// `GET <legend route>/stats`.
pub fn stats(relay: &Relay) -> Resp {
    let hub = &relay.hub;
    let tickers = hub.top_channels_where(usize::MAX, |n| n.starts_with("ticker:"));
    let count = |name: &str| {
        hub.top_channels_where(1, |n| n == name)
            .first()
            .map_or(0, |c| c.1)
    };
    let active = relay
        .consumers()
        .iter()
        .filter(|c| c.info.dialect == "legend")
        .count();
    let c = &relay.metrics.legend;
    let mut out = Vec::with_capacity(256 + tickers.len() * 24);
    out.extend_from_slice(br#"{"active_connections":"#);
    j::push_u64(&mut out, active as u64);
    out.extend_from_slice(br#","ticker_subscriptions":{"#);
    let mut first = true;
    for (name, n) in tickers.iter().filter(|t| t.1 > 0) {
        if !first {
            out.push(b',');
        }
        first = false;
        j::push_str(&mut out, name.strip_prefix("ticker:").unwrap_or(name));
        out.push(b':');
        j::push_u64(&mut out, *n as u64);
    }
    out.push(b'}');
    for (key, v) in [
        ("pattern_subscribers", count("patterns") as u64),
        ("alert_subscribers", count("alerts") as u64),
        ("market_status_subscribers", count("market_status") as u64),
        ("total_connections", c.opened.load(Ordering::Relaxed)),
        ("messages_sent", c.sent.load(Ordering::Relaxed)),
        ("messages_received", c.received.load(Ordering::Relaxed)),
        ("errors", c.errors.load(Ordering::Relaxed)),
    ] {
        out.push(b',');
        j::push_str(&mut out, key);
        out.push(b':');
        j::push_u64(&mut out, v);
    }
    let uptime = relay.metrics.started.elapsed().as_secs_f64();
    out.extend_from_slice(format!(r#","uptime":{uptime:.3}}}"#).as_bytes());
    json(StatusCode::OK, out)
}

fn detail(status: StatusCode, why: &str) -> Resp {
    let mut out = br#"{"detail":"#.to_vec();
    j::push_str(&mut out, why);
    out.push(b'}');
    json(status, out)
}

/// `POST <legend route>/broadcast/<kind>`.
pub async fn broadcast(
    req: Request<Incoming>,
    relay: Arc<Relay>,
    peer: SocketAddr,
    kind: &str,
    routes: &Routes,
) -> Resp {
    let open = routes.legend_broadcast == BroadcastAuth::Loopback && peer.ip().is_loopback();
    let who = match open {
        true => None,
        false => match super::publish::authorize(&req, &relay) {
            Ok(who) => Some(who),
            Err(resp) => return *resp,
        },
    };
    let mut query = Vec::new();
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (percent_decode(k, true), percent_decode(v, true)) {
            (Some(k), Some(v)) => query.push((k, v)),
            _ => return detail(StatusCode::UNPROCESSABLE_ENTITY, "query: malformed escape"),
        }
    }
    let limit = relay.config.max_message_bytes.saturating_add(1024);
    let mut body = match super::publish::read_body(req, limit).await {
        Ok(b) => b.to_vec(),
        Err(resp) => return *resp,
    };
    let b = match broadcast::build(kind, &query, &mut body) {
        Ok(b) => b,
        Err(None) => {
            return text(
                StatusCode::NOT_FOUND,
                "not found: broadcast/price, pattern, alert or market_status",
            )
        }
        Err(Some(why)) => return detail(StatusCode::UNPROCESSABLE_ENTITY, &why),
    };
    if let Some(who) = &who {
        if let Err(resp) = super::publish::permit(&relay, who, &b.channel) {
            return *resp;
        }
    }
    let r = if relay.sequenced_elsewhere() {
        let items: [(&str, &[u8]); 1] = [(&b.channel, &b.data)];
        relay.publish_many(&items).await.map(|v| v[0])
    } else {
        relay.publish(&b.channel, &b.data)
    };
    match r {
        Ok(p) => {
            let mut out = br#"{"status":"success","#.to_vec();
            j::push_str(&mut out, b.echo.0);
            out.push(b':');
            j::push_str(&mut out, &b.echo.1);
            out.extend_from_slice(br#","subscribers":"#);
            j::push_u64(&mut out, p.delivered as u64);
            out.push(b'}');
            json(StatusCode::OK, out)
        }
        Err(code) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{}: nothing was published", code.as_str()),
        ),
    }
}
