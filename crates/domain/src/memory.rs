//! What a JSON document costs in memory once parsed, estimated from its text before parsing.
//!
//! A parsed [`serde_json::Value`] is much larger than its text: every value takes a
//! `size_of::<Value>()` slot (80 bytes with `preserve_order`), every array and object allocates
//! capacity in powers of two, every object carries a hash index, and every string is an allocation
//! of its own. A 16 MiB body of small objects parses to 300–900 MB. [`json_heap_bytes`] reads the
//! text once (no allocation but a small stack of open containers) and returns an upper bound of
//! what `serde_json::from_slice::<Value>` will hold, so that a server can decide whether it can
//! afford the parse *before* it parses.
//!
//! The bound follows serde_json's and indexmap's growth rules: a `Vec` filled by `push` has the
//! capacity `max(4, n.next_power_of_two())`; an `IndexMap` filled by `insert` has the smallest
//! hash table whose load limit holds its entries, and an entries vector of that capacity; each
//! allocation is rounded up as glibc's `malloc` does (16-byte steps, 8 bytes of header, at least
//! 32 bytes). A string's length is taken before unescaping, which can only overestimate.
//!
//! ```
//! use triggerd_domain::memory::json_heap_bytes;
//!
//! // One long string costs about its length...
//! let text = format!(r#"{{"data": "{}"}}"#, "x".repeat(100_000));
//! assert!(json_heap_bytes(text.as_bytes()) < 101_000);
//! // ...while many small objects cost many times their text.
//! let objects = format!("[{}]", vec![r#"{"a":0}"#; 10_000].join(","));
//! assert!(json_heap_bytes(objects.as_bytes()) > 40 * objects.len() as u64);
//! ```

use serde_json::Value;

/// Containers deeper than this are not tracked one by one (their cost is still counted, at the
/// price of a small array's or object's). The parser refuses documents this deep anyway.
const TRACKED_DEPTH: usize = 160;

/// An open container while scanning: whether it is an object, how many separators (`,`) or keys
/// (`:`) it has seen, and whether anything has started in it.
#[derive(Clone, Copy)]
struct Open {
    object: bool,
    count: u64,
    nonempty: bool,
}

/// An upper bound, in bytes, of the heap that parsing `text` into a [`serde_json::Value`] holds
/// (not counting `text` itself). Text that is not valid JSON gets an estimate too; the parse that
/// follows refuses it.
pub fn json_heap_bytes(text: &[u8]) -> u64 {
    let slot = std::mem::size_of::<Value>() as u64;
    let mut cost = slot;
    let mut stack: Vec<Open> = Vec::with_capacity(TRACKED_DEPTH.min(text.len() / 2 + 1));
    // Containers opened past the tracked depth, charged as small ones when they open.
    let mut untracked = 0usize;
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        i += 1;
        match c {
            b'"' => {
                if let Some(top) = stack.last_mut() {
                    top.nonempty = true;
                }
                let start = i;
                while i < text.len() {
                    match text[i] {
                        b'"' => break,
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
                cost += string_bytes((i.min(text.len()) - start) as u64);
                i += 1;
            }
            b'{' | b'[' => {
                if let Some(top) = stack.last_mut() {
                    top.nonempty = true;
                }
                if stack.len() < TRACKED_DEPTH && untracked == 0 {
                    stack.push(Open {
                        object: c == b'{',
                        count: 0,
                        nonempty: false,
                    });
                } else {
                    untracked += 1;
                    cost += if c == b'{' {
                        object_bytes(1, slot)
                    } else {
                        array_bytes(1, slot)
                    };
                }
            }
            b'}' | b']' => {
                if untracked > 0 {
                    untracked -= 1;
                } else if let Some(open) = stack.pop() {
                    cost += if open.object {
                        object_bytes(open.count, slot)
                    } else if open.nonempty {
                        array_bytes(open.count + 1, slot)
                    } else {
                        0
                    };
                }
            }
            b':' => {
                if let Some(top) = stack.last_mut().filter(|t| t.object && untracked == 0) {
                    top.count += 1;
                }
            }
            b',' => {
                if let Some(top) = stack.last_mut().filter(|t| !t.object && untracked == 0) {
                    top.count += 1;
                }
            }
            b' ' | b'\n' | b'\r' | b'\t' => {}
            // A number, `true`, `false` or `null`: it lives in its slot.
            _ => {
                if let Some(top) = stack.last_mut() {
                    top.nonempty = true;
                }
            }
        }
    }
    // A document cut off inside containers: charge what was opened as if it closed here.
    for open in stack {
        cost += if open.object {
            object_bytes(open.count, slot)
        } else {
            array_bytes(open.count + 1, slot)
        };
    }
    cost
}

/// What glibc's `malloc` takes for a request of `n` bytes.
fn chunk(n: u64) -> u64 {
    (n + 8).div_ceil(16).saturating_mul(16).max(32)
}

/// A `String` of `len` bytes (none when empty).
fn string_bytes(len: u64) -> u64 {
    if len == 0 { 0 } else { chunk(len) }
}

/// A `Vec<Value>` of `n` values filled by `push`.
fn array_bytes(n: u64, slot: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    chunk(n.next_power_of_two().max(4).saturating_mul(slot))
}

/// An `IndexMap<String, Value>` of `n` entries filled by `insert`: its hash table of `usize`
/// indices and its entries vector (hash, key, value) of the table's capacity.
fn object_bytes(n: u64, slot: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut buckets: u64 = 4;
    while table_capacity(buckets) < n {
        buckets = buckets.saturating_mul(2);
    }
    let entry = 8 + 24 + slot;
    chunk(buckets.saturating_mul(9) + 16) + chunk(table_capacity(buckets).saturating_mul(entry))
}

/// How many items a hashbrown table of `buckets` buckets holds before it grows.
fn table_capacity(buckets: u64) -> u64 {
    if buckets < 8 {
        buckets - 1
    } else {
        buckets / 8 * 7
    }
}

/// Documents of many shapes, about `bytes` long each: what the estimate is checked against (see
/// `tests/memory_estimate.rs`). Public for that test only.
#[doc(hidden)]
pub fn shapes(bytes: usize) -> Vec<(&'static str, String)> {
    let repeat = |open: &str, item: &dyn Fn(usize) -> String, close: &str| {
        let mut s = String::from(open);
        let mut i = 0;
        while s.len() < bytes {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&item(i));
            i += 1;
        }
        s.push_str(close);
        s
    };
    vec![
        (
            "orders",
            repeat(
                r#"{"items":["#,
                &|i| {
                    format!(
                        r#"{{"id":{i},"sku":"SKU-{:04}","qty":1,"price":2450,"tags":["a","b"]}}"#,
                        i % 9999
                    )
                },
                "]}",
            ),
        ),
        ("integers", repeat("[", &|i| i.to_string(), "]")),
        ("digits", repeat("[", &|_| "1".into(), "]")),
        ("empty objects", repeat("[", &|_| "{}".into(), "]")),
        ("empty arrays", repeat("[", &|_| "[]".into(), "]")),
        ("nested arrays", repeat("[", &|_| "[[1]]".into(), "]")),
        (
            "one-key objects",
            repeat("[", &|_| r#"{"a":0}"#.into(), "]"),
        ),
        (
            "empty-key objects",
            repeat("[", &|_| r#"{"":0}"#.into(), "]"),
        ),
        (
            "two-key objects",
            repeat("[", &|_| r#"{"a":0,"b":1}"#.into(), "]"),
        ),
        (
            "nine-key objects",
            repeat(
                "[",
                &|_| r#"{"a":0,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1}"#.into(),
                "]",
            ),
        ),
        ("empty strings", repeat("[", &|_| r#""""#.into(), "]")),
        ("short strings", repeat("[", &|_| r#""a""#.into(), "]")),
        (
            "17-byte strings",
            repeat("[", &|_| r#""aaaaaaaaaaaaaaaaa""#.into(), "]"),
        ),
        ("nulls", repeat("[", &|_| "null".into(), "]")),
        (
            "one big object",
            repeat("{", &|i| format!(r#""k{i}":0"#), "}"),
        ),
        (
            "big object of objects",
            repeat("{", &|i| format!(r#""{i}":{{}}"#), "}"),
        ),
        (
            "one long string",
            format!(r#"{{"a":"{}"}}"#, "x".repeat(bytes)),
        ),
        (
            "escapes",
            format!(r#"{{"a":"{}"}}"#, "\\u00e9".repeat(bytes / 6)),
        ),
        ("deep", format!("{}1{}", "[".repeat(60), "]".repeat(60))),
        (
            "push events",
            repeat(
                r#"{"commits":["#,
                &|i| {
                    format!(
                        r#"{{"id":"{i:040}","message":"Fix the thing in module {i}","author":{{"name":"Ada","email":"ada@example.com"}},"added":[],"removed":[],"modified":["src/lib.rs"]}}"#
                    )
                },
                "]}",
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_scalar_documents_cost_one_slot() {
        let slot = std::mem::size_of::<Value>() as u64;
        for text in ["", "null", "1", "true", "[]", "{}", "\"\""] {
            assert_eq!(json_heap_bytes(text.as_bytes()), slot, "{text}");
        }
        assert_eq!(json_heap_bytes(b"\"abc\""), slot + 32);
    }

    #[test]
    fn small_objects_cost_far_more_than_their_text() {
        let text = format!("[{}]", vec![r#"{"a":0}"#; 12_500].join(","));
        let ratio = json_heap_bytes(text.as_bytes()) as f64 / text.len() as f64;
        assert!(ratio > 40.0, "{ratio}");
        let text = format!(r#"{{"a":"{}"}}"#, "x".repeat(100_000));
        let ratio = json_heap_bytes(text.as_bytes()) as f64 / text.len() as f64;
        assert!(ratio < 1.1, "{ratio}");
    }

    #[test]
    fn strings_with_escaped_quotes_and_brackets_are_one_string() {
        // The brackets inside the string open nothing.
        let slot = std::mem::size_of::<Value>() as u64;
        let cost = json_heap_bytes(br#""a\"[[{{""#);
        assert_eq!(cost, slot + 32);
    }

    #[test]
    fn cut_off_and_very_deep_documents_are_still_charged() {
        let deep = "[".repeat(100_000);
        assert!(json_heap_bytes(deep.as_bytes()) > 100_000 * 300);
        assert!(json_heap_bytes(b"{\"a\": [1, 2, 3") > 0);
    }

    /// That the estimate bounds what serde_json really allocates is checked with a counting
    /// allocator in tests/memory_estimate.rs of this crate (it needs a global allocator of its
    /// own); here only that its documents are JSON.
    #[test]
    fn shapes_used_by_the_allocation_test_are_valid_json() {
        for (_, text) in super::shapes(20_000) {
            serde_json::from_str::<Value>(&text).unwrap();
        }
    }
}
