//! Command line: four modes sharing the connection and reporting options.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Upper bound of every duration option, in seconds (everything this tool starts ends).
pub const MAX_SECS: f64 = 3600.0;
/// Upper bound of `--connections`.
pub const MAX_CONNECTIONS: usize = 200_000;

/// tickrelay-load: load generator for tickrelay (and any relay speaking its protocol).
///
/// Every run is bounded in connections and time, talks to loopback addresses only
/// (unless --allow-remote-test-host), prints a progress line on stderr once a second, a
/// summary table on stderr at the end, and exactly one JSON summary line on stdout.
#[derive(Parser, Debug)]
#[command(name = "tickrelay-load", version, about, long_about)]
pub struct Cli {
    /// What to measure.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The modes.
#[derive(Subcommand, Debug)]
pub enum Mode {
    /// N subscribers over K channels, one publisher: deliveries/s, end-to-end latency,
    /// loss and reordering (from the relay's offsets).
    Fanout(FanoutArgs),
    /// Open N connections with C handshakes in flight: handshakes/s and handshake latency.
    Connect(ConnectArgs),
    /// Open N subscribed connections and hold them: relay memory per connection (with
    /// --relay-pid).
    Idle(IdleArgs),
    /// A soak: steady subscribers, a publisher, connect/disconnect churn and storms,
    /// stalled readers and flooders for --duration, a row per --interval with the relay's
    /// RSS, fds, connections, queued bytes and errors; fails if RSS or fds do not come
    /// back to the baseline once the load stops.
    Churn(ChurnArgs),
}

/// Options every mode has.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Relay address, host:port (the WebSocket endpoint is /ws). Must be loopback unless
    /// --allow-remote-test-host.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub target: String,

    /// Spread connections round robin over destination addresses 127.0.0.1..127.0.0.N
    /// (same port). The relay must then listen on 0.0.0.0:PORT (or on each address).
    /// Each address pair has its own ~28k ephemeral ports, so use this for tens of
    /// thousands of connections.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub dst_addrs: u8,

    /// Bind client sockets to source addresses 127.0.0.1..127.0.0.N round robin before
    /// connecting (0: let the kernel choose). Another way to multiply ephemeral ports.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=8))]
    pub src_addrs: u8,

    /// WebSocket handshakes in flight while connecting.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// Time limit for one connection's TCP connect plus upgrade (plus the subscribe
    /// answer where there is one), in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Tokio worker threads of the load generator. Default 1: the bar runs the relay on
    /// core 0 and this tool on core 1.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// PID of the relay process, to report its CPU use (/proc/PID/stat) and, in idle
    /// mode, its resident memory (/proc/PID/status VmRSS); in churn mode also its open
    /// fds (found by the port it listens on when not given).
    #[arg(long)]
    pub relay_pid: Option<u32>,

    /// Also write a self-contained HTML report (inline SVG latency percentile plot and
    /// timeline) to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// No progress line on stderr (the summary table and JSON line are still printed).
    #[arg(long)]
    pub quiet: bool,

    /// Allow a non-loopback --target. Only for a test host that is your own.
    #[arg(long)]
    pub allow_remote_test_host: bool,

    /// Connect over TLS (`wss://`), trusting only the certificates of this PEM file
    /// (fanout with the WebSocket publisher only).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,

    /// The name the relay's certificate must carry (SNI and verification).
    #[arg(long, default_value = "localhost")]
    pub tls_server_name: String,
}

/// How the publisher sends.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `{"op":"publish"}` over one WebSocket, waiting for `published` acks to bound the
    /// messages in flight.
    Ws,
    /// `POST /publish/{channel}` over --in-flight keep-alive HTTP/1.1 connections.
    Http,
}

/// `fanout` options.
#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,

    /// Subscriber connections (N).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: usize,

    /// Channels (K), named PREFIX:0 .. PREFIX:K-1; the publisher goes round robin.
    #[arg(long, short = 'k', default_value_t = 1)]
    pub channels: usize,

    /// Channels each subscriber subscribes to (M <= K); subscriber i takes channels
    /// i*M .. i*M+M-1 (mod K), so the channels get even audiences.
    #[arg(long, short = 'm', default_value_t = 1)]
    pub per_conn: usize,

    /// Channel name prefix.
    #[arg(long, default_value = "load")]
    pub channel_prefix: String,

    /// How the publisher sends.
    #[arg(long, value_enum, default_value_t = Via::Ws)]
    pub via: Via,

    /// Publish to this relay (`host:port`) instead of --target: subscribers on an edge,
    /// the publisher on its core.
    #[arg(long)]
    pub publish_target: Option<String>,

    /// Subscribers offer permessage-deflate and inflate what arrives compressed.
    #[arg(long)]
    pub deflate: bool,

    /// Publish key of the relay (sent as ?token= over WebSocket, as a Bearer token over
    /// HTTP).
    #[arg(long, env = "TICKRELAY_PUBLISH_KEY", hide_env_values = true)]
    pub publish_key: Option<String>,

    /// Messages per second in total (0: flat out, bounded by --in-flight).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,

    /// Most messages published but not yet acknowledged (WebSocket `published` ack or
    /// HTTP response).
    #[arg(long, short = 'f', default_value_t = 10)]
    pub in_flight: usize,

    /// Approximate payload size of each tick in bytes (the `data` JSON; at least ~90,
    /// it embeds a nanosecond timestamp and a sequence number).
    #[arg(long, default_value_t = 150)]
    pub payload_bytes: usize,

    /// Publishing time in seconds.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration: f64,

    /// Stop publishing after this many messages (0: no count limit, only --duration).
    #[arg(long, default_value_t = 0)]
    pub messages: u64,

    /// After publishing, wait at most this many seconds for every delivery.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
}

/// `connect` options.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,

    /// Connections to open (each stays open until all are done, then all close).
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub connections: usize,
}

/// `idle` options.
#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,

    /// Subscribed connections to open and hold.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub connections: usize,

    /// Channels, named PREFIX:0 .. PREFIX:K-1; connection i subscribes to channel i mod K.
    #[arg(long, short = 'k', default_value_t = 1)]
    pub channels: usize,

    /// Channel name prefix.
    #[arg(long, default_value = "idle")]
    pub channel_prefix: String,

    /// Seconds to hold the connections once all are up.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
}

/// `churn` options. Every connection kind reconnects until --duration is over.
#[derive(Args, Debug, Clone)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,

    /// Steady subscribers (the healthy ones): connected first, held for the whole run,
    /// checked for loss, reordering and disconnects.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: usize,

    /// Channels, named PREFIX:0 .. PREFIX:K-1; steady subscriber i takes channels i and
    /// i+K/2 (mod K).
    #[arg(long, short = 'k', default_value_t = 100)]
    pub channels: usize,

    /// Channel name prefix.
    #[arg(long, default_value = "churn")]
    pub channel_prefix: String,

    /// Publish key of the relay (also sent to GET /stats as a Bearer token).
    #[arg(long, env = "TICKRELAY_PUBLISH_KEY", hide_env_values = true)]
    pub publish_key: Option<String>,

    /// Messages per second in total, one WebSocket publisher, round robin over channels.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,

    /// Approximate payload size of each tick in bytes.
    #[arg(long, default_value_t = 150)]
    pub payload_bytes: usize,

    /// Churners: connections that connect, subscribe, hold 0..--churn-hold-ms, close
    /// (every other one with a close frame, the rest with a reset), and start again.
    #[arg(long, default_value_t = 50)]
    pub churners: usize,

    /// Longest hold of one churner connection (ms); each picks a random time below it.
    #[arg(long, default_value_t = 1000)]
    pub churn_hold_ms: u64,

    /// Connections of one storm: opened together (--concurrency handshakes in flight),
    /// held until all are up, then all reset at once. 0: no storms.
    #[arg(long, default_value_t = 500)]
    pub storm_size: usize,

    /// Seconds between storms (the first comes one period, or half the load time if
    /// that is sooner, after the load starts).
    #[arg(long, default_value_t = 20.0)]
    pub storm_every: f64,

    /// Stalled readers: subscribe (with a 4 KiB receive buffer), never read, reset
    /// after --stall-secs, and start again.
    #[arg(long, default_value_t = 10)]
    pub stalled: usize,

    /// How long a stalled reader holds its connection (seconds).
    #[arg(long, default_value_t = 15.0)]
    pub stall_secs: f64,

    /// Flooders: send commands and pings at --flood-rate until the relay's rate limit
    /// closes them, then reconnect.
    #[arg(long, default_value_t = 4)]
    pub flooders: usize,

    /// Frames per second each flooder sends (JSON pings, WebSocket pings,
    /// subscribe/unsubscribe).
    #[arg(long, default_value_t = 500)]
    pub flood_rate: u32,

    /// Load time in seconds (after the steady subscribers are up).
    #[arg(long, short = 'd', default_value_t = 60.0)]
    pub duration: f64,

    /// Seconds between report rows (RSS, fds, connections, queued bytes, errors).
    #[arg(long, default_value_t = 60.0)]
    pub interval: f64,

    /// Seconds of the same load before the baseline is taken (0: none), so the
    /// allocator's first high-water mark is in the baseline and what is left is growth.
    /// Growth of the relay's history rings (/stats history_bytes) is allowed on top of the
    /// tolerance; a warm-up of history x channels / rate seconds fills them first.
    #[arg(long, default_value_t = 10.0)]
    pub warmup: f64,

    /// After the load stops, wait at most this many seconds for the relay's connections
    /// to reach 0 and its RSS and fds to come back.
    #[arg(long, default_value_t = 30.0)]
    pub settle: f64,

    /// RSS may end at most this many MiB above the baseline ...
    #[arg(long, default_value_t = 16.0)]
    pub rss_tolerance_mib: f64,

    /// ... or this many percent above it, whichever is larger.
    #[arg(long, default_value_t = 10.0)]
    pub rss_tolerance_pct: f64,

    /// Open fds may end at most this many above the baseline.
    #[arg(long, default_value_t = 8)]
    pub fd_tolerance: u64,
}

impl ChurnArgs {
    /// Every connection the run may hold at once (and the publisher).
    pub fn total_connections(&self) -> usize {
        self.connections
            .saturating_add(self.churners)
            .saturating_add(self.storm_size)
            .saturating_add(self.stalled)
            .saturating_add(self.flooders)
            .saturating_add(1)
    }
}

/// Checks the bounds every mode shares; `Err` is a one-line reason.
pub fn check_common(c: &Common, connections: usize) -> Result<(), String> {
    if connections == 0 || connections > MAX_CONNECTIONS {
        return Err(format!(
            "--connections must be 1..={MAX_CONNECTIONS}, got {connections}"
        ));
    }
    if c.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if c.threads == 0 || c.threads > 256 {
        return Err("--threads must be 1..=256".into());
    }
    secs("--connect-timeout", c.connect_timeout)?;
    Ok(())
}

/// Checks a seconds option.
pub fn secs(name: &str, v: f64) -> Result<(), String> {
    if !(v.is_finite() && v > 0.0 && v <= MAX_SECS) {
        return Err(format!(
            "{name} must be in (0, {MAX_SECS}] seconds, got {v}"
        ));
    }
    Ok(())
}
