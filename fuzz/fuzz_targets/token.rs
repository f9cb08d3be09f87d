#![no_main]
// Arbitrary tokens, and signed tokens tampered with: never a panic, never a forgery.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickrelay::fuzzing::token(data);
});
