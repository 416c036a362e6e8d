//! The `triggerd` binary. Composition only: configuration, CLI, logging, and the wiring of
//! storage, the HTTP layer and the run worker. See `triggerd --help`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;
use triggerd_app::{App, AppOptions, SystemClock};
use triggerd_delivery::{OutboundClient, OutboundConfig};
use triggerd_domain::ids::{IdKind, hash_token, new_id, new_secret_token};
use triggerd_ingress::{AppState, IngressConfig};
use triggerd_storage::{Backend, Store, StoreOptions, redact_url};

mod apply;
mod config;
mod retention;

/// How long a cached webhook trigger is trusted on SQLite (see `serve`).
const SQLITE_CACHE_TTL: Duration = Duration::from_secs(60);

/// The settings key under which the admin token's SHA-256 is stored.
const ADMIN_TOKEN_KEY: &str = "admin_token_sha256";

/// triggerd starts workflow runs from webhooks and cron schedules and tells other systems when
/// runs change state.
///
/// Every option can also be set by its environment variable (shown in brackets). Logs go to
/// stderr and follow RUST_LOG (default: info), e.g. RUST_LOG=triggerd=debug,info; their format
/// is --log-format (TRIGGERD_LOG_FORMAT): text or json.
#[derive(Debug, Parser)]
#[command(name = "triggerd", version, about, long_about)]
struct Cli {
    /// How log lines on stderr are written: `text` (one line per event, coloured only at a
    /// terminal) or `json` (one JSON object per line, for log collectors).
    #[arg(long, global = true, env = "TRIGGERD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The format of the log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: the webhook endpoints, the management API and the run worker.
    ///
    /// Migrations run at start. On the first start without TRIGGERD_API_TOKEN an admin token is
    /// generated, printed once, and only its hash is stored. SIGTERM or Ctrl-C stops accepting,
    /// finishes in-flight requests and leaves runs for the next start. Logs go to stderr, filtered
    /// by RUST_LOG (default: info).
    Serve(Box<ServeArgs>),
    /// Create or upgrade the database schema, print the migrations applied, then exit.
    ///
    /// A SQLite file that does not exist is refused (exit 2, naming the absolute path it looked
    /// for) unless --create is given: a mistyped path would otherwise make a new, empty database.
    Migrate(MaintenanceArgs),
    /// Apply a workflow definition file to a running server, optionally deploy it, and print
    /// what changed and the webhook URLs.
    ///
    /// The file is validated locally first: every problem is printed and nothing is sent. Then
    /// the changes are worked out against the server: --plan (or --dry-run) prints them and
    /// stops. Declared triggers the file no longer has are removed only with --prune (their URLs
    /// stop working); without it such a change is refused (exit 2) and nothing changes. The
    /// definition is stored with PUT /api/v1/workflows/{name} (a new version only when it
    /// changed; deployments tracking the latest version get its declared triggers). With
    /// --deploy the deployment is created when missing and its triggers are listed.
    ///
    /// Example: TRIGGERD_URL=https://triggerd.internal:8080 TRIGGERD_API_TOKEN=tda_... triggerd apply -f orders.toml --deploy production
    Apply(apply::ApplyArgs),
    /// Manage the admin API token.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Replace the stored admin token with a new one and print it once. Run it on the server's
    /// machine (it needs database access); restart the server to use the new token.
    ///
    /// A SQLite file that does not exist is refused (exit 2, naming the absolute path it looked
    /// for) unless --create is given: a token stored in a new, empty database by mistake would
    /// leave the real server's token unchanged.
    Reset(MaintenanceArgs),
}

/// The database of `migrate` and `token reset`, which work on an existing database unless told.
#[derive(Debug, Args)]
struct MaintenanceArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Create the SQLite file (and its directory) when it does not exist. Without it a missing
    /// file is refused, so that a mistyped path cannot create a new, empty database.
    #[arg(long)]
    create: bool,
}

impl MaintenanceArgs {
    /// Refuses a `sqlite://PATH` whose file does not exist, unless `--create` was given.
    fn check_exists(&self) -> Result<(), Failure> {
        let Some(path) = sqlite_path(&self.db.database_url) else {
            return Ok(());
        };
        if path.exists() {
            return Ok(());
        }
        if self.create {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
            }
            return Ok(());
        }
        let shown = std::path::absolute(&path).unwrap_or(path);
        Err(Failure::usage(format!(
            "the SQLite database {} does not exist (from --database-url or TRIGGERD_DATABASE_URL; \
             a relative path is resolved from the working directory).\n\
             Check the path the server uses, or pass --create to create a new, empty database there.",
            shown.display()
        )))
    }
}

/// The file of a `sqlite://PATH` URL.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    url.trim()
        .strip_prefix("sqlite://")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
}

/// Why a command failed: the message for stderr and the exit code (1: the operation failed;
/// 2: refused before doing anything, e.g. a missing database file or an unconfirmed removal).
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A refusal: nothing was changed, exit code 2.
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { code: 1, message }
    }
}

#[derive(Debug, Args)]
struct DbArgs {
    /// Database: sqlite://PATH (`serve` creates a missing file) or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "TRIGGERD_DATABASE_URL",
        default_value = "sqlite://triggerd.db"
    )]
    database_url: String,
    /// How long a database statement waits for a lock (a table or row another session holds;
    /// on PostgreSQL also another node's write batch) before it gives up and the request is
    /// answered 503, in seconds (e.g. 5 or 0.5; 0 waits forever). PostgreSQL's lock_timeout,
    /// SQLite's busy_timeout.
    #[arg(long, env = "TRIGGERD_DB_LOCK_TIMEOUT_SECS", default_value = "5", value_parser = parse_timeout_secs)]
    db_lock_timeout_secs: Duration,
    /// PostgreSQL: how long one statement may run before it is cancelled and the request is
    /// answered 503, in seconds (0: no limit). Also ends a session idle inside a transaction that
    /// long. Migrations run without it.
    #[arg(long, env = "TRIGGERD_DB_STATEMENT_TIMEOUT_SECS", default_value = "10", value_parser = parse_timeout_secs)]
    db_statement_timeout_secs: Duration,
    /// PostgreSQL: how long connecting to the server may take, in whole seconds (rounded up; at
    /// least 2), unless the URL sets connect_timeout (0: as long as the operating system tries).
    #[arg(long, env = "TRIGGERD_DB_CONNECT_TIMEOUT_SECS", default_value = "5", value_parser = parse_timeout_secs)]
    db_connect_timeout_secs: Duration,
}

impl DbArgs {
    /// The store's options: the database time limits from these settings.
    fn store_options(&self) -> StoreOptions {
        StoreOptions {
            lock_timeout: self.db_lock_timeout_secs,
            // SQLite's busy_timeout 0 fails at once; "0 waits forever" here means ~24 days.
            busy_timeout: if self.db_lock_timeout_secs.is_zero() {
                Duration::from_millis(i32::MAX as u64)
            } else {
                self.db_lock_timeout_secs
            },
            statement_timeout: self.db_statement_timeout_secs,
            connect_timeout: self.db_connect_timeout_secs,
            ..StoreOptions::default()
        }
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Read settings from this TOML file (keys as the variables below without `TRIGGERD_`, in
    /// lower case, e.g. `listen = "0.0.0.0:8080"`); the environment and flags win over it.
    #[arg(long, env = "TRIGGERD_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "TRIGGERD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Base of the URLs shown to users, e.g. https://hooks.example.com (default: http://<listen>).
    #[arg(long, env = "TRIGGERD_PUBLIC_URL")]
    public_url: Option<String>,
    /// The admin API token. When unset, the first start generates one and stores its hash.
    #[arg(long, env = "TRIGGERD_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Answer 200 {"received": true} instead of 404 for unknown webhook tokens.
    #[arg(long, env = "TRIGGERD_HIDE_UNKNOWN_TOKENS", default_value_t = false, action = clap::ArgAction::Set)]
    hide_unknown_tokens: bool,
    /// Activity-log rows kept per webhook trigger (the newest; 0 keeps all).
    #[arg(long, env = "TRIGGERD_ACTIVITY_RETENTION", default_value_t = 1000)]
    activity_retention: usize,
    /// Delete finished runs (completed, failed, cancelled) older than this many days (a decimal
    /// number, e.g. 30 or 0.5); unset keeps them forever. Checked at start and then every hour
    /// (more often for retentions under ten hours).
    #[arg(long, env = "TRIGGERD_RUN_RETENTION_DAYS", value_parser = parse_retention_days)]
    run_retention_days: Option<f64>,
    /// Let `http` steps reach loopback, private, link-local, CGNAT and other non-public
    /// addresses (refused by default after DNS resolution, against SSRF). Only for trusted
    /// definitions, e.g. to call services on the same host or network.
    #[arg(long, env = "TRIGGERD_ALLOW_PRIVATE_NETWORKS", default_value_t = false, action = clap::ArgAction::Set)]
    allow_private_networks: bool,
    /// Allow `command` steps, which run programs on this machine as the server's user (without
    /// a shell, with an empty environment but PATH, HOME, LANG, LC_ALL, TZ and TMPDIR). Off by
    /// default: definitions with a command step are refused with 422.
    #[arg(long, env = "TRIGGERD_ALLOW_COMMANDS", default_value_t = false, action = clap::ArgAction::Set)]
    allow_commands: bool,
    /// When to retry a failed event-hook delivery: seconds after each failed attempt,
    /// comma-separated; past the last step the delivery is `failed`. Default
    /// 5,300,1800,7200,18000,36000,36000 (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
    #[arg(long, env = "TRIGGERD_RETRY_SCHEDULE")]
    retry_schedule: Option<String>,
    /// How long a request's headers may take to arrive, in seconds from their first byte (from
    /// the connection's opening for its first request); past it the connection is closed, which
    /// stops clients that trickle requests (slowloris). 0: no limit.
    #[arg(long, env = "TRIGGERD_HEADER_READ_TIMEOUT_SECS", default_value = "10", value_parser = parse_timeout_secs)]
    header_read_timeout_secs: Duration,
    /// How long a request body may take to arrive once it is read, in seconds; past it the
    /// answer is 408 request_timeout (a webhook starts no run) and the connection is closed.
    /// Also how long a body stalled mid-send can delay a shutdown. 0: no limit.
    #[arg(long, env = "TRIGGERD_BODY_READ_TIMEOUT_SECS", default_value = "30", value_parser = parse_timeout_secs)]
    body_read_timeout_secs: Duration,
    /// How long a kept-alive connection may stay silent after an answer, in seconds, before it
    /// is closed. 0: no limit.
    #[arg(long, env = "TRIGGERD_IDLE_TIMEOUT_SECS", default_value = "60", value_parser = parse_timeout_secs)]
    idle_timeout_secs: Duration,
    /// Client connections served at once (at least 1); further ones wait in the listen backlog
    /// until one closes. Lowered at start, with a warning, when the open-file limit
    /// (RLIMIT_NOFILE, raised towards its hard limit first) cannot hold that many plus a reserve
    /// of 256 for the database, outbound requests and commands.
    #[arg(long, env = "TRIGGERD_MAX_CONNECTIONS", default_value_t = triggerd_ingress::DEFAULT_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Webhook requests of triggers with `response.mode = "sync"` that may wait for their runs
    /// at once on this node; past it a request is answered as in async mode (201, with the
    /// header `Triggerd-Sync: skipped-too-many-waiting`) and its run still starts. 0: sync
    /// requests never wait.
    #[arg(long, env = "TRIGGERD_MAX_SYNC_WAITS", default_value_t = triggerd_ingress::DEFAULT_MAX_SYNC_WAITS)]
    max_sync_waits: usize,
    /// Memory, in MiB, that large work may hold at once on this node: webhook bodies over 64 KiB
    /// (charged by what parsing them costs, estimated before parsing), pages of runs, large runs
    /// being read or executed. Work that finds the budget in use waits up to
    /// TRIGGERD_MEMORY_WAIT_MS and is then answered 503 with Retry-After; a webhook body that
    /// alone would need more than the whole budget is refused with 413. 0: no budget.
    #[arg(long, env = "TRIGGERD_MEMORY_BUDGET_MB", default_value_t = triggerd_app::memory::DEFAULT_MEMORY_BUDGET_BYTES / (1024 * 1024))]
    memory_budget_mb: u64,
    /// How long, in milliseconds, large work waits for the memory budget before a 503.
    #[arg(long, env = "TRIGGERD_MEMORY_WAIT_MS", default_value_t = triggerd_app::memory::DEFAULT_MEMORY_WAIT.as_millis() as u64)]
    memory_wait_ms: u64,
}

/// A retention in days: a finite number ≥ 0.
fn parse_retention_days(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(days) if days.is_finite() && days >= 0.0 => Ok(days),
        _ => Err(format!(
            "expected a number of days such as 30 or 0.5, got {text:?}"
        )),
    }
}

/// A timeout in seconds: a finite number ≥ 0 (decimal), at most a year.
fn parse_timeout_secs(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(timeout_from_secs)
        .ok_or_else(|| format!("expected a number of seconds such as 5 or 0.5, got {text:?}"))
}

/// `secs` as a timeout, if it is a finite number of seconds from 0 to a year.
fn timeout_from_secs(secs: f64) -> Option<Duration> {
    (secs.is_finite() && (0.0..=365.0 * 86_400.0).contains(&secs))
        .then(|| Duration::from_secs_f64(secs))
}

/// A connection timeout of the settings, where 0 means none (`Duration::MAX` never elapses).
fn unlimited_if_zero(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        Duration::MAX
    } else {
        timeout
    }
}

/// File descriptors kept for everything but client connections: the database (a SQLite file
/// with its WAL and shared memory per pooled connection, or PostgreSQL sockets), outbound
/// requests of `http` steps, pipes of `command` steps, the runtime's own.
const RESERVED_FILE_DESCRIPTORS: u64 = 256;

/// `requested` connections, or as many as the open-file limit holds next to
/// [`RESERVED_FILE_DESCRIPTORS`]: past the limit `accept` would fail, and so would every database
/// connection and outbound request. The soft limit is raised towards the hard one first (a
/// soft limit of 1024 is common, e.g. under systemd, with a far higher hard limit).
#[cfg(unix)]
fn connection_cap(requested: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return requested;
    };
    let wanted = (requested as u64).saturating_add(RESERVED_FILE_DESCRIPTORS);
    let mut limit = soft;
    if soft < wanted && soft < hard {
        let raised = wanted.min(hard);
        match setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
            Ok(()) => limit = raised,
            Err(e) => tracing::debug!(error = %e, "could not raise the open-file limit"),
        }
    }
    if limit >= wanted {
        return requested;
    }
    let fits = limit
        .saturating_sub(RESERVED_FILE_DESCRIPTORS)
        .max(limit / 2)
        .max(1);
    let fits = usize::try_from(fits).unwrap_or(requested).min(requested);
    tracing::warn!(
        max_connections = requested,
        serving = fits,
        open_file_limit = limit,
        "TRIGGERD_MAX_CONNECTIONS does not fit the open-file limit; serving fewer connections \
         (raise the limit: ulimit -n, or LimitNOFILE= under systemd)"
    );
    fits
}

#[cfg(not(unix))]
fn connection_cap(requested: usize) -> usize {
    requested
}

/// Restarts the server (the same process: `exec`) with `MALLOC_ARENA_MAX=2` unless that variable
/// is set already. glibc's `malloc` gives busy threads arenas of their own, up to 8 per core, and
/// keeps what is freed in each for later: after bursts of large requests the server's resident
/// size settled at 334–366 MB for what two arenas hold in 190–201 MB (`triggerd-bench -s
/// memory`, docs/performance.md). The limit can only be set before the first allocation (or
/// with `mallopt`, which needs `unsafe`), hence the restart, before any thread exists. Set
/// `MALLOC_ARENA_MAX` yourself to choose another value.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    use std::os::unix::process::CommandExt as _;
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // `exec` returns only when it failed; the server then runs with glibc's defaults.
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("MALLOC_ARENA_MAX", "2")
        .exec();
    eprintln!(
        "triggerd: could not restart with MALLOC_ARENA_MAX=2 ({error}); running with glibc's default malloc arenas"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if matches!(cli.command, Command::Serve(_)) {
        limit_malloc_arenas();
    }
    if let (Command::Serve(args), Some(serve_matches)) =
        (&mut cli.command, matches.subcommand_matches("serve"))
        && let Some(path) = args.config.clone()
    {
        match config::FileConfig::read(&path) {
            Ok(file) => file.apply(serve_matches, args),
            Err(message) => {
                eprintln!("triggerd: {message}");
                return ExitCode::from(2);
            }
        }
    }
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("triggerd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await.map_err(Failure::from),
            Command::Migrate(args) => migrate(args).await,
            Command::Apply(args) => apply::apply(args).await,
            Command::Token {
                command: TokenCommand::Reset(args),
            } => reset_token(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, message }) => {
            eprintln!("triggerd: {message}");
            ExitCode::from(code)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // No colour codes in JSON: they would end up inside its strings.
        LogFormat::Json => logs.json().with_ansi(false).init(),
        LogFormat::Text => {
            // Colour only for a person at a terminal: a log file, journald or a pipe gets plain
            // text (and `NO_COLOR`, https://no-color.org, turns it off everywhere).
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            logs.with_ansi(ansi).init();
        }
    }
}

async fn open(args: &DbArgs) -> Result<Store, String> {
    let url = &args.database_url;
    Store::open(url, args.store_options())
        .await
        .map_err(|e| format!("cannot open the database {}: {e}", redact_url(url)))
}

async fn migrate(args: MaintenanceArgs) -> Result<(), Failure> {
    args.check_exists()?;
    let url = args.db.database_url.clone();
    let options = args.db.store_options();
    let applied = tokio::task::spawn_blocking(move || triggerd_storage::migrate(&url, &options))
        .await
        .map_err(|e| format!("the migration task failed: {e}"))?
        .map_err(|e| {
            format!(
                "cannot migrate the database {}: {e}",
                redact_url(&args.db.database_url)
            )
        })?;
    let shown = redact_url(&args.db.database_url);
    if applied.is_empty() {
        println!("database {shown}: no migrations were pending; the schema is up to date");
    } else {
        println!(
            "database {shown}: applied {} migration{}:",
            applied.len(),
            if applied.len() == 1 { "" } else { "s" }
        );
        for name in &applied {
            println!("  {name}");
        }
    }
    Ok(())
}

fn generate_admin_token() -> Result<String, String> {
    new_secret_token("tda_").map_err(|e| format!("cannot generate a token: {e}"))
}

async fn reset_token(args: MaintenanceArgs) -> Result<(), Failure> {
    args.check_exists()?;
    let store = open(&args.db).await?;
    let token = generate_admin_token()?;
    App::new(store.clone(), Arc::new(SystemClock), "")
        .set_setting(ADMIN_TOKEN_KEY, &hash_token(&token))
        .await
        .map_err(|e| format!("cannot store the new token: {e}"))?;
    store.shutdown().await;
    println!(
        "New admin API token (shown once; the old one no longer works after a restart):\n{token}"
    );
    Ok(())
}

/// The admin token's hash: from TRIGGERD_API_TOKEN, else the stored one, else a new one that is
/// printed once.
async fn admin_token_hash(app: &App, configured: Option<&str>) -> Result<String, String> {
    if let Some(token) = configured.filter(|t| !t.is_empty()) {
        return Ok(hash_token(token));
    }
    let stored = app
        .store()
        .get_setting(ADMIN_TOKEN_KEY)
        .await
        .map_err(|e| format!("cannot read settings: {e}"))?;
    if let Some(hash) = stored {
        return Ok(hash);
    }
    let token = generate_admin_token()?;
    let hash = hash_token(&token);
    app.set_setting(ADMIN_TOKEN_KEY, &hash)
        .await
        .map_err(|e| format!("cannot store the admin token: {e}"))?;
    println!(
        "Generated the admin API token. It is shown only this once; only its hash is stored:\n\n    {token}\n\nUse it as: Authorization: Bearer <token>. Lost it? Run `triggerd token reset`.\n"
    );
    Ok(hash)
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let store = open(&args.db).await?;
    tracing::info!(database = %redact_url(&args.db.database_url), backend = ?store.backend(), "database ready");
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let options = AppOptions {
        allow_commands: args.allow_commands,
        memory_budget_bytes: args.memory_budget_mb.saturating_mul(1024 * 1024),
        memory_wait: Duration::from_millis(args.memory_wait_ms),
    };
    let app = App::with_options(store.clone(), clock()?, &public_url, options);
    let retry_schedule = match &args.retry_schedule {
        Some(text) => triggerd_delivery::worker::parse_schedule(text)
            .map_err(|e| format!("TRIGGERD_RETRY_SCHEDULE: {e}"))?,
        None => triggerd_delivery::worker::DEFAULT_SCHEDULE.to_vec(),
    };
    let client = OutboundClient::new(OutboundConfig {
        allow_private_networks: args.allow_private_networks,
        ..OutboundConfig::default()
    })
    .map_err(|e| format!("cannot build the outbound HTTP client: {e}"))?;
    if args.allow_private_networks {
        tracing::warn!(
            "TRIGGERD_ALLOW_PRIVATE_NETWORKS=true: http steps and event hooks may reach private and loopback addresses"
        );
    }
    if args.allow_commands {
        tracing::warn!("TRIGGERD_ALLOW_COMMANDS=true: workflows may run programs on this machine");
    }
    let admin_hash = admin_token_hash(&app, args.api_token.as_deref()).await?;
    let mut config = IngressConfig::new(admin_hash);
    config.hide_unknown_tokens = args.hide_unknown_tokens;
    config.activity_retention = args.activity_retention;
    config.header_read_timeout = unlimited_if_zero(args.header_read_timeout_secs);
    config.body_read_timeout = unlimited_if_zero(args.body_read_timeout_secs);
    config.idle_timeout = unlimited_if_zero(args.idle_timeout_secs);
    config.max_connections = connection_cap(args.max_connections);
    config.max_sync_waits = args.max_sync_waits;
    if store.backend() == Backend::Sqlite {
        // One node owns a SQLite file, and its own changes invalidate the trigger cache at once:
        // the TTL (which bounds how late other nodes' changes are seen on PostgreSQL) is only a
        // safety net here, so cache misses stay rare with many triggers.
        config.cache_ttl = SQLITE_CACHE_TTL;
    }
    let mut state = AppState::new(app.clone(), config);
    state.metrics = triggerd_ingress::metrics::install_recorder();
    let state = Arc::new(state);

    match app.reclaim_runs_of_previous_process().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            runs = n,
            "resuming runs the previous process left unfinished"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not release the previous process's runs; they resume after their leases")
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let owner = format!(
        "node-{}-{}",
        std::process::id(),
        new_id(IdKind::Request).trim_start_matches("req_")
    );
    let deliveries = tokio::spawn(
        triggerd_delivery::DeliveryWorker::new(
            app.clone(),
            format!("{owner}-hooks"),
            client.clone(),
            retry_schedule,
        )
        .run(stop_rx.clone()),
    );
    let worker = tokio::spawn(
        triggerd_scheduler::RunWorker::new(app.clone(), owner, client).run(stop_rx.clone()),
    );
    let cron = tokio::spawn(
        triggerd_scheduler::cron::CronScheduler::new(app.clone()).run(stop_rx.clone()),
    );
    let dedup_trim = tokio::spawn(retention::dedup_keys(app.clone(), stop_rx.clone()));
    let retention = args
        .run_retention_days
        .map(|days| tokio::spawn(retention::run(app.clone(), days, stop_rx)));

    println!(
        "dashboard: {}/ (sign in with the admin API token)",
        public_url.trim_end_matches('/')
    );
    println!("triggerd listening on http://{local} (public URL {public_url})");
    tracing::info!(%local, %public_url, "listening");
    triggerd_ingress::serve(listener, state, shutdown_signal()).await;

    tracing::info!("shutting down: stopping the run worker and flushing the database");
    let _ = stop_tx.send(true);
    let _ = cron.await;
    if tokio::time::timeout(Duration::from_secs(20), deliveries)
        .await
        .is_err()
    {
        tracing::warn!(
            "the delivery worker did not stop in time; its deliveries are sent again after their lease"
        );
    }
    if let Some(retention) = retention {
        let _ = retention.await;
    }
    let _ = dedup_trim.await;
    if tokio::time::timeout(Duration::from_secs(15), worker)
        .await
        .is_err()
    {
        tracing::warn!(
            "the run worker did not stop in time; its runs are taken over after their lease"
        );
    }
    store.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The clock: the system's, unless `TRIGGERD_TEST_CLOCK=<anchor ms>x<speed>` asks for a faster
/// one (end-to-end tests of schedules; never in production).
fn clock() -> Result<Arc<dyn triggerd_app::Clock>, String> {
    match std::env::var("TRIGGERD_TEST_CLOCK") {
        Ok(text) if !text.is_empty() => {
            let clock = triggerd_app::ScaledClock::parse(&text)
                .map_err(|e| format!("TRIGGERD_TEST_CLOCK: {e}"))?;
            tracing::warn!(value = %text, "TRIGGERD_TEST_CLOCK is set: time runs faster than the real clock (for tests only)");
            Ok(Arc::new(clock))
        }
        _ => Ok(Arc::new(SystemClock)),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
