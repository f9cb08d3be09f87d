//! The `token` target: arbitrary JWTs, and signed ones tampered with.

use crate::config::Config;

/// The secret the `token` target verifies with.
pub const TOKEN_SECRET: &str = "fuzz-jwt-secret-of-a-decent-length";

/// Arbitrary bytes as a JWT, and as claims signed and then tampered with. Never panics;
/// a verdict is deterministic; a validly signed, unexpired token is accepted with its
/// own `sub`; changing any byte of its signed part gets it refused.
pub fn token(data: &[u8]) {
    let config = Config {
        jwt_secret: Some(TOKEN_SECRET.into()),
        ..Config::default()
    };
    let verifier = match crate::auth::Verifier::new(&config.jwt_settings()) {
        Ok(Some(v)) => v,
        other => panic!("the fuzz key must load: {other:?}"),
    };
    // 1. Whatever arrives as a token.
    if let Ok(text) = std::str::from_utf8(data) {
        let first = verifier.verify(text).map(|c| c.sub.clone());
        let again = verifier.verify(text).map(|c| c.sub.clone());
        assert_eq!(first, again, "verdicts differ for {text:?}");
    }
    // 2. A token we sign ourselves over a `sub` taken from the input.
    let Some((&pos, rest)) = data.split_first() else {
        return;
    };
    let sub = String::from_utf8_lossy(rest).into_owned();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let claims = serde_json_lite(&sub, exp);
    let good = match jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET.as_bytes()),
    ) {
        Ok(t) => t,
        Err(e) => panic!("signing failed: {e}"),
    };
    match verifier.verify(&good) {
        Ok(c) => assert_eq!(c.sub.as_deref(), Some(sub.as_str())),
        Err(e) => panic!("a valid token was refused ({e}): {good}"),
    }
    // Change one character of the payload segment (never its last, whose spare bits a
    // lenient base64 decoder may ignore): the signature no longer matches.
    let dots: Vec<usize> = good.match_indices('.').map(|(i, _)| i).collect();
    let (start, end) = (dots[0] + 1, dots[1]);
    if end - start < 2 {
        return;
    }
    let at = start + (pos as usize % (end - start - 1));
    let mut bad = good.clone().into_bytes();
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap_or_default();
    assert!(
        verifier.verify(&bad).is_err(),
        "a tampered token was accepted: {bad}"
    );
}

/// The claims of the `token` target as a serializable map.
fn serde_json_lite(sub: &str, exp: u64) -> std::collections::BTreeMap<&'static str, TokenClaim> {
    let mut m = std::collections::BTreeMap::new();
    m.insert("sub", TokenClaim::Text(sub.to_owned()));
    m.insert("exp", TokenClaim::Number(exp));
    m
}

/// One claim value.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum TokenClaim {
    Text(String),
    Number(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_sample() {
        token(b"\x07user-42");
    }
}
