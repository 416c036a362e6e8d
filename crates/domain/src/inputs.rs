//! Declared workflow inputs and their validation (docs/workflows.md, docs/webhooks.md).
//!
//! A workflow declares its inputs by name with a type, `required`, `default`, `enum` and
//! `description`. [`InputSpecs::validate`] turns a map of received values into the run's `input`:
//! undeclared values are dropped, defaults are applied, and every problem is reported at once as an
//! [`InputProblem`] (`{"input": "email", "message": "is required"}`), in declaration order.
//!
//! ```
//! use serde_json::json;
//! use triggerd_domain::inputs::InputSpecs;
//!
//! let specs = InputSpecs::parse(&json!({
//!     "email": {"type": "string", "required": true},
//!     "week": {"type": "string", "default": "current", "enum": ["current", "previous"]}
//! })).unwrap();
//! let ok = specs.validate(json!({"email": "a@example.com", "extra": 1}).as_object().unwrap().clone());
//! assert_eq!(serde_json::Value::Object(ok.unwrap()), json!({"email": "a@example.com", "week": "current"}));
//!
//! let problems = specs.validate(json!({"week": "never"}).as_object().unwrap().clone()).unwrap_err();
//! assert_eq!(problems[0].message, "is required");
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Problem;

/// The JSON type of a declared input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// A JSON string.
    String,
    /// A whole number (a JSON number without a fraction that fits in 64 bits).
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
}

impl InputType {
    /// Every type, in the order the docs list them.
    pub const ALL: [InputType; 6] = [
        InputType::String,
        InputType::Integer,
        InputType::Number,
        InputType::Boolean,
        InputType::Object,
        InputType::Array,
    ];

    /// The name used in definitions.
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::Object => "object",
            InputType::Array => "array",
        }
    }

    /// Parses a type name.
    pub fn from_name(name: &str) -> Option<InputType> {
        InputType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Checks `value` against this type; an integral float such as `2.0` counts as an integer and
    /// is returned as one.
    pub fn check(self, value: Value) -> Result<Value, Value> {
        match (self, value) {
            (InputType::String, v @ Value::String(_))
            | (InputType::Number, v @ Value::Number(_))
            | (InputType::Boolean, v @ Value::Bool(_))
            | (InputType::Object, v @ Value::Object(_))
            | (InputType::Array, v @ Value::Array(_)) => Ok(v),
            (InputType::Integer, Value::Number(n)) => {
                if n.is_i64() || n.is_u64() {
                    Ok(Value::Number(n))
                } else {
                    let v = Value::Number(n);
                    whole_number(&v).map(Value::from).ok_or(v)
                }
            }
            (_, v) => Err(v),
        }
    }

    /// Converts a string read from a header, query parameter or URL path to this type
    /// (`"42"` → 42, `"true"` → true). Strings stay strings; an array input receives `[s]`.
    pub fn coerce_str(self, s: &str) -> Result<Value, String> {
        let trimmed = s.trim();
        match self {
            InputType::String => Ok(Value::String(s.to_owned())),
            InputType::Integer => trimmed
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("must be an integer, got {}", quote(s))),
            InputType::Number => trimmed
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(|n| {
                    trimmed
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or(Value::Number(n))
                })
                .ok_or_else(|| format!("must be a number, got {}", quote(s))),
            InputType::Boolean => match trimmed {
                "true" | "True" | "TRUE" | "1" => Ok(Value::Bool(true)),
                "false" | "False" | "FALSE" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!(
                    "must be a boolean (true or false), got {}",
                    quote(s)
                )),
            },
            InputType::Array => Ok(Value::Array(vec![Value::String(s.to_owned())])),
            InputType::Object => serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| format!("must be an object, got {}", quote(s))),
        }
    }
}

impl fmt::Display for InputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn quote(s: &str) -> String {
    let mut shown: String = s.chars().take(64).collect();
    if shown.len() < s.len() {
        shown.push('…');
    }
    Value::String(shown).to_string()
}

/// A short description of a value's JSON type, for messages.
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn type_with_article(t: InputType) -> &'static str {
    match t {
        InputType::String => "a string",
        InputType::Integer => "an integer",
        InputType::Number => "a number",
        InputType::Boolean => "a boolean",
        InputType::Object => "an object",
        InputType::Array => "an array",
    }
}

/// One declared input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// The declared type.
    pub input_type: InputType,
    /// Whether a value must be present (after defaults).
    pub required: bool,
    /// The value used when none is received.
    pub default: Option<Value>,
    /// When set, the value must be one of these.
    pub allowed: Option<Vec<Value>>,
    /// Free text for people.
    pub description: Option<String>,
}

/// One problem with a received input value: serialized as `{"input", "message"}` in 422 `details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputProblem {
    /// The input's name.
    pub input: String,
    /// What is wrong, e.g. `is required` or `must be an integer, got a string`.
    pub message: String,
}

impl InputProblem {
    /// Builds a problem.
    pub fn new(input: impl Into<String>, message: impl Into<String>) -> Self {
        InputProblem {
            input: input.into(),
            message: message.into(),
        }
    }
}

/// A JSON number that is a whole number — `60` or `60.0` — as an integer; the one rule for
/// whole numbers everywhere (integer inputs, limits in trigger configurations and definitions,
/// version numbers in the API). Floats with a fraction, and beyond 2^53, are not.
///
/// ```
/// use serde_json::json;
/// use triggerd_domain::inputs::whole_number;
/// assert_eq!(whole_number(&json!(60)), Some(60));
/// assert_eq!(whole_number(&json!(60.0)), Some(60));
/// assert_eq!(whole_number(&json!(60.5)), None);
/// assert_eq!(whole_number(&json!("60")), None);
/// ```
pub fn whole_number(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15)
            .map(|f| f as i64)
    })
}

/// The declared inputs of a workflow, in declaration order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputSpecs {
    specs: Vec<(String, InputSpec)>,
}

const SPEC_FIELDS: [&str; 5] = ["type", "required", "default", "enum", "description"];

/// Whether `name` may name an input (or a step, trigger, context key): letters, digits, `_` and
/// `-`, 1 to 64 characters, so that it is usable as a plain path segment.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl InputSpecs {
    /// Parses the `inputs` object of a definition; problem paths start with `inputs`.
    pub fn parse(value: &Value) -> Result<InputSpecs, Vec<Problem>> {
        let mut problems = Vec::new();
        let specs = Self::parse_into(value, "inputs", &mut problems);
        if problems.is_empty() {
            Ok(specs)
        } else {
            Err(problems)
        }
    }

    /// Like [`InputSpecs::parse`], adding problems to `problems` with paths under `at`.
    pub(crate) fn parse_into(value: &Value, at: &str, problems: &mut Vec<Problem>) -> InputSpecs {
        let Some(map) = value.as_object() else {
            if !value.is_null() {
                problems.push(Problem::new(
                    at,
                    format!(
                        "must be an object of input name → declaration, got {}",
                        describe(value)
                    ),
                ));
            }
            return InputSpecs::default();
        };
        let mut specs = Vec::with_capacity(map.len());
        for (name, decl) in map {
            let here = format!("{at}.{name}");
            if !is_valid_name(name) {
                problems.push(Problem::new(
                    &here,
                    "input names use letters, digits, `_` and `-` (1 to 64 characters)",
                ));
            }
            if let Some(spec) = parse_spec(decl, &here, problems) {
                specs.push((name.clone(), spec));
            }
        }
        InputSpecs { specs }
    }

    /// Builds specs from parts (for integrators constructing them in code).
    pub fn from_specs(specs: Vec<(String, InputSpec)>) -> InputSpecs {
        InputSpecs { specs }
    }

    /// The declaration of `name`.
    pub fn get(&self, name: &str) -> Option<&InputSpec> {
        self.specs.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// Declared inputs in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &InputSpec)> {
        self.specs.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// Number of declared inputs.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// True when nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Validates received values: drops undeclared ones, applies defaults, checks types, `required`
    /// and `enum`. A `null` counts as absent. Returns the run's input in declaration order, or every
    /// problem at once.
    pub fn validate(
        &self,
        mut values: Map<String, Value>,
    ) -> Result<Map<String, Value>, Vec<InputProblem>> {
        let mut out = Map::with_capacity(self.specs.len());
        let mut problems = Vec::new();
        for (name, spec) in &self.specs {
            match spec.resolve(values.remove(name.as_str())) {
                Ok(Some(v)) => {
                    out.insert(name.clone(), v);
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

impl InputSpec {
    /// Resolves one received value (`None` or `null` = absent): applies the default, enforces
    /// `required`, checks the value. `Ok(None)` means the input is simply left out.
    pub fn resolve(&self, received: Option<Value>) -> Result<Option<Value>, String> {
        match received.filter(|v| !v.is_null()) {
            Some(v) => self.check(v).map(Some),
            None => match &self.default {
                Some(d) => self.check(d.clone()).map(Some),
                None if self.required => Err("is required".to_owned()),
                None => Ok(None),
            },
        }
    }

    /// Checks one present value against the type and `enum`; returns the normalised value or a
    /// message.
    pub fn check(&self, value: Value) -> Result<Value, String> {
        let value = self.input_type.check(value).map_err(|v| {
            format!(
                "must be {}, got {}",
                type_with_article(self.input_type),
                describe(&v)
            )
        })?;
        if let Some(allowed) = &self.allowed
            && !allowed.contains(&value)
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(format!("must be one of {}, got {}", list.join(", "), value));
        }
        Ok(value)
    }
}

fn parse_spec(decl: &Value, here: &str, problems: &mut Vec<Problem>) -> Option<InputSpec> {
    let Some(obj) = decl.as_object() else {
        problems.push(Problem::new(
            here,
            format!(
                "must be an object such as {{\"type\": \"string\"}}, got {}",
                describe(decl)
            ),
        ));
        return None;
    };
    for key in obj.keys() {
        if !SPEC_FIELDS.contains(&key.as_str()) {
            problems.push(Problem::new(
                format!("{here}.{key}"),
                "unknown field: an input declares type, required, default, enum and description",
            ));
        }
    }
    let types = InputType::ALL.map(InputType::as_str).join(", ");
    let input_type = match obj.get("type") {
        None => {
            problems.push(Problem::new(
                format!("{here}.type"),
                format!("is required: one of {types}"),
            ));
            None
        }
        Some(Value::String(t)) => {
            let parsed = InputType::from_name(t);
            if parsed.is_none() {
                problems.push(Problem::new(
                    format!("{here}.type"),
                    format!("unknown input type \"{t}\": expected one of {types}"),
                ));
            }
            parsed
        }
        Some(other) => {
            problems.push(Problem::new(
                format!("{here}.type"),
                format!("must be a string, one of {types}; got {}", describe(other)),
            ));
            None
        }
    };
    let required = match obj.get("required") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            problems.push(Problem::new(
                format!("{here}.required"),
                format!("must be true or false, got {}", describe(other)),
            ));
            false
        }
    };
    let description = match obj.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push(Problem::new(
                format!("{here}.description"),
                format!("must be a string, got {}", describe(other)),
            ));
            None
        }
    };
    let input_type = input_type?;
    let mut spec = InputSpec {
        input_type,
        required,
        default: None,
        allowed: None,
        description,
    };
    match obj.get("enum") {
        None | Some(Value::Null) => {}
        Some(Value::Array(values)) if !values.is_empty() => {
            let mut allowed = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                match input_type.check(v.clone()) {
                    Ok(v) => allowed.push(v),
                    Err(v) => problems.push(Problem::new(
                        format!("{here}.enum[{i}]"),
                        format!(
                            "must be {} like the input's type, got {}",
                            type_with_article(input_type),
                            describe(&v)
                        ),
                    )),
                }
            }
            spec.allowed = Some(allowed);
        }
        Some(_) => problems.push(Problem::new(
            format!("{here}.enum"),
            "must be a non-empty array of allowed values",
        )),
    }
    match obj.get("default") {
        None | Some(Value::Null) => {}
        Some(d) => match spec.check(d.clone()) {
            Ok(v) => spec.default = Some(v),
            Err(message) => problems.push(Problem::new(
                format!("{here}.default"),
                format!("default {message}"),
            )),
        },
    }
    Some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs(v: Value) -> InputSpecs {
        InputSpecs::parse(&v).unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn problems(v: Value) -> Vec<(String, String)> {
        InputSpecs::parse(&v)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect()
    }

    #[test]
    fn each_type_accepts_its_values_and_refuses_others() {
        let s = specs(json!({
            "s": {"type": "string"}, "i": {"type": "integer"}, "n": {"type": "number"},
            "b": {"type": "boolean"}, "o": {"type": "object"}, "a": {"type": "array"}
        }));
        let ok = s
            .validate(obj(
                json!({"s": "x", "i": 2.0, "n": 1.5, "b": false, "o": {}, "a": [1]}),
            ))
            .unwrap();
        assert_eq!(
            Value::Object(ok),
            json!({"s": "x", "i": 2, "n": 1.5, "b": false, "o": {}, "a": [1]})
        );
        let bad = s
            .validate(obj(
                json!({"s": 1, "i": 1.5, "n": "1", "b": "true", "o": [], "a": {}}),
            ))
            .unwrap_err();
        let messages: Vec<_> = bad
            .iter()
            .map(|p| (p.input.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            vec![
                ("s", "must be a string, got an integer"),
                ("i", "must be an integer, got a number"),
                ("n", "must be a number, got a string"),
                ("b", "must be a boolean, got a string"),
                ("o", "must be an object, got an array"),
                ("a", "must be an array, got an object"),
            ]
        );
    }

    #[test]
    fn required_default_and_enum_apply() {
        let s = specs(json!({
            "email": {"type": "string", "required": true},
            "week": {"type": "string", "default": "current", "enum": ["current", "previous"]},
            "n": {"type": "integer"}
        }));
        let out = s
            .validate(obj(json!({"email": "e", "junk": true})))
            .unwrap();
        assert_eq!(Value::Object(out), json!({"email": "e", "week": "current"}));
        let err = s
            .validate(obj(json!({"email": null, "week": "later"})))
            .unwrap_err();
        assert_eq!(err[0], InputProblem::new("email", "is required"));
        assert_eq!(
            err[1],
            InputProblem::new(
                "week",
                r#"must be one of "current", "previous", got "later""#
            )
        );
    }

    #[test]
    fn output_keeps_declaration_order() {
        let s = specs(json!({"b": {"type": "integer"}, "a": {"type": "integer"}}));
        let out = s.validate(obj(json!({"a": 1, "b": 2}))).unwrap();
        assert_eq!(out.keys().collect::<Vec<_>>(), vec!["b", "a"]);
    }

    #[test]
    fn unknown_input_type_is_reported() {
        assert_eq!(
            problems(json!({"x": {"type": "date"}})),
            vec![(
                "inputs.x.type".into(),
                "unknown input type \"date\": expected one of string, integer, number, boolean, object, array".into()
            )]
        );
    }

    #[test]
    fn every_declaration_problem_is_reported() {
        let got = problems(json!({
            "bad name": {"type": "string"},
            "a": {"required": "yes"},
            "b": {"type": "integer", "default": "x"},
            "c": {"type": "string", "enum": [1, "ok"]},
            "d": {"type": "string", "enum": []},
            "e": {"type": "string", "color": "red"},
            "f": "string",
            "g": {"type": "string", "default": "z", "enum": ["x", "y"]},
            "h": {"type": 3, "description": 4}
        }));
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "inputs.bad name",
                "inputs.a.type",
                "inputs.a.required",
                "inputs.b.default",
                "inputs.c.enum[0]",
                "inputs.d.enum",
                "inputs.e.color",
                "inputs.f",
                "inputs.g.default",
                "inputs.h.type",
                "inputs.h.description",
            ]
        );
        assert_eq!(got[3].1, "default must be an integer, got a string");
        assert_eq!(got[8].1, r#"default must be one of "x", "y", got "z""#);
    }

    #[test]
    fn inputs_must_be_an_object() {
        assert_eq!(problems(json!([1]))[0].0, "inputs");
        assert!(InputSpecs::parse(&Value::Null).unwrap().is_empty());
    }

    #[test]
    fn strings_coerce_to_declared_types() {
        assert_eq!(InputType::Integer.coerce_str("42"), Ok(json!(42)));
        assert_eq!(InputType::Number.coerce_str("1.5"), Ok(json!(1.5)));
        assert_eq!(InputType::Number.coerce_str("7"), Ok(json!(7)));
        assert_eq!(InputType::Boolean.coerce_str("true"), Ok(json!(true)));
        assert_eq!(InputType::Boolean.coerce_str("0"), Ok(json!(false)));
        assert_eq!(InputType::String.coerce_str(" x "), Ok(json!(" x ")));
        assert_eq!(InputType::Array.coerce_str("x"), Ok(json!(["x"])));
        assert_eq!(
            InputType::Object.coerce_str("{\"a\":1}"),
            Ok(json!({"a": 1}))
        );
        assert_eq!(
            InputType::Integer.coerce_str("4x"),
            Err("must be an integer, got \"4x\"".into())
        );
        assert!(InputType::Number.coerce_str("NaN").is_err());
        assert!(InputType::Boolean.coerce_str("maybe").is_err());
        assert!(InputType::Object.coerce_str("[1]").is_err());
    }
}
