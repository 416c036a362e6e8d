//! `triggerd apply`: validate a workflow definition file locally, store it on a running server
//! through the management API, optionally deploy it, and print what changed and the webhook URLs.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use triggerd_domain::definition::{Definition, DefinitionError};

/// The server `apply` talks to when neither `--url` nor `TRIGGERD_PUBLIC_URL` is set.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

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
    /// Base URL of the triggerd server to apply to (default: http://127.0.0.1:8080).
    #[arg(long, env = "TRIGGERD_PUBLIC_URL")]
    url: Option<String>,
    /// The admin API token of that server (required).
    #[arg(long, env = "TRIGGERD_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
}

/// Runs `triggerd apply`. The error is the whole message to print (possibly several lines).
pub async fn apply(args: ApplyArgs) -> Result<(), String> {
    let definition = read_definition(&args.file)?;
    let token = args.api_token.filter(|t| !t.is_empty()).ok_or_else(|| {
        "no API token: set TRIGGERD_API_TOKEN (or pass --api-token) to the server's admin token"
            .to_owned()
    })?;
    let url = args
        .url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .unwrap_or(DEFAULT_URL);
    let api = Api::new(url, token)?;
    let name = definition.name.clone();

    let stored = api
        .call(
            Method::PUT,
            &format!("/workflows/{name}"),
            Some(definition.source()),
        )
        .await?
        .expect_ok()?;
    println!("{}", describe_put(&name, &stored));

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

/// `workflow NAME: version N (new|unchanged)` and one line per declared trigger that changed.
fn describe_put(name: &str, stored: &Value) -> String {
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
                    "cannot reach the triggerd server at {}: {}\nis it running there? Pass its address with --url (or TRIGGERD_PUBLIC_URL)",
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
        );
        assert_eq!(
            text,
            "workflow orders: version 3 (new)\n  deployment dep_1: trigger a created\n  deployment dep_1: trigger b updated\n  deployment dep_1: trigger c removed"
        );
        let keys = describe_put(
            "orders",
            &json!({"version": 4, "created": true, "declared_triggers": [
                {"deployment_id": "dep_1", "created": [], "updated": ["a"], "removed": [],
                 "generated_api_keys": [{"trigger": "a", "name": "ci", "key": "whk_x"}]}
            ]}),
        );
        assert_eq!(
            keys,
            "workflow orders: version 4 (new)\n  deployment dep_1: trigger a updated\n  deployment dep_1: trigger a: API key ci (generated, shown once): whk_x"
        );
        let same = describe_put(
            "orders",
            &json!({"version": 3, "created": false, "declared_triggers": []}),
        );
        assert_eq!(same, "workflow orders: version 3 (unchanged)");
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
