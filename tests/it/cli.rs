//! The command line.

use std::process::Command;

use triggerd_tests::triggerd_bin;

#[test]
fn help_exits_zero_and_lists_serve_and_migrate() {
    let output = Command::new(triggerd_bin())
        .arg("--help")
        .output()
        .expect("run triggerd --help");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "triggerd --help exited with {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for command in ["serve", "migrate"] {
        assert!(
            stdout.contains(command),
            "triggerd --help does not list `{command}`:\n{stdout}"
        );
    }
}
