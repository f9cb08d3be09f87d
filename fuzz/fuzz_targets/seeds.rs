#![no_main]
// Arbitrary bytes as an ARIA, AI-Trading or Legend client frame (first byte picks):
// no panic, valid channels, JSON replies; valid JSON published through every seed
// template stays verbatim.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickrelay::fuzzing::seeds(data);
});
