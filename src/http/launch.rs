//! Starting a WebSocket session once hyper hands over the upgraded connection: the
//! dialect chosen at the upgrade, on the socket's own halves.
//!
//! The socket comes back out of hyper's wrappers as [`crate::stream::halves::halves`]. The
//! choice is made by a plain function that returns the session's future boxed, so
//! the task that waited for the upgrade holds one pointer while the session runs, never
//! the largest dialect's state (before: ~4.4 KB of every v1 connection's task was the
//! room a Socket.IO or Legend session would need; W3 in benches/README.md).

use crate::dialect::{AiTrading, Aria, Centrifuge, Echo, Legend, Sentio, SocketIo, V1};
use crate::relay::Relay;
use crate::routes::Route;
use crate::session::{self, Params};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What the upgrade decided, waiting (boxed) for the upgraded connection.
pub(super) struct Chosen {
    pub route: Route,
    pub echo: bool,
    pub legend: Option<Legend>,
    pub sentio: Option<Sentio>,
    pub sio: Option<SocketIo>,
    pub v1: V1,
    pub params: Params,
}

/// A session's future, boxed.
pub(super) type Running = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The session `chosen` describes on `upgraded`, monomorphized per dialect (no dynamic
/// dispatch on the read path; only the outer future is a trait object).
pub(super) fn session(
    upgraded: hyper::upgrade::Upgraded,
    chosen: Box<Chosen>,
    relay: Arc<Relay>,
) -> Running {
    let Chosen {
        route,
        echo,
        legend,
        sentio,
        sio,
        v1,
        params,
    } = *chosen;
    macro_rules! run_session {
        ($r:expr, $w:expr) => {
            match (route, legend, sentio, sio) {
                _ if echo => Box::pin(session::run($r, $w, relay, Echo, params)) as Running,
                (_, _, Some(s), _) => Box::pin(session::run($r, $w, relay, s, params)),
                (Route::Centrifuge, ..) => {
                    Box::pin(session::run($r, $w, relay, Centrifuge::new(), params))
                }
                (Route::Aria, ..) => Box::pin(session::run($r, $w, relay, Aria::new(), params)),
                (Route::AiTrading, ..) => Box::pin(session::run($r, $w, relay, AiTrading, params)),
                (Route::Legend, Some(l), ..) => Box::pin(session::run($r, $w, relay, l, params)),
                (Route::SocketIo, _, _, Some(s)) => {
                    Box::pin(session::run($r, $w, relay, s, params))
                }
                _ => Box::pin(session::run($r, $w, relay, v1, params)),
            }
        };
    }
    let Some((r, w)) = crate::stream::halves::halves(upgraded) else {
        tracing::error!("upgraded connection of an unknown type: closed");
        return Box::pin(async {});
    };
    run_session!(r, w)
}
