//! Paths address a value inside a JSON document (docs/templates.md).
//!
//! The syntax is the one users write in templates and input mappings:
//! `a.b[0].c`, `headers.x-github-event`, `body["Do Thing?"]`. A key in dotted form may hold any
//! character except `.`, `[`, `]`, quotes, braces and whitespace; other keys are written in
//! brackets with double or single quotes (`\"`, `\'` and `\\` escape inside them). A path prints
//! back (via [`Display`](std::fmt::Display)) to a string that parses to the same path.
//!
//! ```
//! use serde_json::json;
//! use triggerd_domain::path::Path;
//!
//! let doc = json!({"body": {"items": [{"Do Thing?": 3}]}});
//! let path: Path = "body.items[0][\"Do Thing?\"]".parse().unwrap();
//! assert_eq!(path.lookup(&doc), Some(&json!(3)));
//! ```

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// One step of a [`Path`]: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An object key (also reads an array when it is a decimal number).
    Key(String),
    /// An array index written as `[n]`.
    Index(usize),
}

/// A parsed path: one or more [`Segment`]s.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    segments: Vec<Segment>,
}

/// Why a path did not parse. Each message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty or only whitespace.
    #[error("path is empty: expected something like `body.field` or `items[0].name`")]
    Empty,
    /// A `.` with nothing after it, or two dots in a row.
    #[error("empty key at position {position}: a `.` must be followed by a key")]
    EmptyKey {
        /// Byte offset in the path.
        position: usize,
    },
    /// A character that may not appear at that place.
    #[error(
        "unexpected `{found}` at position {position}: quote keys with special characters, as in `[\"a b\"]`"
    )]
    Unexpected {
        /// The character found.
        found: char,
        /// Byte offset in the path.
        position: usize,
    },
    /// A `[` that is not closed, or a quoted key without its closing quote.
    #[error("unclosed `[` starting at position {position}: expected `[0]` or `[\"key\"]`")]
    Unclosed {
        /// Byte offset of the `[`.
        position: usize,
    },
    /// A bracket that holds neither a number nor a quoted key.
    #[error("bad index at position {position}: expected a number or a quoted key inside `[...]`")]
    BadIndex {
        /// Byte offset of the `[`.
        position: usize,
    },
}

fn is_plain_key_char(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, '.' | '[' | ']' | '"' | '\'' | '{' | '}'))
}

impl Path {
    /// Parses a path. Leading and trailing whitespace is ignored.
    pub fn parse(text: &str) -> Result<Path, PathError> {
        let trimmed = text.trim_start();
        let offset = text.len() - trimmed.len();
        let s = trimmed.trim_end();
        if s.is_empty() {
            return Err(PathError::Empty);
        }
        let bytes = s.as_bytes();
        let mut segments = Vec::new();
        let mut i = 0;
        // `expect_key` is true at the start and after a `.`: a plain key or a bracket may follow.
        let mut expect_key = true;
        while i < bytes.len() {
            let c = s[i..].chars().next().unwrap_or('\0');
            match c {
                '[' => {
                    let (segment, next) = parse_bracket(s, i).map_err(|e| shift(e, offset))?;
                    segments.push(segment);
                    i = next;
                    expect_key = false;
                }
                '.' if !expect_key => {
                    i += 1;
                    expect_key = true;
                    let at_end = i >= bytes.len();
                    if at_end || bytes[i] == b'.' {
                        return Err(PathError::EmptyKey {
                            position: offset + i,
                        });
                    }
                    if bytes[i] == b'[' {
                        return Err(PathError::Unexpected {
                            found: '[',
                            position: offset + i,
                        });
                    }
                }
                c if expect_key && is_plain_key_char(c) => {
                    let start = i;
                    while let Some(ch) = s[i..].chars().next() {
                        if !is_plain_key_char(ch) {
                            break;
                        }
                        i += ch.len_utf8();
                    }
                    segments.push(Segment::Key(s[start..i].to_owned()));
                    expect_key = false;
                }
                '.' => {
                    return Err(PathError::EmptyKey {
                        position: offset + i,
                    });
                }
                other => {
                    return Err(PathError::Unexpected {
                        found: other,
                        position: offset + i,
                    });
                }
            }
        }
        if expect_key {
            return Err(PathError::EmptyKey {
                position: offset + i,
            });
        }
        Ok(Path { segments })
    }

    /// Builds a path from segments. An empty list gives `None`: a path has at least one segment.
    pub fn from_segments(segments: Vec<Segment>) -> Option<Path> {
        (!segments.is_empty()).then_some(Path { segments })
    }

    /// A path made of the key `root` followed by `rest`.
    pub fn rooted(root: &str, rest: &[Segment]) -> Path {
        let mut segments = Vec::with_capacity(rest.len() + 1);
        segments.push(Segment::Key(root.to_owned()));
        segments.extend_from_slice(rest);
        Path { segments }
    }

    /// This path with the key at `index` lower-cased (header names are case-insensitive).
    pub fn lowercase_segment(mut self, index: usize) -> Path {
        if let Some(Segment::Key(k)) = self.segments.get_mut(index) {
            *k = k.to_ascii_lowercase();
        }
        self
    }

    /// The segments, first to last.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first segment when it is a key (the template root such as `input`).
    pub fn root(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Reads the value this path addresses, or `None` when some segment is missing.
    pub fn lookup<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        lookup_segments(&self.segments, value)
    }
}

/// Reads `segments` from `value`; keys that are decimal numbers also index arrays.
pub(crate) fn lookup_segments<'v>(segments: &[Segment], value: &'v Value) -> Option<&'v Value> {
    let mut current = value;
    for segment in segments {
        current = match (segment, current) {
            (Segment::Key(k), Value::Object(map)) => map.get(k.as_str())?,
            (Segment::Key(k), Value::Array(items)) => items.get(k.parse::<usize>().ok()?)?,
            (Segment::Index(n), Value::Array(items)) => items.get(*n)?,
            (Segment::Index(n), Value::Object(map)) => map.get(n.to_string().as_str())?,
            _ => return None,
        };
    }
    Some(current)
}

fn shift(error: PathError, offset: usize) -> PathError {
    match error {
        PathError::Unexpected { found, position } => PathError::Unexpected {
            found,
            position: position + offset,
        },
        PathError::Unclosed { position } => PathError::Unclosed {
            position: position + offset,
        },
        PathError::BadIndex { position } => PathError::BadIndex {
            position: position + offset,
        },
        PathError::EmptyKey { position } => PathError::EmptyKey {
            position: position + offset,
        },
        PathError::Empty => PathError::Empty,
    }
}

/// Parses `[123]`, `["key"]` or `['key']` starting at `start` (the `[`); returns the segment and the
/// index after the `]`.
fn parse_bracket(s: &str, start: usize) -> Result<(Segment, usize), PathError> {
    let rest = &s[start + 1..];
    let unclosed = PathError::Unclosed { position: start };
    match rest.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let mut key = String::new();
            let mut chars = rest.char_indices().skip(1);
            while let Some((idx, ch)) = chars.next() {
                match ch {
                    '\\' => match chars.next() {
                        Some((_, escaped)) => key.push(escaped),
                        None => return Err(unclosed),
                    },
                    c if c == quote => {
                        let after = start + 1 + idx + 1;
                        return if s[after..].starts_with(']') {
                            Ok((Segment::Key(key), after + 1))
                        } else {
                            Err(unclosed)
                        };
                    }
                    c => key.push(c),
                }
            }
            Err(unclosed)
        }
        Some(_) => {
            let close = rest.find(']').ok_or(unclosed)?;
            let digits = &rest[..close];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PathError::BadIndex { position: start });
            }
            let index = digits
                .parse::<usize>()
                .map_err(|_| PathError::BadIndex { position: start })?;
            Ok((Segment::Index(index), start + 1 + close + 1))
        }
        None => Err(unclosed),
    }
}

impl FromStr for Path {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::parse(s)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(k) if !k.is_empty() && k.chars().all(is_plain_key_char) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => {
                    f.write_str("[\"")?;
                    for c in k.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"]")?;
                }
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn keys(path: &str) -> Vec<Segment> {
        Path::parse(path).unwrap().segments().to_vec()
    }

    #[test]
    fn dotted_keys_and_indexes_parse() {
        assert_eq!(
            keys("a.b[0].c"),
            vec![
                Segment::Key("a".into()),
                Segment::Key("b".into()),
                Segment::Index(0),
                Segment::Key("c".into())
            ]
        );
        assert_eq!(
            keys("headers.x-github-event"),
            vec![
                Segment::Key("headers".into()),
                Segment::Key("x-github-event".into())
            ]
        );
    }

    #[test]
    fn quoted_keys_parse_with_escapes() {
        assert_eq!(
            keys(r#"body["Do Thing?"]"#),
            vec![
                Segment::Key("body".into()),
                Segment::Key("Do Thing?".into())
            ]
        );
        assert_eq!(keys(r#"['a\'b']"#), vec![Segment::Key("a'b".into())]);
        assert_eq!(keys(r#"["a\"b\\c"]"#), vec![Segment::Key("a\"b\\c".into())]);
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(keys("  input.email "), keys("input.email"));
    }

    #[test]
    fn bad_paths_are_refused_with_a_reason() {
        assert_eq!(Path::parse(""), Err(PathError::Empty));
        assert_eq!(Path::parse("   "), Err(PathError::Empty));
        assert!(matches!(
            Path::parse("a..b"),
            Err(PathError::EmptyKey { .. })
        ));
        assert!(matches!(Path::parse("a."), Err(PathError::EmptyKey { .. })));
        assert!(matches!(Path::parse(".a"), Err(PathError::EmptyKey { .. })));
        assert!(matches!(
            Path::parse("a[0"),
            Err(PathError::Unclosed { .. })
        ));
        assert!(matches!(
            Path::parse("a[x]"),
            Err(PathError::BadIndex { .. })
        ));
        assert!(matches!(
            Path::parse("a[]"),
            Err(PathError::BadIndex { .. })
        ));
        assert!(matches!(
            Path::parse("a b"),
            Err(PathError::Unexpected { found: ' ', .. })
        ));
        assert!(matches!(
            Path::parse("a[\"x\""),
            Err(PathError::Unclosed { .. })
        ));
        assert!(matches!(
            Path::parse("a[0]b"),
            Err(PathError::Unexpected { .. })
        ));
        assert!(matches!(
            Path::parse("a.[0]"),
            Err(PathError::Unexpected { .. })
        ));
    }

    #[test]
    fn lookup_reads_objects_and_arrays() {
        let doc = json!({"a": {"b": [10, {"c": "x"}]}, "list": ["p", "q"]});
        let p = |s: &str| Path::parse(s).unwrap();
        assert_eq!(p("a.b[1].c").lookup(&doc), Some(&json!("x")));
        assert_eq!(p("list.1").lookup(&doc), Some(&json!("q")));
        assert_eq!(p("a.b[5]").lookup(&doc), None);
        assert_eq!(p("a.missing").lookup(&doc), None);
        assert_eq!(p("list.x").lookup(&doc), None);
        assert_eq!(p("a.b[0].deeper").lookup(&doc), None);
    }

    #[test]
    fn display_prints_quoted_keys_where_needed() {
        let path = Path::from_segments(vec![
            Segment::Key("body".into()),
            Segment::Key("Do Thing?".into()),
            Segment::Index(2),
            Segment::Key("".into()),
        ])
        .unwrap();
        assert_eq!(path.to_string(), r#"body["Do Thing?"][2][""]"#);
        assert_eq!(Path::parse(&path.to_string()).unwrap(), path);
    }

    fn segment_strategy() -> impl Strategy<Value = Segment> {
        prop_oneof![
            any::<String>().prop_map(Segment::Key),
            "[a-z_-][a-z0-9_-]{0,8}".prop_map(Segment::Key),
            (0usize..1000).prop_map(Segment::Index),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = Path::parse(&s);
        }

        #[test]
        fn printed_path_parses_back_to_itself(segments in prop::collection::vec(segment_strategy(), 1..6)) {
            let path = Path::from_segments(segments).unwrap();
            let printed = path.to_string();
            prop_assert_eq!(Path::parse(&printed), Ok(path));
        }
    }
}
