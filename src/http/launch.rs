//! Starting a WebSocket session once hyper hands over the upgraded connection: the
//! dialect chosen at the upgrade, on the socket's own halves.
//!
//! The socket comes back out of hyper's wrappers as [`crate::stream::halves::halves`]. The
//! choice is made by a plain function that spawns the chosen dialect's session as the
//! connection's one task, sized for that dialect alone: the task that waited for the
//! upgrade ends there. (Once that task awaited every dialect's session in one `match`,
//! so ~4.4 KB of every v1 connection was the room a Socket.IO or Legend session would
//! need; later it held the session boxed, ~650 B more than one task: W3 in
//! benches/README.md.)

use crate::dialect::{AiTrading, Aria, Centrifuge, Echo, Legend, Sentio, SocketIo, V1};
use crate::relay::{spawn_holding as spawn, Relay};
use crate::routes::Route;
use crate::session::{self, Params};
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

/// Starts the session `chosen` describes on `upgraded` in a task of its own,
/// monomorphized per dialect (no dynamic dispatch anywhere on the connection's path).
pub(super) fn start<H: Send + 'static>(
    upgraded: hyper::upgrade::Upgraded,
    chosen: Box<Chosen>,
    relay: Arc<Relay>,
    held: H,
) {
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
                _ if echo => spawn(session::run($r, $w, relay, Echo, params), held),
                (_, _, Some(s), _) => spawn(session::run($r, $w, relay, s, params), held),
                (Route::Centrifuge, ..) => {
                    spawn(session::run($r, $w, relay, Centrifuge::new(), params), held)
                }
                (Route::Aria, ..) => spawn(session::run($r, $w, relay, Aria::new(), params), held),
                (Route::AiTrading, ..) => {
                    spawn(session::run($r, $w, relay, AiTrading, params), held)
                }
                (Route::Legend, Some(l), ..) => spawn(session::run($r, $w, relay, l, params), held),
                (Route::SocketIo, _, _, Some(s)) => {
                    spawn(session::run($r, $w, relay, s, params), held)
                }
                _ => spawn(session::run($r, $w, relay, v1, params), held),
            }
        };
    }
    let Some((r, w)) = crate::stream::halves::halves(upgraded) else {
        tracing::error!("upgraded connection of an unknown type: closed");
        return;
    };
    run_session!(r, w)
}
