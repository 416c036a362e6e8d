//! # triggerd-ingress
//!
//! Will own the HTTP surface of triggerd: the webhook endpoints (`/api/webhooks/{token}`), the
//! management API under `/api/v1`, the resume and approval endpoints, the OpenAPI document,
//! `/healthz` and `/metrics`. It stores runs and wakes the workers; it never executes runs itself.
//!
//! Nothing is implemented here yet.
