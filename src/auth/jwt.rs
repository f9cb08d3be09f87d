//! JWT verification: the configured keys, the one algorithm each accepts, the claims
//! a token carries, and the one-line reasons a token is refused with.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

use std::path::Path;

use super::Patterns;

/// Most patterns a token may carry in `sub_channels` or `pub_channels`.
pub const MAX_PATTERNS: usize = 256;
/// Longest pattern a token may carry, in bytes.
pub const MAX_PATTERN_BYTES: usize = 256;

/// The verified claims of a JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user id (`sub`); owns the private channels `<ns>:<sub>` and `..#<sub>`.
    pub sub: Option<Box<str>>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// May subscribe only to these (absent: the namespace rules alone).
    pub sub_channels: Option<Patterns>,
    /// May publish to these.
    pub pub_channels: Option<Patterns>,
    /// Publishes anywhere, subscribes to anything (private channels included): the
    /// `tickrelay_admin` claim (named so that no other service's `admin` grants it).
    pub admin: bool,
}

/// The claim that makes a token an admin of this relay.
pub const ADMIN_CLAIM: &str = "tickrelay_admin";

/// The claims as they are on the wire. Typed fields make a token with, say, a string
/// `exp`, `nbf` or `admin` fail to decode rather than have the claim ignored.
#[derive(Deserialize)]
struct WireClaims {
    #[serde(default)]
    sub: Option<String>,
    exp: u64,
    #[serde(default)]
    #[allow(dead_code)] // checked by jsonwebtoken; typed here so a string `nbf` is refused
    nbf: Option<u64>,
    #[serde(default)]
    sub_channels: Option<Vec<String>>,
    #[serde(default)]
    pub_channels: Option<Vec<String>>,
    #[serde(default, rename = "tickrelay_admin")]
    admin: bool,
}

fn patterns(list: Option<Vec<String>>) -> Result<Option<Patterns>, &'static str> {
    let Some(list) = list else { return Ok(None) };
    if list.len() > MAX_PATTERNS || list.iter().any(|p| p.len() > MAX_PATTERN_BYTES) {
        return Err("invalid token: too many or too long channel patterns");
    }
    Ok(Some(Patterns(
        list.into_iter().map(String::into_boxed_str).collect(),
    )))
}

/// What a [`Verifier`] is built from: the `--jwt-secret`, `--jwt-public-key` and
/// `--jwt-leeway-secs` settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct JwtSettings<'a> {
    /// HS256 secret.
    pub secret: Option<&'a str>,
    /// PEM public key file (RSA: RS256, P-256: ES256).
    pub public_key: Option<&'a Path>,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// `--jwt-audience`: the `aud` a token must name.
    pub audience: Option<&'a str>,
    /// `--jwt-issuer`: the `iss` a token must have.
    pub issuer: Option<&'a str>,
}

/// Verifies JWTs with the configured keys. Each key accepts exactly one algorithm.
pub struct Verifier {
    secret: Option<DecodingKey>,
    public: Option<(DecodingKey, Algorithm)>,
    leeway: u64,
    audience: Option<String>,
    issuer: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.secret.is_some())
            .field("public", &self.public.as_ref().map(|(_, a)| *a))
            .field("leeway", &self.leeway)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl Verifier {
    /// The verifier `settings` ask for (`None`: no JWT key set). Reads the public key
    /// file; an RSA key accepts RS256 only, a P-256 key ES256 only.
    pub fn new(settings: &JwtSettings<'_>) -> Result<Option<Verifier>, String> {
        let secret = match settings.secret {
            Some("") => return Err("--jwt-secret is empty".into()),
            Some(s) => Some(DecodingKey::from_secret(s.as_bytes())),
            None => None,
        };
        let public = match settings.public_key {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                Some(public_key(&pem).map_err(|e| format!("{}: {e}", path.display()))?)
            }
        };
        if secret.is_none() && public.is_none() {
            return Ok(None);
        }
        Ok(Some(Verifier {
            secret,
            public,
            leeway: settings.leeway_secs,
            audience: settings.audience.map(str::to_owned),
            issuer: settings.issuer.map(str::to_owned),
        }))
    }

    /// Checks signature, algorithm, `exp` and `nbf`; returns the claims or a one-line
    /// reason fit for a 401 or an `unauthorized` error.
    pub fn verify(&self, token: &str) -> Result<Claims, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "invalid token: malformed")?;
        let key = match header.alg {
            Algorithm::HS256 => self.secret.as_ref(),
            alg => self
                .public
                .as_ref()
                .filter(|(_, a)| *a == alg)
                .map(|(k, _)| k),
        }
        .ok_or("invalid token: algorithm not accepted")?;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<WireClaims>(token, key, &v).map_err(reason)?;
        let c = data.claims;
        Ok(Claims {
            sub: c.sub.map(String::into_boxed_str),
            exp: c.exp,
            sub_channels: patterns(c.sub_channels)?,
            pub_channels: patterns(c.pub_channels)?,
            admin: c.admin,
        })
    }

    /// When a token with `exp` stops being valid: `exp` plus the leeway.
    pub fn expires_at(&self, claims: &Claims) -> Instant {
        let end_ms = claims.exp.saturating_add(self.leeway).saturating_mul(1000);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Instant::now() + Duration::from_millis(end_ms.saturating_sub(now_ms))
    }
}

fn public_key(pem: &[u8]) -> Result<(DecodingKey, Algorithm), String> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("BEGIN RSA PUBLIC KEY") || text.contains("BEGIN PUBLIC KEY") {
        if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            return Ok((k, Algorithm::RS256));
        }
        if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            return Ok((k, Algorithm::ES256));
        }
    }
    Err("not an RSA or P-256 public key in PEM (want -----BEGIN PUBLIC KEY-----)".into())
}

fn reason(e: jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => crate::error::TOKEN_EXPIRED,
        K::ImmatureSignature => "invalid token: not valid yet (nbf)",
        K::InvalidSignature => "invalid token: bad signature",
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "invalid token: algorithm not accepted",
        K::MissingRequiredClaim(c) if c == "aud" => "invalid token: no aud claim",
        K::MissingRequiredClaim(c) if c == "iss" => "invalid token: no iss claim",
        K::MissingRequiredClaim(_) => "invalid token: no exp claim",
        K::InvalidAudience => "invalid token: wrong audience (aud)",
        K::InvalidIssuer => "invalid token: wrong issuer (iss)",
        K::InvalidClaimFormat(_) | K::Json(_) => "invalid token: malformed claims",
        _ => "invalid token: malformed",
    }
}
