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

    fn assert_refused(&self) {
        assert_eq!(
            self.code,
            Some(2),
            "triggerd apply should refuse with exit 2\nstdout:\n{}\nstderr:\n{}",
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
    apply_with_env(file, token, extra, &[]).await
}

/// [`apply`] with these environment variables (no other `TRIGGERD_*` than the token).
async fn apply_with_env(file: &Path, token: &str, extra: &[&str], env: &[(&str, &str)]) -> Outcome {
    let file = file.to_owned();
    let token = token.to_owned();
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
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
            .envs(env)
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

    // 4. Remove stripe without --prune: refused, naming the URL that would stop working, and
    //    nothing changes (no new version, stripe's URL still starts runs).
    let file = write(&server, "orders.toml", &orders_toml("contact.email", false));
    let refused = apply(&file, ADMIN_TOKEN, &deploy).await;
    refused.assert_refused();
    assert!(
        refused.stderr.contains("webhook stripe would be removed")
            && refused.stderr.contains(&stripe)
            && refused.stderr.contains("--prune"),
        "{}",
        refused.stderr
    );
    let latest = send(server.client().get(server.api("/workflows/apply-orders"))).await;
    assert_eq!(latest.body["latest_version"], json!(2), "{}", latest.text);
    let still = send(
        server
            .plain()
            .post(&stripe)
            .json(&json!({"data": {"object": {"email": "c@example.com"}}})),
    )
    .await;
    server.expect(
        &still,
        201,
        "stripe's URL works until the removal is confirmed",
    );

    // 5. With --prune: reported as removed with its URL, no longer listed, the URL answers 404.
    let prune = ["--deploy", "production", "--url", base.as_str(), "--prune"];
    let removed = apply(&file, ADMIN_TOKEN, &prune).await;
    removed.assert_success();
    assert!(
        removed.has_line("workflow apply-orders: version 3 (new)"),
        "{}",
        removed.stdout
    );
    assert!(
        removed.stdout.contains(&format!(
            ": trigger stripe removed; this URL no longer works: {stripe}"
        )),
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

async fn apply_plan_shows_every_change_and_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let base = server.base_url().to_owned();
    let url = ["--url", base.as_str()];

    // A new workflow: planned as new, with the deployment that --deploy would create.
    let file = write(&server, "orders.toml", &orders_toml("customer_email", true));
    let plan = apply(
        &file,
        ADMIN_TOKEN,
        &["--plan", "--deploy", "production", "--url", &base],
    )
    .await;
    plan.assert_success();
    for line in [
        "workflow apply-orders: new (would be stored as version 1)",
        "deployment production: would be created, tracking the latest version (triggers crm, weekly, stripe)",
        "plan only: nothing was changed",
    ] {
        assert!(plan.has_line(line), "missing {line:?} in:\n{}", plan.stdout);
    }
    let stored = send(server.client().get(server.api("/workflows/apply-orders"))).await;
    stored.assert_error(404, "not_found");

    let created = apply(
        &file,
        ADMIN_TOKEN,
        &["--deploy", "production", "--url", &base],
    )
    .await;
    created.assert_success();
    let stripe = created.webhook_url("stripe").expect("stripe's URL");
    let unchanged = apply(&file, ADMIN_TOKEN, &["--dry-run", "--url", &base]).await;
    unchanged.assert_success();
    assert!(
        unchanged.has_line("workflow apply-orders: unchanged (version 1)"),
        "{}",
        unchanged.stdout
    );

    // crm changed, stripe dropped, a new webhook: each named, stripe with its URL.
    let mut text = orders_toml("contact.email", false);
    text.push_str("\n[[triggers]]\nname = \"shop\"\ntrigger_type = \"webhook\"\nconfig = {}\n");
    let file = write(&server, "orders.toml", &text);
    let plan = apply(&file, ADMIN_TOKEN, &["--plan", "--url", &base]).await;
    plan.assert_success();
    assert!(
        plan.has_line(
            "workflow apply-orders: changed (a new version would be stored; the latest is 1)"
        ),
        "{}",
        plan.stdout
    );
    for fragment in [
        "webhook crm would be updated in place (its URL stays the same)",
        "webhook shop would be created",
        &format!("webhook stripe would be removed; this URL would stop working: {stripe}"),
        "1 declared trigger would be removed: applying needs --prune",
    ] {
        assert!(
            plan.stdout.contains(fragment),
            "missing {fragment:?} in:\n{}",
            plan.stdout
        );
    }
    assert!(!plan.stdout.contains("weekly would"), "{}", plan.stdout);
    // Nothing changed: still version 1, stripe still there, no shop trigger.
    let latest = send(server.client().get(server.api("/workflows/apply-orders"))).await;
    assert_eq!(latest.body["latest_version"], json!(1), "{}", latest.text);
    let again = apply(&file, ADMIN_TOKEN, &url).await;
    again.assert_refused();
    let fired = send(
        server
            .plain()
            .post(&stripe)
            .json(&json!({"data": {"object": {"email": "c@example.com"}}})),
    )
    .await;
    server.expect(&fired, 201, "the planned removal did not happen");
}

async fn apply_finds_the_server_through_triggerd_url(backend: Backend) {
    let server = TestServer::start(backend).await;
    let base = server.base_url().to_owned();
    let file = write(
        &server,
        "orders.toml",
        &orders_toml("customer_email", false),
    );
    // TRIGGERD_URL wins over TRIGGERD_PUBLIC_URL (the senders' address, here unreachable).
    let outcome = apply_with_env(
        &file,
        ADMIN_TOKEN,
        &[],
        &[
            ("TRIGGERD_URL", &base),
            ("TRIGGERD_PUBLIC_URL", "http://127.0.0.1:1"),
        ],
    )
    .await;
    outcome.assert_success();
    assert!(
        outcome.has_line("workflow apply-orders: version 1 (new)"),
        "{}",
        outcome.stdout
    );
    assert!(!outcome.stderr.contains("warning"), "{}", outcome.stderr);

    // Only TRIGGERD_PUBLIC_URL (older set-ups): still used, with a warning naming TRIGGERD_URL.
    let old = apply_with_env(&file, ADMIN_TOKEN, &[], &[("TRIGGERD_PUBLIC_URL", &base)]).await;
    old.assert_success();
    assert!(
        old.stderr.contains("TRIGGERD_PUBLIC_URL") && old.stderr.contains("set TRIGGERD_URL"),
        "{}",
        old.stderr
    );

    // Nothing set: 127.0.0.1 at the port of TRIGGERD_LISTEN.
    let port = server.addr().port().to_string();
    let listen = format!("0.0.0.0:{port}");
    let local = apply_with_env(&file, ADMIN_TOKEN, &[], &[("TRIGGERD_LISTEN", &listen)]).await;
    local.assert_success();
    assert!(
        local.has_line("workflow apply-orders: version 1 (unchanged)"),
        "{}",
        local.stdout
    );
}

triggerd_tests::e2e_tests!(
    apply_plan_shows_every_change_and_changes_nothing,
    apply_finds_the_server_through_triggerd_url,
    apply_creates_updates_and_removes_declared_triggers,
    apply_refuses_an_invalid_file_and_stores_nothing,
    apply_reports_a_wrong_token_and_an_unreachable_server,
);
