//! The node's memory budget: how many bytes of large request and run work may be in memory at
//! once (`TRIGGERD_MEMORY_BUDGET_MB`, docs/configuration.md).
//!
//! Work whose size depends on what a client sends — a large webhook body being read and parsed, a
//! page of runs, one large run being read or executed — first *charges* its estimated cost
//! against the budget and gives it back when done (the [`Charge`] is dropped). Small work (a
//! typical webhook of a few KiB) is never charged, so the hot path never waits here.
//!
//! Two counters make it safe to charge a body whose cost is known only once it is read:
//! - **reading** (a quarter of the budget): held while a large body arrives, charged by its
//!   declared size, so at most that many bytes of bodies wait in memory for the budget;
//! - **the budget**: the whole cost (body, parsed value, copies) charged in one step once the
//!   body is read. One step: a request never holds part of the budget while it waits for more,
//!   so two requests can never wait on each other.
//!
//! A charge waits at most [`MemoryBudget::wait`] and then fails with [`Refused::Busy`] (the caller
//! answers 503 with `Retry-After`); a cost larger than the whole budget fails at once with
//! [`Refused::TooLarge`] (the caller answers 413 and says how to raise the budget).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default budget: 128 MiB.
pub const DEFAULT_MEMORY_BUDGET_BYTES: u64 = 128 * 1024 * 1024;
/// Default longest wait for the budget.
pub const DEFAULT_MEMORY_WAIT: Duration = Duration::from_secs(5);
/// Work below this many bytes is not charged.
pub const UNCHARGED_BYTES: u64 = 64 * 1024;

/// Permits count KiB (a permit count is at most `u32::MAX` per acquisition).
const UNIT: u64 = 1024;

/// Why a charge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The budget stayed busy for the whole wait.
    #[error(
        "the server's memory budget ({budget} bytes) stayed in use by other large requests for {} s",
        waited.as_secs_f64()
    )]
    Busy {
        /// The budget.
        budget: u64,
        /// How long it waited.
        waited: Duration,
    },
    /// The cost alone exceeds the budget.
    #[error("needs about {cost} bytes of memory, more than the server's whole budget of {budget}")]
    TooLarge {
        /// The estimated cost.
        cost: u64,
        /// The budget.
        budget: u64,
    },
}

/// The budget; cheap to clone (shared counters).
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    bytes: u64,
    wait: Duration,
    budget: Arc<Semaphore>,
    reading: Arc<Semaphore>,
}

/// A part of the budget in use; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// A charge of nothing (for uncharged work).
    pub fn none() -> Charge {
        Charge { _permit: None }
    }
}

fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT))
        .unwrap_or(u32::MAX)
        .max(1)
}

impl MemoryBudget {
    /// A budget of `bytes` (0: no budget, nothing is ever charged or refused), whose charges wait
    /// at most `wait`.
    pub fn new(bytes: u64, wait: Duration) -> MemoryBudget {
        if bytes == 0 {
            return MemoryBudget::unlimited();
        }
        let total = units(bytes) as usize;
        MemoryBudget {
            inner: Some(Arc::new(Inner {
                bytes,
                wait,
                budget: Arc::new(Semaphore::new(total)),
                reading: Arc::new(Semaphore::new((total / 4).max(1))),
            })),
        }
    }

    /// No budget.
    pub fn unlimited() -> MemoryBudget {
        MemoryBudget { inner: None }
    }

    /// The budget in bytes (`None`: unlimited).
    pub fn bytes(&self) -> Option<u64> {
        self.inner.as_ref().map(|i| i.bytes)
    }

    /// The longest a charge waits.
    pub fn wait(&self) -> Duration {
        self.inner.as_ref().map_or(Duration::ZERO, |i| i.wait)
    }

    /// Bytes of the budget in use now.
    pub fn in_use(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| {
            (units(i.bytes) as u64 - i.budget.available_permits() as u64) * UNIT
        })
    }

    /// Bytes of the reading allowance held now by large bodies being read.
    pub fn reading_in_use(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| {
            ((units(i.bytes) / 4).max(1) as u64 - i.reading.available_permits() as u64) * UNIT
        })
    }

    /// Holds `bytes` of the reading allowance while a large body arrives (capped at the whole
    /// allowance, so any body can be read, one at a time). Nothing for small bodies.
    pub async fn reading(&self, bytes: u64) -> Result<Charge, Refused> {
        let Some(inner) = &self.inner else {
            return Ok(Charge::none());
        };
        if bytes < UNCHARGED_BYTES {
            return Ok(Charge::none());
        }
        let allowance = (units(inner.bytes) / 4).max(1);
        acquire(inner, &inner.reading, units(bytes).min(allowance)).await
    }

    /// Charges `cost` bytes of work, waiting at most [`MemoryBudget::wait`]. Nothing for small
    /// work; [`Refused::TooLarge`] when `cost` exceeds the whole budget.
    pub async fn charge(&self, cost: u64) -> Result<Charge, Refused> {
        let Some(inner) = &self.inner else {
            return Ok(Charge::none());
        };
        if cost < UNCHARGED_BYTES {
            return Ok(Charge::none());
        }
        if cost > inner.bytes {
            return Err(Refused::TooLarge {
                cost,
                budget: inner.bytes,
            });
        }
        acquire(inner, &inner.budget, units(cost)).await
    }

    /// Charges `cost` bytes, or the whole budget when `cost` exceeds it (the work then runs
    /// alone), waiting at most [`MemoryBudget::wait`]: for reads whose size the client does not
    /// choose (one stored run).
    pub async fn charge_capped(&self, cost: u64) -> Result<Charge, Refused> {
        let capped = self.bytes().map_or(cost, |b| cost.min(b));
        self.charge(capped).await
    }

    /// Charges `cost` bytes for work that must go ahead (a run already accepted): waits as long
    /// as it takes, and a cost above the whole budget takes the whole budget (the work then runs
    /// alone).
    pub async fn charge_patiently(&self, cost: u64) -> Charge {
        let Some(inner) = &self.inner else {
            return Charge::none();
        };
        if cost < UNCHARGED_BYTES {
            return Charge::none();
        }
        let n = units(cost.min(inner.bytes));
        match inner.budget.clone().acquire_many_owned(n).await {
            Ok(permit) => Charge {
                _permit: Some(permit),
            },
            // The semaphore is never closed.
            Err(_) => Charge::none(),
        }
    }
}

async fn acquire(inner: &Inner, semaphore: &Arc<Semaphore>, n: u32) -> Result<Charge, Refused> {
    if let Ok(permit) = semaphore.clone().try_acquire_many_owned(n) {
        return Ok(Charge {
            _permit: Some(permit),
        });
    }
    match tokio::time::timeout(inner.wait, semaphore.clone().acquire_many_owned(n)).await {
        Ok(Ok(permit)) => Ok(Charge {
            _permit: Some(permit),
        }),
        _ => Err(Refused::Busy {
            budget: inner.bytes,
            waited: inner.wait,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[tokio::test]
    async fn small_work_is_free_and_large_work_waits_its_turn() {
        let budget = MemoryBudget::new(4 * MIB, Duration::from_millis(50));
        let free = budget.charge(1000).await.unwrap();
        assert_eq!(budget.in_use(), 0);
        let a = budget.charge(3 * MIB).await.unwrap();
        assert_eq!(budget.in_use(), 3 * MIB);
        // 2 MiB more does not fit: refused after the wait.
        let refused = budget.charge(2 * MIB).await.unwrap_err();
        assert!(matches!(refused, Refused::Busy { .. }), "{refused:?}");
        drop(a);
        let b = budget.charge(2 * MIB).await.unwrap();
        assert_eq!(budget.in_use(), 2 * MIB);
        drop((b, free));
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_waiting_charge_goes_ahead_when_the_budget_frees_up() {
        let budget = MemoryBudget::new(4 * MIB, Duration::from_secs(5));
        let a = budget.charge(3 * MIB).await.unwrap();
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.charge(2 * MIB).await.map(drop) }
        });
        tokio::task::yield_now().await;
        drop(a);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_refused_at_once_or_runs_alone() {
        let budget = MemoryBudget::new(4 * MIB, Duration::from_secs(5));
        let refused = budget.charge(5 * MIB).await.unwrap_err();
        assert_eq!(
            refused,
            Refused::TooLarge {
                cost: 5 * MIB,
                budget: 4 * MIB
            }
        );
        let alone = budget.charge_patiently(5 * MIB).await;
        assert_eq!(budget.in_use(), 4 * MIB);
        drop(alone);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn reading_is_a_quarter_of_the_budget_and_any_body_can_be_read() {
        let budget = MemoryBudget::new(4 * MIB, Duration::from_millis(50));
        let big = budget.reading(16 * MIB).await.unwrap();
        assert!(matches!(
            budget.reading(100 * 1024).await,
            Err(Refused::Busy { .. })
        ));
        // Reading does not use the budget itself.
        assert_eq!(budget.in_use(), 0);
        drop(big);
        budget.reading(100 * 1024).await.unwrap();
    }

    #[tokio::test]
    async fn no_budget_charges_nothing() {
        let budget = MemoryBudget::new(0, Duration::from_secs(1));
        assert_eq!(budget.bytes(), None);
        let _c = budget.charge(u64::MAX).await.unwrap();
        let _r = budget.reading(u64::MAX).await.unwrap();
        let _p = budget.charge_patiently(u64::MAX).await;
    }
}
