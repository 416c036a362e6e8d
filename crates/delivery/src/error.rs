//! The one error type of outbound HTTP.

use std::net::IpAddr;
use std::time::Duration;

/// Why an outbound request produced no response.
///
/// A response with any status code — 4xx and 5xx included — is not an error here: the caller
/// decides what a status means. [`OutboundError::is_retryable`] says whether the same request may
/// succeed later.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The URL is unparsable, not `http`/`https`, or has no host (also a redirect's `Location`).
    #[error("invalid URL {url:?}: {reason}; give an absolute http:// or https:// URL with a host")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request header's name or value cannot be sent in HTTP/1.1.
    #[error(
        "invalid header {name:?}: {reason}; header names are tokens (letters, digits, `-`) and values hold no line breaks"
    )]
    InvalidHeader {
        /// The header name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The SSRF guard refused the address the host is (or resolves to): it is not public.
    #[error(
        "refused to connect to {host} at {address}: the address is in {range}, not a public network; \
         set TRIGGERD_ALLOW_PRIVATE_NETWORKS=true to allow private networks"
    )]
    Refused {
        /// The host of the URL (or of the redirect) as written.
        host: String,
        /// The refused address.
        address: IpAddr,
        /// The range it is in, e.g. `"loopback 127.0.0.0/8"` (see [`crate::non_public_range`]).
        range: &'static str,
    },
    /// The host name did not resolve.
    #[error("could not resolve {host}: {reason}; check the host name and this machine's DNS")]
    Dns {
        /// The host name.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// No complete response (status, headers and body) within the request's timeout.
    #[error(
        "no complete response within {after:?}; the receiver is slow or unreachable, or the timeout is too short"
    )]
    Timeout {
        /// The request's timeout.
        after: Duration,
    },
    /// The connection could not be made or broke (refused, reset, TLS handshake failed).
    #[error(
        "could not connect: {reason}; check that the receiver is up and the URL's port and scheme are right"
    )]
    Connect {
        /// The cause, from the network stack.
        reason: String,
    },
    /// The receiver redirected more often than the client follows.
    #[error("more than {max} redirects; point the URL at the final location")]
    TooManyRedirects {
        /// The configured maximum ([`crate::OutboundConfig::max_redirects`]).
        max: usize,
    },
    /// Anything else: a malformed response, a broken body, a client that could not be built.
    #[error("outbound request failed: {reason}")]
    Other {
        /// The cause.
        reason: String,
    },
}

impl OutboundError {
    /// Whether the same request may succeed later, so that a delivery should be retried.
    ///
    /// Network trouble (timeouts, connection and DNS failures, broken responses) and redirect
    /// loops are the receiver's present state, as a 5xx is. An invalid URL or header, or an address
    /// the guard refuses, fails the same way every time until the configuration changes.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. }
            | Self::Connect { .. }
            | Self::Dns { .. }
            | Self::TooManyRedirects { .. }
            | Self::Other { .. } => true,
            Self::InvalidUrl { .. } | Self::InvalidHeader { .. } | Self::Refused { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_message_names_the_range_and_the_setting() {
        let err = OutboundError::Refused {
            host: "metadata.internal".into(),
            address: "169.254.169.254".parse().unwrap(),
            range: "link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)",
        };
        let message = err.to_string();
        assert!(message.contains("metadata.internal"), "{message}");
        assert!(message.contains("169.254.169.254"), "{message}");
        assert!(message.contains("link-local 169.254.0.0/16"), "{message}");
        assert!(
            message.contains("set TRIGGERD_ALLOW_PRIVATE_NETWORKS=true to allow private networks"),
            "{message}"
        );
    }

    #[test]
    fn only_conditions_that_can_change_are_retryable() {
        let retryable = [
            OutboundError::Timeout {
                after: Duration::from_secs(15),
            },
            OutboundError::Connect {
                reason: "refused".into(),
            },
            OutboundError::Dns {
                host: "x".into(),
                reason: "nxdomain".into(),
            },
            OutboundError::TooManyRedirects { max: 5 },
            OutboundError::Other {
                reason: "bad response".into(),
            },
        ];
        for err in retryable {
            assert!(err.is_retryable(), "{err:?}");
        }
        let permanent = [
            OutboundError::InvalidUrl {
                url: "ftp://x".into(),
                reason: "scheme".into(),
            },
            OutboundError::InvalidHeader {
                name: "a b".into(),
                reason: "space".into(),
            },
            OutboundError::Refused {
                host: "localhost".into(),
                address: "127.0.0.1".parse().unwrap(),
                range: "loopback 127.0.0.0/8",
            },
        ];
        for err in permanent {
            assert!(!err.is_retryable(), "{err:?}");
        }
    }
}
