//! The Slack channel. Until its Web API client and formatter arrive, only the Socket Mode
//! session ([`updates`]).

pub mod updates;
