//! The SSRF guard: where addresses are judged on their way to a connection.
//!
//! Three doors lead to a socket, and each is guarded:
//! - **Host names** go through [`GuardedResolver`], the client's only resolver. It refuses the
//!   whole name when any address it resolves to is non-public (a name that points into a private
//!   network is suspect, so refuse rather than filter), and the addresses it hands back are the
//!   ones connected to: no second lookup between the check and the connect.
//! - **IP literals** (`http://127.0.0.1/`, and the forms the URL parser normalises to them, such as
//!   `http://2130706433/` and `http://0x7f.1/`) never reach a resolver: the connector parses them
//!   itself. [`Guard::check_url`] judges them before the request is sent.
//! - **Redirects** are followed by the client; [`redirect_policy`] runs [`Guard::check_url`] on each
//!   hop before following it (their host names again meet the resolver).
//!
//! A refusal inside reqwest travels as a [`GuardError`] in the error's source chain;
//! the client finds it there and turns it into an [`OutboundError`].

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;

use crate::error::OutboundError;
use crate::ranges::non_public_range;

/// What may be connected to.
#[derive(Debug)]
pub(crate) struct Guard {
    allow_private_networks: bool,
    /// One address treated as public, so tests can run the guarded path against a server on
    /// loopback. Only `#[cfg(test)]` constructors set it; it is `None` in every built client.
    test_public: Option<IpAddr>,
}

impl Guard {
    pub(crate) fn new(allow_private_networks: bool, test_public: Option<IpAddr>) -> Self {
        Self {
            allow_private_networks,
            test_public,
        }
    }

    /// The non-public range `ip` is in, if the guard refuses it.
    fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow_private_networks || self.test_public == Some(ip) {
            return None;
        }
        non_public_range(ip)
    }

    /// Checks what can be checked before connecting: the scheme, the presence of a host, and a
    /// host that is an IP literal. Host names are left to the resolver.
    pub(crate) fn check_url(&self, url: &Url) -> Result<(), GuardError> {
        let invalid = |reason: String| GuardError::InvalidUrl {
            url: url.as_str().to_owned(),
            reason,
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "the scheme `{}` is not supported, only http and https",
                url.scheme()
            )));
        }
        let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
            return Err(invalid("there is no host".to_owned()));
        };
        // The URL parser has already normalised every IPv4 spelling (`2130706433`, `0x7f.1`,
        // `127.1`) to dotted decimal and put IPv6 in brackets, exactly the forms the connector
        // parses as literals; anything else is a name, for the resolver.
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let Ok(address) = literal.parse::<IpAddr>() else {
            return Ok(());
        };
        match self.refuses(address) {
            None => Ok(()),
            Some(range) => Err(GuardError::Refused {
                host: host.to_owned(),
                address,
                range,
            }),
        }
    }
}

/// A refusal or failure raised inside reqwest (resolver, redirect policy), carried out through
/// the error's source chain.
#[derive(Debug, Clone)]
pub(crate) enum GuardError {
    Refused {
        host: String,
        address: IpAddr,
        range: &'static str,
    },
    Lookup {
        host: String,
        reason: String,
    },
    InvalidUrl {
        url: String,
        reason: String,
    },
    TooManyRedirects {
        max: usize,
    },
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The same words the caller will see.
        fmt::Display::fmt(&OutboundError::from(self.clone()), f)
    }
}

impl StdError for GuardError {}

impl From<GuardError> for OutboundError {
    fn from(err: GuardError) -> Self {
        match err {
            GuardError::Refused {
                host,
                address,
                range,
            } => Self::Refused {
                host,
                address,
                range,
            },
            GuardError::Lookup { host, reason } => Self::Dns { host, reason },
            GuardError::InvalidUrl { url, reason } => Self::InvalidUrl { url, reason },
            GuardError::TooManyRedirects { max } => Self::TooManyRedirects { max },
        }
    }
}

/// The client's resolver: `getaddrinfo` through tokio, then every address judged.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    guard: Arc<Guard>,
}

impl GuardedResolver {
    pub(crate) fn new(guard: Arc<Guard>) -> Self {
        Self { guard }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.guard);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let lookup = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map(Iterator::collect::<Vec<SocketAddr>>);
            let addrs = match lookup {
                Ok(addrs) => addrs,
                Err(err) => {
                    return Err(GuardError::Lookup {
                        host,
                        reason: err.to_string(),
                    }
                    .into());
                }
            };
            if addrs.is_empty() {
                return Err(GuardError::Lookup {
                    host,
                    reason: "the name has no addresses".to_owned(),
                }
                .into());
            }
            // Refuse the name when any of its addresses is non-public: the connector may try
            // them in any order, and a public name does not also point into a private network.
            if let Some((address, range)) = addrs
                .iter()
                .find_map(|addr| guard.refuses(addr.ip()).map(|range| (addr.ip(), range)))
            {
                tracing::debug!(%host, %address, range, "outbound: refused a resolved address");
                return Err(GuardError::Refused {
                    host,
                    address,
                    range,
                }
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Follows at most `max` redirects, each to an http(s) URL the guard accepts.
pub(crate) fn redirect_policy(guard: Arc<Guard>, max: usize) -> Policy {
    Policy::custom(move |attempt| {
        // `previous` holds every URL requested so far, the original one included.
        if attempt.previous().len() > max {
            return attempt.error(GuardError::TooManyRedirects { max });
        }
        match guard.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(err) => {
                tracing::debug!(error = %err, "outbound: refused a redirect");
                attempt.error(err)
            }
        }
    })
}

/// The guard's error in `err`'s source chain, if a refusal or failure of ours caused it.
pub(crate) fn find_guard_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a GuardError> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<GuardError>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}
