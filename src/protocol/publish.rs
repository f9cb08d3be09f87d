//! HTTP publish bodies: `POST /publish/{channel}` (the body is the JSON `data`) and
//! `POST /publish` (NDJSON, one `{"channel":..,"data":..}` per line).
//!
//! Both are validated completely before anything is published, so a batch with one bad
//! line publishes nothing and the answer names the line. `data` stays a zero-copy slice
//! of the request body: it is embedded in the outbound frame verbatim.

use bytes::Bytes;
use simd_json::prelude::*;

use super::channel;
use super::command::validate_json;
use super::json::{self, SpanError};
use crate::error::ErrorCode;
use crate::protocol::command::ProtoError;

/// One message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Validated channel name.
    pub channel: String,
    /// Raw JSON `data`, a slice of the request body.
    pub data: Bytes,
}

/// A refused batch: which line (1-based) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// 1-based line number in the body.
    pub line: usize,
    /// What was wrong.
    pub error: ProtoError,
}

fn trim(body: &Bytes) -> Bytes {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = body.iter().position(|b| !is_ws(b)).unwrap_or(body.len());
    let end = body
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |i| i + 1);
    body.slice(start..end)
}

/// Validates a single-message body (any JSON value) and returns it trimmed of outer
/// white space. `max` is the largest `data` accepted.
pub fn single(body: &Bytes, max: usize) -> Result<Bytes, ProtoError> {
    let data = trim(body);
    if data.is_empty() {
        return Err(ProtoError::new(
            ErrorCode::BadRequest,
            "the body must be a JSON value",
        ));
    }
    if data.len() > max {
        return Err(ProtoError::new(
            ErrorCode::PayloadTooLarge,
            "data is over the message size limit",
        ));
    }
    if !validate_json(&mut data.to_vec()) {
        return Err(ProtoError::new(
            ErrorCode::BadRequest,
            "the body is not valid JSON",
        ));
    }
    Ok(data)
}

/// Parses an NDJSON batch. Blank lines are skipped; at most `max_items` messages, each
/// `data` at most `max` bytes.
pub fn batch(body: &Bytes, max: usize, max_items: usize) -> Result<Vec<Item>, BatchError> {
    let mut items = Vec::new();
    let mut start = 0;
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        let range = start..start + line.len();
        start += line.len() + 1;
        let line_no = n + 1;
        let fail = |code, message| BatchError {
            line: line_no,
            error: ProtoError::new(code, message),
        };
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        if items.len() == max_items {
            return Err(fail(
                ErrorCode::PayloadTooLarge,
                "too many messages in one batch",
            ));
        }
        let span = match json::top_level_span(line, b"data") {
            Ok(Some(r)) => r,
            Ok(None) => return Err(fail(ErrorCode::BadRequest, "each line needs data")),
            Err(SpanError::Duplicate) => {
                return Err(fail(ErrorCode::BadRequest, "duplicate data field"))
            }
            Err(SpanError::NotAnObject) => {
                return Err(fail(
                    ErrorCode::BadRequest,
                    "each line must be a JSON object",
                ))
            }
        };
        if span.len() > max {
            return Err(fail(
                ErrorCode::PayloadTooLarge,
                "data is over the message size limit",
            ));
        }
        let mut scratch = line.to_vec();
        let tape = match simd_json::to_tape(&mut scratch) {
            Ok(t) => t,
            Err(_) => return Err(fail(ErrorCode::BadRequest, "invalid JSON")),
        };
        let root = tape.as_value();
        let name = match root.get("channel") {
            Some(v) => match v.into_string() {
                Some(s) => s,
                None => return Err(fail(ErrorCode::InvalidChannel, "channel must be a string")),
            },
            None => return Err(fail(ErrorCode::BadRequest, "each line needs a channel")),
        };
        let name = channel::validate(name.as_bytes())
            .map_err(|e| fail(ErrorCode::InvalidChannel, e.reason()))?;
        items.push(Item {
            channel: name.to_owned(),
            data: body.slice(range.start + span.start..range.start + span.end),
        });
    }
    if items.is_empty() {
        return Err(BatchError {
            line: 1,
            error: ProtoError::new(ErrorCode::BadRequest, "the batch is empty"),
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_body_is_validated_and_trimmed() {
        let b = Bytes::from_static(b" {\"price\": 1.50}\n");
        assert_eq!(&single(&b, 100).unwrap()[..], b"{\"price\": 1.50}");
        assert_eq!(
            single(&Bytes::from_static(b"{"), 100).unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            single(&Bytes::from_static(b"  "), 100).unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            single(&Bytes::from_static(b"[1,2,3]"), 6).unwrap_err().code,
            ErrorCode::PayloadTooLarge
        );
        assert!(single(&Bytes::from_static(b"[1,2,3]"), 7).is_ok());
    }

    #[test]
    fn batch_keeps_data_verbatim_and_names_the_bad_line() {
        let body = Bytes::from_static(
            b"{\"channel\":\"a\",\"data\":{\"x\": 1.0}}\n\n{\"data\":[1],\"channel\":\"b:c\"}\n",
        );
        let items = batch(&body, 100, 10).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            (items[0].channel.as_str(), &items[0].data[..]),
            ("a", &b"{\"x\": 1.0}"[..])
        );
        assert_eq!(
            (items[1].channel.as_str(), &items[1].data[..]),
            ("b:c", &b"[1]"[..])
        );

        let bad = Bytes::from_static(
            b"{\"channel\":\"a\",\"data\":1}\n{\"channel\":\"no spaces\",\"data\":1}\n",
        );
        let e = batch(&bad, 100, 10).unwrap_err();
        assert_eq!((e.line, e.error.code), (2, ErrorCode::InvalidChannel));
        let e = batch(&Bytes::from_static(b"{\"channel\":\"a\"}"), 100, 10).unwrap_err();
        assert_eq!((e.line, e.error.code), (1, ErrorCode::BadRequest));
        let e = batch(
            &Bytes::from_static(b"{\"channel\":\"a\",\"data\":[1,}"),
            100,
            10,
        )
        .unwrap_err();
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        let e = batch(&Bytes::from_static(b"\n\n"), 100, 10).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        let two =
            Bytes::from_static(b"{\"channel\":\"a\",\"data\":1}\n{\"channel\":\"a\",\"data\":2}");
        assert_eq!(
            batch(&two, 100, 1).unwrap_err().error.code,
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(
            batch(&two, 0, 10).unwrap_err().error.code,
            ErrorCode::PayloadTooLarge
        );
    }
}
