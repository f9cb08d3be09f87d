#![no_main]
// Arbitrary (kind, channel, payload, offset): a frame built once decodes to its exact length, opcode, FIN.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickrelay::fuzzing::frame_encode(data);
});
