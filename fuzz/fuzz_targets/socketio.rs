#![no_main]
// Arbitrary bytes as a Socket.IO long-polling body: no panic, packets round-trip,
// subscribes name valid channels, message frames are one JSON event.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickrelay::fuzzing::socketio(data);
});
