//! # triggerd-delivery
//!
//! Will own outbound HTTP: event-hook deliveries (Standard Webhooks signing, retries on the SPEC 7
//! schedule, an attempt log) and the SSRF-guarded client that refuses non-public addresses, which
//! the `http` step of the scheduler also uses.
//!
//! Nothing is implemented here yet.
