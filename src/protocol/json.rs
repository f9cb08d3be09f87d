//! Small, allocation-free JSON helpers the relay needs besides simd-json.
//!
//! simd-json validates and parses, but it unescapes strings in place and keeps no byte
//! offsets, so it cannot hand back the publisher's `data` *verbatim*. [`top_level_span`]
//! finds the raw bytes of one top-level member of an object; the caller validates the
//! whole document with simd-json as well, so the scanner only has to be exact on valid
//! JSON and merely safe (no panic, no recursion) on anything else.
//!
//! The writers ([`push_str`], [`push_u64`]) build replies without `format!`.

use std::ops::Range;

/// Why [`top_level_span`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanError {
    /// The document is not a JSON object (or is cut short).
    NotAnObject,
    /// The key occurs more than once at the top level.
    Duplicate,
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `b[i]` is the opening quote; returns the index just past the closing quote.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// Skips one value starting at `b[i]` (no leading white space); returns its end.
/// Iterative, so a deeply nested value cannot exhaust the stack.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// Finds the raw byte range of the value of top-level member `key` in the object `doc`.
///
/// Keys are compared byte for byte as written, so an escaped spelling of `key`
/// (`"d\u0061ta"`) is not found; callers that also parse with simd-json treat "simd-json
/// sees the key but the scanner does not" as a bad request.
pub fn top_level_span(doc: &[u8], key: &[u8]) -> Result<Option<Range<usize>>, SpanError> {
    let b = doc;
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err(SpanError::NotAnObject);
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(None);
    }
    let mut found = None;
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(SpanError::NotAnObject);
        }
        let key_end = skip_string(b, i).ok_or(SpanError::NotAnObject)?;
        let this_key = &b[i + 1..key_end - 1];
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return Err(SpanError::NotAnObject);
        }
        i = skip_ws(b, i + 1);
        let value_end = skip_value(b, i).ok_or(SpanError::NotAnObject)?;
        if this_key == key {
            if found.is_some() {
                return Err(SpanError::Duplicate);
            }
            found = Some(i..value_end);
        }
        i = skip_ws(b, value_end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Ok(found),
            _ => return Err(SpanError::NotAnObject),
        }
    }
}

/// Appends `s` as a JSON string literal (quotes included).
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &c in s.as_bytes() {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 15) as usize]);
            }
            c => out.push(c),
        }
    }
    out.push(b'"');
}

/// Appends the decimal digits of `n`.
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let digits = fmt_u64(n, &mut buf);
    out.extend_from_slice(digits);
}

/// Formats `n` into `buf`, returning the digits (no allocation).
pub fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span<'a>(doc: &'a str, key: &str) -> Option<&'a str> {
        top_level_span(doc.as_bytes(), key.as_bytes())
            .unwrap()
            .map(|r| &doc[r])
    }

    #[test]
    fn finds_raw_values_verbatim() {
        let doc = r#"{"op":"publish","channel":"t","data":{"price":43250.50,"s":"a\"}b"},"id":3}"#;
        assert_eq!(span(doc, "data"), Some(r#"{"price":43250.50,"s":"a\"}b"}"#));
        assert_eq!(span(doc, "id"), Some("3"));
        assert_eq!(span(doc, "op"), Some(r#""publish""#));
        assert_eq!(span(doc, "missing"), None);
        let spaced = " { \"data\" :\t[1, [2,{\"x\":\"]\"}], 3] ,\"k\":null } ";
        assert_eq!(span(spaced, "data"), Some("[1, [2,{\"x\":\"]\"}], 3]"));
        assert_eq!(span(spaced, "k"), Some("null"));
        assert_eq!(span("{}", "data"), None);
    }

    #[test]
    fn keys_nested_deeper_are_not_top_level() {
        assert_eq!(span(r#"{"a":{"data":1}}"#, "data"), None);
    }

    #[test]
    fn duplicates_and_garbage_are_errors_not_panics() {
        assert_eq!(
            top_level_span(br#"{"data":1,"data":2}"#, b"data"),
            Err(SpanError::Duplicate)
        );
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":1",
            b"{\"a\":1,}",
            b"{\"a\\",
            b"{\"a\":\"\\",
            b"{\"a\":[[[[",
            b"{\"a\":]}",
            b"{1:2}",
        ] {
            assert!(top_level_span(bad, b"a").is_err(), "{bad:?}");
        }
        let deep = format!("{{\"a\":{}}}", "[".repeat(100_000));
        assert!(top_level_span(deep.as_bytes(), b"a").is_err());
    }

    #[test]
    fn writers_escape_and_format() {
        let mut out = Vec::new();
        push_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\"".as_bytes());
        for n in [0u64, 7, 10, 1732270000123, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
