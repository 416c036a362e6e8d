//! Webhook filters: `config.filter` decides whether a request starts a run (docs/webhooks.md).
//!
//! A filter is a condition over the request's `trigger_input`, read with the same paths as
//! [input mapping](crate::mapping): a body path (`ref`, `repository.full_name`, `commits[0].id`),
//! `$body...`, `$headers.<name>`, `$query.<name>`, `$path` or `$method`. Headers, the query, the
//! path and the method are strings; so are the redacted headers (`"[redacted]"`).
//!
//! | condition | holds when the value at `path` |
//! |---|---|
//! | `{"path": P, "equals": V}` | is `V`, compared as JSON (`5` is `5.0`, not `"5"`) |
//! | `{"path": P, "in": [V, ...]}` | equals one of the values |
//! | `{"path": P, "exists": true}` | is present (`null` included); `false`: is absent |
//! | `{"path": P, "prefix": "s"}` | is a string starting with `s` |
//! | `{"path": P, "matches": "re"}` | is a string the regex matches somewhere (anchor with `^…$`) |
//! | `{"all": [C, ...]}`, `{"any": [C, ...]}`, `{"not": C}` | every / some / not the condition |
//!
//! A filter is checked when the configuration is parsed: every problem is reported at once, at
//! its path (`config.filter.all[1].matches`). Limits keep a hostile configuration cheap: at most
//! [`MAX_CONDITIONS`] conditions nested at most [`MAX_DEPTH`] deep, patterns of at most
//! [`MAX_PATTERN_CHARS`] characters compiled (once, here) into at most [`REGEX_SIZE_LIMIT`] bytes.
//! Evaluating a filter reads the request in place, copying nothing.
//!
//! ```
//! use serde_json::json;
//! use triggerd_domain::filter::Filter;
//! use triggerd_domain::mapping::trigger_input;
//!
//! let filter = Filter::parse(&json!({"all": [
//!     {"path": "$headers.x-github-event", "equals": "push"},
//!     {"path": "ref", "equals": "refs/heads/main"}
//! ]}), "config.filter").unwrap();
//! let push = trigger_input("POST", "", json!({}), json!({"x-github-event": "push"}),
//!                          json!({"ref": "refs/heads/main"}));
//! let ping = trigger_input("POST", "", json!({}), json!({"x-github-event": "ping"}),
//!                          json!({"zen": "Design for failure."}));
//! assert!(filter.matches(&push));
//! assert!(!filter.matches(&ping));
//!
//! let problems = Filter::parse(&json!({"any": [{"path": "ref", "matches": "("}]}),
//!                              "config.filter").unwrap_err();
//! assert_eq!(problems[0].path, "config.filter.any[0].matches");
//! ```

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use crate::Problem;
use crate::inputs::describe;
use crate::mapping::parse_source;
use crate::path::Path;

/// Most conditions (leaves and `all`/`any`/`not` alike) in one filter.
pub const MAX_CONDITIONS: usize = 64;
/// Deepest nesting of conditions: the top condition is at depth 1.
pub const MAX_DEPTH: usize = 8;
/// Longest `matches` pattern, in characters.
pub const MAX_PATTERN_CHARS: usize = 1_000;
/// Largest compiled `matches` program (`RegexBuilder::size_limit`), in bytes.
pub const REGEX_SIZE_LIMIT: usize = 64 * 1024;
/// Largest lazy-DFA cache of one `matches` pattern (`RegexBuilder::dfa_size_limit`), in bytes.
const REGEX_DFA_SIZE_LIMIT: usize = 256 * 1024;
/// Most values in one `in` list.
pub const MAX_IN_VALUES: usize = 256;

const TESTS: [&str; 5] = ["equals", "in", "exists", "prefix", "matches"];
const COMBINATORS: [&str; 3] = ["all", "any", "not"];
const SHAPE: &str = "a condition is {\"path\", \"equals\"|\"in\"|\"exists\"|\"prefix\"|\"matches\"} or {\"all\": [...]}, {\"any\": [...]}, {\"not\": {...}}";

/// A validated `config.filter`: compiled once, evaluated per request with [`Filter::matches`].
///
/// Two filters are equal when they were written the same ([`Filter::as_json`]).
#[derive(Debug, Clone)]
pub struct Filter {
    root: Condition,
    raw: Value,
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

#[derive(Debug, Clone)]
enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Test { path: Path, test: Test },
}

#[derive(Debug, Clone)]
enum Test {
    Equals(Value),
    In(Vec<Value>),
    Exists(bool),
    Prefix(String),
    Matches(Regex),
}

impl Filter {
    /// Parses and checks a filter; `at` is where it sits in the submitted document (e.g.
    /// `config.filter`), the prefix of every problem's path.
    pub fn parse(value: &Value, at: &str) -> Result<Filter, Vec<Problem>> {
        let mut parser = Parser {
            problems: Vec::new(),
            conditions: 0,
        };
        let root = parser.condition(value, at, 1);
        if parser.conditions > MAX_CONDITIONS {
            parser.problems.insert(
                0,
                Problem::new(
                    at,
                    format!(
                        "has more than {MAX_CONDITIONS} conditions: use `in` for lists of values"
                    ),
                ),
            );
        }
        match root {
            Some(root) if parser.problems.is_empty() => Ok(Filter {
                root,
                raw: value.clone(),
            }),
            _ => Err(parser.problems),
        }
    }

    /// Whether the request (its `trigger_input`, see [`trigger_input`](crate::mapping::trigger_input))
    /// passes the filter.
    pub fn matches(&self, trigger_input: &Value) -> bool {
        self.root.holds(trigger_input)
    }

    /// The filter as it was written (stored and shown back by the API).
    pub fn as_json(&self) -> &Value {
        &self.raw
    }
}

impl Condition {
    fn holds(&self, input: &Value) -> bool {
        match self {
            Condition::All(items) => items.iter().all(|c| c.holds(input)),
            Condition::Any(items) => items.iter().any(|c| c.holds(input)),
            Condition::Not(inner) => !inner.holds(input),
            Condition::Test { path, test } => test.holds(path.lookup(input)),
        }
    }
}

impl Test {
    fn holds(&self, found: Option<&Value>) -> bool {
        match (self, found) {
            (Test::Exists(want), found) => found.is_some() == *want,
            (_, None) => false,
            (Test::Equals(expected), Some(v)) => json_eq(v, expected),
            (Test::In(values), Some(v)) => values.iter().any(|e| json_eq(v, e)),
            (Test::Prefix(prefix), Some(Value::String(s))) => s.starts_with(prefix.as_str()),
            (Test::Matches(re), Some(Value::String(s))) => re.is_match(s),
            (Test::Prefix(_) | Test::Matches(_), Some(_)) => false,
        }
    }
}

/// JSON equality where numbers compare by value (`5 == 5.0`); strings never equal numbers.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || ((x.is_f64() || y.is_f64()) && x.as_f64() == y.as_f64())
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

struct Parser {
    problems: Vec<Problem>,
    /// Conditions seen so far; past [`MAX_CONDITIONS`] nothing more is parsed.
    conditions: usize,
}

impl Parser {
    fn problem(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(at, message));
    }

    fn condition(&mut self, value: &Value, at: &str, depth: usize) -> Option<Condition> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return None;
        }
        if depth > MAX_DEPTH {
            self.problem(
                at,
                format!("conditions are nested more than {MAX_DEPTH} deep: flatten the all/any/not levels"),
            );
            return None;
        }
        let Value::Object(map) = value else {
            self.problem(
                at,
                format!(
                    "must be a condition object, got {}: {SHAPE}",
                    describe(value)
                ),
            );
            return None;
        };
        if map.contains_key("path") {
            return self.test(map, at);
        }
        let combinators: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| COMBINATORS.contains(k))
            .collect();
        let mut ok = true;
        for key in map.keys() {
            if COMBINATORS.contains(&key.as_str()) {
                continue;
            }
            ok = false;
            if TESTS.contains(&key.as_str()) {
                self.problem(
                    format!("{at}.path"),
                    format!("is required with \"{key}\": the value to test, e.g. \"ref\" or \"$headers.x-github-event\""),
                );
            } else {
                self.problem(format!("{at}.{key}"), unknown_operator(key));
            }
        }
        match combinators.as_slice() {
            [] if map.is_empty() => {
                self.problem(at, format!("is empty: {SHAPE}"));
                None
            }
            [] => None,
            [one] if ok => self.combinator(one, &map[*one], at, depth),
            [_] => None,
            several => {
                self.problem(
                    at,
                    format!(
                        "holds {} at once: write one combinator per object and nest them",
                        several.join(" and ")
                    ),
                );
                None
            }
        }
    }

    fn combinator(
        &mut self,
        name: &str,
        value: &Value,
        at: &str,
        depth: usize,
    ) -> Option<Condition> {
        let here = format!("{at}.{name}");
        if name == "not" {
            return self
                .condition(value, &here, depth + 1)
                .map(|c| Condition::Not(Box::new(c)));
        }
        let items = match value {
            Value::Array(items) if !items.is_empty() => items,
            Value::Array(_) => {
                self.problem(here, "must hold at least one condition");
                return None;
            }
            other => {
                self.problem(
                    here,
                    format!("must be an array of conditions, got {}", describe(other)),
                );
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len().min(MAX_CONDITIONS));
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.condition(item, &format!("{here}[{i}]"), depth + 1) {
                Some(c) => out.push(c),
                None => ok = false,
            }
            if self.conditions > MAX_CONDITIONS {
                return None;
            }
        }
        if !ok {
            return None;
        }
        Some(if name == "all" {
            Condition::All(out)
        } else {
            Condition::Any(out)
        })
    }

    fn test(&mut self, map: &Map<String, Value>, at: &str) -> Option<Condition> {
        let path_at = format!("{at}.path");
        let path = match &map["path"] {
            Value::String(text) => match parse_source(text) {
                Ok(source) => Some(source.path),
                Err(message) => {
                    self.problem(path_at, message);
                    None
                }
            },
            other => {
                self.problem(
                    path_at,
                    format!(
                        "must be a path string such as \"ref\" or \"$headers.x-github-event\", got {}",
                        describe(other)
                    ),
                );
                None
            }
        };
        let mut tests = Vec::new();
        for (key, value) in map {
            match key.as_str() {
                "path" => {}
                k if TESTS.contains(&k) => tests.push((k, value)),
                k if COMBINATORS.contains(&k) => self.problem(
                    format!("{at}.{k}"),
                    format!("a condition with a path cannot also be \"{k}\": put the test inside the \"{k}\" list"),
                ),
                k => self.problem(format!("{at}.{k}"), unknown_operator(k)),
            }
        }
        let (name, value) = match tests.as_slice() {
            [one] => *one,
            // An unknown operator was reported already: that is the test the user meant.
            [] if map.len() > 1 => return None,
            [] => {
                self.problem(
                    at,
                    "needs a test next to \"path\": equals, in, exists, prefix or matches",
                );
                return None;
            }
            several => {
                let names: Vec<&str> = several.iter().map(|(k, _)| *k).collect();
                self.problem(
                    at,
                    format!(
                        "has several tests ({}): put each in its own condition inside {{\"all\": [...]}}",
                        names.join(", ")
                    ),
                );
                return None;
            }
        };
        let test = self.test_value(name, value, &format!("{at}.{name}"));
        Some(Condition::Test {
            path: path?,
            test: test?,
        })
    }

    fn test_value(&mut self, name: &str, value: &Value, at: &str) -> Option<Test> {
        match (name, value) {
            ("equals", v) => Some(Test::Equals(v.clone())),
            ("in", Value::Array(values)) if values.len() <= MAX_IN_VALUES => {
                Some(Test::In(values.clone()))
            }
            ("in", Value::Array(values)) => {
                self.problem(
                    at,
                    format!(
                        "has {} values, at most {MAX_IN_VALUES} are allowed",
                        values.len()
                    ),
                );
                None
            }
            ("exists", Value::Bool(b)) => Some(Test::Exists(*b)),
            ("prefix", Value::String(s)) => Some(Test::Prefix(s.clone())),
            ("matches", Value::String(pattern)) => self.regex(pattern, at).map(Test::Matches),
            (name, other) => {
                let expected = match name {
                    "in" => "an array of values",
                    "exists" => "true or false",
                    "prefix" => "a string",
                    _ => "a regular expression string",
                };
                self.problem(at, format!("must be {expected}, got {}", describe(other)));
                None
            }
        }
    }

    fn regex(&mut self, pattern: &str, at: &str) -> Option<Regex> {
        let chars = pattern.chars().count();
        if chars > MAX_PATTERN_CHARS {
            self.problem(
                at,
                format!(
                    "the pattern has {chars} characters, at most {MAX_PATTERN_CHARS} are allowed"
                ),
            );
            return None;
        }
        let built = RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
            .build();
        match built {
            Ok(re) => Some(re),
            Err(regex::Error::CompiledTooBig(_)) => {
                self.problem(
                    at,
                    format!(
                        "the pattern compiles to more than {} KiB: use fewer or smaller repetitions (`{{1000}}`) and classes",
                        REGEX_SIZE_LIMIT / 1024
                    ),
                );
                None
            }
            Err(e) => {
                // The syntax error's text spans several lines (pattern, caret, reason): keep
                // the reason.
                let text = e.to_string();
                let reason = text
                    .lines()
                    .find_map(|l| l.strip_prefix("error: "))
                    .unwrap_or(text.trim());
                self.problem(at, format!("not a valid regular expression: {reason}"));
                None
            }
        }
    }
}

fn unknown_operator(key: &str) -> String {
    format!("unknown operator \"{key}\": {SHAPE}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::trigger_input;
    use serde_json::json;

    fn request() -> Value {
        trigger_input(
            "POST",
            "orders/42",
            json!({"source": "shop", "tag": ["a", "b"]}),
            json!({"x-github-event": "push", "authorization": "[redacted]"}),
            json!({"ref": "refs/heads/main", "size": 5, "ratio": 0.5, "before": null,
                   "repository": {"full_name": "acme/site", "topics": ["web", "ci"]},
                   "commits": [{"id": "abc"}]}),
        )
    }

    fn holds(filter: Value) -> bool {
        Filter::parse(&filter, "config.filter")
            .unwrap_or_else(|p| panic!("{filter}: {p:?}"))
            .matches(&request())
    }

    fn problems(filter: Value) -> Vec<(String, String)> {
        Filter::parse(&filter, "config.filter")
            .expect_err("the filter should be refused")
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect()
    }

    fn paths(filter: Value) -> Vec<String> {
        problems(filter).into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn equals_compares_as_json() {
        assert!(holds(json!({"path": "ref", "equals": "refs/heads/main"})));
        assert!(holds(json!({"path": "size", "equals": 5})));
        assert!(holds(json!({"path": "size", "equals": 5.0})));
        assert!(!holds(json!({"path": "size", "equals": "5"})));
        assert!(holds(json!({"path": "ratio", "equals": 0.5})));
        assert!(holds(json!({"path": "before", "equals": null})));
        assert!(!holds(json!({"path": "missing", "equals": null})));
        assert!(holds(
            json!({"path": "repository.topics", "equals": ["web", "ci"]})
        ));
        assert!(holds(
            json!({"path": "commits[0]", "equals": {"id": "abc"}})
        ));
        assert!(holds(json!({"path": "$body.size", "equals": 5})));
    }

    #[test]
    fn headers_query_path_and_method_are_strings() {
        assert!(holds(
            json!({"path": "$headers.X-GitHub-Event", "equals": "push"})
        ));
        assert!(holds(json!({"path": "$query.source", "equals": "shop"})));
        assert!(holds(json!({"path": "$query.tag", "equals": ["a", "b"]})));
        assert!(holds(json!({"path": "$path", "equals": "orders/42"})));
        assert!(holds(json!({"path": "$method", "equals": "POST"})));
        assert!(holds(
            json!({"path": "$headers.authorization", "equals": "[redacted]"})
        ));
    }

    #[test]
    fn in_matches_any_listed_value() {
        assert!(holds(
            json!({"path": "$headers.x-github-event", "in": ["push", "release"]})
        ));
        assert!(!holds(
            json!({"path": "$headers.x-github-event", "in": ["ping"]})
        ));
        assert!(holds(json!({"path": "size", "in": [1, 5.0]})));
        assert!(!holds(json!({"path": "missing", "in": [null]})));
        assert!(!holds(json!({"path": "ref", "in": []})));
    }

    #[test]
    fn exists_tells_present_from_absent() {
        assert!(holds(
            json!({"path": "repository.full_name", "exists": true})
        ));
        assert!(holds(json!({"path": "before", "exists": true})));
        assert!(holds(json!({"path": "missing.deeper", "exists": false})));
        assert!(!holds(json!({"path": "ref", "exists": false})));
        assert!(holds(json!({"path": "$query.page", "exists": false})));
    }

    #[test]
    fn prefix_reads_strings_only() {
        assert!(holds(json!({"path": "ref", "prefix": "refs/heads/"})));
        assert!(!holds(json!({"path": "ref", "prefix": "refs/tags/"})));
        assert!(!holds(json!({"path": "size", "prefix": "5"})));
        assert!(!holds(json!({"path": "missing", "prefix": ""})));
    }

    #[test]
    fn matches_searches_strings_with_a_regex() {
        assert!(holds(
            json!({"path": "ref", "matches": "^refs/heads/(main|master)$"})
        ));
        assert!(holds(
            json!({"path": "repository.full_name", "matches": "site"})
        ));
        assert!(holds(
            json!({"path": "repository.full_name", "matches": "(?i)ACME/"})
        ));
        assert!(!holds(json!({"path": "ref", "matches": "^main$"})));
        assert!(!holds(json!({"path": "size", "matches": "5"})));
        assert!(holds(json!({"path": "$method", "matches": "^P(OST|UT)$"})));
    }

    #[test]
    fn combinators_combine() {
        let main_push = json!({"all": [
            {"path": "$headers.x-github-event", "equals": "push"},
            {"path": "ref", "equals": "refs/heads/main"}
        ]});
        assert!(holds(main_push.clone()));
        assert!(!holds(json!({"not": main_push})));
        assert!(!holds(json!({"all": [
            {"path": "$headers.x-github-event", "equals": "push"},
            {"path": "ref", "equals": "refs/heads/dev"}
        ]})));
        assert!(holds(json!({"any": [
            {"path": "ref", "equals": "refs/heads/dev"},
            {"path": "size", "equals": 5}
        ]})));
        assert!(!holds(json!({"any": [
            {"path": "ref", "equals": "refs/heads/dev"},
            {"not": {"path": "size", "exists": true}}
        ]})));
        assert!(holds(
            json!({"not": {"not": {"path": "ref", "exists": true}}})
        ));
    }

    #[test]
    fn the_filter_is_kept_as_written() {
        let raw = json!({"any": [{"path": "$headers.X-Event", "in": ["a"]}]});
        let filter = Filter::parse(&raw, "config.filter").unwrap();
        assert_eq!(filter.as_json(), &raw);
        assert_eq!(filter, Filter::parse(&raw, "config.filter").unwrap());
    }

    #[test]
    fn every_problem_is_reported_at_its_path() {
        let got = problems(json!({"all": [
            {"path": "a..b", "equals": 1},
            {"path": "ref", "matches": "(unclosed"},
            {"path": "ref", "startswith": "x"},
            {"path": "$cookies.x", "exists": "yes"},
            {"equals": 1},
            {"path": "ref"},
            {"path": "ref", "equals": 1, "prefix": "r"},
            {"any": []},
            {"not": 3},
            {"all": [], "any": []},
            {"nope": 1},
            {"path": 7, "in": "x"},
            {"path": "ref", "prefix": 1, "all": []},
            {}
        ]}));
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "config.filter.all[0].path",
                "config.filter.all[1].matches",
                "config.filter.all[2].startswith",
                "config.filter.all[3].path",
                "config.filter.all[3].exists",
                "config.filter.all[4].path",
                "config.filter.all[5]",
                "config.filter.all[6]",
                "config.filter.all[7].any",
                "config.filter.all[8].not",
                "config.filter.all[9]",
                "config.filter.all[10].nope",
                "config.filter.all[11].path",
                "config.filter.all[11].in",
                "config.filter.all[12].all",
                "config.filter.all[12].prefix",
                "config.filter.all[13]",
            ],
            "{got:#?}"
        );
        assert!(got[0].1.starts_with("bad path \"a..b\""), "{}", got[0].1);
        assert_eq!(got[1].1, "not a valid regular expression: unclosed group");
        assert!(got[2].1.starts_with("unknown operator \"startswith\""));
        assert!(got[3].1.starts_with("unknown source \"$cookies\""));
        assert_eq!(got[4].1, "must be true or false, got a string");
        assert!(got[7].1.starts_with("has several tests (equals, prefix)"));
        assert_eq!(got[8].1, "must hold at least one condition");
    }

    #[test]
    fn a_filter_must_be_an_object() {
        assert_eq!(paths(json!("ref == main")), vec!["config.filter"]);
        assert_eq!(paths(json!([])), vec!["config.filter"]);
        assert_eq!(
            paths(json!({"path": "$path.x", "exists": true})),
            vec!["config.filter.path"]
        );
    }

    #[test]
    fn large_or_deep_trees_are_refused() {
        let leaf = json!({"path": "ref", "exists": true});
        let wide = json!({"any": vec![leaf.clone(); MAX_CONDITIONS - 1]});
        assert!(Filter::parse(&wide, "config.filter").is_ok());
        let too_wide = json!({"any": vec![leaf.clone(); MAX_CONDITIONS]});
        let got = problems(too_wide);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "config.filter");
        assert!(
            got[0].1.starts_with("has more than 64 conditions"),
            "{}",
            got[0].1
        );
        let huge = json!({"all": vec![leaf.clone(); 100_000]});
        assert_eq!(paths(huge), vec!["config.filter"]);

        let mut deep = leaf.clone();
        for _ in 1..MAX_DEPTH {
            deep = json!({"not": deep});
        }
        assert!(Filter::parse(&deep, "config.filter").is_ok());
        let too_deep = json!({"all": [deep]});
        let got = problems(too_deep);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            got[0].0,
            format!("config.filter.all[0]{}", ".not".repeat(MAX_DEPTH - 1))
        );
        // A document nested far deeper than the limit is refused without walking it all.
        let mut abyss = leaf;
        for _ in 0..1_000 {
            abyss = json!({"not": abyss});
        }
        assert_eq!(problems(abyss).len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(path in ".{0,40}", pattern in ".{0,40}", op in 0usize..5) {
            let value = match op {
                0 => json!({"path": path, "matches": pattern}),
                1 => json!({"path": path, "prefix": pattern}),
                2 => json!({"not": {"path": pattern, "exists": true}}),
                3 => json!({"any": [{"path": path, "in": [pattern]}]}),
                _ => json!({path: pattern}),
            };
            if let Ok(filter) = Filter::parse(&value, "config.filter") {
                let _ = filter.matches(&request());
            }
        }
    }

    #[test]
    fn patterns_are_size_limited() {
        let long = "a".repeat(MAX_PATTERN_CHARS + 1);
        let got = problems(json!({"path": "ref", "matches": long}));
        assert_eq!(got[0].0, "config.filter.matches");
        assert!(got[0].1.contains("at most 1000"), "{}", got[0].1);
        // Short to write, large once compiled: nested counted repetitions.
        let got = problems(json!({"path": "ref", "matches": "(\\w{100}){100}"}));
        assert_eq!(got[0].0, "config.filter.matches");
        assert!(got[0].1.contains("more than 64 KiB"), "{}", got[0].1);
        let fits = "[a-z]{1,50}@example\\.com";
        assert!(Filter::parse(&json!({"path": "ref", "matches": fits}), "f").is_ok());
        let too_many = json!({"path": "ref", "in": vec![1; MAX_IN_VALUES + 1]});
        assert_eq!(paths(too_many), vec!["config.filter.in"]);
    }
}
