//! How long a client may take: the deadlines of a connection between requests, and of a request
//! body.
//!
//! While a connection carries no request, it must make progress or be closed:
//! - **header read timeout**: the headers of its next request must be complete within
//!   `header_read_timeout` of their first byte — for a new connection, of the accept. A client
//!   that sends a request one byte at a time (slowloris) is cut off at that instant, however
//!   steadily it trickles.
//! - **idle timeout**: a kept-alive connection may sit silent for at most `idle_timeout` after
//!   its last answer was written.
//!
//! While a request is being handled both clocks stop (a handler may take its time to commit);
//! a handler that reads the body bounds the read with `body_read_timeout` ([`read_body`]) and
//! answers 408 past it, which also closes the connection (its body was not read to the end).
//!
//! hyper has a header timeout of its own, but it starts as soon as the server waits for a request,
//! so on a kept-alive connection it is the idle timeout as well (the two cannot differ), and it
//! covers HTTP/1 only. These clocks work alike for HTTP/1 and HTTP/2 (h2c): [`TrackedIo`] notes
//! when bytes arrive and leave, a [`RequestGuard`] lives as long as each request's handler, and
//! [`ConnectionClock::overdue`] resolves when the connection missed its deadline — the accept
//! loop then drops the connection, which closes the socket.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ApiError;

/// What a connection was waiting for when its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overdue {
    /// The headers of a request, begun but not complete.
    Headers,
    /// Anything at all, after the last answer.
    Idle,
}

impl Overdue {
    /// The `phase` label of `triggerd_http_connection_timeouts_total`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Overdue::Headers => "header",
            Overdue::Idle => "idle",
        }
    }
}

/// The deadlines of one connection, shared by its IO ([`TrackedIo`]), its requests
/// ([`RequestGuard`]) and the task that serves it ([`ConnectionClock::overdue`]).
#[derive(Debug)]
pub(crate) struct ConnectionClock {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    state: Mutex<ClockState>,
    /// Woken when the deadline may have moved earlier (or appeared).
    changed: Notify,
}

#[derive(Debug)]
struct ClockState {
    /// Requests handed to the service and not answered yet; the clocks stop while any is.
    in_flight: usize,
    /// When the first byte of the next request arrived (the accept, for a new connection).
    request_begun: Option<Instant>,
    /// When the connection last went idle, or last wrote bytes while idle.
    idle_since: Instant,
}

impl ConnectionClock {
    /// The clock of a connection accepted now.
    pub(crate) fn new(header_read_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(ConnectionClock {
            header_read_timeout,
            idle_timeout,
            state: Mutex::new(ClockState {
                in_flight: 0,
                request_begun: Some(now),
                idle_since: now,
            }),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The instant the connection must have dispatched its next request by, or `None` while a
    /// request is in flight or when the timeout that applies is unlimited (`Duration::MAX`).
    fn deadline(&self) -> Option<(Instant, Overdue)> {
        let state = self.state();
        if state.in_flight > 0 {
            return None;
        }
        let (since, timeout, what) = match state.request_begun {
            Some(begun) => (begun, self.header_read_timeout, Overdue::Headers),
            None => (state.idle_since, self.idle_timeout, Overdue::Idle),
        };
        since.checked_add(timeout).map(|deadline| (deadline, what))
    }

    /// Resolves when the connection has missed its deadline; never while a request is in flight.
    pub(crate) async fn overdue(&self) -> Overdue {
        loop {
            // Created before reading the state; `notify_one` keeps a permit for it anyway.
            let changed = self.changed.notified();
            match self.deadline() {
                None => changed.await,
                Some((deadline, what)) if deadline <= Instant::now() => return what,
                Some((deadline, _)) => {
                    // Waking at a deadline that has since moved later only loops once more.
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = changed => {}
                    }
                }
            }
        }
    }

    /// Marks a request as handed to the service until the returned guard is dropped.
    pub(crate) fn begin_request(self: &Arc<Self>) -> RequestGuard {
        let mut state = self.state();
        state.in_flight += 1;
        state.request_begun = None;
        RequestGuard(self.clone())
    }

    fn note_read(&self) {
        let mut state = self.state();
        if state.in_flight == 0 && state.request_begun.is_none() {
            state.request_begun = Some(Instant::now());
            drop(state);
            // The header deadline may come before the idle deadline being waited for.
            self.changed.notify_one();
        }
    }

    fn note_write(&self) {
        let mut state = self.state();
        if state.in_flight == 0 {
            // An answer still being written (to a slow reader) is not idleness.
            state.idle_since = Instant::now();
        }
    }
}

/// A request in flight on a connection: its clocks stop until this is dropped (the handler
/// returned or was cancelled).
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<ConnectionClock>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
            state.request_begun = None;
            drop(state);
            self.0.changed.notify_one();
        }
    }
}

/// A connection's IO that tells its [`ConnectionClock`] when bytes arrive and leave.
#[derive(Debug)]
pub(crate) struct TrackedIo<T> {
    inner: T,
    clock: Arc<ConnectionClock>,
}

impl<T> TrackedIo<T> {
    pub(crate) fn new(inner: T, clock: Arc<ConnectionClock>) -> Self {
        TrackedIo { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.note_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.note_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.note_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bodies from this size on are read into one buffer of their declared size.
const LARGE_BODY: u64 = 64 * 1024;

/// The whole body, at most `limit` bytes, within `timeout` of starting to read it: 413
/// `payload_too_large` once it grows past the limit, 408 `request_timeout` when it is not
/// complete in time (a slow or stalled sender is not a server error), 400 when the connection
/// breaks. Check `Content-Length` against the limit before calling this.
pub(crate) async fn read_body(
    body: Incoming,
    limit: u64,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    // The length hyper knows (Content-Length), to read a large body into one buffer of its
    // size: collecting its chunks and then joining them would hold it twice.
    let declared = hyper::body::Body::size_hint(&body).exact();
    let read = async {
        match declared.filter(|n| *n >= LARGE_BODY && *n <= limit) {
            Some(n) => {
                let mut body = Limited::new(body, limit as usize);
                let mut buf = bytes::BytesMut::with_capacity(n as usize);
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Ok(buf.freeze())
            }
            None => Limited::new(body, limit as usize)
                .collect()
                .await
                .map(|c| c.to_bytes()),
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::payload_too_large(limit))
        }
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
        Err(_elapsed) => {
            metrics::counter!("triggerd_http_body_timeouts_total").increment(1);
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s; nothing was stored, send it again",
                    timeout.as_secs_f64()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time (tokio's paused clock needs its `test-util` feature): short timeouts, exact lower
    // bounds and a loose upper bound for a busy machine.
    const HEADER: Duration = Duration::from_millis(200);
    const IDLE: Duration = Duration::from_millis(500);
    const SLACK: Duration = Duration::from_millis(1500);

    fn assert_took(since: Instant, expected: Duration) {
        let took = since.elapsed();
        assert!(
            took >= expected && took < expected + SLACK,
            "took {took:?}, expected {expected:?}"
        );
    }

    #[tokio::test]
    async fn a_new_connection_has_the_header_timeout_to_send_its_first_request() {
        let clock = ConnectionClock::new(HEADER, IDLE);
        let accepted = Instant::now();
        assert_eq!(clock.overdue().await, Overdue::Headers);
        assert_took(accepted, HEADER);
    }

    #[tokio::test]
    async fn a_request_in_flight_stops_the_clock_and_its_end_starts_the_idle_timeout() {
        let clock = ConnectionClock::new(HEADER, IDLE);
        let guard = clock.begin_request();
        let overdue = tokio::spawn({
            let clock = clock.clone();
            async move { clock.overdue().await }
        });
        tokio::time::sleep(IDLE * 2).await;
        assert!(
            !overdue.is_finished(),
            "overdue while a request was in flight"
        );
        let answered = Instant::now();
        drop(guard);
        assert_eq!(overdue.await.unwrap(), Overdue::Idle);
        assert_took(answered, IDLE);
    }

    #[tokio::test]
    async fn the_first_byte_after_idling_starts_the_header_timeout() {
        let clock = ConnectionClock::new(HEADER, IDLE);
        drop(clock.begin_request());
        let overdue = tokio::spawn({
            let clock = clock.clone();
            async move { clock.overdue().await }
        });
        tokio::time::sleep(HEADER / 2).await;
        let first_byte = Instant::now();
        clock.note_read();
        // Later bytes of the same headers do not extend the deadline.
        tokio::time::sleep(HEADER / 2).await;
        clock.note_read();
        assert_eq!(overdue.await.unwrap(), Overdue::Headers);
        assert_took(first_byte, HEADER);
    }

    #[tokio::test]
    async fn unlimited_timeouts_never_close_a_connection() {
        let clock = ConnectionClock::new(Duration::MAX, Duration::MAX);
        assert!(clock.deadline().is_none());
        drop(clock.begin_request());
        assert!(clock.deadline().is_none());
        let overdue = tokio::time::timeout(HEADER, clock.overdue()).await;
        assert!(overdue.is_err(), "{overdue:?}");
    }

    #[tokio::test]
    async fn writing_an_answer_is_not_idleness() {
        let clock = ConnectionClock::new(HEADER, IDLE);
        drop(clock.begin_request());
        tokio::time::sleep(IDLE / 2).await;
        clock.note_write();
        let last_write = Instant::now();
        assert_eq!(clock.overdue().await, Overdue::Idle);
        assert_took(last_write, IDLE);
    }
}
