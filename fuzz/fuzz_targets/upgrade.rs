#![no_main]
// Arbitrary request heads: the upgrade validation accepts exactly valid RFC 6455 requests.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tickrelay::fuzzing::upgrade(data);
});
