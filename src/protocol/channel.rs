//! Channel names: the one place that decides what a valid name is.
//!
//! A name is 1–128 bytes of `[A-Za-z0-9_.:@/#-]`. Its *namespace* is the part before the
//! first `:` (`ticker:BTC-USD` → `ticker`), or the whole name when there is no `:`
//! (`alerts` → `alerts`). The character set needs no JSON escaping, which is why the
//! envelope encoder can copy a validated name into a frame verbatim.

/// Longest channel name accepted, in bytes.
pub const MAX_CHANNEL_LEN: usize = 128;

/// Why a channel name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_CHANNEL_LEN`].
    TooLong,
    /// The name holds a byte outside `[A-Za-z0-9_.:@/#-]`.
    BadByte,
}

impl ChannelError {
    /// One-line reason, fit for an error reply or an HTTP 400 body.
    pub fn reason(self) -> &'static str {
        match self {
            ChannelError::Empty => "channel name is empty",
            ChannelError::TooLong => "channel name is longer than 128 bytes",
            ChannelError::BadByte => "channel name may only hold [A-Za-z0-9_.:@/#-]",
        }
    }
}

const fn allowed_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'_' | b'.' | b':' | b'@' | b'/' | b'#' | b'-');
        b += 1;
    }
    t
}

static ALLOWED: [bool; 256] = allowed_table();

/// Checks a channel name and returns it as `&str` (it is ASCII when valid).
pub fn validate(name: &[u8]) -> Result<&str, ChannelError> {
    if name.is_empty() {
        return Err(ChannelError::Empty);
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::TooLong);
    }
    if !name.iter().all(|&b| ALLOWED[b as usize]) {
        return Err(ChannelError::BadByte);
    }
    // All bytes are ASCII, so this cannot fail; keep the checked conversion anyway.
    std::str::from_utf8(name).map_err(|_| ChannelError::BadByte)
}

/// The namespace of a (valid) channel name: the part before the first `:`.
pub fn namespace(name: &str) -> &str {
    name.split_once(':').map_or(name, |(ns, _)| ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in [
            "ticker:BTC-USD",
            "signals:LSTM",
            "orders:42",
            "alerts",
            "market_status",
            "user:alice@example.com",
            "notes/2024.01#u7",
            "a",
        ] {
            assert_eq!(validate(ok.as_bytes()), Ok(ok), "{ok}");
        }
        let longest = "x".repeat(MAX_CHANNEL_LEN);
        assert!(validate(longest.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(validate(b""), Err(ChannelError::Empty));
        let too_long = "x".repeat(MAX_CHANNEL_LEN + 1);
        assert_eq!(validate(too_long.as_bytes()), Err(ChannelError::TooLong));
        for bad in [
            &b"ticker BTC"[..],
            b"a\"b",
            b"a\\b",
            b"a*",
            b"caf\xc3\xa9",
            b"\x00",
            b"a,b",
            b"a?b",
        ] {
            assert_eq!(validate(bad), Err(ChannelError::BadByte), "{bad:?}");
        }
    }

    #[test]
    fn namespace_is_the_part_before_the_first_colon() {
        assert_eq!(namespace("ticker:BTC-USD"), "ticker");
        assert_eq!(namespace("a:b:c"), "a");
        assert_eq!(namespace("alerts"), "alerts");
        assert_eq!(namespace(":x"), "");
    }
}
