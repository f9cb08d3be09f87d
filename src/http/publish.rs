//! `POST /publish/{channel}` (body: the JSON `data`) and `POST /publish` (NDJSON batch of
//! `{"channel":..,"data":..}`). Both need `Authorization: Bearer <credential>`: the publish
//! key, or a JWT allowed to publish to every channel concerned (see [`crate::auth`]).
//!
//! Answers: `{"channel":"t","epoch":"k3f9","offset":1047,"delivered":12}` for one message;
//! `{"published":N,"results":[{"channel":..,"epoch":..,"offset":..},..]}` for a batch.
//! A batch is validated whole before anything is published; a bad line gets a 400 that
//! names it, and nothing of the batch is published. With `--redis` a batch is one
//! script run in Redis (all or nothing), `delivered` counts the relay nodes that
//! received each message, and an unreachable Redis is a 503 (nothing published).

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{header, Request, StatusCode};
use std::sync::Arc;

use super::{json, percent_decode, text, Resp};
use crate::auth::{self, Identity};
use crate::protocol::command::ProtoError;
use crate::protocol::{self, channel, json as j};
use crate::relay::Relay;
use crate::session::access::publishing_enabled;

// Errors are boxed: a response is large and this is the cold path.
pub(super) fn authorize(req: &Request<Incoming>, relay: &Relay) -> Result<Identity, Box<Resp>> {
    if !publishing_enabled(relay) {
        return Err(Box::new(text(
            StatusCode::FORBIDDEN,
            "publishing is disabled: start the relay with --publish-key",
        )));
    }
    let Some(presented) = super::upgrade::bearer(req.headers()) else {
        return Err(Box::new(text(
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <publish key>",
        )));
    };
    match auth::check(relay.keys(), presented) {
        Ok(cred) => {
            let mut who = Identity::default();
            cred.apply(&mut who);
            Ok(who)
        }
        Err(_) if relay.jwt.is_none() => Err(Box::new(text(
            StatusCode::UNAUTHORIZED,
            "invalid publish key",
        ))),
        Err(reason) => Err(Box::new(text(StatusCode::UNAUTHORIZED, reason))),
    }
}

/// Whether `who` may publish to `channel`; a 403 naming the channel otherwise.
pub(super) fn permit(relay: &Relay, who: &Identity, channel: &str) -> Result<(), Box<Resp>> {
    let ns = &relay.config.namespaces;
    auth::may_publish(ns, who, channel, true).map_err(|d| {
        relay.metrics.error(d.code);
        let status = StatusCode::from_u16(d.code.http_status()).unwrap_or(StatusCode::FORBIDDEN);
        Box::new(text(
            status,
            &format!("{}: {channel}: {}", d.code.as_str(), d.message),
        ))
    })
}

pub(super) async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Box<Resp>> {
    let too_big = || {
        Box::new(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body is over the limit of {limit} bytes"),
        ))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_big()),
        Err(_) => Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            "could not read the request body",
        ))),
    }
}

fn refused(e: &ProtoError, relay: &Relay) -> Resp {
    relay.metrics.error(e.code);
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    text(status, &format!("{}: {}", e.code.as_str(), e.message))
}

fn result_json(out: &mut Vec<u8>, channel: &str, p: &crate::hub::Published) {
    out.extend_from_slice(br#"{"channel":"#);
    j::push_str(out, channel);
    out.extend_from_slice(br#","epoch":"#);
    j::push_str(out, p.position.epoch.as_str());
    out.extend_from_slice(br#","offset":"#);
    j::push_u64(out, p.position.offset);
    out.extend_from_slice(br#","delivered":"#);
    j::push_u64(out, p.delivered as u64);
    out.push(b'}');
}

/// Publishes of a batch between two yields to the runtime.
const YIELD_EVERY: usize = 64;

/// `POST /publish/{channel}`; `raw_channel` is the still-escaped path rest.
pub async fn single(req: Request<Incoming>, relay: Arc<Relay>, raw_channel: &str) -> Resp {
    let who = match authorize(&req, &relay) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let Some(name) = percent_decode(raw_channel, false) else {
        return text(
            StatusCode::BAD_REQUEST,
            "malformed percent-escape in the channel",
        );
    };
    if let Err(e) = channel::validate(name.as_bytes()) {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("invalid_channel: {}", e.reason()),
        );
    }
    if let Err(r) = permit(&relay, &who, &name) {
        return *r;
    }
    let max = relay.config.max_message_bytes;
    // Leave room for white space around a maximal value; `single` checks the value itself.
    let body = match read_body(req, max.saturating_add(1024)).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let data = match protocol::publish::single(&body, max) {
        Ok(d) => d,
        Err(e) => return refused(&e, &relay),
    };
    let r = if relay.sequenced_elsewhere() {
        let items: [(&str, &[u8]); 1] = [(&name, &data)];
        relay.publish_many(&items).await.map(|v| v[0])
    } else {
        relay.publish(&name, &data)
    };
    match r {
        Ok(p) => {
            let mut out = Vec::with_capacity(96);
            result_json(&mut out, &name, &p);
            json(StatusCode::OK, out)
        }
        Err(code) => refused(&ProtoError::new(code, failure(code)), &relay),
    }
}

/// Why a publish the relay accepted could not be made.
fn failure(code: crate::error::ErrorCode) -> &'static str {
    match code {
        crate::error::ErrorCode::TooManyChannels => {
            "the relay holds its maximum number of channels"
        }
        _ => crate::session::refusal(code),
    }
}

/// A batch through the backplane (one script run, all or nothing) or forwarded to the
/// upstream relay (its publishes in order, the first refusal answered).
async fn batch_via_backplane(relay: &Relay, items: &[protocol::publish::Item]) -> Resp {
    let pairs: Vec<(&str, &[u8])> = items
        .iter()
        .map(|i| (i.channel.as_str(), &i.data[..]))
        .collect();
    match relay.publish_many(&pairs).await {
        Ok(results) => {
            let mut out = Vec::with_capacity(32 + items.len() * 80);
            out.extend_from_slice(br#"{"results":["#);
            for (i, (item, p)) in items.iter().zip(&results).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                result_json(&mut out, &item.channel, p);
            }
            out.extend_from_slice(br#"],"published":"#);
            j::push_u64(&mut out, results.len() as u64);
            out.push(b'}');
            json(StatusCode::OK, out)
        }
        Err(code) => refused(&ProtoError::new(code, failure(code)), relay),
    }
}

/// `POST /publish` with an NDJSON body.
pub async fn batch(req: Request<Incoming>, relay: Arc<Relay>) -> Resp {
    let who = match authorize(&req, &relay) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let cfg = &relay.config;
    let body = match read_body(req, cfg.max_batch_bytes).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let items = match protocol::publish::batch(&body, cfg.max_message_bytes, cfg.max_batch_items) {
        Ok(items) => items,
        Err(e) => {
            relay.metrics.error(e.error.code);
            let status =
                StatusCode::from_u16(e.error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            return text(
                status,
                &format!(
                    "line {}: {}: {}",
                    e.line,
                    e.error.code.as_str(),
                    e.error.message
                ),
            );
        }
    };
    // Like validation, permission is checked for the whole batch before publishing.
    for item in &items {
        if let Err(r) = permit(&relay, &who, &item.channel) {
            return *r;
        }
    }
    if relay.sequenced_elsewhere() {
        return batch_via_backplane(&relay, &items).await;
    }
    let mut out = Vec::with_capacity(32 + items.len() * 80);
    out.extend_from_slice(br#"{"results":["#);
    let mut published = 0u64;
    let mut status = StatusCode::OK;
    for (i, item) in items.iter().enumerate() {
        if i > 0 && i % YIELD_EVERY == 0 {
            // Let the writers (and every other task on this worker) run: a 10,000-item
            // batch must not fill subscribers' queues before any of them can drain.
            tokio::task::yield_now().await;
        }
        if published > 0 {
            out.push(b',');
        }
        match relay.publish(&item.channel, &item.data) {
            Ok(p) => {
                result_json(&mut out, &item.channel, &p);
                published += 1;
            }
            Err(code) => {
                // Only the channel limit can fail here; stop at the first failure.
                relay.metrics.error(code);
                status = StatusCode::from_u16(code.http_status())
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                if out.last() == Some(&b',') {
                    out.pop();
                }
                break;
            }
        }
    }
    out.extend_from_slice(br#"],"published":"#);
    j::push_u64(&mut out, published);
    out.push(b'}');
    json(status, out)
}
