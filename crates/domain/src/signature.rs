//! Webhook signature verification and signing.
//!
//! The ingress calls [`SignatureScheme::verify`] on the webhook hot path with the trigger's
//! secret, the request headers (through [`HeaderLookup`], so any header container works), the
//! raw body and the current time. Five schemes are supported, as docs/webhooks.md describes them:
//! `hmac-sha256` (the default), `github`, `stripe`, `slack` and `standard-webhooks`. Signed
//! messages are fed to HMAC-SHA256 piece by piece, so verification never copies the body, and
//! expected and presented signatures are compared in constant time. Schemes with a timestamp
//! refuse one more than [`TIMESTAMP_TOLERANCE_SECS`] away from the server's clock in either
//! direction, which bounds replays.
//!
//! The signing helpers ([`sign_hmac_sha256_hex`], [`sign_standard_webhooks`] and the
//! `*_signature_header` functions) produce what a sender would send; triggerd signs its own
//! outbound event hooks with [`sign_standard_webhooks`].
//!
//! ```
//! use triggerd_domain::signature::{SignatureScheme, sign_hmac_sha256_hex};
//!
//! let body = br#"{"order": 42}"#;
//! let signature = sign_hmac_sha256_hex(b"s3cret", body);
//! let headers = [("X-Webhook-Signature", signature.as_str())];
//! assert!(SignatureScheme::HmacSha256.verify("s3cret", &headers, body, 0).is_ok());
//! assert!(SignatureScheme::HmacSha256.verify("other", &headers, body, 0).is_err());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::ids::{constant_time_eq, hex_decode_into, hex_encode};

/// Largest distance, in seconds, between a signed timestamp and the server's clock, in either
/// direction, for the `stripe`, `slack` and `standard-webhooks` schemes.
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 300;

/// Length of an HMAC-SHA256 tag in bytes.
const TAG_LEN: usize = 32;

/// Standard base64 that accepts input with or without padding (secrets and signatures are
/// copied around by people and tools that sometimes drop it).
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const H_WEBHOOK_SIGNATURE: &str = "x-webhook-signature";
const H_GITHUB: &str = "x-hub-signature-256";
const H_STRIPE: &str = "stripe-signature";
const H_SLACK_SIGNATURE: &str = "x-slack-signature";
const H_SLACK_TIMESTAMP: &str = "x-slack-request-timestamp";
const H_SW_ID: &str = "webhook-id";
const H_SW_TIMESTAMP: &str = "webhook-timestamp";
const H_SW_SIGNATURE: &str = "webhook-signature";

/// Errors of signature verification and signing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header the scheme needs is absent or empty.
    #[error(
        "the request has no `{header}` header; the sender must send it for this signature scheme"
    )]
    Missing {
        /// The missing header, lower-case.
        header: &'static str,
    },
    /// A header is present but not in the scheme's format.
    #[error("the `{header}` header is malformed: expected {expected}")]
    Malformed {
        /// The malformed header, lower-case.
        header: &'static str,
        /// What the header should look like.
        expected: &'static str,
    },
    /// The signature is well-formed but does not match the body and secret.
    #[error(
        "the signature does not match: the sender must sign the raw request body with the \
         secret configured for this trigger"
    )]
    Mismatch,
    /// The signed timestamp is too far in the past or the future.
    #[error(
        "the timestamp {timestamp} in `{header}` is more than 300 seconds away from the \
         server's time {now}; check the sender's clock (old requests are refused as replays)"
    )]
    TimestampOutOfTolerance {
        /// The header that carried the timestamp.
        header: &'static str,
        /// The signed timestamp, in seconds since the Unix epoch.
        timestamp: i64,
        /// The server's time, in seconds since the Unix epoch.
        now: i64,
    },
    /// The configured secret cannot be used as a key.
    #[error("the signing secret is unusable: {reason}")]
    InvalidSecret {
        /// Why, and what was expected.
        reason: &'static str,
    },
    /// A scheme name that is not one of the five supported.
    #[error(
        "unknown signature scheme {found:?}: expected one of hmac-sha256, github, stripe, \
         slack, standard-webhooks"
    )]
    UnknownScheme {
        /// The name given.
        found: String,
    },
}

/// Read access to request headers by lower-case name.
///
/// Implemented for [`http::HeaderMap`], for slices and arrays of `(name, value)` string pairs,
/// and for `BTreeMap<String, String>`; the pair and map implementations compare names without
/// regard to ASCII case. When a header occurs several times, the first is returned.
pub trait HeaderLookup {
    /// The value of the header `name` (given in lower case), if present.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl HeaderLookup for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(http::HeaderValue::as_bytes)
    }
}

impl<'a> HeaderLookup for [(&'a str, &'a str)] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

impl<'a, const N: usize> HeaderLookup for [(&'a str, &'a str); N] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.as_slice().header(name)
    }
}

impl HeaderLookup for BTreeMap<String, String> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name)
            .or_else(|| {
                self.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
            .map(String::as_bytes)
    }
}

/// How a webhook sender signs its requests (`config.signature.scheme`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignatureScheme {
    /// `X-Webhook-Signature`: hex HMAC-SHA256 of the raw body, optionally prefixed `sha256=`.
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body.
    #[serde(rename = "github")]
    Github,
    /// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>...]` over `"<ts>.<body>"`.
    #[serde(rename = "stripe")]
    Stripe,
    /// Slack: `X-Slack-Signature: v0=<hex>` over `"v0:<X-Slack-Request-Timestamp>:<body>"`.
    #[serde(rename = "slack")]
    Slack,
    /// Standard Webhooks: `webhook-signature: v1,<base64>` over `"<webhook-id>.<webhook-timestamp>.<body>"`.
    #[serde(rename = "standard-webhooks")]
    StandardWebhooks,
}

impl SignatureScheme {
    /// Every scheme, in declaration order.
    pub const ALL: [SignatureScheme; 5] = [
        SignatureScheme::HmacSha256,
        SignatureScheme::Github,
        SignatureScheme::Stripe,
        SignatureScheme::Slack,
        SignatureScheme::StandardWebhooks,
    ];

    /// The scheme's name as used in configuration.
    ///
    /// ```
    /// use triggerd_domain::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::StandardWebhooks.as_str(), "standard-webhooks");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::HmacSha256 => "hmac-sha256",
            SignatureScheme::Github => "github",
            SignatureScheme::Stripe => "stripe",
            SignatureScheme::Slack => "slack",
            SignatureScheme::StandardWebhooks => "standard-webhooks",
        }
    }

    /// The headers, lower-case, that carry the signature itself, to be redacted from stored
    /// requests. Timestamp and id headers are not secret and are not listed.
    ///
    /// ```
    /// use triggerd_domain::signature::SignatureScheme;
    /// assert_eq!(SignatureScheme::Github.header_names(), ["x-hub-signature-256"]);
    /// ```
    pub const fn header_names(self) -> &'static [&'static str] {
        match self {
            SignatureScheme::HmacSha256 => &[H_WEBHOOK_SIGNATURE],
            SignatureScheme::Github => &[H_GITHUB],
            SignatureScheme::Stripe => &[H_STRIPE],
            SignatureScheme::Slack => &[H_SLACK_SIGNATURE],
            SignatureScheme::StandardWebhooks => &[H_SW_SIGNATURE],
        }
    }

    /// Checks that the request (`headers` and raw `body`) was signed with `secret` under this
    /// scheme, at a time within [`TIMESTAMP_TOLERANCE_SECS`] of `now_unix_secs` for the schemes
    /// that sign a timestamp.
    ///
    /// The key is the secret's bytes as given, except for `standard-webhooks`, whose key is the
    /// base64 decoding of the part after `whsec_` (or of the whole secret without that prefix).
    ///
    /// # Errors
    /// [`SignatureError::Missing`] or [`SignatureError::Malformed`] for an absent or malformed
    /// header (an undecodable signature counts as malformed), [`SignatureError::Mismatch`] when
    /// no presented signature matches, [`SignatureError::TimestampOutOfTolerance`] for a stale
    /// or future timestamp (checked before the signature), and
    /// [`SignatureError::InvalidSecret`] for an empty secret or a `standard-webhooks` secret
    /// that is not base64.
    ///
    /// ```
    /// use triggerd_domain::signature::{SignatureScheme, SignatureError, slack_signature_header};
    ///
    /// let body = b"token=x&team_id=T1";
    /// let sig = slack_signature_header("8f742231b10e8888abcd99yyyzzz85a5", 1_531_420_618, body);
    /// let headers = [
    ///     ("x-slack-signature", sig.as_str()),
    ///     ("x-slack-request-timestamp", "1531420618"),
    /// ];
    /// let scheme = SignatureScheme::Slack;
    /// assert!(scheme.verify("8f742231b10e8888abcd99yyyzzz85a5", &headers, body, 1_531_420_700).is_ok());
    /// assert!(matches!(
    ///     scheme.verify("8f742231b10e8888abcd99yyyzzz85a5", &headers, body, 1_531_430_000),
    ///     Err(SignatureError::TimestampOutOfTolerance { .. })
    /// ));
    /// ```
    pub fn verify<H: HeaderLookup + ?Sized>(
        self,
        secret: &str,
        headers: &H,
        body: &[u8],
        now_unix_secs: i64,
    ) -> Result<(), SignatureError> {
        match self {
            SignatureScheme::HmacSha256 => verify_hmac_sha256(secret, headers, body),
            SignatureScheme::Github => verify_github(secret, headers, body),
            SignatureScheme::Stripe => verify_stripe(secret, headers, body, now_unix_secs),
            SignatureScheme::Slack => verify_slack(secret, headers, body, now_unix_secs),
            SignatureScheme::StandardWebhooks => {
                verify_standard_webhooks(secret, headers, body, now_unix_secs)
            }
        }
    }

    /// Checks that `secret` can key this scheme (non-empty; `whsec_` + base64 for
    /// `standard-webhooks`), so a bad secret is refused when a trigger is configured rather than
    /// on every request.
    pub fn check_secret(self, secret: &str) -> Result<(), SignatureError> {
        match self {
            SignatureScheme::StandardWebhooks => standard_webhooks_key(secret).map(drop),
            _ => raw_key(secret).map(drop),
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignatureScheme {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SignatureScheme::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == s)
            .ok_or_else(|| SignatureError::UnknownScheme {
                found: s.to_owned(),
            })
    }
}

/// The header's value, trimmed; absent, empty or non-UTF-8 values are errors.
fn header_value<'h, H: HeaderLookup + ?Sized>(
    headers: &'h H,
    name: &'static str,
    expected: &'static str,
) -> Result<&'h str, SignatureError> {
    let raw = headers
        .header(name)
        .ok_or(SignatureError::Missing { header: name })?;
    let value = std::str::from_utf8(raw)
        .map_err(|_| SignatureError::Malformed {
            header: name,
            expected,
        })?
        .trim();
    if value.is_empty() {
        return Err(SignatureError::Missing { header: name });
    }
    Ok(value)
}

/// An HMAC-SHA256 key from the secret's bytes as given; an empty secret is refused.
fn raw_key(secret: &str) -> Result<hmac::Key, SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::InvalidSecret {
            reason: "it is empty; configure a non-empty secret",
        });
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
}

/// The Standard Webhooks key: the base64 decoding of the secret after `whsec_`.
fn standard_webhooks_key(secret: &str) -> Result<hmac::Key, SignatureError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = BASE64_LENIENT
        .decode(encoded)
        .map_err(|_| SignatureError::InvalidSecret {
            reason: "a standard-webhooks secret must be `whsec_` followed by standard base64",
        })?;
    if key.is_empty() {
        return Err(SignatureError::InvalidSecret {
            reason: "a standard-webhooks secret must hold at least one byte after `whsec_`",
        });
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &key))
}

/// HMAC-SHA256 of the concatenation of `parts`, without concatenating them.
fn tag(key: &hmac::Key, parts: &[&[u8]]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    for part in parts {
        ctx.update(part);
    }
    ctx.sign()
}

/// Parses a signed timestamp and refuses one outside the tolerance.
fn check_timestamp(
    header: &'static str,
    value: &str,
    now: i64,
    expected: &'static str,
) -> Result<(), SignatureError> {
    let timestamp = parse_timestamp(value).ok_or(SignatureError::Malformed { header, expected })?;
    if timestamp.abs_diff(now) > TIMESTAMP_TOLERANCE_SECS {
        return Err(SignatureError::TimestampOutOfTolerance {
            header,
            timestamp,
            now,
        });
    }
    Ok(())
}

/// Decimal seconds, digits only.
fn parse_timestamp(value: &str) -> Option<i64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Decodes a 64-digit hex signature.
fn decode_hex_tag(hex: &str) -> Option<[u8; TAG_LEN]> {
    let mut out = [0u8; TAG_LEN];
    hex_decode_into(hex.as_bytes(), &mut out).then_some(out)
}

/// Checks one hex signature against the tag of `parts`.
fn verify_hex(
    key: &hmac::Key,
    parts: &[&[u8]],
    hex: &str,
    header: &'static str,
    expected: &'static str,
) -> Result<(), SignatureError> {
    let presented = decode_hex_tag(hex).ok_or(SignatureError::Malformed { header, expected })?;
    if constant_time_eq(tag(key, parts).as_ref(), &presented) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn verify_hmac_sha256<H: HeaderLookup + ?Sized>(
    secret: &str,
    headers: &H,
    body: &[u8],
) -> Result<(), SignatureError> {
    const EXPECTED: &str =
        "64 hex digits of HMAC-SHA256(secret, body), optionally prefixed `sha256=`";
    let key = raw_key(secret)?;
    let value = header_value(headers, H_WEBHOOK_SIGNATURE, EXPECTED)?;
    let hex = value.strip_prefix("sha256=").unwrap_or(value);
    verify_hex(&key, &[body], hex, H_WEBHOOK_SIGNATURE, EXPECTED)
}

fn verify_github<H: HeaderLookup + ?Sized>(
    secret: &str,
    headers: &H,
    body: &[u8],
) -> Result<(), SignatureError> {
    const EXPECTED: &str = "`sha256=` followed by 64 hex digits";
    let key = raw_key(secret)?;
    let value = header_value(headers, H_GITHUB, EXPECTED)?;
    let hex = value
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed {
            header: H_GITHUB,
            expected: EXPECTED,
        })?;
    verify_hex(&key, &[body], hex, H_GITHUB, EXPECTED)
}

fn verify_stripe<H: HeaderLookup + ?Sized>(
    secret: &str,
    headers: &H,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    const EXPECTED: &str = "`t=<unix seconds>,v1=<64 hex digits>` (more `v1=` entries allowed)";
    let malformed = SignatureError::Malformed {
        header: H_STRIPE,
        expected: EXPECTED,
    };
    let key = raw_key(secret)?;
    let value = header_value(headers, H_STRIPE, EXPECTED)?;
    let entries = || {
        value
            .split(',')
            .filter_map(|entry| entry.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
    };
    let ts = entries()
        .find(|(k, _)| *k == "t")
        .map(|(_, v)| v)
        .ok_or_else(|| malformed.clone())?;
    check_timestamp(H_STRIPE, ts, now, EXPECTED)?;

    let expected_tag = tag(&key, &[ts.as_bytes(), b".", body]);
    let mut well_formed = 0usize;
    let mut matched = false;
    for (_, hex) in entries().filter(|(k, _)| *k == "v1") {
        if let Some(presented) = decode_hex_tag(hex) {
            well_formed += 1;
            // No early exit: every candidate is compared, so timing says nothing about which.
            matched |= constant_time_eq(expected_tag.as_ref(), &presented);
        }
    }
    match (matched, well_formed) {
        (true, _) => Ok(()),
        (false, 0) => Err(malformed),
        (false, _) => Err(SignatureError::Mismatch),
    }
}

fn verify_slack<H: HeaderLookup + ?Sized>(
    secret: &str,
    headers: &H,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    const EXPECTED_SIG: &str = "`v0=` followed by 64 hex digits";
    const EXPECTED_TS: &str = "the request time in Unix seconds";
    let key = raw_key(secret)?;
    let signature = header_value(headers, H_SLACK_SIGNATURE, EXPECTED_SIG)?;
    let ts = header_value(headers, H_SLACK_TIMESTAMP, EXPECTED_TS)?;
    check_timestamp(H_SLACK_TIMESTAMP, ts, now, EXPECTED_TS)?;
    let hex = signature
        .strip_prefix("v0=")
        .ok_or(SignatureError::Malformed {
            header: H_SLACK_SIGNATURE,
            expected: EXPECTED_SIG,
        })?;
    verify_hex(
        &key,
        &[b"v0:", ts.as_bytes(), b":", body],
        hex,
        H_SLACK_SIGNATURE,
        EXPECTED_SIG,
    )
}

fn verify_standard_webhooks<H: HeaderLookup + ?Sized>(
    secret: &str,
    headers: &H,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    const EXPECTED_ID: &str = "the message id";
    const EXPECTED_TS: &str = "the message time in Unix seconds";
    const EXPECTED_SIG: &str =
        "space-separated `v1,<base64 HMAC-SHA256>` entries (at least one `v1`)";
    let key = standard_webhooks_key(secret)?;
    let id = header_value(headers, H_SW_ID, EXPECTED_ID)?;
    let ts = header_value(headers, H_SW_TIMESTAMP, EXPECTED_TS)?;
    let signatures = header_value(headers, H_SW_SIGNATURE, EXPECTED_SIG)?;
    check_timestamp(H_SW_TIMESTAMP, ts, now, EXPECTED_TS)?;

    let expected_tag = tag(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    let mut well_formed = 0usize;
    let mut matched = false;
    for entry in signatures.split_ascii_whitespace() {
        let Some(("v1", encoded)) = entry.split_once(',') else {
            continue;
        };
        let mut presented = [0u8; 64];
        if let Ok(TAG_LEN) = BASE64_LENIENT.decode_slice(encoded, &mut presented) {
            well_formed += 1;
            matched |= constant_time_eq(expected_tag.as_ref(), &presented[..TAG_LEN]);
        }
    }
    match (matched, well_formed) {
        (true, _) => Ok(()),
        (false, 0) => Err(SignatureError::Malformed {
            header: H_SW_SIGNATURE,
            expected: EXPECTED_SIG,
        }),
        (false, _) => Err(SignatureError::Mismatch),
    }
}

/// Lower-case hex HMAC-SHA256 of `body` under `secret`: the `hmac-sha256` scheme's
/// `X-Webhook-Signature` value.
///
/// ```
/// use triggerd_domain::signature::sign_hmac_sha256_hex;
/// // RFC 4231, test case 2.
/// assert_eq!(
///     sign_hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
///     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
/// );
/// ```
pub fn sign_hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hex_encode(hmac::sign(&key, body).as_ref())
}

/// The `X-Hub-Signature-256` value GitHub would send: `sha256=<hex>`.
///
/// ```
/// use triggerd_domain::signature::github_signature_header;
/// assert!(github_signature_header("secret", b"{}").starts_with("sha256="));
/// ```
pub fn github_signature_header(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", sign_hmac_sha256_hex(secret.as_bytes(), body))
}

/// The `Stripe-Signature` value Stripe would send for `body` at `timestamp`:
/// `t=<timestamp>,v1=<hex>`, keyed with the secret's bytes as given.
///
/// ```
/// use triggerd_domain::signature::stripe_signature_header;
/// assert!(stripe_signature_header("whsec_x", 1_700_000_000, b"{}").starts_with("t=1700000000,v1="));
/// ```
pub fn stripe_signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let ts = timestamp.to_string();
    let sig = tag(&key, &[ts.as_bytes(), b".", body]);
    format!("t={ts},v1={}", hex_encode(sig.as_ref()))
}

/// The `X-Slack-Signature` value Slack would send for `body` with
/// `X-Slack-Request-Timestamp: <timestamp>`: `v0=<hex>`.
///
/// ```
/// use triggerd_domain::signature::slack_signature_header;
/// assert!(slack_signature_header("secret", 1_700_000_000, b"a=b").starts_with("v0="));
/// ```
pub fn slack_signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let ts = timestamp.to_string();
    let sig = tag(&key, &[b"v0:", ts.as_bytes(), b":", body]);
    format!("v0={}", hex_encode(sig.as_ref()))
}

/// The Standard Webhooks `webhook-signature` value, `v1,<base64>`, for a message with id
/// `msg_id` sent at `timestamp` (Unix seconds), keyed with the base64 decoding of the part of
/// `secret` after `whsec_`.
///
/// # Errors
/// [`SignatureError::InvalidSecret`] if the secret is not `whsec_` followed by base64.
///
/// ```
/// use triggerd_domain::signature::sign_standard_webhooks;
/// // The Standard Webhooks specification's example.
/// let sig = sign_standard_webhooks(
///     "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
///     "msg_p5jXN8AQM9LWM0D4loKWxJek",
///     1_614_265_330,
///     br#"{"test": 2432232314}"#,
/// )?;
/// assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
/// # Ok::<(), triggerd_domain::signature::SignatureError>(())
/// ```
pub fn sign_standard_webhooks(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let key = standard_webhooks_key(secret)?;
    let ts = timestamp.to_string();
    let sig = tag(&key, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    let mut out = String::with_capacity(3 + 44);
    out.push_str("v1,");
    STANDARD.encode_string(sig.as_ref(), &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"event":"order.created","id":42}"#;
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // --- reference vectors ---

    #[test]
    fn rfc4231_case_2_hmac_sha256() {
        assert_eq!(
            sign_hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let headers = [(
            "x-webhook-signature",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        )];
        assert_eq!(
            SignatureScheme::HmacSha256.verify(
                "Jefe",
                &headers,
                b"what do ya want for nothing?",
                NOW
            ),
            Ok(())
        );
    }

    #[test]
    fn standard_webhooks_reference_example_signs_and_verifies() {
        let body = br#"{"test": 2432232314}"#;
        let sig = sign_standard_webhooks(
            SW_SECRET,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            body,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let headers = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ];
        assert_eq!(
            SignatureScheme::StandardWebhooks.verify(SW_SECRET, &headers, body, 1_614_265_330),
            Ok(())
        );
    }

    // --- names ---

    #[test]
    fn scheme_names_round_trip_through_str_and_serde() {
        for scheme in SignatureScheme::ALL {
            assert_eq!(scheme.as_str().parse::<SignatureScheme>(), Ok(scheme));
            let json = serde_json::to_string(&scheme).unwrap();
            assert_eq!(json, format!("\"{}\"", scheme.as_str()));
            assert_eq!(
                serde_json::from_str::<SignatureScheme>(&json).unwrap(),
                scheme
            );
        }
        assert_eq!(SignatureScheme::default(), SignatureScheme::HmacSha256);
        assert!(matches!(
            "sha1".parse::<SignatureScheme>(),
            Err(SignatureError::UnknownScheme { .. })
        ));
    }

    #[test]
    fn header_names_are_the_signature_headers_in_lower_case() {
        assert_eq!(
            SignatureScheme::HmacSha256.header_names(),
            ["x-webhook-signature"]
        );
        assert_eq!(
            SignatureScheme::Github.header_names(),
            ["x-hub-signature-256"]
        );
        assert_eq!(SignatureScheme::Stripe.header_names(), ["stripe-signature"]);
        assert_eq!(SignatureScheme::Slack.header_names(), ["x-slack-signature"]);
        assert_eq!(
            SignatureScheme::StandardWebhooks.header_names(),
            ["webhook-signature"]
        );
    }

    // --- header lookups ---

    #[test]
    fn header_lookups_ignore_case() {
        let pairs = [("X-Webhook-Signature", "abc")];
        assert_eq!(pairs.header("x-webhook-signature"), Some(&b"abc"[..]));
        assert_eq!(
            pairs.as_slice().header("x-webhook-signature"),
            Some(&b"abc"[..])
        );
        let m = map(&[("X-Webhook-Signature", "abc")]);
        assert_eq!(m.header("x-webhook-signature"), Some(&b"abc"[..]));
        let mut hm = http::HeaderMap::new();
        hm.insert("X-Webhook-Signature", http::HeaderValue::from_static("abc"));
        assert_eq!(hm.header("x-webhook-signature"), Some(&b"abc"[..]));
        assert_eq!(hm.header("not a header name"), None);
    }

    #[test]
    fn verify_works_with_an_http_header_map() {
        let mut hm = http::HeaderMap::new();
        let sig = sign_hmac_sha256_hex(b"k", BODY);
        hm.insert(
            "x-webhook-signature",
            http::HeaderValue::from_str(&sig).unwrap(),
        );
        assert_eq!(
            SignatureScheme::HmacSha256.verify("k", &hm, BODY, NOW),
            Ok(())
        );
    }

    // --- hmac-sha256 ---

    #[test]
    fn hmac_sha256_accepts_plain_prefixed_and_upper_case_hex() {
        let sig = sign_hmac_sha256_hex(b"secret", BODY);
        for value in [
            sig.clone(),
            format!("sha256={sig}"),
            sig.to_uppercase(),
            format!("  {sig} "),
        ] {
            let headers = [("x-webhook-signature", value.as_str())];
            assert_eq!(
                SignatureScheme::HmacSha256.verify("secret", &headers, BODY, NOW),
                Ok(()),
                "{value}"
            );
        }
    }

    #[test]
    fn hmac_sha256_refuses_wrong_secret_wrong_body_missing_and_malformed() {
        let sig = sign_hmac_sha256_hex(b"secret", BODY);
        let headers = [("x-webhook-signature", sig.as_str())];
        let s = SignatureScheme::HmacSha256;
        assert_eq!(
            s.verify("wrong", &headers, BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify("secret", &headers, b"{}", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify("secret", &[("other", "x")], BODY, NOW),
            Err(SignatureError::Missing {
                header: "x-webhook-signature"
            })
        );
        assert_eq!(
            s.verify("secret", &[("x-webhook-signature", "")], BODY, NOW),
            Err(SignatureError::Missing {
                header: "x-webhook-signature"
            })
        );
        let short = &sig[..62];
        let nonhex = format!("{}zz", &sig[..62]);
        for bad in [short, nonhex.as_str(), "sha1=abc", "sha256="] {
            assert!(
                matches!(
                    s.verify("secret", &[("x-webhook-signature", bad)], BODY, NOW),
                    Err(SignatureError::Malformed {
                        header: "x-webhook-signature",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn empty_secret_is_a_config_error() {
        let headers = [("x-webhook-signature", "00")];
        assert!(matches!(
            SignatureScheme::HmacSha256.verify("", &headers, BODY, NOW),
            Err(SignatureError::InvalidSecret { .. })
        ));
    }

    // --- github ---

    #[test]
    fn github_accepts_correct_signature() {
        let value = github_signature_header("gh-secret", BODY);
        let headers = [("X-Hub-Signature-256", value.as_str())];
        assert_eq!(
            SignatureScheme::Github.verify("gh-secret", &headers, BODY, NOW),
            Ok(())
        );
    }

    #[test]
    fn github_refuses_wrong_secret_missing_prefix_and_missing_header() {
        let value = github_signature_header("gh-secret", BODY);
        let s = SignatureScheme::Github;
        let headers = [("x-hub-signature-256", value.as_str())];
        assert_eq!(
            s.verify("other", &headers, BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        let bare = value.trim_start_matches("sha256=");
        assert!(matches!(
            s.verify("gh-secret", &[("x-hub-signature-256", bare)], BODY, NOW),
            Err(SignatureError::Malformed { .. })
        ));
        assert!(matches!(
            s.verify(
                "gh-secret",
                &[("x-hub-signature-256", "sha256=xyz")],
                BODY,
                NOW
            ),
            Err(SignatureError::Malformed { .. })
        ));
        // The plain hmac-sha256 header is not GitHub's.
        let sig = sign_hmac_sha256_hex(b"gh-secret", BODY);
        assert_eq!(
            s.verify(
                "gh-secret",
                &[("x-webhook-signature", sig.as_str())],
                BODY,
                NOW
            ),
            Err(SignatureError::Missing {
                header: "x-hub-signature-256"
            })
        );
    }

    // --- stripe ---

    const STRIPE_SECRET: &str = "whsec_stripe_test_secret";

    fn stripe(value: &str, secret: &str) -> Result<(), SignatureError> {
        SignatureScheme::Stripe.verify(secret, &[("Stripe-Signature", value)], BODY, NOW)
    }

    #[test]
    fn stripe_accepts_correct_signature_keyed_with_the_whole_secret_string() {
        let value = stripe_signature_header(STRIPE_SECRET, NOW, BODY);
        assert_eq!(stripe(&value, STRIPE_SECRET), Ok(()));
        // Keyed with the decoded part it would not match.
        let decoded_key = stripe_signature_header("stripe_test_secret", NOW, BODY);
        assert_eq!(
            stripe(&decoded_key, STRIPE_SECRET),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stripe_accepts_when_only_the_second_v1_matches_and_ignores_v0() {
        let good = stripe_signature_header(STRIPE_SECRET, NOW, BODY);
        let good_hex = good.split("v1=").nth(1).unwrap();
        let wrong_hex = sign_hmac_sha256_hex(b"old-secret", BODY);
        let value = format!("t={NOW},v1={wrong_hex},v1={good_hex},v0={wrong_hex}");
        assert_eq!(stripe(&value, STRIPE_SECRET), Ok(()));
        // A v0 entry alone does not count.
        let v0_only = format!("t={NOW},v0={good_hex}");
        assert!(matches!(
            stripe(&v0_only, STRIPE_SECRET),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn stripe_refuses_wrong_secret_and_malformed_headers() {
        let value = stripe_signature_header(STRIPE_SECRET, NOW, BODY);
        assert_eq!(stripe(&value, "whsec_other"), Err(SignatureError::Mismatch));
        for bad in [
            "garbage",
            "v1=abcd",
            "t=abc,v1=00",
            &format!("t={NOW}"),
            &format!("t={NOW},v1=nothex"),
        ] {
            assert!(
                matches!(
                    stripe(bad, STRIPE_SECRET),
                    Err(SignatureError::Malformed { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            SignatureScheme::Stripe.verify(STRIPE_SECRET, &[("x", "y")], BODY, NOW),
            Err(SignatureError::Missing {
                header: "stripe-signature"
            })
        );
    }

    #[test]
    fn stripe_refuses_timestamps_301_seconds_off_either_way() {
        for ts in [NOW - 301, NOW + 301] {
            let value = stripe_signature_header(STRIPE_SECRET, ts, BODY);
            assert!(
                matches!(
                    stripe(&value, STRIPE_SECRET),
                    Err(SignatureError::TimestampOutOfTolerance { timestamp, .. }) if timestamp == ts
                ),
                "{ts}"
            );
        }
        for ts in [NOW - 300, NOW + 300] {
            let value = stripe_signature_header(STRIPE_SECRET, ts, BODY);
            assert_eq!(stripe(&value, STRIPE_SECRET), Ok(()), "{ts}");
        }
    }

    // --- slack ---

    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    fn slack_headers(sig: &str, ts: &str) -> BTreeMap<String, String> {
        map(&[
            ("X-Slack-Signature", sig),
            ("X-Slack-Request-Timestamp", ts),
        ])
    }

    #[test]
    fn slack_accepts_correct_signature() {
        let sig = slack_signature_header(SLACK_SECRET, NOW, BODY);
        let headers = slack_headers(&sig, &NOW.to_string());
        assert_eq!(
            SignatureScheme::Slack.verify(SLACK_SECRET, &headers, BODY, NOW),
            Ok(())
        );
    }

    #[test]
    fn slack_refuses_wrong_secret_missing_headers_and_malformed_values() {
        let s = SignatureScheme::Slack;
        let sig = slack_signature_header(SLACK_SECRET, NOW, BODY);
        let ts = NOW.to_string();
        assert_eq!(
            s.verify("other", &slack_headers(&sig, &ts), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify(
                SLACK_SECRET,
                &[("x-slack-signature", sig.as_str())],
                BODY,
                NOW
            ),
            Err(SignatureError::Missing {
                header: "x-slack-request-timestamp"
            })
        );
        assert_eq!(
            s.verify(
                SLACK_SECRET,
                &[("x-slack-request-timestamp", ts.as_str())],
                BODY,
                NOW
            ),
            Err(SignatureError::Missing {
                header: "x-slack-signature"
            })
        );
        let bare = sig.trim_start_matches("v0=");
        for (sig, ts) in [
            (bare, ts.as_str()),
            ("v0=zz", ts.as_str()),
            (sig.as_str(), "soon"),
        ] {
            assert!(
                matches!(
                    s.verify(SLACK_SECRET, &slack_headers(sig, ts), BODY, NOW),
                    Err(SignatureError::Malformed { .. })
                ),
                "{sig} {ts}"
            );
        }
        // A signature made for another timestamp does not match this one.
        let other = slack_signature_header(SLACK_SECRET, NOW - 1, BODY);
        assert_eq!(
            s.verify(SLACK_SECRET, &slack_headers(&other, &ts), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn slack_refuses_timestamps_301_seconds_off_either_way() {
        for ts in [NOW - 301, NOW + 301] {
            let sig = slack_signature_header(SLACK_SECRET, ts, BODY);
            assert!(matches!(
                SignatureScheme::Slack.verify(
                    SLACK_SECRET,
                    &slack_headers(&sig, &ts.to_string()),
                    BODY,
                    NOW
                ),
                Err(SignatureError::TimestampOutOfTolerance {
                    header: "x-slack-request-timestamp",
                    ..
                })
            ));
        }
    }

    // --- standard webhooks ---

    fn sw_headers(id: &str, ts: &str, sig: &str) -> BTreeMap<String, String> {
        map(&[
            ("webhook-id", id),
            ("webhook-timestamp", ts),
            ("webhook-signature", sig),
        ])
    }

    fn sw_verify(secret: &str, headers: &BTreeMap<String, String>) -> Result<(), SignatureError> {
        SignatureScheme::StandardWebhooks.verify(secret, headers, BODY, NOW)
    }

    #[test]
    fn standard_webhooks_accepts_when_only_the_second_signature_matches() {
        let good = sign_standard_webhooks(SW_SECRET, "msg_1", NOW, BODY).unwrap();
        let old = sign_standard_webhooks("whsec_b2xkIHNlY3JldCBrZXk=", "msg_1", NOW, BODY).unwrap();
        let value = format!("v1a,ignored {old} {good}");
        assert_eq!(
            sw_verify(SW_SECRET, &sw_headers("msg_1", &NOW.to_string(), &value)),
            Ok(())
        );
    }

    #[test]
    fn standard_webhooks_accepts_a_secret_without_the_whsec_prefix() {
        let sig = sign_standard_webhooks(SW_SECRET, "msg_1", NOW, BODY).unwrap();
        let headers = sw_headers("msg_1", &NOW.to_string(), &sig);
        assert_eq!(
            sw_verify("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &headers),
            Ok(())
        );
    }

    #[test]
    fn standard_webhooks_refuses_wrong_secret_and_wrong_id() {
        let sig = sign_standard_webhooks(SW_SECRET, "msg_1", NOW, BODY).unwrap();
        let ts = NOW.to_string();
        assert_eq!(
            sw_verify(
                "whsec_b2xkIHNlY3JldCBrZXk=",
                &sw_headers("msg_1", &ts, &sig)
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            sw_verify(SW_SECRET, &sw_headers("msg_2", &ts, &sig)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn standard_webhooks_refuses_missing_headers() {
        let sig = sign_standard_webhooks(SW_SECRET, "msg_1", NOW, BODY).unwrap();
        let ts = NOW.to_string();
        let full = sw_headers("msg_1", &ts, &sig);
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut headers = full.clone();
            headers.remove(name);
            assert!(
                matches!(sw_verify(SW_SECRET, &headers), Err(SignatureError::Missing { header }) if header == name),
                "{name}"
            );
        }
    }

    #[test]
    fn standard_webhooks_refuses_malformed_signatures() {
        let ts = NOW.to_string();
        for bad in [
            "v1,@@@",
            "v1,",
            "v2,abcd",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,AAAA",
        ] {
            assert!(
                matches!(
                    sw_verify(SW_SECRET, &sw_headers("msg_1", &ts, bad)),
                    Err(SignatureError::Malformed {
                        header: "webhook-signature",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        let sig = sign_standard_webhooks(SW_SECRET, "msg_1", NOW, BODY).unwrap();
        assert!(matches!(
            sw_verify(SW_SECRET, &sw_headers("msg_1", "12ab", &sig)),
            Err(SignatureError::Malformed {
                header: "webhook-timestamp",
                ..
            })
        ));
    }

    #[test]
    fn standard_webhooks_refuses_timestamps_301_seconds_off_either_way() {
        for ts in [NOW - 301, NOW + 301] {
            let sig = sign_standard_webhooks(SW_SECRET, "msg_1", ts, BODY).unwrap();
            assert!(matches!(
                sw_verify(SW_SECRET, &sw_headers("msg_1", &ts.to_string(), &sig)),
                Err(SignatureError::TimestampOutOfTolerance { .. })
            ));
        }
        for ts in [NOW - 300, NOW + 300] {
            let sig = sign_standard_webhooks(SW_SECRET, "msg_1", ts, BODY).unwrap();
            assert_eq!(
                sw_verify(SW_SECRET, &sw_headers("msg_1", &ts.to_string(), &sig)),
                Ok(())
            );
        }
    }

    #[test]
    fn standard_webhooks_secret_that_is_not_base64_is_a_config_error() {
        let ts = NOW.to_string();
        for secret in ["whsec_not base64!", "whsec_", ""] {
            assert!(
                matches!(
                    sw_verify(secret, &sw_headers("msg_1", &ts, "v1,AAAA")),
                    Err(SignatureError::InvalidSecret { .. })
                ),
                "{secret}"
            );
            assert!(matches!(
                sign_standard_webhooks(secret, "msg_1", NOW, BODY),
                Err(SignatureError::InvalidSecret { .. })
            ));
        }
    }

    #[test]
    fn error_messages_say_what_was_expected() {
        let err = SignatureError::Malformed {
            header: "stripe-signature",
            expected: "`t=<unix seconds>,v1=<64 hex digits>`",
        };
        assert_eq!(
            err.to_string(),
            "the `stripe-signature` header is malformed: expected `t=<unix seconds>,v1=<64 hex digits>`"
        );
    }

    /// Headers with arbitrary byte values, for the property test.
    struct ByteHeaders(Vec<(String, Vec<u8>)>);

    impl HeaderLookup for ByteHeaders {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_slice())
        }
    }

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("x-webhook-signature".to_owned()),
            Just("x-hub-signature-256".to_owned()),
            Just("stripe-signature".to_owned()),
            Just("x-slack-signature".to_owned()),
            Just("x-slack-request-timestamp".to_owned()),
            Just("webhook-id".to_owned()),
            Just("webhook-timestamp".to_owned()),
            Just("webhook-signature".to_owned()),
        ]
    }

    fn header_value_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..100),
            "(t=|v1=|v0=|v1,|sha256=|[0-9a-fA-F]{0,70}|[ ,=]|[A-Za-z0-9+/=]{0,50}){0,8}"
                .prop_map(String::into_bytes),
            (-10_000_000_000i64..10_000_000_000).prop_map(|n| n.to_string().into_bytes()),
        ]
    }

    proptest! {
        #[test]
        fn verify_never_panics(
            headers in proptest::collection::vec((header_name(), header_value_bytes()), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            secret in prop_oneof![Just(SW_SECRET.to_owned()), ".{0,40}"],
            now in any::<i64>(),
        ) {
            let headers = ByteHeaders(headers);
            for scheme in SignatureScheme::ALL {
                let _ = scheme.verify(&secret, &headers, &body, now);
            }
        }

        #[test]
        fn every_scheme_accepts_what_its_signer_produces(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            ts in 0i64..4_000_000_000,
        ) {
            let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
            let ts_s = ts.to_string();
            let hmac = sign_hmac_sha256_hex(secret.as_bytes(), &body);
            let gh = github_signature_header(secret, &body);
            let st = stripe_signature_header(secret, ts, &body);
            let sl = slack_signature_header(secret, ts, &body);
            let sw = sign_standard_webhooks(secret, "msg_x", ts, &body).unwrap();
            let headers = [
                ("x-webhook-signature", hmac.as_str()),
                ("x-hub-signature-256", gh.as_str()),
                ("stripe-signature", st.as_str()),
                ("x-slack-signature", sl.as_str()),
                ("x-slack-request-timestamp", ts_s.as_str()),
                ("webhook-id", "msg_x"),
                ("webhook-timestamp", ts_s.as_str()),
                ("webhook-signature", sw.as_str()),
            ];
            for scheme in SignatureScheme::ALL {
                prop_assert_eq!(scheme.verify(secret, &headers, &body, ts), Ok(()), "{}", scheme);
            }
        }
    }
}
