//! What a connection has shown ([`Identity`], a [`Credential`] [`check`]ed against the
//! relay's [`Keys`]) and what it may do: the subscribe and publish rules, private channels
//! and their look-alikes, allowed origins.

use super::{glob, Claims, Verifier};
use crate::error::ErrorCode;
use crate::namespace::{Namespaces, Publish};

/// What a connection has shown.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Presented the publish key (or the relay key, which implies it).
    pub publisher: bool,
    /// Presented the relay key (`--relay-key`): an edge relay, a trusted heavy
    /// subscriber (see [`Identity::relay`]).
    pub relay: bool,
    /// Presented a valid JWT (the newest one).
    /// Boxed: most connections have none, and this is held by every connection.
    pub claims: Option<Box<Claims>>,
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

    /// An edge relay (the relay key): `--relay-queue-bytes` instead of `--queue-bytes`,
    /// no subscription limit, no conflation by lag (it is closed as a slow consumer
    /// instead, and recovers), publishes allowed like the publish key's.
    pub fn relay(&self) -> bool {
        self.relay
    }
}

/// A credential, checked.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The publish key.
    PublishKey,
    /// The relay key (an edge relay; implies the publish key's rights).
    RelayKey,
    /// A valid JWT.
    Token(Claims),
}

impl Credential {
    /// Adds this credential to `who` (a token replaces an earlier token).
    pub fn apply(self, who: &mut Identity) {
        match self {
            Credential::PublishKey => who.publisher = true,
            Credential::RelayKey => {
                who.publisher = true;
                who.relay = true;
            }
            Credential::Token(c) => who.claims = Some(Box::new(c)),
        }
    }
}

/// The credentials a relay accepts: its publish key and its JWT keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keys<'a> {
    /// `--publish-key` (`None`: no publish key).
    pub publish_key: Option<&'a str>,
    /// `--relay-key` (`None`: no edge relay may connect as one).
    pub relay_key: Option<&'a str>,
    /// JWT verification (`None`: no JWT key configured).
    pub jwt: Option<&'a Verifier>,
}

impl Keys<'_> {
    /// Constant-time check of a presented publish key.
    pub fn is_publish_key(&self, presented: &str) -> bool {
        match self.publish_key {
            Some(key) => ct_eq(key.as_bytes(), presented.as_bytes()),
            None => false,
        }
    }
}

/// Compares without an early exit on the first differing byte.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a presented token: the publish key, else a JWT if one is configured.
pub fn check(keys: Keys<'_>, token: &str) -> Result<Credential, &'static str> {
    if keys.is_publish_key(token) {
        return Ok(Credential::PublishKey);
    }
    if keys
        .relay_key
        .is_some_and(|k| ct_eq(k.as_bytes(), token.as_bytes()))
    {
        return Ok(Credential::RelayKey);
    }
    match keys.jwt {
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

/// Whether `pattern` (from `pub_channels`) may grant publishing to `channel`: a public
/// channel, any pattern; a `...#<id>` channel, only a pattern that names a `#` itself; a
/// channel of a private namespace, only a pattern that spells that namespace before
/// its first `*` (`orders:*` reaches `orders:42`; `*` and `ticker:*` reach no user's
/// channel).
fn reaches(ns: &Namespaces, pattern: &str, channel: &str) -> bool {
    if channel.contains('#') && !pattern.contains('#') {
        return false;
    }
    if ns.of(channel).private {
        let literal = pattern.split('*').next().unwrap_or("");
        let name = Namespaces::name_of(channel);
        return literal.len() > name.len()
            && literal.starts_with(name)
            && literal.as_bytes()[name.len()] == b':';
    }
    true
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
        .is_some_and(|p| p.matches_if(channel, |pat| reaches(ns, pat, channel)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Patterns;

    fn pats(p: &[&str]) -> Option<Patterns> {
        Some(Patterns(p.iter().map(|s| Box::from(*s)).collect()))
    }

    fn user(sub: &str) -> Identity {
        Identity {
            publisher: false,
            relay: false,
            claims: Some(Box::new(Claims {
                sub: Some(sub.into()),
                exp: u64::MAX,
                sub_channels: None,
                pub_channels: None,
                admin: false,
            })),
        }
    }

    #[test]
    fn ct_eq_compares_exactly() {
        assert!(ct_eq(b"key", b"key"));
        assert!(!ct_eq(b"key", b"kez"));
        assert!(!ct_eq(b"key", b"key2"));
        assert!(!ct_eq(b"", b"x"));
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
            relay: false,
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
        // A pattern never reaches a user's private channel unless it names it.
        assert!(may_publish(&ns, &p, "ticker:X#42", true).is_err());
        let mut all = user("feed");
        all.claims.as_mut().unwrap().pub_channels = pats(&["*"]);
        assert_eq!(may_publish(&ns, &all, "signals", true), Ok(()));
        for private in ["user:42", "orders:42", "ticker:X#42", "inbox:8"] {
            assert!(may_publish(&ns, &all, private, true).is_err(), "{private}");
        }
        let mut feed = user("feed");
        feed.claims.as_mut().unwrap().pub_channels = pats(&["orders:*", "ticker:*#*"]);
        assert_eq!(may_publish(&ns, &feed, "orders:42", true), Ok(()));
        assert_eq!(may_publish(&ns, &feed, "ticker:X#42", true), Ok(()));
        assert!(may_publish(&ns, &feed, "user:42", true).is_err());
        let key = Identity {
            publisher: true,
            relay: false,
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
}
