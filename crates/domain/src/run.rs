//! Run states, the transitions between them, and the events they emit.
//!
//! A run starts `pending`, is picked up (`running`), may park (`waiting`) for a callback or an
//! approval and resume (`running` again), and ends `completed`, `failed` or `cancelled`. The
//! legal moves are exactly those of [`RunStatus::can_transition`]; terminal states have no
//! exits. [`EventType::for_transition`] says which event hook event, if any, a move emits: a
//! run resumed from `waiting` does not emit `run.started` a second time.
//!
//! ```
//! use triggerd_domain::run::{EventType, RunStatus};
//!
//! let status = RunStatus::Pending.transition(RunStatus::Running)?;
//! assert_eq!(
//!     EventType::for_transition(RunStatus::Pending, status),
//!     Some(EventType::RunStarted)
//! );
//! assert!(RunStatus::Completed.transition(RunStatus::Running).is_err());
//! # Ok::<(), triggerd_domain::run::RunStateError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The scope a run's templates render against (docs/templates.md): `input`, `trigger`, `context`
/// (the deployment's context store with the run's own values laid over it), `steps` (`<id>.output` of
/// each finished step), `run` ([`run_root`]) and `deployment` (`{id, name, webhook_urls}`). The
/// webhook's completion at ingest, the run worker and every step build it here, so a template
/// sees the same values whichever path renders it.
pub fn run_scope(
    input: Value,
    trigger: Value,
    context: Value,
    steps: Value,
    run: Value,
    deployment: Value,
) -> Value {
    // Moved in, not through `json!`: the macro serialises every interpolated value into a new
    // one (a deep copy of the request's whole `trigger` document, then dropping the original).
    let mut scope = Map::with_capacity(6);
    scope.insert("input".to_owned(), input);
    scope.insert("trigger".to_owned(), trigger);
    scope.insert("context".to_owned(), context);
    scope.insert("steps".to_owned(), steps);
    scope.insert("run".to_owned(), run);
    scope.insert("deployment".to_owned(), deployment);
    Value::Object(scope)
}

/// The `run` root of the template scope: `{id, created_at}`, the instant as RFC 3339 UTC text.
///
/// ```
/// use triggerd_domain::run::run_root;
/// let run = run_root("run_1", 1_700_000_000_000_000);
/// assert_eq!(run["created_at"], "2023-11-14T22:13:20.000000Z");
/// ```
pub fn run_root(id: &str, created_at_micros: i64) -> Value {
    json!({"id": id, "created_at": rfc3339(created_at_micros)})
}

/// RFC 3339 UTC text (microseconds) of an instant in microseconds since the epoch.
pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunStateError {
    /// A state change the run state machine does not allow.
    #[error("a run cannot go from `{from}` to `{to}`{}", hint(.from))]
    IllegalTransition {
        /// The current status.
        from: RunStatus,
        /// The requested status.
        to: RunStatus,
    },
    /// A status name that is not one of the six.
    #[error(
        "unknown run status {found:?}: expected one of pending, running, waiting, completed, \
         failed, cancelled"
    )]
    UnknownStatus {
        /// The name given.
        found: String,
    },
    /// A run source name that is not one of the three.
    #[error("unknown run source {found:?}: expected one of webhook, cron, api")]
    UnknownSource {
        /// The name given.
        found: String,
    },
    /// An event type name that is not one of the five.
    #[error(
        "unknown event type {found:?}: expected one of run.started, run.completed, \
         run.failed, run.waiting, run.cancelled"
    )]
    UnknownEventType {
        /// The name given.
        found: String,
    },
}

/// Extra words for an illegal transition out of a terminal state.
fn hint(from: &RunStatus) -> &'static str {
    if from.is_terminal() {
        " (the run has already finished)"
    } else {
        ""
    }
}

/// Looks `s` up among `all` by name.
fn parse_name<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str, s: &str) -> Option<T> {
    all.iter().copied().find(|&v| name(v) == s)
}

/// The status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Stored, not yet picked up (also while over the deployment's concurrency cap).
    Pending,
    /// Executing its steps.
    Running,
    /// Parked until a callback, an approval or a timeout.
    Waiting,
    /// Finished successfully. Terminal.
    Completed,
    /// Finished with an error. Terminal.
    Failed,
    /// Cancelled through the API. Terminal.
    Cancelled,
}

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// The status's name as stored and shown in the API.
    ///
    /// ```
    /// use triggerd_domain::run::RunStatus;
    /// assert_eq!(RunStatus::Waiting.as_str(), "waiting");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the run has finished: `completed`, `failed` or `cancelled`.
    ///
    /// ```
    /// use triggerd_domain::run::RunStatus;
    /// assert!(RunStatus::Cancelled.is_terminal());
    /// assert!(!RunStatus::Waiting.is_terminal());
    /// ```
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// Whether a run may move from `self` to `to`.
    ///
    /// Legal moves: `pending` → `running`, `failed`, `cancelled`; `running` → `waiting`,
    /// `completed`, `failed`, `cancelled`; `waiting` → `running`, `failed`, `cancelled`.
    /// A run without steps still goes `pending` → `running` → `completed`; staying in the same
    /// state is not a move.
    ///
    /// ```
    /// use triggerd_domain::run::RunStatus::*;
    /// assert!(Pending.can_transition(Running));
    /// assert!(!Pending.can_transition(Completed));
    /// assert!(Waiting.can_transition(Running));
    /// ```
    pub const fn can_transition(self, to: RunStatus) -> bool {
        use RunStatus::*;
        matches!(
            (self, to),
            (Pending, Running | Failed | Cancelled)
                | (Running, Waiting | Completed | Failed | Cancelled)
                | (Waiting, Running | Failed | Cancelled)
        )
    }

    /// Moves to `to` if [`can_transition`](Self::can_transition) allows it.
    ///
    /// # Errors
    /// [`RunStateError::IllegalTransition`] otherwise (e.g. cancelling a finished run, which
    /// the API answers with 409).
    ///
    /// ```
    /// use triggerd_domain::run::{RunStateError, RunStatus};
    /// assert_eq!(
    ///     RunStatus::Failed.transition(RunStatus::Cancelled),
    ///     Err(RunStateError::IllegalTransition { from: RunStatus::Failed, to: RunStatus::Cancelled })
    /// );
    /// ```
    pub fn transition(self, to: RunStatus) -> Result<RunStatus, RunStateError> {
        if self.can_transition(to) {
            Ok(to)
        } else {
            Err(RunStateError::IllegalTransition { from: self, to })
        }
    }
}

/// The events a run emits when it moves from `from` through each status of `path` in turn — a
/// compound move, such as a step-less run completed at once (`pending` → `running` →
/// `completed`: `run.started`, then `run.completed`). Every step must be legal.
///
/// # Errors
/// [`RunStateError::IllegalTransition`] naming the first illegal step; an empty `path` is not a
/// move and emits nothing.
///
/// ```
/// use triggerd_domain::run::{EventType, RunStatus::*, transition_events};
/// assert_eq!(
///     transition_events(Pending, &[Running, Completed]),
///     Ok(vec![EventType::RunStarted, EventType::RunCompleted])
/// );
/// assert!(transition_events(Pending, &[Completed]).is_err());
/// ```
pub fn transition_events(
    from: RunStatus,
    path: &[RunStatus],
) -> Result<Vec<EventType>, RunStateError> {
    let mut events = Vec::with_capacity(path.len());
    let mut at = from;
    for &to in path {
        let next = at.transition(to)?;
        events.extend(EventType::for_transition(at, next));
        at = next;
    }
    Ok(events)
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = RunStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name(&RunStatus::ALL, RunStatus::as_str, s).ok_or_else(|| {
            RunStateError::UnknownStatus {
                found: s.to_owned(),
            }
        })
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunSource {
    /// An inbound webhook request.
    Webhook,
    /// A cron slot.
    Cron,
    /// `POST /api/v1/runs`.
    Api,
}

impl RunSource {
    /// Every source.
    pub const ALL: [RunSource; 3] = [RunSource::Webhook, RunSource::Cron, RunSource::Api];

    /// The source's name as stored and shown in the API.
    ///
    /// ```
    /// use triggerd_domain::run::RunSource;
    /// assert_eq!(RunSource::Cron.as_str(), "cron");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            RunSource::Webhook => "webhook",
            RunSource::Cron => "cron",
            RunSource::Api => "api",
        }
    }
}

impl fmt::Display for RunSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunSource {
    type Err = RunStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name(&RunSource::ALL, RunSource::as_str, s).ok_or_else(|| {
            RunStateError::UnknownSource {
                found: s.to_owned(),
            }
        })
    }
}

/// The events event hooks subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// `run.started`: a pending run began executing.
    #[serde(rename = "run.started")]
    RunStarted,
    /// `run.completed`: a run finished successfully.
    #[serde(rename = "run.completed")]
    RunCompleted,
    /// `run.failed`: a run finished with an error.
    #[serde(rename = "run.failed")]
    RunFailed,
    /// `run.waiting`: a run parked for a callback or an approval.
    #[serde(rename = "run.waiting")]
    RunWaiting,
    /// `run.cancelled`: a run was cancelled.
    #[serde(rename = "run.cancelled")]
    RunCancelled,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 5] = [
        EventType::RunStarted,
        EventType::RunCompleted,
        EventType::RunFailed,
        EventType::RunWaiting,
        EventType::RunCancelled,
    ];

    /// The event's name, as in hook subscriptions and event bodies.
    ///
    /// ```
    /// use triggerd_domain::run::EventType;
    /// assert_eq!(EventType::RunFailed.as_str(), "run.failed");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::RunStarted => "run.started",
            EventType::RunCompleted => "run.completed",
            EventType::RunFailed => "run.failed",
            EventType::RunWaiting => "run.waiting",
            EventType::RunCancelled => "run.cancelled",
        }
    }

    /// The event a legal move from `from` to `to` emits, if any.
    ///
    /// Entering `running` emits `run.started` only from `pending`: resuming a waiting run
    /// emits nothing. Entering `waiting`, `completed`, `failed` or `cancelled` emits the
    /// matching event. Illegal moves emit nothing.
    ///
    /// ```
    /// use triggerd_domain::run::{EventType, RunStatus::*};
    /// assert_eq!(EventType::for_transition(Pending, Running), Some(EventType::RunStarted));
    /// assert_eq!(EventType::for_transition(Waiting, Running), None);
    /// assert_eq!(EventType::for_transition(Waiting, Failed), Some(EventType::RunFailed));
    /// ```
    pub const fn for_transition(from: RunStatus, to: RunStatus) -> Option<EventType> {
        if !from.can_transition(to) {
            return None;
        }
        match (from, to) {
            (RunStatus::Pending, RunStatus::Running) => Some(EventType::RunStarted),
            (_, RunStatus::Waiting) => Some(EventType::RunWaiting),
            (_, RunStatus::Completed) => Some(EventType::RunCompleted),
            (_, RunStatus::Failed) => Some(EventType::RunFailed),
            (_, RunStatus::Cancelled) => Some(EventType::RunCancelled),
            (_, RunStatus::Running | RunStatus::Pending) => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = RunStateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name(&EventType::ALL, EventType::as_str, s).ok_or_else(|| {
            RunStateError::UnknownEventType {
                found: s.to_owned(),
            }
        })
    }
}

/// The status of one step execution (an entry of a run's `step_executions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Executing (or interrupted, if the worker died: it is executed again).
    Running,
    /// A `wait_for_webhook` or `approval` step parked, waiting.
    Waiting,
    /// Resumed or approved; the worker that picks the run up next finishes it.
    Resumed,
    /// Finished with an output.
    Completed,
    /// Failed (the run fails with it, or it was interrupted and executed again).
    Failed,
}

impl StepStatus {
    /// The name stored and shown.
    ///
    /// ```
    /// use triggerd_domain::run::StepStatus;
    /// assert_eq!(StepStatus::Resumed.as_str(), "resumed");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Waiting => "waiting",
            StepStatus::Resumed => "resumed",
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
        }
    }
}

/// Why a run failed: the run object's `error`, `{code, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunError {
    /// A stable machine code, e.g. `timeout`.
    pub code: String,
    /// A message for people.
    pub message: String,
}

impl RunError {
    /// Code of a run that exceeded `max_duration_seconds`.
    pub const TIMEOUT: &'static str = "timeout";
    /// Code of a template that referred to a missing path.
    pub const TEMPLATE_ERROR: &'static str = "template_error";
    /// Code of a `wait_for_webhook` or `approval` step that expired.
    pub const WAIT_TIMEOUT: &'static str = "wait_timeout";
    /// Code of an `approval` step that was rejected.
    pub const REJECTED: &'static str = "rejected";
    /// Code of a step that failed (HTTP status not expected, command exit code, ...).
    pub const STEP_FAILED: &'static str = "step_failed";
    /// Code of a cron run whose fixed input no longer fits the inputs of the version its
    /// deployment runs (the workflow changed after the trigger was created).
    pub const INVALID_INPUT: &'static str = "invalid_input";

    /// An error with any code and message.
    ///
    /// ```
    /// use triggerd_domain::run::RunError;
    /// let e = RunError::new("step_failed", "enrich: expected a 2xx status, got 500");
    /// assert_eq!(e.code, "step_failed");
    /// ```
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        RunError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The run took longer than its `max_duration_seconds`.
    ///
    /// ```
    /// use triggerd_domain::run::RunError;
    /// let e = RunError::timeout(1800);
    /// assert_eq!(e.code, "timeout");
    /// assert_eq!(e.message, "the run took longer than its max_duration_seconds (1800 s)");
    /// ```
    pub fn timeout(max_duration_seconds: u64) -> Self {
        Self::new(
            Self::TIMEOUT,
            format!("the run took longer than its max_duration_seconds ({max_duration_seconds} s)"),
        )
    }

    /// A template of step `step_id` could not be rendered; `detail` says why (e.g. the
    /// missing path).
    pub fn template_error(step_id: &str, detail: impl fmt::Display) -> Self {
        Self::new(Self::TEMPLATE_ERROR, format!("step `{step_id}`: {detail}"))
    }

    /// Step `step_id` waited for a callback or an approval until it expired.
    ///
    /// ```
    /// use triggerd_domain::run::RunError;
    /// assert_eq!(RunError::wait_timeout("confirm").code, "wait_timeout");
    /// ```
    pub fn wait_timeout(step_id: &str) -> Self {
        Self::new(
            Self::WAIT_TIMEOUT,
            format!("step `{step_id}` expired before it was resumed"),
        )
    }

    /// The approval of step `step_id` was rejected, with the reviewer's optional comment.
    ///
    /// ```
    /// use triggerd_domain::run::RunError;
    /// let e = RunError::rejected("confirm", Some("wrong amount"));
    /// assert_eq!(e.message, "step `confirm` was rejected: wrong amount");
    /// ```
    pub fn rejected(step_id: &str, comment: Option<&str>) -> Self {
        let message = match comment {
            Some(c) if !c.trim().is_empty() => format!("step `{step_id}` was rejected: {c}"),
            _ => format!("step `{step_id}` was rejected"),
        };
        Self::new(Self::REJECTED, message)
    }

    /// Step `step_id` failed; `detail` says how.
    pub fn step_failed(step_id: &str, detail: impl fmt::Display) -> Self {
        Self::new(
            Self::STEP_FAILED,
            format!("step `{step_id}` failed: {detail}"),
        )
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::RunStatus::*;
    use super::*;

    /// The legal moves, written out independently of `can_transition`.
    const LEGAL: [(RunStatus, RunStatus); 10] = [
        (Pending, Running),
        (Pending, Cancelled),
        (Pending, Failed),
        (Running, Waiting),
        (Running, Completed),
        (Running, Failed),
        (Running, Cancelled),
        (Waiting, Running),
        (Waiting, Failed),
        (Waiting, Cancelled),
    ];

    #[test]
    fn transition_table_allows_exactly_the_legal_moves() {
        for from in RunStatus::ALL {
            for to in RunStatus::ALL {
                let legal = LEGAL.contains(&(from, to));
                assert_eq!(from.can_transition(to), legal, "{from} -> {to}");
                match from.transition(to) {
                    Ok(s) => {
                        assert!(legal, "{from} -> {to}");
                        assert_eq!(s, to);
                    }
                    Err(e) => {
                        assert!(!legal, "{from} -> {to}");
                        assert_eq!(e, RunStateError::IllegalTransition { from, to });
                    }
                }
            }
        }
    }

    #[test]
    fn pending_cannot_complete_directly() {
        assert!(!Pending.can_transition(Completed));
        assert!(!Pending.can_transition(Waiting));
    }

    #[test]
    fn terminal_states_have_no_exits() {
        for from in RunStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in RunStatus::ALL {
                assert!(!from.can_transition(to), "{from} -> {to}");
            }
        }
        let terminal: Vec<_> = RunStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, [Completed, Failed, Cancelled]);
    }

    #[test]
    fn illegal_transition_from_finished_run_says_so() {
        let err = Completed.transition(Cancelled).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a run cannot go from `completed` to `cancelled` (the run has already finished)"
        );
        let err = Pending.transition(Completed).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a run cannot go from `pending` to `completed`"
        );
    }

    #[test]
    fn event_mapping_for_every_pair() {
        for from in RunStatus::ALL {
            for to in RunStatus::ALL {
                let expected = if !LEGAL.contains(&(from, to)) {
                    None
                } else {
                    match (from, to) {
                        (Pending, Running) => Some(EventType::RunStarted),
                        (Waiting, Running) => None,
                        (_, Waiting) => Some(EventType::RunWaiting),
                        (_, Completed) => Some(EventType::RunCompleted),
                        (_, Failed) => Some(EventType::RunFailed),
                        (_, Cancelled) => Some(EventType::RunCancelled),
                        _ => unreachable!("no other legal move"),
                    }
                };
                assert_eq!(
                    EventType::for_transition(from, to),
                    expected,
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn compound_moves_emit_each_event_and_stop_at_the_first_illegal_step() {
        assert_eq!(
            transition_events(Pending, &[Running, Completed]),
            Ok(vec![EventType::RunStarted, EventType::RunCompleted])
        );
        assert_eq!(
            transition_events(Pending, &[Running, Failed]),
            Ok(vec![EventType::RunStarted, EventType::RunFailed])
        );
        assert_eq!(
            transition_events(Waiting, &[Running, Waiting]),
            Ok(vec![EventType::RunWaiting])
        );
        assert_eq!(transition_events(Running, &[]), Ok(vec![]));
        assert_eq!(
            transition_events(Pending, &[Running, Pending]),
            Err(RunStateError::IllegalTransition {
                from: Running,
                to: Pending
            })
        );
        assert_eq!(
            transition_events(Completed, &[Running]),
            Err(RunStateError::IllegalTransition {
                from: Completed,
                to: Running
            })
        );
        // Every single legal move agrees with `for_transition`.
        for (from, to) in LEGAL {
            assert_eq!(
                transition_events(from, &[to]),
                Ok(EventType::for_transition(from, to).into_iter().collect())
            );
        }
    }

    #[test]
    fn resuming_does_not_emit_started_again() {
        assert_eq!(EventType::for_transition(Waiting, Running), None);
    }

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(
                serde_json::from_value::<RunStatus>(s.as_str().into()).unwrap(),
                s
            );
        }
        for s in RunSource::ALL {
            assert_eq!(s.as_str().parse::<RunSource>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for e in EventType::ALL {
            assert_eq!(e.as_str().parse::<EventType>(), Ok(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
            assert_eq!(
                serde_json::from_value::<EventType>(e.as_str().into()).unwrap(),
                e
            );
        }
        let names: Vec<_> = EventType::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            names,
            [
                "run.started",
                "run.completed",
                "run.failed",
                "run.waiting",
                "run.cancelled"
            ]
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!(matches!(
            "done".parse::<RunStatus>(),
            Err(RunStateError::UnknownStatus { .. })
        ));
        assert!(matches!(
            "Pending".parse::<RunStatus>(),
            Err(RunStateError::UnknownStatus { .. })
        ));
        assert!(matches!(
            "ui".parse::<RunSource>(),
            Err(RunStateError::UnknownSource { .. })
        ));
        assert!(matches!(
            "run.finished".parse::<EventType>(),
            Err(RunStateError::UnknownEventType { .. })
        ));
        assert!(serde_json::from_str::<EventType>("\"run_started\"").is_err());
    }

    #[test]
    fn run_error_serializes_as_code_and_message() {
        let e = RunError::wait_timeout("callback");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "wait_timeout", "message": "step `callback` expired before it was resumed"})
        );
        assert_eq!(
            RunError::rejected("c", None).message,
            "step `c` was rejected"
        );
        assert_eq!(
            RunError::rejected("c", Some("  ")).message,
            "step `c` was rejected"
        );
        assert_eq!(
            RunError::template_error("s", "missing path input.x").code,
            "template_error"
        );
        assert_eq!(
            RunError::step_failed("s", "exit code 2").to_string(),
            "step_failed: step `s` failed: exit code 2"
        );
    }
}
