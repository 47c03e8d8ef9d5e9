//! A token bucket per account, in process memory (`MaxUserTurn`).
//!
//! Each process (or Lambda instance) limits on its own, so the effective
//! limit across N processes is up to N times the configured one — good enough
//! to stop a runaway client, which is all the classic protocol promises.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::domain::AccountId;

/// Buckets kept before idle (full) ones are dropped.
const MAX_BUCKETS: usize = 100_000;

pub struct RateLimiter {
    /// Tokens added per second; 0 disables limiting.
    rate_per_sec: u32,
    /// Bucket capacity.
    burst: u32,
    buckets: Mutex<HashMap<AccountId, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32, burst: u32) -> RateLimiter {
        RateLimiter { rate_per_sec, burst: burst.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token from the account's bucket if there is one.
    pub fn allow(&self, account: &AccountId, now_ms: u64) -> bool {
        if self.rate_per_sec == 0 {
            return true;
        }
        let burst = f64::from(self.burst);
        let rate = f64::from(self.rate_per_sec);
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(account) {
            buckets.retain(|_, b| b.tokens + (now_ms.saturating_sub(b.last_ms) as f64) * rate / 1000.0 < burst);
        }
        let bucket = buckets.entry(account.clone()).or_insert(Bucket { tokens: burst, last_ms: now_ms });
        let elapsed = now_ms.saturating_sub(bucket.last_ms) as f64;
        bucket.tokens = (bucket.tokens + elapsed * rate / 1000.0).min(burst);
        bucket.last_ms = bucket.last_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        // GIVEN 2 per second with a burst of 3
        let rl = RateLimiter::new(2, 3);
        let a = AccountId("a".into());
        // WHEN 4 requests arrive at once THEN 3 pass
        let passed = (0..4).filter(|_| rl.allow(&a, 1_000)).count();
        assert_eq!(passed, 3);
        // WHEN half a second passes THEN one more passes, not two
        assert!(rl.allow(&a, 1_500));
        assert!(!rl.allow(&a, 1_500));
        // AND another account is not affected
        assert!(rl.allow(&AccountId("b".into()), 1_500));
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let rl = RateLimiter::new(0, 1);
        let a = AccountId("a".into());
        assert!((0..1000).all(|_| rl.allow(&a, 0)));
    }
}
