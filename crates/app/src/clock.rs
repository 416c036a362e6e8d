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

    /// How long to sleep, in real time, for this clock to move on by `micros` (≤ 0: not at
    /// all). The system clock: exactly that; a [`ScaledClock`]: that divided by its speed.
    fn real_delay(&self, micros: i64) -> Duration {
        Duration::from_micros(micros.max(0) as u64)
    }
}

/// A clock that runs `speed` times faster than the system clock from an anchor instant: at the
/// anchor both show the same time. Several processes given the same anchor and speed agree on
/// the time. For end-to-end tests of schedules across processes (a minute a second at speed 60);
/// the server uses it only when `TRIGGERD_TEST_CLOCK` is set, and says so in its log.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    anchor_micros: i64,
    speed: u32,
}

impl ScaledClock {
    /// A clock running `speed` (≥ 1) times as fast as the system clock from `anchor_micros`.
    pub fn new(anchor_micros: i64, speed: u32) -> Self {
        ScaledClock {
            anchor_micros,
            speed: speed.max(1),
        }
    }

    /// Parses `TRIGGERD_TEST_CLOCK`'s value: `<anchor, ms since the epoch>x<speed>`, e.g.
    /// `1767225600000x60`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (anchor, speed) = text
            .split_once('x')
            .ok_or_else(|| format!("expected <anchor ms>x<speed>, got {text:?}"))?;
        let anchor: i64 = anchor
            .trim()
            .parse()
            .map_err(|_| format!("the anchor {anchor:?} is not a whole number of ms"))?;
        let speed: u32 = speed
            .trim()
            .parse()
            .ok()
            .filter(|s| (1..=10_000).contains(s))
            .ok_or_else(|| format!("the speed {speed:?} is not a whole number from 1 to 10000"))?;
        Ok(Self::new(anchor.saturating_mul(1000), speed))
    }
}

impl Clock for ScaledClock {
    fn now_micros(&self) -> i64 {
        let real = SystemClock.now_micros();
        self.anchor_micros + (real - self.anchor_micros) * i64::from(self.speed)
    }

    fn real_delay(&self, micros: i64) -> Duration {
        Duration::from_micros((micros.max(0) / i64::from(self.speed)) as u64)
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

    #[test]
    fn a_scaled_clock_runs_faster_from_its_anchor_and_scales_delays() {
        let real = SystemClock.now_micros();
        let clock = ScaledClock::parse(&format!("{}x60", real / 1000 - 10_000)).unwrap();
        // 10 s of real time since the anchor are 600 s of scaled time.
        let ahead = clock.now_micros() - real;
        assert!((589_000_000..=601_000_000).contains(&ahead), "{ahead}");
        assert_eq!(clock.real_delay(60_000_000), Duration::from_secs(1));
        assert_eq!(clock.real_delay(-5), Duration::ZERO);
        assert_eq!(SystemClock.real_delay(1_500), Duration::from_micros(1_500));
        assert!(ScaledClock::parse("12x0").is_err());
        assert!(ScaledClock::parse("abc").is_err());
    }
}
