//! The binary's command line. (This test also makes `cargo test --workspace` build the `triggerd`
//! binary that the end-to-end suite in `tests/` starts.)

use std::process::Command;

#[test]
fn help_lists_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_triggerd"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "migrate", "token", "apply"] {
        assert!(
            text.contains(command),
            "--help does not list {command}:\n{text}"
        );
    }
}

#[test]
fn serve_help_documents_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_triggerd"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for var in [
        "TRIGGERD_LISTEN",
        "TRIGGERD_DATABASE_URL",
        "TRIGGERD_PUBLIC_URL",
        "TRIGGERD_API_TOKEN",
        "TRIGGERD_HIDE_UNKNOWN_TOKENS",
        "TRIGGERD_ACTIVITY_RETENTION",
        "TRIGGERD_RUN_RETENTION_DAYS",
        "TRIGGERD_CONFIG",
        "RUST_LOG",
    ] {
        assert!(
            text.contains(var),
            "serve --help does not mention {var}:\n{text}"
        );
    }
}

#[test]
fn apply_help_documents_its_flags_and_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_triggerd"))
        .args(["apply", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--file",
        "--deploy",
        "--url",
        "--plan",
        "--dry-run",
        "--prune",
        "TRIGGERD_URL",
        "TRIGGERD_PUBLIC_URL",
        "TRIGGERD_API_TOKEN",
        "http://127.0.0.1:",
    ] {
        assert!(
            text.contains(word),
            "apply --help does not mention {word}:\n{text}"
        );
    }
}

#[test]
fn apply_without_a_token_says_so_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("triggerd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ok.json");
    std::fs::write(&file, r#"{"name": "ok"}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_triggerd"))
        .arg("apply")
        .arg("-f")
        .arg(&file)
        .env_remove("TRIGGERD_API_TOKEN")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("TRIGGERD_API_TOKEN"), "{text}");
}

#[test]
fn a_config_file_with_an_unknown_key_is_refused_before_starting() {
    let dir = std::env::temp_dir().join(format!("triggerd-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("triggerd.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nlisten_port = 9\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_triggerd"))
        .args(["serve", "--config"])
        .arg(&file)
        .env_remove("TRIGGERD_LISTEN")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listen_port") && stderr.contains("triggerd.toml"),
        "{stderr}"
    );
}

#[test]
fn a_negative_run_retention_is_refused_with_a_hint() {
    let out = Command::new(env!("CARGO_BIN_EXE_triggerd"))
        .args(["serve", "--run-retention-days=-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("number of days"), "{text}");
}
