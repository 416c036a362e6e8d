//! Cron schedules, time zones, one-time instants and catch-up of missed slots (docs/schedules.md).
//!
//! A [`Schedule`] is a five-field cron pattern (minute, hour, day of month, month, day of week)
//! parsed and evaluated by `croner`, configured so that seconds and years are refused and day of
//! month and day of week combine with OR as in Vixie cron. Slots are computed in the trigger's
//! IANA time zone and identified by their UTC instant.
//!
//! Across daylight-saving changes `croner` (4.0.3) applies the rule docs/schedules.md describes,
//! and this module relies on it (the tests pin it down):
//! - a *fixed-time* schedule (one value in both the minute and the hour field, e.g.
//!   `30 2 * * *`) whose local time falls in a spring-forward gap fires once, at the first
//!   valid instant after the gap; when its local time occurs twice it fires once, at the first
//!   occurrence;
//! - an *interval* schedule (anything else in those fields) follows real time: local times that
//!   do not exist never fire, and a repeated local time fires at both occurrences.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use triggerd_domain::cron::{Schedule, parse_timezone};
//!
//! let schedule = Schedule::parse("0 9 * * MON")?;
//! let tz = parse_timezone("Europe/London")?;
//! let after = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(); // a Monday, 13:00 BST
//! let next = schedule.next_after(after, tz).unwrap();
//! assert_eq!(next, Utc.with_ymd_and_hms(2026, 6, 8, 8, 0, 0).unwrap()); // 09:00 BST
//! # Ok::<(), triggerd_domain::cron::ScheduleError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike as _, Duration, SubsecRound as _, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::{Cron, JobType};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The aliases accepted in place of five fields, lower-case.
const ALIASES: [&str; 6] = [
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

/// Safety net for [`Schedule::next_after`]: how many times it searches again should croner
/// return a slot that is not strictly later (it does not, but the loop must end regardless).
const MAX_SEARCH_STEPS: usize = 10_000;

/// Years croner searches in; instants outside have no slots (and chrono could not represent
/// them in every time zone).
const SUPPORTED_YEARS: std::ops::RangeInclusive<i32> =
    croner::YEAR_LOWER_LIMIT..=croner::YEAR_UPPER_LIMIT;

/// Whether `t` lies in [`SUPPORTED_YEARS`].
fn supported(t: DateTime<Utc>) -> bool {
    SUPPORTED_YEARS.contains(&t.year())
}

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The schedule is empty.
    #[error(
        "the cron schedule is empty: expected five fields (minute hour day-of-month month \
         day-of-week), e.g. `0 9 * * 1`, or an alias such as `@daily`"
    )]
    Empty,
    /// The schedule has six or seven fields.
    #[error(
        "the cron schedule has {found} fields, but seconds and years are not supported: use \
         five fields (minute hour day-of-month month day-of-week), e.g. `0 9 * * 1`"
    )]
    SecondsOrYears {
        /// The number of fields given.
        found: usize,
    },
    /// The schedule has fewer than five or more than seven fields.
    #[error(
        "the cron schedule has {found} fields: expected five (minute hour day-of-month month \
         day-of-week), e.g. `0 9 * * 1`"
    )]
    FieldCount {
        /// The number of fields given.
        found: usize,
    },
    /// An `@` alias that is not supported.
    #[error(
        "unknown cron alias {found:?}: expected one of @hourly, @daily, @weekly, @monthly, \
         @yearly, @annually"
    )]
    UnknownAlias {
        /// The alias given.
        found: String,
    },
    /// A character outside ASCII.
    #[error(
        "the cron schedule contains {found:?}, which is not allowed: use ASCII digits, names and `* ? , - / L W #`"
    )]
    NonAscii {
        /// The first offending character.
        found: char,
    },
    /// The `+` prefix in the day-of-week field, croner's AND modifier.
    #[error(
        "the `+` prefix in the day-of-week field is not supported: day-of-month and \
         day-of-week always combine with OR, as in Vixie cron"
    )]
    AndModifier,
    /// A number outside its field's range (`0 25 * * *`).
    #[error(
        "invalid cron schedule {pattern:?}: the {field} field allows {min} to {max}, got {value}"
    )]
    FieldOutOfRange {
        /// The pattern given.
        pattern: String,
        /// The field's name (`minute`, `hour`, `day-of-month`, `month`, `day-of-week`), or
        /// `day-of-week #` for the n-th weekday of a month (`FRI#3`).
        field: &'static str,
        /// The number given.
        value: u64,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// `croner` refused the pattern.
    #[error("invalid cron schedule {pattern:?}: {reason}")]
    Invalid {
        /// The pattern given.
        pattern: String,
        /// `croner`'s explanation.
        reason: String,
    },
    /// A time zone name that is not in the IANA database.
    #[error(
        "unknown time zone {name:?}: expected an IANA name such as `UTC`, `Europe/London` or `America/New_York`"
    )]
    UnknownTimezone {
        /// The name given.
        name: String,
    },
    /// An `at` instant that is not RFC 3339.
    #[error(
        "invalid instant {value:?}: expected an RFC 3339 timestamp such as `2026-05-01T09:00:00Z` ({reason})"
    )]
    InvalidInstant {
        /// The value given.
        value: String,
        /// The parser's explanation.
        reason: String,
    },
    /// Both or neither of `schedule` and `at`.
    #[error(
        "a cron trigger needs exactly one of `schedule` (a cron pattern) and `at` (an RFC 3339 instant)"
    )]
    ScheduleOrAt,
    /// A catch-up policy that is not one of the three.
    #[error("unknown catch_up {found:?}: expected one of none, latest, all")]
    UnknownCatchUp {
        /// The name given.
        found: String,
    },
}

/// The five fields' names and ranges, in order.
const FIELDS: [(&str, u64, u64); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

/// The first number of a five-field `pattern` outside its field's range, if any. Step sizes
/// (after `/`) are not values and are not checked; the `n` of `DAY#n` must be 1 to 5.
fn out_of_range(pattern: &str) -> Option<ScheduleError> {
    let problem = |field, value, min, max| ScheduleError::FieldOutOfRange {
        pattern: pattern.to_owned(),
        field,
        value,
        min,
        max,
    };
    let fields = pattern.split_ascii_whitespace();
    for (text, (field, min, max)) in fields.zip(FIELDS) {
        for part in text.split(',') {
            let values = part.split('/').next().unwrap_or_default();
            let (values, nth) = match values.split_once('#') {
                Some((day, n)) => (day, Some(n)),
                None => (values, None),
            };
            for number in values
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
            {
                let value = number.parse::<u64>().unwrap_or(u64::MAX);
                if !(min..=max).contains(&value) {
                    return Some(problem(field, value, min, max));
                }
            }
            if let Some(n) = nth.and_then(|n| n.parse::<u64>().ok())
                && !(1..=5).contains(&n)
            {
                return Some(problem("day-of-week #", n, 1, 5));
            }
        }
    }
    None
}

/// A parsed five-field cron schedule.
///
/// Serializes as the pattern text; deserializing parses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Schedule {
    source: String,
    // Boxed: a parsed pattern is large (hundreds of bytes) and schedules get moved around.
    cron: Box<Cron>,
}

impl Schedule {
    /// Parses a five-field schedule or an alias (`@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`, `@annually`).
    ///
    /// # Errors
    /// A [`ScheduleError`] naming the problem: empty, six or seven fields (seconds and years
    /// are refused), another field count, an unknown alias, a non-ASCII character, the `+`
    /// day-of-week modifier, or what `croner` objected to.
    ///
    /// ```
    /// use triggerd_domain::cron::{Schedule, ScheduleError};
    /// assert!(Schedule::parse("*/15 9-17 * * MON-FRI").is_ok());
    /// assert!(Schedule::parse("@weekly").is_ok());
    /// assert_eq!(
    ///     Schedule::parse("0 0 9 * * *"),
    ///     Err(ScheduleError::SecondsOrYears { found: 6 })
    /// );
    /// ```
    pub fn parse(pattern: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = pattern.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if let Some(found) = trimmed.chars().find(|c| !c.is_ascii()) {
            return Err(ScheduleError::NonAscii { found });
        }
        if trimmed.starts_with('@') {
            if !ALIASES.iter().any(|a| a.eq_ignore_ascii_case(trimmed)) {
                return Err(ScheduleError::UnknownAlias {
                    found: trimmed.to_owned(),
                });
            }
        } else {
            let fields: Vec<&str> = trimmed.split_ascii_whitespace().collect();
            match fields.len() {
                5 => {}
                found @ (6 | 7) => return Err(ScheduleError::SecondsOrYears { found }),
                found => return Err(ScheduleError::FieldCount { found }),
            }
            if fields[4].starts_with('+') {
                return Err(ScheduleError::AndModifier);
            }
        }
        // croner's defaults already give Vixie's OR of day-of-month and day-of-week
        // (`dom_and_dow: false`) and OCPS-strict steps (`sloppy_ranges: false`).
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .dom_and_dow(false)
            .build()
            .parse(trimmed)
            .map_err(|e| {
                // croner's own words ("Component error: Number out of bounds.") name neither
                // the field nor the range: find the number ourselves when that is the problem.
                out_of_range(trimmed).unwrap_or_else(|| ScheduleError::Invalid {
                    pattern: trimmed.to_owned(),
                    reason: e.to_string(),
                })
            })?;
        Ok(Schedule {
            source: trimmed.to_owned(),
            cron: Box::new(cron),
        })
    }

    /// The pattern as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the schedule is *fixed-time* (one value in both the minute and the hour field)
    /// rather than *interval*, which decides its behaviour across DST changes.
    ///
    /// ```
    /// use triggerd_domain::cron::Schedule;
    /// assert!(Schedule::parse("30 2 * * *")?.is_fixed_time());
    /// assert!(!Schedule::parse("0 * * * *")?.is_fixed_time());
    /// assert!(!Schedule::parse("*/15 2 * * *")?.is_fixed_time());
    /// # Ok::<(), triggerd_domain::cron::ScheduleError>(())
    /// ```
    pub fn is_fixed_time(&self) -> bool {
        self.cron.determine_job_type() == JobType::FixedTime
    }

    /// The first slot strictly after `after`, in time zone `tz`, or `None` if there is none
    /// before year 5000 (croner's search limit; `0 0 30 2 *` has none).
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use triggerd_domain::cron::{Schedule, parse_timezone};
    ///
    /// // 02:30 does not exist in New York on 2026-03-08: the slot is 03:00 EDT.
    /// let s = Schedule::parse("30 2 * * *")?;
    /// let tz = parse_timezone("America/New_York")?;
    /// let after = Utc.with_ymd_and_hms(2026, 3, 8, 5, 0, 0).unwrap();
    /// assert_eq!(s.next_after(after, tz), Some(Utc.with_ymd_and_hms(2026, 3, 8, 7, 0, 0).unwrap()));
    /// # Ok::<(), triggerd_domain::cron::ScheduleError>(())
    /// ```
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if !supported(after) {
            return None;
        }
        // croner works in whole seconds; truncating keeps "strictly after" exact, and the
        // check below guards it regardless.
        let mut cursor = after.trunc_subsecs(0).with_timezone(&tz);
        for _ in 0..MAX_SEARCH_STEPS {
            let next = self
                .cron
                .find_next_occurrence(&cursor, false)
                .ok()?
                .with_timezone(&Utc);
            if next > after {
                return Some(next);
            }
            cursor = next.with_timezone(&tz);
        }
        None
    }

    /// True when no date matches the pattern (`0 0 30 2 *`, `0 0 31 4 *`): it would never fire.
    /// Whether a date matches does not depend on the year beyond leap years and weekdays, which
    /// repeat within 400 years; croner searches far further.
    ///
    /// ```
    /// use triggerd_domain::cron::Schedule;
    /// assert!(Schedule::parse("0 0 30 2 *")?.never_fires());
    /// assert!(!Schedule::parse("0 0 29 2 *")?.never_fires()); // leap years
    /// # Ok::<(), triggerd_domain::cron::ScheduleError>(())
    /// ```
    pub fn never_fires(&self) -> bool {
        let from = DateTime::from_timestamp(946_684_800, 0).unwrap_or_default(); // 2000-01-01
        self.next_after(from, Tz::UTC).is_none()
    }

    /// The last slot at or before `at`, in time zone `tz`.
    fn previous_at_or_before(
        &self,
        at: DateTime<Utc>,
        tz: Tz,
        inclusive: bool,
    ) -> Option<DateTime<Utc>> {
        if !supported(at) {
            return None;
        }
        self.cron
            .find_previous_occurrence(&at.with_timezone(&tz), inclusive)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The first `limit` slots in `(from_exclusive, to_inclusive]`, oldest first.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use chrono_tz::Tz;
    /// use triggerd_domain::cron::Schedule;
    ///
    /// let s = Schedule::parse("*/20 * * * *")?;
    /// let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    /// let to = Utc.with_ymd_and_hms(2026, 1, 1, 1, 0, 0).unwrap();
    /// let slots = s.slots_between(from, to, Tz::UTC, 10);
    /// assert_eq!(slots.len(), 3); // 00:20, 00:40, 01:00
    /// # Ok::<(), triggerd_domain::cron::ScheduleError>(())
    /// ```
    pub fn slots_between(
        &self,
        from_exclusive: DateTime<Utc>,
        to_inclusive: DateTime<Utc>,
        tz: Tz,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut slots = Vec::new();
        let mut cursor = from_exclusive;
        while slots.len() < limit {
            match self.next_after(cursor, tz) {
                Some(slot) if slot <= to_inclusive => {
                    slots.push(slot);
                    cursor = slot;
                }
                _ => break,
            }
        }
        slots
    }

    /// The most recent `limit` slots in `(from_exclusive, to_inclusive]`, oldest first.
    ///
    /// Searches backwards from `to_inclusive`, so a long gap costs no more than `limit`
    /// searches.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use chrono_tz::Tz;
    /// use triggerd_domain::cron::Schedule;
    ///
    /// let s = Schedule::parse("0 * * * *")?;
    /// let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    /// let to = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
    /// let slots = s.latest_slots(from, to, Tz::UTC, 2);
    /// assert_eq!(slots, [
    ///     Utc.with_ymd_and_hms(2026, 1, 1, 23, 0, 0).unwrap(),
    ///     Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap(),
    /// ]);
    /// # Ok::<(), triggerd_domain::cron::ScheduleError>(())
    /// ```
    pub fn latest_slots(
        &self,
        from_exclusive: DateTime<Utc>,
        to_inclusive: DateTime<Utc>,
        tz: Tz,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut slots = Vec::new();
        let mut cursor = to_inclusive;
        let mut inclusive = true;
        while slots.len() < limit {
            match self.previous_at_or_before(cursor, tz, inclusive) {
                Some(slot) if slot > from_exclusive && slot <= to_inclusive => {
                    // A backward search must make progress; stop rather than loop otherwise.
                    if slots.last().is_some_and(|&last| slot >= last) {
                        break;
                    }
                    slots.push(slot);
                    cursor = slot;
                    inclusive = false;
                }
                _ => break,
            }
        }
        slots.reverse();
        slots
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        Schedule::parse(&source).map_err(serde::de::Error::custom)
    }
}

/// Parses an IANA time zone name (`UTC`, `Europe/London`, ...).
///
/// # Errors
/// [`ScheduleError::UnknownTimezone`] naming the unknown name.
///
/// ```
/// use triggerd_domain::cron::parse_timezone;
/// assert_eq!(parse_timezone("Asia/Kolkata")?, chrono_tz::Asia::Kolkata);
/// assert!(parse_timezone("Mars/Olympus_Mons").is_err());
/// # Ok::<(), triggerd_domain::cron::ScheduleError>(())
/// ```
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse().map_err(|_| ScheduleError::UnknownTimezone {
        name: name.to_owned(),
    })
}

/// Parses an RFC 3339 instant (any offset) into UTC.
///
/// # Errors
/// [`ScheduleError::InvalidInstant`] when `value` is not RFC 3339.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use triggerd_domain::cron::parse_instant;
/// assert_eq!(
///     parse_instant("2026-05-01T11:00:00+02:00")?,
///     Utc.with_ymd_and_hms(2026, 5, 1, 9, 0, 0).unwrap()
/// );
/// assert!(parse_instant("tomorrow").is_err());
/// # Ok::<(), triggerd_domain::cron::ScheduleError>(())
/// ```
pub fn parse_instant(value: &str) -> Result<DateTime<Utc>, ScheduleError> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ScheduleError::InvalidInstant {
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

/// When a cron trigger fires: on a recurring [`Schedule`] or once, at an instant (`at`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum When {
    /// A recurring five-field schedule.
    Schedule(Schedule),
    /// A one-time trigger: fires once at this instant, then has no next slot.
    At(DateTime<Utc>),
}

impl When {
    /// Builds a `When` from a cron trigger's `schedule` and `at` settings, exactly one of which
    /// must be given.
    ///
    /// # Errors
    /// [`ScheduleError::ScheduleOrAt`] for both or neither, otherwise the error of
    /// [`Schedule::parse`] or [`parse_instant`].
    ///
    /// ```
    /// use triggerd_domain::cron::When;
    /// assert!(matches!(When::from_config(Some("@daily"), None)?, When::Schedule(_)));
    /// assert!(matches!(When::from_config(None, Some("2026-05-01T09:00:00Z"))?, When::At(_)));
    /// assert!(When::from_config(None, None).is_err());
    /// # Ok::<(), triggerd_domain::cron::ScheduleError>(())
    /// ```
    pub fn from_config(schedule: Option<&str>, at: Option<&str>) -> Result<When, ScheduleError> {
        match (schedule, at) {
            (Some(s), None) => Schedule::parse(s).map(When::Schedule),
            (None, Some(a)) => parse_instant(a).map(When::At),
            _ => Err(ScheduleError::ScheduleOrAt),
        }
    }

    /// The first slot strictly after `after`: for [`When::At`], the instant if it is later
    /// than `after`, else `None` (the trigger then shows `next_fire_at: null`).
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use chrono_tz::Tz;
    /// use triggerd_domain::cron::When;
    ///
    /// let at = Utc.with_ymd_and_hms(2026, 5, 1, 9, 0, 0).unwrap();
    /// let when = When::At(at);
    /// assert_eq!(when.next_after(at - chrono::Duration::seconds(1), Tz::UTC), Some(at));
    /// assert_eq!(when.next_after(at, Tz::UTC), None);
    /// ```
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            When::Schedule(s) => s.next_after(after, tz),
            When::At(at) => (*at > after).then_some(*at),
        }
    }

    /// The most recent `limit` slots in `(from_exclusive, to_inclusive]`, oldest first (see
    /// [`Schedule::latest_slots`]); for [`When::At`], the instant if it lies in that range.
    pub fn latest_slots(
        &self,
        from_exclusive: DateTime<Utc>,
        to_inclusive: DateTime<Utc>,
        tz: Tz,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        match self {
            When::Schedule(s) => s.latest_slots(from_exclusive, to_inclusive, tz, limit),
            When::At(at) => {
                if limit > 0 && *at > from_exclusive && *at <= to_inclusive {
                    vec![*at]
                } else {
                    Vec::new()
                }
            }
        }
    }
}

/// What happens to slots missed while triggerd was down (`catch_up`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Skip missed slots.
    None,
    /// Fire one run, for the most recent missed slot (the default).
    #[default]
    Latest,
    /// Fire a run for each missed slot, at most [`CatchUp::MAX_SLOTS`]: the most recent ones.
    All,
}

impl CatchUp {
    /// The most missed slots [`CatchUp::All`] fires.
    pub const MAX_SLOTS: usize = 100;

    /// Every policy.
    pub const ALL: [CatchUp; 3] = [CatchUp::None, CatchUp::Latest, CatchUp::All];

    /// The policy's name in configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }

    /// The missed slots to fire, oldest first, given that slots up to and including
    /// `last_slot` have been handled and slots up to and including `now` are due.
    ///
    /// `None` fires nothing; `Latest` fires the most recent missed slot; `All` fires the most
    /// recent [`CatchUp::MAX_SLOTS`] missed slots (older ones are dropped: after a long outage,
    /// the recent past matters more than the distant one).
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use chrono_tz::Tz;
    /// use triggerd_domain::cron::{CatchUp, Schedule, When};
    ///
    /// let when = When::Schedule(Schedule::parse("0 * * * *")?);
    /// let last = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    /// let now = Utc.with_ymd_and_hms(2026, 1, 1, 3, 30, 0).unwrap();
    /// assert!(CatchUp::None.select(&when, last, now, Tz::UTC).is_empty());
    /// assert_eq!(
    ///     CatchUp::Latest.select(&when, last, now, Tz::UTC),
    ///     [Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap()]
    /// );
    /// assert_eq!(CatchUp::All.select(&when, last, now, Tz::UTC).len(), 3);
    /// # Ok::<(), triggerd_domain::cron::ScheduleError>(())
    /// ```
    pub fn select(
        self,
        when: &When,
        last_slot: DateTime<Utc>,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Vec<DateTime<Utc>> {
        let limit = match self {
            CatchUp::None => 0,
            CatchUp::Latest => 1,
            CatchUp::All => Self::MAX_SLOTS,
        };
        when.latest_slots(last_slot, now, tz, limit)
    }
}

/// What a firing round does with a trigger: the slots to fire now and the slots it skips.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// The slots to fire, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Slots that came due and are not fired, by the `catch_up` policy (counted up to
    /// [`Due::MAX_SKIPPED`], oldest first).
    pub skipped: Vec<DateTime<Utc>>,
}

impl Due {
    /// The most skipped slots a round reports per trigger (after a long outage there may be
    /// millions; they are not enumerated).
    pub const MAX_SKIPPED: usize = 100;
}

impl CatchUp {
    /// How late a slot may be fired and still count as on time rather than missed: a slot that
    /// came due less than this long ago fires under every policy, `none` included.
    pub const ON_TIME: Duration = Duration::seconds(60);

    /// The firing round of a trigger whose next slot is `next_due`, at `now`: every slot in
    /// `[next_due, now]` is due. The most recent one fires when it is on time
    /// ([`CatchUp::ON_TIME`]); the older ones — and the latest too, when it is late — are missed
    /// slots, handled by the policy: `none` skips them, `latest` fires the most recent due slot,
    /// `all` fires each (the most recent [`CatchUp::MAX_SLOTS`]).
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use chrono_tz::Tz;
    /// use triggerd_domain::cron::{CatchUp, Schedule, When};
    ///
    /// let when = When::Schedule(Schedule::parse("0 * * * *")?);
    /// let next = Utc.with_ymd_and_hms(2026, 1, 1, 1, 0, 0).unwrap();
    /// // On time: every policy fires the slot.
    /// let now = Utc.with_ymd_and_hms(2026, 1, 1, 1, 0, 2).unwrap();
    /// assert_eq!(CatchUp::None.due(&when, next, now, Tz::UTC).fire, [next]);
    /// // Down from 00:30 to 03:30: 01:00, 02:00 and 03:00 were missed.
    /// let now = Utc.with_ymd_and_hms(2026, 1, 1, 3, 30, 0).unwrap();
    /// let none = CatchUp::None.due(&when, next, now, Tz::UTC);
    /// assert!(none.fire.is_empty());
    /// assert_eq!(none.skipped.len(), 3);
    /// let latest = CatchUp::Latest.due(&when, next, now, Tz::UTC);
    /// assert_eq!(latest.fire, [Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap()]);
    /// assert_eq!(latest.skipped.len(), 2);
    /// assert_eq!(CatchUp::All.due(&when, next, now, Tz::UTC).fire.len(), 3);
    /// # Ok::<(), triggerd_domain::cron::ScheduleError>(())
    /// ```
    pub fn due(self, when: &When, next_due: DateTime<Utc>, now: DateTime<Utc>, tz: Tz) -> Due {
        if next_due > now {
            return Due::default();
        }
        let from = next_due - Duration::microseconds(1);
        let fire = match self {
            CatchUp::None => when
                .latest_slots(from, now, tz, 1)
                .into_iter()
                .filter(|slot| now - *slot < Self::ON_TIME)
                .collect(),
            CatchUp::Latest => when.latest_slots(from, now, tz, 1),
            CatchUp::All => when.latest_slots(from, now, tz, Self::MAX_SLOTS),
        };
        // Slots before the first fired one (or all, when none fires) are skipped.
        let until = fire
            .first()
            .map_or(now, |first| *first - Duration::microseconds(1));
        let skipped = match when {
            When::Schedule(s) => s.slots_between(from, until, tz, Due::MAX_SKIPPED),
            When::At(at) => (*at > from && *at <= until)
                .then_some(*at)
                .into_iter()
                .collect(),
        };
        Due { fire, skipped }
    }
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CatchUp {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CatchUp::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ScheduleError::UnknownCatchUp {
                found: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone as _, Timelike as _, Weekday};
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn tz(name: &str) -> Tz {
        parse_timezone(name).unwrap()
    }

    fn sched(p: &str) -> Schedule {
        Schedule::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    /// The next `n` slots after `after`.
    fn next_n(s: &Schedule, after: DateTime<Utc>, zone: Tz, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = after;
        for _ in 0..n {
            t = s.next_after(t, zone).unwrap();
            out.push(t);
        }
        out
    }

    // --- parsing ---

    #[test]
    fn five_fields_with_all_features_parse() {
        for p in [
            "* * * * *",
            "*/15 * * * *",
            "0 9-17 * * 1-5",
            "0,30 8,12,18 * * *",
            "0 0 ? * MON",
            "0 0 1 JAN,JUL ?",
            "0 9 * jan-mar mon-fri",
            "0 0 L * *",
            "0 0 LW * *",
            "0 0 15W * *",
            "0 0 * * 1#2",
            "0 0 * * 5L",
            "0 0 * * FRI#L",
            "0 0 * * 7",
            "5-55/10 * * * *",
            "  0 9 * * 1  ",
        ] {
            assert!(Schedule::parse(p).is_ok(), "{p}: {:?}", Schedule::parse(p));
        }
    }

    #[test]
    fn aliases_parse_and_mean_their_expansion() {
        let after = utc(2026, 1, 7, 12, 34); // a Wednesday
        let cases = [
            ("@hourly", utc(2026, 1, 7, 13, 0)),
            ("@daily", utc(2026, 1, 8, 0, 0)),
            ("@weekly", utc(2026, 1, 11, 0, 0)), // Sunday
            ("@monthly", utc(2026, 2, 1, 0, 0)),
            ("@yearly", utc(2027, 1, 1, 0, 0)),
            ("@annually", utc(2027, 1, 1, 0, 0)),
            ("@DAILY", utc(2026, 1, 8, 0, 0)),
        ];
        for (alias, expected) in cases {
            assert_eq!(
                sched(alias).next_after(after, Tz::UTC),
                Some(expected),
                "{alias}"
            );
        }
    }

    #[test]
    fn six_and_seven_field_patterns_are_refused_with_a_clear_message() {
        let err = Schedule::parse("0 0 9 * * *").unwrap_err();
        assert_eq!(err, ScheduleError::SecondsOrYears { found: 6 });
        assert!(
            err.to_string()
                .contains("seconds and years are not supported: use five fields")
        );
        assert_eq!(
            Schedule::parse("0 0 9 * * * 2026"),
            Err(ScheduleError::SecondsOrYears { found: 7 })
        );
    }

    #[test]
    fn numbers_out_of_range_name_the_field_and_its_range() {
        for (pattern, field, value, min, max) in [
            ("60 * * * *", "minute", 60, 0, 59),
            ("0 25 * * *", "hour", 25, 0, 23),
            ("0 9 32 * *", "day-of-month", 32, 1, 31),
            ("0 9 0 * *", "day-of-month", 0, 1, 31),
            ("0 9 * 13 *", "month", 13, 1, 12),
            ("0 9 * * 1-9", "day-of-week", 9, 0, 7),
            ("0 9 * * 1,2,8", "day-of-week", 8, 0, 7),
            ("0 9 * * FRI#6", "day-of-week #", 6, 1, 5),
        ] {
            let err = Schedule::parse(pattern).unwrap_err();
            assert_eq!(
                err,
                ScheduleError::FieldOutOfRange {
                    pattern: pattern.into(),
                    field,
                    value,
                    min,
                    max
                },
                "{pattern}"
            );
            let text = err.to_string();
            assert!(
                text.contains(&format!(
                    "the {field} field allows {min} to {max}, got {value}"
                )),
                "{text}"
            );
            assert!(!text.contains("Component error"), "{text}");
        }
    }

    #[test]
    fn other_malformed_patterns_name_the_problem() {
        assert_eq!(Schedule::parse("   "), Err(ScheduleError::Empty));
        assert_eq!(
            Schedule::parse("* * * *"),
            Err(ScheduleError::FieldCount { found: 4 })
        );
        assert_eq!(
            Schedule::parse("* * * * * * * *"),
            Err(ScheduleError::FieldCount { found: 8 })
        );
        assert!(matches!(
            Schedule::parse("@reboot"),
            Err(ScheduleError::UnknownAlias { .. })
        ));
        assert!(matches!(
            Schedule::parse("@daily 5"),
            Err(ScheduleError::UnknownAlias { .. })
        ));
        assert_eq!(
            Schedule::parse("0 0 1 * +MON"),
            Err(ScheduleError::AndModifier)
        );
        assert!(matches!(
            Schedule::parse("0 0 1 * M\u{d6}N"),
            Err(ScheduleError::NonAscii { .. })
        ));
        for bad in [
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 8",
            "a * * * *",
            "*/0 * * * *",
            "1-2-3 * * * *",
            "0/10 * * * *",
            "* * * * MON#6",
            "5-1/2 * * * *",
        ] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    ScheduleError::Invalid { .. } | ScheduleError::FieldOutOfRange { .. }
                ),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn schedule_serializes_as_its_pattern() {
        let s = sched("0 9 * * 1");
        assert_eq!(serde_json::to_value(&s).unwrap(), "0 9 * * 1");
        let back: Schedule = serde_json::from_str("\"0 9 * * 1\"").unwrap();
        assert_eq!(back, s);
        let err = serde_json::from_str::<Schedule>("\"0 0 9 * * *\"").unwrap_err();
        assert!(err.to_string().contains("seconds and years"));
        assert_eq!(s.to_string(), "0 9 * * 1");
        assert_eq!("0 9 * * 1".parse::<Schedule>().unwrap(), s);
    }

    #[test]
    fn timezones_are_iana_names() {
        assert_eq!(parse_timezone("UTC").unwrap(), Tz::UTC);
        assert_eq!(
            parse_timezone("Australia/Lord_Howe").unwrap(),
            chrono_tz::Australia::Lord_Howe
        );
        let err = parse_timezone("Europe/Londres").unwrap_err();
        assert_eq!(
            err,
            ScheduleError::UnknownTimezone {
                name: "Europe/Londres".into()
            }
        );
        assert!(err.to_string().contains("Europe/Londres"));
        assert!(parse_timezone("").is_err());
    }

    // --- next slot in several zones ---

    #[test]
    fn next_after_in_utc_is_strictly_after() {
        let s = sched("0 9 * * *");
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 8, 0), Tz::UTC),
            Some(utc(2026, 1, 1, 9, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 9, 0), Tz::UTC),
            Some(utc(2026, 1, 2, 9, 0))
        );
        let just_after = utc(2026, 1, 1, 9, 0) + Duration::milliseconds(1);
        assert_eq!(
            s.next_after(just_after, Tz::UTC),
            Some(utc(2026, 1, 2, 9, 0))
        );
        let just_before = utc(2026, 1, 1, 9, 0) - Duration::milliseconds(1);
        assert_eq!(
            s.next_after(just_before, Tz::UTC),
            Some(utc(2026, 1, 1, 9, 0))
        );
    }

    #[test]
    fn next_after_in_london_follows_bst() {
        let s = sched("0 9 * * *");
        let london = tz("Europe/London");
        // Winter: 09:00 GMT = 09:00Z; summer: 09:00 BST = 08:00Z.
        assert_eq!(
            s.next_after(utc(2026, 1, 15, 0, 0), london),
            Some(utc(2026, 1, 15, 9, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 7, 15, 0, 0), london),
            Some(utc(2026, 7, 15, 8, 0))
        );
    }

    #[test]
    fn next_after_in_new_york_and_kolkata() {
        let s = sched("0 9 * * *");
        assert_eq!(
            s.next_after(utc(2026, 1, 15, 0, 0), tz("America/New_York")),
            Some(utc(2026, 1, 15, 14, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 7, 15, 0, 0), tz("America/New_York")),
            Some(utc(2026, 7, 15, 13, 0))
        );
        // Kolkata is UTC+05:30 all year.
        assert_eq!(
            s.next_after(utc(2026, 1, 15, 0, 0), tz("Asia/Kolkata")),
            Some(utc(2026, 1, 15, 3, 30))
        );
        assert_eq!(
            s.next_after(utc(2026, 7, 15, 4, 0), tz("Asia/Kolkata")),
            Some(utc(2026, 7, 16, 3, 30))
        );
    }

    // --- DST ---

    #[test]
    fn fixed_time_in_spring_forward_gap_fires_once_after_the_gap() {
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
        let s = sched("30 2 * * *");
        let ny = tz("America/New_York");
        let slots = next_n(&s, utc(2026, 3, 7, 0, 0), ny, 3);
        assert_eq!(
            slots,
            [
                utc(2026, 3, 7, 7, 30), // 02:30 EST
                utc(2026, 3, 8, 7, 0),  // 03:00 EDT, the first instant after the gap
                utc(2026, 3, 9, 6, 30), // 02:30 EDT
            ]
        );
    }

    #[test]
    fn fixed_time_before_the_gap_does_not_also_fire_after_it() {
        // croner 4.0.3's fix: a daily job in the hour before the gap runs once.
        let s = sched("30 1 * * *");
        let ny = tz("America/New_York");
        let slots = next_n(&s, utc(2026, 3, 7, 12, 0), ny, 2);
        assert_eq!(slots, [utc(2026, 3, 8, 6, 30), utc(2026, 3, 9, 5, 30)]);
    }

    #[test]
    fn fixed_time_in_fall_back_fires_once_at_the_first_occurrence() {
        // New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let s = sched("30 1 * * *");
        let ny = tz("America/New_York");
        let slots = next_n(&s, utc(2026, 10, 31, 12, 0), ny, 2);
        assert_eq!(slots, [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]);
        // Asking from between the two occurrences does not yield the second one.
        assert_eq!(
            s.next_after(utc(2026, 11, 1, 6, 0), ny),
            Some(utc(2026, 11, 2, 6, 30))
        );
    }

    #[test]
    fn interval_across_fall_back_fires_at_both_occurrences() {
        let s = sched("*/30 * * * *");
        let ny = tz("America/New_York");
        // Local 01:00..02:00 spans 05:00Z..07:00Z on 2026-11-01.
        let slots = s.slots_between(utc(2026, 11, 1, 4, 59), utc(2026, 11, 1, 6, 59), ny, 100);
        assert_eq!(
            slots,
            [
                utc(2026, 11, 1, 5, 0),  // 01:00 EDT
                utc(2026, 11, 1, 5, 30), // 01:30 EDT
                utc(2026, 11, 1, 6, 0),  // 01:00 EST
                utc(2026, 11, 1, 6, 30), // 01:30 EST
            ]
        );
        // And from between the occurrences the next slot is the repeated 01:00.
        assert_eq!(
            s.next_after(utc(2026, 11, 1, 5, 45), ny),
            Some(utc(2026, 11, 1, 6, 0))
        );
    }

    #[test]
    fn interval_across_spring_forward_skips_the_missing_hour() {
        let s = sched("*/30 * * * *");
        let ny = tz("America/New_York");
        let slots = s.slots_between(utc(2026, 3, 8, 5, 59), utc(2026, 3, 8, 7, 30), ny, 100);
        assert_eq!(
            slots,
            [
                utc(2026, 3, 8, 6, 0),  // 01:00 EST
                utc(2026, 3, 8, 6, 30), // 01:30 EST
                utc(2026, 3, 8, 7, 0),  // 03:00 EDT
                utc(2026, 3, 8, 7, 30), // 03:30 EDT
            ]
        );
        // Hourly in London follows real time through the gap.
        let hourly = sched("0 * * * *");
        let london = tz("Europe/London");
        let slots = hourly.slots_between(
            utc(2026, 3, 28, 23, 30),
            utc(2026, 3, 29, 2, 0),
            london,
            100,
        );
        assert_eq!(
            slots,
            [
                utc(2026, 3, 29, 0, 0),
                utc(2026, 3, 29, 1, 0),
                utc(2026, 3, 29, 2, 0)
            ]
        );
    }

    #[test]
    fn lord_howe_half_hour_dst() {
        let lh = tz("Australia/Lord_Howe");
        // 2026-10-04 02:00 LHST (+10:30) jumps to 02:30 LHDT (+11).
        let gap = lh.with_ymd_and_hms(2026, 10, 4, 2, 15, 0);
        assert!(matches!(gap, chrono::LocalResult::None), "{gap:?}");
        let fixed = sched("15 2 * * *");
        assert_eq!(
            fixed.next_after(utc(2026, 10, 3, 12, 0), lh),
            Some(utc(2026, 10, 3, 15, 30)) // 02:30 LHDT
        );
        // 2026-04-05 02:00 LHDT (+11) falls back to 01:30 LHST (+10:30): 01:30..02:00 repeats.
        assert!(matches!(
            lh.with_ymd_and_hms(2026, 4, 5, 1, 45, 0),
            chrono::LocalResult::Ambiguous(..)
        ));
        let fixed = sched("45 1 * * *");
        let slots = next_n(&fixed, utc(2026, 4, 4, 12, 0), lh, 2);
        assert_eq!(slots, [utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)]);
        let interval = sched("*/15 1 * * *");
        let slots = interval.slots_between(utc(2026, 4, 4, 13, 0), utc(2026, 4, 4, 16, 0), lh, 100);
        assert_eq!(
            slots,
            [
                utc(2026, 4, 4, 14, 0),  // 01:00 LHDT
                utc(2026, 4, 4, 14, 15), // 01:15 LHDT
                utc(2026, 4, 4, 14, 30), // 01:30 LHDT
                utc(2026, 4, 4, 14, 45), // 01:45 LHDT
                utc(2026, 4, 4, 15, 0),  // 01:30 LHST
                utc(2026, 4, 4, 15, 15), // 01:45 LHST
            ]
        );
    }

    // --- day rules ---

    #[test]
    fn day_of_month_and_day_of_week_combine_with_or() {
        // January 2026: the 13th is a Tuesday; Fridays are the 2nd, 9th, 16th, ...
        let s = sched("0 0 13 * 5");
        let days: Vec<u32> = next_n(&s, utc(2026, 1, 1, 0, 0), Tz::UTC, 4)
            .iter()
            .map(|t| t.day())
            .collect();
        assert_eq!(days, [2, 9, 13, 16]);
        // A wildcard in one of them leaves the other alone.
        let s = sched("0 0 13 * *");
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 0, 0), Tz::UTC),
            Some(utc(2026, 1, 13, 0, 0))
        );
        let s = sched("0 0 ? * 5");
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 0, 0), Tz::UTC),
            Some(utc(2026, 1, 2, 0, 0))
        );
    }

    #[test]
    fn stepped_day_of_month_still_combines_with_or() {
        // Vixie cron treats a day-of-month starting with `*` (e.g. `*/2`) as a wildcard and
        // then ANDs the two fields; croner, and so triggerd, ORs any restricted fields, as
        // docs/schedules.md says. January 2026: odd days, or Mondays (the 5th, 12th, ...).
        let s = sched("0 0 */2 * 1");
        let days: Vec<u32> = next_n(&s, utc(2026, 1, 2, 0, 0), Tz::UTC, 4)
            .iter()
            .map(|t| t.day())
            .collect();
        assert_eq!(days, [3, 5, 7, 9]);
    }

    #[test]
    fn fixed_time_means_one_minute_and_one_hour() {
        for p in [
            "30 2 * * *",
            "0 0 * * 1",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
        ] {
            assert!(sched(p).is_fixed_time(), "{p}");
        }
        for p in [
            "@hourly",
            "* 2 * * *",
            "0,30 2 * * *",
            "0 1-3 * * *",
            "0 */2 * * *",
        ] {
            assert!(!sched(p).is_fixed_time(), "{p}");
        }
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        for zone in [
            Tz::UTC,
            tz("Australia/Lord_Howe"),
            tz("Pacific/Kiritimati"),
            tz("America/Adak"),
        ] {
            for t in [
                DateTime::<Utc>::MIN_UTC,
                DateTime::<Utc>::MAX_UTC,
                utc(1, 1, 1, 0, 0),
                utc(5000, 12, 31, 23, 59),
                utc(5001, 1, 1, 0, 0),
            ] {
                let s = sched("*/5 * * * *");
                let _ = s.next_after(t, zone);
                let _ = s.latest_slots(t, t, zone, 3);
                let _ = s.slots_between(t, t, zone, 3);
            }
        }
    }

    #[test]
    fn last_day_last_weekday_nearest_weekday_and_nth() {
        let after = utc(2026, 1, 31, 12, 0);
        // L: last day of February 2028 (leap year).
        assert_eq!(
            sched("0 0 L * *").next_after(utc(2028, 2, 1, 0, 0), Tz::UTC),
            Some(utc(2028, 2, 29, 0, 0))
        );
        // LW: last weekday; 2026-05-31 is a Sunday, so Friday 29th.
        assert_eq!(
            sched("0 0 LW * *").next_after(utc(2026, 5, 1, 0, 0), Tz::UTC),
            Some(utc(2026, 5, 29, 0, 0))
        );
        // 15W: 2026-02-15 is a Sunday, so Monday 16th.
        assert_eq!(
            sched("0 0 15W * *").next_after(after, Tz::UTC),
            Some(utc(2026, 2, 16, 0, 0))
        );
        // 1#2: second Monday of February 2026 is the 9th.
        assert_eq!(
            sched("0 0 * * 1#2").next_after(after, Tz::UTC),
            Some(utc(2026, 2, 9, 0, 0))
        );
        // 5L: last Friday of February 2026 is the 27th.
        assert_eq!(
            sched("0 0 * * 5L").next_after(after, Tz::UTC),
            Some(utc(2026, 2, 27, 0, 0))
        );
    }

    #[test]
    fn month_and_weekday_names() {
        let s = sched("0 9 * feb-mar MON-FRI");
        let t = s.next_after(utc(2026, 1, 10, 0, 0), Tz::UTC).unwrap();
        assert_eq!(t, utc(2026, 2, 2, 9, 0)); // Monday 2 February
        assert_eq!(t.weekday(), Weekday::Mon);
        let sunday = sched("0 0 * * 7")
            .next_after(utc(2026, 1, 1, 0, 0), Tz::UTC)
            .unwrap();
        assert_eq!(sunday.weekday(), Weekday::Sun);
    }

    #[test]
    fn rare_and_impossible_schedules_end_quickly() {
        let start = std::time::Instant::now();
        assert_eq!(
            sched("0 0 29 2 *").next_after(utc(2026, 1, 1, 0, 0), Tz::UTC),
            Some(utc(2028, 2, 29, 0, 0))
        );
        assert_eq!(
            sched("0 0 30 2 *").next_after(utc(2026, 1, 1, 0, 0), Tz::UTC),
            None
        );
        assert_eq!(
            sched("0 0 31 4,6,9,11 *").next_after(utc(2026, 1, 1, 0, 0), Tz::UTC),
            None
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    // --- catch-up ---

    #[test]
    fn latest_slots_match_forward_slots_across_dst() {
        let cases = [
            (
                "*/30 * * * *",
                "America/New_York",
                utc(2026, 3, 7, 0, 0),
                utc(2026, 3, 9, 0, 0),
            ),
            (
                "*/30 * * * *",
                "America/New_York",
                utc(2026, 10, 31, 0, 0),
                utc(2026, 11, 2, 0, 0),
            ),
            (
                "30 2 * * *",
                "America/New_York",
                utc(2026, 3, 1, 0, 0),
                utc(2026, 3, 15, 0, 0),
            ),
            (
                "30 1 * * *",
                "America/New_York",
                utc(2026, 10, 25, 0, 0),
                utc(2026, 11, 8, 0, 0),
            ),
            (
                "0 * * * *",
                "Europe/London",
                utc(2026, 3, 28, 0, 0),
                utc(2026, 3, 30, 0, 0),
            ),
            (
                "15 2 * * *",
                "Australia/Lord_Howe",
                utc(2026, 9, 30, 0, 0),
                utc(2026, 10, 8, 0, 0),
            ),
            (
                "45 1 * * *",
                "Australia/Lord_Howe",
                utc(2026, 4, 1, 0, 0),
                utc(2026, 4, 8, 0, 0),
            ),
            (
                "*/15 1 * * *",
                "Australia/Lord_Howe",
                utc(2026, 4, 3, 0, 0),
                utc(2026, 4, 7, 0, 0),
            ),
            (
                "0 0 13 * 5",
                "Asia/Kolkata",
                utc(2026, 1, 1, 0, 0),
                utc(2026, 4, 1, 0, 0),
            ),
        ];
        for (pattern, zone, from, to) in cases {
            let s = sched(pattern);
            let forward = s.slots_between(from, to, tz(zone), 1000);
            let backward = s.latest_slots(from, to, tz(zone), 1000);
            assert!(!forward.is_empty());
            assert_eq!(forward, backward, "{pattern} in {zone}");
            let last3 = s.latest_slots(from, to, tz(zone), 3);
            assert_eq!(last3, forward[forward.len() - 3..], "{pattern} in {zone}");
        }
    }

    #[test]
    fn catch_up_none_latest_all() {
        let when = When::Schedule(sched("*/10 * * * *"));
        let last = utc(2026, 1, 1, 0, 0);
        let now = utc(2026, 1, 1, 1, 5);
        assert!(CatchUp::None.select(&when, last, now, Tz::UTC).is_empty());
        assert_eq!(
            CatchUp::Latest.select(&when, last, now, Tz::UTC),
            [utc(2026, 1, 1, 1, 0)]
        );
        let all = CatchUp::All.select(&when, last, now, Tz::UTC);
        assert_eq!(all.len(), 6);
        assert_eq!(all.first(), Some(&utc(2026, 1, 1, 0, 10)));
        assert_eq!(all.last(), Some(&utc(2026, 1, 1, 1, 0)));
        // Nothing missed.
        assert!(
            CatchUp::Latest
                .select(&when, utc(2026, 1, 1, 1, 0), now, Tz::UTC)
                .is_empty()
        );
    }

    #[test]
    fn catch_up_all_keeps_the_most_recent_hundred() {
        let when = When::Schedule(sched("* * * * *"));
        let last = utc(2026, 1, 1, 0, 0);
        let now = utc(2026, 1, 2, 0, 0);
        let all = CatchUp::All.select(&when, last, now, Tz::UTC);
        assert_eq!(all.len(), CatchUp::MAX_SLOTS);
        assert_eq!(all.first(), Some(&utc(2026, 1, 1, 22, 21)));
        assert_eq!(all.last(), Some(&now));
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn catch_up_names_and_default() {
        assert_eq!(CatchUp::default(), CatchUp::Latest);
        for c in CatchUp::ALL {
            assert_eq!(c.as_str().parse::<CatchUp>(), Ok(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        assert!(matches!(
            "some".parse::<CatchUp>(),
            Err(ScheduleError::UnknownCatchUp { .. })
        ));
    }

    // --- one-time triggers ---

    #[test]
    fn at_fires_once_then_never() {
        let at = utc(2026, 5, 1, 9, 0);
        let when = When::At(at);
        assert_eq!(when.next_after(utc(2026, 4, 1, 0, 0), Tz::UTC), Some(at));
        assert_eq!(when.next_after(at, Tz::UTC), None);
        assert_eq!(
            CatchUp::Latest.select(&when, utc(2026, 4, 1, 0, 0), utc(2026, 6, 1, 0, 0), Tz::UTC),
            [at]
        );
        assert!(
            CatchUp::None
                .select(&when, utc(2026, 4, 1, 0, 0), utc(2026, 6, 1, 0, 0), Tz::UTC)
                .is_empty()
        );
        assert!(
            CatchUp::All
                .select(&when, at, utc(2026, 6, 1, 0, 0), Tz::UTC)
                .is_empty()
        );
    }

    #[test]
    fn instants_parse_as_rfc3339_only() {
        assert_eq!(
            parse_instant("2026-05-01T09:00:00Z").unwrap(),
            utc(2026, 5, 1, 9, 0)
        );
        assert_eq!(
            parse_instant("2026-05-01T09:00:00.250-04:00")
                .unwrap()
                .hour(),
            13
        );
        for bad in ["2026-05-01", "2026-05-01 09:00", "09:00", ""] {
            assert!(
                matches!(
                    parse_instant(bad),
                    Err(ScheduleError::InvalidInstant { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            When::from_config(Some("@daily"), Some("2026-05-01T09:00:00Z")),
            Err(ScheduleError::ScheduleOrAt)
        );
        assert!(matches!(
            When::from_config(Some("bad"), None),
            Err(ScheduleError::FieldCount { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Schedule::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_cron_like_input(
            s in "([0-9]{1,2}|\\*|\\?|L|W|LW|#|,|-|/|MON|jan|@daily|@| ){0,14}"
        ) {
            if let Ok(schedule) = Schedule::parse(&s) {
                let _ = schedule.next_after(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(), Tz::UTC);
            }
        }

        #[test]
        fn slot_searches_never_panic_at_any_instant(
            secs in DateTime::<Utc>::MIN_UTC.timestamp()..DateTime::<Utc>::MAX_UTC.timestamp(),
            pattern in prop_oneof![Just("*/7 * * * *"), Just("30 2 * * *"), Just("0 0 L 2 *")],
            zone in prop_oneof![Just("UTC"), Just("America/New_York"), Just("Australia/Lord_Howe"), Just("Pacific/Kiritimati")],
        ) {
            let Some(t) = DateTime::<Utc>::from_timestamp(secs, 0) else { return Ok(()) };
            let s = Schedule::parse(pattern).unwrap();
            if let Some(next) = s.next_after(t, tz(zone)) {
                prop_assert!(next > t);
            }
            let from = t.checked_sub_signed(Duration::days(1)).unwrap_or(t);
            let _ = s.latest_slots(from, t, tz(zone), 2);
        }

        #[test]
        fn next_after_is_strictly_later_and_minute_aligned(
            minute in 0u32..60, hour in 0u32..24, offset_secs in 0i64..(366 * 86_400),
            zone in prop_oneof![Just("UTC"), Just("America/New_York"), Just("Europe/London"), Just("Australia/Lord_Howe")],
        ) {
            let s = Schedule::parse(&format!("{minute} {hour} * * *")).unwrap();
            let after = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(offset_secs);
            let next = s.next_after(after, tz(zone)).unwrap();
            prop_assert!(next > after);
            prop_assert!(next - after <= Duration::hours(25));
            prop_assert_eq!(next.second(), 0);
        }
    }
}
