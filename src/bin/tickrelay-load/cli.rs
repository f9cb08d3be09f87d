//! Command line: three modes sharing the connection and reporting options.

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
    /// mode, its resident memory (/proc/PID/status VmRSS).
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
