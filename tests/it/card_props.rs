//! Property: whatever characters a command holds, the card shows it losslessly with every
//! character other than printable ASCII, newline and tab escaped, or opsgate refuses it.
//! Driven through the real binary (ingest, then the console card).
#![allow(clippy::unwrap_used)]

use super::common;
use common::*;
use proptest::prelude::*;

/// Characters that hide things: Unicode spaces, format and bidi controls, variation
/// selectors, tags, musical format characters, controls, and anything else.
fn sneaky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        Just('\u{a0}'),
        Just('\u{2003}'),
        Just('\u{200b}'),
        Just('\u{202e}'),
        Just('\u{2066}'),
        Just('\u{3000}'),
        Just('\u{feff}'),
        Just('\u{e0100}'),
        Just('\u{e0041}'),
        Just('\u{1d173}'),
        Just('\r'),
        Just('\u{85}'),
        Just('\u{1b}'),
        Just('é'),
        Just('⟦'),
        any::<char>(),
    ]
}

fn command_with_insertions() -> impl Strategy<Value = String> {
    (
        "[a-z]{1,6}( [-a-z0-9/#;|&'\"]{1,8}){0,4}",
        prop::collection::vec((any::<prop::sample::Index>(), sneaky_char()), 1..4),
    )
        .prop_map(|(base, inserts)| {
            let mut chars: Vec<char> = base.chars().collect();
            for (at, c) in inserts {
                let i = at.index(chars.len() + 1);
                chars.insert(i, c);
            }
            chars.into_iter().collect()
        })
}

/// Decodes `⟦U+XXXX⟧` escapes; `None` if anything else is outside printable ASCII,
/// newline and tab.
fn decode(shown: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = shown;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("⟦U+") {
            let end = after.find('⟧')?;
            let code = u32::from_str_radix(&after[..end], 16).ok()?;
            out.push(char::from_u32(code)?);
            rest = &after[end + '⟧'.len_utf8()..];
            continue;
        }
        if !(c == '\n' || c == '\t' || (' '..='~').contains(&c)) {
            return None;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_card_shows_every_character_escaped_and_losslessly_or_refuses(cmd in command_with_insertions()) {
        let env = Env::new();
        let input = serde_json::json!({"approval_needed": [{"id": "p", "command": cmd}]}).to_string();
        let out = env.cmd(&["ingest", "--json"]).stdin(&input).output();
        // A crash is never a refusal: a panic exits 101, an unclassified error 1.
        prop_assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        if !out.status.success() {
            // Refused as bad input (a NUL byte, an empty command): nothing can run,
            // nothing to show.
            prop_assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
            prop_assert!(!env.db.exists() || env.list_json(&[]).is_empty());
            return Ok(());
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["invalid"] == 1 {
            // Skipped as an invalid item: stored nowhere.
            prop_assert!(env.list_json(&[]).is_empty());
            return Ok(());
        }
        let p = &env.list_json(&[])[0];
        let hash = p["cmd_hash"].as_str().unwrap().to_string();
        let card = stdout(&env.cmd(&["notify", "--console"]).ok());
        // The command block: after the variant's header (and the warning line, if any),
        // up to the line that starts with its cmd_hash.
        let lines: Vec<&str> = card.lines().collect();
        let head = lines.iter().position(|l| l.starts_with("1. #1 ")).unwrap();
        let mut first = head + 1;
        let warned = lines[first].starts_with("⚠ this command holds");
        if warned {
            first += 1;
        }
        let end = lines.iter().position(|l| l.starts_with(&hash)).unwrap();
        let shown = lines[first..end].join("\n");
        let decoded = decode(&shown);
        prop_assert!(decoded.is_some(), "unescaped character on the card: {:?}", shown);
        prop_assert_eq!(decoded.unwrap(), cmd.clone(), "the card is not the command");
        let plain_ascii = cmd.chars().all(|c| c == '\n' || c == '\t' || (' '..='~').contains(&c));
        prop_assert_eq!(warned, !plain_ascii, "the warning line");
    }
}
