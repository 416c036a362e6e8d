//! The process runner of the `command` step (SPEC §6).
//!
//! [`run`] starts one program from an already rendered [`CommandSpec`] (no template engine, no
//! store here), waits for it within the step's timeout and returns what it printed as a
//! [`CommandOutput`]. The caller turns that into the step output with
//! [`CommandOutput::to_json`] and decides what a non-zero exit means (SPEC: it fails the step);
//! [`run`] itself only fails when the program could not be run or did not finish in time.
//!
//! How the program runs:
//!
//! - **No shell.** `argv[0]` is the program, looked up on `PATH` the way the standard library
//!   does (the `PATH` the child gets, see below, so a step that sets `PATH` changes the lookup);
//!   the other elements are passed as they are. A relative program path containing a `/` is
//!   resolved against the child's working directory.
//! - **A minimal environment.** The child starts from an *empty* environment, not the
//!   server's: the server's own variables hold secrets (`TRIGGERD_API_TOKEN`, database URLs with
//!   passwords, …) that a workflow author must not be able to print with `env`. Only the
//!   variables in [`PASS_THROUGH_ENV`] are copied from the server when it has them (so programs
//!   are found and locale, time zone and temporary directory behave as on the host); the step's
//!   `env` is applied on top and wins over them.
//! - **stdin is `/dev/null`**; stdout and stderr are read concurrently, each kept up to
//!   [`CommandSpec::max_output_bytes`] bytes. What comes beyond the cap is read and thrown away
//!   (so the child never blocks on a full pipe) and the stream is marked truncated. Bytes that
//!   are not UTF-8 become U+FFFD; a character cut in half by the cap is dropped.
//! - **Its own process group.** The child is the leader of a new process group, so everything
//!   it starts (a shell's background jobs, a script's children) can be killed together with
//!   one `SIGKILL` to the group:
//!   - on timeout: the group is killed, the child reaped, and [`CommandError::Timeout`] carries
//!     the output captured until then;
//!   - when the future returned by [`run`] is dropped (the run was cancelled): a guard kills the
//!     group from its `Drop`;
//!   - when the child exits on its own: whatever is left in its group (background jobs it did
//!     not wait for) is killed, so a step never leaves processes behind and no leftover process
//!     keeps the output pipes — and so the step — open.
//!
//!   A process that moves itself out of the group (`setsid`, `setpgid`) escapes these kills; if
//!   it keeps stdout or stderr open, the step ends only with its timeout.

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// The server's environment variables a command gets (when the server has them). Everything
/// else of the server's environment is withheld; see the [module documentation](self).
pub const PASS_THROUGH_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// After a timeout kill: how long to wait for the child to be reaped and for the rest of its
/// output to be read. Normally both take microseconds once the group is dead.
const AFTER_KILL_GRACE: Duration = Duration::from_millis(500);

/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 16 * 1024;

/// What to run: the rendered `command` step.
#[derive(Clone)]
pub struct CommandSpec {
    /// The program and its arguments; no shell is involved. Must hold at least the program.
    pub argv: Vec<String>,
    /// Variables set for the program, on top of [`PASS_THROUGH_ENV`]; later entries win over
    /// earlier ones with the same name. Names must not be empty or contain `=` or NUL.
    pub env: Vec<(String, String)>,
    /// The program's working directory; `None` keeps the server's.
    pub working_dir: Option<PathBuf>,
    /// How long the program (and its output streams) may take before its process group is
    /// killed.
    pub timeout: Duration,
    /// How many bytes of stdout, and separately of stderr, are kept.
    pub max_output_bytes: usize,
}

/// Prints the environment's names only: their values are often secrets.
impl fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("CommandSpec")
            .field("argv", &self.argv)
            .field("env (names)", &env_names)
            .field("working_dir", &self.working_dir)
            .field("timeout", &self.timeout)
            .field("max_output_bytes", &self.max_output_bytes)
            .finish()
    }
}

/// What a finished (or, inside [`CommandError::Timeout`], killed) program left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit code; `None` when the program was ended by a signal.
    pub exit_code: Option<i32>,
    /// The signal that ended the program, if one did (9 after a timeout kill).
    pub signal: Option<i32>,
    /// Standard output, at most `max_output_bytes` of it, as UTF-8 (lossy).
    pub stdout: String,
    /// Standard error, at most `max_output_bytes` of it, as UTF-8 (lossy).
    pub stderr: String,
    /// Whether stdout was longer than `max_output_bytes`.
    pub stdout_truncated: bool,
    /// Whether stderr was longer than `max_output_bytes`.
    pub stderr_truncated: bool,
    /// From the start of the program until it was reaped and its output read.
    pub duration: Duration,
}

impl CommandOutput {
    /// The step output of SPEC §6: `{exit_code, stdout, stderr}`. `exit_code` is `null` when a
    /// signal ended the program. `stdout` is the parsed JSON value when the whole stdout (less
    /// surrounding whitespace) is one JSON document, else the text as it is; truncated stdout is
    /// never parsed (a cut document could still parse, e.g. `12345` → `123`). `stderr` is always
    /// text. `"stdout_truncated": true` / `"stderr_truncated": true` are added only when true.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert(
            "exit_code".into(),
            self.exit_code.map_or(Value::Null, Value::from),
        );
        out.insert("stdout".into(), self.stdout_value());
        out.insert("stderr".into(), Value::String(self.stderr.clone()));
        if self.stdout_truncated {
            out.insert("stdout_truncated".into(), Value::Bool(true));
        }
        if self.stderr_truncated {
            out.insert("stderr_truncated".into(), Value::Bool(true));
        }
        Value::Object(out)
    }

    fn stdout_value(&self) -> Value {
        let trimmed = self.stdout.trim();
        if !self.stdout_truncated && !trimmed.is_empty() {
            if let Ok(value) = serde_json::from_str(trimmed) {
                return value;
            }
        }
        Value::String(self.stdout.clone())
    }
}

/// Why [`run`] could not give a [`CommandOutput`]. A non-zero exit is not one of these.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// `argv` was empty, or its program was the empty string.
    #[error("the command is empty: it needs at least the program to run")]
    EmptyCommand,
    /// The program could not be started.
    #[error("cannot start `{program}`: {}", spawn_reason(.source))]
    Spawn {
        /// `argv[0]` as given.
        program: String,
        /// The error of the spawn.
        source: io::Error,
    },
    /// The working directory does not exist or is not a directory.
    #[error("working directory `{}` is not usable: {reason}", .path.display())]
    WorkingDir {
        /// The directory as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The program did not finish (or did not close its output) within the timeout; its
    /// process group was killed.
    #[error("the command did not finish within {after:?} and was killed")]
    Timeout {
        /// The timeout that was exceeded.
        after: Duration,
        /// What was captured before the kill (`signal` is usually 9).
        output: CommandOutput,
    },
    /// Waiting for the program or reading its output failed.
    #[error("i/o error while running the command: {reason}")]
    Io {
        /// The underlying error.
        reason: String,
    },
}

fn spawn_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => {
            "program not found (no such file, not on PATH, or its #! interpreter is missing)"
                .to_owned()
        }
        io::ErrorKind::PermissionDenied => {
            "program is not executable (permission denied)".to_owned()
        }
        _ => error.to_string(),
    }
}

/// Runs the program of `spec` to its end (see the [module documentation](self)).
///
/// `Ok` for every program that ran and exited, whatever its exit code or signal; `Err` when it
/// could not be started, timed out (with what it printed), or its pipes failed. Dropping the
/// returned future kills the program's whole process group.
pub async fn run(spec: CommandSpec) -> Result<CommandOutput, CommandError> {
    let CommandSpec {
        argv,
        env,
        working_dir,
        timeout,
        max_output_bytes,
    } = spec;
    let Some((program, args)) = argv.split_first() else {
        return Err(CommandError::EmptyCommand);
    };
    if program.is_empty() {
        return Err(CommandError::EmptyCommand);
    }
    if let Some(dir) = &working_dir {
        check_working_dir(dir)?;
    }

    let mut command = Command::new(program);
    command.args(args).env_clear();
    for name in PASS_THROUGH_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(env.iter().map(|(name, value)| (name, value)));
    if let Some(dir) = &working_dir {
        command.current_dir(dir);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);

    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| CommandError::Spawn {
        program: program.clone(),
        source,
    })?;
    // From here on, every way out of this function (return, error, the future dropped) kills
    // the group unless the guard was disarmed after the child was reaped.
    let mut group = GroupGuard::new(child.id());

    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(CommandError::Io {
            reason: "the child's output pipes are missing".to_owned(),
        });
    };
    let mut out = Capture::new(max_output_bytes);
    let mut err = Capture::new(max_output_bytes);

    let finished = tokio::time::timeout(timeout, async {
        tokio::try_join!(
            async {
                let status = child.wait().await?;
                // Background processes the program left behind would keep the pipes open.
                group.kill_and_disarm();
                Ok::<_, io::Error>(status)
            },
            out.read_from(&mut stdout),
            err.read_from(&mut stderr),
        )
    })
    .await;

    match finished {
        Ok(Ok((status, (), ()))) => Ok(out.into_output(err, Some(status), started.elapsed())),
        Ok(Err(error)) => Err(CommandError::Io {
            reason: error.to_string(),
        }),
        Err(_elapsed) => {
            group.kill();
            // In case the child moved itself out of its group.
            let _ = child.start_kill();
            let status = match tokio::time::timeout(AFTER_KILL_GRACE, child.wait()).await {
                Ok(Ok(status)) => {
                    group.disarm();
                    Some(status)
                }
                // Not reaped yet: the guard stays armed (the pid cannot be reused before the
                // child is reaped), and `kill_on_drop` hands the child to tokio's reaper.
                _ => None,
            };
            // What the group wrote before it died is still in the pipes.
            let _ = tokio::time::timeout(AFTER_KILL_GRACE, async {
                tokio::join!(out.read_from(&mut stdout), err.read_from(&mut stderr))
            })
            .await;
            Err(CommandError::Timeout {
                after: timeout,
                output: out.into_output(err, status, started.elapsed()),
            })
        }
    }
}

fn check_working_dir(dir: &Path) -> Result<(), CommandError> {
    let reason = match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => "not a directory".to_owned(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => "does not exist".to_owned(),
        Err(error) => error.to_string(),
    };
    Err(CommandError::WorkingDir {
        path: dir.to_owned(),
        reason,
    })
}

/// Kills the child's process group (`SIGKILL` to `-pgid`) when dropped, unless disarmed.
///
/// It is disarmed only once the child (the group leader) has been reaped and the group killed
/// a last time: before the leader is reaped its pid — the group id — cannot be reused, so the
/// kill cannot hit an unrelated group.
#[derive(Debug)]
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn new(child_pid: Option<u32>) -> Self {
        // `killpg` with 0 or 1 would signal our own group or be platform-specific: never.
        let pgid = child_pid
            .and_then(|pid| i32::try_from(pid).ok())
            .filter(|pid| *pid > 1)
            .map(Pid::from_raw);
        GroupGuard { pgid }
    }

    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (the group is already gone) is the usual outcome and fine.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }

    fn kill_and_disarm(&mut self) {
        self.kill();
        self.disarm();
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One output stream, kept up to a byte limit.
struct Capture {
    buf: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Capture {
    fn new(limit: usize) -> Self {
        Capture {
            buf: Vec::new(),
            limit,
            truncated: false,
        }
    }

    /// Reads `reader` to its end, keeping what fits and discarding the rest.
    async fn read_from<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> io::Result<()> {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n = reader.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            self.push(&chunk[..n]);
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.buf.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn text(&self) -> String {
        let bytes = if self.truncated {
            without_cut_char(&self.buf)
        } else {
            &self.buf
        };
        String::from_utf8_lossy(bytes).into_owned()
    }

    fn into_output(
        self,
        stderr: Capture,
        status: Option<ExitStatus>,
        duration: Duration,
    ) -> CommandOutput {
        CommandOutput {
            exit_code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            stdout: self.text(),
            stderr: stderr.text(),
            stdout_truncated: self.truncated,
            stderr_truncated: stderr.truncated,
            duration,
        }
    }
}

/// `bytes` without a UTF-8 sequence that the end of the slice cuts short.
fn without_cut_char(bytes: &[u8]) -> &[u8] {
    // Only a lead byte among the last three can start an incomplete sequence.
    for i in (bytes.len().saturating_sub(3)..bytes.len()).rev() {
        let b = bytes[i];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let needed = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            // ASCII, or a byte that never starts a sequence: left to the lossy conversion.
            _ => 1,
        };
        return if bytes.len() - i < needed {
            &bytes[..i]
        } else {
            bytes
        };
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(argv: &[&str]) -> CommandSpec {
        CommandSpec {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: Vec::new(),
            working_dir: None,
            timeout: Duration::from_secs(20),
            max_output_bytes: 64 * 1024,
        }
    }

    fn sh(script: &str) -> CommandSpec {
        spec(&["/bin/sh", "-c", script])
    }

    /// A path in the temporary directory unique to this test process and `name`.
    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "triggerd-command-test-{}-{name}",
            std::process::id()
        ))
    }

    /// Gone, or a zombie nobody reaped yet (PID 1 of a container may never reap).
    fn is_dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }

    /// Polls for up to 3 s.
    async fn becomes_dead(pid: u32) -> bool {
        for _ in 0..150 {
            if is_dead(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn json_stdout_is_parsed() {
        let out = run(spec(&["printf", r#"{"a":1}"#])).await.unwrap();
        assert_eq!(out.exit_code, Some(0));
        assert_eq!(out.signal, None);
        assert_eq!(
            out.to_json(),
            json!({"exit_code": 0, "stdout": {"a": 1}, "stderr": ""})
        );
        // Surrounding whitespace does not matter.
        let out = run(sh("echo; echo '[1, 2]'; echo")).await.unwrap();
        assert_eq!(out.to_json()["stdout"], json!([1, 2]));
    }

    #[tokio::test]
    async fn plain_stdout_stays_text() {
        let out = run(spec(&["echo", "hello world"])).await.unwrap();
        assert_eq!(out.stdout, "hello world\n");
        assert_eq!(
            out.to_json(),
            json!({"exit_code": 0, "stdout": "hello world\n", "stderr": ""})
        );
        // Empty output is the empty string, not null.
        let out = run(spec(&["true"])).await.unwrap();
        assert_eq!(out.to_json()["stdout"], json!(""));
    }

    #[tokio::test]
    async fn non_zero_exit_is_reported_not_an_error() {
        let out = run(sh("echo oops >&2; exit 3")).await.unwrap();
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.signal, None);
        assert_eq!(out.stderr, "oops\n");
        assert_eq!(
            out.to_json(),
            json!({"exit_code": 3, "stdout": "", "stderr": "oops\n"})
        );
    }

    #[tokio::test]
    async fn death_by_signal_has_no_exit_code() {
        let out = run(sh("kill -KILL $$")).await.unwrap();
        assert_eq!(out.exit_code, None);
        assert_eq!(out.signal, Some(9));
        assert_eq!(out.to_json()["exit_code"], Value::Null);
    }

    #[tokio::test]
    async fn environment_is_the_steps_plus_the_pass_through_list_only() {
        // `cargo test` sets these for the test process; they must not reach the command.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let mut s = spec(&["env"]);
        s.env = vec![
            ("STEP_VAR".into(), "hello world".into()),
            ("LANG".into(), "C.step".into()),
        ];
        let out = run(s).await.unwrap();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert!(lines.contains(&"STEP_VAR=hello world"), "{lines:?}");
        // The step's env wins over the pass-through copy.
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("LANG=")).count(),
            1,
            "{lines:?}"
        );
        assert!(lines.contains(&"LANG=C.step"), "{lines:?}");
        for line in &lines {
            let name = line.split('=').next().unwrap_or_default();
            assert!(
                PASS_THROUGH_ENV.contains(&name) || name == "STEP_VAR",
                "unexpected variable {line:?}"
            );
        }
        if let Ok(path) = std::env::var("PATH") {
            assert!(lines.contains(&format!("PATH={path}").as_str()));
        }
    }

    #[tokio::test]
    async fn working_dir_is_honoured() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let mut s = sh("pwd -P");
        s.working_dir = Some(dir.clone());
        let out = run(s).await.unwrap();
        assert_eq!(out.stdout.trim_end(), dir.to_str().unwrap());
    }

    #[tokio::test]
    async fn missing_working_dir_is_reported() {
        let missing = temp_path("no-such-dir");
        let mut s = spec(&["true"]);
        s.working_dir = Some(missing.clone());
        match run(s).await {
            Err(e @ CommandError::WorkingDir { .. }) => {
                let CommandError::WorkingDir { path, reason } = &e else {
                    unreachable!()
                };
                assert_eq!(path, &missing);
                assert_eq!(reason, "does not exist");
                assert!(e.to_string().contains(missing.to_str().unwrap()));
            }
            other => panic!("expected WorkingDir, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_program_names_it() {
        let name = "triggerd-no-such-program-7f3a";
        match run(spec(&[name, "arg"])).await {
            Err(e @ CommandError::Spawn { .. }) => {
                let message = e.to_string();
                let CommandError::Spawn { program, .. } = e else {
                    unreachable!()
                };
                assert_eq!(program, name);
                assert!(message.contains(name), "{message}");
                assert!(message.contains("not found"), "{message}");
            }
            other => panic!("expected Spawn, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn non_executable_program_says_so() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_path("not-executable.sh");
        std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let result = run(spec(&[path.to_str().unwrap()])).await;
        let _ = std::fs::remove_file(&path);
        match result {
            Err(e @ CommandError::Spawn { .. }) => {
                let message = e.to_string();
                assert!(message.contains("not executable"), "{message}");
                assert!(message.contains(path.to_str().unwrap()), "{message}");
            }
            other => panic!("expected Spawn, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn empty_command_is_refused() {
        let mut s = spec(&[]);
        assert!(matches!(
            run(s.clone()).await,
            Err(CommandError::EmptyCommand)
        ));
        s.argv = vec![String::new()];
        assert!(matches!(run(s).await, Err(CommandError::EmptyCommand)));
    }

    #[tokio::test]
    async fn stdin_is_empty() {
        // `cat` would wait forever on an inherited terminal or an open pipe.
        let out = run(spec(&["cat"])).await.unwrap();
        assert_eq!(out.exit_code, Some(0));
        assert_eq!(out.stdout, "");
    }

    #[tokio::test]
    async fn output_over_the_cap_is_truncated_and_flagged() {
        let mut s = spec(&["printf", "abcdefghij"]);
        s.max_output_bytes = 4;
        let out = run(s).await.unwrap();
        assert_eq!(out.stdout, "abcd");
        assert!(out.stdout_truncated);
        assert!(!out.stderr_truncated);
        assert_eq!(
            out.to_json(),
            json!({"exit_code": 0, "stdout": "abcd", "stderr": "", "stdout_truncated": true})
        );
        // A truncated document is not parsed even when the cut part parses.
        let mut s = sh("printf 12345; printf 'err-err' >&2");
        s.max_output_bytes = 3;
        let out = run(s).await.unwrap();
        assert_eq!(
            out.to_json(),
            json!({
                "exit_code": 0, "stdout": "123", "stderr": "err",
                "stdout_truncated": true, "stderr_truncated": true,
            })
        );
        // Exactly at the cap is not truncated.
        let mut s = spec(&["printf", "abcd"]);
        s.max_output_bytes = 4;
        let out = run(s).await.unwrap();
        assert!(!out.stdout_truncated);
    }

    #[tokio::test]
    async fn output_is_lossy_utf8_and_the_cap_does_not_split_a_char() {
        let out = run(spec(&["printf", r"h\303\251llo\377"])).await.unwrap();
        assert_eq!(out.stdout, "h\u{e9}llo\u{fffd}");
        // "ééé" is 6 bytes; 3 bytes hold one é and half of the next, which is dropped.
        let mut s = spec(&["printf", "\u{e9}\u{e9}\u{e9}"]);
        s.max_output_bytes = 3;
        let out = run(s).await.unwrap();
        assert_eq!(out.stdout, "\u{e9}");
        assert!(out.stdout_truncated);
    }

    #[test]
    fn cut_char_detection() {
        assert_eq!(without_cut_char(b""), b"");
        assert_eq!(without_cut_char(b"abc"), b"abc");
        assert_eq!(without_cut_char("é".as_bytes()), "é".as_bytes());
        assert_eq!(without_cut_char(&"é".as_bytes()[..1]), b"");
        let euro = "a€".as_bytes(); // 3-byte char
        assert_eq!(without_cut_char(&euro[..3]), b"a");
        let emoji = "a😀".as_bytes(); // 4-byte char
        assert_eq!(without_cut_char(&emoji[..4]), b"a");
        assert_eq!(without_cut_char(emoji), emoji);
        // Invalid bytes are left to the lossy conversion.
        assert_eq!(without_cut_char(b"a\xff"), b"a\xff");
    }

    #[tokio::test]
    async fn ten_megabytes_on_both_streams_do_not_hang() {
        // stderr first: a runner reading only stdout until EOF would deadlock here.
        let mut s = sh("head -c 10485760 /dev/zero >&2; head -c 10485760 /dev/zero");
        s.max_output_bytes = 1000;
        let begun = Instant::now();
        let out = run(s).await.unwrap();
        assert!(begun.elapsed() < Duration::from_secs(15));
        assert_eq!(out.exit_code, Some(0));
        assert_eq!(out.stdout.len(), 1000);
        assert_eq!(out.stderr.len(), 1000);
        assert!(out.stdout_truncated && out.stderr_truncated);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group_and_keeps_the_output() {
        let mut s = sh("sleep 30 & echo \"started $!\"; wait");
        s.timeout = Duration::from_millis(300);
        let begun = Instant::now();
        let result = run(s).await;
        assert!(begun.elapsed() < Duration::from_secs(5), "{result:?}");
        let Err(CommandError::Timeout { after, output }) = result else {
            panic!("expected Timeout, got {result:?}");
        };
        assert_eq!(after, Duration::from_millis(300));
        assert_eq!(output.exit_code, None);
        assert_eq!(output.signal, Some(9));
        let pid: u32 = output
            .stdout
            .trim()
            .strip_prefix("started ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("stdout {:?}", output.stdout));
        assert!(becomes_dead(pid).await, "grandchild sleep {pid} survived");
    }

    #[tokio::test]
    async fn leftover_background_processes_are_killed_when_the_program_exits() {
        // The shell exits at once; its background sleep holds stdout open.
        let begun = Instant::now();
        let out = run(sh("sleep 30 & echo $!")).await.unwrap();
        assert!(begun.elapsed() < Duration::from_secs(5));
        assert_eq!(out.exit_code, Some(0));
        let pid: u32 = out.stdout.trim().parse().unwrap();
        assert!(becomes_dead(pid).await, "background sleep {pid} survived");
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_whole_group() {
        let pid_file = temp_path("drop-pids");
        let _ = std::fs::remove_file(&pid_file);
        let script = format!("sleep 30 & echo \"$$ $!\" > '{}'; wait", pid_file.display());
        let mut future = Box::pin(run(sh(&script)));
        let mut pids = None;
        for _ in 0..250 {
            tokio::select! {
                result = &mut future => panic!("finished early: {result:?}"),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if let Ok(text) = std::fs::read_to_string(&pid_file) {
                if text.ends_with('\n') {
                    let parsed: Vec<u32> = text
                        .split_whitespace()
                        .map(|p| p.parse().unwrap())
                        .collect();
                    pids = Some((parsed[0], parsed[1]));
                    break;
                }
            }
        }
        let _ = std::fs::remove_file(&pid_file);
        let (shell, sleep) = pids.expect("the shell never wrote its pids");
        assert!(!is_dead(shell) && !is_dead(sleep));
        drop(future);
        assert!(becomes_dead(shell).await, "shell {shell} survived");
        assert!(
            becomes_dead(sleep).await,
            "grandchild sleep {sleep} survived"
        );
    }

    #[test]
    fn spec_debug_hides_env_values() {
        let mut s = spec(&["true"]);
        s.env = vec![("TOKEN".into(), "s3cret".into())];
        let debug = format!("{s:?}");
        assert!(debug.contains("TOKEN"));
        assert!(!debug.contains("s3cret"));
    }
}
