//! A rate limit on every authorization-server endpoint: a token bucket per endpoint family and replica. It bounds
//! what a flood can cost (registrations, key work, calls to the upstream provider); it does not tell callers
//! apart, since behind a proxy every caller has the proxy's address.

use std::sync::Mutex;
use std::time::Instant;

pub struct Bucket {
    capacity: f64,
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub fn per_minute(count: u32) -> Bucket {
        let capacity = f64::from(count.max(1));
        Bucket {
            capacity,
            per_second: capacity / 60.0,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let (tokens, last) = *state;
        let now = Instant::now();
        let refilled =
            (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.capacity);
        if refilled < 1.0 {
            *state = (refilled, now);
            return false;
        }
        *state = (refilled - 1.0, now);
        true
    }
}

pub struct Limits {
    pub registration: Bucket,
    /// `/authorize`, the consent form and `/callback`: each can cost a call to the provider.
    pub browser: Bucket,
    pub token: Bucket,
    pub metadata: Bucket,
}

impl Limits {
    pub fn new(registrations_per_minute: u32) -> Limits {
        Limits {
            registration: Bucket::per_minute(registrations_per_minute),
            browser: Bucket::per_minute(300),
            token: Bucket::per_minute(600),
            metadata: Bucket::per_minute(1200),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_beyond_the_capacity_is_refused() {
        let bucket = Bucket::per_minute(3);
        assert!((0..3).all(|_| bucket.allow()));
        assert!(!bucket.allow());
    }
}
