//! `triggerd-bench`: runs the benchmark scenarios and prints the table (see the crate docs and
//! docs/performance.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use triggerd_bench::process::locate_triggerd;
use triggerd_bench::{Backend, Settings, scenario};

/// Benchmarks triggerd's webhook hot path and end-to-end runs against a bare hyper server measured
/// in the same run. With no options it runs every scenario on SQLite (and on PostgreSQL when
/// --postgres or TRIGGERD_TEST_POSTGRES_URL is given) in a few minutes on 2 cores.
#[derive(Debug, Parser)]
#[command(name = "triggerd-bench", version, about, long_about)]
struct Cli {
    /// Measured window of each load, e.g. 10s, 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load sent before each window and not measured (e2e and steps have none: every run counts).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Keep-alive connections, one request in flight each.
    #[arg(long, short = 'c', default_value_t = 64)]
    connections: usize,
    /// Scenarios to run (comma-separated; see --list). Default: all but cron-scale and memory.
    #[arg(long, short = 's', value_delimiter = ',')]
    scenario: Vec<String>,
    /// Triggers the ingest-many load is spread over.
    #[arg(long, default_value_t = 1000)]
    triggers: usize,
    /// Cron triggers of cron-scale (which runs only when named with -s; it watches
    /// max(3, --duration in minutes) minute boundaries).
    #[arg(long, default_value_t = triggerd_bench::cron::DEFAULT_TRIGGERS)]
    cron_triggers: usize,
    /// Also run on PostgreSQL: a server URL such as postgres://postgres@127.0.0.1:5432/postgres
    /// (each scenario creates and drops a database of its own with psql).
    #[arg(long, env = "TRIGGERD_TEST_POSTGRES_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// Skip SQLite (with --postgres: PostgreSQL only).
    #[arg(long)]
    no_sqlite: bool,
    /// The triggerd binary (default: `triggerd` next to this one, e.g. target/release/triggerd;
    /// under `cargo run` it is first brought up to date with `cargo build -p triggerd-server` in
    /// the same profile, so the figures are always of the current code).
    #[arg(long)]
    triggerd: Option<PathBuf>,
    /// Under `cargo run`, do not rebuild triggerd first.
    #[arg(long)]
    no_build: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Serve the baseline on this address and never return (used by the tool itself).
    #[arg(long, hide = true)]
    serve_baseline: Option<SocketAddr>,
}

/// `10s`, `500ms`, `2m`, or plain seconds (`10`, `0.5`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Under `cargo run` (which sets `CARGO`), builds `triggerd` in this binary's profile so that a
/// stale server is never measured. Elsewhere (a copied binary) does nothing.
fn build_triggerd(exe: &std::path::Path) -> Result<(), String> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let profile = exe
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("release")
        .to_owned();
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    eprintln!("triggerd-bench: cargo build --profile {profile} -p triggerd-server");
    let mut command = std::process::Command::new(cargo);
    // `cargo run` gave this process the package's CARGO_PKG_*, CARGO_MANIFEST_* ... variables.
    // Build scripts watch some of them (ring: CARGO_MANIFEST_DIR, CARGO_PKG_NAME), so passing
    // them on would make every run rebuild half the workspace.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            || key == "OUT_DIR"
        {
            command.env_remove(key.as_ref());
        }
    }
    let status = command
        .args(["build", "--quiet", "--manifest-path", manifest, "--profile"])
        .arg(if profile == "debug" { "dev" } else { &profile })
        .args(["-p", "triggerd-server"])
        .status()
        .map_err(|e| format!("cannot run cargo to build triggerd: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "building triggerd failed ({status}); pass --no-build or --triggerd PATH to skip"
        ))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(listen) = cli.serve_baseline {
        return match triggerd_bench::baseline::serve_blocking(listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("triggerd-bench baseline: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let all = scenario::registry();
    if cli.list {
        for s in &all {
            println!("{:<12} {}", s.name(), s.about());
        }
        println!("(without -s: every scenario but cron-scale and memory)");
        return ExitCode::SUCCESS;
    }
    let unknown: Vec<&String> = cli
        .scenario
        .iter()
        .filter(|n| !all.iter().any(|s| s.name() == n.as_str()))
        .collect();
    if !unknown.is_empty() {
        eprintln!("triggerd-bench: unknown scenario {unknown:?}; see --list");
        return ExitCode::FAILURE;
    }
    let selected: Vec<_> = all
        .into_iter()
        .filter(|s| {
            if cli.scenario.is_empty() {
                s.by_default()
            } else {
                cli.scenario.iter().any(|n| n == s.name())
            }
        })
        .collect();

    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("triggerd-bench: cannot find its own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.triggerd.is_none() && !cli.no_build {
        if let Err(e) = build_triggerd(&exe) {
            eprintln!("triggerd-bench: {e}");
            return ExitCode::FAILURE;
        }
    }
    let Some(triggerd) = locate_triggerd(cli.triggerd.as_deref(), &exe) else {
        eprintln!(
            "triggerd-bench: no triggerd binary {}: build it with \
             `cargo build --release -p triggerd-server` or pass --triggerd PATH",
            cli.triggerd.as_ref().map_or_else(
                || format!("next to {}", exe.display()),
                |p| format!("at {}", p.display())
            )
        );
        return ExitCode::FAILURE;
    };
    let mut settings = Settings::standard(triggerd, exe);
    settings.duration = cli.duration;
    settings.warmup = cli.warmup;
    settings.connections = cli.connections.max(1);
    settings.many_triggers = cli.triggers.max(1);
    settings.cron_triggers = cli.cron_triggers.max(1);
    settings.backends.clear();
    if !cli.no_sqlite {
        settings.backends.push(Backend::Sqlite);
    }
    if let Some(url) = cli.postgres.filter(|u| !u.is_empty()) {
        settings.backends.push(Backend::Postgres(url));
    }
    if settings.backends.is_empty() {
        eprintln!("triggerd-bench: --no-sqlite needs --postgres URL");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "triggerd-bench: {} ({})",
        settings.triggerd.display(),
        if settings
            .triggerd
            .components()
            .any(|c| c.as_os_str() == "debug")
        {
            "a debug build: figures are not representative"
        } else {
            "release build expected"
        }
    );

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("triggerd-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(triggerd_bench::run_suite(&settings, &selected));
    println!("{}", report.table());
    if let Some(path) = &cli.json {
        if let Err(e) = std::fs::write(path, report.to_json()) {
            eprintln!("triggerd-bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("triggerd-bench: wrote {}", path.display());
    }
    if report.has_failures() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
