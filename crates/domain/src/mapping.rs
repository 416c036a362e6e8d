//! From an inbound request to a run's input (docs/webhooks.md).
//!
//! An inbound request is first turned into its `trigger_input`:
//! `{"method", "path", "query", "headers", "body"}` — header names lower-cased, secrets redacted
//! ([`headers_to_map`]), query parameters decoded ([`parse_urlencoded`]). An [`InputMapping`] then
//! reads each declared input from it:
//!
//! | mapping value | reads |
//! |---|---|
//! | `customer.email` (any path) | the JSON body |
//! | `$body`, `$body.a.b` | the whole body, or a path in it |
//! | `$headers.x-event` | a header (names are lower-case) |
//! | `$query.page` | a query parameter |
//! | `$path` | the URL rest after the token (`/api/webhooks/{token}/{rest}`) |
//! | `$method` | the HTTP method |
//!
//! Inputs without a mapping entry read the body's top-level field of the same name. Values read
//! from headers, the query and the path are strings: they are converted to the declared type when
//! it is `integer`, `number` or `boolean` (`"42"` → 42). The result is validated against the
//! declared inputs; problems come back as the exact 422 `details`.
//!
//! ```
//! use serde_json::json;
//! use triggerd_domain::inputs::InputSpecs;
//! use triggerd_domain::mapping::{trigger_input, InputMapping};
//!
//! let specs = InputSpecs::parse(&json!({
//!     "email": {"type": "string", "required": true},
//!     "page": {"type": "integer"}
//! })).unwrap();
//! let mapping = InputMapping::parse(&json!({"email": "customer.email", "page": "$query.page"}),
//!                                   Some(&specs)).unwrap();
//! let request = trigger_input("POST", "", json!({"page": "2"}), json!({}),
//!                             json!({"customer": {"email": "a@example.com"}}));
//! let input = mapping.apply(&specs, &request).unwrap();
//! assert_eq!(serde_json::Value::Object(input), json!({"email": "a@example.com", "page": 2}));
//! ```

use serde_json::{Map, Value};

use crate::Problem;
use crate::inputs::{InputProblem, InputSpecs, InputType, describe};
use crate::path::{Path, Segment};

/// Headers that are always stored as `"[redacted]"` in `trigger_input`.
pub const ALWAYS_REDACTED: [&str; 3] = ["authorization", "cookie", "x-api-key"];

/// The text that replaces a redacted header value.
pub const REDACTED: &str = "[redacted]";

/// The deepest nesting a received JSON document may have: a webhook body, a run's input, a
/// context value. Stored documents are wrapped in a few more levels (`trigger.body`, …) and must
/// read back whole, below `serde_json`'s own limit of 128.
pub const MAX_JSON_DEPTH: usize = 64;

/// How deeply `value` nests: 0 for a scalar, 1 for `[]` or `{}` of scalars, and so on. Iterative,
/// so any depth is measured without recursion.
///
/// ```
/// use serde_json::json;
/// use triggerd_domain::mapping::json_depth;
/// assert_eq!(json_depth(&json!(1)), 0);
/// assert_eq!(json_depth(&json!({"a": [1, {"b": 2}]})), 3);
/// ```
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(depth + 1);
                stack.extend(items.iter().map(|item| (item, depth + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(depth + 1);
                stack.extend(map.values().map(|item| (item, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Builds a `trigger_input` document from its parts.
pub fn trigger_input(method: &str, path: &str, query: Value, headers: Value, body: Value) -> Value {
    let mut map = Map::with_capacity(5);
    map.insert("method".into(), Value::String(method.to_owned()));
    map.insert("path".into(), Value::String(path.to_owned()));
    map.insert("query".into(), query);
    map.insert("headers".into(), headers);
    map.insert("body".into(), body);
    Value::Object(map)
}

/// Turns request headers into a JSON object: names lower-cased, repeated headers joined with
/// `", "`, values that are not UTF-8 decoded lossily, and [`ALWAYS_REDACTED`] plus `redact`
/// (e.g. the signature headers of the trigger's scheme) replaced by `"[redacted]"`.
pub fn headers_to_map<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    redact: &[&str],
) -> Map<String, Value> {
    let mut map: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let redacted = ALWAYS_REDACTED.contains(&name.as_str()) || redact.contains(&name.as_str());
        let text = if redacted {
            REDACTED.to_owned()
        } else {
            String::from_utf8_lossy(value).into_owned()
        };
        match map.get_mut(&name) {
            Some(Value::String(existing)) if !redacted => {
                existing.push_str(", ");
                existing.push_str(&text);
            }
            Some(_) => {}
            None => {
                map.insert(name, Value::String(text));
            }
        }
    }
    map
}

/// Query parameters that carry credentials, stored as `"[redacted]"` in `trigger_input.query`
/// (compared case-insensitively): senders that cannot set headers put API keys and tokens here.
pub const REDACTED_QUERY_PARAMS: [&str; 12] = [
    "token",
    "access_token",
    "auth",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "secret",
    "password",
    "signature",
    "sig",
    "hmac",
];

/// A request's query string as `trigger.query`: [`parse_urlencoded`], then
/// [`redact_query`].
pub fn query_to_map(query: &[u8]) -> Map<String, Value> {
    let mut map = parse_urlencoded(query);
    redact_query(&mut map);
    map
}

/// Replaces the values of [`REDACTED_QUERY_PARAMS`] (every value of a repeated one) by
/// `"[redacted]"`.
pub fn redact_query(query: &mut Map<String, Value>) {
    for (name, value) in query.iter_mut() {
        if REDACTED_QUERY_PARAMS
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name))
        {
            *value = Value::String(REDACTED.to_owned());
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` text (a query string or a form body) into an
/// object; a repeated field becomes an array of its values in order.
pub fn parse_urlencoded(input: &[u8]) -> Map<String, Value> {
    let mut map: Map<String, Value> = Map::new();
    for (key, value) in form_urlencoded::parse(input) {
        let value = Value::String(value.into_owned());
        match map.get_mut(key.as_ref()) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                map.insert(key.into_owned(), value);
            }
        }
    }
    map
}

/// Where one input's value comes from: a path in `trigger_input` (`body...`, `headers.x`,
/// `query...`, `path`, `method`).
/// Webhook filters ([`crate::filter`]) read the same paths.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Source {
    pub(crate) path: Path,
    /// True for headers, query, path and method: their values are strings to convert.
    pub(crate) textual: bool,
}

/// A compiled `config.input_mapping`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputMapping {
    entries: Vec<(String, Source)>,
}

impl InputMapping {
    /// Parses a mapping object `{input name: path}`. With `specs`, every mapped name must be a
    /// declared input. Problem paths look like `config.input_mapping.email`. `null` means no mapping.
    pub fn parse(value: &Value, specs: Option<&InputSpecs>) -> Result<InputMapping, Vec<Problem>> {
        let at = "config.input_mapping";
        let map = match value {
            Value::Null => return Ok(InputMapping::default()),
            Value::Object(map) => map,
            other => {
                return Err(vec![Problem::new(
                    at,
                    format!(
                        "must be an object of input name → path, got {}",
                        describe(other)
                    ),
                )]);
            }
        };
        let mut problems = Vec::new();
        let mut entries = Vec::with_capacity(map.len());
        for (input, path) in map {
            let here = format!("{at}.{input}");
            if let Some(specs) = specs
                && specs.get(input).is_none()
            {
                problems.push(Problem::new(
                    &here,
                    format!("input \"{input}\" is not declared by the workflow"),
                ));
                continue;
            }
            let Some(text) = path.as_str() else {
                problems.push(Problem::new(
                    &here,
                    format!("must be a path string such as \"customer.email\" or \"$headers.x-event\", got {}", describe(path)),
                ));
                continue;
            };
            match parse_source(text) {
                Ok(source) => entries.push((input.clone(), source)),
                Err(message) => problems.push(Problem::new(&here, message)),
            }
        }
        if problems.is_empty() {
            Ok(InputMapping { entries })
        } else {
            Err(problems)
        }
    }

    /// True when no input is mapped explicitly.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reads every declared input from `trigger_input`, converts textual values, and validates the
    /// result. Returns the run's `input` or every problem at once (the 422 `details`).
    pub fn apply(
        &self,
        specs: &InputSpecs,
        trigger_input: &Value,
    ) -> Result<Map<String, Value>, Vec<InputProblem>> {
        let mut out = Map::with_capacity(specs.len());
        let mut problems = Vec::new();
        for (name, spec) in specs.iter() {
            let raw = match self.entries.iter().find(|(n, _)| n == name) {
                Some((_, Source { path, textual })) => path
                    .lookup(trigger_input)
                    .map(|v| convert(v, spec.input_type, *textual)),
                None => trigger_input
                    .get("body")
                    .and_then(|b| b.get(name))
                    .map(|v| Ok(v.clone())),
            };
            let resolved = match raw {
                Some(Err(message)) => Err(message),
                Some(Ok(v)) => spec.resolve(Some(v)),
                None => spec.resolve(None),
            };
            match resolved {
                Ok(Some(v)) => {
                    out.insert(name.to_owned(), v);
                }
                Ok(None) => {}
                Err(message) => problems.push(InputProblem::new(name, message)),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}

fn convert(value: &Value, input_type: InputType, textual: bool) -> Result<Value, String> {
    match value {
        Value::String(s)
            if textual && !matches!(input_type, InputType::String | InputType::Object) =>
        {
            input_type.coerce_str(s)
        }
        Value::Array(items)
            if textual
                && matches!(
                    input_type,
                    InputType::Integer | InputType::Number | InputType::Boolean
                ) =>
        {
            // A repeated query parameter: the last value wins, as most web frameworks do.
            match items.last() {
                Some(Value::String(s)) => input_type.coerce_str(s),
                _ => Ok(value.clone()),
            }
        }
        other => Ok(other.clone()),
    }
}

/// Parses a mapping path (`customer.email`, `$headers.x-event`, `$query.page`, `$path`,
/// `$method`, `$body...`) into the path it reads in `trigger_input`.
pub(crate) fn parse_source(text: &str) -> Result<Source, String> {
    let text = text.trim();
    let bad_path = |e| format!("bad path \"{text}\": {e}");
    let Some(special) = text.strip_prefix('$') else {
        let body = Path::parse(text).map_err(bad_path)?;
        return Ok(Source {
            path: Path::rooted("body", body.segments()),
            textual: false,
        });
    };
    let (root, rest) = match special.find(['.', '[']) {
        Some(i) => (&special[..i], Some(&special[i..])),
        None => (special, None),
    };
    let rest: Vec<Segment> = match rest {
        Some(rest) => Path::parse(rest.strip_prefix('.').unwrap_or(rest))
            .map_err(bad_path)?
            .segments()
            .to_vec(),
        None => Vec::new(),
    };
    let textual = match root {
        "body" => false,
        "query" | "headers" => true,
        "path" | "method" if rest.is_empty() => true,
        "path" | "method" => return Err(format!("${root} takes no sub-path: write \"${root}\"")),
        _ => {
            return Err(format!(
                "unknown source \"${root}\": use a body path, $body, $headers.<name>, $query.<name>, $path or $method"
            ));
        }
    };
    let mut path = Path::rooted(root, &rest);
    if root == "headers" {
        path = path.lowercase_segment(1);
    }
    Ok(Source { path, textual })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs() -> InputSpecs {
        InputSpecs::parse(&json!({
            "email": {"type": "string", "required": true},
            "value": {"type": "integer"},
            "event": {"type": "string"},
            "page": {"type": "integer"},
            "live": {"type": "boolean"},
            "rest": {"type": "string"},
            "verb": {"type": "string"},
            "tags": {"type": "array"}
        }))
        .unwrap()
    }

    fn request() -> Value {
        trigger_input(
            "PUT",
            "orders/42",
            Value::Object(parse_urlencoded(b"page=3&live=true&tag=a&tag=b")),
            json!({"x-github-event": "push"}),
            json!({"customer_email": "a@example.com", "amount": 120, "email": "top@example.com",
                   "nested": {"list": [{"Do Thing?": "yes"}]}}),
        )
    }

    fn map(mapping: Value) -> Result<Map<String, Value>, Vec<InputProblem>> {
        InputMapping::parse(&mapping, Some(&specs()))
            .unwrap()
            .apply(&specs(), &request())
    }

    #[test]
    fn without_mapping_inputs_read_same_named_body_fields() {
        assert_eq!(
            Value::Object(map(json!(null)).unwrap()),
            json!({"email": "top@example.com"})
        );
    }

    #[test]
    fn mapping_reads_body_headers_query_path_and_method() {
        let input = map(json!({
            "email": "customer_email", "value": "amount", "event": "$headers.X-GitHub-Event",
            "page": "$query.page", "live": "$query.live", "rest": "$path", "verb": "$method",
            "tags": "$query.tag"
        }))
        .unwrap();
        assert_eq!(
            Value::Object(input),
            json!({"email": "a@example.com", "value": 120, "event": "push", "page": 3, "live": true,
                   "rest": "orders/42", "verb": "PUT", "tags": ["a", "b"]})
        );
    }

    #[test]
    fn quoted_and_indexed_body_paths_work() {
        let input = map(json!({"email": "nested.list[0][\"Do Thing?\"]"})).unwrap();
        assert_eq!(input["email"], json!("yes"));
        let input = map(json!({"email": "$body.customer_email"})).unwrap();
        assert_eq!(input["email"], json!("a@example.com"));
    }

    #[test]
    fn problems_become_422_details() {
        let err = map(json!({"email": "missing.field", "value": "customer_email", "page": "$headers.x-github-event"}))
            .unwrap_err();
        assert_eq!(
            err,
            vec![
                InputProblem::new("email", "is required"),
                InputProblem::new("value", "must be an integer, got a string"),
                InputProblem::new("page", "must be an integer, got \"push\""),
            ]
        );
    }

    #[test]
    fn bad_mappings_are_invalid_config() {
        let problems = InputMapping::parse(
            &json!({"nope": "a", "email": 3, "value": "$cookies.x", "page": "a..b", "rest": "$path.x"}),
            Some(&specs()),
        )
        .unwrap_err();
        let got: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.path.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            got[0],
            (
                "config.input_mapping.nope",
                "input \"nope\" is not declared by the workflow"
            )
        );
        assert_eq!(got[1].0, "config.input_mapping.email");
        assert!(got[2].1.starts_with("unknown source \"$cookies\""));
        assert!(got[3].1.starts_with("bad path"));
        assert_eq!(got[4].1, "$path takes no sub-path: write \"$path\"");
        assert!(InputMapping::parse(&json!([]), None).is_err());
    }

    #[test]
    fn headers_are_lowercased_joined_and_redacted() {
        let headers: Vec<(&str, &[u8])> = vec![
            ("Content-Type", b"application/json"),
            ("Authorization", b"Bearer secret"),
            ("Cookie", b"a=b"),
            ("X-Api-Key", b"k"),
            ("X-Webhook-Signature", b"abc"),
            ("Accept", b"a"),
            ("accept", b"b"),
            ("X-Bin", b"\xff"),
        ];
        let map = headers_to_map(headers, &["x-webhook-signature"]);
        assert_eq!(
            Value::Object(map),
            json!({"content-type": "application/json", "authorization": REDACTED, "cookie": REDACTED,
                   "x-api-key": REDACTED, "x-webhook-signature": REDACTED, "accept": "a, b",
                   "x-bin": "\u{fffd}"})
        );
    }

    #[test]
    fn urlencoded_decodes_and_groups_repeats() {
        assert_eq!(
            Value::Object(parse_urlencoded(b"a=1&b=x+y&a=2&c=%C3%A9&a=3&d")),
            json!({"a": ["1", "2", "3"], "b": "x y", "c": "é", "d": ""})
        );
    }

    #[test]
    fn credential_query_parameters_are_redacted_and_others_kept() {
        let query = query_to_map(b"token=abc&Api_Key=k&key=1&key=2&currency=USD&sig=x");
        assert_eq!(
            Value::Object(query),
            json!({"token": REDACTED, "Api_Key": REDACTED, "key": REDACTED,
                   "currency": "USD", "sig": REDACTED})
        );
    }
}
