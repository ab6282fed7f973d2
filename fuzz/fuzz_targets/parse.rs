//! Any stdin: parsing never panics, never hangs, and every accepted item is valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opsgate::parse::{parse_bytes, Limits};

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = parse_bytes(data, &Limits::default()) {
        for item in &parsed.items {
            assert!(!item.command.trim().is_empty());
            assert!(!item.command.contains('\0'));
            assert!(item.command.len() <= opsgate::parse::MAX_COMMAND_BYTES);
        }
    }
});
