//! Any command: canonicalization never panics, is idempotent, keeps the words (here-document
//! bodies included), and the card shows it losslessly with everything but printable
//! ASCII, newline and tab escaped.
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
    if once.fallback.is_some() {
        // Opaque: identified by its exact bytes.
        assert_eq!(once.canonical, text);
    }
    if let Ok(tokens) = tokenize(text) {
        assert_eq!(tokenize(&render_tokens(&tokens)).ok(), Some(tokens));
    }
    let (shown, escaped) = opsgate::mask::show_command(text);
    if shown.contains('•') {
        // A secret-shaped word is masked on the card on purpose (a literal bullet in the
        // input is shown escaped, so a bullet here is a mask): not shown losslessly.
        return;
    }
    let mut decoded = String::new();
    let mut rest = shown.as_str();
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("⟦U+") {
            let end = after.find('⟧').expect("a closed escape");
            let code = u32::from_str_radix(&after[..end], 16).expect("hex");
            decoded.push(char::from_u32(code).expect("a char"));
            rest = &after[end + '⟧'.len_utf8()..];
        } else {
            assert!(c == '\n' || c == '\t' || (' '..='~').contains(&c), "{c:?} shown as itself");
            decoded.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    assert_eq!(decoded, text);
    assert_eq!(escaped, text.chars().any(|c| !(c == '\n' || c == '\t' || (' '..='~').contains(&c))));
});
