//! The `triggerd` binary. Composition only: configuration, CLI, logging and wiring of the other
//! crates. The server itself arrives with the single-node SQLite issue.

fn main() {
    eprintln!(
        "triggerd {}: the server is not built yet; see README.md for the current state",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
