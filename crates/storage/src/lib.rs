//! # triggerd-storage
//!
//! Will own all persistence of triggerd: the diesel schema over SQLite and PostgreSQL, the embedded
//! migrations of `migrations/sqlite` and `migrations/postgres`, the one `Store` API the other crates
//! call, transactions, run and delivery claims, and the group-commit writer of the webhook hot path.
//!
//! No SQL is written outside this crate. Nothing is implemented here yet: the single-node SQLite
//! issue brings the first `Store`.
