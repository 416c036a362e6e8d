//! `triggerd apply`: validate a workflow definition file locally, store it on a running server
//! through the management API, optionally deploy it, and print what changed and the webhook URLs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use triggerd_domain::definition::{Definition, DefinitionError, redact_secrets};

use crate::Failure;

/// The port `apply` calls on 127.0.0.1 when no URL is given and `TRIGGERD_LISTEN` names none.
pub const DEFAULT_PORT: u16 = 8080;

/// Page size for the lists `apply` walks (the API's maximum).
const PAGE_LIMIT: usize = 200;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The workflow definition: a `.toml` file is read as TOML, any other as JSON; `-` reads JSON
    /// from stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: String,
    /// Also deploy the workflow under this name (e.g. production), tracking the latest version;
    /// an existing deployment of that name is kept. Prints the deployment's webhook URLs.
    #[arg(long, value_name = "NAME")]
    deploy: Option<String>,
    /// Base URL of the server's management API. Default: TRIGGERD_URL; else, for older set-ups,
    /// TRIGGERD_PUBLIC_URL (with a warning); else http://127.0.0.1:<port of TRIGGERD_LISTEN,
    /// 8080 when unset>.
    #[arg(long, env = "TRIGGERD_URL")]
    url: Option<String>,
    /// The admin API token of that server (required).
    #[arg(long, env = "TRIGGERD_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Print what applying would change — the workflow (new, changed, unchanged), deployments,
    /// and the declared triggers created, changed or removed with the URLs that would stop
    /// working — and change nothing.
    #[arg(long, visible_alias = "dry-run")]
    plan: bool,
    /// Allow removing declared triggers that the file no longer declares (their URLs stop
    /// working at once). Without it such a change is refused (exit 2) and nothing is changed.
    #[arg(long)]
    prune: bool,
}

/// Runs `triggerd apply`. The error is the whole message to print (possibly several lines).
pub async fn apply(args: ApplyArgs) -> Result<(), Failure> {
    let definition = read_definition(&args.file)?;
    let token = args.api_token.filter(|t| !t.is_empty()).ok_or_else(|| {
        "no API token: set TRIGGERD_API_TOKEN (or pass --api-token) to the server's admin token"
            .to_owned()
    })?;
    let url = server_url(args.url.as_deref());
    let api = Api::new(&url, token)?;
    let name = definition.name.clone();

    let plan = Plan::make(&api, &definition, args.deploy.as_deref()).await?;
    if args.plan {
        println!("plan for {} (nothing is changed):", shown_file(&args.file));
        print!("{}", plan.describe());
        println!("plan only: nothing was changed");
        return Ok(());
    }
    let removals = plan.removals();
    if !removals.is_empty() && !args.prune {
        let mut text = format!(
            "applying {} would remove {} declared trigger{} (no longer in the file, or replaced \
             by one of another type):",
            shown_file(&args.file),
            removals.len(),
            if removals.len() == 1 { "" } else { "s" }
        );
        for removal in &removals {
            let _ = write!(text, "\n  {}", removal.describe());
        }
        text.push_str(
            "\nnothing was changed. Pass --prune to remove them (every URL listed stops working \
             at once), or keep them in the file. --plan shows every change.",
        );
        return Err(Failure::usage(text));
    }

    let stored = api
        .call(
            Method::PUT,
            &format!("/workflows/{name}"),
            Some(definition.source()),
        )
        .await?
        .expect_ok()?;
    println!("{}", describe_put(&name, &stored, &plan.urls()));

    if let Some(deployment_name) = args.deploy {
        let deployment = deploy(&api, &name, &deployment_name).await?;
        let id = str_of(&deployment, "id");
        let mut triggers = api.list_all(&format!("/deployments/{id}/triggers")).await?;
        triggers.sort_by_key(|t| str_of(t, "name"));
        if triggers.is_empty() {
            println!("  no triggers");
        }
        for trigger in &triggers {
            println!("{}", describe_trigger(trigger));
        }
    }
    Ok(())
}

/// The base URL of the management API: `--url`/`TRIGGERD_URL`, else the deprecated
/// `TRIGGERD_PUBLIC_URL` (what `apply` used before `TRIGGERD_URL` existed; the address senders
/// use, which need not reach the API from where `apply` runs), else this machine at the port of
/// `TRIGGERD_LISTEN`.
fn server_url(given: Option<&str>) -> String {
    let non_empty = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if let Some(url) = non_empty(given.map(str::to_owned)) {
        return url;
    }
    if let Some(url) = non_empty(std::env::var("TRIGGERD_PUBLIC_URL").ok()) {
        eprintln!(
            "triggerd: warning: using TRIGGERD_PUBLIC_URL ({url}) as the server's address; set \
             TRIGGERD_URL (or pass --url) instead: the public URL is the one senders use"
        );
        return url;
    }
    let port = std::env::var("TRIGGERD_LISTEN")
        .ok()
        .and_then(|l| l.trim().parse::<std::net::SocketAddr>().ok())
        .map_or(DEFAULT_PORT, |a| a.port());
    format!("http://127.0.0.1:{port}")
}

fn shown_file(file: &str) -> &str {
    if file == "-" { "stdin" } else { file }
}

/// What applying a definition would change, worked out from the server's current state: the
/// server syncs declared triggers itself when a new version is stored, so removals are found
/// (and refused without `--prune`) here, before anything is sent.
#[derive(Debug)]
struct Plan {
    workflow: String,
    /// The latest stored version, if the workflow exists.
    latest: Option<i64>,
    /// Whether storing the file makes a new version.
    changes: bool,
    /// Whether the file holds secrets (not compared: the server never shows them).
    has_secrets: bool,
    deployments: Vec<DeploymentPlan>,
    /// `--deploy NAME` when no deployment of that name exists: its name.
    new_deployment: Option<String>,
    /// The names of the triggers the file declares.
    declared: Vec<String>,
}

#[derive(Debug)]
struct DeploymentPlan {
    id: String,
    name: String,
    /// The pinned version; `None` when it tracks the latest.
    pinned: Option<i64>,
    changes: Vec<TriggerChange>,
}

#[derive(Debug)]
struct TriggerChange {
    deployment: String,
    deployment_id: String,
    name: String,
    kind: String,
    what: ChangeKind,
    /// A webhook's current URL (which stops working when it is removed).
    url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    Created,
    Updated,
    Removed,
    /// An API-created trigger has the declared name: the declared one is not created.
    NameTaken,
}

impl TriggerChange {
    fn describe(&self) -> String {
        let head = format!(
            "deployment {} ({}): {} {}",
            self.deployment, self.deployment_id, self.kind, self.name
        );
        match (self.what, &self.url) {
            (ChangeKind::Created, _) => format!("{head} would be created"),
            (ChangeKind::Updated, Some(_)) => {
                format!("{head} would be updated in place (its URL stays the same)")
            }
            (ChangeKind::Updated, None) => format!("{head} would be updated in place"),
            (ChangeKind::Removed, Some(url)) => {
                format!("{head} would be removed; this URL would stop working: {url}")
            }
            (ChangeKind::Removed, None) => format!("{head} would be removed"),
            (ChangeKind::NameTaken, _) => format!(
                "{head}: a trigger created through the API has this name, so the declared one \
                 would not be created"
            ),
        }
    }
}

impl Plan {
    async fn make(
        api: &Api,
        definition: &Definition,
        deploy: Option<&str>,
    ) -> Result<Plan, String> {
        let workflow = definition.name.clone();
        let reply = api
            .call(Method::GET, &format!("/workflows/{workflow}"), None)
            .await?;
        let current = if reply.status == StatusCode::NOT_FOUND {
            None
        } else {
            Some(reply.expect_ok()?)
        };
        let local = redact_secrets(definition.source());
        let latest = current
            .as_ref()
            .and_then(|c| c.get("latest_version").and_then(Value::as_i64));
        let old = current.as_ref().and_then(|c| c.get("definition"));
        let changes = old != Some(&local);
        let declared_entries = |d: Option<&Value>| -> Vec<Value> {
            d.and_then(|d| d.get("triggers"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let old_entries = declared_entries(old);
        let new_entries = declared_entries(Some(&local));
        let declared: Vec<String> = new_entries.iter().map(|t| str_of(t, "name")).collect();

        let mut deployments = Vec::new();
        if current.is_some() {
            for d in api.list_all("/deployments").await? {
                if str_of(&d, "workflow") != workflow {
                    continue;
                }
                let mut plan = DeploymentPlan {
                    id: str_of(&d, "id"),
                    name: str_of(&d, "name"),
                    pinned: d.get("version").and_then(Value::as_i64),
                    changes: Vec::new(),
                };
                if plan.pinned.is_none() && changes {
                    let triggers = api
                        .list_all(&format!("/deployments/{}/triggers", plan.id))
                        .await?;
                    plan.changes = trigger_changes(&plan, &triggers, &old_entries, &new_entries);
                }
                deployments.push(plan);
            }
        }
        let new_deployment = deploy
            .filter(|n| !deployments.iter().any(|d| d.name == *n))
            .map(str::to_owned);
        Ok(Plan {
            workflow,
            latest,
            changes,
            has_secrets: local != *definition.source(),
            deployments,
            new_deployment,
            declared,
        })
    }

    /// The declared triggers that applying would remove.
    fn removals(&self) -> Vec<&TriggerChange> {
        self.deployments
            .iter()
            .flat_map(|d| &d.changes)
            .filter(|c| c.what == ChangeKind::Removed)
            .collect()
    }

    /// The current URL of each webhook the plan names, by `(deployment id, trigger name)`.
    fn urls(&self) -> HashMap<(String, String), String> {
        self.deployments
            .iter()
            .flat_map(|d| &d.changes)
            .filter_map(|c| {
                c.url
                    .clone()
                    .map(|u| ((c.deployment_id.clone(), c.name.clone()), u))
            })
            .collect()
    }

    fn describe(&self) -> String {
        let mut text = String::new();
        let name = &self.workflow;
        let secrets = if self.has_secrets {
            " (secrets are not compared: the server never shows them)"
        } else {
            ""
        };
        let _ = match (self.latest, self.changes) {
            (None, _) => writeln!(text, "workflow {name}: new (would be stored as version 1)"),
            (Some(v), true) => writeln!(
                text,
                "workflow {name}: changed (a new version would be stored; the latest is {v})"
            ),
            (Some(v), false) => writeln!(text, "workflow {name}: unchanged (version {v}){secrets}"),
        };
        for d in &self.deployments {
            match d.pinned {
                Some(v) => {
                    let _ = writeln!(
                        text,
                        "  deployment {} ({}): pinned to version {v}, not changed",
                        d.name, d.id
                    );
                }
                None if d.changes.is_empty() => {
                    let _ = writeln!(
                        text,
                        "  deployment {} ({}): tracks the latest version; no trigger changes",
                        d.name, d.id
                    );
                }
                None => {
                    for change in &d.changes {
                        let _ = writeln!(text, "  {}", change.describe());
                    }
                }
            }
        }
        if let Some(deployment) = &self.new_deployment {
            let triggers = if self.declared.is_empty() {
                "no declared triggers".to_owned()
            } else {
                format!("triggers {}", self.declared.join(", "))
            };
            let _ = writeln!(
                text,
                "deployment {deployment}: would be created, tracking the latest version ({triggers})"
            );
        }
        let removed = self.removals().len();
        if removed > 0 {
            let _ = writeln!(
                text,
                "{removed} declared trigger{} would be removed: applying needs --prune",
                if removed == 1 { "" } else { "s" }
            );
        }
        text
    }
}

/// The declared-trigger changes of a deployment that tracks the latest version, as the server's
/// sync would make them: `old` and `new` are the `triggers` of the latest stored and of the new
/// definition (secrets redacted alike), `triggers` the deployment's current triggers.
fn trigger_changes(
    deployment: &DeploymentPlan,
    triggers: &[Value],
    old: &[Value],
    new: &[Value],
) -> Vec<TriggerChange> {
    let change = |name: &str, kind: &str, what, url: Option<String>| TriggerChange {
        deployment: deployment.name.clone(),
        deployment_id: deployment.id.clone(),
        name: name.to_owned(),
        kind: kind.to_owned(),
        what,
        url,
    };
    let url_of = |t: &Value| t.get("url").and_then(Value::as_str).map(str::to_owned);
    let mut changes = Vec::new();
    for entry in new {
        let name = str_of(entry, "name");
        let kind = str_of(entry, "trigger_type");
        let current = triggers
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name.as_str()));
        match current {
            None => changes.push(change(&name, &kind, ChangeKind::Created, None)),
            Some(t) if t.get("declared").and_then(Value::as_bool) != Some(true) => {
                changes.push(change(&name, &kind, ChangeKind::NameTaken, None));
            }
            Some(t) if str_of(t, "trigger_type") != kind => {
                // A webhook cannot become a cron trigger in place: the old one goes.
                let old_kind = str_of(t, "trigger_type");
                changes.push(change(&name, &old_kind, ChangeKind::Removed, url_of(t)));
                changes.push(change(&name, &kind, ChangeKind::Created, None));
            }
            Some(t) => {
                let before = old.iter().find(|o| str_of(o, "name") == name);
                if before != Some(entry) {
                    changes.push(change(&name, &kind, ChangeKind::Updated, url_of(t)));
                }
            }
        }
    }
    for t in triggers {
        let name = str_of(t, "name");
        if t.get("declared").and_then(Value::as_bool) == Some(true)
            && !new.iter().any(|e| str_of(e, "name") == name)
        {
            changes.push(change(
                &name,
                &str_of(t, "trigger_type"),
                ChangeKind::Removed,
                url_of(t),
            ));
        }
    }
    changes
}

/// Reads and validates the definition; every problem is reported, nothing is sent.
fn read_definition(file: &str) -> Result<Definition, String> {
    let (text, toml) = if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the definition from stdin: {e}"))?;
        (text, false)
    } else {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let toml = Path::new(file)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        (text, toml)
    };
    let parsed = if toml {
        Definition::from_toml_str(&text)
    } else {
        Definition::from_json_str(&text)
    };
    let shown = if file == "-" { "stdin" } else { file };
    parsed.map_err(|error| match error {
        DefinitionError::Syntax { message } => {
            let format = if toml { "TOML" } else { "JSON" };
            format!("{shown} is not valid {format}: {message}\nnothing was sent to the server")
        }
        DefinitionError::Invalid(problems) => {
            let mut text = format!(
                "{shown} is not a valid workflow definition ({} problem{}):",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            for problem in &problems {
                let _ = write!(text, "\n  {problem}");
            }
            text.push_str("\nnothing was sent to the server");
            text
        }
    })
}

/// Creates the deployment, or finds the existing one of that name; prints which.
async fn deploy(api: &Api, workflow: &str, name: &str) -> Result<Value, String> {
    let reply = api
        .call(
            Method::POST,
            &format!("/workflows/{workflow}/deployments"),
            Some(&json!({ "name": name })),
        )
        .await?;
    let (deployment, how) = if reply.status == StatusCode::CONFLICT {
        let found = api
            .list_all("/deployments")
            .await?
            .into_iter()
            .find(|d| str_of(d, "workflow") == workflow && str_of(d, "name") == name)
            .ok_or_else(|| reply.error_message())?;
        (found, "exists")
    } else {
        (reply.expect_ok()?, "created")
    };
    let pinned = match deployment.get("version").and_then(Value::as_i64) {
        Some(v) => format!("pinned to version {v}"),
        None => "tracks the latest version".to_owned(),
    };
    println!(
        "deployment {name}: {how} ({}, {pinned})",
        str_of(&deployment, "id")
    );
    // The API keys generated for the declared triggers created with the deployment: the
    // server shows them in this answer only.
    for trigger in deployment
        .get("triggers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for key in generated_keys(trigger) {
            println!(
                "  trigger {}: {}",
                str_of(trigger, "name"),
                describe_key(key)
            );
        }
    }
    Ok(deployment)
}

/// `workflow NAME: version N (new|unchanged)` and one line per declared trigger that changed;
/// a removed webhook's line names its URL (from `urls`, read before the change), which no
/// longer works.
fn describe_put(name: &str, stored: &Value, urls: &HashMap<(String, String), String>) -> String {
    let version = stored
        .get("version")
        .map_or_else(String::new, Value::to_string);
    let state = if stored.get("created").and_then(Value::as_bool) == Some(true) {
        "new"
    } else {
        "unchanged"
    };
    let mut text = format!("workflow {name}: version {version} ({state})");
    for change in stored
        .get("declared_triggers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let deployment = str_of(change, "deployment_id");
        for what in ["created", "updated", "removed"] {
            for trigger in change
                .get(what)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let _ = write!(
                    text,
                    "\n  deployment {deployment}: trigger {trigger} {what}"
                );
                if what == "removed"
                    && let Some(url) = urls.get(&(deployment.clone(), trigger.to_owned()))
                {
                    let _ = write!(text, "; this URL no longer works: {url}");
                }
            }
        }
        for key in generated_keys(change) {
            let trigger = str_of(key, "trigger");
            let _ = write!(
                text,
                "\n  deployment {deployment}: trigger {trigger}: {}",
                describe_key(key)
            );
        }
    }
    text
}

/// The `generated_api_keys` of an answer (shown by the server this once).
fn generated_keys(value: &Value) -> impl Iterator<Item = &Value> {
    value
        .get("generated_api_keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// `API key NAME (generated, shown once): KEY`.
fn describe_key(key: &Value) -> String {
    format!(
        "API key {} (generated, shown once): {}",
        str_of(key, "name"),
        str_of(key, "key")
    )
}

/// `  webhook NAME: URL` or `  cron NAME: next fire at T`.
fn describe_trigger(trigger: &Value) -> String {
    let name = trigger
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let kind = str_of(trigger, "trigger_type");
    let detail = if kind == "cron" {
        match trigger.get("next_fire_at").and_then(Value::as_str) {
            Some(at) => format!("next fire at {at}"),
            None => "no next fire".to_owned(),
        }
    } else {
        str_of(trigger, "url")
    };
    let disabled = if trigger.get("enabled").and_then(Value::as_bool) == Some(false) {
        " (disabled)"
    } else {
        ""
    };
    format!("  {kind} {name}: {detail}{disabled}")
}

fn str_of(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The management API of one server.
#[derive(Debug)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// One answer of the API.
#[derive(Debug)]
struct Reply {
    what: String,
    status: StatusCode,
    body: Value,
}

impl Reply {
    /// The body of a 2xx answer, or the server's error as a message.
    fn expect_ok(self) -> Result<Value, String> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(self.error_message())
        }
    }

    /// `the server refused …: error (code)` and each `details` entry.
    fn error_message(&self) -> String {
        let error = self
            .body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("(no error message)");
        let mut text = format!("{} failed with {}: {error}", self.what, self.status);
        if let Some(code) = self.body.get("code").and_then(Value::as_str) {
            let _ = write!(text, " ({code})");
        }
        for detail in self
            .body
            .get("details")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let place = detail
                .get("path")
                .or_else(|| detail.get("input"))
                .and_then(Value::as_str);
            match (place, detail.get("message").and_then(Value::as_str)) {
                (Some(place), Some(message)) => {
                    let _ = write!(text, "\n  {place}: {message}");
                }
                (None, Some(message)) => {
                    let _ = write!(text, "\n  {message}");
                }
                _ => {
                    let _ = write!(text, "\n  {detail}");
                }
            }
        }
        text
    }
}

impl Api {
    fn new(url: &str, token: String) -> Result<Api, String> {
        let base = url.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "--url must start with http:// or https://, got {url:?}"
            ));
        }
        // reqwest is built with rustls but without a crypto provider: ring is it. An error means
        // one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("triggerd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))?;
        Ok(Api { http, base, token })
    }

    /// Calls `/api/v1{path}`; any status is a `Reply`, only transport failures are errors.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        let url = format!("{}/api/v1{path}", self.base);
        let what = format!("{method} {url}");
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                format!(
                    "cannot reach the triggerd server at {}: {}\nis it running there? Pass its address with --url (or TRIGGERD_URL)",
                    self.base,
                    error_chain(&e)
                )
            } else {
                format!("{what} failed: {}", error_chain(&e))
            }
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("{what}: cannot read the answer: {}", error_chain(&e)))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| {
                format!(
                    "{what} answered {status} with a body that is not JSON: is {} a triggerd server? (see --url)",
                    self.base
                )
            })?
        };
        Ok(Reply { what, status, body })
    }

    /// Every item of a list route, following `next_cursor`.
    async fn list_all(&self, path: &str) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut page_path = format!("{path}?limit={PAGE_LIMIT}");
            if let Some(c) = &cursor {
                page_path.push_str("&cursor=");
                page_path.push_str(c);
            }
            let page = self
                .call(Method::GET, &page_path, None)
                .await?
                .expect_ok()?;
            if let Some(data) = page.get("data").and_then(Value::as_array) {
                items.extend(data.iter().cloned());
            }
            match page.get("next_cursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() && cursor.as_deref() != Some(next) => {
                    cursor = Some(next.to_owned());
                }
                _ => return Ok(items),
            }
        }
    }
}

/// An error and its sources, `a: b: c`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let _ = write!(text, ": {e}");
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_summary_names_version_state_and_changes() {
        let text = describe_put(
            "orders",
            &json!({"version": 3, "created": true, "declared_triggers": [
                {"deployment_id": "dep_1", "created": ["a"], "updated": ["b"], "removed": ["c"]}
            ]}),
            &HashMap::from([(
                ("dep_1".into(), "c".into()),
                "http://x/api/webhooks/wht_c".into(),
            )]),
        );
        assert_eq!(
            text,
            "workflow orders: version 3 (new)\n  deployment dep_1: trigger a created\n  deployment dep_1: trigger b updated\n  deployment dep_1: trigger c removed; this URL no longer works: http://x/api/webhooks/wht_c"
        );
        let keys = describe_put(
            "orders",
            &json!({"version": 4, "created": true, "declared_triggers": [
                {"deployment_id": "dep_1", "created": [], "updated": ["a"], "removed": [],
                 "generated_api_keys": [{"trigger": "a", "name": "ci", "key": "whk_x"}]}
            ]}),
            &HashMap::new(),
        );
        assert_eq!(
            keys,
            "workflow orders: version 4 (new)\n  deployment dep_1: trigger a updated\n  deployment dep_1: trigger a: API key ci (generated, shown once): whk_x"
        );
        let same = describe_put(
            "orders",
            &json!({"version": 3, "created": false, "declared_triggers": []}),
            &HashMap::new(),
        );
        assert_eq!(same, "workflow orders: version 3 (unchanged)");
    }

    #[test]
    fn plan_finds_created_updated_removed_and_replaced_triggers() {
        let deployment = DeploymentPlan {
            id: "dep_1".into(),
            name: "production".into(),
            pinned: None,
            changes: Vec::new(),
        };
        let webhook = |name: &str, mapping: &str| json!({"name": name, "trigger_type": "webhook", "config": {"input_mapping": {"email": mapping}}});
        let current = |name: &str, kind: &str, declared: bool| {
            json!({"name": name, "trigger_type": kind, "declared": declared,
                   "url": format!("http://x/api/webhooks/wht_{name}")})
        };
        let old = [
            webhook("same", "a"),
            webhook("changed", "a"),
            webhook("gone", "a"),
            webhook("retyped", "a"),
        ];
        let new = [
            webhook("same", "a"),
            webhook("changed", "b"),
            json!({"name": "retyped", "trigger_type": "cron", "config": {"schedule": "@daily"}}),
            webhook("fresh", "a"),
            webhook("taken", "a"),
        ];
        let triggers = [
            current("same", "webhook", true),
            current("changed", "webhook", true),
            current("gone", "webhook", true),
            current("retyped", "webhook", true),
            current("taken", "webhook", false),
            current("by-api", "webhook", false),
        ];
        let lines: Vec<String> = trigger_changes(&deployment, &triggers, &old, &new)
            .iter()
            .map(TriggerChange::describe)
            .collect();
        let head = "deployment production (dep_1):";
        assert_eq!(
            lines,
            [
                format!(
                    "{head} webhook changed would be updated in place (its URL stays the same)"
                ),
                format!(
                    "{head} webhook retyped would be removed; this URL would stop working: http://x/api/webhooks/wht_retyped"
                ),
                format!("{head} cron retyped would be created"),
                format!("{head} webhook fresh would be created"),
                format!(
                    "{head} webhook taken: a trigger created through the API has this name, so the declared one would not be created"
                ),
                format!(
                    "{head} webhook gone would be removed; this URL would stop working: http://x/api/webhooks/wht_gone"
                ),
            ]
        );
    }

    #[test]
    fn triggers_show_url_or_next_fire() {
        assert_eq!(
            describe_trigger(
                &json!({"name": "crm", "trigger_type": "webhook", "enabled": true, "url": "http://x/api/webhooks/wht_a"})
            ),
            "  webhook crm: http://x/api/webhooks/wht_a"
        );
        assert_eq!(
            describe_trigger(
                &json!({"name": "weekly", "trigger_type": "cron", "enabled": false, "next_fire_at": "2030-01-07T09:00:00Z"})
            ),
            "  cron weekly: next fire at 2030-01-07T09:00:00Z (disabled)"
        );
    }

    #[test]
    fn server_errors_list_every_detail() {
        let reply = Reply {
            what: "PUT http://x/api/v1/workflows/a".into(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"error": "the definition is invalid", "code": "invalid_definition",
                "details": [{"path": "steps[0].id", "message": "is required"}, {"input": "email", "message": "bad"}]}),
        };
        assert_eq!(
            reply.error_message(),
            "PUT http://x/api/v1/workflows/a failed with 422 Unprocessable Entity: the definition is invalid (invalid_definition)\n  steps[0].id: is required\n  email: bad"
        );
    }

    #[test]
    fn invalid_files_report_every_problem() {
        let dir = std::env::temp_dir().join(format!("triggerd-apply-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(
            &file,
            "name = \"ok\"\nbogus = 1\n[[steps]]\ntype = \"nope\"\n",
        )
        .unwrap();
        let error = read_definition(file.to_str().unwrap()).unwrap_err();
        assert!(error.contains("bogus: unknown field"), "{error}");
        assert!(error.contains("steps[0]"), "{error}");
        assert!(error.ends_with("nothing was sent to the server"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn urls_must_be_http() {
        assert!(Api::new("127.0.0.1:8080", "t".into()).is_err());
        assert!(Api::new("https://hooks.example.com/", "t".into()).is_ok());
    }
}
