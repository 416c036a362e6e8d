//! Connection limits and deadlines (`TRIGGERD_HEADER_READ_TIMEOUT_SECS`,
//! `TRIGGERD_BODY_READ_TIMEOUT_SECS`, `TRIGGERD_IDLE_TIMEOUT_SECS`, `TRIGGERD_MAX_CONNECTIONS`),
//! spoken over raw TCP: a client that trickles or stalls is cut off, idle connections close,
//! connections past the cap wait, and a stalled body does not hold a shutdown.
//!
//! The servers run with timeouts of a second or two; every wait is for an event (an answer, the
//! server closing the connection) with a deadline, except where a test checks that nothing
//! happens for a while.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use triggerd_tests::{ADMIN_TOKEN, Backend, TestServer, order_workflow, send, triggerd_bin};

/// How long past a deadline the server may take to act on it (a busy 2-core machine).
const SLACK: Duration = Duration::from_secs(4);

/// A timeout setting of one second, and what the tests expect it to mean.
const ONE_SECOND: (&str, Duration) = ("1", Duration::from_secs(1));

/// A request that keeps the connection open, answered 404 without touching the database.
fn keep_alive_request(server: &TestServer) -> Vec<u8> {
    format!(
        "GET /no-such-route HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr()
    )
    .into_bytes()
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.addr())
        .await
        .expect("connect to the server")
}

/// Reads (and drops) whatever arrives until the server closes the connection; panics if it is
/// still open at `deadline`. Returns how long that took from `since`.
async fn closed_by_server(stream: &mut TcpStream, since: Instant, deadline: Duration) -> Duration {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout_at((since + deadline).into(), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept the connection open for {deadline:?}"
    );
    since.elapsed()
}

/// One HTTP/1.1 answer read off a connection that stays open: status, head, JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// Reads one answer with a `Content-Length` body.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.expect("read the answer head");
        assert!(
            n > 0,
            "connection closed before an answer head; read: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.expect("read the answer body");
        assert!(n > 0, "connection closed inside an answer body");
        body.extend_from_slice(&chunk[..n]);
    }
    Answer {
        status,
        head,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

/// Sends a request that keeps the connection open and expects its 404.
async fn round_trip(server: &TestServer, stream: &mut TcpStream) {
    stream
        .write_all(&keep_alive_request(server))
        .await
        .expect("write a request");
    let answer = tokio::time::timeout(SLACK, read_answer(stream))
        .await
        .expect("an answer to a complete request");
    assert_eq!(answer.status, 404, "{answer:?}");
}

async fn half_sent_request_headers_are_cut_off_at_the_header_timeout(backend: Backend) {
    let (setting, timeout) = ONE_SECOND;
    let server = TestServer::start_with(
        backend,
        &[
            ("TRIGGERD_HEADER_READ_TIMEOUT_SECS", setting),
            ("TRIGGERD_IDLE_TIMEOUT_SECS", "60"),
        ],
    )
    .await;

    // Headers that stop half-way.
    let mut half = connect(&server).await;
    let opened = Instant::now();
    half.write_all(b"POST /api/webhooks/wht_x HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        .await
        .unwrap();
    let took = closed_by_server(&mut half, opened, timeout + SLACK).await;
    assert!(
        took >= timeout - Duration::from_millis(100),
        "closed after {took:?}"
    );

    // Headers trickled a byte every 100 ms: the deadline counts from the first byte, so steady
    // progress does not extend it.
    let mut trickle = connect(&server).await;
    let opened = Instant::now();
    let (mut reader, mut writer) = trickle.split();
    let head = format!(
        "GET /no-such-route HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(200)
    );
    let drip = async {
        for byte in head.as_bytes() {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server waited for 20 s of trickled headers");
    };
    let mut buf = [0u8; 1024];
    let closed = async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let took = tokio::time::timeout(timeout + SLACK, async {
        tokio::select! {
            () = drip => {}
            () = closed => {}
        }
        opened.elapsed()
    })
    .await
    .expect("the server kept a trickling connection open");
    assert!(
        took >= timeout - Duration::from_millis(100),
        "closed after {took:?}"
    );

    // A connection that sends nothing at all.
    let mut silent = connect(&server).await;
    closed_by_server(&mut silent, Instant::now(), timeout + SLACK).await;

    // The same over HTTP/2 (h2c with prior knowledge): the preface, then nothing.
    let mut h2 = connect(&server).await;
    let opened = Instant::now();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    closed_by_server(&mut h2, opened, timeout + SLACK).await;

    // Complete requests are served as before.
    let mut fine = connect(&server).await;
    round_trip(&server, &mut fine).await;
}

async fn kept_alive_connections_close_after_the_idle_timeout(backend: Backend) {
    let (setting, timeout) = ONE_SECOND;
    let server = TestServer::start_with(
        backend,
        &[
            ("TRIGGERD_IDLE_TIMEOUT_SECS", setting),
            ("TRIGGERD_HEADER_READ_TIMEOUT_SECS", "60"),
        ],
    )
    .await;
    let mut stream = connect(&server).await;
    round_trip(&server, &mut stream).await;
    // Reused within the idle timeout: still open, and each answer restarts the clock.
    tokio::time::sleep(timeout / 2).await;
    round_trip(&server, &mut stream).await;
    let answered = Instant::now();
    let took = closed_by_server(&mut stream, answered, timeout + SLACK).await;
    assert!(
        took >= timeout - Duration::from_millis(100),
        "closed after {took:?}"
    );
}

async fn a_stalled_webhook_body_is_answered_408_and_starts_no_run(backend: Backend) {
    let (setting, timeout) = ONE_SECOND;
    let server =
        TestServer::start_with(backend, &[("TRIGGERD_BODY_READ_TIMEOUT_SECS", setting)]).await;
    let hook = server.setup_webhook(order_workflow(), json!({})).await;
    let body = br#"{"email": "a@example.com", "value": 1}"#;
    let head = format!(
        "POST /api/webhooks/{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        hook.token,
        server.addr(),
        body.len()
    );

    // Half the body, then silence.
    let mut stalled = connect(&server).await;
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&body[..10]).await.unwrap();
    let sent = Instant::now();
    let answer = tokio::time::timeout(timeout + SLACK, read_answer(&mut stalled))
        .await
        .expect("no answer to a stalled body");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.body["code"], "request_timeout", "{answer:?}");
    assert!(sent.elapsed() >= timeout - Duration::from_millis(100));
    // The rest of the body can never be told apart from a next request: the connection closes.
    closed_by_server(&mut stalled, Instant::now(), SLACK).await;

    // The body trickled a byte every 200 ms: the deadline is for the whole body.
    let mut trickle = connect(&server).await;
    trickle.write_all(head.as_bytes()).await.unwrap();
    let sent = Instant::now();
    let (mut reader, mut writer) = trickle.split();
    let drip = async {
        for byte in body {
            // Once the server answered and closed, writes fail: the answer is what counts.
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        std::future::pending::<()>().await;
    };
    let mut head_bytes = Vec::new();
    let answered = async {
        let mut buf = [0u8; 1024];
        while !head_bytes.ends_with(b"\r\n\r\n") && head_bytes.len() < 64 * 1024 {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head_bytes.extend_from_slice(&buf[..n]),
            }
            if head_bytes.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(timeout + SLACK, async {
        tokio::select! {
            () = drip => {}
            () = answered => {}
        }
    })
    .await
    .expect("no answer to a trickled body");
    let status_line = String::from_utf8_lossy(&head_bytes);
    assert!(status_line.starts_with("HTTP/1.1 408"), "{status_line:?}");
    assert!(sent.elapsed() < body.len() as u32 * Duration::from_millis(200));

    server.assert_no_runs(&hook.id).await;
    let rows = server
        .wait_for_requests(&hook.id, 2, Duration::from_secs(10))
        .await;
    for row in &rows {
        assert_eq!(row["status_code"], 408, "{row:#}");
        assert_eq!(row["outcome"], "failed", "{row:#}");
    }

    // The trigger still works.
    let reply = send(
        server
            .plain()
            .post(&hook.url)
            .header("content-type", "application/json")
            .body(&body[..]),
    )
    .await;
    server.expect(&reply, 201, "a complete webhook");
}

async fn stalled_bodies_of_callbacks_and_the_api_are_answered_408(backend: Backend) {
    let (setting, timeout) = ONE_SECOND;
    let server =
        TestServer::start_with(backend, &[("TRIGGERD_BODY_READ_TIMEOUT_SECS", setting)]).await;
    let requests = [
        // Read before its token is looked up: open to anyone.
        ("/api/resume/wt_nope".to_owned(), String::new()),
        (
            "/api/v1/workflows/stalled".to_owned(),
            format!("Authorization: Bearer {ADMIN_TOKEN}\r\n"),
        ),
    ];
    for (path, auth) in requests {
        let method = if path.starts_with("/api/v1") {
            "PUT"
        } else {
            "POST"
        };
        let mut stream = connect(&server).await;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{\"name\""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let sent = Instant::now();
        let answer = tokio::time::timeout(timeout + SLACK, read_answer(&mut stream))
            .await
            .unwrap_or_else(|_| panic!("no answer to a stalled body on {path}"));
        assert_eq!(answer.status, 408, "{path}: {answer:?}");
        assert_eq!(answer.body["code"], "request_timeout", "{path}: {answer:?}");
        assert!(sent.elapsed() >= timeout - Duration::from_millis(100));
    }
    let reply = send(server.client().get(server.api("/workflows/stalled"))).await;
    server.expect(&reply, 404, "the workflow whose body stalled");
}

async fn connections_past_the_limit_wait_until_one_closes(backend: Backend) {
    const LIMIT: usize = 5;
    let server = TestServer::start_with(
        backend,
        &[
            ("TRIGGERD_MAX_CONNECTIONS", "5"),
            ("TRIGGERD_HEADER_READ_TIMEOUT_SECS", "60"),
            ("TRIGGERD_IDLE_TIMEOUT_SECS", "60"),
        ],
    )
    .await;
    // Five connections, each answered once (so each is accepted) and kept open.
    let mut held = Vec::new();
    for _ in 0..LIMIT {
        let mut stream = connect(&server).await;
        round_trip(&server, &mut stream).await;
        held.push(stream);
    }

    // A sixth: the kernel completes the handshake (the backlog), the server does not serve it.
    let mut sixth = connect(&server).await;
    sixth.write_all(&keep_alive_request(&server)).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(1), read_answer(&mut sixth)).await;
    assert!(
        waited.is_err(),
        "a connection past TRIGGERD_MAX_CONNECTIONS=5 was served: {waited:?}"
    );

    // One closes: the sixth is served.
    drop(held.pop());
    let answer = tokio::time::timeout(SLACK, read_answer(&mut sixth))
        .await
        .expect("the waiting connection was not served after one closed");
    assert_eq!(answer.status, 404, "{answer:?}");
    assert!(answer.head.starts_with("HTTP/1.1 404"), "{answer:?}");

    // Closed connections give their places back.
    drop(sixth);
    held.clear();
    for _ in 0..2 * LIMIT {
        let reply = send(
            server
                .plain()
                .get(format!("{}/no-such-route", server.base_url())),
        )
        .await;
        server.expect(&reply, 404, "after the limit");
    }
}

async fn a_stalled_body_does_not_hold_a_shutdown(backend: Backend) {
    let body_timeout = Duration::from_secs(2);
    let mut server =
        TestServer::start_with(backend, &[("TRIGGERD_BODY_READ_TIMEOUT_SECS", "2")]).await;
    let hook = server.setup_webhook(order_workflow(), json!({})).await;
    let mut stalled = connect(&server).await;
    let head = format!(
        "POST /api/webhooks/{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\nExpect: 100-continue\r\n\r\n",
        hook.token,
        server.addr()
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    // `100 Continue` comes when the handler starts reading the body: the request is in flight.
    let cont = tokio::time::timeout(SLACK, read_answer(&mut stalled))
        .await
        .expect("no 100 Continue");
    assert_eq!(cont.status, 100, "{cont:?}");
    stalled.write_all(b"{\"email\"").await.unwrap();

    let stopping = Instant::now();
    // Without a body deadline the shutdown waits 30 s for this request.
    server.terminate(body_timeout + SLACK + Duration::from_secs(4));
    let answer = tokio::time::timeout(SLACK, read_answer(&mut stalled))
        .await
        .expect("no answer to the stalled request");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "stopped after {:?}",
        stopping.elapsed()
    );
}

triggerd_tests::e2e_tests!(
    half_sent_request_headers_are_cut_off_at_the_header_timeout,
    kept_alive_connections_close_after_the_idle_timeout,
    a_stalled_webhook_body_is_answered_408_and_starts_no_run,
    stalled_bodies_of_callbacks_and_the_api_are_answered_408,
    connections_past_the_limit_wait_until_one_closes,
    a_stalled_body_does_not_hold_a_shutdown,
);

#[test]
fn bad_connection_settings_are_refused_at_start() {
    let file = std::env::temp_dir().join(format!("triggerd-conn-{}.toml", std::process::id()));
    std::fs::write(&file, "max_connections = 0\n").expect("write the config file");
    let file = file.to_string_lossy().into_owned();
    let cases = [
        ("TRIGGERD_MAX_CONNECTIONS", "0", "--max-connections"),
        (
            "TRIGGERD_HEADER_READ_TIMEOUT_SECS",
            "soon",
            "--header-read-timeout-secs",
        ),
        ("TRIGGERD_IDLE_TIMEOUT_SECS", "-1", "--idle-timeout-secs"),
        (
            "TRIGGERD_CONFIG",
            &file,
            "max_connections must be at least 1",
        ),
    ];
    for (key, value, named) in cases {
        let output = std::process::Command::new(triggerd_bin())
            .args(["serve", "--listen", "127.0.0.1:0"])
            // Refused at once, should the settings ever get as far as opening the database.
            .env("TRIGGERD_DATABASE_URL", "postgres://127.0.0.1:1/never")
            .env(key, value)
            .output()
            .expect("run triggerd serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{key}={value}: {stderr}");
        assert!(stderr.contains(named), "{key}={value}: {stderr}");
    }
    let _ = std::fs::remove_file(&file);
}
