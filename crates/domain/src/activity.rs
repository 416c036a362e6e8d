//! The outcomes of inbound webhook requests, as the activity log records them (docs/webhooks.md).
//!
//! ```
//! use triggerd_domain::activity::Outcome;
//! assert_eq!(Outcome::RateLimited.as_str(), "rate_limited");
//! assert_eq!("bad_signature".parse::<Outcome>(), Ok(Outcome::BadSignature));
//! ```

use std::fmt;
use std::str::FromStr;

/// What became of one inbound webhook request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A run was started.
    Accepted,
    /// The method is not in the trigger's `methods`.
    MethodNotAllowed,
    /// The body is over `max_body_bytes`.
    TooLarge,
    /// The trigger's rate limit refused it.
    RateLimited,
    /// The signature was missing, wrong or out of its time tolerance.
    BadSignature,
    /// The API key was missing or wrong.
    Unauthorized,
    /// The body did not parse.
    Malformed,
    /// The mapped input failed validation.
    InvalidInput,
    /// Anything else (a disabled trigger, an unreadable body).
    Failed,
    /// The trigger's filter did not match (docs/webhooks.md).
    Filtered,
    /// A de-duplication key seen before (docs/webhooks.md).
    Duplicate,
}

impl Outcome {
    /// Every outcome, in the documented order (docs/webhooks.md).
    pub const ALL: [Outcome; 11] = [
        Outcome::Accepted,
        Outcome::MethodNotAllowed,
        Outcome::TooLarge,
        Outcome::RateLimited,
        Outcome::BadSignature,
        Outcome::Unauthorized,
        Outcome::Malformed,
        Outcome::InvalidInput,
        Outcome::Failed,
        Outcome::Filtered,
        Outcome::Duplicate,
    ];

    /// The name stored in the activity log and shown by the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::TooLarge => "too_large",
            Outcome::RateLimited => "rate_limited",
            Outcome::BadSignature => "bad_signature",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Malformed => "malformed",
            Outcome::InvalidInput => "invalid_input",
            Outcome::Failed => "failed",
            Outcome::Filtered => "filtered",
            Outcome::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An outcome name that is not one of [`Outcome::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome {found:?}: expected one of {}", Outcome::ALL.map(Outcome::as_str).join(", "))]
pub struct UnknownOutcome {
    /// The name given.
    pub found: String,
}

impl FromStr for Outcome {
    type Err = UnknownOutcome;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownOutcome {
                found: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
        }
        let e = "ok".parse::<Outcome>().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unknown outcome \"ok\": expected one of accepted, ")
        );
    }
}
