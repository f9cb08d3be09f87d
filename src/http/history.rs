//! `GET /history/{channel}?since=O&limit=L`: what a channel's history ring holds, as JSON,
//! for dashboards that fetch a backlog over HTTP.
//!
//! ```json
//! {"channel":"ticker:BTC-USD","epoch":"k3f9","offset":1045,"oldest":946,"complete":true,
//!  "messages":[{"type":"message","channel":"ticker:BTC-USD","offset":1044,...},...]}
//! ```
//! Without `since`: the newest `limit` messages. With it: the first `limit` messages after
//! offset `since` (page on with the last offset returned); `complete` is false when some
//! message after `since` is no longer held. Each message is the exact payload subscribers
//! got, copied out of the stored frame. Whoever may subscribe to a channel may read its
//! history (anonymous clients: public namespaces; a token: its own private channels and
//! what its `sub_channels` allow); the publish key and admin tokens may read any.
//! The credential is `Authorization: Bearer <publish key or JWT>`.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::{json, percent_decode, text, Resp};
use crate::auth::{self, Identity};
use crate::protocol::{channel, encode, json as j};
use crate::relay::Relay;

/// Default and largest `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest `limit` a request may ask for.
pub const MAX_LIMIT: usize = 10_000;

fn query_u64(query: Option<&str>, key: &str) -> Result<Option<u64>, String> {
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("{key} must be a non-negative integer"));
        }
    }
    Ok(None)
}

/// Serves one history request.
pub fn handle(req: &Request<Incoming>, relay: &Relay, raw_channel: &str) -> Resp {
    let Some(name) = percent_decode(raw_channel, false) else {
        return text(
            StatusCode::BAD_REQUEST,
            "channel is not valid percent-encoding",
        );
    };
    if let Err(e) = channel::validate(name.as_bytes()) {
        return text(StatusCode::BAD_REQUEST, e.reason());
    }
    let ns = &relay.config.namespaces;
    let mut who = Identity::default();
    if let Some(presented) = super::upgrade::bearer(req.headers()) {
        match auth::check(relay.keys(), presented) {
            Ok(cred) => cred.apply(&mut who),
            Err(reason) => return text(StatusCode::UNAUTHORIZED, reason),
        }
    }
    // Whoever may subscribe to the channel may read its backlog; so may publishers and
    // admins, for any channel.
    if !(who.publisher || who.admin()) {
        if let Err(d) = auth::may_subscribe(ns, &who, &name) {
            relay.metrics.error(d.code);
            let status =
                StatusCode::from_u16(d.code.http_status()).unwrap_or(StatusCode::FORBIDDEN);
            return text(
                status,
                &format!("{}: {name}: {}", d.code.as_str(), d.message),
            );
        }
    }
    let query = req.uri().query();
    let (since, limit) = match (query_u64(query, "since"), query_u64(query, "limit")) {
        (Ok(s), Ok(l)) => (s, l.map_or(DEFAULT_LIMIT, |l| l as usize)),
        (Err(e), _) | (_, Err(e)) => return text(StatusCode::BAD_REQUEST, &e),
    };
    if limit == 0 || limit > MAX_LIMIT {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("limit must be from 1 to {MAX_LIMIT}"),
        );
    }
    let Some(page) = relay.hub.history(&name, since, limit) else {
        return text(
            StatusCode::NOT_FOUND,
            "no such channel: nothing published yet, or reclaimed while idle",
        );
    };
    // At most --max-response-bytes of messages (always at least one): paging on from
    // the last offset returned gets the rest. Without `since` the newest are kept.
    let cost =
        |e: &crate::hub::history::Entry| encode::ENVELOPE_FIXED + name.len() + e.data.len() + 1;
    let cap = relay.config.max_response_bytes;
    let mut size = 0;
    let mut keep = 0;
    let order: Box<dyn Iterator<Item = _>> = if since.is_some() {
        Box::new(page.messages.iter())
    } else {
        Box::new(page.messages.iter().rev())
    };
    for e in order {
        if keep > 0 && size + cost(e) > cap {
            break;
        }
        size += cost(e);
        keep += 1;
    }
    let truncated = keep < page.messages.len();
    let messages = if since.is_some() {
        &page.messages[..keep]
    } else {
        &page.messages[page.messages.len() - keep..]
    };
    let mut out = Vec::with_capacity(size + 128);
    out.extend_from_slice(br#"{"channel":"#);
    j::push_str(&mut out, &name);
    out.extend_from_slice(br#","epoch":"#);
    j::push_str(&mut out, page.position.epoch.as_str());
    out.extend_from_slice(br#","offset":"#);
    j::push_u64(&mut out, page.position.offset);
    out.extend_from_slice(br#","oldest":"#);
    j::push_u64(&mut out, page.oldest);
    if truncated {
        out.extend_from_slice(br#","truncated":true"#);
    }
    out.extend_from_slice(if page.complete {
        br#","complete":true,"messages":["#
    } else {
        br#","complete":false,"messages":["#
    });
    for (i, e) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode::push_envelope(&mut out, &name, e.offset, e.ts, &e.data);
    }
    out.extend_from_slice(b"]}");
    json(StatusCode::OK, out)
}
