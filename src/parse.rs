//! Stage 1, parse: whatever the LLM printed -> validated proposal items.
//!
//! Pure: no I/O, no database. Finds the JSON (LLM CLI/API envelopes, fenced blocks,
//! prose around it), maps field aliases and enforces limits. It never trusts anything the
//! LLM computed: ids are display labels and a claimed `cmd_hash` is only compared.

use crate::error::Kind;
pub use crate::model::Risk;
use serde_json::{Map, Value};
use std::fmt;
use std::io::Read;

/// Keys under which a proposal array may sit.
const ARRAY_KEYS: [&str; 4] = ["approval_needed", "approvals", "proposals", "actions"];
/// Longest command accepted, in bytes; longer items are skipped (a card could not show them).
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Longest reason kept, in characters; longer ones are cut.
pub const MAX_REASON_CHARS: usize = 4000;
/// Longest display id kept, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest cycle summary kept, in characters; a longer one is cut (it is untrusted text
/// shown to operators and given back to the model).
pub const MAX_SUMMARY_CHARS: usize = 2000;
/// How many envelopes may be nested before the input is refused.
const MAX_ENVELOPE_DEPTH: usize = 4;
/// How many `{`/`[` positions in prose are tried before giving up.
const MAX_PROSE_CANDIDATES: usize = 256;

/// Limits on one ingest.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_input_bytes: usize,
    pub max_proposals: usize,
    pub strict: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_bytes: 8 * 1024 * 1024,
            max_proposals: 1000,
            strict: false,
        }
    }
}

/// One proposal as the LLM stated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Position in the proposal array, from 0.
    pub index: usize,
    /// The LLM's `id`: a display label, never a key.
    pub display_id: Option<String>,
    /// The command exactly as printed.
    pub command: String,
    pub reason: Option<String>,
    pub risk: Risk,
    /// A `cmd_hash` the LLM claimed; compared, never used.
    pub claimed_hash: Option<String>,
}

/// The outcome of parsing one input.
#[derive(Debug, Default, Clone)]
pub struct Parsed {
    pub items: Vec<Item>,
    /// Items skipped as invalid.
    pub invalid: usize,
    pub warnings: Vec<String>,
    /// The cycle's `summary`, when the model wrote one beside its proposal array (cut to
    /// [`MAX_SUMMARY_CHARS`]).
    pub summary: Option<String>,
}

/// Why an input was refused. Every variant maps to exit code 65.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    TooLarge {
        limit: usize,
    },
    NotUtf8 {
        offset: usize,
    },
    /// Nothing but whitespace: the LLM command printed nothing.
    Empty,
    NoJson {
        /// The first non-blank line, shortened and escaped, so the user sees what came.
        first_line: String,
    },
    /// The LLM CLI or API answered with its own error (Claude Code's `is_error`, an API's
    /// `error` object).
    LlmError {
        message: String,
    },
    Truncated {
        offset: usize,
    },
    Malformed {
        offset: usize,
        why: String,
    },
    NoProposalArray {
        found: String,
    },
    TooManyProposals {
        count: usize,
        limit: usize,
    },
    InvalidItem {
        index: usize,
        why: String,
    },
    /// Past [`IN_MEMORY`] the input streams, and a stream is read only as plain JSON or
    /// JSON Lines: an envelope, fences or prose around the JSON are refused as what they
    /// are, never as "no proposal array" or "malformed JSON at byte 0".
    OverInMemory {
        /// What the stream found.
        why: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooLarge { limit } => write!(
                f,
                "input is larger than --max-input-bytes ({limit} bytes); raise the limit for bulk loads"
            ),
            ParseError::NotUtf8 { offset } => {
                write!(f, "input is not valid UTF-8 (at byte {offset}); expected LLM text or JSON")
            }
            ParseError::Empty => write!(
                f,
                "stdin is empty: the LLM command printed nothing (check its exit status and its stderr); expected its JSON answer"
            ),
            ParseError::NoJson { first_line } => write!(
                f,
                "no JSON found in input (it starts with {first_line}); expected an object with an \"approval_needed\" array, an array of proposals, or JSON Lines"
            ),
            ParseError::LlmError { message } => write!(
                f,
                "the LLM reported an error instead of an answer: {message}"
            ),
            ParseError::Truncated { offset } => write!(
                f,
                "input ends inside the JSON value that starts at byte {offset} (truncated LLM output?); expected complete JSON"
            ),
            ParseError::Malformed { offset, why } => write!(
                f,
                "malformed JSON in the value that starts at byte {offset}: {why}; expected valid JSON (fragments of broken JSON are never used)"
            ),
            ParseError::NoProposalArray { found } => write!(
                f,
                "no proposal array in the JSON (found {found}); expected \"approval_needed\" (or \"approvals\", \"proposals\", \"actions\") holding an array"
            ),
            ParseError::TooManyProposals { count, limit } => write!(
                f,
                "{count} proposals exceed --max-proposals ({limit}); raise the limit for bulk loads"
            ),
            ParseError::InvalidItem { index, why } => {
                write!(f, "proposal {index}: {why} (--strict refuses invalid items)")
            }
            ParseError::OverInMemory { why } => write!(
                f,
                "input over {} MiB limit ({why}): past {} MiB only a plain JSON proposal array (or an object holding one) or JSON Lines is read, not an LLM envelope, fences or prose around the JSON; unwrap it first (e.g. jq -r .result) or split the input",
                IN_MEMORY >> 20,
                IN_MEMORY >> 20
            ),
        }
    }
}

impl std::error::Error for ParseError {}

/// Every parse error is bad input.
pub fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    cause.downcast_ref::<ParseError>().map(|_| Kind::BadInput)
}

/// Parses raw stdin bytes.
pub fn parse_bytes(input: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    if input.len() > limits.max_input_bytes {
        return Err(ParseError::TooLarge {
            limit: limits.max_input_bytes,
        });
    }
    let text = std::str::from_utf8(input).map_err(|e| ParseError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    parse_text(text, limits)
}

/// Parses LLM output text.
pub fn parse_text(text: &str, limits: &Limits) -> Result<Parsed, ParseError> {
    if text.trim().trim_start_matches('\u{feff}').is_empty() {
        return Err(ParseError::Empty);
    }
    let (values, summary) = find_proposals(text, 0)?;
    let mut parsed = build(values, limits)?;
    parsed.summary = summary;
    Ok(parsed)
}

/// Proposal values and the summary beside them.
type Proposals = (Vec<Value>, Option<String>);

/// What a JSON document turned out to be.
enum Found {
    /// The proposal values, and the summary beside them.
    Proposals(Vec<Value>, Option<String>),
    /// JSON, but no proposal array in it; names what was there.
    Other(String),
}

/// Locates the proposal array in text: whole-text JSON, JSON Lines, fenced blocks, then
/// the first balanced JSON value in prose.
fn find_proposals(text: &str, depth: usize) -> Result<Proposals, ParseError> {
    let trimmed = text.trim().trim_start_matches('\u{feff}');
    let mut first_other: Option<String> = None;
    let mut consider = |found: Found| -> Option<Proposals> {
        match found {
            Found::Proposals(v, summary) => Some((v, summary)),
            Found::Other(what) => {
                first_other.get_or_insert(what);
                None
            }
        }
    };

    match serde_json::from_str::<Value>(trimmed) {
        Ok(value) => {
            // The whole answer is the LLM CLI's (or API's) own error: say so. Only the
            // outermost object counts, and only when it holds no proposals (an object
            // the model wrote may well have an "error" field).
            let error = match (&value, depth) {
                (Value::Object(obj), 0) => llm_error(obj),
                _ => None,
            };
            if let Some(v) = consider(interpret(value, depth)?) {
                return Ok(v);
            }
            if let Some(message) = error {
                return Err(ParseError::LlmError { message });
            }
        }
        Err(e) if e.is_eof() && trimmed.starts_with(['{', '[']) => {
            return Err(ParseError::Truncated { offset: 0 });
        }
        Err(_) => {}
    }
    if let Some(lines) = json_lines(trimmed) {
        if let Some(v) = consider(interpret(Value::Array(lines), depth)?) {
            return Ok(v);
        }
    }
    for block in fenced_blocks(trimmed) {
        if let Ok(value) = serde_json::from_str::<Value>(block.trim()) {
            if let Some(v) = consider(interpret(value, depth)?) {
                return Ok(v);
            }
        } else if let Some(lines) = json_lines(block.trim()) {
            if let Some(v) = consider(interpret(Value::Array(lines), depth)?) {
                return Ok(v);
            }
        }
    }
    for candidate in embedded_values(trimmed) {
        match candidate {
            Ok(value) => {
                if let Some(v) = consider(interpret(value, depth)?) {
                    return Ok(v);
                }
            }
            Err(e) => return Err(e),
        }
    }
    match first_other {
        Some(found) => Err(ParseError::NoProposalArray { found }),
        None => Err(ParseError::NoJson {
            first_line: first_line(trimmed),
        }),
    }
}

/// The first non-blank line of a text, quoted, escaped and at most 80 characters.
fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let short: String = line.chars().take(80).collect();
    let more = if short.len() < line.len() { "…" } else { "" };
    format!("{short:?}{more}")
}

/// The error an LLM CLI or API answered with, when the object is one.
fn llm_error(obj: &Map<String, Value>) -> Option<String> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(|s| s.trim().to_string());
    let short = |s: String| -> String {
        let line = s.lines().next().unwrap_or("").to_string();
        line.chars().take(300).collect()
    };
    if obj.get("is_error") == Some(&Value::Bool(true)) {
        let message = text(obj.get("result"))
            .filter(|s| !s.is_empty())
            .or_else(|| text(obj.get("subtype")))
            .unwrap_or_else(|| "is_error is true, no message".into());
        return Some(short(message));
    }
    match obj.get("error") {
        Some(Value::String(s)) => Some(short(s.clone())),
        Some(Value::Object(e)) => Some(short(
            text(e.get("message"))
                .or_else(|| text(e.get("type")))
                .unwrap_or_else(|| "an error object without a message".into()),
        )),
        _ => None,
    }
}

/// Every non-empty line a JSON object: JSON Lines.
fn json_lines(text: &str) -> Option<Vec<Value>> {
    let mut values = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v @ Value::Object(_)) => values.push(v),
            _ => return None,
        }
    }
    (values.len() > 1).then_some(values)
}

/// Contents of markdown code fences, in order.
fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        // Skip the info string (`json`, `JSON`, ...) up to the end of the line.
        let body_start = after.find('\n').map(|n| n + 1).unwrap_or(after.len());
        let body = &after[body_start..];
        match body.find("```") {
            Some(close) => {
                blocks.push(&body[..close]);
                rest = &body[close + 3..];
            }
            None => break,
        }
    }
    blocks
}

/// JSON values that start at a `{` or `[` inside prose, first first. Only top-level
/// values count: a `{` or `[` inside a value already read is part of it, never a value of
/// its own (an object's nested `"rejected_ideas": [...]` is not a proposal array). A value
/// that starts like JSON (an object with a string key, an array of objects) but is broken
/// is an error: the objects nested inside it are fragments, never proposals.
fn embedded_values(text: &str) -> impl Iterator<Item = Result<Value, ParseError>> + '_ {
    let mut read_up_to = 0;
    text.char_indices()
        .filter(|(_, c)| *c == '{' || *c == '[')
        .take(MAX_PROSE_CANDIDATES)
        .filter_map(move |(at, _)| {
            if at < read_up_to {
                return None;
            }
            let mut stream = serde_json::Deserializer::from_str(&text[at..]).into_iter::<Value>();
            match stream.next() {
                Some(Ok(v @ (Value::Object(_) | Value::Array(_)))) => {
                    read_up_to = at + stream.byte_offset();
                    Some(Ok(v))
                }
                Some(Err(e)) if looks_like_json(&text[at..]) => Some(Err(if e.is_eof() {
                    ParseError::Truncated { offset: at }
                } else {
                    ParseError::Malformed {
                        offset: at,
                        why: format!("{e}"),
                    }
                })),
                _ => None,
            }
        })
}

fn looks_like_json(s: &str) -> bool {
    let rest = s[1..].trim_start();
    rest.starts_with('"') || rest.starts_with('{')
}

/// Interprets one JSON value: a proposal container, or an envelope holding LLM text.
fn interpret(value: Value, depth: usize) -> Result<Found, ParseError> {
    match value {
        Value::Array(items) => {
            if items.is_empty() || items.iter().any(is_proposal) {
                return Ok(Found::Proposals(items, None));
            }
            // An array of events or messages (Claude Code, streamed APIs): the last one that
            // holds proposals wins.
            let mut last_other = None;
            for item in items.into_iter().rev() {
                match interpret(item, depth)? {
                    found @ Found::Proposals(..) => return Ok(found),
                    Found::Other(what) => {
                        last_other.get_or_insert(what);
                    }
                }
            }
            Ok(Found::Other(
                last_other.unwrap_or_else(|| "an array without proposals".into()),
            ))
        }
        Value::Object(mut obj) => {
            for key in ARRAY_KEYS {
                match obj.remove(key) {
                    Some(Value::Array(items)) => {
                        return Ok(Found::Proposals(items, summary_of(obj.get("summary"))))
                    }
                    Some(Value::Null) => {
                        return Ok(Found::Proposals(Vec::new(), summary_of(obj.get("summary"))))
                    }
                    Some(other) => {
                        return Ok(Found::Other(format!(
                            "\"{key}\" holding {}",
                            kind_of(&other)
                        )))
                    }
                    None => {}
                }
            }
            if is_proposal_map(&obj) {
                return Ok(Found::Proposals(vec![Value::Object(obj)], None));
            }
            match envelope_text(&obj) {
                Some(text) if depth < MAX_ENVELOPE_DEPTH => {
                    match find_proposals(&text, depth + 1) {
                        Ok((items, summary)) => Ok(Found::Proposals(items, summary)),
                        Err(ParseError::NoJson { .. } | ParseError::Empty) => Ok(Found::Other(
                            "an LLM envelope whose text holds no JSON".into(),
                        )),
                        Err(ParseError::NoProposalArray { found }) => Ok(Found::Other(format!(
                            "an LLM envelope whose text holds {found}"
                        ))),
                        Err(other) => Err(other),
                    }
                }
                Some(_) => Ok(Found::Other("envelopes nested too deep".into())),
                None => Ok(Found::Other(describe_object(&obj))),
            }
        }
        other => Ok(Found::Other(kind_of(&other).into())),
    }
}

/// The `summary` the model wrote beside its proposals: a non-blank string, trimmed and
/// cut to [`MAX_SUMMARY_CHARS`]. Anything else is no summary.
fn summary_of(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(cut(s.trim(), MAX_SUMMARY_CHARS)),
        _ => None,
    }
}

fn describe_object(obj: &Map<String, Value>) -> String {
    let keys: Vec<&str> = obj.keys().map(String::as_str).take(6).collect();
    if keys.is_empty() {
        "an empty object".into()
    } else {
        format!("an object with keys {}", keys.join(", "))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn is_proposal(v: &Value) -> bool {
    v.as_object().is_some_and(is_proposal_map)
}

fn is_proposal_map(obj: &Map<String, Value>) -> bool {
    obj.contains_key("command") || obj.contains_key("cmd")
}

/// The LLM text inside a known CLI/API envelope.
fn envelope_text(obj: &Map<String, Value>) -> Option<String> {
    // Claude Code `--output-format json`: {"type":"result","result":"..."}
    if let Some(Value::String(s)) = obj.get("result") {
        return Some(s.clone());
    }
    // OpenAI chat completions: choices[0].message.content (or a legacy `text`).
    if let Some(Value::Array(choices)) = obj.get("choices") {
        let choice = choices.first()?;
        if let Some(s) = choice.pointer("/message/content").and_then(Value::as_str) {
            return Some(s.to_string());
        }
        if let Some(s) = choice.get("text").and_then(Value::as_str) {
            return Some(s.to_string());
        }
    }
    // Anthropic Messages: content[] of {type:"text", text:"..."}.
    if let Some(Value::Array(blocks)) = obj.get("content") {
        let text: Vec<&str> = blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        if !text.is_empty() {
            return Some(text.join("\n"));
        }
    }
    // Ollama: `response` (generate) or `message.content` (chat).
    if let Some(Value::String(s)) = obj.get("response") {
        return Some(s.clone());
    }
    if let Some(Value::String(s)) = obj.get("message").and_then(|m| m.get("content")) {
        return Some(s.clone());
    }
    // A message whose `content` is plain text.
    if let Some(Value::String(s)) = obj.get("content") {
        return Some(s.clone());
    }
    None
}

/// Validates proposal values into items.
fn build(values: Vec<Value>, limits: &Limits) -> Result<Parsed, ParseError> {
    if values.len() > limits.max_proposals {
        return Err(ParseError::TooManyProposals {
            count: values.len(),
            limit: limits.max_proposals,
        });
    }
    let mut parsed = Parsed::default();
    for (index, value) in values.into_iter().enumerate() {
        match item(index, value, &mut parsed.warnings) {
            Ok(item) => parsed.items.push(item),
            Err(why) if limits.strict => return Err(ParseError::InvalidItem { index, why }),
            Err(why) => {
                parsed.invalid += 1;
                parsed
                    .warnings
                    .push(format!("proposal {index} skipped: {why}"));
            }
        }
    }
    Ok(parsed)
}

fn item(index: usize, value: Value, warnings: &mut Vec<String>) -> Result<Item, String> {
    let Value::Object(mut obj) = value else {
        return Err(format!("expected an object, found {}", kind_of(&value)));
    };
    let command = match obj.remove("command").or_else(|| obj.remove("cmd")) {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(format!(
                "\"command\" is {}, expected a string",
                kind_of(&other)
            ))
        }
        None => return Err("no \"command\"".into()),
    };
    if command.trim().is_empty() {
        return Err("\"command\" is empty".into());
    }
    if command.len() > MAX_COMMAND_BYTES {
        return Err(format!(
            "\"command\" is {} bytes, over the {MAX_COMMAND_BYTES}-byte limit",
            command.len()
        ));
    }
    if command.contains('\0') {
        return Err("\"command\" contains a NUL byte".into());
    }
    let display_id = match obj.remove("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(cut(s.trim(), MAX_ID_CHARS)),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let reason = match obj.remove("reason") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            if s.chars().count() > MAX_REASON_CHARS {
                warnings.push(format!(
                    "proposal {index}: reason cut to {MAX_REASON_CHARS} characters"
                ));
            }
            Some(cut(s.trim(), MAX_REASON_CHARS))
        }
        _ => None,
    };
    let risk = match obj.remove("risk") {
        None | Some(Value::Null) => Risk::Medium,
        Some(Value::String(s)) => Risk::from_str_opt(&s).unwrap_or_else(|| {
            warnings.push(format!(
                "proposal {index}: unknown risk {:?}, kept as medium",
                cut(&s, 32)
            ));
            Risk::Medium
        }),
        Some(other) => {
            warnings.push(format!(
                "proposal {index}: risk is {}, kept as medium",
                kind_of(&other)
            ));
            Risk::Medium
        }
    };
    let claimed_hash = match obj.remove("cmd_hash") {
        Some(Value::String(s)) => Some(cut(s.trim(), 64)),
        _ => None,
    };
    Ok(Item {
        index,
        display_id,
        command,
        reason,
        risk,
        claimed_hash,
    })
}

fn cut(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => s[..at].to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Parsed, ParseError> {
        parse_text(s, &Limits::default())
    }

    fn commands(s: &str) -> Vec<String> {
        parse(s)
            .expect("parses")
            .items
            .into_iter()
            .map(|i| i.command)
            .collect()
    }

    #[test]
    fn object_with_each_array_alias() {
        for key in ARRAY_KEYS {
            let text =
                format!("{{\"{key}\": [{{\"id\": \"a\", \"command\": \"docker stop x\"}}]}}");
            assert_eq!(commands(&text), ["docker stop x"], "{key}");
        }
    }

    #[test]
    fn bare_array_and_json_lines() {
        assert_eq!(commands(r#"[{"cmd": "a"}, {"command": "b"}]"#), ["a", "b"]);
        assert_eq!(
            commands("{\"command\": \"a\"}\n\n{\"command\": \"b\"}\n"),
            ["a", "b"]
        );
    }

    #[test]
    fn fenced_block_and_prose() {
        let fenced =
            "Here you go:\n```json\n{\"approval_needed\": [{\"command\": \"a\"}]}\n```\nBye";
        assert_eq!(commands(fenced), ["a"]);
        let prose = "I propose {\"approval_needed\": [{\"command\": \"b\"}]} and nothing else.";
        assert_eq!(commands(prose), ["b"]);
    }

    #[test]
    fn envelopes_are_unwrapped() {
        let inner = r#"{\"approval_needed\": [{\"command\": \"docker stop x\"}]}"#;
        let claude =
            format!(r#"{{"type":"result","subtype":"success","result":"```json\n{inner}\n```"}}"#);
        let openai =
            format!(r#"{{"choices":[{{"message":{{"role":"assistant","content":"{inner}"}}}}]}}"#);
        let anthropic = format!(r#"{{"content":[{{"type":"text","text":"{inner}"}}]}}"#);
        let ollama_gen = format!(r#"{{"model":"m","response":"{inner}"}}"#);
        let ollama_chat = format!(r#"{{"message":{{"role":"assistant","content":"{inner}"}}}}"#);
        let events = format!(r#"[{{"type":"system"}},{{"type":"result","result":"{inner}"}}]"#);
        for text in [claude, openai, anthropic, ollama_gen, ollama_chat, events] {
            assert_eq!(commands(&text), ["docker stop x"], "{text}");
        }
    }

    #[test]
    fn empty_cycle_is_valid() {
        assert!(parse(r#"{"approval_needed": []}"#)
            .expect("ok")
            .items
            .is_empty());
    }

    #[test]
    fn the_summary_beside_the_proposals_is_kept_and_bounded() {
        let p =
            parse(r#"{"summary": "  disk 91%, nginx down  ", "approval_needed": []}"#).expect("ok");
        assert_eq!(p.summary.as_deref(), Some("disk 91%, nginx down"));
        let inner = r#"{\"summary\": \"all quiet\", \"approval_needed\": [{\"command\": \"a\"}]}"#;
        let claude = format!(r#"{{"type":"result","result":"```json\n{inner}\n```"}}"#);
        assert_eq!(
            parse(&claude).expect("ok").summary.as_deref(),
            Some("all quiet")
        );
        let long = format!(
            r#"{{"summary": "{}", "approval_needed": []}}"#,
            "x".repeat(MAX_SUMMARY_CHARS + 10)
        );
        let kept = parse(&long).expect("ok").summary.expect("a summary");
        assert_eq!(kept.chars().count(), MAX_SUMMARY_CHARS);
        for none in [
            r#"{"summary": 7, "approval_needed": []}"#,
            r#"[{"command": "a"}]"#,
        ] {
            assert_eq!(parse(none).expect("ok").summary, None, "{none}");
        }
    }

    #[test]
    fn field_rules() {
        let p = parse(
            r#"[{"id": 7, "command": "a", "risk": "HIGH", "cmd_hash": "abc"},
                {"command": "b", "risk": "catastrophic"},
                {"id": "x"},
                {"command": ""}]"#,
        )
        .expect("ok");
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.items[0].display_id.as_deref(), Some("7"));
        assert_eq!(p.items[0].risk, Risk::High);
        assert_eq!(p.items[0].claimed_hash.as_deref(), Some("abc"));
        assert_eq!(p.items[1].risk, Risk::Medium);
        assert_eq!(p.invalid, 2);
        assert!(p.warnings.iter().any(|w| w.contains("proposal 2 skipped")));
        assert!(p.warnings.iter().any(|w| w.contains("unknown risk")));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse("no json here").err(),
            Some(ParseError::NoJson {
                first_line: "\"no json here\"".into()
            })
        );
        assert_eq!(parse(" \n\t\n").err(), Some(ParseError::Empty));
        assert_eq!(
            parse(r#"{"type":"result","subtype":"success","is_error":true,"result":"Credit balance is too low"}"#).err(),
            Some(ParseError::LlmError {
                message: "Credit balance is too low".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)
                .err(),
            Some(ParseError::LlmError {
                message: "Overloaded".into()
            })
        );
        // An "error" field the model wrote, in prose around the answer, is not the CLI's.
        let prose = "Saw this:\n```json\n{\"service\":\"nginx\",\"error\":\"connection refused\"}\n```\nAnswer: {\"approval_needed\":[{\"command\":\"systemctl restart nginx\"}]}";
        assert_eq!(parse(prose).map(|p| p.items.len()).ok(), Some(1));
        assert_eq!(
            parse(r#"{"approval_needed": [{"command": "a"}"#).err(),
            Some(ParseError::Truncated { offset: 0 })
        );
        assert_eq!(
            parse("Here:\n```json\n{\"approval_needed\": [{\"command\": \"a\"}").err(),
            Some(ParseError::Truncated { offset: 14 })
        );
        assert!(matches!(
            parse("a {stray brace and [1] nothing"),
            Err(ParseError::NoProposalArray { .. })
        ));
        assert!(matches!(
            parse(r#"{"summary": "all fine"}"#),
            Err(ParseError::NoProposalArray { .. })
        ));
        assert!(matches!(
            parse(r#"{"approval_needed": "docker stop x"}"#),
            Err(ParseError::NoProposalArray { .. })
        ));
        let strict = Limits {
            strict: true,
            ..Limits::default()
        };
        assert!(matches!(
            parse_text(r#"[{"command": "a"}, {"id": "b"}]"#, &strict),
            Err(ParseError::InvalidItem { index: 1, .. })
        ));
        let small = Limits {
            max_proposals: 1,
            max_input_bytes: 100,
            strict: false,
        };
        assert!(matches!(
            parse_text(r#"[{"command": "a"}, {"command": "b"}]"#, &small),
            Err(ParseError::TooManyProposals { count: 2, limit: 1 })
        ));
        assert!(matches!(
            parse_bytes(&[b' '; 101], &small),
            Err(ParseError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_bytes(b"[\xff]", &small),
            Err(ParseError::NotUtf8 { offset: 1 })
        ));
    }
}

/// Longest first line that is tried as a JSON Lines item; a longer one is not JSON Lines.
pub const MAX_JSONL_PROBE: usize = 256 * 1024;

/// Inputs up to this size are parsed whole (every shape: envelopes, fences, prose) before
/// the database is opened, so bad input leaves it untouched. Larger inputs (bulk loads
/// with a raised `--max-input-bytes`) stream into one transaction that rolls back on
/// error.
pub const IN_MEMORY: usize = 8 * 1024 * 1024;

/// What stdin turned out to be: small enough to parse whole, or a bulk load to stream.
pub enum Input<R> {
    Whole(Parsed),
    Stream(Streaming<R>),
}

/// A bulk input, ready to stream item by item.
pub struct Streaming<R> {
    reader: CountingReader<std::io::Chain<std::io::Cursor<Vec<u8>>, std::io::Take<R>>>,
    first_line: Vec<u8>,
    /// The input's first non-blank byte opens JSON.
    starts_json: bool,
    limits: Limits,
}

/// Reads the head of `reader` and decides how to parse it: whole when it fits
/// [`IN_MEMORY`] (or the limit is no larger), else as a stream.
pub fn read_input<R: Read>(mut reader: R, limits: &Limits) -> anyhow::Result<Input<R>> {
    let head_limit = limits.max_input_bytes.min(IN_MEMORY);
    let mut head = Vec::new();
    (&mut reader)
        .take(head_limit as u64 + 1)
        .read_to_end(&mut head)
        .map_err(|e| anyhow::anyhow!("reading stdin: {e}"))?;
    if head.len() <= head_limit || limits.max_input_bytes <= IN_MEMORY {
        return Ok(Input::Whole(parse_bytes(&head, limits)?));
    }
    // Only a short first line can be a JSON Lines item.
    let probe = &head[..head.len().min(MAX_JSONL_PROBE + 1)];
    let first_line = probe.split(|b| *b == b'\n').next().unwrap_or(&[]).to_vec();
    let starts_json = head
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    let reader = CountingReader {
        inner: std::io::Cursor::new(head).chain(reader.take(limits.max_input_bytes as u64 + 1)),
        count: 0,
    };
    Ok(Input::Stream(Streaming {
        reader,
        first_line,
        starts_json,
        limits: *limits,
    }))
}

impl<R: Read> Streaming<R> {
    /// Streams every item to `on_item`. Past the byte limit, whatever was parsed is
    /// refused: the input was cut there.
    pub fn run(
        mut self,
        on_item: &mut dyn FnMut(Item) -> anyhow::Result<()>,
    ) -> anyhow::Result<Streamed> {
        let streamed = stream(
            std::io::BufReader::with_capacity(64 * 1024, &mut self.reader),
            &self.first_line,
            &self.limits,
            on_item,
        );
        if self.reader.count > self.limits.max_input_bytes as u64 {
            return Err(ParseError::TooLarge {
                limit: self.limits.max_input_bytes,
            }
            .into());
        }
        let starts_json = self.starts_json;
        streamed.map_err(|e| match e.downcast_ref::<ParseError>() {
            // Whole-input parsing would have unwrapped an envelope: say why it was not.
            Some(ParseError::NoProposalArray { found }) => ParseError::OverInMemory {
                why: format!("the JSON is {found}, an envelope is not unwrapped when streaming"),
            }
            .into(),
            Some(ParseError::Malformed { .. } | ParseError::Truncated { .. }) if !starts_json => {
                ParseError::OverInMemory {
                    why: "it does not start with JSON: text before the JSON is not read when streaming"
                        .into(),
                }
                .into()
            }
            _ => e,
        })
    }
}

/// Counts the bytes read through it.
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// What a streamed parse saw.
#[derive(Debug, Default)]
pub struct Streamed {
    pub items: usize,
    pub invalid: usize,
    pub warnings: Vec<String>,
    /// The `summary` beside the proposal array, as [`Parsed::summary`].
    pub summary: Option<String>,
}

/// Streams proposals from plain JSON (an object whose proposal array sits under one of the
/// array keys, or a bare array) or from JSON Lines, handing each valid item to `on_item`
/// as soon as it is read, so a bulk load never holds more than one item. `first_line` is
/// the start of the input, used to tell JSON Lines apart. Errors from `on_item` stop the
/// stream and are returned as they are.
pub fn stream<R: std::io::BufRead>(
    mut reader: R,
    first_line: &[u8],
    limits: &Limits,
    on_item: &mut dyn FnMut(Item) -> anyhow::Result<()>,
) -> anyhow::Result<Streamed> {
    let mut sink = Sink {
        limits,
        out: Streamed::default(),
        index: 0,
        on_item,
        failure: None,
    };
    let line = String::from_utf8_lossy(first_line);
    let jsonl = first_line.len() <= MAX_JSONL_PROBE
        && matches!(serde_json::from_str::<Value>(line.trim()), Ok(Value::Object(ref o)) if is_proposal_map(o));
    if jsonl {
        let mut buf = String::new();
        loop {
            buf.clear();
            let n = reader
                .read_line(&mut buf)
                .map_err(|e| ParseError::Malformed {
                    offset: 0,
                    why: e.to_string(),
                })?;
            if n == 0 {
                break;
            }
            if buf.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(buf.trim()).map_err(|e| ParseError::Malformed {
                offset: 0,
                why: format!("JSON Lines item {}: {e}", sink.index),
            })?;
            sink.accept(v)?;
        }
        return Ok(sink.out);
    }
    let mut de = serde_json::Deserializer::from_reader(reader);
    let result = serde::Deserializer::deserialize_any(&mut de, TopVisitor { sink: &mut sink })
        .and_then(|found| de.end().map(|_| found));
    if let Some(failure) = sink.failure.take() {
        return Err(failure);
    }
    match result {
        Ok(true) => Ok(sink.out),
        Ok(false) => Err(ParseError::NoProposalArray {
            found: "an object without a proposal array".into(),
        }
        .into()),
        Err(e) if e.is_eof() => Err(ParseError::Truncated { offset: 0 }.into()),
        Err(e) => Err(ParseError::Malformed {
            offset: 0,
            why: e.to_string(),
        }
        .into()),
    }
}

struct Sink<'a> {
    limits: &'a Limits,
    out: Streamed,
    index: usize,
    on_item: &'a mut dyn FnMut(Item) -> anyhow::Result<()>,
    failure: Option<anyhow::Error>,
}

impl Sink<'_> {
    fn accept(&mut self, value: Value) -> anyhow::Result<()> {
        let index = self.index;
        self.index += 1;
        if self.index > self.limits.max_proposals {
            return Err(ParseError::TooManyProposals {
                count: self.index,
                limit: self.limits.max_proposals,
            }
            .into());
        }
        match item(index, value, &mut self.out.warnings) {
            Ok(item) => {
                self.out.items += 1;
                (self.on_item)(item)
            }
            Err(why) if self.limits.strict => Err(ParseError::InvalidItem { index, why }.into()),
            Err(why) => {
                self.out.invalid += 1;
                self.out
                    .warnings
                    .push(format!("proposal {index} skipped: {why}"));
                Ok(())
            }
        }
    }

    /// Inside serde, a failure must travel as a serde error; the real one waits here.
    fn accept_in_serde<E: serde::de::Error>(&mut self, value: Value) -> Result<(), E> {
        self.accept(value).map_err(|e| {
            let text = e.to_string();
            self.failure = Some(e);
            E::custom(text)
        })
    }
}

/// The top-level value: `true` when a proposal array was found and streamed.
struct TopVisitor<'s, 'a> {
    sink: &'s mut Sink<'a>,
}

impl<'de> serde::de::Visitor<'de> for TopVisitor<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a proposal array, or an array of proposals")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while let Some(v) = seq.next_element::<Value>()? {
            self.sink.accept_in_serde::<A::Error>(v)?;
        }
        Ok(true)
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<bool, M::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            if !found && ARRAY_KEYS.contains(&key.as_str()) {
                map.next_value_seed(ArraySeed { sink: self.sink })?;
                found = true;
            } else if key == "summary" {
                let value = map.next_value::<Value>()?;
                self.sink.out.summary = summary_of(Some(&value));
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

struct ArraySeed<'s, 'a> {
    sink: &'s mut Sink<'a>,
}

impl<'de> serde::de::DeserializeSeed<'de> for ArraySeed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ArraySeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of proposals")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Value>()? {
            self.sink.accept_in_serde::<A::Error>(v)?;
        }
        Ok(())
    }
}
