//! Token-bucket rate limits kept in memory, bounded in size.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::{Error, Result};

/// Most keys tracked; beyond it, full (idle) buckets are dropped first, then the oldest.
const MAX_KEYS: usize = 100_000;

/// A set of buckets, each refilled at `per_minute` tokens a minute up to `burst`.
pub struct RateLimiter {
    per_minute: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` events per key per minute, in bursts of as many.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        RateLimiter { per_minute, burst: per_minute, buckets: Mutex::new(HashMap::new()) }
    }

    /// A limiter allowing `per_hour` events per key per hour, in bursts of as many.
    pub fn per_hour(per_hour: u32) -> Self {
        let burst = f64::from(per_hour.max(1));
        RateLimiter { per_minute: burst / 60.0, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`, or says how many seconds until one is available.
    pub fn check(&self, key: &str) -> Result<()> {
        // The lock guards a plain map and is never held across an await.
        let mut buckets = self.buckets.lock().map_err(|_| Error::Internal("rate limiter poisoned".into()))?;
        let now = Instant::now();
        let rate = self.per_minute / 60.0;
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            let cap = self.burst;
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < cap);
            if buckets.len() >= MAX_KEYS
                && let Some(oldest) = buckets.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone())
            {
                buckets.remove(&oldest);
            }
        }
        // Known keys (the common case, e.g. every message a sender sends) cost no allocation.
        if !buckets.contains_key(key) {
            buckets.insert(key.to_string(), (self.burst, now));
        }
        let Some(entry) = buckets.get_mut(key) else {
            return Err(Error::Internal("rate limiter lost a key".into()));
        };
        let tokens = (entry.0 + now.duration_since(entry.1).as_secs_f64() * rate).min(self.burst);
        if tokens >= 1.0 {
            *entry = (tokens - 1.0, now);
            Ok(())
        } else {
            *entry = (tokens, now);
            Err(Error::TooManyRequests(((1.0 - tokens) / rate).ceil() as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn burst_then_refuse() {
        let l = super::RateLimiter::new(3);
        for _ in 0..3 {
            l.check("a").unwrap();
        }
        match l.check("a") {
            Err(crate::error::Error::TooManyRequests(s)) => assert!((1..=20).contains(&s), "{s}"),
            other => panic!("expected 429, got {other:?}"),
        }
        l.check("b").unwrap();
    }
}
