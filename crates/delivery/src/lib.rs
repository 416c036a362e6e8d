//! # triggerd-delivery
//!
//! Owns outbound HTTP: the SSRF-guarded [`OutboundClient`] that event-hook deliveries and the
//! scheduler's `http` step send through. Every request is bounded — a timeout over the whole
//! exchange, a cap on the response body kept, a limit on redirects — and, unless
//! [`OutboundConfig::allow_private_networks`] is set (`TRIGGERD_ALLOW_PRIVATE_NETWORKS=true`),
//! refused when the address it would connect to is loopback, private, link-local (cloud
//! metadata), CGNAT or otherwise non-public ([`non_public_range`], SPEC 7).
//!
//! This crate must never open a connection the guard has not judged: no proxy (a proxy resolves
//! names where the guard cannot see them), no second resolver, no `reqwest::Client` built
//! elsewhere for outbound calls to user-given URLs. It judges addresses after DNS resolution, on
//! the addresses actually connected to, and before following each redirect. It does no storage
//! and never retries on its own: [`OutboundError::is_retryable`] tells the caller whether to.
//!
//! ```no_run
//! use std::time::Duration;
//! use triggerd_delivery::{OutboundClient, OutboundConfig, OutboundError, OutboundRequest};
//!
//! # async fn example() -> Result<(), OutboundError> {
//! let client = OutboundClient::new(OutboundConfig::default())?;
//! let response = client
//!     .send(OutboundRequest {
//!         method: http::Method::POST,
//!         url: "https://example.com/hooks/triggerd".to_owned(),
//!         headers: vec![("content-type".to_owned(), "application/json".to_owned())],
//!         body: Some(bytes::Bytes::from_static(br#"{"type":"run.completed"}"#)),
//!         timeout: Duration::from_secs(15),
//!         max_response_bytes: 4096,
//!     })
//!     .await?;
//! println!("{} ({} bytes)", response.status, response.body.len());
//! # Ok(())
//! # }
//! ```

mod client;
mod error;
mod guard;
mod ranges;
#[cfg(test)]
mod test_server;
pub mod worker;

pub use client::{OutboundClient, OutboundConfig, OutboundRequest, OutboundResponse};
pub use error::OutboundError;
pub use ranges::non_public_range;
pub use worker::DeliveryWorker;
