//! The examples in `examples/`: every workflow file is a valid definition the server accepts,
//! each under its own name, and the quickstart's walk-through script runs against a real server.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use triggerd_tests::{ADMIN_TOKEN, Backend, TestServer, send};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// `examples/<folder>/workflow.json` of every example folder, sorted.
fn workflow_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("list examples/")
        .map(|e| e.expect("an entry of examples/").path())
        .filter(|p| p.is_dir())
        .map(|dir| dir.join("workflow.json"))
        .filter(|f| f.is_file())
        .collect();
    files.sort();
    files
}

async fn every_example_workflow_is_accepted_by_the_server(backend: Backend) {
    // `examples/command` runs a program: the server must allow command steps.
    let server = TestServer::start_with(backend, &[("TRIGGERD_ALLOW_COMMANDS", "true")]).await;
    let files = workflow_files();
    assert!(files.len() >= 9, "example workflows: {files:?}");
    let mut names = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read the example");
        let definition: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        let name = definition["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no name", file.display()))
            .to_owned();
        assert!(
            !names.contains(&name),
            "two examples name the workflow {name:?}"
        );
        let reply = send(
            server
                .client()
                .put(server.api(&format!("/workflows/{name}")))
                .json(&definition),
        )
        .await;
        assert_eq!(
            reply.status,
            200,
            "{} was refused: {}",
            file.display(),
            reply.text
        );
        // Deploying creates its declared triggers (cron schedules, webhook configs checked again).
        server.deploy(&name, "production").await;
        names.push(name);
    }
    // Each example folder has a README that says how to apply it.
    for file in &files {
        let readme = file.with_file_name("README.md");
        let text = std::fs::read_to_string(&readme)
            .unwrap_or_else(|e| panic!("{}: {e}", readme.display()));
        assert!(
            text.contains("workflow.json"),
            "{} does not say how to apply the example",
            readme.display()
        );
    }
    let index =
        std::fs::read_to_string(examples_dir().join("README.md")).expect("examples/README.md");
    for file in &files {
        let folder = file
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .expect("a folder name");
        assert!(
            index.contains(&format!("({folder}/")),
            "examples/README.md does not list {folder}"
        );
    }
}

/// Runs `examples/quickstart/walkthrough.sh` against `server` with `token`.
async fn walkthrough(server: &TestServer, token: &str) -> std::process::Output {
    let script = examples_dir().join("quickstart/walkthrough.sh");
    let (base, token) = (server.base_url().to_owned(), token.to_owned());
    tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .env("TRIGGERD_URL", base)
            .env("TRIGGERD_API_TOKEN", token)
            .output()
            .expect("run bash examples/quickstart/walkthrough.sh")
    })
    .await
    .expect("the walkthrough task")
}

async fn quickstart_walkthrough_runs_and_explains_a_wrong_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ok = walkthrough(&server, ADMIN_TOKEN).await;
    let stdout = String::from_utf8_lossy(&ok.stdout);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("\"status\": \"completed\"")
            && stdout.contains("order of 120 USD from ada@example.com"),
        "{stdout}"
    );

    let wrong = walkthrough(&server, "not-the-token").await;
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success(), "{stderr}");
    assert!(
        stderr.contains("answered 401") && stderr.contains("TRIGGERD_API_TOKEN"),
        "{stderr}"
    );
    assert!(!stderr.contains("Traceback"), "{stderr}");
}

/// The first fenced block of `lang` in `docs/<page>` that follows `marker`.
fn doc_block(page: &str, marker: &str, lang: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(page);
    let text = std::fs::read_to_string(&path).expect("read the page");
    let after = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in {page}"))..];
    let fence = format!("```{lang}\n");
    let start = after
        .find(&fence)
        .unwrap_or_else(|| panic!("no {lang} block in {page}"))
        + fence.len();
    let end = after[start..].find("```").expect("the block's end");
    after[start..start + end].to_owned()
}

/// The definitions shown in docs/workflows.md (JSON) and docs/cli.md (TOML) are accepted.
async fn documented_definitions_are_accepted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let json_text = doc_block("workflows.md", "# Workflow definitions", "json");
    let definition: Value = serde_json::from_str(&json_text).expect("the example is JSON");
    let name = definition["name"].as_str().expect("a name").to_owned();
    let reply = send(
        server
            .client()
            .put(server.api(&format!("/workflows/{name}")))
            .json(&definition),
    )
    .await;
    assert_eq!(reply.status, 200, "docs/workflows.md: {}", reply.text);

    let toml_text = doc_block("cli.md", "A definition in TOML", "toml");
    let file = server.dir().join("documented.toml");
    std::fs::write(&file, toml_text).expect("write the TOML example");
    let base = server.base_url().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(triggerd_tests::triggerd_bin())
            .args(["apply", "--plan", "--url", &base, "-f"])
            .arg(&file)
            .env("TRIGGERD_API_TOKEN", ADMIN_TOKEN)
            .output()
            .expect("run triggerd apply --plan")
    })
    .await
    .expect("the apply task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("(would be stored as version 1)"),
        "docs/cli.md's TOML example:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

triggerd_tests::e2e_tests!(
    documented_definitions_are_accepted,
    every_example_workflow_is_accepted_by_the_server,
    quickstart_walkthrough_runs_and_explains_a_wrong_token,
);
