//! Entry points of the fuzz targets in `fuzz/` (compiled only with `--cfg fuzzing`, which
//! `cargo fuzz` sets). Each target is one call into this module, rustls style, so the
//! targets stay a few lines long and the properties live next to the code they check.
//!
//! Every function takes the raw fuzzer input, never panics on its own account, and
//! asserts one property; a failed assertion is a finding:
//!
//! | function | property |
//! |---|---|
//! | [`command`] | no panic; a parsed command, re-encoded, parses to the same command |
//! | [`centrifuge`] | Centrifuge frames, line by line: no panic; a push of published data is one JSON line; commands round-trip |
//! | [`seeds`] | the seed platforms' client frames: no panic, valid channel names, replies are JSON; published data inside each template verbatim |
//! | [`socketio`] | a polling body of Engine.IO/Socket.IO packets: no panic; packets round-trip; subscribes name valid ticker channels; message frames are one JSON event |
//! | [`publish`] | publish bodies and channel names: accepted input is what the encoder assumes |
//! | [`read_path`] | a whole session over a duplex: no panic or hang, only well-formed frames out |
//! | [`upgrade`] | `validate` accepts exactly what an independent RFC 6455 oracle accepts |
//! | [`frame_encode`] | a frame built once decodes to its exact length, opcode and FIN |
//! | [`token`] | a JWT verdict is deterministic; a signed token verifies, a tampered one fails |
//! | [`upstream`] | an upstream relay's frame: no panic; a message it reads is the one its bytes encode |
//!
//! Each target lives in the file of its name, with its oracles and its tests. What two
//! targets both use (the channel alphabet, a frame-header decoder, the input reader)
//! lives here, as does the test that replays the committed seeds.
//!
//! The oracles here are written independently of the code under test (no shared
//! helpers) so that a bug is not repeated on both sides.

mod centrifuge;
mod command;
mod frame_encode;
mod publish;
mod read_path;
mod seeds;
mod socketio;
mod token;
mod upgrade;
mod upstream;

pub use centrifuge::centrifuge;
pub use command::command;
pub use frame_encode::frame_encode;
pub use publish::publish;
pub use read_path::read_path;
pub use seeds::seeds;
pub use socketio::socketio;
pub use token::{token, TOKEN_SECRET};
pub use upgrade::upgrade;
pub use upstream::upstream;

/// The channel alphabet, spelled out again (not `channel`'s table).
fn oracle_channel_ok(name: &[u8]) -> bool {
    (1..=128).contains(&name.len())
        && name
            .iter()
            .all(|b| b"_.:@/#-".contains(b) || b.is_ascii_digit() || b.is_ascii_alphabetic())
}

/// An independent decoder of a server frame header: (fin, rsv, opcode, masked, len,
/// header length), or `None` if `b` is shorter than the header. Also checks that the
/// length uses the shortest form and that a 64-bit length has its top bit clear.
fn oracle_head(b: &[u8]) -> Option<(bool, u8, u8, bool, u64, usize)> {
    if b.len() < 2 {
        return None;
    }
    let masked = b[1] >> 7 == 1;
    let (len, n) = match b[1] & 0x7f {
        126 => {
            let l = u64::from(*b.get(2)?) << 8 | u64::from(*b.get(3)?);
            assert!(l >= 126, "length {l} not in the shortest form");
            (l, 4)
        }
        127 => {
            let mut l = 0u64;
            for i in 0..8 {
                l = l << 8 | u64::from(*b.get(2 + i)?);
            }
            assert!(l >> 63 == 0, "64-bit length with the top bit set");
            assert!(l > 0xffff, "length {l} not in the shortest form");
            (l, 10)
        }
        l => (u64::from(l), 2),
    };
    let n = n + if masked { 4 } else { 0 };
    (b.len() >= n).then_some((b[0] >> 7 == 1, (b[0] >> 4) & 7, b[0] & 15, masked, len, n))
}

/// Reads little-endian integers and slices off the front of the fuzzer input.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u64(&mut self, n: usize) -> u64 {
        (0..n).fold(0, |v, i| v | u64::from(self.byte()) << (8 * i))
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays the committed seeds (and any `fuzz/artifacts/`) on stable:
    /// `RUSTFLAGS="--cfg fuzzing" cargo test --lib fuzzing`.
    #[test]
    fn the_committed_corpus_replays() {
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 10] = [
            ("centrifuge", centrifuge),
            ("upstream", upstream),
            ("seeds", seeds),
            ("socketio", socketio),
            ("token", token),
            ("command", command),
            ("publish", publish),
            ("read_path", read_path),
            ("upgrade", upgrade),
            ("frame_encode", frame_encode),
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        for (name, run) in targets {
            let mut seen = 0;
            for dir in ["corpus", "artifacts"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for e in entries {
                    let path = e.unwrap().path();
                    eprintln!("{}", path.display());
                    run(&std::fs::read(&path).unwrap());
                    seen += 1;
                }
            }
            assert!(seen > 0, "no seeds for {name}");
        }
    }
}
