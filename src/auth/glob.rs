//! Channel patterns and the `*`-glob behind them (token claims and allowed origins).

/// Channel patterns from a token: `*` matches any run of characters (also none),
/// everything else matches itself, case-sensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns(pub(super) Box<[Box<str>]>);

impl Patterns {
    /// Whether any pattern matches `channel`.
    pub fn matches(&self, channel: &str) -> bool {
        self.0
            .iter()
            .any(|p| glob(p.as_bytes(), channel.as_bytes(), false))
    }

    /// Whether a pattern that `keep` accepts matches `channel`.
    pub fn matches_if(&self, channel: &str, keep: impl Fn(&str) -> bool) -> bool {
        self.0
            .iter()
            .any(|p| keep(p) && glob(p.as_bytes(), channel.as_bytes(), false))
    }
}

/// `*`-glob match without recursion: O(len(p) * len(s)) at worst, with both bounded.
/// `fold` compares ASCII case-insensitively (for origins).
pub fn glob(p: &[u8], s: &[u8], fold: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if fold {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && eq(p[pi], s[si]) {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, s, ok) in [
            ("ticker:*", "ticker:BTC-USD", true),
            ("ticker:*", "ticker:", true),
            ("ticker:*", "tickers:x", false),
            ("*", "", true),
            ("*:BTC-*", "ticker:BTC-USD", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("", "", true),
            ("", "x", false),
            ("**", "anything", true),
        ] {
            assert_eq!(glob(p.as_bytes(), s.as_bytes(), false), ok, "{p} vs {s}");
        }
        assert!(glob(
            b"HTTPS://*.Example.com",
            b"https://app.example.COM",
            true
        ));
        assert!(!glob(b"ticker:*", b"TICKER:x", false));
    }
}
