//! One connection's credentials and command limit: the `auth` op (first credential or
//! refresh), the subscribe and publish checks, the command rate limit, and the
//! authentication deadline its writer enforces with close code 4001.
//!
//! The rules themselves are in [`crate::auth`] and [`crate::limits`]; this file applies
//! them to a [`Session`].

use tokio::time::Instant;

use super::Session;
use crate::auth::{self, Credential, Deadline, Identity, Why};
use crate::dialect::Dialect;
use crate::error::ErrorCode;
use crate::limits::{CommandLimit, Verdict};
use crate::protocol::close::{CloseCode, Fail};
use crate::protocol::command::Id;
use crate::relay::Relay;

/// A connection's credentials, deadline and command limit; owned by its reader.
pub struct Access {
    /// What the connection has shown.
    pub who: Identity,
    /// `?channels=` that wait for a credential (sent with an `auth` op).
    pending: Vec<String>,
    limit: CommandLimit,
}

impl Access {
    /// Access for a connection that showed `who` at the upgrade.
    /// `deadline` (the outbox's, shared with the writer, which closes the connection
    /// with 4001 when it passes) is set to the token's expiry.
    pub fn new(relay: &Relay, who: Identity, deadline: &Deadline) -> Self {
        let cfg = &relay.config;
        if let (Some(c), Some(v)) = (&who.claims, &relay.jwt) {
            deadline.set(Some(v.expires_at(c)), Why::Expired);
        }
        Access {
            who,
            pending: Vec::new(),
            limit: CommandLimit::new(
                cfg.max_commands_per_sec,
                cfg.command_burst,
                cfg.rate_limit_close_after,
            ),
        }
    }
}

/// Whether the relay accepts publishes from outside at all.
pub fn publishing_enabled(relay: &Relay) -> bool {
    relay.config.publish_key.is_some() || relay.jwt.is_some()
}

impl<D: Dialect> Session<D> {
    /// The `?channels=` of the upgrade: subscribed at once, or, when they need a
    /// credential the connection has not shown, held until an `auth` op arrives within
    /// `--auth-timeout-ms`. A connection that could do nothing anonymously (no namespace
    /// is anonymous) gets the same deadline.
    pub(super) fn connect(&mut self, channels: Vec<String>) {
        if D::HANDSHAKE {
            // Nothing happens before the handshake, which must come in time.
            let at = Instant::now() + self.relay.config.auth_timeout();
            self.outbox.deadline().set(Some(at), Why::NoAuth);
            return;
        }
        let ns = &self.relay.config.namespaces;
        let who = &self.access.who;
        let waits = !who.authenticated()
            && channels.iter().any(|c| {
                auth::may_subscribe(ns, who, c).is_err_and(|d| d.code == ErrorCode::Unauthorized)
            });
        if !who.authenticated() && (waits || !ns.any_anonymous()) {
            let at = Instant::now() + self.relay.config.auth_timeout();
            self.outbox.deadline().set(Some(at), Why::NoAuth);
        }
        if waits {
            self.access.pending = channels;
            return;
        }
        if channels.is_empty() {
            return;
        }
        let allowed = channels
            .iter()
            .all(|c| auth::may_subscribe(ns, who, c).is_ok());
        self.subscribe(None, &channels, &[], None);
        if allowed && self.subs.len() < channels.len() {
            // Allowed, within the subscription limit (checked at the upgrade), and still
            // refused: the relay's channel table is full. A connection opened for these
            // channels is of no use without them; tell it to back off.
            // 1013: over capacity for what the connection asked; the reason says when
            // to retry.
            self.outbox.close_with(self.dialect.close(
                CloseCode::OVERLOADED,
                "over capacity: channel limit reached, retry in 30s",
            ));
        }
    }

    /// Applies the command rate limit to one command (already read, so a refusal costs
    /// no second parse). `None`: run it. `Some(end)`: it was refused (and answered with
    /// its `id`); `end` is a close to send when the abuse goes on.
    pub(super) fn admit(&mut self, id: Option<&Id>) -> Option<Option<Fail>> {
        if self.access.who.trusted() {
            return None;
        }
        match self.access.limit.check(Instant::now()) {
            Verdict::Run => None,
            Verdict::Refuse => {
                self.error(
                    id,
                    ErrorCode::RateLimited,
                    "too many commands: slow down (see max_commands_per_sec)",
                );
                Some(None)
            }
            Verdict::Close => {
                self.relay.metrics.error(ErrorCode::RateLimited);
                Some(Some((
                    CloseCode::POLICY,
                    "command rate limit exceeded repeatedly",
                )))
            }
        }
    }

    /// Applies the command rate limit to a ping (a control frame is as cheap to send
    /// as a command): `None`, answer it; `Some(None)`, ignore it; `Some(Some(fail))`,
    /// close. Not applied to trusted connections or to a conformance dialect.
    pub(super) fn admit_control(&mut self) -> Option<Option<Fail>> {
        if !D::RELAY || self.access.who.trusted() {
            return None;
        }
        match self.access.limit.check(Instant::now()) {
            Verdict::Run => None,
            Verdict::Refuse => Some(None),
            Verdict::Close => {
                self.relay.metrics.error(ErrorCode::RateLimited);
                Some(Some((
                    CloseCode::POLICY,
                    "control frame rate limit exceeded repeatedly",
                )))
            }
        }
    }

    /// Checks every channel of a subscribe; answers the first denial and returns false.
    pub(super) fn may_subscribe<S: AsRef<str>>(&self, id: Option<&Id>, channels: &[S]) -> bool {
        let ns = &self.relay.config.namespaces;
        for c in channels {
            if let Err(d) = auth::may_subscribe(ns, &self.access.who, c.as_ref()) {
                self.error(id, d.code, d.message);
                return false;
            }
        }
        true
    }

    /// Checks a publish; answers a denial and returns false.
    pub(super) fn may_publish(&self, id: Option<&Id>, channel: &str) -> bool {
        let ns = &self.relay.config.namespaces;
        let enabled = publishing_enabled(&self.relay);
        match auth::may_publish(ns, &self.access.who, channel, enabled) {
            Ok(()) => true,
            Err(d) => {
                self.error(id, d.code, d.message);
                false
            }
        }
    }

    /// The `auth` op: a first credential or a refresh. A valid token replaces the
    /// previous one (new `exp`, new claims); subscriptions the new claims no longer allow
    /// are dropped and announced with an `unsubscribed` without `id`. An invalid token
    /// changes nothing and gets `unauthorized`.
    pub(super) fn authenticate(&mut self, id: Option<&Id>, token: &str) {
        let Some(exp) = self.credential(id, token) else {
            return;
        };
        self.reply(self.dialect.authenticated(id, self.access.who.sub(), exp));
        self.revoke();
        let pending = std::mem::take(&mut self.access.pending);
        if !pending.is_empty() {
            self.subscribe(None, &pending, &[], None);
        }
    }

    /// Checks and applies a credential and moves the deadline to its expiry. The caller
    /// queues its reply next, before anything else, so the writer, woken by it, sees the
    /// new deadline at once (an earlier `exp` than before is then enforced in time).
    /// `Some(exp)`: accepted, with the token's `exp` to tell; `None`: refused (answered).
    pub(super) fn credential(&mut self, id: Option<&Id>, token: &str) -> Option<Option<u64>> {
        let cred = match auth::check(self.relay.keys(), token) {
            Ok(c) => c,
            Err(reason) => {
                self.error(id, ErrorCode::Unauthorized, reason);
                return None;
            }
        };
        let is_token = matches!(cred, Credential::Token(_));
        cred.apply(&mut self.access.who);
        let expires = self.token_expiry();
        self.outbox
            .deadline()
            .set(expires.map(|e| e.0), Why::Expired);
        Some(if is_token { expires.map(|e| e.1) } else { None })
    }

    /// When the connection's token stops being valid, and its `exp`.
    pub(super) fn token_expiry(&self) -> Option<(Instant, u64)> {
        match (&self.access.who.claims, &self.relay.jwt) {
            (Some(c), Some(v)) => Some((v.expires_at(c), c.exp)),
            _ => None,
        }
    }

    /// Drops subscriptions the current credentials no longer allow.
    pub(super) fn revoke(&mut self) {
        let ns = &self.relay.config.namespaces;
        let mut gone: Vec<Box<str>> = Vec::new();
        let mut keys: Vec<u64> = Vec::new();
        self.subs.retain(|(name, key)| {
            let keep = auth::may_subscribe(ns, &self.access.who, name).is_ok();
            if !keep {
                gone.push(name.clone());
                keys.push(*key);
            }
            keep
        });
        if gone.is_empty() {
            return;
        }
        for (name, key) in gone.iter().zip(&keys) {
            self.relay.hub.unsubscribe(name, self.conn);
            self.outbox.forget(*key);
        }
        let names: Vec<&str> = gone.iter().map(|n| &**n).collect();
        self.reply(self.dialect.unsubscribed(None, &names));
    }
}
