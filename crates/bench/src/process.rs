//! Server processes under test (a `triggerd serve` or the baseline) and what `/proc` says about
//! them: resident memory and CPU time.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Error;

/// The text that marks the readiness line on stdout (`... listening on http://127.0.0.1:PORT`);
/// both `triggerd serve` and the baseline print it.
pub const READY_MARKER: &str = "listening on ";

/// How long a server may take to print its readiness line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of the server's output kept for error messages.
const KEPT_LINES: usize = 50;

/// A running server process, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl ServerProcess {
    /// Starts `command` (stdout and stderr piped) and waits for its readiness line.
    pub fn spawn(mut command: Command, what: &str) -> Result<ServerProcess, Error> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::new(format!("cannot start {what}: {e}")))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || drain(stderr, &log, None));
        }
        if let Some(stdout) = child.stdout.take() {
            let log = log.clone();
            std::thread::spawn(move || drain(stdout, &log, Some(ready_tx)));
        }
        let mut process = ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let line = ready_rx.recv_timeout(STARTUP_TIMEOUT).map_err(|_| {
            Error::new(format!(
                "{what} printed no `{READY_MARKER}http://...` line within {STARTUP_TIMEOUT:?}; \
                 its output:\n{}",
                process.log_tail()
            ))
        })?;
        process.addr = parse_listen_line(&line).ok_or_else(|| {
            Error::new(format!(
                "{what} printed an unparseable readiness line: {line:?}"
            ))
        })?;
        Ok(process)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id (for `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines it printed.
    pub fn log_tail(&self) -> String {
        let lines = self.log.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().map(|l| format!("  {l}\n")).collect()
    }
}

/// How long a server may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Drop for ServerProcess {
    /// Stops the server with SIGTERM (so it shuts down as in production: connections closed, a
    /// profiler wrapping it writes its output), and SIGKILLs it if it is still running after
    /// [`STOP_TIMEOUT`].
    fn drop(&mut self) {
        let asked = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if asked {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain(pipe: impl Read, log: &Mutex<VecDeque<String>>, mut ready: Option<mpsc::Sender<String>>) {
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { return };
        if line.contains(READY_MARKER)
            && let Some(tx) = ready.take()
        {
            let _ = tx.send(line.clone());
        }
        let mut lines = log.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

/// The address in a line holding `listening on http://127.0.0.1:PORT`.
pub fn parse_listen_line(line: &str) -> Option<SocketAddr> {
    let after = &line[line.find(READY_MARKER)? + READY_MARKER.len()..];
    let url = after.split_whitespace().next()?;
    let host_port = url.strip_prefix("http://")?;
    host_port
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

/// The `triggerd` binary: `explicit`, else `triggerd` next to `exe`, else (for test binaries in
/// `target/<profile>/deps/`) one directory up.
pub fn locate_triggerd(explicit: Option<&Path>, exe: &Path) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return path.is_file().then(|| path.to_owned());
    }
    let name = format!("triggerd{}", std::env::consts::EXE_SUFFIX);
    let dir = exe.parent()?;
    [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
}

/// A fresh directory under the system's temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `triggerd-bench-<pid>-<n>-<nanos>`.
    pub fn new() -> Result<TempDir, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "triggerd-bench-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
        Ok(TempDir(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Resident set size (`VmRSS`) and its high-water mark (`VmHWM`) in bytes, from
/// `/proc/<pid>/status`.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU time of a process so far, from `/proc/<pid>/stat` (`self` for this one).
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_time(&stat)
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The fields count clock ticks of `USER_HZ`, which
/// Linux fixes at 100 per second for user space on every architecture it exports `/proc` on.
pub fn parse_cpu_time(stat: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU time (`utime + stime`) of each live thread of a process so far, summed by thread name
/// (`comm`, which Linux cuts to 15 bytes: `triggerd-writer`, `triggerd-checkp`,
/// `tokio-runtime-w`), from `/proc/<pid>/task/*/stat`. Threads that have ended are not there.
pub fn thread_cpu_times(pid: u32) -> BTreeMap<String, Duration> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let (Some(name), Some(cpu)) = (thread_name(&stat), parse_cpu_time(&stat)) {
            *out.entry(name.to_owned()).or_default() += cpu;
        }
    }
    out
}

/// The command name (field 2, in parentheses) of a `/proc/.../stat` line.
pub fn thread_name(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// CPU time all processes of the machine spent busy so far (`/proc/stat`, every state but idle
/// and iowait), in the same `USER_HZ` ticks.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(stat.lines().next()?)
}

/// The busy time of the `cpu ` line of `/proc/stat`.
pub fn parse_machine_busy(line: &str) -> Option<Duration> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...; guest time is already in user.
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(Duration::from_millis(busy * 10))
}

/// Samples a process while a load runs: CPU time over the window and the largest RSS seen.
#[derive(Debug)]
pub struct Monitor {
    pid: String,
    cpu_start: Option<Duration>,
    started: Instant,
    peak_rss: u64,
}

impl Monitor {
    /// Starts the window now.
    pub fn start(pid: &str) -> Monitor {
        let mut m = Monitor {
            pid: pid.to_owned(),
            cpu_start: cpu_time(pid),
            started: Instant::now(),
            peak_rss: 0,
        };
        m.sample();
        m
    }

    /// Reads the current RSS and keeps the largest.
    pub fn sample(&mut self) {
        if let Ok(pid) = self.pid.parse::<u32>()
            && let Some((rss, _)) = memory(pid)
        {
            self.peak_rss = self.peak_rss.max(rss);
        }
    }

    /// Ends the window: CPU used as a percentage of one core, and the peak RSS sampled.
    pub fn finish(mut self) -> (Option<f64>, u64) {
        self.sample();
        let wall = self.started.elapsed().as_secs_f64();
        let cpu = match (self.cpu_start, cpu_time(&self.pid)) {
            (Some(a), Some(b)) if wall > 0.0 => {
                Some(b.saturating_sub(a).as_secs_f64() / wall * 100.0)
            }
            _ => None,
        };
        (cpu, self.peak_rss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lines_are_parsed() {
        let addr: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        assert_eq!(
            parse_listen_line(
                "triggerd listening on http://127.0.0.1:41234 (public URL http://127.0.0.1:41234)"
            ),
            Some(addr)
        );
        assert_eq!(
            parse_listen_line("baseline listening on http://127.0.0.1:41234"),
            Some(addr)
        );
        assert_eq!(parse_listen_line("starting"), None);
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat = "1234 (tokio rt (x)) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(parse_cpu_time(stat), Some(Duration::from_millis(3000)));
        assert_eq!(thread_name(stat), Some("tokio rt (x)"));
        let own = thread_cpu_times(std::process::id());
        assert!(!own.is_empty(), "this process has threads");
        assert!(cpu_time("self").is_some());
        assert_eq!(
            parse_machine_busy("cpu  100 5 50 9000 40 1 2 3 0 0"),
            Some(Duration::from_millis(1610))
        );
        assert!(machine_busy().is_some());
        let own = memory(std::process::id()).expect("own /proc status");
        assert!(own.0 > 0 && own.1 >= own.0);
    }
}
