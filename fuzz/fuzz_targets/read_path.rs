#![no_main]
// Arbitrary client bytes after the handshake through a whole session: only well-formed frames out.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickrelay::fuzzing::read_path(data);
});
