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
    for command in ["serve", "migrate", "token"] {
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
    ] {
        assert!(
            text.contains(var),
            "serve --help does not mention {var}:\n{text}"
        );
    }
}
