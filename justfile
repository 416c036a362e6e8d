# Contributor shortcuts. The README's commands are plain cargo; `just` is optional.

# run the server (SQLite file triggerd.db in the current directory)
run *ARGS:
    cargo run --release -p triggerd-server -- serve {{ARGS}}

# every test, as CI runs them
test:
    cargo test --workspace

# clippy with warnings as errors, and docs
lint:
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc -p triggerd-domain --no-deps

# format everything
fmt:
    cargo fmt --all

# benchmarks: every scenario against a bare hyper baseline, a few minutes (docs/performance.md);
# e.g. `just bench --duration 3s -s ingest --json bench.json`
bench *ARGS:
    cargo run --release -p triggerd-bench -- {{ARGS}}
