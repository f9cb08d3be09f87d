//! The small error vocabulary the relay speaks to clients.
//!
//! [`ErrorCode`] is the `code` field of an `{"type":"error"}` reply (DESIGN.md §3); each
//! variant also maps to the HTTP status used when the same failure happens on the HTTP
//! publish API. It is a leaf: the parser's error (a code, a static message and the request
//! `id`) is `protocol::command::ProtoError`.

/// The refusal reason of a token whose `exp` has passed (`unauthorized`; a dialect with a
/// "token expired" code of its own tells it apart by this).
pub const TOKEN_EXPIRED: &str = "invalid token: expired";

/// The refusal of a subscribe or history read whose position cannot be recovered, when
/// it asked to be refused (`bad_request`; a dialect with an "unrecoverable position"
/// code of its own tells it apart by this).
pub const UNRECOVERABLE: &str = "unrecoverable position: the missed messages are gone";

/// Error codes of protocol v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The command is not valid JSON, not an object, or misses a required field.
    BadRequest,
    /// `op` names no known operation.
    UnknownOp,
    /// A channel name breaks the naming rules.
    InvalidChannel,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// No (valid) credential was given for an operation that needs one.
    Unauthorized,
    /// The connection sends commands faster than its limit.
    RateLimited,
    /// The subscribe would take the connection over its subscription limit.
    TooManySubscriptions,
    /// A publish payload is over the message-size limit.
    PayloadTooLarge,
    /// The relay holds its maximum number of channels; a new one cannot be made.
    TooManyChannels,
    /// The backplane (Redis) that assigns offsets cannot be reached: nothing was
    /// published; try again (HTTP 503). Open connections stay open meanwhile.
    Unavailable,
}

impl ErrorCode {
    /// Every code, for metrics.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::InvalidChannel,
        ErrorCode::Forbidden,
        ErrorCode::Unauthorized,
        ErrorCode::RateLimited,
        ErrorCode::TooManySubscriptions,
        ErrorCode::PayloadTooLarge,
        ErrorCode::TooManyChannels,
        ErrorCode::Unavailable,
    ];

    /// The wire spelling of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::TooManyChannels => "too_many_channels",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// Index into [`ErrorCode::ALL`], for per-code counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The HTTP status for the same failure on the HTTP API.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnknownOp | ErrorCode::InvalidChannel => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited | ErrorCode::TooManySubscriptions => 429,
            ErrorCode::TooManyChannels | ErrorCode::Unavailable => 503,
        }
    }
}
