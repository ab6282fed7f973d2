//! Property tests for the parser: any stdin, no panic, and every refusal is a ParseError
//! (exit 65), never anything else. The cargo-fuzz targets under fuzz/ run the same entry
//! points for longer.
#![allow(clippy::unwrap_used)]

use opsgate::parse::{parse_bytes, Limits};
use proptest::prelude::*;

fn jsonish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        "-?[0-9]{1,5}".prop_map(|s| s),
        "\"[ -~]{0,12}\"".prop_map(|s| s.replace('\\', "")),
        Just("\"docker stop web\"".to_string()),
        Just("\"$(docker inspect --format '{{.LogPath}}' x)\"".to_string()),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("command"),
                        Just("cmd"),
                        Just("id"),
                        Just("reason"),
                        Just("risk"),
                        Just("approval_needed"),
                        Just("result"),
                        Just("choices"),
                        Just("content"),
                        Just("message"),
                        Just("response"),
                        Just("x")
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| format!(
                "{{{}}}",
                kv.iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_bytes(&bytes, &Limits::default());
    }

    #[test]
    fn json_shaped_input_in_any_wrapping_never_panics(json in jsonish(), prefix in "[ -~\n]{0,20}", fence in any::<bool>()) {
        let text = if fence { format!("{prefix}\n```json\n{json}\n```\n") } else { format!("{prefix}{json}") };
        if let Ok(parsed) = parse_bytes(text.as_bytes(), &Limits::default()) {
            for item in &parsed.items {
                prop_assert!(!item.command.trim().is_empty());
                prop_assert!(!item.command.contains('\0'));
            }
        }
    }

    #[test]
    fn a_valid_proposal_survives_any_envelope(cmd in "[a-z][a-z0-9 ./_-]{0,30}", id in "[a-z0-9-]{1,10}") {
        let inner = serde_json::json!({"approval_needed": [{"id": id, "command": cmd.clone()}]}).to_string();
        let wrapped = [
            inner.clone(),
            serde_json::json!({"type": "result", "result": format!("```json\n{inner}\n```")}).to_string(),
            serde_json::json!({"choices": [{"message": {"content": inner.clone()}}]}).to_string(),
            serde_json::json!({"content": [{"type": "text", "text": inner.clone()}]}).to_string(),
        ];
        for w in wrapped {
            let parsed = parse_bytes(w.as_bytes(), &Limits::default());
            prop_assume!(!cmd.trim().is_empty());
            let parsed = parsed.unwrap();
            prop_assert_eq!(&parsed.items[0].command, &cmd);
        }
    }
}
