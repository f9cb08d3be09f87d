//! Edge chaining (`--upstream`): this relay is an edge of another relay and takes from it
//! only the channels its own clients subscribe to.
//!
//! ```text
//!  local subscribe ─► hub Interest ─► Wanted ─► task: subscribe upstream (with recover
//!                                               from what the hub mirrored)
//!  upstream relay ═══ one v1 WebSocket (the relay key) ═══► task ─► Hub::publish_at / align
//!  local publish ─► Upstream::publish ─► task: publish upstream, ack with its offset
//! ```
//!
//! - **Offsets pass through.** The edge mirrors the upstream's epochs, offsets and
//!   timestamps ([`crate::hub::Hub::publish_at`]), so its frames are byte-identical to the
//!   upstream's and a client recovers across edges and the core alike.
//! - **Interest.** The first local subscriber of a channel subscribes upstream; the last
//!   one leaving unsubscribes it `--upstream-linger-ms` later. A subscribe to a channel
//!   the edge has not loaded waits for the upstream's answer (at most 2 s), so last value
//!   and `recover` work at once.
//! - **Upstream lost**: the edge reconnects (50 ms doubling to 1 s, the `--upstream`
//!   URLs in order) and resubscribes everything with `recover` from what it mirrored.
//!   Recovered: clients see a pause. Not recovered: subscribers of reliable channels get
//!   the `reset` notice, conflate channels their newest value. Local clients stay
//!   connected throughout.
//! - **Publishes** at the edge are checked at the edge (its own publish key, JWTs,
//!   namespaces) and forwarded upstream (`--upstream-publish forward`, the default) or
//!   refused (`refuse`). A batch is forwarded as its publishes, in order, each answered
//!   on its own (not all or nothing, unlike a relay on Redis).
//! - **Loops.** The upstream answers the upgrade with its chain of relays
//!   (`x-tickrelay-path`); an edge that finds itself in it refuses the connection and
//!   tries the next URL. A relay refuses an edge whose `x-tickrelay-via` is itself.
//!
//! The upstream side is ordinary: an edge is a v1 client with the relay key
//! (`--relay-key`), treated as a trusted, heavy subscriber (see
//! [`crate::auth::Identity::relay`]).

mod task;
pub mod wire;

pub use crate::config::{EdgeConfig, PublishMode, Target};
pub use task::{run, Ctx};

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ErrorCode;
use crate::hub::{Interest, InterestEvent, Published, Wanted};

/// How long a subscribe waits for a channel to be loaded from upstream.
const WARM_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded publish batches waiting for the connection task.
const REQUEST_QUEUE: usize = 1024;
/// How long a forwarded publish waits for the upstream's answer.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Header an edge sends with its upgrade: its node id.
pub const VIA_HEADER: &str = "x-tickrelay-via";
/// Header a relay answers an edge's upgrade with: its node id, then its upstreams'.
pub const PATH_HEADER: &str = "x-tickrelay-path";

/// A forwarded batch and where its answer goes.
#[derive(Debug)]
struct Request {
    items: Vec<(String, bytes::Bytes)>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Published>, ErrorCode>>,
}

/// The edge's shared state (the connection task is [`run`]).
#[derive(Debug)]
pub struct Upstream {
    targets: Vec<Target>,
    token: Option<String>,
    /// This relay's node id (loop detection).
    node: String,
    forward: bool,
    /// The channels wanted from upstream.
    pub(crate) wanted: Wanted,
    up: AtomicBool,
    /// The URL connected to and the relay chain it answered with.
    current: Mutex<Option<(String, String)>>,
    /// Connections after the first.
    pub reconnects: AtomicU64,
    /// Channels resubscribed whose position could not be recovered upstream.
    pub resyncs: AtomicU64,
    /// Upstreams refused because this relay is in their chain.
    pub loops: AtomicU64,
    /// Publishes forwarded upstream.
    pub forwarded: AtomicU64,
    requests: tokio::sync::mpsc::Sender<Request>,
    inbox: Mutex<Option<tokio::sync::mpsc::Receiver<Request>>>,
}

impl Upstream {
    /// The edge of `cfg.upstreams` (checked by [`EdgeConfig::check`]); `node` is this
    /// relay's id. `None` without `--upstream`.
    pub fn new(cfg: &EdgeConfig, node: &str) -> Option<Upstream> {
        let targets: Vec<Target> = cfg
            .upstreams
            .iter()
            .filter_map(|u| Target::parse(u).ok())
            .collect();
        if targets.is_empty() {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(REQUEST_QUEUE);
        Some(Upstream {
            targets,
            token: cfg.upstream_token.clone(),
            node: node.to_string(),
            forward: cfg.upstream_publish == PublishMode::Forward,
            wanted: Wanted::new(Duration::from_millis(cfg.upstream_linger_ms)),
            up: AtomicBool::new(false),
            current: Mutex::new(None),
            reconnects: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            loops: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            requests: tx,
            inbox: Mutex::new(Some(rx)),
        })
    }

    /// Whether the connection upstream is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// `"up"` or `"down"`, for `/health` and `/stats`.
    pub fn state(&self) -> &'static str {
        if self.is_up() {
            "up"
        } else {
            "down"
        }
    }

    /// The upstream URL connected to, if any.
    pub fn url(&self) -> Option<String> {
        self.current.lock().as_ref().map(|c| c.0.clone())
    }

    /// The relay chain above this one (`x-tickrelay-path` of the upstream), empty when
    /// not connected.
    pub fn path(&self) -> String {
        self.current
            .lock()
            .as_ref()
            .map_or_else(String::new, |c| c.1.clone())
    }

    /// Whether channel `channel` is loaded (or cannot be: the upstream is down).
    pub fn is_warm(&self, channel: &str) -> bool {
        !self.is_up() || self.wanted.is_warm(channel)
    }

    /// Waits (at most 2 s) until `channels` are subscribed upstream and loaded.
    pub async fn warm<S: AsRef<str>>(&self, channels: &[S]) {
        if self.is_up() {
            self.wanted.warm(channels, WARM_TIMEOUT).await
        }
    }

    /// Forwards `items` upstream (or refuses them, `--upstream-publish refuse`): each
    /// answered with the upstream's position, in order. `Unavailable` when the upstream
    /// cannot be reached or does not answer in time; the upstream's own refusal (a
    /// forbidden channel, its limits) comes back as its code.
    pub async fn publish(&self, items: &[(&str, &[u8])]) -> Result<Vec<Published>, ErrorCode> {
        if !self.forward {
            return Err(ErrorCode::Forbidden);
        }
        if !self.is_up() {
            return Err(ErrorCode::Unavailable);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = Request {
            items: items
                .iter()
                .map(|(c, d)| (c.to_string(), bytes::Bytes::copy_from_slice(d)))
                .collect(),
            reply: tx,
        };
        if self.requests.try_send(req).is_err() {
            return Err(ErrorCode::Unavailable); // the task is far behind, or gone
        }
        match tokio::time::timeout(PUBLISH_TIMEOUT, rx).await {
            Ok(Ok(r)) => {
                if r.is_ok() {
                    self.forwarded
                        .fetch_add(items.len() as u64, Ordering::Relaxed);
                }
                r
            }
            _ => Err(ErrorCode::Unavailable),
        }
    }

    /// Whether publishes are forwarded (else refused).
    pub fn forwards(&self) -> bool {
        self.forward
    }
}

impl Interest for Upstream {
    fn changed(&self, channel: &str, event: InterestEvent) {
        self.wanted.changed(channel, event)
    }
}
