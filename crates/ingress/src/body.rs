//! `trigger.body` from a webhook's raw body (SPEC 4.1): JSON, `application/x-www-form-urlencoded`,
//! `multipart/form-data`, and anything else as one base64 blob.
//!
//! The body arrives whole, already bounded by the trigger's `max_body_bytes` (`read_body`), so
//! no branch here can be made to hold more than that limit of input: the limits below bound the
//! body's shape, not its size. JSON is the hot path and is tried first without allocating
//! anything but the parsed value; a multipart body costs only when its content type says so.
//! The depth rule ([`MAX_JSON_DEPTH`](triggerd_domain::mapping::MAX_JSON_DEPTH)) is applied by
//! the caller to the whole parsed value, whichever branch made it.

use base64::Engine as _;
use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Map, Value, json};
use triggerd_domain::mapping::parse_urlencoded;

/// The most parts a `multipart/form-data` body may have; one more → 400. Each part costs a map
/// entry and, for files, a base64 copy, so a body of many tiny parts is refused before it can
/// cost far more than its size. 256 is far above any form a webhook sender posts.
///
/// multer (3.x) has no knob for the size of a part's headers: they are read up to the blank line
/// that ends them, which is bounded by the whole body (at most `max_body_bytes`, already in
/// memory), and httparse parses at most 32 header lines a part (more → 400).
pub(crate) const MAX_MULTIPART_PARTS: usize = 256;

/// Why a body could not become `trigger.body`; each is a 400 and the activity outcome
/// `malformed` (the HTTP mapping is `From<MalformedBody> for ApiError` in `error.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MalformedBody {
    /// A body declared JSON that does not parse (the SPEC's exact answer).
    #[error("Received malformed JSON payload.")]
    Json,
    /// A multipart part declared JSON whose content does not parse.
    #[error(
        "malformed multipart/form-data body: part {part:?} is declared {content_type} but is not \
         valid JSON ({reason})"
    )]
    JsonPart {
        /// The part's name.
        part: String,
        /// Its declared content type.
        content_type: String,
        /// serde_json's reason.
        reason: String,
    },
    /// A multipart body that cannot be split into parts: no boundary, truncated, a part without
    /// a name, too many parts, or anything else multer rejects.
    #[error("malformed multipart/form-data body: {reason}")]
    Multipart {
        /// What is wrong, for the sender.
        reason: String,
    },
}

impl MalformedBody {
    fn multipart(reason: impl Into<String>) -> Self {
        MalformedBody::Multipart {
            reason: reason.into(),
        }
    }

    /// multer's refusal, reworded where its own message would leave the sender guessing.
    fn from_multer(e: multer::Error) -> Self {
        Self::multipart(match e {
            multer::Error::NoBoundary => {
                "Content-Type has no boundary parameter (expected multipart/form-data; \
                 boundary=...)"
                    .to_owned()
            }
            multer::Error::DecodeContentType(e) => format!("Content-Type cannot be parsed: {e}"),
            multer::Error::IncompleteStream => {
                "the body does not use the boundary declared in Content-Type, or ends before \
                 its closing delimiter"
                    .to_owned()
            }
            multer::Error::IncompleteFieldData { field_name } => format!(
                "part {:?} is not followed by a boundary: the body is cut off",
                field_name.as_deref().unwrap_or("")
            ),
            multer::Error::IncompleteHeaders | multer::Error::ReadHeaderFailed(_) => {
                format!("{e}: a part's headers are cut off or not valid (at most 32 per part)")
            }
            other => other.to_string(),
        })
    }
}

/// `trigger.body` from the raw body (SPEC 4.1): `Null` when empty; the parsed value for JSON (a
/// `+json` type, or no content type and a body that parses); an object of fields for a form; an
/// object of parts for `multipart/form-data` (see [`parse_multipart`]); otherwise
/// `{content_type, size, data_base64}`.
pub(crate) async fn parse_body(
    headers: &http::HeaderMap,
    body: &Bytes,
) -> Result<Value, MalformedBody> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    // A content type that is not visible ASCII counts as absent (as it always has).
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let essence = content_type.map_or("", essence);
    if is_json(essence) {
        return serde_json::from_slice(body).map_err(|_| MalformedBody::Json);
    }
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Ok(Value::Object(parse_urlencoded(body)));
    }
    if let Some(content_type) = content_type
        && essence.eq_ignore_ascii_case("multipart/form-data")
    {
        // Boxed: the multipart parser's state stays off the hot path's future.
        return Box::pin(parse_multipart(content_type, body.clone())).await;
    }
    if content_type.is_none()
        && let Ok(v) = serde_json::from_slice(body)
    {
        return Ok(v);
    }
    Ok(blob(
        None,
        content_type.unwrap_or("application/octet-stream"),
        body,
    ))
}

/// A `multipart/form-data` body as an object of its parts, keyed by name in the order of first
/// appearance:
/// - a part with a filename, or whose content type is neither `text/*` nor JSON: a file,
///   `{"filename", "content_type", "size", "data_base64"}` (`filename` null when the part has
///   none; `content_type` `application/octet-stream` when it declares none, per RFC 7578);
/// - a part declared `application/json` or `+json`: its parsed value (one that does not parse
///   → [`MalformedBody::JsonPart`]);
/// - any other part: a string, decoded by its `charset` (UTF-8 by default, invalid bytes
///   replaced).
///
/// A name sent more than once becomes an array of its values in order. The stream handed to
/// multer is the body already read, as one chunk.
async fn parse_multipart(content_type: &str, body: Bytes) -> Result<Value, MalformedBody> {
    let boundary = multer::parse_boundary(content_type).map_err(MalformedBody::from_multer)?;
    // `read_body` already bounded the body by `max_body_bytes`; the same bound, restated for
    // multer, holds for the whole stream and so for every part.
    let whole = body.len() as u64;
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(whole)
            .per_field(whole),
    );
    let mut multipart = multer::Multipart::with_constraints(
        Full::new(body).into_data_stream(),
        boundary,
        constraints,
    );
    let mut parts = Parts::default();
    let mut count = 0;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(MalformedBody::from_multer)?
    {
        count += 1;
        if count > MAX_MULTIPART_PARTS {
            return Err(MalformedBody::multipart(format!(
                "more than {MAX_MULTIPART_PARTS} parts"
            )));
        }
        let Some(name) = field.name().map(str::to_owned) else {
            return Err(MalformedBody::multipart(format!(
                "part {count} has no name in its Content-Disposition header"
            )));
        };
        let value = part_value(&name, field).await?;
        parts.push(name, value);
    }
    Ok(Value::Object(parts.map))
}

/// The value of one part (see [`parse_multipart`]).
async fn part_value(name: &str, field: multer::Field<'_>) -> Result<Value, MalformedBody> {
    let content_type = field
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let essence = content_type.as_deref().map_or("", essence);
    let file_name = field.file_name().map(str::to_owned);
    let textual = content_type.is_none()
        || is_json(essence)
        || starts_with_ignore_ascii_case(essence, "text/");
    if file_name.is_some() || !textual {
        let bytes = field.bytes().await.map_err(MalformedBody::from_multer)?;
        let content_type = content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        return Ok(blob(Some(file_name), content_type, &bytes));
    }
    if is_json(essence) {
        let bytes = field.bytes().await.map_err(MalformedBody::from_multer)?;
        return serde_json::from_slice(&bytes).map_err(|e| MalformedBody::JsonPart {
            part: name.to_owned(),
            content_type: content_type.unwrap_or_default(),
            reason: e.to_string(),
        });
    }
    let text = field.text().await.map_err(MalformedBody::from_multer)?;
    Ok(Value::String(text))
}

/// The parts of a multipart body by name; a repeated name collects its values in an array. The
/// names already turned into arrays are remembered, so a JSON part whose value is itself an
/// array is not mistaken for a repetition.
#[derive(Default)]
struct Parts {
    map: Map<String, Value>,
    repeated: std::collections::HashSet<String>,
}

impl Parts {
    fn push(&mut self, name: String, value: Value) {
        let Parts { map, repeated } = self;
        match map.get_mut(&name) {
            None => {
                map.insert(name, value);
            }
            Some(Value::Array(values)) if repeated.contains(&name) => values.push(value),
            Some(first) => {
                *first = Value::Array(vec![first.take(), value]);
                repeated.insert(name);
            }
        }
    }
}

/// `{content_type, size, data_base64}` for a body, with `filename` first for a multipart file
/// (`Some(None)`: a file part without a filename).
fn blob(filename: Option<Option<String>>, content_type: &str, bytes: &[u8]) -> Value {
    let mut map = Map::with_capacity(4);
    if let Some(filename) = filename {
        map.insert("filename".into(), json!(filename));
    }
    map.insert("content_type".into(), json!(content_type));
    map.insert("size".into(), json!(bytes.len()));
    map.insert(
        "data_base64".into(),
        json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
    );
    Value::Object(map)
}

/// The media type of a `Content-Type` value, without parameters (case kept).
/// An upper bound of the memory that making `trigger.body` of `body` and a run of it holds at
/// once: the raw body, the parsed value (estimated from the text before parsing, see
/// [`triggerd_domain::memory`]) and the mapped input's copy of it, and the stored texts of both
/// (with the database driver's copies). What a large webhook charges against the memory budget.
pub(crate) fn processing_cost(headers: &http::HeaderMap, body: &[u8]) -> u64 {
    let size = body.len() as u64;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let essence = content_type.map_or("", essence);
    let parsed = if is_json(essence) || content_type.is_none() {
        triggerd_domain::memory::json_heap_bytes(body)
    } else if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        // Each field is a map entry (under 300 bytes) and one or two strings.
        let fields = body.iter().filter(|b| **b == b'&').count() as u64 + 1;
        2 * size + 300 * fields
    } else if essence.eq_ignore_ascii_case("multipart/form-data") {
        // multer's chunks, the parts' text, base64 of file parts.
        4 * size
    } else {
        // `{content_type, size, data_base64}`: the base64 text.
        2 * size
    };
    5 * size + 2 * parsed
}

fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// `application/json` or any `+json` type, in any case.
fn is_json(essence: &str) -> bool {
    essence.eq_ignore_ascii_case("application/json")
        || ends_with_ignore_ascii_case(essence, "+json")
}

fn starts_with_ignore_ascii_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn ends_with_ignore_ascii_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDARY: &str = "XyZ-boundary-1234";

    fn headers(content_type: Option<&str>) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        if let Some(ct) = content_type {
            map.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        map
    }

    fn multipart_headers() -> http::HeaderMap {
        headers(Some(&format!("multipart/form-data; boundary={BOUNDARY}")))
    }

    /// A part: its Content-Disposition parameters, optional content type, and content.
    struct Part<'a> {
        disposition: &'a str,
        content_type: Option<&'a str>,
        data: &'a [u8],
    }

    fn part<'a>(disposition: &'a str, content_type: Option<&'a str>, data: &'a [u8]) -> Part<'a> {
        Part {
            disposition,
            content_type,
            data,
        }
    }

    fn multipart_body(parts: &[Part<'_>]) -> Bytes {
        let mut body = Vec::new();
        for p in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            body.extend_from_slice(
                format!("Content-Disposition: form-data; {}\r\n", p.disposition).as_bytes(),
            );
            if let Some(ct) = p.content_type {
                body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(p.data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        Bytes::from(body)
    }

    async fn parse(headers: &http::HeaderMap, body: &[u8]) -> Result<Value, MalformedBody> {
        parse_body(headers, &Bytes::copy_from_slice(body)).await
    }

    #[tokio::test]
    async fn json_form_and_binary_bodies_parse() {
        let json_ct = headers(Some("application/json; charset=utf-8"));
        assert_eq!(parse(&json_ct, br#"{"a":1}"#).await, Ok(json!({"a": 1})));
        assert_eq!(parse(&json_ct, b"{nope").await, Err(MalformedBody::Json));
        assert_eq!(parse(&json_ct, b"").await, Ok(Value::Null));
        let vendor = headers(Some("Application/Vnd.Api+JSON"));
        assert_eq!(parse(&vendor, b"[true]").await, Ok(json!([true])));
        let form = headers(Some("application/x-www-form-urlencoded"));
        assert_eq!(
            parse(&form, b"a=1&a=2&b=x").await,
            Ok(json!({"a": ["1", "2"], "b": "x"}))
        );
        assert_eq!(parse(&headers(None), b"[1,2]").await, Ok(json!([1, 2])));
        let xml = headers(Some("application/xml"));
        assert_eq!(
            parse(&xml, b"<a/>").await,
            Ok(json!({"content_type": "application/xml", "size": 4, "data_base64": "PGEvPg=="}))
        );
        assert_eq!(
            parse(&headers(None), b"plain")
                .await
                .map(|v| v["content_type"].clone()),
            Ok(json!("application/octet-stream"))
        );
    }

    #[tokio::test]
    async fn multipart_text_json_and_file_parts_parse() {
        let body = multipart_body(&[
            part(r#"name="event""#, None, b"order.created"),
            part(
                r#"name="note""#,
                Some("text/plain; charset=utf-8"),
                "caf\u{e9}".as_bytes(),
            ),
            part(
                r#"name="meta""#,
                Some("application/json"),
                br#"{"id": 7, "tags": ["a"]}"#,
            ),
            part(
                r#"name="doc"; filename="report.txt""#,
                Some("text/plain"),
                b"hello",
            ),
            part(
                r#"name="raw""#,
                Some("application/octet-stream"),
                b"\x00\x01",
            ),
        ]);
        let value = parse_body(&multipart_headers(), &body).await.unwrap();
        assert_eq!(
            value,
            json!({
                "event": "order.created",
                "note": "caf\u{e9}",
                "meta": {"id": 7, "tags": ["a"]},
                "doc": {
                    "filename": "report.txt",
                    "content_type": "text/plain",
                    "size": 5,
                    "data_base64": "aGVsbG8="
                },
                "raw": {
                    "filename": null,
                    "content_type": "application/octet-stream",
                    "size": 2,
                    "data_base64": "AAE="
                }
            })
        );
        // Parts keep the order they were sent in.
        let names: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(names, ["event", "note", "meta", "doc", "raw"]);
    }

    #[tokio::test]
    async fn multipart_repeated_names_become_arrays_in_order() {
        let body = multipart_body(&[
            part(r#"name="tag""#, None, b"a"),
            part(r#"name="list""#, Some("application/json"), b"[1, 2]"),
            part(r#"name="tag""#, None, b"b"),
            part(r#"name="one""#, None, b"x"),
            part(r#"name="tag""#, None, b"c"),
            part(r#"name="list""#, Some("application/json"), b"[3]"),
        ]);
        let value = parse_body(&multipart_headers(), &body).await.unwrap();
        assert_eq!(
            value,
            json!({"tag": ["a", "b", "c"], "list": [[1, 2], [3]], "one": "x"})
        );
        // A JSON array sent once stays as it is.
        let body = multipart_body(&[part(r#"name="list""#, Some("application/json"), b"[1]")]);
        assert_eq!(
            parse_body(&multipart_headers(), &body).await,
            Ok(json!({"list": [1]}))
        );
    }

    #[tokio::test]
    async fn multipart_binary_file_bytes_round_trip() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        // The boundary itself must not occur in the data; CR LF and `--` inside it are fine.
        let mut data = bytes.clone();
        data.extend_from_slice(b"\r\n--not-the-boundary\r\n");
        let body = multipart_body(&[part(
            r#"name="file"; filename="all.bin""#,
            Some("application/octet-stream"),
            &data,
        )]);
        let value = parse_body(&multipart_headers(), &body).await.unwrap();
        let file = &value["file"];
        assert_eq!(file["filename"], "all.bin");
        assert_eq!(file["content_type"], "application/octet-stream");
        assert_eq!(file["size"], data.len());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(file["data_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, data);
    }

    #[tokio::test]
    async fn multipart_json_part_that_does_not_parse_is_malformed() {
        let body = multipart_body(&[part(r#"name="meta""#, Some("application/json"), b"{nope")]);
        let err = parse_body(&multipart_headers(), &body).await.unwrap_err();
        assert!(
            matches!(&err, MalformedBody::JsonPart { part, .. } if part == "meta"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn multipart_without_boundary_is_malformed() {
        let body = multipart_body(&[part(r#"name="a""#, None, b"1")]);
        for content_type in ["multipart/form-data", "multipart/form-data; charset=utf-8"] {
            let err = parse_body(&headers(Some(content_type)), &body)
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("boundary"),
                "{content_type}: {err}"
            );
        }
        // A boundary that the body does not use.
        let err = parse_body(&headers(Some("multipart/form-data; boundary=other")), &body)
            .await
            .unwrap_err();
        assert!(matches!(err, MalformedBody::Multipart { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn truncated_multipart_is_malformed() {
        let body = multipart_body(&[
            part(r#"name="a""#, None, b"first"),
            part(r#"name="b""#, None, b"second part"),
        ]);
        // Cut inside the second part's data, inside its headers, and before the closing `--`.
        let closing = format!("--{BOUNDARY}--\r\n").len();
        for cut in [body.len() - closing - 4, 60, body.len() - closing] {
            let err = parse_body(&multipart_headers(), &body.slice(..cut))
                .await
                .unwrap_err();
            assert!(
                matches!(err, MalformedBody::Multipart { .. }),
                "cut at {cut}: {err:?}"
            );
        }
        // A part without a name.
        let body = multipart_body(&[part(r#"filename="x.txt""#, None, b"x")]);
        let err = parse_body(&multipart_headers(), &body).await.unwrap_err();
        assert!(err.to_string().contains("no name"), "{err}");
    }

    #[tokio::test]
    async fn too_many_multipart_parts_are_malformed() {
        let names: Vec<String> = (0..=MAX_MULTIPART_PARTS)
            .map(|i| format!(r#"name="f{i}""#))
            .collect();
        let parts: Vec<Part<'_>> = names.iter().map(|n| part(n, None, b"v")).collect();
        let at_limit = multipart_body(&parts[..MAX_MULTIPART_PARTS]);
        let value = parse_body(&multipart_headers(), &at_limit).await.unwrap();
        assert_eq!(value.as_object().unwrap().len(), MAX_MULTIPART_PARTS);

        let over = multipart_body(&parts);
        let err = parse_body(&multipart_headers(), &over).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("malformed multipart/form-data body: more than {MAX_MULTIPART_PARTS} parts")
        );
    }
}
