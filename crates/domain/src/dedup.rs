//! De-duplication of webhook deliveries: `config.dedup` (docs/webhooks.md).
//!
//! Senders retry and redeliver: Stripe sends an event again until it gets a 2xx, GitHub's
//! "Redeliver" button and Standard Webhooks senders resend with the same id. A trigger with
//! `dedup` reads a key from each request — a header, a body field, any path input mapping reads —
//! and a request whose key an earlier request of the last `window_seconds` claimed starts no run:
//! it is answered 200 with that request's `run_id`. The claim is written with the run, in the same
//! transaction, so the check holds across concurrent requests and nodes (see the storage crate).
//!
//! `"provider"` picks the delivery id of the trigger's signature scheme:
//!
//! | scheme | key |
//! |---|---|
//! | `github` | `$headers.x-github-delivery` |
//! | `standard-webhooks` | `$headers.webhook-id` |
//! | `stripe` | the body's `id` (the event id) |
//! | `slack` | the body's `event_id` (Events API) |
//!
//! A request without the key (absent or `null`) is not de-duplicated. Keys longer than
//! [`MAX_KEY_BYTES`] are stored as their SHA-256 digest.
//!
//! ```
//! use serde_json::json;
//! use triggerd_domain::dedup::Dedup;
//! use triggerd_domain::mapping::trigger_input;
//! use triggerd_domain::signature::SignatureScheme;
//!
//! let dedup = Dedup::parse(&json!("provider"), SignatureScheme::Github, "config.dedup").unwrap();
//! assert_eq!(dedup.window_seconds(), 86_400);
//! let request = trigger_input("POST", "", json!({}),
//!     json!({"x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}), json!({}));
//! assert_eq!(dedup.key_of(&request).as_deref(), Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
//!
//! let problems = Dedup::parse(&json!("provider"), SignatureScheme::HmacSha256, "config.dedup")
//!     .unwrap_err();
//! assert_eq!(problems[0].path, "config.dedup");
//! ```

use serde_json::{Map, Value, json};

use crate::Problem;
use crate::inputs::describe;
use crate::mapping::parse_source;
use crate::path::Path;
use crate::signature::SignatureScheme;

/// Default `window_seconds`: one day.
pub const DEFAULT_WINDOW_SECONDS: u32 = 86_400;
/// Longest `window_seconds`: seven days.
pub const MAX_WINDOW_SECONDS: u32 = 604_800;
/// Longest key stored as it is; longer keys are stored as `sha256:<hex>` of the key.
pub const MAX_KEY_BYTES: usize = 200;

/// A validated `config.dedup`.
///
/// Two configurations are equal when they were written the same ([`Dedup::as_json`]).
#[derive(Debug, Clone)]
pub struct Dedup {
    path: Path,
    window_seconds: u32,
    raw: Value,
}

impl PartialEq for Dedup {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

/// The key path `"provider"` stands for with `scheme`, or `None` when the scheme has no
/// delivery id.
pub fn provider_key(scheme: SignatureScheme) -> Option<&'static str> {
    match scheme {
        SignatureScheme::Github => Some("$headers.x-github-delivery"),
        SignatureScheme::StandardWebhooks => Some("$headers.webhook-id"),
        SignatureScheme::Stripe => Some("id"),
        SignatureScheme::Slack => Some("event_id"),
        SignatureScheme::HmacSha256 => None,
    }
}

impl Dedup {
    /// Parses `config.dedup` — `"provider"` or `{"key": <path>, "window_seconds": n}` — for a
    /// trigger whose signature scheme is `scheme`; `at` prefixes every problem's path.
    pub fn parse(value: &Value, scheme: SignatureScheme, at: &str) -> Result<Dedup, Vec<Problem>> {
        let shape = "must be \"provider\" or an object such as {\"key\": \"$headers.x-github-delivery\", \"window_seconds\": 86400}";
        let provider = |window_seconds: u32, raw: Value| match provider_key(scheme) {
            Some(key) => Ok(Dedup {
                path: parse_source(key)
                    .map(|s| s.path)
                    .map_err(|e| vec![Problem::new(at, e)])?,
                window_seconds,
                raw,
            }),
            None => Err(vec![Problem::new(
                at,
                format!(
                    "\"provider\" reads the sender's delivery id, which the signature scheme {} does not have: use the sender's scheme (github, stripe, slack or standard-webhooks, with its secret), or give {{\"key\": <path>}}",
                    scheme.as_str()
                ),
            )]),
        };
        let map: &Map<String, Value> = match value {
            Value::String(s) if s == "provider" => {
                return provider(DEFAULT_WINDOW_SECONDS, json!("provider"));
            }
            Value::Object(map) => map,
            other => {
                return Err(vec![Problem::new(
                    at,
                    format!("{shape}, got {}", describe(other)),
                )]);
            }
        };
        let mut problems = Vec::new();
        for key in map.keys() {
            if key != "key" && key != "window_seconds" {
                problems.push(Problem::new(
                    format!("{at}.{key}"),
                    "unknown field: dedup has key and window_seconds",
                ));
            }
        }
        let window_seconds = match map.get("window_seconds") {
            None | Some(Value::Null) => DEFAULT_WINDOW_SECONDS,
            Some(v) => match v.as_f64() {
                Some(n)
                    if n.fract() == 0.0 && (1.0..=f64::from(MAX_WINDOW_SECONDS)).contains(&n) =>
                {
                    n as u32
                }
                _ => {
                    problems.push(Problem::new(
                        format!("{at}.window_seconds"),
                        format!(
                            "must be a whole number of seconds from 1 to {MAX_WINDOW_SECONDS} (7 days)"
                        ),
                    ));
                    DEFAULT_WINDOW_SECONDS
                }
            },
        };
        let path = match map.get("key") {
            Some(Value::String(text)) => match parse_source(text) {
                Ok(source) => Some(source.path),
                Err(message) => {
                    problems.push(Problem::new(format!("{at}.key"), message));
                    None
                }
            },
            None | Some(Value::Null) => {
                problems.push(Problem::new(
                    format!("{at}.key"),
                    "is required: the path of the delivery id, such as \"$headers.x-github-delivery\", \"$headers.webhook-id\" or \"id\"",
                ));
                None
            }
            Some(other) => {
                problems.push(Problem::new(
                    format!("{at}.key"),
                    format!(
                        "must be a path string such as \"$headers.webhook-id\", got {}",
                        describe(other)
                    ),
                ));
                None
            }
        };
        match path {
            Some(path) if problems.is_empty() => Ok(Dedup {
                path,
                window_seconds,
                raw: json!({"key": map["key"], "window_seconds": window_seconds}),
            }),
            _ => Err(problems),
        }
    }

    /// How long a key counts after the request that claimed it.
    pub fn window_seconds(&self) -> u32 {
        self.window_seconds
    }

    /// The configuration as written, with `window_seconds` filled in (stored and shown).
    pub fn as_json(&self) -> &Value {
        &self.raw
    }

    /// The request's key: a string as it is, any other value as JSON text, `None` when the
    /// request has none (absent or `null`). Keys over [`MAX_KEY_BYTES`] become
    /// `sha256:<hex>`.
    pub fn key_of(&self, trigger_input: &Value) -> Option<String> {
        let key = match self.path.lookup(trigger_input)? {
            Value::Null => return None,
            Value::String(s) if s.is_empty() => return None,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if key.len() <= MAX_KEY_BYTES {
            return Some(key);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256:");
        for b in digest.as_ref() {
            out.push_str(&format!("{b:02x}"));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::trigger_input;

    fn request(headers: Value, body: Value) -> Value {
        trigger_input("POST", "", json!({}), headers, body)
    }

    #[test]
    fn provider_reads_each_schemes_delivery_id() {
        let cases = [
            (
                SignatureScheme::Github,
                request(json!({"x-github-delivery": "g-1"}), json!({})),
                "g-1",
            ),
            (
                SignatureScheme::StandardWebhooks,
                request(json!({"webhook-id": "msg_1"}), json!({})),
                "msg_1",
            ),
            (
                SignatureScheme::Stripe,
                request(json!({}), json!({"id": "evt_1", "type": "x"})),
                "evt_1",
            ),
            (
                SignatureScheme::Slack,
                request(json!({}), json!({"event_id": "Ev1"})),
                "Ev1",
            ),
        ];
        for (scheme, req, key) in cases {
            let d = Dedup::parse(&json!("provider"), scheme, "config.dedup").unwrap();
            assert_eq!(d.key_of(&req).as_deref(), Some(key), "{scheme:?}");
            assert_eq!(d.as_json(), &json!("provider"));
        }
    }

    #[test]
    fn an_explicit_key_reads_any_mapping_path() {
        let d = Dedup::parse(
            &json!({"key": "$headers.X-Delivery"}),
            SignatureScheme::HmacSha256,
            "config.dedup",
        )
        .unwrap();
        assert_eq!(d.window_seconds(), DEFAULT_WINDOW_SECONDS);
        assert_eq!(
            d.as_json(),
            &json!({"key": "$headers.X-Delivery", "window_seconds": 86400})
        );
        assert_eq!(
            d.key_of(&request(json!({"x-delivery": "abc"}), json!({})))
                .as_deref(),
            Some("abc")
        );
        assert_eq!(d.key_of(&request(json!({}), json!({}))), None);
        let body = Dedup::parse(
            &json!({"key": "order.id", "window_seconds": 60}),
            SignatureScheme::HmacSha256,
            "config.dedup",
        )
        .unwrap();
        assert_eq!(
            body.key_of(&request(json!({}), json!({"order": {"id": 42}})))
                .as_deref(),
            Some("42")
        );
        assert_eq!(
            body.key_of(&request(json!({}), json!({"order": {"id": null}}))),
            None
        );
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        let hashed = body
            .key_of(&request(json!({}), json!({"order": {"id": long}})))
            .unwrap();
        assert!(
            hashed.starts_with("sha256:") && hashed.len() == 71,
            "{hashed}"
        );
    }

    #[test]
    fn bad_configurations_name_their_problem() {
        let at = |v: Value| {
            Dedup::parse(&v, SignatureScheme::Github, "config.dedup")
                .unwrap_err()
                .into_iter()
                .map(|p| p.path)
                .collect::<Vec<_>>()
        };
        assert_eq!(at(json!("yes")), ["config.dedup"]);
        assert_eq!(at(json!({})), ["config.dedup.key"]);
        assert_eq!(at(json!({"key": "$nope.x"})), ["config.dedup.key"]);
        assert_eq!(
            at(json!({"key": "id", "window_seconds": 604_801})),
            ["config.dedup.window_seconds"]
        );
        assert_eq!(
            at(json!({"key": "id", "window_seconds": 1.5})),
            ["config.dedup.window_seconds"]
        );
        assert_eq!(
            at(json!({"key": "id", "windows": 5})),
            ["config.dedup.windows"]
        );
        let e = Dedup::parse(
            &json!("provider"),
            SignatureScheme::HmacSha256,
            "config.dedup",
        )
        .unwrap_err();
        assert!(e[0].message.contains("hmac-sha256"), "{}", e[0].message);
    }
}
