//! The integration tests: one binary (one link of teloxide, tokio, postgres, rusqlite
//! and axum instead of one per file), one module per area. Run one area with
//! `cargo test --test it AREA::`, one test with `cargo test --test it NAME`.

#[path = "../common/mod.rs"]
mod common;

mod admin_day;
mod canon_props;
mod card_contract;
mod card_props;
mod cli;
mod conformance;
mod context;
mod deploy;
mod examples;
mod fleet_cost;
mod grammars;
mod hostile;
mod lifecycle;
mod operator_safety;
mod outcomes;
mod parse_props;
mod pg_doctor;
mod pg_faults;
mod pg_migrate;
mod pg_pooler;
mod pg_roles;
mod pg_stress;
mod query_plans;
mod schema_parity;
mod shell_differential;
mod slack;
mod slack_socket;
mod soak;
mod stats;
mod status;
mod telegram;
mod trust_canon;
mod trust_card;
mod trust_keys;
mod trust_votes;
mod works_as_pasted;
