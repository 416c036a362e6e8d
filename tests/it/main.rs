//! End-to-end tests (one binary, modules per area). Each test starts its own `triggerd serve`
//! (see the `triggerd_tests` harness) and speaks HTTP to it.

mod activity;
mod api;
mod cli;
mod concurrency;
mod crash;
mod hidden_tokens;
mod management;
mod observability;
mod rate_limit;
mod triggers;
mod webhooks;
