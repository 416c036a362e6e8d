//! The command line: help texts, the documentation of every flag, and the commands that work on
//! a database directly (`migrate`, `token reset`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use triggerd_tests::{Backend, triggerd_bin};

/// `triggerd ARGS` in `dir`, with no `TRIGGERD_*` variable of the test's environment.
fn triggerd(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(triggerd_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TRIGGERD_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run triggerd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh, empty directory of this test.
fn scratch(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "triggerd-cli-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

#[test]
fn help_exits_zero_and_lists_serve_and_migrate() {
    let output = triggerd(&std::env::temp_dir(), &["--help"]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "triggerd --help exited with {}; stderr: {}",
        output.status,
        text(&output.stderr)
    );
    for command in ["serve", "migrate"] {
        assert!(
            stdout.contains(command),
            "triggerd --help does not list `{command}`:\n{stdout}"
        );
    }
}

/// The long flags a `--help` text lists (`-f, --file <FILE>` → `--file`), aliases included.
fn flags_of(help: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for line in help.lines() {
        let line = line.trim_start();
        let listed = line.starts_with("--") || (line.starts_with('-') && line.contains(", --"));
        let alias = line.contains("[alias: --") || line.contains("[aliases: --");
        if !(listed || alias) {
            continue;
        }
        for word in line.split([' ', ',', '[', ']', '=']) {
            if let Some(name) = word.strip_prefix("--")
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            {
                flags.push(format!("--{name}"));
            }
        }
    }
    flags
}

#[test]
fn every_flag_of_every_command_is_documented_in_docs_cli_md() {
    let docs_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md");
    let docs = std::fs::read_to_string(&docs_path).expect("read docs/cli.md");
    let dir = std::env::temp_dir();
    let commands: [&[&str]; 6] = [
        &[],
        &["serve"],
        &["migrate"],
        &["apply"],
        &["token"],
        &["token", "reset"],
    ];
    let mut missing = Vec::new();
    let mut seen = 0;
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let output = triggerd(&dir, &args);
        assert!(output.status.success(), "triggerd {args:?} failed");
        for flag in flags_of(&text(&output.stdout)) {
            seen += 1;
            // In a table or in code: `--flag` followed by a space, a backquote or the end.
            let documented = docs.match_indices(&flag).any(|(at, _)| {
                let next = docs[at + flag.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_lowercase() || c == '-')
            });
            if !documented {
                missing.push(format!("triggerd {} {flag}", command.join(" ")));
            }
        }
    }
    assert!(seen > 20, "the --help texts list only {seen} flags");
    assert!(
        missing.is_empty(),
        "flags missing from docs/cli.md:\n{}",
        missing.join("\n")
    );
}

#[test]
fn token_reset_refuses_a_sqlite_file_that_does_not_exist() {
    let dir = scratch("reset");
    let output = triggerd(
        &dir,
        &[
            "token",
            "reset",
            "--database-url",
            "sqlite://tyop/triggerd.db",
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    let wanted = dir.join("tyop/triggerd.db");
    assert!(
        stderr.contains(&wanted.display().to_string()) && stderr.contains("--create"),
        "the message names the absolute path and --create: {stderr}"
    );
    assert!(
        text(&output.stdout).is_empty(),
        "no token is printed: {}",
        text(&output.stdout)
    );
    assert!(
        !dir.join("tyop").exists(),
        "neither the file nor its directory is created"
    );

    // With --create: a new database with the new token.
    let created = triggerd(
        &dir,
        &[
            "token",
            "reset",
            "--create",
            "--database-url",
            "sqlite://tyop/triggerd.db",
        ],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(
        text(&created.stdout).contains("tda_"),
        "{}",
        text(&created.stdout)
    );
    assert!(wanted.is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn migrate_refuses_a_missing_file_then_names_the_migrations_it_applies() {
    let dir = scratch("migrate");
    let url = "sqlite://data/triggerd.db";
    let refused = triggerd(&dir, &["migrate", "--database-url", url]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(&dir.join("data/triggerd.db").display().to_string()),
        "{stderr}"
    );
    assert!(!dir.join("data").exists());

    let first = triggerd(&dir, &["migrate", "--create", "--database-url", url]);
    let stdout = text(&first.stdout);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(stdout.contains(": applied "), "{stdout}");
    let migrations =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite"))
            .expect("list migrations/sqlite")
            .map(|e| {
                e.expect("a migration")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect::<Vec<_>>();
    assert!(!migrations.is_empty());
    for name in &migrations {
        assert!(
            stdout.lines().any(|l| l.trim() == name),
            "migration {name} is not named:\n{stdout}"
        );
    }

    // The file exists now: no --create needed, and nothing is pending.
    let again = triggerd(&dir, &["migrate", "--database-url", url]);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(stdout.contains("no migrations were pending"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `triggerd migrate` on a PostgreSQL database that does not exist says to create it.
async fn migrate_on_a_missing_postgres_database_suggests_createdb(_backend: Backend) {
    let server_url = std::env::var(triggerd_storage::testing::POSTGRES_URL_VAR)
        .expect("run_on checked that PostgreSQL is configured");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let (base, _) = server_url
        .rsplit_once('/')
        .expect("a PostgreSQL URL with a database");
    let url = format!("{base}/triggerd_missing_{nanos}");
    let dir = std::env::temp_dir();
    let output =
        tokio::task::spawn_blocking(move || triggerd(&dir, &["migrate", "--database-url", &url]))
            .await
            .expect("run triggerd migrate");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not exist") && stderr.contains("createdb"),
        "{stderr}"
    );
}

triggerd_tests::postgres_tests!(migrate_on_a_missing_postgres_database_suggests_createdb);

/// `docs/README.md` lists every page of `docs/`, the README links it, and no page points at
/// documents outside the repository.
#[test]
fn the_docs_index_lists_every_page_and_docs_stand_alone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let index = std::fs::read_to_string(root.join("docs/README.md")).expect("docs/README.md");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(
        readme.contains("(docs/README.md)"),
        "the README does not link docs/README.md"
    );
    let mut pages = Vec::new();
    for entry in std::fs::read_dir(root.join("docs")).expect("list docs/") {
        let name = entry.expect("a docs entry").file_name();
        let name = name.to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "README.md" {
            pages.push(name);
        }
    }
    assert!(pages.len() >= 10, "{pages:?}");
    for page in &pages {
        assert!(
            index.contains(&format!("]({page})")),
            "docs/README.md does not list {page}"
        );
    }
    // "SPEC 3", "SPEC 4.7": the product contract is not part of the repository.
    for page in pages
        .iter()
        .map(|p| format!("docs/{p}"))
        .chain(["README.md".to_owned()])
    {
        let text = std::fs::read_to_string(root.join(&page)).expect("read a page");
        assert!(
            !text.contains("SPEC"),
            "{page} refers to a document outside the repository"
        );
    }
}
