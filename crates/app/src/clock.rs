//! The clock every time-dependent decision reads: the system clock in the server, a
//! [`TestClock`] that tests move by hand (cron slots, retries, expiry, leases) — no sleeps.
//!
//! ```
//! use std::time::Duration;
//! use triggerd_app::clock::{Clock, TestClock};
//!
//! let clock = TestClock::new(1_700_000_000_000_000);
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(clock.now_micros(), 1_700_000_090_000_000);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A source of the current instant.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Microseconds since the Unix epoch, now.
    fn now_micros(&self) -> i64;

    /// Now, as a `DateTime` (for cron slots).
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.now_micros()).unwrap_or_default()
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    }
}

/// A clock that stands still until a test sets or advances it.
#[derive(Debug, Default)]
pub struct TestClock {
    micros: AtomicI64,
}

impl TestClock {
    /// A clock showing `micros` (microseconds since the epoch).
    pub fn new(micros: i64) -> Self {
        TestClock {
            micros: AtomicI64::new(micros),
        }
    }

    /// Shows `micros` from now on.
    pub fn set(&self, micros: i64) {
        self.micros.store(micros, Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.micros
            .fetch_add(by.as_micros() as i64, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_micros(&self) -> i64 {
        self.micros.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_after_2020_and_test_clock_moves_only_when_told() {
        assert!(SystemClock.now_micros() > 1_577_836_800_000_000);
        let clock = TestClock::new(5);
        assert_eq!(clock.now_micros(), 5);
        assert_eq!(clock.now_micros(), 5);
        clock.advance(Duration::from_millis(2));
        assert_eq!(clock.now_micros(), 2_005);
        clock.set(1_000_000);
        assert_eq!(clock.now().timestamp(), 1);
    }
}
