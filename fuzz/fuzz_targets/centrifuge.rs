#![no_main]
// Arbitrary bytes as a Centrifuge client frame: no panic, pushes are one JSON line, and
// what parses round-trips.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickrelay::fuzzing::centrifuge(data);
});
