//! opsgate: LLM ops-bot proposals -> one deduplicated, operator-approved action each.
//!
//! The pipeline, one module per stage: [`parse`] (LLM text -> items), [`canon`]
//! (command -> `cmd_hash` + logical keys), [`store`] (SQLite lifecycle, the only SQL),
//! [`notify`] (cards; the Telegram adapter holds the only async code), [`decisions`]
//! (button presses -> lifecycle changes), [`run`] (executes what was approved). [`app`]
//! wires them to the command line, [`config`] reads every setting, [`error`] names every
//! error kind and its exit code.

pub mod app;
pub mod canon;
pub mod cli;
pub mod config;
pub mod decisions;
pub mod doctor;
pub mod error;
pub mod notify;
pub mod parse;
pub mod run;
pub mod store;
pub mod time;
