//! `triggerd apply` against a running server: the real binary as a child process.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use triggerd_tests::{ADMIN_TOKEN, Backend, TestServer, send, triggerd_bin};

/// What one `triggerd apply` run did.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn assert_success(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "triggerd apply failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }

    fn assert_failure(&self) {
        assert_eq!(
            self.code,
            Some(1),
            "triggerd apply should exit 1\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }

    /// The URL printed for webhook `name`, if listed.
    fn webhook_url(&self, name: &str) -> Option<String> {
        let prefix = format!("  webhook {name}: ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_owned)
    }

    fn has_line(&self, line: &str) -> bool {
        self.stdout.lines().any(|l| l.trim() == line)
    }
}

/// Runs `triggerd apply -f FILE [extra...]` with `token` off the async runtime.
async fn apply(file: &Path, token: &str, extra: &[&str]) -> Outcome {
    let file = file.to_owned();
    let token = token.to_owned();
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(triggerd_bin());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TRIGGERD_") {
                command.env_remove(key);
            }
        }
        let output = command
            .arg("apply")
            .arg("-f")
            .arg(&file)
            .args(&extra)
            .env("TRIGGERD_API_TOKEN", token)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run triggerd apply");
        Outcome {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn write(server: &TestServer, name: &str, text: &str) -> PathBuf {
    let path = server.dir().join(name);
    std::fs::write(&path, text).expect("write the definition file");
    path
}

/// A TOML definition with two webhooks and a cron trigger; `crm_mapping` is crm's source of
/// `email`, `with_stripe` keeps the second webhook.
fn orders_toml(crm_mapping: &str, with_stripe: bool) -> String {
    let mut text = format!(
        r#"name = "apply-orders"

[inputs.email]
type = "string"
required = true

[[triggers]]
name = "crm"
trigger_type = "webhook"
config = {{ input_mapping = {{ email = "{crm_mapping}" }} }}

[[triggers]]
name = "weekly"
trigger_type = "cron"
config = {{ schedule = "0 9 * * 1", timezone = "Europe/London", input = {{ email = "ops@example.com" }} }}
"#
    );
    if with_stripe {
        text.push_str(
            r#"
[[triggers]]
name = "stripe"
trigger_type = "webhook"
config = { input_mapping = { email = "data.object.email" } }
"#,
        );
    }
    text
}

async fn apply_creates_updates_and_removes_declared_triggers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let base = server.base_url().to_owned();
    let deploy = ["--deploy", "production", "--url", base.as_str()];
    let file = write(&server, "orders.toml", &orders_toml("customer_email", true));

    // 1. Create: version 1, the deployment, and working webhook URLs.
    let created = apply(&file, ADMIN_TOKEN, &deploy).await;
    created.assert_success();
    assert!(
        created.has_line("workflow apply-orders: version 1 (new)"),
        "{}",
        created.stdout
    );
    assert!(
        created
            .stdout
            .contains("deployment production: created (dep_"),
        "{}",
        created.stdout
    );
    assert!(
        created.stdout.contains("  cron weekly: next fire at 20"),
        "{}",
        created.stdout
    );
    let crm = created.webhook_url("crm").expect("crm's URL is printed");
    let stripe = created
        .webhook_url("stripe")
        .expect("stripe's URL is printed");
    assert!(
        crm.starts_with(&format!("{base}/api/webhooks/wht_")),
        "{crm}"
    );
    let fired = send(
        server
            .plain()
            .post(&crm)
            .json(&json!({"customer_email": "a@example.com"})),
    )
    .await;
    server.expect(&fired, 201, "POST to the applied webhook");

    // 2. Re-apply unchanged: same version, the deployment exists, the same URLs.
    let again = apply(&file, ADMIN_TOKEN, &deploy).await;
    again.assert_success();
    assert!(
        again.has_line("workflow apply-orders: version 1 (unchanged)"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("deployment production: exists (dep_"),
        "{}",
        again.stdout
    );
    assert!(!again.stdout.contains(" updated"), "{}", again.stdout);
    assert_eq!(again.webhook_url("crm").as_deref(), Some(crm.as_str()));

    // 3. Change crm's mapping: a new version, crm updated in place (same URL, new mapping).
    let file = write(&server, "orders.toml", &orders_toml("contact.email", true));
    let changed = apply(&file, ADMIN_TOKEN, &deploy).await;
    changed.assert_success();
    assert!(
        changed.has_line("workflow apply-orders: version 2 (new)"),
        "{}",
        changed.stdout
    );
    assert!(
        changed.stdout.contains(": trigger crm updated"),
        "{}",
        changed.stdout
    );
    assert!(
        !changed.stdout.contains("stripe updated"),
        "{}",
        changed.stdout
    );
    assert_eq!(changed.webhook_url("crm").as_deref(), Some(crm.as_str()));
    let fired = send(
        server
            .plain()
            .post(&crm)
            .json(&json!({"contact": {"email": "b@example.com"}})),
    )
    .await;
    server.expect(&fired, 201, "POST with the new mapping");

    // 4. Remove stripe: reported as removed, no longer listed, its URL answers 404.
    let file = write(&server, "orders.toml", &orders_toml("contact.email", false));
    let removed = apply(&file, ADMIN_TOKEN, &deploy).await;
    removed.assert_success();
    assert!(
        removed.has_line("workflow apply-orders: version 3 (new)"),
        "{}",
        removed.stdout
    );
    assert!(
        removed.stdout.contains(": trigger stripe removed"),
        "{}",
        removed.stdout
    );
    assert_eq!(removed.webhook_url("stripe"), None, "{}", removed.stdout);
    assert_eq!(removed.webhook_url("crm").as_deref(), Some(crm.as_str()));
    let gone = send(
        server
            .plain()
            .post(&stripe)
            .json(&json!({"data": {"object": {"email": "c@example.com"}}})),
    )
    .await;
    gone.assert_error(404, "not_found");
}

async fn apply_refuses_an_invalid_file_and_stores_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let file = write(
        &server,
        "broken.json",
        &json!({
            "name": "apply-broken",
            "bogus": true,
            "steps": [{"id": "x", "type": "teleport"}],
            "triggers": [{"name": "crm", "trigger_type": "webhook", "config": {"input_mapping": 5}}]
        })
        .to_string(),
    );
    let outcome = apply(&file, ADMIN_TOKEN, &["--url", server.base_url()]).await;
    outcome.assert_failure();
    assert!(
        outcome
            .stderr
            .contains("is not a valid workflow definition"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("bogus: unknown field"),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("steps[0]"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("triggers[0]"), "{}", outcome.stderr);
    let stored = send(server.client().get(server.api("/workflows/apply-broken"))).await;
    stored.assert_error(404, "not_found");
}

async fn apply_reports_a_wrong_token_and_an_unreachable_server(backend: Backend) {
    let server = TestServer::start(backend).await;
    let file = write(
        &server,
        "orders.toml",
        &orders_toml("customer_email", false),
    );
    let outcome = apply(
        &file,
        "tdt_not-the-token",
        &["--deploy", "production", "--url", server.base_url()],
    )
    .await;
    outcome.assert_failure();
    assert!(
        outcome.stderr.contains("401") && outcome.stderr.contains("(unauthorized)"),
        "{}",
        outcome.stderr
    );
    let stored = send(server.client().get(server.api("/workflows/apply-orders"))).await;
    stored.assert_error(404, "not_found");

    // Nothing listens on port 1: the message names the URL and suggests --url.
    let unreachable = apply(&file, ADMIN_TOKEN, &["--url", "http://127.0.0.1:1"]).await;
    unreachable.assert_failure();
    assert!(
        unreachable
            .stderr
            .contains("cannot reach the triggerd server at http://127.0.0.1:1")
            && unreachable.stderr.contains("--url"),
        "{}",
        unreachable.stderr
    );
}

triggerd_tests::e2e_tests!(
    apply_creates_updates_and_removes_declared_triggers,
    apply_refuses_an_invalid_file_and_stores_nothing,
    apply_reports_a_wrong_token_and_an_unreachable_server,
);
