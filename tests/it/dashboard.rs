//! The web dashboard in a real headless Chromium, driven over WebDriver (chromedriver) against the
//! real `triggerd` binary: sign-in, creating a webhook trigger from the form (with the server's
//! 422 shown next to the field), copying the URL, a signed webhook's run and activity row showing
//! up without a reload, the request details, a dry run, rotation (the old URL refused), and
//! cancelling a run parked at an approval. A PNG of each main page is saved under
//! `target/dashboard-screenshots/` for review.
//!
//! These tests run on SQLite only: the dashboard speaks only to the JSON API, whose behaviour on
//! both backends the rest of the suite checks.
//!
//! They need Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`; `CHROMIUM` and `CHROMEDRIVER` override the paths). Without them the
//! tests pass without running and print a notice, except with `CI=true`, where they fail. One
//! chromedriver (on a random port) serves the whole test binary; each test opens its own browser
//! session with a fresh profile.

use std::future::Future;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use triggerd_tests::{ADMIN_TOKEN, Backend, TestServer, send, sign, str_field};

/// How long a condition in the page may take to become true.
const UI_TIMEOUT: Duration = Duration::from_secs(15);

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn chromedriver_path() -> PathBuf {
    std::env::var_os("CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from)
}

/// Whether the browser tests can run here: skipped with a notice when Chromium or chromedriver is
/// missing, a failure when that happens with `CI=true`.
fn browser_available() -> bool {
    let missing: Vec<String> = [chromium_path(), chromedriver_path()]
        .into_iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "the dashboard's browser tests need {} (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {message}"
    );
    static NOTICE: std::sync::Once = std::sync::Once::new();
    NOTICE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "notice: {message}; they pass without running"
        );
    });
    false
}

/// A chromedriver on a random port, shared by the tests running at the same time and stopped
/// when the last of them drops its handle (a later test starts a new one).
#[derive(Debug)]
struct Driver {
    child: Mutex<Child>,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

fn driver() -> Arc<Driver> {
    static DRIVER: Mutex<Weak<Driver>> = Mutex::new(Weak::new());
    let mut shared = DRIVER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(driver) = shared.upgrade() {
        return driver;
    }
    let port = free_port();
    let child = Command::new(chromedriver_path())
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromedriver: {e}"));
    let driver = Arc::new(Driver {
        child: Mutex::new(child),
        url: format!("http://127.0.0.1:{port}"),
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on port {port} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    *shared = Arc::downgrade(&driver);
    driver
}

/// Runs `test` with a fresh browser session (its own profile directory), then closes the
/// session whether the test passed or panicked, and re-raises the panic.
async fn with_browser<F, Fut>(test: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let driver = tokio::task::spawn_blocking(driver)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let profile = std::env::temp_dir().join(format!(
        "triggerd-chromium-{}",
        triggerd_domain::ids::new_id(triggerd_domain::ids::IdKind::Request)
    ));
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium_path().display().to_string(),
            "args": args,
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!("a JSON object literal")
    };
    let mut builder = ClientBuilder::new(HttpConnector::new());
    builder.capabilities(caps);
    let client = builder
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("cannot open a Chromium session through chromedriver: {e}"));
    let outcome = tokio::spawn(test(client.clone())).await;
    let _ = client.close().await;
    let _ = std::fs::remove_dir_all(&profile);
    drop(driver);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// `target/dashboard-screenshots/`, next to the test binary's profile directory.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/it-<hash> → target/
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

/// Saves a PNG of the whole page (the window grown to the page's height plus the browser's own
/// frame, then put back) at the window's current width.
async fn screenshot(c: &Client, name: &str) {
    let _ = c
        .execute(
            "window.scrollTo(0, 0); document.getElementById('flash').replaceChildren(); return true",
            vec![],
        )
        .await;
    let (width, height) = c.get_window_size().await.expect("the window size");
    let page_height = c
        .execute(
            "return document.documentElement.scrollHeight + (window.outerHeight - window.innerHeight)",
            vec![],
        )
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(height)
        .min(6000);
    let _ = c.set_window_size(width as u32, page_height as u32).await;
    let png = c.screenshot().await.expect("take a screenshot");
    let _ = c.set_window_size(width as u32, height as u32).await;
    let path = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write the screenshot");
}

/// Saves a PNG of the top `height` pixels of the page at the window's width.
async fn screenshot_top(c: &Client, name: &str, height: u32) {
    let (width, old_height) = c.get_window_size().await.expect("the window size");
    let _ = c
        .execute(
            "window.scrollTo(0, 0); document.getElementById('flash').replaceChildren(); return true",
            vec![],
        )
        .await;
    let _ = c.set_window_size(width as u32, height).await;
    let png = c.screenshot().await.expect("take a screenshot");
    let _ = c.set_window_size(width as u32, old_height as u32).await;
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png)
        .expect("write the screenshot");
}

/// Evaluates `expression` (JavaScript) in the page until it is truthy; returns its value. Panics
/// at the deadline with `what`, the page's text and a screenshot saved as `failed-<what>.png`.
async fn wait_for(c: &Client, what: &str, expression: &str) -> Value {
    let deadline = Instant::now() + UI_TIMEOUT;
    let script = format!("try {{ return ({expression}); }} catch (e) {{ return null; }}");
    loop {
        let value = c.execute(&script, vec![]).await.expect("run a script");
        let truthy = match &value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        };
        if truthy {
            return value;
        }
        if Instant::now() >= deadline {
            let text = c
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or_default();
            let name = format!(
                "failed-{}",
                what.replace(|c: char| !c.is_alphanumeric(), "-")
            );
            screenshot(c, &name).await;
            panic!(
                "the dashboard did not show {what} within {UI_TIMEOUT:?} ({expression}); page text:\n{}",
                text.as_str().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn el(c: &Client, css: &str) -> fantoccini::elements::Element {
    wait_for(c, css, &format!("document.querySelector({css:?})")).await;
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("find {css}: {e}"))
}

/// Clicks the element `css` selects, finding it again if the page replaced it meanwhile (the
/// live parts of the dashboard are rebuilt when their data changes).
async fn click(c: &Client, css: &str) {
    let deadline = Instant::now() + UI_TIMEOUT;
    loop {
        let clicked = match el(c, css).await.click().await {
            Ok(()) => return,
            Err(e) => e,
        };
        let stale = clicked.to_string().contains("stale");
        assert!(stale && Instant::now() < deadline, "click {css}: {clicked}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replaces the value of a field by typing into it.
async fn fill(c: &Client, css: &str, text: &str) {
    let field = el(c, css).await;
    field
        .clear()
        .await
        .unwrap_or_else(|e| panic!("clear {css}: {e}"));
    field
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
}

/// Clicks the confirmation dialog's confirm button once it is open.
async fn confirm(c: &Client) {
    wait_for(
        c,
        "the confirmation dialog",
        "document.getElementById('confirm-dialog').open",
    )
    .await;
    click(c, "#confirm-yes").await;
}

async fn goto(c: &Client, server: &TestServer, hash: &str) {
    c.goto(&format!("{}/{hash}", server.base_url()))
        .await
        .unwrap_or_else(|e| panic!("open {hash}: {e}"));
}

/// Signs in through the form (the token then lives in the tab's sessionStorage).
async fn sign_in(c: &Client, server: &TestServer) {
    goto(c, server, "").await;
    fill(c, "#token", ADMIN_TOKEN).await;
    click(c, "#sign-in").await;
    wait_for(
        c,
        "the signed-in navigation",
        "!document.getElementById('nav').hidden && document.querySelector('h1') && document.querySelector('h1').textContent === 'Workflows'",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_refuses_a_wrong_token_and_keeps_the_right_one_out_of_the_url() {
    if !browser_available() {
        return;
    }
    let server = TestServer::start(Backend::Sqlite).await;
    // The page and its assets carry the strict policy.
    let page = send(server.plain().get(format!("{}/", server.base_url()))).await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));

    with_browser(move |c| sign_in_in_the_browser(c, server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_trigger_from_the_form_to_a_live_run_dry_run_and_rotation() {
    if !browser_available() {
        return;
    }
    let server = TestServer::start(Backend::Sqlite).await;
    server
        .put_workflow(
            "orders",
            json!({
                "name": "orders",
                "description": "Orders from the shop",
                "inputs": {
                    "email": {"type": "string", "required": true},
                    "amount": {"type": "integer"}
                },
                "output": {"summary": "order of {{ input.amount }} from {{ input.email }}"}
            }),
        )
        .await;
    with_browser(move |c| webhook_trigger_in_the_browser(c, server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_filter_approvals_and_cancel_a_waiting_run() {
    if !browser_available() {
        return;
    }
    let server = TestServer::start(Backend::Sqlite).await;
    server
        .put_workflow(
            "refund",
            json!({
                "name": "refund",
                "inputs": {"order": {"type": "string", "required": true}},
                "steps": [{"id": "confirm", "type": "approval", "timeout_seconds": 3600}]
            }),
        )
        .await;
    let deployment = server.deploy("refund", "production").await;
    let deployment_id = str_field(&deployment, "id");
    let mut runs = Vec::new();
    for order in ["A-1", "A-2"] {
        let reply = send(
            server
                .client()
                .post(server.api("/runs"))
                .json(&json!({"deployment_id": deployment_id, "input": {"order": order}})),
        )
        .await;
        server.expect(&reply, 201, "POST /runs");
        let id = str_field(&reply.body, "run_id");
        server
            .wait_for_run_status(&id, "waiting", triggerd_tests::RUN_TIMEOUT)
            .await;
        runs.push(id);
    }

    with_browser(move |c| runs_in_the_browser(c, server, runs)).await;
}

async fn sign_in_in_the_browser(c: Client, server: TestServer) {
    goto(&c, &server, "").await;
    fill(&c, "#token", "not-the-token").await;
    click(&c, "#sign-in").await;
    let message = wait_for(
        &c,
        "the wrong-token message",
        "!document.getElementById('sign-in-error').hidden && document.getElementById('sign-in-error').textContent",
    )
    .await;
    assert!(
        message.as_str().unwrap_or_default().contains("Wrong token"),
        "{message}"
    );
    screenshot(&c, "sign-in-wrong-token").await;

    fill(&c, "#token", ADMIN_TOKEN).await;
    click(&c, "#sign-in").await;
    wait_for(
        &c,
        "the workflows page",
        "!document.getElementById('nav').hidden && document.querySelector('h1').textContent === 'Workflows'",
    )
    .await;
    let stored = c
        .execute(
            "return sessionStorage.getItem('triggerd.adminToken')",
            vec![],
        )
        .await
        .expect("read sessionStorage");
    assert_eq!(stored, json!(ADMIN_TOKEN));
    let url = c.current_url().await.expect("the page's URL");
    assert!(
        !url.as_str().contains(ADMIN_TOKEN),
        "token in the URL: {url}"
    );
    // A reload keeps the session (sessionStorage), signing out forgets it.
    c.refresh().await.expect("reload");
    wait_for(
        &c,
        "the workflows page after a reload",
        "!document.getElementById('nav').hidden",
    )
    .await;
    click(&c, "#sign-out").await;
    wait_for(&c, "the sign-in form", "document.getElementById('token')").await;
}

async fn webhook_trigger_in_the_browser(c: Client, server: TestServer) {
    sign_in(&c, &server).await;
    wait_for(
        &c,
        "the workflow in the list",
        "document.querySelector('#workflows-table a[href=\"#/workflows/orders\"]')",
    )
    .await;
    screenshot(&c, "workflows").await;

    // Deploy from the workflow's page.
    click(&c, "#workflows-table a[href=\"#/workflows/orders\"]").await;
    el(&c, "#deploy-form").await;
    screenshot(&c, "workflow").await;
    click(&c, "#deploy-form button[type=submit]").await;
    let hash = wait_for(
        &c,
        "the deployment page",
        "location.hash.startsWith('#/deployments/dep_') && document.getElementById('create-trigger-form') && location.hash",
    )
    .await;
    let deployment_id = hash.as_str().unwrap_or_default()["#/deployments/".len()..].to_owned();

    // A webhook trigger from the form: first with a bad rate limit, shown next to its field.
    let secret = "dashboard-test-secret-0123456789";
    fill(&c, "#new-trigger-name", "shop").await;
    fill(
        &c,
        "#new-trigger-mapping",
        r#"{"email": "customer.email", "amount": "amount"}"#,
    )
    .await;
    fill(&c, "#new-trigger-secret", secret).await;
    fill(&c, "#new-trigger-rate", "-5").await;
    click(&c, "#create-trigger").await;
    let error = wait_for(
        &c,
        "the 422 next to the rate-limit field",
        "document.querySelector('[data-field=\"config.rate_limit_per_minute\"] .field-error') && document.querySelector('[data-field=\"config.rate_limit_per_minute\"] .field-error').textContent",
    )
    .await;
    assert!(!error.as_str().unwrap_or_default().is_empty());
    let top = wait_for(
        &c,
        "the form's error summary",
        "document.querySelector('#create-trigger-form .form-error').textContent",
    )
    .await;
    assert!(top.as_str().unwrap_or_default().contains("422"), "{top}");
    screenshot(&c, "deployment-create-trigger-422").await;
    fill(&c, "#new-trigger-rate", "120").await;
    click(&c, "#create-trigger").await;
    let hash = wait_for(
        &c,
        "the new trigger's page",
        "location.hash.startsWith('#/triggers/trg_') && document.getElementById('webhook-url') && location.hash",
    )
    .await;
    let trigger_id = hash.as_str().unwrap_or_default()["#/triggers/".len()..].to_owned();
    let trigger = send(
        server
            .client()
            .get(server.api(&format!("/triggers/{trigger_id}"))),
    )
    .await;
    server.expect(&trigger, 200, "GET trigger");
    assert_eq!(str_field(&trigger.body, "deployment_id"), deployment_id);
    assert_eq!(trigger.body["config"]["rate_limit_per_minute"], 120);
    assert_eq!(trigger.body["config"]["secret_configured"], true);
    let url = str_field(&trigger.body, "url");
    let shown = wait_for(
        &c,
        "the URL",
        "document.getElementById('webhook-url').value",
    )
    .await;
    assert_eq!(shown, json!(url));

    // Copy the URL.
    click(&c, "#copy-url").await;
    let copied = wait_for(
        &c,
        "the copy confirmation",
        "document.getElementById('copy-status').dataset.copied",
    )
    .await;
    assert_eq!(copied, json!(url));

    // A signed webhook and a badly signed one, sent by a client: the run and both activity rows
    // appear without a reload (the marker set on this page survives).
    c.execute("window.__sameDocument = true; return true", vec![])
        .await
        .expect("mark the page");
    let body = br#"{"customer": {"email": "ada@example.com"}, "amount": 120}"#;
    let reply = send(
        server
            .plain()
            .post(&url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", sign(secret, body))
            .body(body.to_vec()),
    )
    .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let run_id = str_field(&reply.body, "run_id");
    let request_id = str_field(&reply.body, "request_id");
    let refused = send(
        server
            .plain()
            .post(&url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", "0".repeat(64))
            .body(body.to_vec()),
    )
    .await;
    assert_eq!(refused.status, 401);
    wait_for(
        &c,
        "the accepted request in the activity log",
        &format!(
            "document.querySelector('#activity-table tr[data-request=\"{request_id}\"] [data-status=\"accepted\"]')"
        ),
    )
    .await;
    wait_for(
        &c,
        "the refused request in the activity log",
        "document.querySelector('#activity-table [data-status=\"bad_signature\"]')",
    )
    .await;
    wait_for(
        &c,
        "the run in the trigger's runs",
        &format!("document.querySelector('#trigger-runs-table tr[data-run=\"{run_id}\"]')"),
    )
    .await;
    wait_for(
        &c,
        "the chart's bars",
        "document.querySelectorAll('#activity-chart rect.seg').length >= 2",
    )
    .await;
    let same = c
        .execute("return window.__sameDocument === true", vec![])
        .await
        .expect("read the marker");
    assert_eq!(same, json!(true), "the page was reloaded");

    // A request's details: from the request-details endpoint, or a graceful notice when this
    // server does not have it.
    click(
        &c,
        &format!("#activity-table tr[data-request=\"{request_id}\"]"),
    )
    .await;
    let card = wait_for(
        &c,
        "the request's details",
        "document.getElementById('request-card') && (document.getElementById('request-unavailable') || document.querySelector('#request-card h4')) && document.getElementById('request-card').textContent",
    )
    .await;
    let card = card.as_str().unwrap_or_default();
    assert!(card.contains(&request_id), "{card}");
    let details_served = c
        .execute(
            "return !document.getElementById('request-unavailable')",
            vec![],
        )
        .await
        .expect("read the request card");
    if details_served == json!(true) {
        // The stored body, the signature header redacted, and a replay that starts a new run.
        assert!(
            card.contains("ada@example.com") && card.contains("[redacted]"),
            "{card}"
        );
        click(&c, "#replay").await;
        let replayed = wait_for(
            &c,
            "the replay's run",
            "document.getElementById('replay-result').textContent.includes('run_') && document.getElementById('replay-result').textContent",
        )
        .await;
        assert!(
            !replayed.as_str().unwrap_or_default().contains(&run_id),
            "the replay answered the original run: {replayed}"
        );
        wait_for(
            &c,
            "the replay's row in the activity log",
            "document.querySelectorAll('#activity-table tbody tr').length === 3",
        )
        .await;
    }

    // Dry runs: a payload that maps, then one missing the required email.
    fill(
        &c,
        "#test-body",
        r#"{"customer": {"email": "grace@example.com"}, "amount": 7}"#,
    )
    .await;
    click(&c, "#dry-run").await;
    let ok = wait_for(
        &c,
        "the dry run's input",
        "document.getElementById('test-ok') && document.getElementById('test-ok').textContent",
    )
    .await;
    assert!(
        ok.as_str()
            .unwrap_or_default()
            .contains("grace@example.com"),
        "{ok}"
    );
    fill(&c, "#test-body", r#"{"amount": 7}"#).await;
    click(&c, "#dry-run").await;
    let refused = wait_for(
        &c,
        "the dry run's 422 details",
        "document.getElementById('test-refused') && document.getElementById('test-refused').textContent",
    )
    .await;
    let refused = refused.as_str().unwrap_or_default().to_owned();
    assert!(
        refused.contains("422") && refused.contains("email"),
        "{refused}"
    );
    screenshot(&c, "trigger").await;
    screenshot_top(&c, "trigger-top", 1500).await;
    c.set_window_size(390, 844).await.expect("phone size");
    screenshot(&c, "trigger-phone").await;
    c.set_window_size(1280, 900).await.expect("laptop size");

    // The run's page.
    click(
        &c,
        &format!("#trigger-runs-table a[href=\"#/runs/{run_id}\"]"),
    )
    .await;
    wait_for(
        &c,
        "the completed run",
        "document.querySelector('h1 [data-status=\"completed\"]')",
    )
    .await;
    let text = wait_for(&c, "the run's output", "document.body.innerText").await;
    assert!(
        text.as_str()
            .unwrap_or_default()
            .contains("order of 120 from ada@example.com"),
        "{text}"
    );
    screenshot(&c, "run-completed").await;

    // Rotate without grace: the page shows the new URL, and the old one is refused.
    goto(&c, &server, &format!("#/triggers/{trigger_id}")).await;
    el(&c, "#rotate").await;
    fill(&c, "#rotate-grace", "0").await;
    click(&c, "#rotate").await;
    confirm(&c).await;
    let new_url = wait_for(
        &c,
        "the rotated URL",
        &format!(
            "document.getElementById('webhook-url') && document.getElementById('webhook-url').value !== {url:?} && document.getElementById('webhook-url').value"
        ),
    )
    .await;
    let new_url = new_url.as_str().unwrap_or_default().to_owned();
    let old = send(
        server
            .plain()
            .post(&url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", sign(secret, body))
            .body(body.to_vec()),
    )
    .await;
    assert_eq!(old.status, 404, "the old URL still answers: {:?}", old.body);
    let new = send(
        server
            .plain()
            .post(&new_url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", sign(secret, body))
            .body(body.to_vec()),
    )
    .await;
    assert_eq!(new.status, 201, "{:?}", new.body);

    // Disable: the URL answers 404 at once; enable it again.
    click(&c, "#toggle-enabled").await;
    wait_for(
        &c,
        "the disabled trigger",
        "document.querySelector('h1 [data-status=\"disabled\"]') && document.getElementById('toggle-enabled').textContent === 'Enable'",
    )
    .await;
    let disabled = send(
        server
            .plain()
            .post(&new_url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", sign(secret, body))
            .body(body.to_vec()),
    )
    .await;
    assert_eq!(disabled.status, 404, "{:?}", disabled.body);
    click(&c, "#toggle-enabled").await;
    wait_for(
        &c,
        "the enabled trigger",
        "document.querySelector('h1 [data-status=\"enabled\"]') && document.getElementById('toggle-enabled').textContent === 'Disable'",
    )
    .await;

    // Limits: a body limit of 0 is refused next to its field, 1024 is saved.
    fill(&c, "#edit-body-limit", "0").await;
    click(&c, "#limits-form button[type=submit]").await;
    wait_for(
        &c,
        "the 422 next to the body limit",
        "document.querySelector('#limits-form [data-field=\"config.max_body_bytes\"] .field-error')",
    )
    .await;
    fill(&c, "#edit-body-limit", "1024").await;
    click(&c, "#limits-form button[type=submit]").await;
    wait_for(
        &c,
        "the saved body limit",
        "document.querySelector('dl.facts') && document.querySelector('dl.facts').textContent.includes('1 KiB')",
    )
    .await;
    let saved = send(
        server
            .client()
            .get(server.api(&format!("/triggers/{trigger_id}"))),
    )
    .await;
    assert_eq!(
        saved.body["config"]["max_body_bytes"], 1024,
        "{:?}",
        saved.body
    );
    assert_eq!(saved.body["enabled"], true);

    goto(&c, &server, &format!("#/deployments/{deployment_id}")).await;
    wait_for(
        &c,
        "the trigger in the deployment's list",
        &format!("document.querySelector('#triggers-table tr[data-trigger=\"{trigger_id}\"]')"),
    )
    .await;

    // A cron trigger from the same form: its schedule in words and a countdown to the next slot.
    el(&c, "#new-trigger-type")
        .await
        .select_by_value("cron")
        .await
        .expect("choose cron");
    fill(&c, "#new-trigger-name", "nightly").await;
    fill(&c, "#new-trigger-schedule", "*/5 * * * *").await;
    fill(&c, "#new-trigger-timezone", "Europe/London").await;
    fill(&c, "#new-trigger-input", r#"{"email": "cron@example.com"}"#).await;
    click(&c, "#create-trigger").await;
    let cron = wait_for(
        &c,
        "the cron trigger's page",
        "location.hash.startsWith('#/triggers/trg_') && document.getElementById('schedule-words') && document.getElementById('next-fire').textContent.startsWith('in ') && document.body.innerText",
    )
    .await;
    let cron = cron.as_str().unwrap_or_default();
    assert!(
        cron.contains("every 5 minutes") && cron.contains("Europe/London"),
        "{cron}"
    );
    screenshot(&c, "trigger-cron").await;
    let cron_hash = c
        .execute("return location.hash", vec![])
        .await
        .expect("read the hash");

    goto(&c, &server, &format!("#/deployments/{deployment_id}")).await;
    wait_for(
        &c,
        "both triggers in the deployment's list",
        "document.querySelectorAll('#triggers-table tbody tr').length === 2",
    )
    .await;
    // The list copies a webhook's URL too.
    click(
        &c,
        &format!("#triggers-table tr[data-trigger=\"{trigger_id}\"] .copy button"),
    )
    .await;
    let copied = wait_for(
        &c,
        "the list's copy confirmation",
        &format!(
            "document.querySelector('#triggers-table tr[data-trigger=\"{trigger_id}\"] .copy-status').dataset.copied"
        ),
    )
    .await;
    assert_eq!(copied, json!(new_url));
    screenshot(&c, "deployment").await;

    // Remove the cron trigger, after the confirmation.
    goto(&c, &server, cron_hash.as_str().unwrap_or_default()).await;
    click(&c, "#remove-trigger").await;
    confirm(&c).await;
    wait_for(
        &c,
        "the deployment without the cron trigger",
        &format!(
            "location.hash === '#/deployments/{deployment_id}' && document.querySelectorAll('#triggers-table tbody tr').length === 1"
        ),
    )
    .await;
}

async fn runs_in_the_browser(c: Client, server: TestServer, runs: Vec<String>) {
    sign_in(&c, &server).await;

    // Pending approvals link to their review pages.
    click(&c, "nav a[data-nav=\"approvals\"]").await;
    for id in &runs {
        let href = wait_for(
            &c,
            "a pending approval with its review link",
            &format!(
                "document.querySelector('#approvals-table tr[data-run=\"{id}\"] a.review-link') && document.querySelector('#approvals-table tr[data-run=\"{id}\"] a.review-link').href"
            ),
        )
        .await;
        assert!(
            href.as_str()
                .unwrap_or_default()
                .contains("/api/approvals/"),
            "{href}"
        );
    }
    screenshot(&c, "approvals").await;

    // The runs list, filtered by status from the form.
    click(&c, "nav a[data-nav=\"runs\"]").await;
    el(&c, "#filter-status").await;
    c.find(Locator::Css("#filter-status"))
        .await
        .expect("status filter")
        .select_by_value("waiting")
        .await
        .expect("choose waiting");
    wait_for(
        &c,
        "the runs filtered by status",
        "location.hash.includes('status=waiting') && document.querySelectorAll('#runs-table tbody tr[data-status=\"waiting\"]').length === 2",
    )
    .await;
    screenshot(&c, "runs").await;

    // Cancel the first run from its page; the page follows the change without a reload.
    let id = &runs[0];
    click(&c, &format!("#runs-table a[href=\"#/runs/{id}\"]")).await;
    wait_for(
        &c,
        "the waiting run",
        "document.querySelector('h1 [data-status=\"waiting\"]') && document.getElementById('review-link')",
    )
    .await;
    screenshot(&c, "run-waiting").await;
    click(&c, "#cancel-run").await;
    confirm(&c).await;
    wait_for(
        &c,
        "the cancelled run",
        "document.querySelector('h1 [data-status=\"cancelled\"]') && !document.getElementById('cancel-run')",
    )
    .await;
    let run = server.get_run(id).await;
    assert_eq!(run["status"], "cancelled");
    // The other run still waits; the approvals page no longer lists the cancelled one.
    goto(&c, &server, "#/approvals").await;
    wait_for(
        &c,
        "the approvals without the cancelled run",
        &format!(
            "document.querySelector('#approvals-table tr[data-run=\"{}\"]') && !document.querySelector('#approvals-table tr[data-run=\"{id}\"]')",
            runs[1]
        ),
    )
    .await;
}
