//! Any command: canonicalization never panics, is idempotent, and keeps the words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opsgate::canon::{canonicalize, render_tokens, tokenize};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let once = canonicalize(text);
    assert_eq!(once.cmd_hash.len(), opsgate::canon::HASH_LEN);
    let twice = canonicalize(&once.canonical);
    assert_eq!(once.canonical, twice.canonical);
    assert_eq!(once.logical_keys, twice.logical_keys);
    if let Ok(tokens) = tokenize(text) {
        assert_eq!(tokenize(&render_tokens(&tokens)).ok(), Some(tokens));
    }
});
