//! # triggerd-scheduler
//!
//! Will own execution: firing cron slots exactly once, claiming pending runs, moving them through
//! their steps (`http`, `wait_for_webhook`, `approval`, `command`), enforcing concurrency and
//! duration limits, and taking over work whose lease expired. Background loops wake on a
//! notification or at the next due time, never by polling every row on a fixed interval.
//!
//! Nothing is implemented here yet.
