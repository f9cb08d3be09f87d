//! Who a connection is, and what it may do.
//!
//! A connection presents at most two kinds of credential, at the upgrade
//! (`Authorization: Bearer <t>` or `?token=<t>`) or later with `{"op":"auth","token":..}`:
//!
//! - the **publish key** (`--publish-key`): may publish anywhere; counts as authenticated
//!   for namespaces without anonymous access; owns no private channel;
//! - a **JWT** verified with [`jsonwebtoken`]: HS256 with `--jwt-secret`, RS256 or ES256
//!   with `--jwt-public-key` (the key type picks the one algorithm accepted, so neither
//!   `alg: none` nor an HMAC token "signed" with the public key is ever accepted). `exp` is
//!   required; `exp` and `nbf` are checked with `--jwt-leeway-secs`. Claims: `sub`, `admin`,
//!   `sub_channels` and `pub_channels` (patterns where `*` matches any run of characters).
//!
//! The rules ([`may_subscribe`], [`may_publish`]) are pure functions of the namespace
//! table, the [`Identity`] and the channel name, so they are tested without sockets.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

use crate::config::Config;
use crate::error::ErrorCode;
use crate::namespace::{Namespaces, Publish};
use crate::relay::Relay;

/// Close code for authentication failures on a live connection (token expired, no `auth`
/// in time): "do not reconnect without a new token".
pub const CLOSE_AUTH: u16 = 4001;

/// Most patterns a token may carry in `sub_channels` or `pub_channels`.
pub const MAX_PATTERNS: usize = 256;
/// Longest pattern a token may carry, in bytes.
pub const MAX_PATTERN_BYTES: usize = 256;

/// Channel patterns from a token: `*` matches any run of characters (also none),
/// everything else matches itself, case-sensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns(Box<[Box<str>]>);

impl Patterns {
    /// Whether any pattern matches `channel`.
    pub fn matches(&self, channel: &str) -> bool {
        self.0
            .iter()
            .any(|p| glob(p.as_bytes(), channel.as_bytes(), false))
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
    /// Publishes anywhere, subscribes to anything (private channels included).
    pub admin: bool,
}

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
    #[serde(default)]
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

/// Verifies JWTs with the configured keys. Each key accepts exactly one algorithm.
pub struct Verifier {
    secret: Option<DecodingKey>,
    public: Option<(DecodingKey, Algorithm)>,
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.secret.is_some())
            .field("public", &self.public.as_ref().map(|(_, a)| *a))
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl Verifier {
    /// The verifier `config` asks for (`None`: no JWT configured). Reads the public key
    /// file; an RSA key accepts RS256 only, a P-256 key ES256 only.
    pub fn from_config(config: &Config) -> Result<Option<Verifier>, String> {
        let secret = match config.jwt_secret.as_deref() {
            Some("") => return Err("--jwt-secret is empty".into()),
            Some(s) => Some(DecodingKey::from_secret(s.as_bytes())),
            None => None,
        };
        let public = match &config.jwt_public_key {
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
            leeway: config.jwt_leeway_secs,
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
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp"]);
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
        K::ExpiredSignature => "invalid token: expired",
        K::ImmatureSignature => "invalid token: not valid yet (nbf)",
        K::InvalidSignature => "invalid token: bad signature",
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "invalid token: algorithm not accepted",
        K::MissingRequiredClaim(_) => "invalid token: no exp claim",
        K::InvalidClaimFormat(_) | K::Json(_) => "invalid token: malformed claims",
        _ => "invalid token: malformed",
    }
}

/// What a connection has shown.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Presented the publish key.
    pub publisher: bool,
    /// Presented a valid JWT (the newest one).
    pub claims: Option<Claims>,
}

impl Identity {
    /// Any credential at all.
    pub fn authenticated(&self) -> bool {
        self.publisher || self.claims.is_some()
    }

    /// A token with `admin: true`.
    pub fn admin(&self) -> bool {
        self.claims.as_ref().is_some_and(|c| c.admin)
    }

    /// The token's `sub`.
    pub fn sub(&self) -> Option<&str> {
        self.claims.as_ref().and_then(|c| c.sub.as_deref())
    }

    /// Trusted ingest (publish key or admin token): exempt from the command rate limit.
    pub fn trusted(&self) -> bool {
        self.publisher || self.admin()
    }
}

/// A credential, checked.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The publish key.
    PublishKey,
    /// A valid JWT.
    Token(Claims),
}

impl Credential {
    /// Adds this credential to `who` (a token replaces an earlier token).
    pub fn apply(self, who: &mut Identity) {
        match self {
            Credential::PublishKey => who.publisher = true,
            Credential::Token(c) => who.claims = Some(c),
        }
    }
}

/// Checks a presented token: the publish key, else a JWT if one is configured.
pub fn check(relay: &Relay, token: &str) -> Result<Credential, &'static str> {
    if relay.check_publish_key(token) {
        return Ok(Credential::PublishKey);
    }
    match &relay.jwt {
        Some(v) => v.verify(token).map(Credential::Token),
        None => Err("invalid token"),
    }
}

/// A refused subscribe or publish: `forbidden` (authenticated, not allowed) or
/// `unauthorized` (no credential at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// `forbidden` or `unauthorized`.
    pub code: ErrorCode,
    /// One-line reason.
    pub message: &'static str,
}

fn forbidden(message: &'static str) -> Denial {
    Denial {
        code: ErrorCode::Forbidden,
        message,
    }
}

fn unauthorized(message: &'static str) -> Denial {
    Denial {
        code: ErrorCode::Unauthorized,
        message,
    }
}

/// The owners of `channel`: the `#<id>` suffix and, in a private namespace, the part
/// after the first `:`. A private channel is anybody's only when all of them agree.
fn owners<'a>(ns: &Namespaces, channel: &'a str) -> [Option<&'a str>; 2] {
    let by_ns = ns
        .of(channel)
        .private
        .then(|| channel.split_once(':').map_or("", |(_, id)| id));
    [ns.owner(channel), by_ns]
}

/// A namespace spelled in another case than a private one (`USER:42` beside `user`):
/// its channels are distinct, but refusing them keeps a confused publisher from
/// leaking a user's messages into a public look-alike.
fn private_look_alike(ns: &Namespaces, channel: &str) -> bool {
    let name = Namespaces::name_of(channel);
    if !name.bytes().any(|b| b.is_ascii_uppercase()) || ns.of(channel).private {
        return false;
    }
    ns.of(&name.to_ascii_lowercase()).private
}

/// Whether `who` may subscribe to `channel` (a valid channel name).
///
/// 1. Private channels (see [`Namespaces::owner`]) only for a token whose `sub` equals
///    the owner id exactly, or an admin token; never when the id is empty.
/// 2. Namespaces with `anonymous = false` need a credential.
/// 3. A token with `sub_channels` only for channels matching one of them (admin too).
pub fn may_subscribe(ns: &Namespaces, who: &Identity, channel: &str) -> Result<(), Denial> {
    if private_look_alike(ns, channel) {
        return Err(forbidden(
            "channel names are case-sensitive: this namespace is a private one in another case",
        ));
    }
    let owners = owners(ns, channel);
    if owners.iter().flatten().any(|o| o.is_empty()) {
        return Err(forbidden("a private channel needs an owner id"));
    }
    if owners.iter().any(Option::is_some) && !who.admin() {
        match who.sub() {
            Some(sub) if owners.iter().flatten().all(|o| *o == sub) => {}
            _ if !who.authenticated() => {
                return Err(unauthorized(
                    "a private channel needs a token whose sub owns it",
                ))
            }
            _ => return Err(forbidden("this private channel belongs to another user")),
        }
    }
    if !ns.of(channel).anonymous && !who.authenticated() {
        return Err(unauthorized(
            "this namespace needs a token: connect with ?token= or send an auth op",
        ));
    }
    if let Some(p) = who.claims.as_ref().and_then(|c| c.sub_channels.as_ref()) {
        if !p.matches(channel) {
            return Err(forbidden(
                "the token's sub_channels do not include this channel",
            ));
        }
    }
    Ok(())
}

/// Whether `who` may publish to `channel`. `enabled`: the relay has a publish key or a
/// JWT key (otherwise publishing from outside is off).
///
/// The publish key and admin tokens publish anywhere; a token whose `pub_channels`
/// match publishes there; in a `publish = "authenticated"` namespace any token does,
/// but into a private channel only its owner's.
pub fn may_publish(
    ns: &Namespaces,
    who: &Identity,
    channel: &str,
    enabled: bool,
) -> Result<(), Denial> {
    if !enabled {
        return Err(forbidden(
            "publishing is disabled on this relay (no publish key set)",
        ));
    }
    if who.trusted() {
        return Ok(());
    }
    let Some(claims) = &who.claims else {
        return Err(unauthorized(
            "publishing needs the publish key or a token: connect with ?token= or send an auth op",
        ));
    };
    if claims
        .pub_channels
        .as_ref()
        .is_some_and(|p| p.matches(channel))
    {
        return Ok(());
    }
    if ns.of(channel).publish == Publish::Authenticated {
        let owners = owners(ns, channel);
        let mine = owners
            .iter()
            .flatten()
            .all(|o| !o.is_empty() && Some(*o) == who.sub());
        if mine && !private_look_alike(ns, channel) {
            return Ok(());
        }
    }
    Err(forbidden("this token may not publish to this channel"))
}

/// Whether a browser `Origin` may connect. An empty list or `*` allows all; requests
/// without `Origin` (non-browser clients) are allowed, since the check guards against
/// cross-site pages, which always send one. Entries may use `*` and compare
/// case-insensitively (`https://*.example.com`).
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    allowed.is_empty()
        || allowed
            .iter()
            .any(|a| glob(a.trim().as_bytes(), origin.as_bytes(), true))
}

/// Why a connection's deadline closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Why {
    /// The token's `exp` (plus leeway) passed without a refresh.
    Expired = 1,
    /// No credential arrived within `--auth-timeout-ms` where one was needed.
    NoAuth = 2,
}

/// A connection's authentication deadline, shared by its reader (sets it) and writer
/// (closes the connection with 4001 when it passes).
#[derive(Debug)]
pub struct Deadline {
    base: Instant,
    /// Milliseconds after `base`; `u64::MAX`: none.
    at_ms: AtomicU64,
    why: AtomicU8,
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline {
            base: Instant::now(),
            at_ms: AtomicU64::new(u64::MAX),
            why: AtomicU8::new(0),
        }
    }
}

impl Deadline {
    /// Sets (or with `None` clears) the deadline.
    pub fn set(&self, at: Option<Instant>, why: Why) {
        let ms = at.map_or(u64::MAX, |t| {
            t.saturating_duration_since(self.base).as_millis() as u64
        });
        self.why.store(why as u8, Ordering::Relaxed);
        self.at_ms.store(ms, Ordering::Release);
    }

    /// When it falls due, if set.
    pub fn due(&self) -> Option<Instant> {
        match self.at_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            ms => Some(self.base + Duration::from_millis(ms)),
        }
    }

    /// If the deadline has passed: clears it and returns the close reason.
    pub fn fire(&self, now: Instant) -> Option<&'static str> {
        let due = self.due()?;
        if now < due {
            return None;
        }
        self.at_ms.store(u64::MAX, Ordering::Release);
        Some(match self.why.load(Ordering::Relaxed) {
            x if x == Why::NoAuth as u8 => "authentication timeout: send a token",
            _ => "token expired: refresh with an auth op before exp",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Option<Patterns> {
        Some(Patterns(p.iter().map(|s| Box::from(*s)).collect()))
    }

    fn user(sub: &str) -> Identity {
        Identity {
            publisher: false,
            claims: Some(Claims {
                sub: Some(sub.into()),
                exp: u64::MAX,
                sub_channels: None,
                pub_channels: None,
                admin: false,
            }),
        }
    }

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

    #[test]
    fn private_channels_belong_to_their_owner_only() {
        let ns = Namespaces::default();
        let me = user("42");
        assert_eq!(may_subscribe(&ns, &me, "user:42"), Ok(()));
        assert_eq!(may_subscribe(&ns, &me, "orders:42"), Ok(()));
        assert_eq!(may_subscribe(&ns, &me, "signals#42"), Ok(()));
        for other in [
            "user:43",
            "user:420",
            "user:4",
            "user:42:x",
            "user:42#",
            "user:43#42",
            "user:42#43",
            "signals#43",
            "user",
            "user:",
            "x#",
            "USER:42",
            "User:43",
            "Orders:42",
        ] {
            let d = may_subscribe(&ns, &me, other).unwrap_err();
            assert_eq!(d.code, ErrorCode::Forbidden, "{other}");
        }
        // Anonymous: unauthorized, not forbidden.
        let anon = Identity::default();
        assert_eq!(
            may_subscribe(&ns, &anon, "user:42").unwrap_err().code,
            ErrorCode::Unauthorized
        );
        assert_eq!(may_subscribe(&ns, &anon, "ticker:BTC-USD"), Ok(()));
        // The publish key owns nothing.
        let key = Identity {
            publisher: true,
            claims: None,
        };
        assert_eq!(
            may_subscribe(&ns, &key, "user:42").unwrap_err().code,
            ErrorCode::Forbidden
        );
        // Admin reads any owned private channel, never an owner-less one.
        let mut admin = user("ops");
        admin.claims.as_mut().unwrap().admin = true;
        assert_eq!(may_subscribe(&ns, &admin, "user:42"), Ok(()));
        assert!(may_subscribe(&ns, &admin, "user").is_err());
    }

    #[test]
    fn sub_channels_narrow_but_never_widen() {
        let ns = Namespaces::default();
        let mut me = user("7");
        me.claims.as_mut().unwrap().sub_channels = pats(&["ticker:*", "user:*", "*"]);
        assert_eq!(may_subscribe(&ns, &me, "ticker:X"), Ok(()));
        assert_eq!(
            may_subscribe(&ns, &me, "user:42").unwrap_err().code,
            ErrorCode::Forbidden
        );
        me.claims.as_mut().unwrap().sub_channels = pats(&["ticker:*"]);
        assert_eq!(
            may_subscribe(&ns, &me, "signals").unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert_eq!(
            may_subscribe(&ns, &me, "user:7").unwrap_err().code,
            ErrorCode::Forbidden,
            "own channel outside sub_channels"
        );
    }

    #[test]
    fn publishing_rules() {
        let ns = Namespaces::from_toml(
            "[namespaces.chat]\npublish = \"authenticated\"\n[namespaces.inbox]\nprivate = true\npublish = \"authenticated\"",
        )
        .unwrap();
        let anon = Identity::default();
        let me = user("7");
        assert_eq!(
            may_publish(&ns, &anon, "x", false).unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert_eq!(
            may_publish(&ns, &anon, "x", true).unwrap_err().code,
            ErrorCode::Unauthorized
        );
        assert_eq!(
            may_publish(&ns, &me, "ticker:X", true).unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert_eq!(may_publish(&ns, &me, "chat:room", true), Ok(()));
        assert_eq!(may_publish(&ns, &me, "inbox:7", true), Ok(()));
        assert!(may_publish(&ns, &me, "inbox:8", true).is_err());
        let mut p = user("feed");
        p.claims.as_mut().unwrap().pub_channels = pats(&["ticker:*"]);
        assert_eq!(may_publish(&ns, &p, "ticker:X", true), Ok(()));
        assert!(may_publish(&ns, &p, "signals", true).is_err());
        let key = Identity {
            publisher: true,
            claims: None,
        };
        assert_eq!(may_publish(&ns, &key, "user:1", true), Ok(()));
    }

    #[test]
    fn origins() {
        let list = vec![
            "https://app.example.com".to_string(),
            "http://*.local:8080".into(),
        ];
        assert!(origin_allowed(&[], Some("https://evil.com")));
        assert!(origin_allowed(&list, None));
        assert!(origin_allowed(&list, Some("HTTPS://APP.example.com")));
        assert!(origin_allowed(&list, Some("http://a.local:8080")));
        assert!(!origin_allowed(
            &list,
            Some("https://app.example.com.evil.com")
        ));
        assert!(!origin_allowed(&list, Some("http://a.local:8081")));
        assert!(origin_allowed(&["*".into()], Some("null")));
    }

    #[test]
    fn deadline_fires_once() {
        let d = Deadline::default();
        let now = Instant::now();
        assert_eq!(d.fire(now), None);
        d.set(Some(now), Why::NoAuth);
        assert!(d.fire(now).unwrap().contains("authentication"));
        assert_eq!(d.fire(now), None);
        d.set(Some(now + Duration::from_secs(5)), Why::Expired);
        assert_eq!(d.fire(now), None);
        assert!(d
            .fire(now + Duration::from_secs(6))
            .unwrap()
            .contains("expired"));
    }
}
