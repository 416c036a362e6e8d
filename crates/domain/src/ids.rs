//! Identifiers and random secrets.
//!
//! Every object id is a type prefix (`dep_`, `trg_`, `run_`, `hook_`, `dlv_`, `evt_`, `req_`)
//! followed by a ULID: 26 upper-case Crockford base32 characters whose first ten encode the
//! creation time in milliseconds. Ids created in later milliseconds therefore sort after earlier
//! ones as plain strings, which keeps "newest first" stable and lets ids serve as list cursors.
//! Within one process ids are strictly increasing: in the same millisecond the random part counts
//! up from the millisecond's first random value (as ULID's monotonic mode does), so two requests
//! answered one after the other are listed in that order. Ids of different processes created in
//! the same millisecond are ordered by their random part.
//!
//! Secrets (webhook tokens, resume and approval tokens, API keys, hook signing secrets) are 32
//! bytes from the operating system's random source through `ring`, never from a weaker fallback:
//! the secret generators return [`IdError::RandomnessUnavailable`] in the (practically
//! impossible) case the source fails. Ids are not secret, so [`new_id`] never fails: should the
//! random source fail, it mixes the clock with a process-wide counter instead, which keeps ids
//! unique within the process.
//!
//! ```
//! use triggerd_domain::ids::{IdKind, id_from_parts, id_time_ms, is_valid_id};
//!
//! let id = id_from_parts(IdKind::Run, 1_700_000_000_000, 42);
//! assert!(id.starts_with("run_"));
//! assert!(is_valid_id(IdKind::Run, &id));
//! assert_eq!(id_time_ms(&id), Some(1_700_000_000_000));
//! ```

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom as _, SystemRandom};
use ulid::Ulid;

/// Number of characters of a ULID in its text form.
const ULID_LEN: usize = 26;

/// Number of random bytes in every generated secret.
pub const SECRET_BYTES: usize = 32;

/// Prefix of webhook tokens.
pub const WEBHOOK_TOKEN_PREFIX: &str = "wht_";

/// Prefix of event-hook signing secrets (Standard Webhooks format).
pub const HOOK_SECRET_PREFIX: &str = "whsec_";

/// Length of the base64url (no padding) text of [`SECRET_BYTES`] bytes.
const SECRET_B64URL_LEN: usize = 43;

/// Longest webhook token [`is_plausible_webhook_token`] accepts after the prefix (128 bytes
/// encoded), so that tokens of more than 32 bytes remain possible without letting arbitrary
/// garbage reach a lookup.
const MAX_TOKEN_B64URL_LEN: usize = 171;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The operating system's random source failed, so no secret could be generated.
    #[error(
        "the operating system's random number generator failed, so no secret was generated; \
         check that the system can provide randomness (getrandom) and try again"
    )]
    RandomnessUnavailable,
}

/// The kinds of object that carry an id, each with its own prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    /// A deployment: `dep_`.
    Deployment,
    /// A trigger: `trg_`.
    Trigger,
    /// A run: `run_`.
    Run,
    /// An event hook: `hook_`.
    Hook,
    /// A delivery of an event to a hook: `dlv_`.
    Delivery,
    /// An event: `evt_`.
    Event,
    /// An inbound request (the `X-Request-Id` and activity log row): `req_`.
    Request,
}

impl IdKind {
    /// Every kind, in declaration order.
    pub const ALL: [IdKind; 7] = [
        IdKind::Deployment,
        IdKind::Trigger,
        IdKind::Run,
        IdKind::Hook,
        IdKind::Delivery,
        IdKind::Event,
        IdKind::Request,
    ];

    /// The prefix of ids of this kind, underscore included.
    ///
    /// ```
    /// use triggerd_domain::ids::IdKind;
    /// assert_eq!(IdKind::Hook.prefix(), "hook_");
    /// ```
    pub const fn prefix(self) -> &'static str {
        match self {
            IdKind::Deployment => "dep_",
            IdKind::Trigger => "trg_",
            IdKind::Run => "run_",
            IdKind::Hook => "hook_",
            IdKind::Delivery => "dlv_",
            IdKind::Event => "evt_",
            IdKind::Request => "req_",
        }
    }
}

/// Builds the id of `kind` for the instant `unix_ms` (milliseconds since the Unix epoch, of
/// which the low 48 bits are kept) and the random value `random` (of which the low 80 bits are
/// kept). Pure; [`new_id`] calls it with the clock and the random source.
///
/// ```
/// use triggerd_domain::ids::{IdKind, id_from_parts};
/// assert_eq!(id_from_parts(IdKind::Deployment, 0, 0), "dep_00000000000000000000000000");
/// assert!(id_from_parts(IdKind::Run, 2, 0) > id_from_parts(IdKind::Run, 1, u128::MAX));
/// ```
pub fn id_from_parts(kind: IdKind, unix_ms: u64, random: u128) -> String {
    let prefix = kind.prefix();
    let mut buf = [0u8; ULID_LEN];
    let mut id = String::with_capacity(prefix.len() + ULID_LEN);
    id.push_str(prefix);
    id.push_str(Ulid::from_parts(unix_ms, random).array_to_str(&mut buf));
    id
}

/// A new id of `kind` for the current time.
///
/// Never fails: if the random source fails, the random part is derived from the clock's
/// nanoseconds and a process-wide counter, which is unique but not unpredictable (ids are not
/// secrets).
///
/// ```
/// use triggerd_domain::ids::{IdKind, is_valid_id, new_id};
/// let id = new_id(IdKind::Trigger);
/// assert!(is_valid_id(IdKind::Trigger, &id));
/// ```
pub fn new_id(kind: IdKind) -> String {
    /// The last `(milliseconds, random part)` handed out by this process.
    static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let unix_ms = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Fresh randomness only for a new millisecond; within one the random part counts up.
    let fresh = || {
        let mut bytes = [0u8; 16];
        if SystemRandom::new().fill(&mut bytes[6..]).is_ok() {
            u128::from_be_bytes(bytes)
        } else {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let count = COUNTER.fetch_add(1, Ordering::Relaxed);
            (u128::from(since_epoch.subsec_nanos()) << 48) | u128::from(count)
        }
    };
    *last = next_parts(*last, unix_ms, fresh);
    let (ms, random) = *last;
    drop(last);
    id_from_parts(kind, ms, random)
}

/// The largest random part of a ULID (80 bits).
const MAX_RANDOM: u128 = (1 << 80) - 1;

/// The parts of the id after `last`: a later millisecond takes a fresh random part; the same or
/// an earlier one (the clock went back) keeps `last`'s millisecond and counts its random part up,
/// borrowing the next millisecond when it would overflow. Strictly increasing either way.
fn next_parts(last: (u64, u128), now_ms: u64, fresh: impl FnOnce() -> u128) -> (u64, u128) {
    let (last_ms, last_random) = last;
    if now_ms > last_ms {
        (now_ms, fresh() & MAX_RANDOM)
    } else if last_random < MAX_RANDOM {
        (last_ms, last_random + 1)
    } else {
        (last_ms + 1, fresh() & MAX_RANDOM)
    }
}

/// The ULID part of `s` if it is a well-formed id of `kind`.
fn ulid_part(kind: IdKind, s: &str) -> Option<Ulid> {
    s.strip_prefix(kind.prefix()).and_then(parse_canonical_ulid)
}

/// Parses a ULID in the canonical form this module writes: 26 upper-case Crockford base32
/// characters whose first is at most `7` (larger ones would overflow 128 bits).
fn parse_canonical_ulid(s: &str) -> Option<Ulid> {
    let bytes = s.as_bytes();
    let canonical = bytes.len() == ULID_LEN
        && bytes.first().is_some_and(|b| (b'0'..=b'7').contains(b))
        && bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(b)));
    if canonical {
        Ulid::from_string(s).ok()
    } else {
        None
    }
}

/// Whether `s` is a well-formed id of `kind`: its prefix and a canonical ULID. Lets callers
/// answer 404 for malformed ids without a database lookup.
///
/// ```
/// use triggerd_domain::ids::{IdKind, is_valid_id};
/// assert!(is_valid_id(IdKind::Run, "run_01ARZ3NDEKTSV4RRFFQ69G5FAV"));
/// assert!(!is_valid_id(IdKind::Trigger, "run_01ARZ3NDEKTSV4RRFFQ69G5FAV"));
/// assert!(!is_valid_id(IdKind::Run, "run_01arz3ndektsv4rrffq69g5fav"));
/// assert!(!is_valid_id(IdKind::Run, "run_../../etc/passwd"));
/// ```
pub fn is_valid_id(kind: IdKind, s: &str) -> bool {
    ulid_part(kind, s).is_some()
}

/// The kind of a well-formed id, from its prefix.
///
/// ```
/// use triggerd_domain::ids::{IdKind, id_kind};
/// assert_eq!(id_kind("dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV"), Some(IdKind::Delivery));
/// assert_eq!(id_kind("dlv_nope"), None);
/// ```
pub fn id_kind(s: &str) -> Option<IdKind> {
    IdKind::ALL
        .into_iter()
        .find(|&kind| ulid_part(kind, s).is_some())
}

/// The creation time of a well-formed id of any kind, in milliseconds since the Unix epoch.
///
/// ```
/// use triggerd_domain::ids::{IdKind, id_from_parts, id_time_ms};
/// assert_eq!(id_time_ms(&id_from_parts(IdKind::Event, 1_614_265_330_000, 7)), Some(1_614_265_330_000));
/// assert_eq!(id_time_ms("evt_"), None);
/// ```
pub fn id_time_ms(s: &str) -> Option<u64> {
    IdKind::ALL
        .into_iter()
        .find_map(|kind| ulid_part(kind, s))
        .map(|ulid| ulid.timestamp_ms())
}

/// Fills an array with bytes from the operating system's random source.
fn random_bytes<const N: usize>() -> Result<[u8; N], IdError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| IdError::RandomnessUnavailable)?;
    Ok(bytes)
}

/// A new secret token: `prefix` followed by 32 random bytes in base64url without padding
/// (43 characters). Used for resume and approval tokens and for API keys.
///
/// # Errors
/// [`IdError::RandomnessUnavailable`] if the operating system's random source fails.
///
/// ```
/// use triggerd_domain::ids::new_secret_token;
/// let key = new_secret_token("tak_")?;
/// assert!(key.starts_with("tak_"));
/// assert_eq!(key.len(), 4 + 43);
/// # Ok::<(), triggerd_domain::ids::IdError>(())
/// ```
pub fn new_secret_token(prefix: &str) -> Result<String, IdError> {
    let bytes = random_bytes::<SECRET_BYTES>()?;
    let mut token = String::with_capacity(prefix.len() + SECRET_B64URL_LEN);
    token.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut token);
    Ok(token)
}

/// A new webhook token: `wht_` followed by 32 random bytes in base64url without padding.
///
/// # Errors
/// [`IdError::RandomnessUnavailable`] if the operating system's random source fails.
///
/// ```
/// use triggerd_domain::ids::{is_plausible_webhook_token, new_webhook_token};
/// let token = new_webhook_token()?;
/// assert!(is_plausible_webhook_token(&token));
/// # Ok::<(), triggerd_domain::ids::IdError>(())
/// ```
pub fn new_webhook_token() -> Result<String, IdError> {
    new_secret_token(WEBHOOK_TOKEN_PREFIX)
}

/// A new event-hook signing secret in the Standard Webhooks format: `whsec_` followed by 32
/// random bytes in standard base64 (with padding).
///
/// # Errors
/// [`IdError::RandomnessUnavailable`] if the operating system's random source fails.
///
/// ```
/// use triggerd_domain::ids::new_hook_secret;
/// let secret = new_hook_secret()?;
/// assert!(secret.starts_with("whsec_"));
/// assert_eq!(secret.len(), 6 + 44);
/// # Ok::<(), triggerd_domain::ids::IdError>(())
/// ```
pub fn new_hook_secret() -> Result<String, IdError> {
    let bytes = random_bytes::<SECRET_BYTES>()?;
    let mut secret = String::with_capacity(HOOK_SECRET_PREFIX.len() + 44);
    secret.push_str(HOOK_SECRET_PREFIX);
    STANDARD.encode_string(bytes, &mut secret);
    Ok(secret)
}

/// Whether `s` could be a webhook token this server issued: the `wht_` prefix, then 43 to 171
/// base64url characters (32 to 128 bytes). A cheap check so the hot path can answer 404 to
/// garbage without a lookup; it says nothing about whether the token exists.
///
/// ```
/// use triggerd_domain::ids::is_plausible_webhook_token;
/// assert!(is_plausible_webhook_token("wht_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
/// assert!(!is_plausible_webhook_token("wht_short"));
/// assert!(!is_plausible_webhook_token("wht_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
/// ```
pub fn is_plausible_webhook_token(s: &str) -> bool {
    s.strip_prefix(WEBHOOK_TOKEN_PREFIX).is_some_and(|rest| {
        (SECRET_B64URL_LEN..=MAX_TOKEN_B64URL_LEN).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The SHA-256 digest of `token`, as lower-case hex. Used to store the admin API token hashed.
///
/// ```
/// use triggerd_domain::ids::hash_token;
/// assert_eq!(
///     hash_token("abc"),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// ```
pub fn hash_token(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    hex_encode(digest.as_ref())
}

/// Whether `token` hashes to `hash` (as made by [`hash_token`]; hex digits of either case).
/// The digests are compared in constant time; a malformed `hash` never matches.
///
/// ```
/// use triggerd_domain::ids::{hash_token, verify_token_hash};
/// let stored = hash_token("s3cret");
/// assert!(verify_token_hash("s3cret", &stored));
/// assert!(!verify_token_hash("guess", &stored));
/// ```
pub fn verify_token_hash(token: &str, hash: &str) -> bool {
    let mut expected = [0u8; 32];
    if !hex_decode_into(hash.as_bytes(), &mut expected) {
        return false;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    constant_time_eq(digest.as_ref(), &expected)
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes hex (either case) into `out`, which it must fill exactly. Returns false on a wrong
/// length or a non-hex character.
pub(crate) fn hex_decode_into(hex: &[u8], out: &mut [u8]) -> bool {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if hex.len() != out.len() * 2 {
        return false;
    }
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => *byte = (hi << 4) | lo,
            _ => return false,
        }
    }
    true
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_of_one_process_are_strictly_increasing() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id(IdKind::Request)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn within_a_millisecond_the_random_part_counts_up() {
        let fresh = || 7;
        assert_eq!(next_parts((5, 100), 6, fresh), (6, 7));
        assert_eq!(next_parts((5, 100), 5, fresh), (5, 101));
        // The clock went back: keep the last millisecond.
        assert_eq!(next_parts((5, 100), 3, fresh), (5, 101));
        // Overflow borrows the next millisecond.
        assert_eq!(next_parts((5, MAX_RANDOM), 5, fresh), (6, 7));
        assert!(
            id_from_parts(IdKind::Run, 6, 7) > id_from_parts(IdKind::Run, 5, MAX_RANDOM),
            "borrowing keeps the order"
        );
    }

    #[test]
    fn every_kind_has_its_prefix() {
        let prefixes: Vec<&str> = IdKind::ALL.iter().map(|k| k.prefix()).collect();
        assert_eq!(
            prefixes,
            ["dep_", "trg_", "run_", "hook_", "dlv_", "evt_", "req_"]
        );
    }

    #[test]
    fn ids_are_prefix_and_26_char_ulid() {
        for kind in IdKind::ALL {
            let id = new_id(kind);
            let rest = id.strip_prefix(kind.prefix()).unwrap();
            assert_eq!(rest.len(), 26);
            assert!(is_valid_id(kind, &id), "{id}");
            assert_eq!(id_kind(&id), Some(kind));
        }
    }

    #[test]
    fn id_from_parts_matches_ulid_display() {
        let ulid = Ulid::from_string("01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap();
        assert_eq!(
            id_from_parts(IdKind::Run, ulid.timestamp_ms(), ulid.random()),
            "run_01ARZ3NDEKTSV4RRFFQ69G5FAV"
        );
    }

    #[test]
    fn new_id_carries_the_current_time() {
        let before = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        let id = new_id(IdKind::Event);
        let t = id_time_ms(&id).unwrap();
        assert!(t >= before && t < before + 60_000, "{t} vs {before}");
    }

    #[test]
    fn new_ids_differ() {
        let a = new_id(IdKind::Run);
        let b = new_id(IdKind::Run);
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "run_",
            "run",
            "run_01ARZ3NDEKTSV4RRFFQ69G5FA",
            "run_01ARZ3NDEKTSV4RRFFQ69G5FAVX",
            "run_01ARZ3NDEKTSV4RRFFQ69G5FAU",
            "run_81ARZ3NDEKTSV4RRFFQ69G5FAV",
            "run_01ARZ3NDEKTSV4RRFFQ69G5FA\u{e9}",
            "RUN_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ] {
            assert!(!is_valid_id(IdKind::Run, bad), "{bad}");
            assert_eq!(id_time_ms(bad), None, "{bad}");
            assert_eq!(id_kind(bad), None, "{bad}");
        }
    }

    #[test]
    fn webhook_tokens_are_wht_and_43_url_safe_chars() {
        let token = new_webhook_token().unwrap();
        assert_eq!(token.len(), 4 + 43);
        assert!(is_plausible_webhook_token(&token));
        let decoded = URL_SAFE_NO_PAD.decode(&token[4..]).unwrap();
        assert_eq!(decoded.len(), 32);
        assert_ne!(token, new_webhook_token().unwrap());
    }

    #[test]
    fn implausible_webhook_tokens_are_refused() {
        let long = format!("wht_{}", "a".repeat(172));
        for bad in [
            "",
            "wht_",
            "whx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "wht_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "wht_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
            "wht_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/",
            long.as_str(),
        ] {
            assert!(!is_plausible_webhook_token(bad), "{bad}");
        }
    }

    #[test]
    fn hook_secrets_decode_to_32_bytes() {
        let secret = new_hook_secret().unwrap();
        let decoded = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(decoded.len(), 32);
    }

    #[test]
    fn secret_tokens_take_any_prefix() {
        let token = new_secret_token("rsm_").unwrap();
        assert!(token.starts_with("rsm_"));
        assert_eq!(URL_SAFE_NO_PAD.decode(&token[4..]).unwrap().len(), 32);
    }

    #[test]
    fn token_hash_round_trips_and_accepts_upper_case_hex() {
        let hash = hash_token("token");
        assert_eq!(hash.len(), 64);
        assert!(verify_token_hash("token", &hash));
        assert!(verify_token_hash("token", &hash.to_uppercase()));
        assert!(!verify_token_hash("token2", &hash));
        assert!(!verify_token_hash("token", &hash[..63]));
        assert!(!verify_token_hash("token", "zz"));
        assert!(!verify_token_hash("token", ""));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    proptest! {
        #[test]
        fn later_milliseconds_sort_after_earlier_ones(
            t1 in 0u64..(1 << 48),
            t2 in 0u64..(1 << 48),
            r1 in any::<u128>(),
            r2 in any::<u128>(),
        ) {
            prop_assume!(t1 != t2);
            let a = id_from_parts(IdKind::Run, t1, r1);
            let b = id_from_parts(IdKind::Run, t2, r2);
            prop_assert_eq!(t1 < t2, a < b);
            prop_assert_eq!(id_time_ms(&a), Some(t1));
        }

        #[test]
        fn id_checks_never_panic(s in ".*") {
            let _ = is_valid_id(IdKind::Run, &s);
            let _ = id_time_ms(&s);
            let _ = id_kind(&s);
            let _ = is_plausible_webhook_token(&s);
            let _ = verify_token_hash("x", &s);
        }

        #[test]
        fn hex_round_trips(bytes in proptest::array::uniform32(any::<u8>())) {
            let hex = hex_encode(&bytes);
            let mut out = [0u8; 32];
            prop_assert!(hex_decode_into(hex.as_bytes(), &mut out));
            prop_assert_eq!(out, bytes);
        }
    }
}
