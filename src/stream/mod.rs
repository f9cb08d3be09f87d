//! Accepted streams under hyper and taken back from it: the HTTP write timeout that
//! wraps them while they speak HTTP ([`write_timeout`]), and an upgraded connection's
//! two halves ([`halves`]).

pub mod halves;
pub mod write_timeout;
