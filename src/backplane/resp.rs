//! The little of RESP2 the pub/sub connection needs (pure, no I/O): commands out, and
//! replies and pushed messages in, parsed from a buffer the caller fills.
//!
//! The pub/sub connection is read by our own task rather than a client library's, so
//! that reading is bounded: a frame is parsed only when whole, at most one frame plus
//! one read is buffered, and nothing is read from the socket while a message is being
//! mirrored. A node that falls behind leaves the backlog in Redis, whose
//! `client-output-buffer-limit pubsub` drops the connection; the node reconnects and
//! repairs the gap from the stream.

/// A parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK` and friends.
    Simple(Vec<u8>),
    /// `-ERR ...`.
    Error(Vec<u8>),
    /// `:n`.
    Int(i64),
    /// `$n` bytes.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*n` values.
    Array(Vec<Value>),
}

/// A reply that is not RESP2, or nested deeper than we ever expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// One command as a RESP array of bulk strings.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one value from the start of `buf`: `Ok(None)` when it is not whole yet, else
/// the value and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, Malformed> {
    parse_at(buf, 0, 0)
}

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn int(b: &[u8]) -> Result<i64, Malformed> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Malformed)
}

fn parse_at(buf: &[u8], at: usize, depth: u8) -> Result<Option<(Value, usize)>, Malformed> {
    if depth > 4 {
        return Err(Malformed);
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((text, next)) = line(buf, at + 1) else {
        return Ok(None);
    };
    match kind {
        b'+' => Ok(Some((Value::Simple(text.to_vec()), next))),
        b'-' => Ok(Some((Value::Error(text.to_vec()), next))),
        b':' => Ok(Some((Value::Int(int(text)?), next))),
        b'$' => {
            let n = int(text)?;
            if n < 0 {
                return Ok(Some((Value::Nil, next)));
            }
            let end = next.checked_add(n as usize).ok_or(Malformed)?;
            if buf.len() < end.saturating_add(2) {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(Malformed);
            }
            Ok(Some((Value::Bulk(buf[next..end].to_vec()), end + 2)))
        }
        b'*' => {
            let n = int(text)?;
            if n < 0 {
                return Ok(Some((Value::Nil, next)));
            }
            let mut items = Vec::with_capacity((n as usize).min(16));
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, depth + 1)? {
                    None => return Ok(None),
                    Some((v, p)) => {
                        items.push(v);
                        pos = p;
                    }
                }
            }
            Ok(Some((Value::Array(items), pos)))
        }
        _ => Err(Malformed),
    }
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) | Value::Simple(b) => Some(b),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            command(&[b"SUBSCRIBE", b"a{b}"]),
            b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\na{b}\r\n"
        );
    }

    #[test]
    fn a_pushed_message_parses_only_when_whole() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\no\r\n:1\r\n";
        let whole = msg.len() - 4;
        for cut in 0..whole {
            assert_eq!(parse(&msg[..cut]), Ok(None), "cut at {cut}");
        }
        let (v, used) = parse(msg).unwrap().unwrap();
        assert_eq!(used, whole);
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Bulk(b"message".to_vec()),
                Value::Bulk(b"ch".to_vec()),
                Value::Bulk(b"he\r\no".to_vec()),
            ])
        );
        assert_eq!(parse(&msg[used..]), Ok(Some((Value::Int(1), 4))));
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(parse(b"?x\r\n"), Err(Malformed));
        assert_eq!(parse(b"$3\r\nabcde\r\n"), Err(Malformed));
        assert_eq!(parse(b":x\r\n"), Err(Malformed));
        assert_eq!(
            parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"),
            Err(Malformed)
        );
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Value::Nil, 5))));
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap().unwrap().0,
            Value::Error(b"ERR no".to_vec())
        );
    }
}
