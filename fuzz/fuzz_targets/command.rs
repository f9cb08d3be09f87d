#![no_main]
// Arbitrary bytes as a client command: no panic, and what parses round-trips.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickrelay::fuzzing::command(data);
});
