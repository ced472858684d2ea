//! The optional bandwidth cap shared by all downloads: a token bucket of bytes per
//! second, at most one second of burst, starting empty.
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug)]
pub struct Throttle {
    /// Bytes per second; 0: no cap.
    rate: u64,
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    pub fn new(rate: u64) -> Throttle {
        Throttle {
            rate,
            state: Mutex::new((0.0, Instant::now())),
        }
    }

    /// Take `n` bytes from the bucket; how long to wait before using them.
    fn reserve(&self, n: usize) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let rate = self.rate as f64;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * rate;
        // Debt (negative tokens) is allowed: later takers wait behind it.
        s.0 = (s.0 + refill).min(rate) - n as f64;
        s.1 = now;
        if s.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.0 / rate)
        }
    }

    /// Wait until `n` more bytes may be used.
    pub async fn take(&self, n: usize) {
        let wait = self.reserve(n);
        if !wait.is_zero() {
            async_io::Timer::after(wait).await;
        }
    }
}
