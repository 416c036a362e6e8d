//! Harness of the end-to-end tests: starts the real `triggerd` binary on a random port with a
//! database of its own, and speaks HTTP to it.
//!
//! Each test starts its own [`TestServer`], so tests run in parallel without sharing state. The
//! binary is `target/<profile>/triggerd` next to the test binary (`cargo test --workspace` builds
//! it), or the path in `TRIGGERD_BIN`.
//!
//! Every test body is written once, as `async fn name(backend: Backend)`, and [`e2e_tests!`]
//! declares it twice: `sqlite::name` on a fresh SQLite file, `postgres::name` on a fresh
//! PostgreSQL database (created through `TRIGGERD_TEST_POSTGRES_URL` and dropped after the test;
//! see [`backend_available`] for when PostgreSQL tests skip or fail).
//!
//! ```no_run
//! use serde_json::json;
//! use triggerd_tests::{Backend, TestServer};
//!
//! async fn greeting_webhook_starts_a_run(backend: Backend) {
//!     let server = TestServer::start(backend).await;
//!     let hook = server
//!         .setup_webhook(json!({"name": "greet", "inputs": {"who": {"type": "string"}}}), json!({}))
//!         .await;
//!     let reply = triggerd_tests::send(server.plain().post(&hook.url).json(&json!({"who": "you"}))).await;
//!     assert_eq!(reply.status, 201);
//! }
//!
//! triggerd_tests::e2e_tests!(greeting_webhook_starts_a_run);
//! # fn main() {}
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use triggerd_storage::testing::{POSTGRES_URL_VAR, TestDb};

pub use triggerd_storage::Backend;

/// The admin API token every test server is started with.
pub const ADMIN_TOKEN: &str = "tdt_5qJ0wX2mV8rK4nB7cF1hL9sD3gT6yP0e";

/// How long a server may take to print its `listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A comfortable deadline for a step-less run to reach its final state.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(15);

/// How many of the server's last stderr lines are kept for failure messages.
const KEPT_LOG_LINES: usize = 200;

/// The text that marks the server's readiness line on stdout.
const READY_MARKER: &str = "listening on ";

/// A test server's database: the URL it is started with and, on PostgreSQL, the database itself,
/// dropped when the last server (node) using it is dropped.
#[derive(Debug, Clone)]
struct Database {
    url: String,
    /// `None` on SQLite: the file lives in the first server's temporary directory.
    _postgres: Option<Arc<TestDb>>,
}

impl Database {
    /// A fresh database of `backend`; a SQLite file goes into `dir`. Blocking on PostgreSQL.
    fn fresh(backend: Backend, dir: &Path) -> Database {
        match backend {
            Backend::Sqlite => Database {
                url: format!("sqlite://{}/triggerd.db", dir.display()),
                _postgres: None,
            },
            Backend::Postgres => {
                // `run_on` checked that PostgreSQL is configured; this only fails when the server
                // went away since (which `TestDb::postgres` reports by panicking).
                let db = TestDb::postgres().unwrap_or_else(|| {
                    panic!("{POSTGRES_URL_VAR} is not set: start PostgreSQL tests with run_on")
                });
                Database {
                    url: with_async_commit(db.url()),
                    _postgres: Some(Arc::new(db)),
                }
            }
        }
    }
}

/// `url` with `synchronous_commit = off` for the server's sessions. The tests kill triggerd, never
/// PostgreSQL: a commit is as final to them without waiting for the WAL flush, and the suite does
/// not wait for a disk flush on every write. Visibility and locking are unchanged.
fn with_async_commit(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20synchronous_commit%3Doff")
}

/// Whether the tests of `backend` run here. SQLite always does. PostgreSQL follows the storage
/// harness's rule (checked once per process by creating and dropping a database): skipped with a
/// notice when `TRIGGERD_TEST_POSTGRES_URL` is unset; a panic (a failed test) when it is unset and
/// `CI=true`, or when the server cannot be reached.
pub async fn backend_available(backend: Backend) -> bool {
    static POSTGRES: OnceLock<bool> = OnceLock::new();
    if backend == Backend::Sqlite {
        return true;
    }
    tokio::task::spawn_blocking(|| {
        *POSTGRES.get_or_init(|| {
            let available = TestDb::postgres().is_some();
            if !available {
                // Straight to the process's stderr, past the test harness's output capture, so
                // the skip is visible in a passing run. Printed once.
                let _ = writeln!(
                    std::io::stderr(),
                    "notice: {POSTGRES_URL_VAR} is not set; the PostgreSQL end-to-end tests \
                     pass without running (e.g. {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test)"
                );
            }
            available
        })
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Runs one end-to-end test body on `backend`, or skips it (see [`backend_available`]). The
/// [`e2e_tests!`] and [`postgres_tests!`] macros call it.
pub async fn run_on<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    if backend_available(backend).await {
        test(backend).await;
    }
}

/// Declares, for each test body `async fn name(backend: Backend)` of the calling module, the tests
/// `sqlite::name` and `postgres::name`. Each entry may carry its own test attribute (default
/// `#[tokio::test]`):
///
/// ```ignore
/// triggerd_tests::e2e_tests!(
///     webhook_answers_201,
///     #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
///     every_acknowledged_webhook_survives_sigkill,
/// );
/// ```
#[macro_export]
macro_rules! e2e_tests {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod sqlite {
            $( $crate::e2e_test!(Sqlite, [$(#[$attr])*], $name); )*
        }
        mod postgres {
            $( $crate::e2e_test!(Postgres, [$(#[$attr])*], $name); )*
        }
    };
}

/// Like [`e2e_tests!`], for behaviours of PostgreSQL only (several nodes on one database):
/// declares only `postgres::name`.
#[macro_export]
macro_rules! postgres_tests {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod postgres {
            $( $crate::e2e_test!(Postgres, [$(#[$attr])*], $name); )*
        }
    };
}

/// One generated test of [`e2e_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! e2e_test {
    ($backend:ident, [], $name:ident) => {
        $crate::e2e_test!($backend, [#[tokio::test]], $name);
    };
    ($backend:ident, [$(#[$attr:meta])+], $name:ident) => {
        $(#[$attr])+
        async fn $name() {
            $crate::run_on($crate::Backend::$backend, super::$name).await;
        }
    };
}

/// How to start a [`TestServer`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The database backend.
    pub backend: Backend,
    /// Extra environment for the server, applied after the harness's defaults (so a test can
    /// override `RUST_LOG` or any `TRIGGERD_*` key).
    pub env: Vec<(String, String)>,
}

impl ServerConfig {
    /// A server on `backend` without extra environment.
    pub fn new(backend: Backend) -> ServerConfig {
        ServerConfig {
            backend,
            env: Vec::new(),
        }
    }

    /// Adds environment variables, e.g. `[("TRIGGERD_HIDE_UNKNOWN_TOKENS", "true")]`.
    pub fn with_env(mut self, env: &[(&str, &str)]) -> ServerConfig {
        self.env
            .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }
}

/// The path of the `triggerd` binary under test.
///
/// # Panics
/// When the binary does not exist.
pub fn triggerd_bin() -> PathBuf {
    let path = match std::env::var_os("TRIGGERD_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            // The test binary is target/<profile>/deps/it-<hash>; the server is
            // target/<profile>/triggerd.
            let exe = std::env::current_exe().expect("the test binary's own path");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("the test binary lives in target/<profile>/deps");
            profile_dir.join(format!("triggerd{}", std::env::consts::EXE_SUFFIX))
        }
    };
    assert!(
        path.is_file(),
        "the triggerd binary is missing at {}: run `cargo build -p triggerd-server` \
         (or `cargo test --workspace`), or set TRIGGERD_BIN",
        path.display()
    );
    path
}

/// A running `triggerd serve` with its own database, killed when dropped.
#[derive(Debug)]
pub struct TestServer {
    config: ServerConfig,
    dir: PathBuf,
    process: Option<Process>,
    // After `process`: the drop kills the server before a PostgreSQL database is dropped.
    database: Database,
    addr: SocketAddr,
    base_url: String,
    client: reqwest::Client,
    plain: reqwest::Client,
}

impl TestServer {
    /// Starts a server on a fresh database of `backend`, without extra environment.
    pub async fn start(backend: Backend) -> TestServer {
        TestServer::start_config(ServerConfig::new(backend)).await
    }

    /// Starts a server with extra environment variables, e.g.
    /// `[("TRIGGERD_HIDE_UNKNOWN_TOKENS", "true")]`.
    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> TestServer {
        TestServer::start_config(ServerConfig::new(backend).with_env(env)).await
    }

    /// Starts a server from a full configuration.
    pub async fn start_config(config: ServerConfig) -> TestServer {
        let mut nodes = TestServer::start_cluster(config, 1).await;
        nodes.pop().expect("one server")
    }

    /// Starts `count` servers on one fresh database, all at once (so they also race to migrate
    /// it): the nodes of a cluster. Meant for PostgreSQL.
    pub async fn start_cluster(config: ServerConfig, count: usize) -> Vec<TestServer> {
        let dir = fresh_temp_dir();
        let (backend, db_dir) = (config.backend, dir.clone());
        let database = tokio::task::spawn_blocking(move || Database::fresh(backend, &db_dir))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        start_nodes(config, database, Some(dir), count).await
    }

    /// Starts `count` more servers on this server's database with its configuration, all at once,
    /// each on its own port and in its own working directory: more nodes of a cluster. Meant for
    /// PostgreSQL.
    pub async fn start_nodes(&self, count: usize) -> Vec<TestServer> {
        start_nodes(self.config.clone(), self.database.clone(), None, count).await
    }

    /// Starts a new process on the same database (killing the old one first if it still runs).
    /// The new process listens on a new port: build URLs from [`TestServer::base_url`] again.
    pub async fn restart(&mut self) {
        self.kill();
        let (process, addr) = spawn_ready(&self.config, &self.dir, &self.database.url).await;
        self.process = Some(process);
        self.addr = addr;
        self.base_url = format!("http://{addr}");
    }

    /// Stops the server with SIGTERM (a graceful shutdown) and waits up to `within` for it to
    /// exit; panics with its output when it does not. Does nothing if it is not running.
    pub fn terminate(&mut self, within: Duration) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        let pid = process.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
        let deadline = Instant::now() + within;
        loop {
            match process.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => process.fail(&format!("did not stop within {within:?} of SIGTERM")),
            }
        }
    }

    /// Kills the server with SIGKILL and waits for it to exit. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// `http://127.0.0.1:PORT` of the running process.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The socket address of the running process (for raw HTTP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's temporary directory (its working directory; holds the SQLite file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The backend of the server's database.
    pub fn backend(&self) -> Backend {
        self.config.backend
    }

    /// The server's `TRIGGERD_DATABASE_URL` (it may hold a password: do not print it), e.g. to
    /// open a [`triggerd_storage::Store`] on the database while no server runs.
    pub fn database_url(&self) -> &str {
        &self.database.url
    }

    /// `http://.../api/v1{path}`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base_url)
    }

    /// `http://.../api/webhooks/{token}` on the running process.
    pub fn webhook_url(&self, token: &str) -> String {
        format!("{}/api/webhooks/{token}", self.base_url)
    }

    /// A client that sends `Authorization: Bearer <admin token>` on every request.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A client without credentials (webhook senders, auth tests).
    pub fn plain(&self) -> &reqwest::Client {
        &self.plain
    }

    /// The server's last stderr lines, for failure messages.
    pub fn logs(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.stderr.tail())
            .unwrap_or_else(|| "(server not running)".to_owned())
    }

    /// `PUT /workflows/{name}`; asserts 200 and returns the body.
    pub async fn put_workflow(&self, name: &str, definition: Value) -> Value {
        let reply = send(
            self.client
                .put(self.api(&format!("/workflows/{name}")))
                .json(&definition),
        )
        .await;
        self.expect(&reply, 200, "PUT workflow");
        reply.body
    }

    /// `POST /workflows/{workflow}/deployments {name}`; asserts 201 and returns the deployment.
    pub async fn deploy(&self, workflow: &str, name: &str) -> Value {
        let reply = send(
            self.client
                .post(self.api(&format!("/workflows/{workflow}/deployments")))
                .json(&json!({ "name": name })),
        )
        .await;
        self.expect(&reply, 201, "create deployment");
        reply.body
    }

    /// `POST /deployments/{id}/triggers` of a webhook; asserts 201 and returns the trigger.
    pub async fn create_webhook_trigger(&self, deployment_id: &str, config: Value) -> Value {
        let reply = send(
            self.client
                .post(self.api(&format!("/deployments/{deployment_id}/triggers")))
                .json(&json!({ "trigger_type": "webhook", "config": config })),
        )
        .await;
        self.expect(&reply, 201, "create webhook trigger");
        reply.body
    }

    /// Puts `definition` (its `name` names the workflow), deploys it as `production` and adds a
    /// webhook trigger with `config`.
    pub async fn setup_webhook(&self, definition: Value, config: Value) -> Webhook {
        let workflow = definition["name"]
            .as_str()
            .expect("the definition has a name")
            .to_owned();
        self.put_workflow(&workflow, definition).await;
        let deployment = self.deploy(&workflow, "production").await;
        let deployment_id = str_field(&deployment, "id");
        let trigger = self.create_webhook_trigger(&deployment_id, config).await;
        Webhook {
            workflow,
            deployment_id,
            id: str_field(&trigger, "id"),
            token: str_field(&trigger, "token"),
            url: str_field(&trigger, "url"),
            trigger,
        }
    }

    /// `GET /runs/{id}`; asserts 200 and returns the run.
    pub async fn get_run(&self, id: &str) -> Value {
        let reply = send(self.client.get(self.api(&format!("/runs/{id}")))).await;
        self.expect(&reply, 200, "GET run");
        reply.body
    }

    /// Polls `GET /runs/{id}` until its status is `status`; panics at the deadline (or when the
    /// run reaches another final state) with the last run seen.
    pub async fn wait_for_run_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let run = self.get_run(id).await;
            let now = run["status"].as_str().unwrap_or_default();
            if now == status {
                return run;
            }
            let finished = matches!(now, "completed" | "failed" | "cancelled");
            if finished || Instant::now() >= deadline {
                panic!(
                    "run {id} did not reach status {status:?} (finished: {finished}) within \
                     {timeout:?}; last seen: {run:#}\nserver log:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every run of `GET /runs?{filter}`, following `next_cursor` (pages of 200).
    pub async fn list_runs(&self, filter: &str) -> Vec<Value> {
        let mut runs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = self.api(&format!("/runs?{filter}&limit=200"));
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={}", encode_query(c)));
            }
            let reply = send(self.client.get(url)).await;
            self.expect(&reply, 200, "GET runs");
            runs.extend(
                reply.body["data"]
                    .as_array()
                    .expect("runs list has data")
                    .iter()
                    .cloned(),
            );
            match reply.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return runs,
            }
        }
    }

    /// Every run a trigger started.
    pub async fn runs_of_trigger(&self, trigger_id: &str) -> Vec<Value> {
        self.list_runs(&format!("trigger_id={trigger_id}")).await
    }

    /// Asserts that the trigger started no run.
    pub async fn assert_no_runs(&self, trigger_id: &str) {
        let runs = self.runs_of_trigger(trigger_id).await;
        assert!(
            runs.is_empty(),
            "expected no run of {trigger_id}, found {runs:#?}"
        );
    }

    /// The first page of `GET /triggers/{id}/requests` (newest first).
    pub async fn trigger_requests(&self, trigger_id: &str) -> Vec<Value> {
        let reply = send(
            self.client
                .get(self.api(&format!("/triggers/{trigger_id}/requests?limit=200"))),
        )
        .await;
        self.expect(&reply, 200, "GET trigger requests");
        reply.body["data"]
            .as_array()
            .expect("requests list has data")
            .clone()
    }

    /// Polls the activity log until it holds at least `count` rows. Refused requests may be
    /// logged off the hot path, so their rows can land just after the response.
    pub async fn wait_for_requests(
        &self,
        trigger_id: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let rows = self.trigger_requests(trigger_id).await;
            if rows.len() >= count {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "the activity log of {trigger_id} holds {} rows, expected {count} within \
                 {timeout:?}: {rows:#?}",
                rows.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Panics with the reply and the server's log unless the status is `status`.
    pub fn expect(&self, reply: &Reply, status: u16, what: &str) {
        assert_eq!(
            reply.status,
            status,
            "{what}: unexpected status; body: {}\nserver log:\n{}",
            reply.text,
            self.logs()
        );
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let logs = self.logs();
        self.kill();
        if std::thread::panicking() {
            // A PostgreSQL database is dropped all the same (with the last node using it).
            eprintln!(
                "test failed ({:?}); server directory kept in {}\nlast server log lines:\n{logs}",
                self.config.backend,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A deployed workflow with one webhook trigger.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Workflow name.
    pub workflow: String,
    /// `dep_...`.
    pub deployment_id: String,
    /// `trg_...`.
    pub id: String,
    /// `wht_...`.
    pub token: String,
    /// The URL the server returned for the trigger.
    pub url: String,
    /// The trigger object as created.
    pub trigger: Value,
}

/// An HTTP response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl Reply {
    fn new(status: u16, headers: HeaderMap, bytes: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let body = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// A header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `X-Request-Id` header; asserts that it is present and a `req_` id.
    pub fn request_id(&self) -> String {
        let id = self.header("x-request-id").unwrap_or_else(|| {
            panic!(
                "no X-Request-Id on a {} response: {}",
                self.status, self.text
            )
        });
        assert!(
            id.starts_with("req_"),
            "X-Request-Id {id:?} does not start with req_"
        );
        id.to_owned()
    }

    /// Asserts an error response: the status, `{"error": <non-empty text>, "code": code}` and an
    /// `X-Request-Id`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.body["code"].as_str()),
            (status, Some(code)),
            "expected {status} {code}, got {} {}",
            self.status,
            self.text
        );
        let message = self.body["error"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "error response without an `error` message: {}",
            self.text
        );
        self.request_id();
    }

    /// The `details` array of an error response.
    pub fn details(&self) -> &Vec<Value> {
        self.body["details"]
            .as_array()
            .unwrap_or_else(|| panic!("error response without a details array: {}", self.text))
    }
}

/// Sends a request and reads the whole response. Panics on transport errors.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    try_send(request)
        .await
        .unwrap_or_else(|e| panic!("request failed: {e:?}"))
}

/// Sends a request and reads the whole response.
pub async fn try_send(request: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await?;
    Ok(Reply::new(status, headers, &bytes))
}

/// The `X-Webhook-Signature` value of the `hmac-sha256` scheme.
pub fn sign(secret: &str, body: &[u8]) -> String {
    triggerd_domain::signature::sign_hmac_sha256_hex(secret.as_bytes(), body)
}

/// SPEC 2's example workflow without steps: `email` (required string), `value` (integer),
/// `week` (enum with a default); `output` renders `customer` and `value`.
pub fn order_workflow() -> Value {
    json!({
        "name": "order-created",
        "inputs": {
            "email": {"type": "string", "required": true},
            "value": {"type": "integer"},
            "week": {"type": "string", "default": "current", "enum": ["current", "previous"]}
        },
        "output": {"customer": "{{ input.email }}", "value": "{{ input.value }}"}
    })
}

/// `value` percent-encoded for a query string.
pub fn encode_query(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The string field `name` of `value`; panics if missing.
pub fn str_field(value: &Value, name: &str) -> String {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("no string field {name:?} in {value:#}"))
        .to_owned()
}

/// The head of a raw HTTP/1.1 request (request line, `Host`, `Connection: close`, `headers`,
/// blank line), for [`raw_exchange`].
pub fn raw_head(
    method: &str,
    path_and_query: &str,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut head =
        format!("{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Writes `bytes` on a fresh TCP connection to `addr` without closing the sending side, then
/// reads one HTTP/1.1 response. For requests reqwest cannot send: a `Content-Length` promising
/// more than is sent, or a chunked body that never ends. Panics when no full response arrives
/// within 10 s.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to the server");
        stream.write_all(bytes).await.expect("write the request");
        stream.flush().await.expect("flush the request");
        read_response(&mut stream).await
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("no complete response within 10 s (did the server wait for the rest of the body?)")
}

async fn read_response(stream: &mut tokio::net::TcpStream) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap_or_else(|e| {
            panic!(
                "reading the response head failed: {e}; read so far: {:?}",
                String::from_utf8_lossy(&buf)
            )
        });
        assert!(
            n > 0,
            "connection closed before a full response head; read: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').expect("header line with a colon");
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).expect("header name"),
            HeaderValue::from_str(value.trim()).expect("header value"),
        );
    }
    let content_length: Option<usize> = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut body = buf.split_off(head_end);
    loop {
        let done = match content_length {
            Some(len) => body.len() >= len,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if let Some(len) = content_length {
        body.truncate(len);
    } else if chunked {
        body = dechunk(&body);
    }
    Reply::new(status, headers, &body)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(data, b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        let start = line_end + 2;
        if size == 0 || start + size > data.len() {
            break;
        }
        out.extend_from_slice(&data[start..start + size]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

fn http_client(admin: bool) -> reqwest::Client {
    // In a workspace build reqwest is compiled with the server's `rustls-no-provider` feature,
    // which needs a process-wide crypto provider even for plain HTTP. Installing it twice is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = HeaderMap::new();
    if admin {
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {ADMIN_TOKEN}")).expect("header value"),
        );
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build the HTTP client")
}

fn fresh_temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "triggerd-it-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create the server's temporary directory");
    dir
}

/// The last lines of one of the child's output streams.
#[derive(Debug, Clone, Default)]
struct LogTail(Arc<Mutex<VecDeque<String>>>);

impl LogTail {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == KEPT_LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn tail(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().map(|l| format!("  {l}\n")).collect()
    }
}

/// One `triggerd serve` process and the threads draining its output.
#[derive(Debug)]
struct Process {
    child: Child,
    stderr: LogTail,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    fn kill(&mut self) {
        // Child::kill sends SIGKILL on Unix.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the child, waits for stderr to close and panics with what it said.
    fn fail(mut self, why: &str) -> ! {
        // A child that already exited keeps its own status; SIGKILL reaches only a live one.
        let _ = self.child.kill();
        let status = self.child.wait();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        panic!(
            "triggerd serve {why} (exit: {status:?}); its output:\n{}",
            self.stderr.tail()
        );
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `count` servers on `database` at once; the first works in `first_dir` when given, the
/// others each in a fresh directory.
async fn start_nodes(
    config: ServerConfig,
    database: Database,
    first_dir: Option<PathBuf>,
    count: usize,
) -> Vec<TestServer> {
    let mut dirs: Vec<PathBuf> = first_dir.into_iter().collect();
    dirs.resize_with(count.max(dirs.len()), fresh_temp_dir);
    let starting: Vec<_> = dirs
        .into_iter()
        .map(|dir| {
            let (config, url) = (config.clone(), database.url.clone());
            tokio::spawn(async move {
                let started = spawn_ready(&config, &dir, &url).await;
                (dir, started)
            })
        })
        .collect();
    let mut nodes = Vec::with_capacity(count);
    for task in starting {
        let (dir, (process, addr)) = task
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        nodes.push(TestServer {
            config: config.clone(),
            dir,
            process: Some(process),
            database: database.clone(),
            addr,
            base_url: format!("http://{addr}"),
            client: http_client(true),
            plain: http_client(false),
        });
    }
    nodes
}

/// Starts `triggerd serve` and waits (off the async runtime) for its readiness line.
async fn spawn_ready(
    config: &ServerConfig,
    dir: &Path,
    database_url: &str,
) -> (Process, SocketAddr) {
    let bin = triggerd_bin();
    let (config, dir, database_url) = (config.clone(), dir.to_owned(), database_url.to_owned());
    tokio::task::spawn_blocking(move || spawn_blocking_ready(&bin, &config, &dir, &database_url))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn spawn_blocking_ready(
    bin: &Path,
    config: &ServerConfig,
    dir: &Path,
    database_url: &str,
) -> (Process, SocketAddr) {
    let mut command = Command::new(bin);
    command.arg("serve").current_dir(dir);
    // Only the harness decides the server's configuration: drop any TRIGGERD_* of the shell.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TRIGGERD_") {
            command.env_remove(key);
        }
    }
    command
        .env("TRIGGERD_LISTEN", "127.0.0.1:0")
        .env("TRIGGERD_DATABASE_URL", database_url)
        .env("TRIGGERD_API_TOKEN", ADMIN_TOKEN)
        .env(
            "RUST_LOG",
            std::env::var("TRIGGERD_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
        );
    for (key, value) in &config.env {
        command.env(key, value);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));

    let stderr = LogTail::default();
    let stderr_reader = {
        let pipe = child.stderr.take().expect("piped stderr");
        let tail = stderr.clone();
        std::thread::spawn(move || drain(pipe, |line| tail.push(line)))
    };
    let (ready_tx, ready_rx) = mpsc::channel::<String>();
    {
        let pipe = child.stdout.take().expect("piped stdout");
        let tail = stderr.clone();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            drain(pipe, |line| {
                if line.contains(READY_MARKER)
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(line.clone());
                }
                // Stdout lines join the stderr tail so failure messages show both.
                tail.push(format!("[stdout] {line}"));
            });
        });
    }
    let process = Process {
        child,
        stderr,
        stderr_reader: Some(stderr_reader),
    };

    let line = match ready_rx.recv_timeout(STARTUP_TIMEOUT) {
        Ok(line) => line,
        Err(mpsc::RecvTimeoutError::Timeout) => process.fail(&format!(
            "printed no `{READY_MARKER}http://...` line on stdout within {STARTUP_TIMEOUT:?}"
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            process.fail("closed stdout (exited?) before printing its `listening on` line")
        }
    };
    match parse_listen_line(&line) {
        Some(addr) => (process, addr),
        None => process.fail(&format!("printed an unparseable readiness line: {line:?}")),
    }
}

fn drain(pipe: impl Read, mut each_line: impl FnMut(String)) {
    for line in BufReader::new(pipe).lines() {
        match line {
            Ok(line) => each_line(line),
            Err(_) => return,
        }
    }
}

/// The address in a line holding `listening on http://127.0.0.1:PORT`.
fn parse_listen_line(line: &str) -> Option<SocketAddr> {
    let after = &line[line.find(READY_MARKER)? + READY_MARKER.len()..];
    let url = after.split_whitespace().next()?;
    let host_port = url.strip_prefix("http://")?;
    let host_port = host_port.trim_end_matches(|c: char| !c.is_ascii_digit());
    host_port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_line_is_parsed() {
        let addr: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        for line in [
            "listening on http://127.0.0.1:41234",
            "INFO triggerd: listening on http://127.0.0.1:41234/ (sqlite)",
            "listening on http://127.0.0.1:41234.",
        ] {
            assert_eq!(parse_listen_line(line), Some(addr), "{line}");
        }
        assert_eq!(parse_listen_line("starting"), None);
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
