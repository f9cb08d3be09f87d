//! Namespaces: per-namespace delivery, history and access rules.
//!
//! A channel's namespace is the part of its name before the first `:` (the whole name
//! when there is none): `ticker:BTC-USD` is in `ticker`, `alerts` in `alerts`. Settings
//! come from built-in defaults, optionally replaced by a TOML file (`--config`):
//!
//! ```toml
//! [defaults]               # every namespace not listed below
//! delivery = "reliable"    # or "conflate"
//! history = 100            # messages kept per channel for recovery; 0 disables
//! history_ttl_secs = 0     # 0: messages do not expire
//! anonymous = true         # clients without a token may subscribe
//! private = false          # `<ns>:<id>` only for the connection whose token `sub` is <id>
//! publish = "publishers"   # or "authenticated"
//! deflate = "on"           # permessage-deflate: "off", "on" or a size in bytes
//!                          # (unset: --deflate); see protocol::deflate
//!
//! [namespaces.ticker]
//! delivery = "conflate"
//! ```
//!
//! A listed namespace starts from `[defaults]` and overrides what it names. Unknown keys
//! are refused, so a typo never silently changes delivery guarantees.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::protocol::deflate::Setting;

/// What happens to a channel's messages for a connection that falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Prices and the like: a lagging connection gets only the newest pending message
    /// per channel.
    Conflate,
    /// Orders, notifications: never conflated or dropped; a connection over its reliable
    /// budget is closed with 1008 and recovers by offset.
    Reliable,
}

impl Delivery {
    /// The config-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Conflate => "conflate",
            Delivery::Reliable => "reliable",
        }
    }
}

/// Who may publish to a namespace's channels over WebSocket or HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Publish {
    /// The publish key, an `admin` token, or a token whose `pub_channels` match.
    Publishers,
    /// Additionally any authenticated connection (a token with a `sub`).
    Authenticated,
}

impl Publish {
    /// The config-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Publish::Publishers => "publishers",
            Publish::Authenticated => "authenticated",
        }
    }
}

/// Settings of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Conflate or reliable.
    pub delivery: Delivery,
    /// Messages kept per channel (0: no history, no last value).
    pub history: usize,
    /// Age after which a kept message is forgotten (`None`: never).
    pub history_ttl: Option<Duration>,
    /// Clients without a token may subscribe.
    pub anonymous: bool,
    /// `<ns>:<id>` channels belong to the user `<id>`.
    pub private: bool,
    /// Who may publish.
    pub publish: Publish,
    /// permessage-deflate for its channels (`None`: the relay's `--deflate`).
    pub deflate: Option<Setting>,
}

/// Default history length per channel.
pub const DEFAULT_HISTORY: usize = 100;

impl Namespace {
    const DEFAULT: Namespace = Namespace {
        delivery: Delivery::Reliable,
        history: DEFAULT_HISTORY,
        history_ttl: None,
        anonymous: true,
        private: false,
        publish: Publish::Publishers,
        deflate: None,
    };

    fn with(self, delivery: Delivery, private: bool) -> Namespace {
        Namespace {
            delivery,
            private,
            anonymous: !private,
            ..self
        }
    }
}

/// The namespace table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    defaults: Namespace,
    named: BTreeMap<String, Namespace>,
}

impl Default for Namespaces {
    /// `ticker`, `market_status`: conflate, public. `signals`, `alerts`: reliable, public.
    /// `orders`, `user`, `notifications`: reliable, private. Anything else: reliable, public.
    fn default() -> Self {
        let d = Namespace::DEFAULT;
        let mut named = BTreeMap::new();
        for (name, delivery, private) in [
            ("ticker", Delivery::Conflate, false),
            ("market_status", Delivery::Conflate, false),
            ("signals", Delivery::Reliable, false),
            ("alerts", Delivery::Reliable, false),
            ("orders", Delivery::Reliable, true),
            ("user", Delivery::Reliable, true),
            ("notifications", Delivery::Reliable, true),
        ] {
            named.insert(name.to_string(), d.clone().with(delivery, private));
        }
        Namespaces { defaults: d, named }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileNamespace {
    delivery: Option<Delivery>,
    history: Option<usize>,
    history_ttl_secs: Option<u64>,
    anonymous: Option<bool>,
    private: Option<bool>,
    publish: Option<Publish>,
    deflate: Option<FileDeflate>,
}

/// `deflate = "off" | "on" | <bytes>` in a config file.
#[derive(Deserialize)]
#[serde(untagged)]
enum FileDeflate {
    Word(String),
    Bytes(usize),
}

impl FileNamespace {
    fn apply(self, base: &Namespace) -> Result<Namespace, String> {
        let deflate = match self.deflate {
            None => base.deflate,
            Some(FileDeflate::Bytes(n)) => Some(Setting::from_bytes(n)),
            Some(FileDeflate::Word(w)) => Some(w.parse()?),
        };
        Ok(Namespace {
            delivery: self.delivery.unwrap_or(base.delivery),
            history: self.history.unwrap_or(base.history),
            history_ttl: match self.history_ttl_secs {
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s)),
                None => base.history_ttl,
            },
            anonymous: self.anonymous.unwrap_or(base.anonymous),
            private: self.private.unwrap_or(base.private),
            publish: self.publish.unwrap_or(base.publish),
            deflate,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Option<FileNamespace>,
    #[serde(default)]
    namespaces: BTreeMap<String, FileNamespace>,
    /// `[[listener]]` tables: read by [`crate::routes`].
    #[serde(default, rename = "listener")]
    _listener: Vec<toml::Table>,
}

/// Largest history a namespace may ask for (messages per channel).
pub const MAX_HISTORY: usize = 1_000_000;

impl Namespaces {
    /// Parses a config file. Namespaces it lists replace the built-in ones of the same
    /// name; built-ins it does not list stay.
    pub fn from_toml(text: &str) -> Result<Namespaces, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut out = Namespaces::default();
        if let Some(d) = file.defaults {
            out.defaults = d.apply(&Namespace::DEFAULT)?;
        }
        for (name, ns) in file.namespaces {
            if name.is_empty()
                || name.contains(':')
                || crate::protocol::channel::validate(name.as_bytes()).is_err()
            {
                return Err(format!("namespace {name:?} is not a valid channel prefix"));
            }
            let ns = ns
                .apply(&out.defaults)
                .map_err(|e| format!("{name}: {e}"))?;
            out.named.insert(name, ns);
        }
        for (name, ns) in std::iter::once(("[defaults]", &out.defaults))
            .chain(out.named.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if ns.history > MAX_HISTORY {
                return Err(format!("{name}: history is over {MAX_HISTORY}"));
            }
        }
        Ok(out)
    }

    /// The namespace part of a channel name.
    pub fn name_of(channel: &str) -> &str {
        channel.split_once(':').map_or(channel, |(ns, _)| ns)
    }

    /// The settings for `channel`.
    pub fn of(&self, channel: &str) -> &Namespace {
        self.named
            .get(Self::name_of(channel))
            .unwrap_or(&self.defaults)
    }

    /// The user a channel belongs to, if it is private: `<private ns>:<id>` (the id is
    /// everything after the first `:`) or anything ending in `#<id>`.
    pub fn owner<'a>(&self, channel: &'a str) -> Option<&'a str> {
        if let Some((_, id)) = channel.rsplit_once('#') {
            return Some(id);
        }
        match channel.split_once(':') {
            Some((_, id)) if self.of(channel).private => Some(id),
            // A private namespace without an id is nobody's: refuse it to everyone.
            None if self.of(channel).private => Some(""),
            _ => None,
        }
    }

    /// Whether some namespace compresses its messages when the relay-wide setting is
    /// `global` (so the upgrade should negotiate permessage-deflate).
    pub fn any_deflate(&self, global: Setting) -> bool {
        let on = |ns: &Namespace| ns.deflate.unwrap_or(global).threshold().is_some();
        on(&self.defaults) || self.named.values().any(on)
    }

    /// Whether any namespace lets clients without a token subscribe.
    pub fn any_anonymous(&self) -> bool {
        self.defaults.anonymous || self.named.values().any(|n| n.anonymous)
    }

    /// The effective table as a config file (what `--print-config` shows).
    pub fn to_toml(&self) -> String {
        let mut s = String::new();
        let mut section = |title: &str, ns: &Namespace| {
            let _ = writeln!(s, "[{title}]");
            let _ = writeln!(s, "delivery = \"{}\"", ns.delivery.as_str());
            let _ = writeln!(s, "history = {}", ns.history);
            let ttl = ns.history_ttl.map_or(0, |d| d.as_secs());
            let _ = writeln!(s, "history_ttl_secs = {ttl}");
            let _ = writeln!(s, "anonymous = {}", ns.anonymous);
            let _ = writeln!(s, "private = {}", ns.private);
            let _ = writeln!(s, "publish = \"{}\"", ns.publish.as_str());
            if let Some(d) = ns.deflate {
                let _ = writeln!(s, "deflate = \"{d}\"");
            }
            s.push('\n');
        };
        section("defaults", &self.defaults);
        for (name, ns) in &self.named {
            section(&format!("namespaces.{name}"), ns);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_defaults_follow_the_issue() {
        let n = Namespaces::default();
        assert_eq!(n.of("ticker:BTC-USD").delivery, Delivery::Conflate);
        assert_eq!(n.of("market_status").delivery, Delivery::Conflate);
        assert_eq!(n.of("signals:LSTM").delivery, Delivery::Reliable);
        assert!(n.of("alerts").anonymous);
        for p in ["orders:42", "user:42", "notifications:42"] {
            assert!(n.of(p).private && !n.of(p).anonymous, "{p}");
            assert_eq!(n.of(p).delivery, Delivery::Reliable);
        }
        assert_eq!(n.of("whatever:x").delivery, Delivery::Reliable);
        assert_eq!(n.of("whatever:x").history, DEFAULT_HISTORY);
    }

    #[test]
    fn owners() {
        let n = Namespaces::default();
        assert_eq!(n.owner("user:42"), Some("42"));
        assert_eq!(n.owner("orders:42:extra"), Some("42:extra"));
        assert_eq!(n.owner("user"), Some(""));
        assert_eq!(n.owner("signals:LSTM#7"), Some("7"));
        assert_eq!(n.owner("a#b#c"), Some("c"));
        assert_eq!(n.owner("trailing#"), Some(""));
        assert_eq!(n.owner("ticker:BTC-USD"), None);
    }

    #[test]
    fn file_overrides_and_keeps_built_ins() {
        let n = Namespaces::from_toml(
            r#"
            [defaults]
            history = 5
            [namespaces.ticker]
            history = 0
            [namespaces.fx]
            delivery = "conflate"
            history_ttl_secs = 60
            "#,
        )
        .unwrap();
        assert_eq!(n.of("ticker:X").history, 0);
        assert_eq!(
            n.of("ticker:X").delivery,
            Delivery::Reliable,
            "starts from defaults"
        );
        assert_eq!(n.of("fx:EURUSD").history, 5);
        assert_eq!(n.of("fx:EURUSD").history_ttl, Some(Duration::from_secs(60)));
        assert_eq!(n.of("other").history, 5);
        assert!(n.of("user:1").private, "built-ins not listed stay");
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        for (text, what) in [
            (
                "[namespaces.x]\ndelivery = \"sometimes\"",
                "unknown variant",
            ),
            ("[namespaces.x]\nhistroy = 3", "unknown field"),
            ("[namespaces.\"a:b\"]\nhistory = 3", "not a valid"),
            ("[defaults]\nhistory = 100000000", "over"),
            ("[namespaces.x\n", "TOML"),
            ("[namespaces.x]\ndeflate = \"max\"", "deflate must be"),
        ] {
            let e = Namespaces::from_toml(text).unwrap_err();
            assert!(
                e.contains(what) || what == "TOML",
                "{text:?} gave {e:?}, wanted {what:?}"
            );
        }
    }

    #[test]
    fn printed_config_reads_back_the_same() {
        let n = Namespaces::from_toml(
            "[namespaces.fx]\nhistory_ttl_secs = 9\nprivate = true\ndeflate = 300\n[namespaces.ticker]\ndeflate = \"off\"",
        )
        .unwrap();
        assert_eq!(n.of("fx:A").deflate, Some(Setting::from_bytes(300)));
        assert_eq!(n.of("ticker:A").deflate, Some(Setting::OFF));
        assert_eq!(n.of("other").deflate, None);
        assert_eq!(Namespaces::from_toml(&n.to_toml()).unwrap(), n);
        let d = Namespaces::default();
        assert_eq!(Namespaces::from_toml(&d.to_toml()).unwrap(), d);
    }
}
