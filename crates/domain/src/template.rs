//! Templates: JSON values whose strings may hold `{{ path }}` expressions (the user's guide
//! is `docs/templates.md`).
//!
//! An expression is a path, optionally followed by one filter, `default`:
//! `{{ trigger.headers.x-event | default: "unknown" }}`. The default is one JSON literal (a
//! string in double quotes, a number, `true`, `false` or `null`) and is used when the path reads
//! nothing **or reads `null`**. No other filter exists; any other is a [`SyntaxError`].
//!
//! A string that is exactly one expression keeps the JSON type of the value it reads
//! (`"{{ input.count }}"` renders the number `3`); an expression inside longer text is rendered as
//! text (strings as they are, other values as compact JSON, `null` as `null`). A path that reads
//! nothing, without a default, is an error ([`RenderError::MissingValue`]), never an empty string:
//! a step whose template fails fails with code `template_error`.
//!
//! Templates are compiled once (when a definition is validated) and rendered many times.
//!
//! ```
//! use serde_json::json;
//! use triggerd_domain::template::Template;
//!
//! let t = Template::compile(&json!({"to": "{{ input.email }}", "n": "{{ input.n }}",
//!                                   "text": "hello {{ input.email }}",
//!                                   "event": "{{ trigger.headers.x-event | default: \"unknown\" }}"})).unwrap();
//! let scope = json!({"input": {"email": "a@example.com", "n": 3}, "trigger": {"headers": {}}});
//! assert_eq!(t.render(&scope).unwrap(),
//!            json!({"to": "a@example.com", "n": 3, "text": "hello a@example.com",
//!                   "event": "unknown"}));
//! ```

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::path::{Path, PathError};

/// The roots an expression may start with.
pub const ROOTS: [&str; 6] = ["input", "trigger", "context", "steps", "run", "deployment"];

/// The filters an expression may end with (`path | default: <JSON literal>`).
pub const FILTERS: [&str; 1] = ["default"];

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    node: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// A subtree without any expression: rendered by cloning.
    Literal(Value),
    /// A string that is exactly one expression: keeps the value's JSON type.
    Expr(Expression),
    /// A string with text and expressions mixed.
    Text(Vec<Part>),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Expr(Expression),
}

/// One `{{ ... }}` expression: the path it reads and, when written with `| default: <value>`,
/// the value it renders instead when the path reads nothing or `null`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    path: Path,
    fallback: Option<Value>,
    location: String,
}

impl Expression {
    /// The path read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `default` value, if the expression has one.
    pub fn fallback(&self) -> Option<&Value> {
        self.fallback.as_ref()
    }

    /// Where the expression sits inside the template value, as a path suffix such as
    /// `.body.text` or `[2]` (empty for the template itself) — as in [`SyntaxError::location`].
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The value read from `scope`: the path's value, or the default when the path reads nothing
    /// or `null`.
    fn resolve<'a>(&'a self, scope: &'a Value) -> Result<&'a Value, RenderError> {
        match (self.path.lookup(scope), &self.fallback) {
            (None | Some(Value::Null), Some(fallback)) => Ok(fallback),
            (Some(value), _) => Ok(value),
            (None, None) => Err(RenderError::MissingValue {
                path: self.path.to_string(),
            }),
        }
    }
}

/// A syntax problem found while compiling a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct SyntaxError {
    /// Where inside the template value, as a path suffix such as `.body.text` or `[2]`
    /// (empty for the template itself).
    pub location: String,
    /// What is wrong.
    pub kind: SyntaxErrorKind,
}

/// The kinds of template syntax problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxErrorKind {
    /// `{{` without a matching `}}`.
    #[error("`{{{{` is not closed: expected `{{{{ path }}}}`")]
    Unclosed,
    /// `{{ }}` with nothing inside.
    #[error("empty expression `{{{{ }}}}`: put a path inside, such as `{{{{ input.email }}}}`")]
    EmptyExpression,
    /// The expression is not a valid path.
    #[error("bad path `{expression}`: {source}")]
    BadPath {
        /// The expression text.
        expression: String,
        /// Why it did not parse.
        source: PathError,
    },
    /// The path does not start with a known root.
    #[error(
        "`{expression}` starts with unknown root `{root}`: expected one of input, trigger, context, steps, run, deployment"
    )]
    UnknownRoot {
        /// The expression text.
        expression: String,
        /// The root found.
        root: String,
    },
    /// A `|` followed by something other than `default`.
    #[error(
        "`{expression}`: unknown filter {}: the only filter is `default`, written `path | default: <value>` as in `trigger.headers.x-event | default: \"unknown\"`",
        shown(filter)
    )]
    UnknownFilter {
        /// The expression text.
        expression: String,
        /// The filter name found (empty when none was given).
        filter: String,
    },
    /// `| default` without one JSON literal after its `:`.
    #[error(
        "`{expression}`: `default` takes one JSON literal after a colon (a string in double quotes, a number, true, false or null), as in `| default: \"unknown\"`; found {}",
        shown(found)
    )]
    BadDefault {
        /// The expression text.
        expression: String,
        /// What followed `default`.
        found: String,
    },
    /// Text after the default value: a second filter, or anything else.
    #[error(
        "`{expression}`: unexpected {} after the default value: an expression is `path` or `path | default: <value>`, with one filter at most",
        shown(found)
    )]
    AfterDefault {
        /// The expression text.
        expression: String,
        /// The text found after the default value.
        found: String,
    },
}

/// Text quoted in backticks for a message, or `nothing` when empty.
fn shown(text: &str) -> String {
    if text.is_empty() {
        "nothing".to_owned()
    } else {
        format!("`{text}`")
    }
}

/// Why rendering failed. The run step fails with code `template_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The path read no value, and the expression has no `default`.
    #[error(
        "`{{{{ {path} }}}}` refers to a value that does not exist (write `{{{{ {path} | default: <value> }}}}` where it may be missing)"
    )]
    MissingValue {
        /// The path as written.
        path: String,
    },
}

impl Template {
    /// Compiles a JSON value, reporting every syntax problem found.
    pub fn compile(value: &Value) -> Result<Template, Vec<SyntaxError>> {
        let mut errors = Vec::new();
        let mut location = String::new();
        let node = compile_node(value, &mut location, &mut errors);
        if errors.is_empty() {
            Ok(Template { node })
        } else {
            Err(errors)
        }
    }

    /// A template that renders `value` unchanged.
    pub fn literal(value: Value) -> Template {
        Template {
            node: Node::Literal(value),
        }
    }

    /// True when the template holds no expression.
    pub fn is_static(&self) -> bool {
        matches!(self.node, Node::Literal(_))
    }

    /// Every expression path in the template, in document order.
    pub fn expressions(&self) -> Vec<&Path> {
        self.reads().into_iter().map(Expression::path).collect()
    }

    /// Every expression in the template (its path, `default` and location), in document order.
    pub fn reads(&self) -> Vec<&Expression> {
        let mut out = Vec::new();
        collect_expressions(&self.node, &mut out);
        out
    }

    /// Renders against `scope`, a JSON object whose keys are the roots (`input`, `trigger`, ...).
    pub fn render(&self, scope: &Value) -> Result<Value, RenderError> {
        render_node(&self.node, scope)
    }

    /// Renders and turns the result into text (for URLs, header values, argv entries): a string
    /// stays as it is, other values become compact JSON.
    pub fn render_text(&self, scope: &Value) -> Result<String, RenderError> {
        Ok(match self.render(scope)? {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }
}

fn collect_expressions<'t>(node: &'t Node, out: &mut Vec<&'t Expression>) {
    match node {
        Node::Literal(_) => {}
        Node::Expr(e) => out.push(e),
        Node::Text(parts) => out.extend(parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })),
        Node::Array(items) => items.iter().for_each(|n| collect_expressions(n, out)),
        Node::Object(fields) => fields.iter().for_each(|(_, n)| collect_expressions(n, out)),
    }
}

fn compile_node(value: &Value, location: &mut String, errors: &mut Vec<SyntaxError>) -> Node {
    match value {
        Value::String(s) => compile_string(s, location, errors),
        Value::Array(items) => {
            let len = location.len();
            let nodes: Vec<Node> = items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let _ = write!(location, "[{i}]");
                    let node = compile_node(v, location, errors);
                    location.truncate(len);
                    node
                })
                .collect();
            if nodes.iter().all(|n| matches!(n, Node::Literal(_))) {
                Node::Literal(value.clone())
            } else {
                Node::Array(nodes)
            }
        }
        Value::Object(map) => {
            let len = location.len();
            let fields: Vec<(String, Node)> = map
                .iter()
                .map(|(k, v)| {
                    let key = Path::from_segments(vec![crate::path::Segment::Key(k.clone())])
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    if key.starts_with('[') {
                        location.push_str(&key);
                    } else {
                        location.push('.');
                        location.push_str(&key);
                    }
                    let node = compile_node(v, location, errors);
                    location.truncate(len);
                    (k.clone(), node)
                })
                .collect();
            if fields.iter().all(|(_, n)| matches!(n, Node::Literal(_))) {
                Node::Literal(value.clone())
            } else {
                Node::Object(fields)
            }
        }
        other => Node::Literal(other.clone()),
    }
}

fn compile_string(s: &str, location: &str, errors: &mut Vec<SyntaxError>) -> Node {
    if !s.contains("{{") {
        return Node::Literal(Value::String(s.to_owned()));
    }
    let mut parts = Vec::new();
    let mut rest = s;
    let mut failed = false;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let after_open = &rest[open + 2..];
        let Some(close) = after_open.find("}}") else {
            errors.push(SyntaxError {
                location: location.to_owned(),
                kind: SyntaxErrorKind::Unclosed,
            });
            return Node::Literal(Value::String(s.to_owned()));
        };
        let expression = after_open[..close].trim();
        match parse_expression(expression, location) {
            Ok(expr) => parts.push(Part::Expr(expr)),
            Err(kind) => {
                failed = true;
                errors.push(SyntaxError {
                    location: location.to_owned(),
                    kind,
                });
            }
        }
        rest = &after_open[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    if failed {
        return Node::Literal(Value::String(s.to_owned()));
    }
    match parts.as_slice() {
        [Part::Expr(expr)] => Node::Expr(expr.clone()),
        _ => Node::Text(parts),
    }
}

/// Parses the inside of `{{ ... }}` (already trimmed): `path` or `path | default: <literal>`.
fn parse_expression(expression: &str, location: &str) -> Result<Expression, SyntaxErrorKind> {
    let (path_text, filter) = match split_at_pipe(expression) {
        Some(at) => (expression[..at].trim_end(), Some(&expression[at + 1..])),
        None => (expression, None),
    };
    if path_text.is_empty() {
        return Err(SyntaxErrorKind::EmptyExpression);
    }
    let path = Path::parse(path_text).map_err(|source| SyntaxErrorKind::BadPath {
        expression: path_text.to_owned(),
        source,
    })?;
    match path.root() {
        Some(root) if ROOTS.contains(&root) => {}
        root => {
            return Err(SyntaxErrorKind::UnknownRoot {
                expression: path_text.to_owned(),
                root: root.unwrap_or("[...]").to_owned(),
            });
        }
    }
    let fallback = match filter {
        None => None,
        Some(filter) => Some(parse_default(expression, filter)?),
    };
    Ok(Expression {
        path,
        fallback,
        location: location.to_owned(),
    })
}

/// The byte offset of the first `|` outside a quoted key (`["a|b"]` is a key, not a filter).
fn split_at_pipe(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '|' => return Some(i),
            None => {}
        }
    }
    None
}

/// The name of the filter at the start of `text` (after the `|`), and what follows it.
fn filter_name(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(text.len());
    (&text[..end], &text[end..])
}

/// Parses what follows the `|`: `default: <JSON literal>`, and nothing after it.
fn parse_default(expression: &str, filter: &str) -> Result<Value, SyntaxErrorKind> {
    let (name, rest) = filter_name(filter);
    if name != "default" {
        return Err(SyntaxErrorKind::UnknownFilter {
            expression: expression.to_owned(),
            filter: if name.is_empty() {
                filter.trim().to_owned()
            } else {
                name.to_owned()
            },
        });
    }
    let bad_default = || SyntaxErrorKind::BadDefault {
        expression: expression.to_owned(),
        found: rest.trim().to_owned(),
    };
    let literal = rest
        .trim_start()
        .strip_prefix(':')
        .ok_or_else(bad_default)?;
    let mut stream = serde_json::Deserializer::from_str(literal).into_iter::<Value>();
    let value = match stream.next() {
        Some(Ok(v)) if !v.is_array() && !v.is_object() => v,
        Some(Ok(_)) | Some(Err(_)) | None => {
            return Err(SyntaxErrorKind::BadDefault {
                expression: expression.to_owned(),
                found: literal.trim().to_owned(),
            });
        }
    };
    let after = literal[stream.byte_offset()..].trim();
    if after.is_empty() {
        return Ok(value);
    }
    // A second filter: name it when it is not one that exists.
    if let Some(next) = after.strip_prefix('|') {
        let (name, _) = filter_name(next);
        if !FILTERS.contains(&name) {
            return Err(SyntaxErrorKind::UnknownFilter {
                expression: expression.to_owned(),
                filter: if name.is_empty() {
                    next.trim().to_owned()
                } else {
                    name.to_owned()
                },
            });
        }
    }
    Err(SyntaxErrorKind::AfterDefault {
        expression: expression.to_owned(),
        found: after.to_owned(),
    })
}

fn render_node(node: &Node, scope: &Value) -> Result<Value, RenderError> {
    Ok(match node {
        Node::Literal(v) => v.clone(),
        Node::Expr(expr) => expr.resolve(scope)?.clone(),
        Node::Text(parts) => {
            let mut out = String::new();
            for part in parts {
                match part {
                    Part::Text(t) => out.push_str(t),
                    Part::Expr(expr) => match expr.resolve(scope)? {
                        Value::String(s) => out.push_str(s),
                        other => {
                            let _ = write!(out, "{other}");
                        }
                    },
                }
            }
            Value::String(out)
        }
        Node::Array(items) => Value::Array(
            items
                .iter()
                .map(|n| render_node(n, scope))
                .collect::<Result<_, _>>()?,
        ),
        Node::Object(fields) => {
            let mut map = Map::with_capacity(fields.len());
            for (k, n) in fields {
                map.insert(k.clone(), render_node(n, scope)?);
            }
            Value::Object(map)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn scope() -> Value {
        json!({
            "input": {"email": "a@example.com", "n": 3, "flag": true, "none": null,
                      "list": [1, 2], "obj": {"k": "v"}},
            "steps": {"enrich": {"output": {"body": {"name": "Ada"}}}},
            "trigger": {"headers": {"x-github-event": "push"}}
        })
    }

    fn render(t: Value) -> Result<Value, RenderError> {
        Template::compile(&t).unwrap().render(&scope())
    }

    #[test]
    fn single_expression_keeps_json_type() {
        assert_eq!(render(json!("{{ input.n }}")).unwrap(), json!(3));
        assert_eq!(render(json!("{{input.flag}}")).unwrap(), json!(true));
        assert_eq!(render(json!("{{ input.list }}")).unwrap(), json!([1, 2]));
        assert_eq!(render(json!("{{ input.obj }}")).unwrap(), json!({"k": "v"}));
        assert_eq!(render(json!("{{ input.none }}")).unwrap(), Value::Null);
    }

    #[test]
    fn expressions_inside_text_render_as_text() {
        assert_eq!(
            render(json!("order for {{ steps.enrich.output.body.name }}!")).unwrap(),
            json!("order for Ada!")
        );
        assert_eq!(
            render(json!(
                "{{ input.n }}/{{ input.flag }} {{ input.obj }} {{ input.none }}"
            ))
            .unwrap(),
            json!("3/true {\"k\":\"v\"} null")
        );
        assert_eq!(
            render(json!("event={{ trigger.headers.x-github-event }}")).unwrap(),
            json!("event=push")
        );
    }

    #[test]
    fn nested_values_render_and_literals_pass_through() {
        let t = json!({"a": ["{{ input.n }}", 4, {"b": "x {{ input.email }}"}], "c": null, "d": "plain"});
        assert_eq!(
            render(t).unwrap(),
            json!({"a": [3, 4, {"b": "x a@example.com"}], "c": null, "d": "plain"})
        );
        assert!(
            Template::compile(&json!({"a": [1, "b"]}))
                .unwrap()
                .is_static()
        );
    }

    #[test]
    fn missing_path_is_an_error_not_an_empty_string() {
        assert_eq!(
            render(json!("hi {{ input.nope }}")),
            Err(RenderError::MissingValue {
                path: "input.nope".into()
            })
        );
        assert_eq!(
            render(json!({"x": "{{ context.key }}"})),
            Err(RenderError::MissingValue {
                path: "context.key".into()
            })
        );
    }

    #[test]
    fn syntax_errors_are_all_reported_with_locations() {
        let errors = Template::compile(&json!({
            "a": "{{ input.x",
            "b": ["ok", "{{ }}"],
            "c": {"Do it": "{{ secrets.key }}"},
            "d": "{{ input..x }}"
        }))
        .unwrap_err();
        let got: Vec<(String, SyntaxErrorKind)> =
            errors.into_iter().map(|e| (e.location, e.kind)).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], (".a".into(), SyntaxErrorKind::Unclosed));
        assert_eq!(got[1], (".b[1]".into(), SyntaxErrorKind::EmptyExpression));
        assert_eq!(
            got[2],
            (
                ".c[\"Do it\"]".into(),
                SyntaxErrorKind::UnknownRoot {
                    expression: "secrets.key".into(),
                    root: "secrets".into()
                }
            )
        );
        assert!(matches!(got[3].1, SyntaxErrorKind::BadPath { .. }));
    }

    #[test]
    fn expressions_are_listed() {
        let t = Template::compile(
            &json!({"a": "{{ input.a }} and {{ steps.s.output }}", "b": "{{ run.id }}"}),
        )
        .unwrap();
        let listed: Vec<String> = t.expressions().iter().map(|p| p.to_string()).collect();
        assert_eq!(listed, vec!["input.a", "steps.s.output", "run.id"]);
    }

    #[test]
    fn render_text_stringifies_non_strings() {
        let t = Template::compile(&json!("{{ input.n }}")).unwrap();
        assert_eq!(t.render_text(&scope()).unwrap(), "3");
    }

    #[test]
    fn default_renders_when_the_path_reads_nothing_or_null() {
        assert_eq!(
            render(json!(
                "{{ trigger.headers.x-shop-event | default: \"unknown\" }}"
            ))
            .unwrap(),
            json!("unknown")
        );
        assert_eq!(
            render(json!("{{ input.none | default: 0 }}")).unwrap(),
            json!(0)
        );
        assert_eq!(
            render(json!("{{input.nope|default:false}}")).unwrap(),
            json!(false)
        );
        assert_eq!(
            render(json!("{{ input.nope | default: null }}")).unwrap(),
            Value::Null
        );
        assert_eq!(
            render(json!("{{ input.nope | default: -1.5e3 }}")).unwrap(),
            json!(-1500.0)
        );
        // Through a value that is not an object (`trigger` is null for API runs).
        let t = Template::compile(&json!("{{ trigger.headers.x-a | default: \"none\" }}")).unwrap();
        assert_eq!(t.render(&json!({"trigger": null})).unwrap(), json!("none"));
    }

    #[test]
    fn default_is_ignored_when_the_value_is_present() {
        assert_eq!(
            render(json!(
                "{{ trigger.headers.x-github-event | default: \"unknown\" }}"
            ))
            .unwrap(),
            json!("push")
        );
        // Present but false, zero or empty is still present: only missing and null fall back.
        let scope = json!({"input": {"f": false, "z": 0, "e": ""}});
        for (path, expected) in [("f", json!(false)), ("z", json!(0)), ("e", json!(""))] {
            let t =
                Template::compile(&json!(format!("{{{{ input.{path} | default: 1 }}}}"))).unwrap();
            assert_eq!(t.render(&scope).unwrap(), expected, "{path}");
        }
    }

    #[test]
    fn default_inside_text_renders_as_text() {
        assert_eq!(
            render(json!(
                "event={{ trigger.headers.x-nope | default: \"none\" }} n={{ input.nope | default: 7 }} {{ input.none | default: null }}"
            ))
            .unwrap(),
            json!("event=none n=7 null")
        );
        // A `|` inside the default string, and a quoted key with `|`, are not filters.
        let scope = json!({"input": {"a|b": "x"}});
        let t = Template::compile(&json!(
            "{{ input[\"a|b\"] }}/{{ input[\"c|d\"] | default: \"p|q\" }}"
        ))
        .unwrap();
        assert_eq!(t.render(&scope).unwrap(), json!("x/p|q"));
    }

    #[test]
    fn expressions_expose_their_default_and_location() {
        let t = Template::compile(
            &json!({"a": ["{{ input.x | default: \"d\" }}"], "b": "{{ input.y }}"}),
        )
        .unwrap();
        let reads: Vec<(String, Option<Value>, String)> = t
            .reads()
            .iter()
            .map(|e| {
                (
                    e.path().to_string(),
                    e.fallback().cloned(),
                    e.location().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            reads,
            vec![
                ("input.x".into(), Some(json!("d")), ".a[0]".into()),
                ("input.y".into(), None, ".b".into()),
            ]
        );
    }

    fn syntax_error(text: &str) -> SyntaxErrorKind {
        let mut errors = Template::compile(&json!(text)).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0).kind
    }

    #[test]
    fn other_filters_and_bad_defaults_are_refused_naming_default() {
        let unknown = syntax_error("{{ input.x | upcase }}");
        assert_eq!(
            unknown,
            SyntaxErrorKind::UnknownFilter {
                expression: "input.x | upcase".into(),
                filter: "upcase".into()
            }
        );
        let message = unknown.to_string();
        assert!(message.contains("unknown filter `upcase`"), "{message}");
        assert!(
            message.contains("the only filter is `default`"),
            "{message}"
        );
        assert!(matches!(
            syntax_error("{{ input.x | }}"),
            SyntaxErrorKind::UnknownFilter { filter, .. } if filter.is_empty()
        ));
        assert!(matches!(
            syntax_error("{{ input.x | default: \"a\" | upcase }}"),
            SyntaxErrorKind::UnknownFilter { filter, .. } if filter == "upcase"
        ));
        assert!(matches!(
            syntax_error("{{ input.x | default: \"a\" | default: \"b\" }}"),
            SyntaxErrorKind::AfterDefault { found, .. } if found == "| default: \"b\""
        ));
        assert!(matches!(
            syntax_error("{{ input.x | default: 1 2 }}"),
            SyntaxErrorKind::AfterDefault { found, .. } if found == "2"
        ));
        for bad in [
            "{{ input.x | default }}",
            "{{ input.x | default: }}",
            "{{ input.x | default: unknown }}",
            "{{ input.x | default: 'single' }}",
            "{{ input.x | default(\"a\") }}",
            "{{ input.x | default: [1] }}",
            "{{ input.x | default: {\"a\": 1} }}",
        ] {
            assert!(
                matches!(syntax_error(bad), SyntaxErrorKind::BadDefault { .. }),
                "{bad}: {:?}",
                Template::compile(&json!(bad))
            );
        }
        assert_eq!(
            syntax_error("{{ | default: 1 }}"),
            SyntaxErrorKind::EmptyExpression
        );
        assert!(matches!(
            syntax_error("{{ secrets.key | default: 1 }}"),
            SyntaxErrorKind::UnknownRoot { root, .. } if root == "secrets"
        ));
    }

    #[test]
    fn a_missing_value_error_suggests_default() {
        let message = render(json!("{{ input.nope }}")).unwrap_err().to_string();
        assert_eq!(
            message,
            "`{{ input.nope }}` refers to a value that does not exist (write \
             `{{ input.nope | default: <value> }}` where it may be missing)"
        );
    }

    fn scalar_strategy() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            // Quarters: exact in binary, so the text parses back to the same number (serde_json
            // does not promise an exact round trip for every float).
            (-4_000_000i32..4_000_000).prop_map(|n| json!(f64::from(n) / 4.0)),
            "[^}]{0,16}".prop_map(Value::String),
        ]
    }

    fn json_strategy() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z{} .\\[\\]\"]{0,24}".prop_map(Value::String),
            "(\\{\\{ ?(input|context|steps|trigger)(\\.[a-z]{1,3}){0,3} ?\\}\\}|[a-z ]{0,3}){1,3}"
                .prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn compile_and_render_never_panic(template in json_strategy(), data in json_strategy()) {
            if let Ok(t) = Template::compile(&template) {
                let scope = json!({"input": data.clone(), "context": data.clone(), "steps": data});
                let _ = t.render(&scope);
            }
        }

        #[test]
        fn any_scalar_default_round_trips(fallback in scalar_strategy(), present in scalar_strategy()) {
            let written = format!("{{{{ input.x | default: {fallback} }}}}");
            let t = Template::compile(&Value::String(written)).unwrap();
            prop_assert_eq!(t.render(&json!({"input": {}})).unwrap(), fallback.clone());
            let expected = if present.is_null() { fallback } else { present.clone() };
            prop_assert_eq!(t.render(&json!({"input": {"x": present}})).unwrap(), expected);
        }

        #[test]
        fn templates_without_braces_render_unchanged(value in json_strategy()) {
            let text = value.to_string();
            prop_assume!(!text.contains("{{"));
            let t = Template::compile(&value).unwrap();
            prop_assert_eq!(t.render(&json!({})).unwrap(), value);
        }
    }
}
