//! Who a connection is, and what it may do.
//!
//! A connection presents at most two kinds of credential, at the upgrade
//! (`Authorization: Bearer <t>` or `?token=<t>`) or later with `{"op":"auth","token":..}`:
//!
//! - the **publish key** (`--publish-key`): may publish anywhere; counts as authenticated
//!   for namespaces without anonymous access; owns no private channel;
//! - a **JWT** verified with [`jsonwebtoken`]: HS256 with `--jwt-secret`, RS256 or ES256
//!   with `--jwt-public-key` (the key type picks the one algorithm accepted, so neither
//!   `alg: none` nor an HMAC token "signed" with the public key is ever accepted). `exp` is
//!   required; `exp` and `nbf` are checked with `--jwt-leeway-secs`. Claims: `sub`, `admin`,
//!   `sub_channels` and `pub_channels` (patterns where `*` matches any run of characters).
//!
//! The rules ([`may_subscribe`], [`may_publish`]) are pure functions of the namespace
//! table, the [`Identity`] and the channel name, so they are tested without sockets.
//!
//! | file | what |
//! |---|---|
//! | `jwt.rs` | [`Verifier`] (built from [`JwtSettings`]), [`Claims`], keys and algorithms, refusal reasons |
//! | `rules.rs` | [`Identity`], [`Credential`], [`Keys`] and [`check`], [`may_subscribe`], [`may_publish`], [`origin_allowed`] |
//! | `glob.rs` | [`Patterns`], [`glob`] |
//! | `deadline.rs` | [`Deadline`], [`Why`], [`CLOSE_AUTH`] |

mod deadline;
mod glob;
mod jwt;
mod rules;

pub use deadline::{Deadline, Why, CLOSE_AUTH};
pub use glob::{glob, Patterns};
pub use jwt::{Claims, JwtSettings, Verifier, ADMIN_CLAIM, MAX_PATTERNS, MAX_PATTERN_BYTES};
pub use rules::{
    check, may_publish, may_subscribe, origin_allowed, Credential, Denial, Identity, Keys,
};
