//! The client command parser: one text frame in, one [`Request`] out, no I/O.
//!
//! ```json
//! {"op":"subscribe","channels":["ticker:BTC-USD","signals"],"id":1,
//!  "recover":{"ticker:BTC-USD":{"epoch":"k3f9","offset":1041}},"max_rate":10}
//! {"op":"unsubscribe","channels":["signals"],"id":2}
//! {"op":"publish","channel":"ticker:BTC-USD","data":{"price":43250.5},"id":3}
//! {"op":"auth","token":"<token>","id":4}
//! {"op":"ping","id":5}
//! ```
//! Unknown fields are ignored. `id` (a number or a string of at most 64 bytes) is echoed
//! in the reply. `subscribe`/`unsubscribe` take `channels` (array) or `channel` (string).
//! The parser is shared by the session, the benches and the fuzz targets.

use bytes::Bytes;
use simd_json::prelude::*;
use smallvec::SmallVec;
use std::cell::RefCell;

use super::channel;
use super::json::{self, SpanError};
use crate::error::ErrorCode;

/// Longest string `id` echoed back.
pub const MAX_ID_LEN: usize = 64;

/// A request id, kept JSON-encoded so replies can copy it verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(SmallVec<[u8; 24]>);

impl Id {
    /// The id as JSON text (`3` or `"abc"`).
    pub fn as_json(&self) -> &[u8] {
        &self.0
    }

    fn from_value(v: simd_json::tape::Value<'_, '_>) -> Option<Id> {
        let mut out = Vec::new();
        if let Some(s) = v.as_str() {
            if s.len() > MAX_ID_LEN {
                return None;
            }
            json::push_str(&mut out, s);
        } else if let Some(n) = v.as_u64() {
            json::push_u64(&mut out, n);
        } else if let Some(n) = v.as_i64() {
            out.push(b'-');
            json::push_u64(&mut out, n.unsigned_abs());
        } else {
            return None;
        }
        Some(Id(SmallVec::from_vec(out)))
    }

    /// An id from a number, for tests and tools.
    pub fn from_u64(n: u64) -> Id {
        let mut out = Vec::new();
        json::push_u64(&mut out, n);
        Id(SmallVec::from_vec(out))
    }
}

/// A refused command or publish: what to tell the client. Carries a static message and
/// the request `id` if one could be read, so the hot path never allocates to report a
/// bad command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError {
    /// The request's `id`, echoed in the error reply when it could be read.
    pub id: Option<Id>,
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable one-line reason.
    pub message: &'static str,
}

impl ProtoError {
    /// An error without an id.
    pub fn new(code: ErrorCode, message: &'static str) -> Self {
        ProtoError {
            id: None,
            code,
            message,
        }
    }
}

/// Channel names of one subscribe or unsubscribe.
pub type Channels<'a> = SmallVec<[&'a str; 4]>;

/// Where a reconnecting client left off in one channel (`recover` of a subscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoverFrom<'a> {
    /// The channel (one of the subscribe's `channels`).
    pub channel: &'a str,
    /// The epoch the client saw.
    pub epoch: &'a str,
    /// The last offset the client received.
    pub offset: u64,
}

/// Largest `max_rate` a subscribe may ask for (messages per second).
pub const MAX_RATE: u32 = 1000;

/// One parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// Start receiving the channels' messages.
    Subscribe {
        /// Validated names, in the order given, duplicates removed.
        channels: Channels<'a>,
        /// Channels to recover, each named in `channels` (at most once).
        recover: SmallVec<[RecoverFrom<'a>; 1]>,
        /// Cap on messages per second per channel for these subscriptions (1..=1000).
        max_rate: Option<u32>,
    },
    /// Stop receiving the channels' messages.
    Unsubscribe {
        /// Validated names, duplicates removed.
        channels: Channels<'a>,
    },
    /// Publish `data` (raw JSON, byte for byte as the client wrote it) to `channel`.
    Publish {
        /// Validated name.
        channel: &'a str,
        /// The raw JSON value of the `data` member.
        data: Bytes,
    },
    /// Present a credential on an open connection.
    Auth {
        /// The credential.
        token: &'a str,
    },
    /// Application-level ping (browsers cannot send ping frames).
    Ping,
    /// A dialect's handshake (Centrifuge `connect`): a credential, or none for an
    /// anonymous connection. Answered before any other reply. Never made by the v1 parser.
    Connect {
        /// The credential, if any.
        token: Option<&'a str>,
    },
    /// Subscribe to one channel and be told exactly where it stands (Centrifuge
    /// `subscribe`): a recovery's messages come inside the reply, and with `strict` a
    /// position that cannot be recovered is refused instead of answered with the newest
    /// message. Never made by the v1 parser.
    Join {
        /// Validated name.
        channel: &'a str,
        /// Where the client left off, if it asks to recover.
        recover: Option<RecoverFrom<'a>>,
        /// Refuse an unrecoverable position.
        strict: bool,
    },
    /// Read a channel's history ring, like `GET /history` (Centrifuge `history`). Never
    /// made by the v1 parser.
    History {
        /// Validated name.
        channel: &'a str,
        /// Messages after this position only (its epoch must be the channel's).
        since: Option<RecoverFrom<'a>>,
        /// At most this many messages (`None`: all held; `Some(0)`: the position only).
        limit: Option<usize>,
        /// Newest first (with `since`: the messages before it).
        reverse: bool,
    },
}

/// A command with its optional `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Echoed in the reply.
    pub id: Option<Id>,
    /// What to do.
    pub command: Command<'a>,
}

thread_local! {
    // simd-json's scratch buffers, reused across calls on this thread: parsing a command
    // allocates only the tape. Never held across an await (parse is synchronous).
    static BUFFERS: RefCell<simd_json::Buffers> = RefCell::new(simd_json::Buffers::default());
}

/// Validates `buf` as one JSON document with simd-json, which unescapes strings in
/// place (so `buf` is scratch afterwards). Builds only a flat tape: a deeply nested
/// document is refused by simd-json's depth limit, never by stack exhaustion.
pub fn validate_json(buf: &mut [u8]) -> bool {
    BUFFERS.with(|b| simd_json::to_tape_with_buffers(buf, &mut b.borrow_mut()).is_ok())
}

fn bad(id: &Option<Id>, message: &'static str) -> ProtoError {
    err(id, ErrorCode::BadRequest, message)
}

fn err(id: &Option<Id>, code: ErrorCode, message: &'static str) -> ProtoError {
    ProtoError {
        id: id.clone(),
        code,
        message,
    }
}

/// Parses one client command. `buf` is used as scratch by simd-json.
pub fn parse(buf: &mut [u8]) -> Result<Request<'_>, ProtoError> {
    parse_limited(buf, usize::MAX)
}

/// [`parse`], refusing (`too_many_subscriptions`) a channel list with more than
/// `max_channels` distinct names as soon as it gets there, without reading the rest:
/// a connection may hold no more, so the work per command stays bounded by the limit.
pub fn parse_limited(buf: &mut [u8], max_channels: usize) -> Result<Request<'_>, ProtoError> {
    // The raw `data` must be taken before simd-json rewrites the buffer.
    let data = match json::top_level_span(buf, b"data") {
        Ok(Some(r)) => Some(Bytes::copy_from_slice(&buf[r])),
        Ok(None) | Err(SpanError::NotAnObject) => None,
        Err(SpanError::Duplicate) => {
            return Err(ProtoError::new(
                ErrorCode::BadRequest,
                "duplicate data field",
            ))
        }
    };
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
        Some(v) => match Id::from_value(v) {
            Some(id) => Some(id),
            None => {
                return Err(ProtoError::new(
                    ErrorCode::BadRequest,
                    "id must be an integer or a string of at most 64 bytes",
                ))
            }
        },
    };
    let Some(op) = obj.get("op") else {
        return Err(bad(&id, "missing op"));
    };
    let Some(op) = op.into_string() else {
        return Err(bad(&id, "op must be a string"));
    };
    let command = match op {
        "subscribe" | "unsubscribe" => {
            let channels = channel_list(&obj, &id, max_channels)?;
            if op == "subscribe" {
                let recover = recover_list(&obj, &id, &channels)?;
                let max_rate =
                    match obj.get("max_rate") {
                        None => None,
                        Some(v) => match v.as_u64() {
                            Some(r) if (1..=MAX_RATE as u64).contains(&r) => Some(r as u32),
                            _ => return Err(bad(
                                &id,
                                "max_rate must be an integer from 1 to 1000 (messages per second)",
                            )),
                        },
                    };
                Command::Subscribe {
                    channels,
                    recover,
                    max_rate,
                }
            } else {
                Command::Unsubscribe { channels }
            }
        }
        "publish" => {
            let channel = single_channel(&obj, &id)?;
            let data = match (data, obj.get("data").is_some()) {
                (Some(data), _) => data,
                (None, true) => return Err(bad(&id, "the data key must be written unescaped")),
                (None, false) => return Err(bad(&id, "publish needs data")),
            };
            Command::Publish { channel, data }
        }
        "auth" => match obj.get("token").and_then(|t| t.into_string()) {
            Some(token) => Command::Auth { token },
            None => return Err(bad(&id, "auth needs a token string")),
        },
        "ping" => Command::Ping,
        _ => {
            return Err(err(
                &id,
                ErrorCode::UnknownOp,
                "op must be subscribe, unsubscribe, publish, auth or ping",
            ))
        }
    };
    Ok(Request { id, command })
}

fn checked<'a>(name: &'a str, id: &Option<Id>) -> Result<&'a str, ProtoError> {
    channel::validate(name.as_bytes()).map_err(|e| err(id, ErrorCode::InvalidChannel, e.reason()))
}

fn single_channel<'a>(
    obj: &simd_json::tape::Object<'_, 'a>,
    id: &Option<Id>,
) -> Result<&'a str, ProtoError> {
    match obj.get("channel") {
        Some(v) => match v.into_string() {
            Some(name) => checked(name, id),
            None => Err(err(
                id,
                ErrorCode::InvalidChannel,
                "channel must be a string",
            )),
        },
        None => Err(bad(id, "missing channel")),
    }
}

/// Lists longer than this deduplicate through a hash set instead of a scan.
const SCAN_DEDUP: usize = 16;

fn channel_list<'a>(
    obj: &simd_json::tape::Object<'_, 'a>,
    id: &Option<Id>,
    max: usize,
) -> Result<Channels<'a>, ProtoError> {
    let mut out = Channels::new();
    let mut seen: Option<std::collections::HashSet<&'a str>> = None;
    if let Some(list) = obj.get("channels") {
        let Some(list) = list.as_array() else {
            return Err(bad(id, "channels must be an array of strings"));
        };
        for v in list.iter() {
            let Some(name) = v.into_string() else {
                return Err(err(
                    id,
                    ErrorCode::InvalidChannel,
                    "channel must be a string",
                ));
            };
            let name = checked(name, id)?;
            let new = match &mut seen {
                Some(set) => set.insert(name),
                None => !out.contains(&name),
            };
            if !new {
                continue;
            }
            if out.len() == max {
                return Err(err(
                    id,
                    ErrorCode::TooManySubscriptions,
                    "more channels than a connection may hold (see max_subscriptions)",
                ));
            }
            out.push(name);
            if seen.is_none() && out.len() > SCAN_DEDUP {
                seen = Some(out.iter().copied().collect());
            }
        }
    } else if obj.get("channel").is_some() {
        out.push(single_channel(obj, id)?);
    }
    if out.is_empty() {
        return Err(bad(id, "give at least one channel in channels"));
    }
    Ok(out)
}

fn recover_list<'a>(
    obj: &simd_json::tape::Object<'_, 'a>,
    id: &Option<Id>,
    channels: &Channels<'a>,
) -> Result<SmallVec<[RecoverFrom<'a>; 1]>, ProtoError> {
    let mut out = SmallVec::new();
    let Some(v) = obj.get("recover") else {
        return Ok(out);
    };
    let Some(map) = v.as_object() else {
        return Err(bad(
            id,
            "recover must be an object of channel: {epoch, offset}",
        ));
    };
    for (name, pos) in map.iter() {
        let Some(&channel) = channels.iter().find(|c| **c == name) else {
            return Err(bad(id, "recover names a channel that is not in channels"));
        };
        if out.iter().any(|r: &RecoverFrom<'_>| r.channel == channel) {
            return Err(bad(id, "recover names a channel twice"));
        }
        let pos = pos.as_object();
        let epoch = pos.as_ref().and_then(|p| p.get("epoch")?.into_string());
        let offset = pos.as_ref().and_then(|p| p.get("offset")?.as_u64());
        let (Some(epoch), Some(offset)) = (epoch, offset) else {
            return Err(bad(
                id,
                "each recover entry needs an epoch string and a non-negative integer offset",
            ));
        };
        out.push(RecoverFrom {
            channel,
            epoch,
            offset,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Request<'static>, ProtoError> {
        let buf: &'static mut [u8] = Box::leak(s.as_bytes().to_vec().into_boxed_slice());
        parse(buf)
    }

    fn code(s: &str) -> ErrorCode {
        p(s).expect_err(s).code
    }

    #[test]
    fn parses_every_op() {
        let r = p(r#"{"op":"subscribe","channels":["ticker:BTC-USD","signals","signals"],"id":1}"#)
            .unwrap();
        assert_eq!(r.id, Some(Id::from_u64(1)));
        assert_eq!(
            r.command,
            Command::Subscribe {
                channels: SmallVec::from_slice(&["ticker:BTC-USD", "signals"]),
                recover: SmallVec::new(),
                max_rate: None,
            }
        );
        let r = p(r#"{"op":"subscribe","channels":["a","b"],"max_rate":10,
                     "recover":{"b":{"epoch":"k3f9","offset":1041}}}"#)
        .unwrap();
        match r.command {
            Command::Subscribe {
                recover, max_rate, ..
            } => {
                assert_eq!(max_rate, Some(10));
                assert_eq!(
                    &recover[..],
                    &[RecoverFrom {
                        channel: "b",
                        epoch: "k3f9",
                        offset: 1041
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
        let r = p(r#"{"op":"unsubscribe","channel":"signals","id":"x\"y"}"#).unwrap();
        assert_eq!(r.id.unwrap().as_json(), br#""x\"y""#);
        assert_eq!(
            r.command,
            Command::Unsubscribe {
                channels: SmallVec::from_slice(&["signals"])
            }
        );
        let r = p(r#"{"id":-3,"op":"publish","channel":"t","data": {"price":43250.50} }"#).unwrap();
        assert_eq!(r.id.unwrap().as_json(), b"-3");
        match r.command {
            Command::Publish { channel, data } => {
                assert_eq!(channel, "t");
                assert_eq!(&data[..], br#"{"price":43250.50}"#);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p(r#"{"op":"auth","token":"k"}"#).unwrap().command,
            Command::Auth { token: "k" }
        );
        assert_eq!(
            p(r#"{"op":"ping","extra":[1,2]}"#).unwrap().command,
            Command::Ping
        );
    }

    #[test]
    fn data_is_kept_verbatim_even_with_escapes_and_odd_numbers() {
        let raw = r#"{"s":"a\u00e9\"\\","n":1.50e+3,"arr":[ 1 , 2 ]}"#;
        let cmd = format!(r#"{{"op":"publish","channel":"c","data":{raw}}}"#);
        match p(&cmd).unwrap().command {
            Command::Publish { data, .. } => assert_eq!(&data[..], raw.as_bytes()),
            other => panic!("{other:?}"),
        }
        for scalar in ["1", "\"s\"", "null", "true", "[]"] {
            let cmd = format!(r#"{{"op":"publish","channel":"c","data":{scalar}}}"#);
            match p(&cmd).unwrap().command {
                Command::Publish { data, .. } => assert_eq!(&data[..], scalar.as_bytes()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn every_malformed_command_gets_its_code() {
        use ErrorCode::*;
        assert_eq!(code("not json"), BadRequest);
        assert_eq!(code(""), BadRequest);
        assert_eq!(code("[1,2]"), BadRequest);
        assert_eq!(code(r#"{"id":1}"#), BadRequest);
        assert_eq!(code(r#"{"op":5}"#), BadRequest);
        assert_eq!(code(r#"{"op":"fly"}"#), UnknownOp);
        assert_eq!(code(r#"{"op":"subscribe"}"#), BadRequest);
        assert_eq!(code(r#"{"op":"subscribe","channels":[]}"#), BadRequest);
        assert_eq!(code(r#"{"op":"subscribe","channels":"a"}"#), BadRequest);
        assert_eq!(code(r#"{"op":"subscribe","channels":[1]}"#), InvalidChannel);
        assert_eq!(
            code(r#"{"op":"subscribe","channels":["ok","bad name"]}"#),
            InvalidChannel
        );
        for bad_sub in [
            r#"{"op":"subscribe","channels":["a"],"max_rate":0}"#,
            r#"{"op":"subscribe","channels":["a"],"max_rate":1001}"#,
            r#"{"op":"subscribe","channels":["a"],"max_rate":2.5}"#,
            r#"{"op":"subscribe","channels":["a"],"max_rate":"10"}"#,
            r#"{"op":"subscribe","channels":["a"],"recover":[]}"#,
            r#"{"op":"subscribe","channels":["a"],"recover":{"b":{"epoch":"e","offset":1}}}"#,
            r#"{"op":"subscribe","channels":["a"],"recover":{"a":{"epoch":"e"}}}"#,
            r#"{"op":"subscribe","channels":["a"],"recover":{"a":{"epoch":1,"offset":1}}}"#,
            r#"{"op":"subscribe","channels":["a"],"recover":{"a":{"epoch":"e","offset":-1}}}"#,
            r#"{"op":"subscribe","channels":["a"],"recover":{"a":{"epoch":"e","offset":1},"a":{"epoch":"e","offset":2}}}"#,
        ] {
            assert_eq!(code(bad_sub), BadRequest, "{bad_sub}");
        }
        assert_eq!(code(r#"{"op":"publish","channel":"c"}"#), BadRequest);
        assert_eq!(code(r#"{"op":"publish","data":1}"#), BadRequest);
        assert_eq!(
            code(r#"{"op":"publish","channel":"","data":1}"#),
            InvalidChannel
        );
        assert_eq!(
            code(r#"{"op":"publish","channel":"c","data":1,"data":2}"#),
            BadRequest
        );
        assert_eq!(
            code(r#"{"op":"publish","channel":"c","d\u0061ta":1}"#),
            BadRequest
        );
        assert_eq!(
            code(r#"{"op":"publish","channel":"c","data":}"#),
            BadRequest
        );
        assert_eq!(code(r#"{"op":"auth"}"#), BadRequest);
        assert_eq!(code(r#"{"op":"ping","id":{"a":1}}"#), BadRequest);
        let long_id = format!(r#"{{"op":"ping","id":"{}"}}"#, "x".repeat(65));
        assert_eq!(code(&long_id), BadRequest);
    }

    #[test]
    fn the_id_is_echoed_on_errors_when_readable() {
        let e = p(r#"{"op":"fly","id":9}"#).unwrap_err();
        assert_eq!(e.id, Some(Id::from_u64(9)));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = format!(
            r#"{{"op":"publish","channel":"c","data":{}{}}}"#,
            "[".repeat(60_000),
            "]".repeat(60_000)
        );
        assert_eq!(code(&deep), ErrorCode::BadRequest);
    }

    #[test]
    fn a_channel_list_is_refused_at_the_limit_without_reading_the_rest() {
        let mut names: Vec<String> = (0..41).map(|i| format!("\"c{i}\"")).collect();
        names.push("\"bad name\"".into());
        let cmd = format!(
            r#"{{"op":"subscribe","id":1,"channels":[{}]}}"#,
            names.join(",")
        );
        let e = parse_limited(&mut cmd.clone().into_bytes(), 40).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooManySubscriptions);
        assert_eq!(e.id, Some(Id::from_u64(1)));
        // Without the limit the whole list is read, and the bad name found.
        let e = parse(&mut cmd.into_bytes()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidChannel);
        // Duplicates count once, in first-seen order, past the scan threshold too.
        let many: Vec<String> = (0..3000).map(|i| format!("\"c{}\"", i % 30)).collect();
        let cmd = format!(r#"{{"op":"unsubscribe","channels":[{}]}}"#, many.join(","));
        let mut buf = cmd.into_bytes();
        let r = parse_limited(&mut buf, 30).unwrap();
        let Command::Unsubscribe { channels } = r.command else {
            panic!("unsubscribe")
        };
        let want: Vec<String> = (0..30).map(|i| format!("c{i}")).collect();
        assert_eq!(channels.to_vec(), want);
    }
}
