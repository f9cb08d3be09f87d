//! The upgrade of an edge relay (edge chaining, [`crate::upstream`]): loop detection
//! and the relay chain this relay answers with.

use hyper::HeaderMap;

use crate::relay::Relay;
use crate::upstream::VIA_HEADER;

/// The edge is this relay itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loop;

/// For an upgrade that says it is an edge (`x-tickrelay-via`): the chain to answer with
/// in `x-tickrelay-path` (this relay, then its own upstreams). `Ok(None)`: not an edge;
/// `Err`: the edge is this relay (a loop).
pub fn chain(relay: &Relay, headers: &HeaderMap) -> Result<Option<String>, Loop> {
    let Some(via) = headers.get(VIA_HEADER).map(|v| v.to_str().unwrap_or("")) else {
        return Ok(None);
    };
    if via.split(',').any(|n| n.trim() == relay.node) {
        return Err(Loop);
    }
    Ok(Some(match relay.upstream.as_ref().map(|u| u.path()) {
        Some(p) if !p.is_empty() => format!("{},{p}", relay.node),
        _ => relay.node.clone(),
    }))
}
