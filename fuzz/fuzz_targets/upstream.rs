#![no_main]
// Arbitrary bytes as a frame from an upstream relay: no panic, and a message read from
// them re-encodes to exactly them.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickrelay::fuzzing::upstream(data);
});
