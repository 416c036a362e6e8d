//! Templates: JSON values whose strings may hold `{{ path }}` expressions (SPEC 2.1).
//!
//! A string that is exactly one expression keeps the JSON type of the value it reads
//! (`"{{ input.count }}"` renders the number `3`); an expression inside longer text is rendered as
//! text (strings as they are, other values as compact JSON, `null` as `null`). A path that reads
//! nothing is an error ([`RenderError::MissingValue`]), never an empty string: a step whose template
//! fails fails with code `template_error`.
//!
//! Templates are compiled once (when a definition is validated) and rendered many times.
//!
//! ```
//! use serde_json::json;
//! use triggerd_domain::template::Template;
//!
//! let t = Template::compile(&json!({"to": "{{ input.email }}", "n": "{{ input.n }}",
//!                                   "text": "hello {{ input.email }}"})).unwrap();
//! let scope = json!({"input": {"email": "a@example.com", "n": 3}});
//! assert_eq!(t.render(&scope).unwrap(),
//!            json!({"to": "a@example.com", "n": 3, "text": "hello a@example.com"}));
//! ```

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::path::{Path, PathError};

/// The roots an expression may start with.
pub const ROOTS: [&str; 6] = ["input", "trigger", "context", "steps", "run", "deployment"];

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
    Expr(Path),
    /// A string with text and expressions mixed.
    Text(Vec<Part>),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Expr(Path),
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
}

/// Why rendering failed. The run step fails with code `template_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The path read no value.
    #[error("`{{{{ {path} }}}}` refers to a value that does not exist")]
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
        let mut out = Vec::new();
        collect_paths(&self.node, &mut out);
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

fn collect_paths<'t>(node: &'t Node, out: &mut Vec<&'t Path>) {
    match node {
        Node::Literal(_) => {}
        Node::Expr(p) => out.push(p),
        Node::Text(parts) => out.extend(parts.iter().filter_map(|p| match p {
            Part::Expr(p) => Some(p),
            Part::Text(_) => None,
        })),
        Node::Array(items) => items.iter().for_each(|n| collect_paths(n, out)),
        Node::Object(fields) => fields.iter().for_each(|(_, n)| collect_paths(n, out)),
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
        match parse_expression(expression) {
            Ok(path) => parts.push(Part::Expr(path)),
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
        [Part::Expr(path)] => Node::Expr(path.clone()),
        _ => Node::Text(parts),
    }
}

fn parse_expression(expression: &str) -> Result<Path, SyntaxErrorKind> {
    if expression.is_empty() {
        return Err(SyntaxErrorKind::EmptyExpression);
    }
    let path = Path::parse(expression).map_err(|source| SyntaxErrorKind::BadPath {
        expression: expression.to_owned(),
        source,
    })?;
    match path.root() {
        Some(root) if ROOTS.contains(&root) => Ok(path),
        root => Err(SyntaxErrorKind::UnknownRoot {
            expression: expression.to_owned(),
            root: root.unwrap_or("[...]").to_owned(),
        }),
    }
}

fn lookup<'s>(path: &Path, scope: &'s Value) -> Result<&'s Value, RenderError> {
    path.lookup(scope).ok_or_else(|| RenderError::MissingValue {
        path: path.to_string(),
    })
}

fn render_node(node: &Node, scope: &Value) -> Result<Value, RenderError> {
    Ok(match node {
        Node::Literal(v) => v.clone(),
        Node::Expr(path) => lookup(path, scope)?.clone(),
        Node::Text(parts) => {
            let mut out = String::new();
            for part in parts {
                match part {
                    Part::Text(t) => out.push_str(t),
                    Part::Expr(path) => match lookup(path, scope)? {
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
        fn templates_without_braces_render_unchanged(value in json_strategy()) {
            let text = value.to_string();
            prop_assume!(!text.contains("{{"));
            let t = Template::compile(&value).unwrap();
            prop_assert_eq!(t.render(&json!({})).unwrap(), value);
        }
    }
}
