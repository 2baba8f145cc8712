//! The Generic Cell Rate Algorithm (GCRA), as in redis-cell.
//!
//! GCRA is a leaky bucket that stores a single number per key: the TAT,
//! "theoretical arrival time", the instant at which the key would be back at
//! a full burst if no more requests came. Every accepted request pushes the
//! TAT forward by `cost` emission intervals; a request is refused when that
//! would push the TAT further than the burst allows into the future.
//!
//! EXACT FORMULAS (integers, nanoseconds; the cluster tier's Redis Lua script
//! must use the same ones, in the same integer unit, so both tiers agree.
//! Lua numbers are doubles: exact only up to 2^53, so the script should work
//! in microseconds or milliseconds, or use Redis TIME's two integers):
//!
//! ```text
//! T         = floor(period_ns / limit)     emission interval: one request's worth of time
//! tau       = T * burst                    delay-variation tolerance: how far ahead the TAT may go
//! increment = T * cost
//! tat0      = max(stored_tat, now)         (no key / stored 0 / TAT in the past = full burst)
//! new_tat   = tat0 + increment
//! allow_at  = new_tat - tau                the earliest instant this request fits
//!
//! if now >= allow_at:                      ALLOWED, store new_tat
//!     remaining   = floor((tau - (new_tat - now)) / T)
//!     retry_after = 0
//!     reset_after = new_tat - now
//! else:                                    DENIED, the TAT is NOT changed
//!     remaining   = max(0, floor((tau - (tat0 - now)) / T))
//!     retry_after = allow_at - now
//!     reset_after = tat0 - now
//! ```
//!
//! `limit` in the decision is `burst`: the most requests that can be made at
//! once, the number `remaining` counts down from (redis-cell's "limit"). From
//! idle exactly `burst` unit requests pass at the same instant, then one per
//! `T`. A request with `cost > burst` can never pass; it is refused as invalid
//! before the algorithm runs. Seconds in the decision are `ns / 1e9`.

/// Parameters of one limit. Build with [`Params::new`], which validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Emission interval T in ns.
    pub interval_ns: u64,
    /// Requests that may arrive at once from idle (>= 1).
    pub burst: u64,
    /// Cost of this request (default 1; 0 only inspects).
    pub cost: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcraError {
    InvalidParams(String),
}

impl Params {
    /// `limit` requests per `period_ns`, bursts of `burst`, this request costing `cost`.
    pub fn new(limit: u64, period_ns: u64, burst: u64, cost: u64) -> Result<Params, GcraError> {
        let bad = |m: &str| Err(GcraError::InvalidParams(m.to_owned()));
        if limit == 0 {
            return bad("limit must be >= 1");
        }
        if burst == 0 {
            return bad("burst must be >= 1");
        }
        if cost > burst {
            return bad("cost must not exceed burst: such a request could never be allowed");
        }
        let interval_ns = period_ns / limit;
        if interval_ns == 0 {
            return bad("period / limit must be at least 1 ns");
        }
        if interval_ns.checked_mul(burst).is_none_or(|tau| tau > i64::MAX as u64 / 4) {
            return bad("period * burst / limit is too large");
        }
        Ok(Params { interval_ns, burst, cost })
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// `burst`.
    pub limit: u64,
    pub remaining: u64,
    pub retry_after_ns: u64,
    pub reset_after_ns: u64,
    /// TAT to store when allowed (equal to the old TAT when denied).
    pub new_tat_ns: u64,
}

/// Decide a request for a key whose stored TAT is `tat_ns` (0 = unknown key).
pub fn decide(tat_ns: u64, now_ns: u64, p: &Params) -> Decision {
    // i128: no overflow for any u64 inputs, negative intermediate values allowed.
    let (now, t, tau) = (now_ns as i128, p.interval_ns as i128, (p.interval_ns * p.burst) as i128);
    let tat0 = (tat_ns as i128).max(now);
    let new_tat = tat0 + t * p.cost as i128;
    let allow_at = new_tat - tau;
    let clamp = |x: i128| x.clamp(0, u64::MAX as i128) as u64;
    if now >= allow_at {
        Decision {
            allowed: true,
            limit: p.burst,
            remaining: clamp((tau - (new_tat - now)) / t),
            retry_after_ns: 0,
            reset_after_ns: clamp(new_tat - now),
            new_tat_ns: clamp(new_tat),
        }
    } else {
        Decision {
            allowed: false,
            limit: p.burst,
            remaining: clamp((tau - (tat0 - now)) / t),
            retry_after_ns: clamp(allow_at - now),
            reset_after_ns: clamp(tat0 - now),
            new_tat_ns: tat_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// Run a request and store the TAT when allowed, like the table does.
    fn hit(tat: &mut u64, now: u64, p: &Params) -> Decision {
        let d = decide(*tat, now, p);
        if d.allowed {
            *tat = d.new_tat_ns;
        }
        d
    }

    #[test]
    fn burst_then_steady_rate() {
        // 10 per second (T = 100 ms), burst 5.
        let p = Params::new(10, S, 5, 1).unwrap();
        let now = 1_000 * S;
        let mut tat = 0;
        for expected_remaining in [4, 3, 2, 1, 0] {
            let d = hit(&mut tat, now, &p);
            assert!(d.allowed);
            assert_eq!((d.limit, d.remaining), (5, expected_remaining));
        }
        let d = hit(&mut tat, now, &p);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ns, S / 10); // exactly one interval
        assert_eq!(d.reset_after_ns, S / 2);
        assert_eq!(d.remaining, 0);
        // a denied request leaves the TAT alone
        assert_eq!(tat, now + S / 2);
        // 1 ns early: still denied, retry 1 ns; on time: allowed
        assert!(!hit(&mut tat, now + S / 10 - 1, &p).allowed);
        assert_eq!(decide(tat, now + S / 10 - 1, &p).retry_after_ns, 1);
        assert!(hit(&mut tat, now + S / 10, &p).allowed);
        // steady: one per interval over 10 s, nothing more
        let mut allowed = 0;
        for ms in (0..10_000).map(|i| now + S / 10 + (i + 1) * S / 1000) {
            allowed += hit(&mut tat, ms, &p).allowed as u32;
        }
        assert_eq!(allowed, 100);
    }

    #[test]
    fn cost_greater_than_one() {
        let p3 = Params::new(10, S, 5, 3).unwrap();
        let now = 50 * S;
        let mut tat = 0;
        let d = hit(&mut tat, now, &p3);
        assert!(d.allowed && d.remaining == 2);
        let d = hit(&mut tat, now, &p3);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 2);
        // needs one more interval of room: TAT = now + 300ms, needs <= now + 200ms
        assert_eq!(d.retry_after_ns, S / 10);
        let p2 = Params::new(10, S, 5, 2).unwrap();
        assert!(hit(&mut tat, now, &p2).allowed);
        assert!(Params::new(10, S, 5, 6).is_err());
    }

    #[test]
    fn idle_recovery() {
        let p = Params::new(2, S, 4, 1).unwrap(); // T = 500 ms
        let now = 7 * S;
        let mut tat = 0;
        for _ in 0..4 {
            assert!(hit(&mut tat, now, &p).allowed);
        }
        let d = hit(&mut tat, now, &p);
        assert!(!d.allowed);
        assert_eq!(d.reset_after_ns, 2 * S);
        // after reset_after the key is back at the full burst
        let d = hit(&mut tat, now + 2 * S, &p);
        assert!(d.allowed && d.remaining == 3);
        // a stored TAT in the past counts as "full burst"
        assert_eq!(decide(now, now + 100 * S, &p).remaining, 3);
        assert_eq!(decide(0, now, &p), decide(now - 1, now, &p));
    }

    #[test]
    fn invalid_params() {
        assert!(Params::new(0, S, 1, 1).is_err());
        assert!(Params::new(1, S, 0, 0).is_err());
        assert!(Params::new(10, 5, 1, 1).is_err());
        assert!(Params::new(1, u64::MAX, u64::MAX, 1).is_err());
    }
}
