//! The outbound client: one request in, one bounded response out.

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

use crate::error::OutboundError;
use crate::guard::{Guard, GuardedResolver, find_guard_error, redirect_policy};

/// How the outbound client behaves; the same for every request it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundConfig {
    /// Connect to loopback, private and other non-public addresses too
    /// (`TRIGGERD_ALLOW_PRIVATE_NETWORKS=true`). Off by default: see SPEC 7, SSRF.
    pub allow_private_networks: bool,
    /// Redirects followed per request before failing with
    /// [`OutboundError::TooManyRedirects`]; `0` follows none. Default 5.
    pub max_redirects: usize,
    /// The `User-Agent` sent unless a request sets its own. Default `triggerd/<version>`.
    pub user_agent: String,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            max_redirects: 5,
            user_agent: concat!("triggerd/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// One HTTP request to send.
#[derive(Clone)]
pub struct OutboundRequest {
    /// The method.
    pub method: http::Method,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// Headers in the order they are sent; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Bytes>,
    /// The whole exchange must finish within this: resolving, connecting, every redirect, the
    /// response headers and the body.
    pub timeout: Duration,
    /// At most this many bytes of the response body are kept; the rest is not read.
    pub max_response_bytes: usize,
}

/// Header values (signatures, tokens) and the URL's path and query (which often carry a secret)
/// stay out of `Debug`.
impl fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("OutboundRequest")
            .field("method", &self.method)
            .field("url", &redacted_url(&self.url))
            .field("header_names", &header_names)
            .field("body_len", &self.body.as_ref().map(Bytes::len))
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    /// The status code of the final response (after redirects).
    pub status: u16,
    /// Response headers, names lower-cased, in the order received except that the values of a
    /// repeated name are grouped at its first appearance. Values that are not UTF-8 are decoded
    /// lossily.
    pub headers: Vec<(String, String)>,
    /// The body, at most [`OutboundRequest::max_response_bytes`] long.
    pub body: Bytes,
    /// The body was longer than the limit and was cut there.
    pub body_truncated: bool,
    /// From the start of [`OutboundClient::send`] until the body was read.
    pub duration: Duration,
}

/// The SSRF-guarded HTTP client for event-hook deliveries and `http` steps.
///
/// Cheap to clone: clones share one connection pool. Build one per process (or per
/// configuration) and clone it, rather than one per request.
#[derive(Clone)]
pub struct OutboundClient {
    http: reqwest::Client,
    guard: Arc<Guard>,
    /// Kept for `Debug`.
    config: Arc<OutboundConfig>,
}

impl fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OutboundClient {
    /// Builds the client: rustls on ring, no proxy (a proxy would resolve names where the guard
    /// cannot see them), the guarded resolver, and the redirect policy.
    ///
    /// Installs ring as rustls' process-wide crypto provider unless one is installed already.
    pub fn new(config: OutboundConfig) -> Result<Self, OutboundError> {
        Self::build(config, None)
    }

    /// A client that treats exactly `public` as a public address, so that the guarded paths can
    /// be tested against a server on loopback.
    #[cfg(test)]
    pub(crate) fn with_test_public(
        config: OutboundConfig,
        public: IpAddr,
    ) -> Result<Self, OutboundError> {
        Self::build(config, Some(public))
    }

    fn build(config: OutboundConfig, test_public: Option<IpAddr>) -> Result<Self, OutboundError> {
        // An error only means a provider is installed already (ring by us or the server, or
        // another one the embedding program chose), which reqwest then uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let user_agent = HeaderValue::from_bytes(config.user_agent.as_bytes()).map_err(|err| {
            OutboundError::InvalidHeader {
                name: "user-agent".to_owned(),
                reason: format!("the configured user agent is not a valid value: {err}"),
            }
        })?;
        let guard = Arc::new(Guard::new(config.allow_private_networks, test_public));
        let http = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedResolver::new(Arc::clone(&guard)))
            .redirect(redirect_policy(Arc::clone(&guard), config.max_redirects))
            // The previous URL may carry a secret in its path or query; never pass it on.
            .referer(false)
            .user_agent(user_agent)
            .build()
            .map_err(|err| OutboundError::Other {
                reason: format!("could not build the HTTP client: {}", error_chain(err)),
            })?;
        Ok(Self {
            http,
            guard,
            config: Arc::new(config),
        })
    }

    /// Sends `request` and reads the response, its body cut at `max_response_bytes`.
    ///
    /// Any status code is a response; errors are for requests that got none (see
    /// [`OutboundError`]). Addresses outside public networks are refused unless the client
    /// allows private networks.
    pub async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let started = Instant::now();
        let url = Url::parse(&request.url).map_err(|err| OutboundError::InvalidUrl {
            url: request.url.clone(),
            reason: err.to_string(),
        })?;
        self.guard.check_url(&url)?;
        let headers = header_map(&request.headers)?;

        let mut builder = self.http.request(request.method, url).headers(headers);
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let limit = request.max_response_bytes;
        let exchange = async move {
            let mut response = builder.send().await?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect();
            let (body, body_truncated) = read_capped(&mut response, limit).await?;
            Ok::<_, reqwest::Error>((status, headers, body, body_truncated))
        };
        // One deadline over everything, body included: dropping the future on expiry drops the
        // connection with it.
        let outcome = tokio::time::timeout(request.timeout, exchange)
            .await
            .map_err(|_| OutboundError::Timeout {
                after: request.timeout,
            })?;
        let (status, headers, body, body_truncated) =
            outcome.map_err(|err| classify(err, request.timeout))?;
        Ok(OutboundResponse {
            status,
            headers,
            body,
            body_truncated,
            duration: started.elapsed(),
        })
    }
}

/// Reads the body chunk by chunk, keeping at most `limit` bytes; stops reading at the first byte
/// past the limit.
async fn read_capped(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<(Bytes, bool), reqwest::Error> {
    // The declared length only sizes the first allocation, and never beyond a modest amount.
    let expected = response.content_length().unwrap_or(0);
    let capacity = usize::try_from(expected)
        .unwrap_or(usize::MAX)
        .min(limit)
        .min(64 * 1024);
    let mut body = BytesMut::with_capacity(capacity);
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body.freeze(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), false))
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, OutboundError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let invalid = |reason: String| OutboundError::InvalidHeader {
            name: name.clone(),
            reason,
        };
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("the name is not a valid header name".to_owned()))?;
        // Bytes, not `from_str`: UTF-8 beyond ASCII is allowed on the wire (obs-text).
        let header_value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| invalid("the value holds a control character or line break".to_owned()))?;
        map.append(header_name, header_value);
    }
    Ok(map)
}

/// Turns reqwest's error into ours: the guard's own error when it is in the chain, otherwise by
/// kind.
fn classify(err: reqwest::Error, timeout: Duration) -> OutboundError {
    if let Some(guard_error) = find_guard_error(&err) {
        return guard_error.clone().into();
    }
    if err.is_timeout() {
        return OutboundError::Timeout { after: timeout };
    }
    let is_connect = err.is_connect();
    let reason = error_chain(err);
    if is_connect {
        OutboundError::Connect { reason }
    } else {
        OutboundError::Other { reason }
    }
}

/// The messages of `err` and its sources, joined; without the URL, which may carry a secret.
fn error_chain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut current = err.source();
    while let Some(cause) = current {
        let message = cause.to_string();
        // Some layers repeat their cause's message in their own.
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        current = cause.source();
    }
    text
}

/// `scheme://host[:port]/…` — enough to tell requests apart in a debug log.
fn redacted_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) => format!("{}/…", parsed.origin().ascii_serialization()),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{Reply, TestServer};

    fn request(url: impl Into<String>) -> OutboundRequest {
        OutboundRequest {
            method: http::Method::GET,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(5),
            max_response_bytes: 64 * 1024,
        }
    }

    fn private_allowed() -> OutboundClient {
        OutboundClient::new(OutboundConfig {
            allow_private_networks: true,
            ..OutboundConfig::default()
        })
        .expect("client")
    }

    fn guarded() -> OutboundClient {
        OutboundClient::new(OutboundConfig::default()).expect("client")
    }

    #[tokio::test]
    async fn request_arrives_whole_and_response_comes_back_whole() {
        let server = TestServer::start("127.0.0.1", |_| {
            Reply::status(
                201,
                &[
                    ("X-Reply", "yes"),
                    ("Set-Cookie", "a=1"),
                    ("Set-Cookie", "b=2"),
                ],
                b"done",
            )
        })
        .await;
        let client = private_allowed();
        let response = client
            .send(OutboundRequest {
                method: http::Method::PUT,
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("webhook-id".into(), "evt_1".into()),
                    ("x-repeat".into(), "one".into()),
                    ("x-repeat".into(), "two".into()),
                    ("x-utf8".into(), "grüße".into()),
                ],
                body: Some(Bytes::from_static(br#"{"a":1}"#)),
                ..request(server.url("/hook?x=1"))
            })
            .await
            .expect("response");

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let seen = &requests[0];
        assert_eq!(seen.method, "PUT");
        assert_eq!(seen.path, "/hook?x=1");
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(seen.header("webhook-id"), Some("evt_1"));
        let repeated: Vec<&str> = seen
            .headers
            .iter()
            .filter(|(n, _)| n == "x-repeat")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(repeated, ["one", "two"]);
        assert_eq!(seen.header("x-utf8"), Some("grüße"));
        let user_agent = format!("triggerd/{}", env!("CARGO_PKG_VERSION"));
        assert_eq!(seen.header("user-agent"), Some(user_agent.as_str()));
        assert_eq!(seen.body, br#"{"a":1}"#);

        assert_eq!(response.status, 201);
        let names: Vec<&str> = response.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-reply",
                "set-cookie",
                "set-cookie",
                "content-length",
                "connection"
            ]
        );
        assert_eq!(response.headers[0].1, "yes");
        assert_eq!(response.headers[1].1, "a=1");
        assert_eq!(response.headers[2].1, "b=2");
        assert_eq!(&response.body[..], b"done");
        assert!(!response.body_truncated);
        assert!(response.duration > Duration::ZERO);
    }

    #[tokio::test]
    async fn a_request_user_agent_replaces_the_configured_one() {
        let server = TestServer::start("127.0.0.1", |_| Reply::status(204, &[], b"")).await;
        let client = OutboundClient::new(OutboundConfig {
            allow_private_networks: true,
            user_agent: "configured/1".into(),
            ..OutboundConfig::default()
        })
        .expect("client");
        client.send(request(server.url("/"))).await.expect("first");
        client
            .send(OutboundRequest {
                headers: vec![("User-Agent".into(), "own/2".into())],
                ..request(server.url("/"))
            })
            .await
            .expect("second");
        let agents: Vec<Option<String>> = server
            .requests()
            .iter()
            .map(|r| r.header("user-agent").map(str::to_owned))
            .collect();
        assert_eq!(agents, [Some("configured/1".into()), Some("own/2".into())]);
    }

    #[tokio::test]
    async fn loopback_in_every_spelling_is_refused_before_connecting() {
        let server = TestServer::start("127.0.0.1", |_| Reply::status(200, &[], b"ok")).await;
        let port = server.addr.port();
        let client = guarded();
        let cases = [
            (format!("http://127.0.0.1:{port}/"), "127.0.0.1"),
            (format!("http://localhost:{port}/"), "localhost"),
            // The URL parser normalises these to 127.0.0.1 before anything else sees them.
            (format!("http://2130706433:{port}/"), "127.0.0.1"),
            (format!("http://0x7f.1:{port}/"), "127.0.0.1"),
            (format!("http://127.1:{port}/"), "127.0.0.1"),
            (format!("http://0177.0.0.1:{port}/"), "127.0.0.1"),
            (format!("http://[::1]:{port}/"), "[::1]"),
            (
                format!("http://[::ffff:127.0.0.1]:{port}/"),
                "[::ffff:7f00:1]",
            ),
            (format!("https://127.0.0.1:{port}/"), "127.0.0.1"),
        ];
        for (url, expected_host) in cases {
            match client.send(request(url.clone())).await {
                Err(OutboundError::Refused {
                    host,
                    address,
                    range,
                }) => {
                    assert_eq!(host, expected_host, "{url}");
                    assert!(address.is_loopback() || address.to_canonical().is_loopback());
                    assert!(range.starts_with("loopback"), "{url}: {range}");
                }
                other => panic!("{url}: expected Refused, got {other:?}"),
            }
        }
        assert_eq!(
            server.connections(),
            0,
            "the guard let a connection through"
        );
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn non_public_literals_are_refused_with_their_range() {
        let client = guarded();
        let cases = [
            (
                "http://169.254.169.254/latest/meta-data/",
                "link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)",
            ),
            ("http://10.1.2.3:8080/", "private 10.0.0.0/8"),
            ("http://192.168.1.1/", "private 192.168.0.0/16"),
            (
                "http://100.64.0.1/",
                "shared address space (CGNAT) 100.64.0.0/10",
            ),
            ("http://0.0.0.0:9/", "unspecified 0.0.0.0"),
            ("http://[fd00::1]/", "unique local fc00::/7"),
            ("http://[fe80::1]/", "link-local fe80::/10"),
            (
                "http://[64:ff9b::a9fe:a9fe]/",
                "link-local 169.254.0.0/16 (cloud metadata 169.254.169.254)",
            ),
        ];
        for (url, expected) in cases {
            let err = client.send(request(url)).await.expect_err(url);
            match &err {
                OutboundError::Refused { range, .. } => assert_eq!(*range, expected, "{url}"),
                other => panic!("{url}: expected Refused, got {other:?}"),
            }
            assert!(!err.is_retryable());
            assert!(
                err.to_string()
                    .contains("set TRIGGERD_ALLOW_PRIVATE_NETWORKS=true to allow private networks"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn the_body_is_cut_at_the_limit_and_flagged() {
        let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let body = big.clone();
        let server = TestServer::start("127.0.0.1", move |request| match request.path.as_str() {
            "/big" => Reply::status(200, &[], &body),
            "/exact" => Reply::status(200, &[], &body[..1000]),
            // Chunked, no declared length: 600 + 600 bytes.
            _ => {
                let mut raw =
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                        .to_vec();
                for part in [&body[..600], &body[600..1200]] {
                    raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    raw.extend_from_slice(part);
                    raw.extend_from_slice(b"\r\n");
                }
                raw.extend_from_slice(b"0\r\n\r\n");
                Reply::Raw(raw)
            }
        })
        .await;
        let client = private_allowed();
        let limited = |path: &str| OutboundRequest {
            max_response_bytes: 1000,
            ..request(server.url(path))
        };

        let response = client.send(limited("/big")).await.expect("big");
        assert_eq!(response.body.len(), 1000);
        assert_eq!(&response.body[..], &big[..1000]);
        assert!(response.body_truncated);

        let response = client.send(limited("/exact")).await.expect("exact");
        assert_eq!(&response.body[..], &big[..1000]);
        assert!(
            !response.body_truncated,
            "a body of exactly the limit is whole"
        );

        let response = client.send(limited("/chunked")).await.expect("chunked");
        assert_eq!(&response.body[..], &big[..1000]);
        assert!(response.body_truncated);

        let response = client
            .send(OutboundRequest {
                max_response_bytes: 0,
                ..request(server.url("/big"))
            })
            .await
            .expect("zero");
        assert!(response.body.is_empty());
        assert!(response.body_truncated);
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_times_out() {
        let server = TestServer::start("127.0.0.1", |_| Reply::Hang).await;
        let client = private_allowed();
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let err = client
            .send(OutboundRequest {
                timeout,
                ..request(server.url("/"))
            })
            .await
            .expect_err("no answer");
        let elapsed = started.elapsed();
        assert!(
            matches!(err, OutboundError::Timeout { after } if after == timeout),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert!(elapsed >= timeout, "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        assert_eq!(server.requests().len(), 1, "the request did arrive");
    }

    #[tokio::test]
    async fn the_timeout_covers_a_body_that_stalls() {
        let server = TestServer::start("127.0.0.1", |_| {
            Reply::RawThenHang(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten..".to_vec())
        })
        .await;
        let client = private_allowed();
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let err = client
            .send(OutboundRequest {
                timeout,
                ..request(server.url("/"))
            })
            .await
            .expect_err("stalled body");
        assert!(matches!(err, OutboundError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// `/hop/N` redirects to `/hop/N+1`, up to `/hop/<last>`, which answers 200.
    async fn hop_server(last: usize) -> TestServer {
        TestServer::start("127.0.0.1", move |request| {
            let n: usize = request
                .path
                .strip_prefix("/hop/")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if n < last {
                Reply::status(302, &[("location", &format!("/hop/{}", n + 1))], b"")
            } else {
                Reply::status(200, &[], b"arrived")
            }
        })
        .await
    }

    #[tokio::test]
    async fn redirects_up_to_the_limit_are_followed() {
        let server = hop_server(2).await;
        let client = OutboundClient::new(OutboundConfig {
            allow_private_networks: true,
            max_redirects: 2,
            ..OutboundConfig::default()
        })
        .expect("client");
        let response = client
            .send(request(server.url("/hop/0")))
            .await
            .expect("response");
        assert_eq!(response.status, 200);
        assert_eq!(&response.body[..], b"arrived");
        let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/hop/0", "/hop/1", "/hop/2"]);
    }

    #[tokio::test]
    async fn more_redirects_than_the_limit_fail() {
        let server = hop_server(3).await;
        for max in [0, 2] {
            let client = OutboundClient::new(OutboundConfig {
                allow_private_networks: true,
                max_redirects: max,
                ..OutboundConfig::default()
            })
            .expect("client");
            let before = server.requests().len();
            let err = client
                .send(request(server.url("/hop/0")))
                .await
                .expect_err("too many");
            assert!(
                matches!(err, OutboundError::TooManyRedirects { max: m } if m == max),
                "{err:?}"
            );
            assert_eq!(server.requests().len() - before, max + 1, "requests sent");
        }
    }

    #[tokio::test]
    async fn a_redirect_to_a_refused_address_is_not_followed() {
        // The target listens on 127.0.0.2 so that a followed redirect would be counted.
        let target = TestServer::start("127.0.0.2", |_| Reply::status(200, &[], b"inside")).await;
        let target_port = target.addr.port();
        let origin = TestServer::start("127.0.0.1", move |request| match request.path.as_str() {
            "/literal" => Reply::status(
                302,
                &[("location", &format!("http://127.0.0.2:{target_port}/"))],
                b"",
            ),
            "/numeric" => Reply::status(
                307,
                &[("location", &format!("http://2130706434:{target_port}/"))],
                b"",
            ),
            "/scheme" => Reply::status(302, &[("location", "file:///etc/passwd")], b""),
            _ => Reply::status(200, &[], b"outside"),
        })
        .await;
        // 127.0.0.1 counts as public for this client, so the first hop passes the guard.
        let client = OutboundClient::with_test_public(
            OutboundConfig::default(),
            "127.0.0.1".parse().unwrap(),
        )
        .expect("client");

        let response = client
            .send(request(origin.url("/")))
            .await
            .expect("guarded first hop");
        assert_eq!(&response.body[..], b"outside");

        for path in ["/literal", "/numeric"] {
            match client.send(request(origin.url(path))).await {
                Err(OutboundError::Refused {
                    host,
                    address,
                    range,
                }) => {
                    assert_eq!(host, "127.0.0.2", "{path}");
                    assert_eq!(address, "127.0.0.2".parse::<IpAddr>().unwrap());
                    assert_eq!(range, "loopback 127.0.0.0/8");
                }
                other => panic!("{path}: expected Refused, got {other:?}"),
            }
        }
        // A Location that is not http(s) is never followed: the 3xx itself comes back.
        let response = client
            .send(request(origin.url("/scheme")))
            .await
            .expect("file redirect");
        assert_eq!(response.status, 302);

        assert_eq!(target.connections(), 0, "a refused redirect was followed");
        assert_eq!(origin.requests().len(), 4);
    }

    #[tokio::test]
    async fn invalid_urls_and_headers_are_rejected_before_sending() {
        let client = private_allowed();
        for url in [
            "ftp://example.com/file",
            "file:///etc/passwd",
            "mailto:someone@example.com",
            "not a url",
            "/relative/path",
            "http://",
        ] {
            let err = client.send(request(url)).await.expect_err(url);
            assert!(
                matches!(err, OutboundError::InvalidUrl { .. }),
                "{url}: {err:?}"
            );
            assert!(!err.is_retryable());
        }
        for (name, value) in [
            ("bad name", "x"),
            ("x-ok", "line\nbreak"),
            ("x-ok", "nul\0"),
            ("", "x"),
            ("naïve", "x"),
        ] {
            let err = client
                .send(OutboundRequest {
                    headers: vec![(name.into(), value.into())],
                    ..request("http://127.0.0.1:9/")
                })
                .await
                .expect_err(name);
            assert!(
                matches!(&err, OutboundError::InvalidHeader { name: n, .. } if n == name),
                "{err:?}"
            );
        }
        let err = OutboundClient::new(OutboundConfig {
            user_agent: "bad\r\nagent".into(),
            ..OutboundConfig::default()
        })
        .expect_err("bad user agent");
        assert!(
            matches!(err, OutboundError::InvalidHeader { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn https_runs_a_tls_handshake_on_ring() {
        // A plain-text server: the handshake must start (so the crypto provider is in place)
        // and fail as a connection error, not a panic.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut hello = [0u8; 5];
                let _ = stream.read_exact(&mut hello).await;
                // A TLS record starts with content type 22 (handshake).
                let reply: &[u8] = if hello[0] == 22 {
                    b"HTTP/1.1 400 Not TLS\r\n\r\n"
                } else {
                    b""
                };
                let _ = stream.write_all(reply).await;
            }
        });
        let err = private_allowed()
            .send(request(format!("https://127.0.0.1:{port}/")))
            .await
            .expect_err("not TLS");
        assert!(matches!(err, OutboundError::Connect { .. }), "{err:?}");
        assert!(err.is_retryable());
        // The reason leaves the URL out (a URL may carry a secret).
        assert!(!err.to_string().contains("https://"), "{err}");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = private_allowed()
            .send(request(format!("http://127.0.0.1:{port}/")))
            .await
            .expect_err("closed");
        assert!(matches!(err, OutboundError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains("tcp connect error"), "{err}");
        assert!(!err.to_string().contains("http://"), "{err}");
    }

    #[test]
    fn debug_output_keeps_secrets_out() {
        let request = OutboundRequest {
            method: http::Method::POST,
            url: "https://hooks.example.com/services/T000/SECRETPATH?token=SECRETQUERY".into(),
            headers: vec![("authorization".into(), "Bearer SECRETTOKEN".into())],
            body: Some(Bytes::from_static(b"SECRETBODY")),
            timeout: Duration::from_secs(1),
            max_response_bytes: 10,
        };
        let debug = format!("{request:?}");
        assert!(debug.contains("https://hooks.example.com"), "{debug}");
        assert!(debug.contains("authorization"), "{debug}");
        assert!(!debug.contains("SECRET"), "{debug}");
    }
}
