//! The Centrifuge command parser: one line of a client frame in, the neutral
//! [`Request`] out, no I/O. Shared by the dialect, the fuzz target and the tests.
//!
//! ```json
//! {"id":1,"connect":{"token":"<jwt>","name":"js"}}
//! {"id":2,"subscribe":{"channel":"ticker:BTC-USD","recover":true,"epoch":"k3f9","offset":1041,"flag":3}}
//! {"id":3,"unsubscribe":{"channel":"ticker:BTC-USD"}}
//! {"id":4,"publish":{"channel":"signals","data":{"side":"buy"}}}
//! {"id":5,"history":{"channel":"signals","limit":10,"since":{"offset":4,"epoch":"k3f9"},"reverse":false}}
//! {"id":6,"refresh":{"token":"<jwt>"}}
//! {}
//! ```
//! `{}` is the client's pong and `send` an asynchronous message without a reply: both
//! parse to `None`. `rpc`, `presence`, `presence_stats` and `sub_refresh` are refused
//! with [`NOT_AVAILABLE`]; other unknown fields are ignored. Subscribe flag bit 2 asks to
//! be refused rather than given a snapshot when recovery fails.

use bytes::Bytes;
use simd_json::prelude::*;
use simd_json::tape::{Object, Value};
use smallvec::smallvec;
use std::cell::RefCell;

use super::NOT_AVAILABLE;
use crate::error::ErrorCode;
use crate::protocol::channel;
use crate::protocol::command::{Command, Id, ProtoError, RecoverFrom, Request};
use crate::protocol::json::{self, SpanError};

/// Subscribe flag: refuse (error 112) a position that cannot be recovered.
pub const FLAG_REJECT_UNRECOVERED: u64 = 2;

thread_local! {
    // simd-json's scratch buffers, reused across calls on this thread (as in the v1
    // parser). Never held across an await.
    static BUFFERS: RefCell<simd_json::Buffers> = RefCell::new(simd_json::Buffers::default());
}

fn err(id: &Option<Id>, code: ErrorCode, message: &'static str) -> ProtoError {
    ProtoError {
        id: id.clone(),
        code,
        message,
    }
}

fn bad(id: &Option<Id>, message: &'static str) -> ProtoError {
    err(id, ErrorCode::BadRequest, message)
}

/// The verbatim `data` of a `publish`, taken before simd-json rewrites the buffer.
fn publish_data(buf: &[u8]) -> Result<Option<Bytes>, ProtoError> {
    let dup = |_| ProtoError::new(ErrorCode::BadRequest, "duplicate publish or data field");
    let Some(outer) = json::top_level_span(buf, b"publish").or_else(|e| match e {
        SpanError::NotAnObject => Ok(None),
        d => Err(dup(d)),
    })?
    else {
        return Ok(None);
    };
    let inner = &buf[outer];
    match json::top_level_span(inner, b"data") {
        Ok(Some(r)) => Ok(Some(Bytes::copy_from_slice(&inner[r]))),
        Ok(None) | Err(SpanError::NotAnObject) => Ok(None),
        Err(d) => Err(dup(d)),
    }
}

/// Parses one command line. `Ok(None)`: nothing to do (a pong, a `send`). `buf` is
/// used as scratch by simd-json.
pub fn parse_line(buf: &mut [u8]) -> Result<Option<Request<'_>>, ProtoError> {
    let data = publish_data(buf)?;
    let tape = BUFFERS.with(|b| simd_json::to_tape_with_buffers(buf, &mut b.borrow_mut()));
    let tape = tape.map_err(|_| ProtoError::new(ErrorCode::BadRequest, "invalid JSON"))?;
    let root = tape.as_value();
    let Some(obj) = root.as_object() else {
        return Err(ProtoError::new(
            ErrorCode::BadRequest,
            "a command must be a JSON object",
        ));
    };
    let id = match obj.get("id") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(0) => None,
            Some(n) if n <= u64::from(u32::MAX) => Some(Id::from_u64(n)),
            _ => {
                return Err(ProtoError::new(
                    ErrorCode::BadRequest,
                    "id must be an integer from 0 to 4294967295",
                ))
            }
        },
    };
    let mut method = None;
    for (key, value) in obj.iter() {
        if key == "id" {
            continue;
        }
        if METHODS.contains(&key) {
            if method.is_some() {
                return Err(bad(&id, "a command holds one method"));
            }
            method = Some((key, value));
        }
    }
    let Some((name, body)) = method else {
        if obj.is_empty() || (obj.len() == 1 && id.is_none() && obj.get("id").is_some()) {
            return Ok(None); // `{}`: the client's pong
        }
        return Err(err(&id, ErrorCode::UnknownOp, "method not found"));
    };
    let Some(body) = body.as_object() else {
        return Err(bad(&id, "a method's value must be an object"));
    };
    let command = match name {
        "connect" => Command::Connect {
            token: string(&body, "token", &id)?.filter(|t| !t.is_empty()),
        },
        "subscribe" => subscribe(&body, &id)?,
        "unsubscribe" => Command::Unsubscribe {
            channels: smallvec![channel_of(&body, &id)?],
        },
        "publish" => {
            let channel = channel_of(&body, &id)?;
            match (data, body.get("data").is_some()) {
                (Some(data), _) => Command::Publish { channel, data },
                (None, true) => return Err(bad(&id, "the data key must be written unescaped")),
                (None, false) => return Err(bad(&id, "publish needs data")),
            }
        }
        "history" => history(&body, &id)?,
        "refresh" => match string(&body, "token", &id)? {
            Some(token) if !token.is_empty() => Command::Auth { token },
            _ => return Err(bad(&id, "refresh needs a token")),
        },
        "ping" => Command::Ping,
        "send" => return Ok(None),
        _ => return Err(err(&id, ErrorCode::UnknownOp, NOT_AVAILABLE)),
    };
    Ok(Some(Request { id, command }))
}

/// The method names of the protocol (client to server).
const METHODS: [&str; 13] = [
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
    "sub_refresh_batch",
];

fn string<'a>(
    body: &Object<'_, 'a>,
    key: &str,
    id: &Option<Id>,
) -> Result<Option<&'a str>, ProtoError> {
    match body.get(key) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => match v.into_string() {
            Some(s) => Ok(Some(s)),
            None => Err(bad(id, "a string field holds another type")),
        },
    }
}

fn channel_of<'a>(body: &Object<'_, 'a>, id: &Option<Id>) -> Result<&'a str, ProtoError> {
    let Some(name) = string(body, "channel", id)? else {
        return Err(bad(id, "missing channel"));
    };
    channel::validate(name.as_bytes()).map_err(|e| err(id, ErrorCode::InvalidChannel, e.reason()))
}

fn uint(v: Option<Value<'_, '_>>, id: &Option<Id>) -> Result<u64, ProtoError> {
    match v {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad(id, "offset and flag must be non-negative integers")),
    }
}

fn subscribe<'a>(body: &Object<'_, 'a>, id: &Option<Id>) -> Result<Command<'a>, ProtoError> {
    let channel = channel_of(body, id)?;
    let flag = uint(body.get("flag"), id)?;
    let recover = match body.get("recover").and_then(|v| v.as_bool()) {
        Some(true) => Some(RecoverFrom {
            channel,
            epoch: string(body, "epoch", id)?.unwrap_or(""),
            offset: uint(body.get("offset"), id)?,
        }),
        _ => None,
    };
    Ok(Command::Join {
        channel,
        recover,
        strict: flag & FLAG_REJECT_UNRECOVERED != 0,
    })
}

fn history<'a>(body: &Object<'_, 'a>, id: &Option<Id>) -> Result<Command<'a>, ProtoError> {
    let channel = channel_of(body, id)?;
    let limit = match body.get("limit") {
        None => Some(0),
        Some(v) => match (v.as_u64(), v.as_i64()) {
            (Some(n), _) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            (None, Some(n)) if n < 0 => None,
            _ => return Err(bad(id, "limit must be an integer")),
        },
    };
    let since = match body.get("since") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => {
            let Some(pos) = v.as_object() else {
                return Err(bad(id, "since must be an object of offset and epoch"));
            };
            Some(RecoverFrom {
                channel,
                epoch: string(&pos, "epoch", id)?.unwrap_or(""),
                offset: uint(pos.get("offset"), id)?,
            })
        }
    };
    let reverse = body
        .get("reverse")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok(Command::History {
        channel,
        since,
        limit,
        reverse,
    })
}
