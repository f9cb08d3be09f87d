#![no_main]
// Arbitrary bytes into the client command parser: it must never panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tickrelay::protocol::command::parse(&mut data.to_vec());
});
