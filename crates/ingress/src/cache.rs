//! The webhook trigger cache and the rate-limit buckets.
//!
//! The hot path looks a token up here first: a hit costs one read lock and no database round
//! trip. Entries hold everything the request needs already parsed — the trigger's configuration,
//! the compiled workflow definition, the deployment — and expire after a short TTL so changes made
//! on other nodes show up quickly. Every change made on this node goes through `triggerd-app`,
//! whose [`TriggerChanges`] generation grows with it: an entry filled at an older generation is
//! not used (one atomic load per lookup, no hand-placed invalidation). Correctness never rests on
//! the cache: the write re-checks the token.
//!
//! Rate-limit buckets live beside the cache, keyed by trigger id, so an invalidation does not
//! refill them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use triggerd_app::TriggerChanges;
use triggerd_app::triggers::WebhookTrigger;

/// Entries beyond this are dropped wholesale (a bound, not an LRU: a cache miss is cheap).
const MAX_ENTRIES: usize = 100_000;

/// What the hot path needs to know about a webhook token.
#[derive(Debug)]
pub struct CachedTrigger {
    /// The trigger, typed.
    pub target: WebhookTrigger,
    /// The trigger's rate-limit bucket and activity counter (they outlive cache entries).
    pub runtime: Arc<TriggerRuntime>,
    /// When the entry was read from the database.
    pub loaded_at: Instant,
    /// The [`TriggerChanges`] generation it was read at.
    generation: u64,
}

impl CachedTrigger {
    /// An entry for `target` read at `generation` (see [`TriggerCache::generation`]).
    pub fn new(target: WebhookTrigger, runtime: Arc<TriggerRuntime>, generation: u64) -> Self {
        CachedTrigger {
            target,
            runtime,
            loaded_at: Instant::now(),
            generation,
        }
    }
}

/// Token → trigger cache with a generation counter so a fill that raced an invalidation is not
/// inserted.
#[derive(Debug)]
pub struct TriggerCache {
    entries: RwLock<HashMap<String, Arc<CachedTrigger>>>,
    runtimes: Mutex<HashMap<String, Arc<TriggerRuntime>>>,
    changes: Arc<TriggerChanges>,
    ttl: Duration,
}

impl TriggerCache {
    /// An empty cache whose entries live `ttl` and no longer than the next change in `changes`.
    pub fn new(ttl: Duration, changes: Arc<TriggerChanges>) -> Self {
        TriggerCache {
            entries: RwLock::new(HashMap::new()),
            runtimes: Mutex::new(HashMap::new()),
            changes,
            ttl,
        }
    }

    /// The current generation: read it BEFORE reading a trigger from the database, and give it
    /// to [`CachedTrigger::new`], so that a change committed meanwhile makes the entry stale.
    pub fn generation(&self) -> u64 {
        self.changes.generation()
    }

    /// A fresh entry for `token`: younger than the TTL and filled since the last change.
    pub fn get(&self, token: &str) -> Option<Arc<CachedTrigger>> {
        let generation = self.changes.generation();
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(token)
            .filter(|e| e.generation == generation && e.loaded_at.elapsed() < self.ttl)
            .cloned()
    }

    /// Stores a filled entry (a stale one is simply never used).
    pub fn insert(&self, token: &str, entry: Arc<CachedTrigger>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(token.to_owned(), entry);
    }

    /// The per-trigger state that outlives cache entries (created on first use).
    pub fn runtime(&self, trigger_id: &str) -> Arc<TriggerRuntime> {
        let mut runtimes = self.runtimes.lock().unwrap_or_else(|e| e.into_inner());
        if runtimes.len() >= MAX_ENTRIES {
            runtimes.clear();
        }
        runtimes.entry(trigger_id.to_owned()).or_default().clone()
    }
}

/// Per-trigger state kept across cache refills: the rate-limit bucket and the number of
/// activity rows written since the log was last trimmed.
#[derive(Debug, Default)]
pub struct TriggerRuntime {
    /// The token bucket of `rate_limit_per_minute`.
    pub bucket: Mutex<TokenBucket>,
    logged: AtomicU64,
}

impl TriggerRuntime {
    /// Counts one activity row; true every `every` rows, when the log should be trimmed.
    pub fn note_logged(&self, every: u64) -> bool {
        (self.logged.fetch_add(1, Ordering::Relaxed) + 1) % every.max(1) == 0
    }
}

/// A token bucket of `capacity` tokens refilled continuously at `capacity` per minute.
#[derive(Debug, Default)]
pub struct TokenBucket {
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// Takes one token at `now` from a bucket of `per_minute` capacity (0 = unlimited). On
    /// refusal returns the whole seconds until a token is free (at least 1).
    pub fn take(&mut self, per_minute: u32, now: Instant) -> Result<(), u64> {
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(per_minute);
        let rate = capacity / 60.0;
        self.tokens = match self.last {
            None => capacity,
            Some(last) => (self.tokens + now.saturating_duration_since(last).as_secs_f64() * rate)
                .min(capacity),
        };
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate;
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_capacity_then_refuses_with_retry_after() {
        let mut bucket = TokenBucket::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(bucket.take(3, t0), Ok(()));
        }
        // 3 per minute = one token every 20 s.
        assert_eq!(bucket.take(3, t0), Err(20));
        assert_eq!(bucket.take(3, t0 + Duration::from_secs(10)), Err(10));
        assert_eq!(bucket.take(3, t0 + Duration::from_secs(20)), Ok(()));
    }

    #[test]
    fn refill_is_capped_at_capacity() {
        let mut bucket = TokenBucket::default();
        let t0 = Instant::now();
        assert_eq!(bucket.take(2, t0), Ok(()));
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(bucket.take(2, later), Ok(()));
        assert_eq!(bucket.take(2, later), Ok(()));
        assert!(bucket.take(2, later).is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let mut bucket = TokenBucket::default();
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| bucket.take(0, t0).is_ok()));
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let mut bucket = TokenBucket::default();
        let t0 = Instant::now();
        assert!((0..6000).all(|_| bucket.take(6000, t0).is_ok()));
        assert_eq!(bucket.take(6000, t0), Err(1));
    }
}
