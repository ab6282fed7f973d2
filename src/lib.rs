//! opsgate: LLM ops-bot proposals -> one deduplicated, operator-approved action each.
//!
//! The flow reads one way, each layer importing only those below it (ARCHITECTURE.md):
//! `main -> cmd -> {decisions, run} -> notify -> {store, parse, canon} -> {model,
//! lifecycle} -> {error, time, text, process, policy, config}`. The pipeline, one module
//! per stage: [`parse`] (LLM text -> items), [`canon`] (command -> `cmd_hash` + logical
//! keys), [`store`] (SQLite lifecycle, the only SQL), [`notify`] (cards; the Telegram
//! adapter holds the only async code), [`decisions`] (button presses -> lifecycle
//! changes), [`run`] (executes what was approved).

pub mod canon;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod decisions;
pub mod error;
pub mod lifecycle;
pub mod mask;
pub mod model;
pub mod notify;
pub mod parse;
pub mod policy;
pub mod process;
pub mod redact;
pub mod run;
pub mod store;
pub mod text;
pub mod time;
