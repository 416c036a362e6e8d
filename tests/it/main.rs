//! End-to-end tests (one binary, modules per area). Each test starts its own `triggerd serve`
//! (see the `triggerd_tests` harness) and speaks HTTP to it. Each test body runs on SQLite
//! (`<area>::sqlite::<test>`) and on PostgreSQL (`<area>::postgres::<test>`); `cluster` runs
//! several servers on one PostgreSQL database.

mod activity;
mod api;
mod api_keys;
mod apply;
mod cli;
mod cluster;
mod completion;
mod concurrency;
mod connections;
mod crash;
mod custom_responses;
mod dashboard;
mod examples;
mod filters;
mod hidden_tokens;
mod hooks;
mod management;
mod memory;
mod messages;
mod observability;
mod openapi;
mod payloads;
mod rate_limit;
mod requests;
mod schedules;
mod senders;
mod stalls;
mod steps;
mod sync;
mod templates;
mod triggers;
mod waits;
mod webhooks;
