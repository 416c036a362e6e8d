//! The step executor (SPEC 2, 2.1, 6): `http` and `command` steps run in order, `extract` and
//! `extract_to_context` pass data on, templates see every root, `max_duration_seconds` bounds a
//! run, and a run killed mid-step resumes at its current step. The `http` steps call a local
//! [`Receiver`] that records every request and answers as each test programs it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use triggerd_tests::{Backend, TestServer, send, str_field};

/// A comfortable deadline for a run with a few local steps (and a retry or two) to finish.
pub(crate) const STEP_RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a test waits for a request to reach the receiver.
pub(crate) const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings a server needs to run the steps of these tests: `http` steps to the receiver on
/// 127.0.0.1 and `command` steps.
pub(crate) const STEP_SETTINGS: [(&str, &str); 2] = [
    ("TRIGGERD_ALLOW_PRIVATE_NETWORKS", "true"),
    ("TRIGGERD_ALLOW_COMMANDS", "true"),
];

// ---------------------------------------------------------------------------------------------
// The local HTTP receiver
// ---------------------------------------------------------------------------------------------

/// One request the [`Receiver`] got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) path: String,
    /// Lower-case names, in arrival order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Received {
    /// The first value of header `name` (lower-case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics when it is not JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body of {} {} is not JSON ({e}): {:?}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// How the receiver answers one path.
#[derive(Debug, Clone)]
struct Route {
    status: u16,
    body: Value,
    /// Answer only once [`Receiver::release`] was called.
    hold: bool,
}

#[derive(Debug)]
struct ReceiverState {
    /// Every request, in arrival order; each arrival notifies the subscribers.
    requests: watch::Sender<Vec<Received>>,
    routes: Mutex<HashMap<String, Route>>,
    /// Whether held paths may answer.
    released: watch::Sender<bool>,
}

/// A plain HTTP/1.1 server on `127.0.0.1:0`, for the `http` steps of a test. Every request is
/// recorded (method, path, headers, body) before it is answered. A path answers what
/// [`Receiver::reply`] set (default 200 `{"ok": true}`); a path set with [`Receiver::hold`] waits
/// for [`Receiver::release`] first. Stops (with its open connections) when dropped.
#[derive(Debug)]
pub(crate) struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let state = Arc::new(ReceiverState {
            requests: watch::Sender::new(Vec::new()),
            routes: Mutex::new(HashMap::new()),
            released: watch::Sender::new(false),
        });
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            // Dropped with the task: aborts every open connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let state = Arc::clone(&serving);
                connections.spawn(async move {
                    let service = service_fn(move |request| answer(Arc::clone(&state), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, state, task }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Makes `path` answer `status` with the JSON `body`.
    pub(crate) fn reply(&self, path: &str, status: u16, body: Value) {
        self.set_route(path, status, body, false);
    }

    /// Makes `path` answer 200 `{"held": true}`, but only once [`Receiver::release`] was called.
    pub(crate) fn hold(&self, path: &str) {
        self.set_route(path, 200, json!({"held": true}), true);
    }

    /// Lets every held request (waiting now or arriving later) be answered.
    pub(crate) fn release(&self) {
        self.state.released.send_replace(true);
    }

    fn set_route(&self, path: &str, status: u16, body: Value, hold: bool) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), Route { status, body, hold });
    }

    /// Every request so far, in arrival order.
    pub(crate) fn requests(&self) -> Vec<Received> {
        self.state.requests.borrow().clone()
    }

    /// The requests so far to `path`, in arrival order.
    pub(crate) fn requests_to(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until at least `count` requests to `path` arrived; returns them. Panics after
    /// `timeout` with every request seen.
    pub(crate) async fn wait_for(
        &self,
        path: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Received> {
        let mut arrivals = self.state.requests.subscribe();
        let reached = tokio::time::timeout(
            timeout,
            arrivals.wait_for(|all| all.iter().filter(|r| r.path == path).count() >= count),
        )
        .await;
        match reached {
            Ok(Ok(_)) => self.requests_to(path),
            _ => panic!(
                "the receiver did not get {count} request(s) to {path} within {timeout:?}; got: {:#?}",
                self.summary()
            ),
        }
    }

    /// `METHOD path` of every request so far, for failure messages.
    pub(crate) fn summary(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.method,
                    r.path,
                    String::from_utf8_lossy(&r.body)
                )
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    state: Arc<ReceiverState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let route = state
        .routes
        .lock()
        .unwrap()
        .get(&received.path)
        .cloned()
        .unwrap_or(Route {
            status: 200,
            body: json!({"ok": true}),
            hold: false,
        });
    state.requests.send_modify(|all| all.push(received));
    if route.hold {
        let mut released = state.released.subscribe();
        let _ = released.wait_for(|released| *released).await;
    }
    let response = Response::builder()
        .status(StatusCode::from_u16(route.status).expect("a valid status"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(route.body.to_string())))
        .expect("a valid response");
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A server allowed to call the receiver and to run commands.
pub(crate) async fn step_server(backend: Backend) -> TestServer {
    TestServer::start_with(backend, &STEP_SETTINGS).await
}

/// Puts `definition`, deploys it as `production` and returns the deployment id.
pub(crate) async fn deploy_definition(server: &TestServer, definition: Value) -> String {
    let name = str_field(&definition, "name");
    server.put_workflow(&name, definition).await;
    str_field(&server.deploy(&name, "production").await, "id")
}

/// `POST /runs`; asserts the 201 `{"run_id", "status": "pending"}` and returns the run id.
pub(crate) async fn start_run(server: &TestServer, deployment_id: &str, input: Value) -> String {
    let created = send(
        server
            .client()
            .post(server.api("/runs"))
            .json(&json!({"deployment_id": deployment_id, "input": input})),
    )
    .await;
    server.expect(&created, 201, "create run");
    assert_eq!(created.body["status"], "pending", "{}", created.text);
    str_field(&created.body, "run_id")
}

/// An `http` step POSTing `body` to `url`.
fn http_step(id: &str, url: &str, body: Value) -> Value {
    json!({
        "id": id,
        "type": "http",
        "request": {"method": "POST", "url": url, "body": body}
    })
}

/// The RFC 3339 instant in string field `name` of `value`.
fn instant(value: &Value, name: &str) -> DateTime<FixedOffset> {
    let text = str_field(value, name);
    DateTime::parse_from_rfc3339(&text)
        .unwrap_or_else(|e| panic!("{name} = {text:?} is not RFC 3339 ({e}) in {value:#}"))
}

/// The step executions of `run`.
fn executions(run: &Value) -> &Vec<Value> {
    run["step_executions"]
        .as_array()
        .unwrap_or_else(|| panic!("run without a step_executions array: {run:#}"))
}

/// Asserts the shape of a finished step execution.
fn assert_execution(execution: &Value, step_id: &str, kind: &str, status: &str, attempt: u64) {
    assert_eq!(execution["step_id"], step_id, "{execution:#}");
    assert_eq!(execution["type"], kind, "{execution:#}");
    assert_eq!(execution["status"], status, "{execution:#}");
    assert_eq!(execution["attempt"], attempt, "{execution:#}");
    instant(execution, "started_at");
    instant(execution, "finished_at");
}

/// The error message of a failed run, after asserting its code.
fn run_error(run: &Value, code: &str) -> String {
    assert_eq!(run["status"], "failed", "{run:#}");
    assert_eq!(run["error"]["code"], code, "{run:#}");
    str_field(&run["error"], "message")
}

// ---------------------------------------------------------------------------------------------
// http steps
// ---------------------------------------------------------------------------------------------

async fn http_step_chain(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.reply("/lookup", 200, json!({"id": 42, "name": "Ada"}));
    receiver.reply("/notify", 200, json!({"sent": true}));
    let server = step_server(backend).await;
    let hook = server
        .setup_webhook(
            json!({
                "name": "chain",
                "inputs": {"email": {"type": "string", "required": true}},
                "steps": [
                    {"id": "first", "type": "http",
                     "request": {"method": "POST", "url": receiver.url("/lookup"),
                                 "body": {"email": "{{ input.email }}"}},
                     "extract": {"customer_id": "body.id"}},
                    {"id": "second", "type": "http",
                     "request": {"method": "POST", "url": receiver.url("/notify"),
                                 "body": {"text": "hi {{ steps.first.output.body.name }}",
                                          "cid": "{{ context.customer_id }}"}}}
                ],
                "output": {"cid": "{{ context.customer_id }}",
                           "status": "{{ steps.second.output.status }}"}
            }),
            json!({}),
        )
        .await;
    let accepted = send(
        server
            .plain()
            .post(&hook.url)
            .json(&json!({"email": "ada@example.com"})),
    )
    .await;
    server.expect(&accepted, 201, "webhook");
    assert_eq!(accepted.body["status"], "pending", "{}", accepted.text);
    let run_id = str_field(&accepted.body, "run_id");

    let run = server
        .wait_for_run_status(&run_id, "completed", STEP_RUN_TIMEOUT)
        .await;
    assert_eq!(
        run["final_output"],
        json!({"cid": 42, "status": 200}),
        "{run:#}"
    );
    assert_eq!(run["error"], Value::Null, "{run:#}");
    assert_eq!(run["context"]["customer_id"], 42, "{run:#}");
    instant(&run, "started_at");
    instant(&run, "finished_at");

    // The receiver got both requests, in order, with the rendered bodies.
    let requests = receiver.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/lookup", "/notify"], "{:#?}", receiver.summary());
    let expected = [
        ("first", json!({"email": "ada@example.com"})),
        ("second", json!({"text": "hi Ada", "cid": 42})),
    ];
    for (request, (step_id, body)) in requests.iter().zip(expected) {
        assert_eq!(request.method, "POST", "{request:#?}");
        assert_eq!(request.json(), body, "{request:#?}");
        assert_eq!(
            request.header("content-type"),
            Some("application/json"),
            "{request:#?}"
        );
        let key = format!("{run_id}:{step_id}");
        assert_eq!(
            request.header("idempotency-key"),
            Some(key.as_str()),
            "{request:#?}"
        );
        let agent = request.header("user-agent").unwrap_or_default();
        assert!(agent.starts_with("triggerd/"), "{request:#?}");
    }

    // One execution per step, each with the response as its output.
    let executions = executions(&run);
    assert_eq!(executions.len(), 2, "{run:#}");
    for (execution, step_id) in executions.iter().zip(["first", "second"]) {
        assert_execution(execution, step_id, "http", "completed", 1);
        assert_eq!(execution["output"]["status"], 200, "{execution:#}");
        assert_eq!(execution["error"], Value::Null, "{execution:#}");
        assert_eq!(
            execution["output"]["headers"]["content-type"], "application/json",
            "{execution:#}"
        );
    }
    assert_eq!(
        executions[0]["output"]["body"],
        json!({"id": 42, "name": "Ada"}),
        "{run:#}"
    );
    assert_eq!(
        executions[1]["output"]["body"],
        json!({"sent": true}),
        "{run:#}"
    );
}

async fn http_step_unexpected_status_fails_the_run(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.reply("/broken", 500, json!({"error": "boom"}));
    let server = step_server(backend).await;
    let mut step = http_step("call", &receiver.url("/broken"), json!({"n": 1}));
    step["retries"] = json!(1);
    let dep_id = deploy_definition(&server, json!({"name": "unlucky", "steps": [step]})).await;
    let run_id = start_run(&server, &dep_id, json!({})).await;

    let run = server
        .wait_for_run_status(&run_id, "failed", STEP_RUN_TIMEOUT)
        .await;
    let message = run_error(&run, "step_failed");
    assert!(message.contains("500"), "{run:#}");
    assert!(
        message.contains("call"),
        "the message names the step: {run:#}"
    );
    assert_eq!(run["final_output"], Value::Null, "{run:#}");

    // The first try and one retry, with one idempotency key.
    let requests = receiver.requests_to("/broken");
    assert_eq!(requests.len(), 2, "{:#?}", receiver.summary());
    let key = format!("{run_id}:call");
    for request in &requests {
        assert_eq!(request.header("idempotency-key"), Some(key.as_str()));
    }
    let executions = executions(&run);
    assert_eq!(
        executions.len(),
        1,
        "retries are inside one execution: {run:#}"
    );
    assert_execution(&executions[0], "call", "http", "failed", 1);
}

async fn http_step_to_private_address_is_refused_without_the_setting(backend: Backend) {
    let receiver = Receiver::start().await;
    let server = TestServer::start(backend).await;
    let mut step = http_step("call", &receiver.url("/private"), json!({}));
    // Refused at once: no retry (which would take 1 s + 2 s).
    step["retries"] = json!(2);
    let dep_id = deploy_definition(&server, json!({"name": "private", "steps": [step]})).await;
    let run_id = start_run(&server, &dep_id, json!({})).await;

    let run = server
        .wait_for_run_status(&run_id, "failed", STEP_RUN_TIMEOUT)
        .await;
    let message = run_error(&run, "step_failed");
    assert!(
        message.contains("TRIGGERD_ALLOW_PRIVATE_NETWORKS"),
        "{run:#}"
    );
    let took = instant(&run, "finished_at") - instant(&run, "started_at");
    assert!(
        took < chrono::Duration::milliseconds(2500),
        "a refused address is not retried, yet the run took {took}: {run:#}"
    );
    assert_eq!(receiver.requests().len(), 0, "{:#?}", receiver.summary());
    assert_eq!(
        executions(&run).first().map(|e| &e["status"]),
        Some(&json!("failed")),
        "{run:#}"
    );
}

async fn extract_to_context_persists_into_the_deployment_context(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.reply("/login", 200, json!({"token": "abc"}));
    receiver.reply("/api", 200, json!({"ok": true}));
    let server = step_server(backend).await;
    let mut login = http_step("login", &receiver.url("/login"), json!({"user": "ops"}));
    login["extract_to_context"] = json!({"crm_token": "body.token"});
    let dep_id = deploy_definition(&server, json!({"name": "crm", "steps": [login]})).await;
    let run_id = start_run(&server, &dep_id, json!({})).await;
    let run = server
        .wait_for_run_status(&run_id, "completed", STEP_RUN_TIMEOUT)
        .await;
    assert_eq!(run["context"]["crm_token"], "abc", "{run:#}");

    let context_url = server.api(&format!("/deployments/{dep_id}/context"));
    let context = send(server.client().get(&context_url)).await;
    server.expect(&context, 200, "GET context");
    assert_eq!(context.body["crm_token"], "abc", "{}", context.text);

    // A later run of the deployment (now at version 2, which sends the token) reads it.
    let call = json!({
        "id": "call", "type": "http",
        "request": {"method": "POST", "url": receiver.url("/api"),
                    "headers": {"Authorization": "Bearer {{ context.crm_token }}"},
                    "body": {"q": 1}}
    });
    server
        .put_workflow("crm", json!({"name": "crm", "steps": [call]}))
        .await;
    let second = start_run(&server, &dep_id, json!({})).await;
    let run = server
        .wait_for_run_status(&second, "completed", STEP_RUN_TIMEOUT)
        .await;
    assert_eq!(run["workflow_version"], 2, "{run:#}");
    let requests = receiver.requests_to("/api");
    assert_eq!(requests.len(), 1, "{:#?}", receiver.summary());
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer abc"),
        "{:#?}",
        requests[0]
    );
}

async fn templates_see_run_and_deployment_roots(backend: Backend) {
    let receiver = Receiver::start().await;
    let server = step_server(backend).await;
    let dep_id = deploy_definition(
        &server,
        json!({
            "name": "roots",
            "steps": [http_step("ping", &receiver.url("/ping"), json!({"run": "{{ run.id }}"}))],
            "output": {"created": "{{ run.created_at }}", "dep": "{{ deployment.name }}",
                       "url": "{{ deployment.webhook_urls.hook }}", "id": "{{ run.id }}"},
            "triggers": [{"name": "hook", "trigger_type": "webhook", "config": {}}]
        }),
    )
    .await;
    let triggers = send(
        server
            .client()
            .get(server.api(&format!("/deployments/{dep_id}/triggers"))),
    )
    .await;
    server.expect(&triggers, 200, "list triggers");
    let hook = triggers.body["data"]
        .as_array()
        .expect("a trigger list")
        .iter()
        .find(|t| t["name"] == "hook")
        .unwrap_or_else(|| panic!("no declared trigger `hook`: {}", triggers.text))
        .clone();
    let hook_url = str_field(&hook, "url");

    // Started through the declared trigger itself.
    let accepted = send(server.plain().post(&hook_url).json(&json!({}))).await;
    server.expect(&accepted, 201, "webhook");
    let run_id = str_field(&accepted.body, "run_id");
    let run = server
        .wait_for_run_status(&run_id, "completed", STEP_RUN_TIMEOUT)
        .await;
    let output = &run["final_output"];
    assert_eq!(output["dep"], "production", "{run:#}");
    assert_eq!(output["url"], hook_url.as_str(), "{run:#}");
    assert_eq!(output["id"], run_id.as_str(), "{run:#}");
    assert_eq!(
        instant(output, "created"),
        instant(&run, "created_at"),
        "{run:#}"
    );
    assert_eq!(
        receiver.requests_to("/ping")[0].json(),
        json!({"run": run_id}),
        "{:#?}",
        receiver.summary()
    );
}

// ---------------------------------------------------------------------------------------------
// command steps
// ---------------------------------------------------------------------------------------------

async fn command_step_runs_argv_without_a_shell_and_parses_json_stdout(backend: Backend) {
    let server = step_server(backend).await;
    let dep_id = deploy_definition(
        &server,
        json!({
            "name": "commands",
            "inputs": {"n": {"type": "integer"}, "word": {"type": "string"}},
            "steps": [
                // `ignored` is $0 of the script: only N reaches printf.
                {"id": "json", "type": "command",
                 "command": ["sh", "-c", "printf '{\"n\": %s}' \"$N\"", "ignored"],
                 "env": {"N": "{{ input.n }}"}},
                // One argument, however many spaces and semicolons it holds.
                {"id": "words", "type": "command", "command": ["printf", "%s", "{{ input.word }}"]},
                // What the process sees of the server's environment.
                {"id": "environ", "type": "command", "command": ["env"]}
            ]
        }),
    )
    .await;
    let run_id = start_run(&server, &dep_id, json!({"n": 7, "word": "a b;c"})).await;
    let run = server
        .wait_for_run_status(&run_id, "completed", STEP_RUN_TIMEOUT)
        .await;
    let executions = executions(&run);
    assert_eq!(executions.len(), 3, "{run:#}");
    for (execution, step_id) in executions.iter().zip(["json", "words", "environ"]) {
        assert_execution(execution, step_id, "command", "completed", 1);
        assert_eq!(execution["output"]["exit_code"], 0, "{execution:#}");
        assert_eq!(execution["output"]["stderr"], "", "{execution:#}");
    }
    assert_eq!(
        executions[0]["output"]["stdout"],
        json!({"n": 7}),
        "{run:#}"
    );
    assert_eq!(executions[1]["output"]["stdout"], "a b;c", "{run:#}");

    // The environment starts empty but for a few basics: no server setting leaks in.
    let environ = executions[2]["output"]["stdout"]
        .as_str()
        .unwrap_or_else(|| panic!("env printed no text: {run:#}"));
    let allowed = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];
    for line in environ.lines() {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            allowed.contains(&name),
            "the command saw {name:?} of the server's environment: {environ}"
        );
    }
    // Without an output the final output is the input.
    assert_eq!(
        run["final_output"],
        json!({"n": 7, "word": "a b;c"}),
        "{run:#}"
    );
}

async fn command_step_nonzero_exit_fails_the_run(backend: Backend) {
    let server = step_server(backend).await;
    let dep_id = deploy_definition(
        &server,
        json!({
            "name": "exits",
            "steps": [{"id": "oops", "type": "command",
                       "command": ["sh", "-c", "echo oops >&2; exit 3"]}]
        }),
    )
    .await;
    let run_id = start_run(&server, &dep_id, json!({})).await;
    let run = server
        .wait_for_run_status(&run_id, "failed", STEP_RUN_TIMEOUT)
        .await;
    let message = run_error(&run, "step_failed");
    assert!(message.contains('3'), "{run:#}");
    let executions = executions(&run);
    assert_eq!(executions.len(), 1, "{run:#}");
    assert_execution(&executions[0], "oops", "command", "failed", 1);
    let output = &executions[0]["output"];
    assert_eq!(output["exit_code"], 3, "{run:#}");
    assert!(
        output["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("oops"),
        "{run:#}"
    );
}

/// `PUT /workflows/{name}` of `definition`; asserts 422 `invalid_definition` and returns the
/// first detail.
async fn refused_definition(server: &TestServer, definition: Value) -> Value {
    let name = str_field(&definition, "name");
    let reply = send(
        server
            .client()
            .put(server.api(&format!("/workflows/{name}")))
            .json(&definition),
    )
    .await;
    reply.assert_error(422, "invalid_definition");
    reply.details()[0].clone()
}

async fn command_step_is_refused_unless_allowed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let command = json!({"id": "ls", "type": "command", "command": ["ls"]});
    let detail =
        refused_definition(&server, json!({"name": "cmd", "steps": [command.clone()]})).await;
    assert_eq!(detail["path"], "steps[0].type", "{detail:#}");
    let message = str_field(&detail, "message");
    assert!(message.contains("TRIGGERD_ALLOW_COMMANDS"), "{detail:#}");

    // The path names the step's index.
    let detail = refused_definition(
        &server,
        json!({"name": "cmd", "steps": [http_step("first", "https://example.com/", json!({})), command]}),
    )
    .await;
    assert_eq!(detail["path"], "steps[1].type", "{detail:#}");
    // Nothing was stored.
    send(server.client().get(server.api("/workflows/cmd")))
        .await
        .assert_error(404, "not_found");
}

/// `max_concurrent_runs: 1`: three runs go through one at a time, in the order they were
/// created — on PostgreSQL with two nodes working the same deployment.
async fn concurrency_cap_runs_one_at_a_time_in_order(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.hold("/work");
    let server = step_server(backend).await;
    // A second node on the same database (PostgreSQL only: one process owns a SQLite file).
    let _others = match backend {
        Backend::Postgres => server.start_nodes(1).await,
        Backend::Sqlite => Vec::new(),
    };
    let dep_id = deploy_definition(
        &server,
        json!({
            "name": "capped",
            "inputs": {"n": {"type": "integer"}},
            "max_concurrent_runs": 1,
            "steps": [http_step("work", &receiver.url("/work"), json!({"n": "{{ input.n }}"}))]
        }),
    )
    .await;
    let mut runs = Vec::new();
    for n in 1..=3 {
        runs.push(start_run(&server, &dep_id, json!({"n": n})).await);
    }
    receiver.wait_for("/work", 1, ARRIVAL_TIMEOUT).await;
    // While the first holds the one slot, the others stay pending (a bounded look: a second
    // request would arrive within milliseconds if the cap did not hold).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.requests_to("/work").len(),
        1,
        "{:#?}",
        receiver.summary()
    );
    for id in &runs[1..] {
        assert_eq!(server.get_run(id).await["status"], json!("pending"));
    }
    receiver.release();
    let mut finished = Vec::new();
    for id in &runs {
        finished.push(
            server
                .wait_for_run_status(id, "completed", STEP_RUN_TIMEOUT)
                .await,
        );
    }
    let order: Vec<Value> = receiver
        .requests_to("/work")
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["n"].clone())
        .collect();
    assert_eq!(order, [json!(1), json!(2), json!(3)], "first in, first out");
    for pair in finished.windows(2) {
        let (done, next) = (
            str_field(&pair[0], "finished_at"),
            str_field(&pair[1], "started_at"),
        );
        assert!(next >= done, "runs overlapped: {done} then {next}");
    }
}

// ---------------------------------------------------------------------------------------------
// Limits and crashes
// ---------------------------------------------------------------------------------------------

async fn max_duration_fails_a_run_with_timeout(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.hold("/hold");
    let server = step_server(backend).await;
    let mut step = http_step("slow", &receiver.url("/hold"), json!({}));
    step["request"]["timeout_seconds"] = json!(30);
    let dep_id = deploy_definition(
        &server,
        json!({"name": "bounded", "max_duration_seconds": 1, "steps": [step]}),
    )
    .await;
    let run_id = start_run(&server, &dep_id, json!({})).await;
    receiver.wait_for("/hold", 1, ARRIVAL_TIMEOUT).await;

    let run = server
        .wait_for_run_status(&run_id, "failed", Duration::from_secs(15))
        .await;
    run_error(&run, "timeout");
    let took = instant(&run, "finished_at") - instant(&run, "started_at");
    assert!(
        took < chrono::Duration::seconds(10),
        "a 1 s run limit took {took}: {run:#}"
    );
    receiver.release();
    assert_eq!(server.get_run(&run_id).await["status"], "failed");
}

/// How long a run killed mid-step may take to be resumed after the restart: its lease lasts the
/// step's timeout plus the worker's lease (60 s), and a worker looks for expired leases every
/// 60 s, so about 120 s with the default 30 s http timeout.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(180);

/// SIGTERM interrupts the step in flight and hands the run back at once: the next start (or
/// another node) resumes it without waiting for its lease — well within the run's lease of
/// 90 s (a 30 s request timeout + 60 s), on PostgreSQL too.
async fn sigterm_hands_a_running_run_back_at_its_current_step(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.hold("/slow");
    let mut server = step_server(backend).await;
    let dep_id = deploy_definition(
        &server,
        json!({
            "name": "handed-back",
            "steps": [
                http_step("first", &receiver.url("/first"), json!({})),
                http_step("slow", &receiver.url("/slow"), json!({}))
            ]
        }),
    )
    .await;
    let run_id = start_run(&server, &dep_id, json!({})).await;
    receiver.wait_for("/slow", 1, ARRIVAL_TIMEOUT).await;
    let stopping = Instant::now();
    server.terminate(Duration::from_secs(40));
    let stopped_in = stopping.elapsed();
    assert!(
        stopped_in < Duration::from_secs(20),
        "the server waited for the held step instead of handing it back: {stopped_in:?}"
    );
    receiver.release();
    server.restart().await;
    let run = server
        .wait_for_run_status(&run_id, "completed", Duration::from_secs(20))
        .await;
    let slow: Vec<&Value> = executions(&run)
        .iter()
        .filter(|e| e["step_id"] == "slow")
        .collect();
    assert_eq!(slow.len(), 2, "{run:#}");
    assert_eq!(slow[0]["error"]["code"], json!("interrupted"), "{run:#}");
    assert_execution(slow[1], "slow", "http", "completed", 2);
    assert_eq!(receiver.requests_to("/first").len(), 1);
}

async fn sigkill_mid_run_resumes_at_the_current_step(backend: Backend) {
    let receiver = Receiver::start().await;
    receiver.hold("/two");
    let mut server = step_server(backend).await;
    let dep_id = deploy_definition(
        &server,
        json!({
            "name": "resumable",
            "steps": [
                http_step("one", &receiver.url("/one"), json!({"n": 1})),
                http_step("two", &receiver.url("/two"), json!({"n": 2})),
                http_step("three", &receiver.url("/three"), json!({"n": 3}))
            ]
        }),
    )
    .await;
    let run_id = start_run(&server, &dep_id, json!({})).await;
    // Step 2 is in flight: the server dies before it gets its answer.
    receiver.wait_for("/two", 1, ARRIVAL_TIMEOUT).await;
    let before = server.get_run(&run_id).await;
    let recorded: Vec<(&Value, &Value)> = executions(&before)
        .iter()
        .map(|e| (&e["step_id"], &e["status"]))
        .collect();
    assert_eq!(
        recorded,
        [
            (&json!("one"), &json!("completed")),
            (&json!("two"), &json!("running"))
        ],
        "step two is recorded running before it is sent: {before:#}"
    );
    server.kill();
    receiver.release();

    let restarted = Instant::now();
    server.restart().await;
    let run = server
        .wait_for_run_status(&run_id, "completed", TAKEOVER_TIMEOUT)
        .await;
    eprintln!(
        "sigkill_mid_run_resumes_at_the_current_step ({backend:?}): the run completed {:?} after the restart began",
        restarted.elapsed()
    );

    assert_eq!(
        receiver.requests_to("/one").len(),
        1,
        "{:#?}",
        receiver.summary()
    );
    let twos = receiver.requests_to("/two");
    assert!(twos.len() >= 2, "{:#?}", receiver.summary());
    let key = format!("{run_id}:two");
    for request in &twos {
        assert_eq!(
            request.header("idempotency-key"),
            Some(key.as_str()),
            "{request:#?}"
        );
    }
    assert_eq!(
        receiver.requests_to("/three").len(),
        1,
        "{:#?}",
        receiver.summary()
    );

    let executions = executions(&run);
    let of = |step: &str| -> Vec<&Value> {
        executions.iter().filter(|e| e["step_id"] == step).collect()
    };
    assert_eq!(of("one").len(), 1, "{run:#}");
    assert_execution(of("one")[0], "one", "http", "completed", 1);
    let two = of("two");
    let last = two
        .last()
        .unwrap_or_else(|| panic!("no execution of step two: {run:#}"));
    assert_execution(last, "two", "http", "completed", 2);
    assert_eq!(of("three").len(), 1, "{run:#}");
    assert_execution(of("three")[0], "three", "http", "completed", 1);
}

triggerd_tests::e2e_tests!(
    http_step_chain,
    http_step_unexpected_status_fails_the_run,
    http_step_to_private_address_is_refused_without_the_setting,
    extract_to_context_persists_into_the_deployment_context,
    templates_see_run_and_deployment_roots,
    command_step_runs_argv_without_a_shell_and_parses_json_stdout,
    command_step_nonzero_exit_fails_the_run,
    command_step_is_refused_unless_allowed,
    concurrency_cap_runs_one_at_a_time_in_order,
    max_duration_fails_a_run_with_timeout,
    sigkill_mid_run_resumes_at_the_current_step,
    sigterm_hands_a_running_run_back_at_its_current_step,
);
