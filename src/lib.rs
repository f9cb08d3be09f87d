//! # tickrelay (in progress): the pure protocol layer.
#![warn(missing_docs)]
pub mod error;
pub mod protocol;
