//! WebSocket close codes the relay sends (RFC 6455 §7.4, the IANA registry, and the
//! relay's own 4xxx codes), as one named type instead of bare numbers.

/// A close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the relay is going away (shutdown, heartbeat timeout): reconnect.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the WebSocket protocol.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: a data type the connection's dialect does not accept.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1007: invalid payload data (text that is not UTF-8).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: policy violation (slow consumer, command-rate abuse).
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message over the size limit.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1013: the relay is over capacity for what was asked; retry later.
    pub const OVERLOADED: CloseCode = CloseCode(1013);
    /// 4001: no valid credential in time, or the token expired.
    pub const AUTH: CloseCode = CloseCode(4001);

    /// The code as sent on the wire.
    pub fn get(self) -> u16 {
        self.0
    }

    /// Whether a peer may send this code (RFC 6455 §7.4 and the IANA registry):
    /// 1000–1003, 1007–1014, and 3000–4999 for libraries and applications.
    pub fn valid_from_peer(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// The close reason of a connection whose queue overflowed.
pub const SLOW_CONSUMER: &str = "slow consumer";

/// The close reason of a connection silent for longer than the idle timeout.
pub const HEARTBEAT_TIMEOUT: &str = "heartbeat timeout";

/// The close reason of a connection that showed no credential in time.
pub const AUTH_TIMEOUT: &str = "authentication timeout: send a token";

/// Why a connection is being failed: the close code and a short reason.
pub type Fail = (CloseCode, &'static str);
