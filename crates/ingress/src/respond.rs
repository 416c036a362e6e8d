//! Building JSON responses.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use crate::{ApiError, Body};

/// A JSON response with `status`.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    json_response_sized(status, body, 128)
}

/// [`json_response`] for a large answer of about `expected` bytes: written into a buffer of that
/// size at once, not one doubled (and copied) as it grows.
pub fn json_response_sized<T: Serialize + ?Sized>(
    status: StatusCode,
    body: &T,
    expected: usize,
) -> Response<Body> {
    let mut bytes = Vec::with_capacity(expected);
    if serde_json::to_writer(&mut bytes, body).is_err() {
        bytes = b"{}".to_vec();
    }
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The response for an error: its status, its JSON body and its extra headers.
pub fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = json_response(error.status, &error.body());
    for (name, value) in &error.headers {
        if let Ok(value) = header::HeaderValue::from_str(value) {
            response.headers_mut().insert(name.clone(), value);
        }
    }
    response
}

/// 204 No Content.
pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
