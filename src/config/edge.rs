//! Edge chaining's flags (see [`crate::upstream`]), and the relay key an upstream
//! accepts edges with.

/// Default `--upstream-linger-ms`.
pub const DEFAULT_LINGER_MS: u64 = 2000;
/// Default `--relay-queue-bytes`: an edge carries many subscribers' traffic.
pub const DEFAULT_RELAY_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// What an edge does with publishes it receives.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishMode {
    /// Check them at the edge, then publish them upstream.
    #[default]
    Forward,
    /// Refuse them with `forbidden`: publishers go to the upstream.
    Refuse,
}

/// Edge chaining flags (flattened into [`crate::Config`]).
#[derive(clap::Args, Debug, Clone)]
pub struct EdgeConfig {
    /// Upstream relay(s) this relay is an edge of, `ws://host:port/ws`; several (repeat
    /// the flag or separate with commas) are tried in order when one fails.
    #[arg(long = "upstream", env = "TICKRELAY_UPSTREAM", value_delimiter = ',')]
    pub upstreams: Vec<String>,

    /// The credential shown upstream: the upstream's `--relay-key`.
    #[arg(long, env = "TICKRELAY_UPSTREAM_TOKEN", hide_env_values = true)]
    pub upstream_token: Option<String>,

    /// How long the edge stays subscribed upstream after a channel's last local
    /// subscriber left, in milliseconds.
    #[arg(long, env = "TICKRELAY_UPSTREAM_LINGER_MS", default_value_t = DEFAULT_LINGER_MS)]
    pub upstream_linger_ms: u64,

    /// Publishes received by an edge: `forward` them upstream, or `refuse` them.
    #[arg(long, env = "TICKRELAY_UPSTREAM_PUBLISH", value_enum, default_value_t = PublishMode::Forward)]
    pub upstream_publish: PublishMode,

    /// Key edge relays connect with (their `--upstream-token`): a trusted, heavy
    /// subscriber with `--relay-queue-bytes`, no subscription limit, publish rights.
    #[arg(long, env = "TICKRELAY_RELAY_KEY", hide_env_values = true)]
    pub relay_key: Option<String>,

    /// Outbound queue bound of an edge relay's connection, in bytes.
    #[arg(long, env = "TICKRELAY_RELAY_QUEUE_BYTES", default_value_t = DEFAULT_RELAY_QUEUE_BYTES)]
    pub relay_queue_bytes: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            upstreams: Vec::new(),
            upstream_token: None,
            upstream_linger_ms: DEFAULT_LINGER_MS,
            upstream_publish: PublishMode::Forward,
            relay_key: None,
            relay_queue_bytes: DEFAULT_RELAY_QUEUE_BYTES,
        }
    }
}

impl EdgeConfig {
    /// Checks the flags (`redis`: `--redis` is set too).
    pub fn check(&self, redis: bool) -> Result<(), String> {
        if !self.upstreams.is_empty() && redis {
            return Err("--upstream and --redis: an edge takes its offsets from its upstream, a \
                 cluster node from Redis; run the edge without --redis, in front of a node that has it"
                .into());
        }
        for u in &self.upstreams {
            Target::parse(u).map_err(|e| format!("--upstream {u:?}: {e}"))?;
        }
        Ok(())
    }

    /// The flags as `--print-config` shows them.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let set = |v: &Option<String>| if v.is_some() { "<set>" } else { "<unset>" };
        vec![
            (
                "upstream",
                if self.upstreams.is_empty() {
                    "<none>".into()
                } else {
                    self.upstreams.join(",")
                },
            ),
            ("upstream-token", set(&self.upstream_token).into()),
            ("upstream-linger-ms", self.upstream_linger_ms.to_string()),
            (
                "upstream-publish",
                match self.upstream_publish {
                    PublishMode::Forward => "forward".into(),
                    PublishMode::Refuse => "refuse".into(),
                },
            ),
            ("relay-key", set(&self.relay_key).into()),
            ("relay-queue-bytes", self.relay_queue_bytes.to_string()),
        ]
    }
}

/// One upstream: `ws://host:port/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// `host:port`, as connected to and sent in `Host`.
    pub authority: String,
    /// Path and query.
    pub path: String,
}

impl Target {
    /// Parses `ws://host:port/path`; `wss://` is refused (TLS upstream is not built in:
    /// put a TLS tunnel on loopback in front of it).
    pub fn parse(url: &str) -> Result<Target, &'static str> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or("an upstream is ws://host:port/path (wss:// is not supported)")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/ws"),
        };
        if authority.is_empty() || !authority.contains(':') {
            return Err("the upstream needs host:port");
        }
        Ok(Target {
            url: url.to_string(),
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_parse_and_clash_with_redis() {
        let t = Target::parse("ws://core:8080/ws?format=envelope").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("core:8080", "/ws?format=envelope")
        );
        assert_eq!(Target::parse("ws://core:1").unwrap().path, "/ws");
        for bad in [
            "http://core:1/ws",
            "wss://core:1/ws",
            "ws:///ws",
            "ws://core/ws",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let cfg = EdgeConfig {
            upstreams: vec!["ws://a:1/ws".into()],
            ..EdgeConfig::default()
        };
        assert!(cfg.check(false).is_ok());
        assert!(cfg.check(true).is_err());
    }
}
