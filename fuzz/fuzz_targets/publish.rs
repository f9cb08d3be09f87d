#![no_main]
// Arbitrary bytes as HTTP publish bodies (single and NDJSON) and channel names.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickrelay::fuzzing::publish(data);
});
