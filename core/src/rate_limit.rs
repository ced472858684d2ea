//! A per-client token bucket (Curio's MK12 HTTP routes allow 50 requests/s per IP).
//!
//! Time comes in as a monotonic nanosecond count from the caller. Memory is bounded:
//! past `max_clients` tracked clients, the ones whose buckets have refilled are
//! forgotten first, and if none has, the request is refused rather than tracked.
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_nanos: u64,
}

/// Token buckets keyed by client IP.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    max_clients: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// `per_second` sustained, up to `burst` at once, tracking at most `max_clients`.
    pub fn new(per_second: u32, burst: u32, max_clients: usize) -> Self {
        RateLimiter {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            max_clients: max_clients.max(1),
            buckets: HashMap::new(),
        }
    }

    /// May `client` make a request at `now_nanos`? Takes a token if so.
    pub fn allow(&mut self, client: IpAddr, now_nanos: u64) -> bool {
        if !self.buckets.contains_key(&client) && self.buckets.len() >= self.max_clients {
            self.forget_full(now_nanos);
            if self.buckets.len() >= self.max_clients {
                return false;
            }
        }
        let (per_second, burst) = (self.per_second, self.burst);
        let b = self.buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            last_nanos: now_nanos,
        });
        let elapsed = now_nanos.saturating_sub(b.last_nanos) as f64 / 1e9;
        b.tokens = (b.tokens + elapsed * per_second).min(burst);
        b.last_nanos = now_nanos.max(b.last_nanos);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How many clients are tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Drop the clients whose buckets would be full again by now: they carry no state.
    fn forget_full(&mut self, now_nanos: u64) {
        let (per_second, burst) = (self.per_second, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now_nanos.saturating_sub(b.last_nanos) as f64 / 1e9;
            b.tokens + elapsed * per_second < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn burst_then_sustained_rate() {
        let mut r = RateLimiter::new(50, 50, 100);
        assert!((0..50).all(|_| r.allow(ip(1), 0)));
        assert!(
            !r.allow(ip(1), 0),
            "the 51st request in the same instant is refused"
        );
        assert!(r.allow(ip(1), SEC / 50), "one token back after 20 ms");
        assert!(!r.allow(ip(1), SEC / 50));
        // Other clients have their own buckets.
        assert!(r.allow(ip(2), 0));
    }

    #[test]
    fn memory_is_bounded_and_idle_clients_are_forgotten() {
        let mut r = RateLimiter::new(1, 1, 2);
        assert!(r.allow(ip(1), 0));
        assert!(r.allow(ip(2), 0));
        // Both buckets are empty: a third client cannot be tracked yet.
        assert!(!r.allow(ip(3), 0));
        assert_eq!(r.tracked(), 2);
        // A second later both have refilled and carry no state: they make room.
        assert!(r.allow(ip(3), SEC));
        assert!(r.tracked() <= 2);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let mut r = RateLimiter::new(10, 1, 10);
        assert!(r.allow(ip(1), 5 * SEC));
        assert!(!r.allow(ip(1), SEC));
        assert!(r.allow(ip(1), 5 * SEC + SEC / 10));
    }
}
