//! Every setting and limit, with its default, in one place.
//!
//! Each flag has a `TICKRELAY_*` environment equivalent (`--queue-bytes` ↔
//! `TICKRELAY_QUEUE_BYTES`); `tickrelay --help` lists them all.

pub mod edge;
mod render;
pub mod tls;

use clap::Parser;
pub use edge::{EdgeConfig, PublishMode, Target};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
pub use tls::TlsConfig;

use crate::auth::{JwtSettings, Verifier};
use crate::namespace::Namespaces;

/// Default largest WebSocket message a client may send, and largest publish `data`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Default outbound queue bound per connection.
pub const DEFAULT_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default for `--max-batch-bytes`.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Default for `--max-batch-items`.
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 10_000;
/// Default for `--max-subscriptions`.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 256;
/// Default for `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// Default for `--max-channels`.
pub const DEFAULT_MAX_CHANNELS: usize = 100_000;
/// Default for `--channel-idle-secs`.
pub const DEFAULT_CHANNEL_IDLE_SECS: u64 = 300;
/// Default for `--heartbeat-ms`.
pub const DEFAULT_HEARTBEAT_MS: u64 = 25_000;
/// Default for `--handshake-timeout-ms`.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Default `--http-write-timeout-ms`.
pub const DEFAULT_HTTP_WRITE_TIMEOUT_MS: u64 = 10_000;
/// Default for `--max-header-bytes`.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default listen backlog: pending connections the kernel queues before `accept` (it
/// caps this at `net.core.somaxconn`).
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
/// Default for `--close-timeout-ms`.
pub const DEFAULT_CLOSE_TIMEOUT_MS: u64 = 2_000;
/// Default for `--slow-close-grace-ms`.
pub const DEFAULT_SLOW_CLOSE_GRACE_MS: u64 = 1_000;
/// Default for `--shutdown-grace-ms`.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 5_000;
/// Default for `--conflate-after-bytes`.
pub const DEFAULT_CONFLATE_AFTER_BYTES: usize = 128 * 1024;
/// Default for `--lagging-notice-ms`.
pub const DEFAULT_LAGGING_NOTICE_MS: u64 = 1_000;
/// Default for `--history-max-bytes`.
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 256 * 1024 * 1024;
/// Default for `--jwt-leeway-secs`.
pub const DEFAULT_JWT_LEEWAY_SECS: u64 = 5;
/// Default for `--auth-timeout-ms`.
pub const DEFAULT_AUTH_TIMEOUT_MS: u64 = 10_000;
/// Default for `--max-connections-per-ip`.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;
/// Default WebSocket places kept for trusted credentials (at most a tenth of
/// `--max-connections`).
pub const DEFAULT_TRUSTED_RESERVE: usize = 16;
/// Default time a `/stats` or `/metrics` body is reused (ms).
pub const DEFAULT_STATS_CACHE_MS: u64 = 1_000;
/// Default cap on HTTP connections that are not WebSockets (yet).
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 4_096;
/// Default cap on the messages of one `GET /history` response, in bytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 << 20;
/// Default channel places only publishers may create (at most a tenth of `--max-channels`).
pub const DEFAULT_PUBLISHER_CHANNEL_RESERVE: usize = 10_000;
/// Default for `--max-commands-per-sec`.
pub const DEFAULT_MAX_COMMANDS_PER_SEC: u32 = 50;
/// Default for `--command-burst`.
pub const DEFAULT_COMMAND_BURST: u32 = 100;
/// Default for `--rate-limit-close-after`.
pub const DEFAULT_RATE_LIMIT_CLOSE_AFTER: u32 = 50;

/// Default `--redis-prefix`.
pub const DEFAULT_REDIS_PREFIX: &str = "tickrelay:";
/// Default `--redis-linger-ms`.
pub const DEFAULT_REDIS_LINGER_MS: u64 = 2_000;

/// tickrelay: a WebSocket edge relay for real-time market data.
#[derive(Parser, Debug, Clone)]
#[command(name = "tickrelay", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on (HTTP and WebSocket on one port).
    #[arg(long, env = "TICKRELAY_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Key publishers present as `Authorization: Bearer <key>` (HTTP) or as `?token=` /
    /// an `auth` op (WebSocket). Without it, publishing from outside is disabled.
    #[arg(long, env = "TICKRELAY_PUBLISH_KEY", hide_env_values = true)]
    pub publish_key: Option<String>,

    /// Publish a simulated market (tickers, signals, market status) in-process.
    #[arg(long, env = "TICKRELAY_DEMO")]
    pub demo: bool,

    /// Serve `/dashboard` without a credential; it then shows only what anonymous
    /// `/stats` shows (public channels, no slowest consumers).
    #[arg(long, env = "TICKRELAY_DASHBOARD_PUBLIC")]
    pub dashboard_public: bool,

    /// Echo every message back on its own connection (conformance testing only).
    #[arg(long, env = "TICKRELAY_ECHO", hide = true)]
    pub echo: bool,

    /// permessage-deflate for clients that offer it: `off`, `on` (payloads from 128 bytes)
    /// or the smallest payload compressed, in bytes. A namespace's `deflate` overrides it.
    #[arg(long, env = "TICKRELAY_DEFLATE", default_value_t)]
    pub deflate: crate::protocol::deflate::Setting,

    /// Channel-table shards (rounded up to a power of two). Default: 4 x cores.
    #[arg(long, env = "TICKRELAY_SHARDS")]
    pub shards: Option<usize>,

    /// Largest WebSocket message a client may send, and largest publish `data`, in bytes.
    /// Bigger client messages are closed with 1009; bigger HTTP bodies get 413.
    #[arg(long, env = "TICKRELAY_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Largest `POST /publish` NDJSON batch body, in bytes.
    #[arg(long, env = "TICKRELAY_MAX_BATCH_BYTES", default_value_t = DEFAULT_MAX_BATCH_BYTES)]
    pub max_batch_bytes: usize,

    /// Most messages in one `POST /publish` batch.
    #[arg(long, env = "TICKRELAY_MAX_BATCH_ITEMS", default_value_t = DEFAULT_MAX_BATCH_ITEMS)]
    pub max_batch_items: usize,

    /// Subscriptions one connection may hold.
    #[arg(long, env = "TICKRELAY_MAX_SUBSCRIPTIONS", default_value_t = DEFAULT_MAX_SUBSCRIPTIONS)]
    pub max_subscriptions: usize,

    /// Outbound queue bound per connection, in bytes (queued + being written). A
    /// connection that falls further behind is closed with 1008 `slow consumer`.
    #[arg(long, env = "TICKRELAY_QUEUE_BYTES", default_value_t = DEFAULT_QUEUE_BYTES)]
    pub queue_bytes: usize,

    /// Open WebSocket connections allowed; further upgrades get 503.
    #[arg(long, env = "TICKRELAY_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Channels the relay holds at most; creating one more fails with `too_many_channels`.
    #[arg(long, env = "TICKRELAY_MAX_CHANNELS", default_value_t = DEFAULT_MAX_CHANNELS)]
    pub max_channels: usize,

    /// A channel with no subscriber and no publish for this long is reclaimed (seconds).
    #[arg(long, env = "TICKRELAY_CHANNEL_IDLE_SECS", default_value_t = DEFAULT_CHANNEL_IDLE_SECS)]
    pub channel_idle_secs: u64,

    /// WebSocket ping interval; a connection silent for 2.5x this is closed (1001).
    #[arg(long, env = "TICKRELAY_HEARTBEAT_MS", default_value_t = DEFAULT_HEARTBEAT_MS)]
    pub heartbeat_ms: u64,

    /// Time a client has to send its complete request head (slowloris guard).
    #[arg(long, env = "TICKRELAY_HANDSHAKE_TIMEOUT_MS", default_value_t = DEFAULT_HANDSHAKE_TIMEOUT_MS)]
    pub handshake_timeout_ms: u64,

    /// Time an HTTP response write may make no progress (a client that stops reading)
    /// before the connection is dropped; like nginx's `send_timeout`, between two
    /// successful writes, not for the whole response.
    #[arg(long, env = "TICKRELAY_HTTP_WRITE_TIMEOUT_MS", default_value_t = DEFAULT_HTTP_WRITE_TIMEOUT_MS)]
    pub http_write_timeout_ms: u64,

    /// Largest HTTP request head, in bytes.
    #[arg(long, env = "TICKRELAY_MAX_HEADER_BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES)]
    pub max_header_bytes: usize,

    /// Connections the kernel queues for `accept` (a reconnect burst after a restart
    /// lands here); capped by `net.core.somaxconn`.
    #[arg(long, env = "TICKRELAY_LISTEN_BACKLOG", default_value_t = DEFAULT_LISTEN_BACKLOG)]
    pub listen_backlog: u32,

    /// After a close frame is sent, how long to wait for the peer's close (ms).
    #[arg(long, env = "TICKRELAY_CLOSE_TIMEOUT_MS", default_value_t = DEFAULT_CLOSE_TIMEOUT_MS)]
    pub close_timeout_ms: u64,

    /// How long a connection closed as a slow consumer gets to take its close frame (ms).
    #[arg(long, env = "TICKRELAY_SLOW_CLOSE_GRACE_MS", default_value_t = DEFAULT_SLOW_CLOSE_GRACE_MS)]
    pub slow_close_grace_ms: u64,

    /// On SIGTERM/SIGINT, how long to drain queues before exiting (ms).
    #[arg(long, env = "TICKRELAY_SHUTDOWN_GRACE_MS", default_value_t = DEFAULT_SHUTDOWN_GRACE_MS)]
    pub shutdown_grace_ms: u64,

    /// Queue bytes past which a connection is lagging: messages of conflate channels are
    /// then held newest-only per channel until it is back under half this.
    #[arg(long, env = "TICKRELAY_CONFLATE_AFTER_BYTES", default_value_t = DEFAULT_CONFLATE_AFTER_BYTES)]
    pub conflate_after_bytes: usize,

    /// A channel conflated for this long gets a `lagging` notice (then `caught_up`).
    #[arg(long, env = "TICKRELAY_LAGGING_NOTICE_MS", default_value_t = DEFAULT_LAGGING_NOTICE_MS)]
    pub lagging_notice_ms: u64,

    /// Bytes all channels' history rings may hold together. Past it, the publishing
    /// channel forgets its oldest messages first (it always keeps its newest one).
    #[arg(long, env = "TICKRELAY_HISTORY_MAX_BYTES", default_value_t = DEFAULT_HISTORY_MAX_BYTES)]
    pub history_max_bytes: usize,

    /// HS256 secret for client JWTs. Tokens signed with another algorithm are refused.
    #[arg(long, env = "TICKRELAY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key for client JWTs: an RSA key accepts RS256 tokens only, a P-256 key
    /// ES256 only. May be combined with --jwt-secret (HS256 tokens then use the secret).
    #[arg(long, env = "TICKRELAY_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Clock skew allowed when checking a token's `exp` and `nbf` (seconds).
    #[arg(long, env = "TICKRELAY_JWT_LEEWAY_SECS", default_value_t = DEFAULT_JWT_LEEWAY_SECS)]
    pub jwt_leeway_secs: u64,

    /// Accept only tokens whose `aud` names this audience (then `aud` is required).
    #[arg(long, env = "TICKRELAY_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Accept only tokens whose `iss` is this issuer (then `iss` is required).
    #[arg(long, env = "TICKRELAY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Time a connection that needs a credential has to send an `auth` op when it gave
    /// none at the upgrade (its `?channels=` need one, or no namespace is anonymous).
    /// Closed with 4001 after it.
    #[arg(long, env = "TICKRELAY_AUTH_TIMEOUT_MS", default_value_t = DEFAULT_AUTH_TIMEOUT_MS)]
    pub auth_timeout_ms: u64,

    /// Browser origins allowed to connect (comma list; `*` wildcards, case-insensitive).
    /// Empty: any. Requests without an Origin header are always allowed.
    #[arg(long, env = "TICKRELAY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Socket.IO (CRS) channels: `<ticker prefix>,<sentiment channel>,<signals channel>`.
    #[arg(long, env = "TICKRELAY_SOCKETIO_CHANNELS", default_value = crate::protocol::socketio::crs::DEFAULT_CHANNELS)]
    pub socketio_channels: String,

    /// Open WebSockets per client address (IPv6: per /64); more get 429. 0: no limit.
    #[arg(long, env = "TICKRELAY_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,

    /// WebSocket places only the publish key or an admin token may take, so a feed
    /// handler can always connect to a full relay (at most a tenth of
    /// `--max-connections`). Trusted credentials shown at the upgrade are also exempt
    /// from `--max-connections-per-ip`.
    #[arg(long, env = "TICKRELAY_TRUSTED_RESERVE", default_value_t = DEFAULT_TRUSTED_RESERVE)]
    pub trusted_reserve: usize,

    /// `/stats` and `/metrics` answer from a snapshot at most this old (ms; 0: fresh
    /// every time), so scrapers do not walk every channel and connection per request.
    #[arg(long, env = "TICKRELAY_STATS_CACHE_MS", default_value_t = DEFAULT_STATS_CACHE_MS)]
    pub stats_cache_ms: u64,

    /// Most bytes of messages in one `GET /history` response (at least one message is
    /// always sent; `"truncated": true` says to page on), so a client that never reads
    /// cannot pin more than this per request.
    #[arg(long, env = "TICKRELAY_MAX_RESPONSE_BYTES", default_value_t = DEFAULT_MAX_RESPONSE_BYTES)]
    pub max_response_bytes: usize,

    /// Open HTTP connections that are not WebSockets (yet): requests in progress, idle
    /// keep-alive, heads still arriving. More get 503 at once and are closed.
    #[arg(long, env = "TICKRELAY_MAX_HTTP_CONNECTIONS", default_value_t = DEFAULT_MAX_HTTP_CONNECTIONS)]
    pub max_http_connections: usize,

    /// Channel places (at most a tenth of `--max-channels`) that only publishes (and
    /// trusted subscribers) may create: clients subscribing to made-up names can fill
    /// the rest, never these, so a feed can always publish to a new channel.
    #[arg(long, env = "TICKRELAY_PUBLISHER_CHANNEL_RESERVE", default_value_t = DEFAULT_PUBLISHER_CHANNEL_RESERVE)]
    pub publisher_channel_reserve: usize,

    /// Commands per second a connection may send (token bucket rate; 0: no limit).
    /// More get `rate_limited`. Connections with the publish key or an admin token are exempt.
    #[arg(long, env = "TICKRELAY_MAX_COMMANDS_PER_SEC", default_value_t = DEFAULT_MAX_COMMANDS_PER_SEC)]
    pub max_commands_per_sec: u32,

    /// Commands a connection may send at once before the rate applies (bucket size).
    #[arg(long, env = "TICKRELAY_COMMAND_BURST", default_value_t = DEFAULT_COMMAND_BURST)]
    pub command_burst: u32,

    /// Strikes after which the connection is closed with 1008 (0: never): each command
    /// refused with `rate_limited` adds one, each command run takes one away.
    #[arg(long, env = "TICKRELAY_RATE_LIMIT_CLOSE_AFTER", default_value_t = DEFAULT_RATE_LIMIT_CLOSE_AFTER)]
    pub rate_limit_close_after: u32,

    /// Redis backplane (`redis://[:password@]host:port[/db]`): offsets, epochs and
    /// history live in Redis and every node mirrors them (see the backplane module).
    #[arg(long, env = "TICKRELAY_REDIS", hide_env_values = true)]
    pub redis: Option<String>,

    /// Prefix of every Redis key and pub/sub channel the backplane uses.
    #[arg(long, env = "TICKRELAY_REDIS_PREFIX", default_value = DEFAULT_REDIS_PREFIX)]
    pub redis_prefix: String,

    /// How long a node stays subscribed in Redis to a channel after its last local
    /// subscriber left, in milliseconds.
    #[arg(long, env = "TICKRELAY_REDIS_LINGER_MS", default_value_t = DEFAULT_REDIS_LINGER_MS)]
    pub redis_linger_ms: u64,

    /// This node's name in the backplane's `/stats` node list (default: a random name).
    #[arg(long, env = "TICKRELAY_NODE_ID")]
    pub node_id: Option<String>,

    /// Edge chaining: `--upstream`, `--upstream-token`, `--relay-key` and the rest.
    #[command(flatten)]
    pub upstream: EdgeConfig,

    /// TLS termination: `--tls-cert`, `--tls-key`, `--tls-reload-check-ms`.
    #[command(flatten)]
    pub tls: TlsConfig,

    /// TOML file declaring namespaces (delivery, history, access); see `--print-config`.
    #[arg(long = "config", env = "TICKRELAY_CONFIG")]
    pub config_file: Option<PathBuf>,

    /// Print the effective configuration (flags and namespaces) and exit.
    #[arg(long)]
    pub print_config: bool,

    /// The namespace table: built-in defaults, or what `--config` declares.
    #[arg(skip)]
    pub namespaces: Arc<Namespaces>,

    /// More listeners with their own route tables (`[[listener]]` in `--config`; see
    /// [`crate::routes`]).
    #[arg(skip)]
    pub listeners: Vec<crate::routes::Listener>,

    /// The JWT verifier [`Config::load_file`] built from the `--jwt-*` settings; the relay
    /// uses this one rather than build its own. `None` before `load_file` (the relay then
    /// builds it) or when no JWT key is set. Load again after changing those settings.
    #[arg(skip)]
    pub jwt: Option<Arc<Verifier>>,

    /// The TLS state [`Config::load_file`] built from `--tls-cert` / `--tls-key` (`None`:
    /// plain TCP, or `load_file` not called).
    #[arg(skip)]
    pub tls_state: Option<Arc<crate::tls::Tls>>,
}

impl Default for Config {
    /// The documented defaults, ignoring command line and environment.
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is a valid address"),
            publish_key: None,
            demo: false,
            dashboard_public: false,
            echo: false,
            deflate: Default::default(),
            shards: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_items: DEFAULT_MAX_BATCH_ITEMS,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_channels: DEFAULT_MAX_CHANNELS,
            channel_idle_secs: DEFAULT_CHANNEL_IDLE_SECS,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
            http_write_timeout_ms: DEFAULT_HTTP_WRITE_TIMEOUT_MS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            close_timeout_ms: DEFAULT_CLOSE_TIMEOUT_MS,
            slow_close_grace_ms: DEFAULT_SLOW_CLOSE_GRACE_MS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            conflate_after_bytes: DEFAULT_CONFLATE_AFTER_BYTES,
            lagging_notice_ms: DEFAULT_LAGGING_NOTICE_MS,
            history_max_bytes: DEFAULT_HISTORY_MAX_BYTES,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_leeway_secs: DEFAULT_JWT_LEEWAY_SECS,
            jwt_audience: None,
            jwt_issuer: None,
            auth_timeout_ms: DEFAULT_AUTH_TIMEOUT_MS,
            allowed_origins: Vec::new(),
            socketio_channels: crate::protocol::socketio::crs::DEFAULT_CHANNELS.into(),
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            trusted_reserve: DEFAULT_TRUSTED_RESERVE,
            stats_cache_ms: DEFAULT_STATS_CACHE_MS,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_http_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            publisher_channel_reserve: DEFAULT_PUBLISHER_CHANNEL_RESERVE,
            max_commands_per_sec: DEFAULT_MAX_COMMANDS_PER_SEC,
            command_burst: DEFAULT_COMMAND_BURST,
            rate_limit_close_after: DEFAULT_RATE_LIMIT_CLOSE_AFTER,
            redis: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.into(),
            redis_linger_ms: DEFAULT_REDIS_LINGER_MS,
            node_id: None,
            upstream: Default::default(),
            tls: Default::default(),
            config_file: None,
            print_config: false,
            namespaces: Arc::default(),
            listeners: Vec::new(),
            jwt: None,
            tls_state: None,
        }
    }
}

impl Config {
    /// Shard count actually used: the flag, or 4 x available cores, as a power of two.
    pub fn shard_count(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.shards.unwrap_or(4 * cores).max(1).next_power_of_two()
    }

    /// Heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(1))
    }

    /// Time to send an `auth` op when one is needed.
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_millis(self.auth_timeout_ms)
    }

    /// Silence after which a connection is closed: 2.5 heartbeats.
    pub fn idle_timeout(&self) -> Duration {
        self.heartbeat() * 5 / 2
    }

    /// The `--jwt-*` settings, to build a [`Verifier`] from.
    pub fn jwt_settings(&self) -> JwtSettings<'_> {
        JwtSettings {
            secret: self.jwt_secret.as_deref(),
            public_key: self.jwt_public_key.as_deref(),
            leeway_secs: self.jwt_leeway_secs,
            audience: self.jwt_audience.as_deref(),
            issuer: self.jwt_issuer.as_deref(),
        }
    }

    /// Builds the JWT verifier into [`Config::jwt`] (an unusable key is an error), then
    /// reads `--config` into [`Config::namespaces`].
    pub fn load_file(&mut self) -> Result<(), String> {
        self.jwt = Verifier::new(&self.jwt_settings())?.map(Arc::new);
        crate::protocol::socketio::crs::Channels::parse(&self.socketio_channels)?;
        if let Some(url) = &self.redis {
            let c =
                redis::Client::open(url.as_str()).map_err(|e| format!("--redis {url:?}: {e}"))?;
            if !matches!(
                c.get_connection_info().addr(),
                redis::ConnectionAddr::Tcp(..)
            ) {
                return Err("--redis: only redis:// (TCP) URLs are supported".into());
            }
        }
        self.upstream.check(self.redis.is_some())?;
        self.tls.check()?;
        self.tls_state = match self.tls.files() {
            Some((cert, key)) => Some(crate::tls::Tls::from_files(
                cert,
                key,
                self.tls.tls_reload_check_ms,
            )?),
            None => None,
        };
        let Some(path) = &self.config_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let ns = Namespaces::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        self.namespaces = Arc::new(ns);
        self.listeners =
            crate::routes::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.max_message_bytes, 64 * 1024);
        assert_eq!(c.queue_bytes, 4 * 1024 * 1024);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.shard_count().is_power_of_two());
        assert_eq!(c.idle_timeout(), Duration::from_millis(62_500));
    }

    #[test]
    fn clap_defaults_match_default() {
        let parsed = Config::try_parse_from(["tickrelay"]).unwrap();
        let d = Config::default();
        assert_eq!(
            format!("{parsed:?}"),
            format!("{d:?}"),
            "run without TICKRELAY_* set"
        );
    }

    #[test]
    fn flags_parse() {
        let c = Config::parse_from([
            "tickrelay",
            "--listen",
            "0.0.0.0:9000",
            "--shards",
            "5",
            "--queue-bytes",
            "1000",
        ]);
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.shard_count(), 8);
        assert_eq!(c.queue_bytes, 1000);
    }
}
