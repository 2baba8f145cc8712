//! A bounded cache of verified tokens.
//!
//! Key: the exact token string. Value: its claims, shared behind an `Arc`
//! (the Python layer builds a fresh dict from them on every hit, so callers
//! can never modify the cached copy). An entry is only ever inserted after the
//! full check, and a hit is only served inside the token's validity window,
//! so a hit answers exactly what a full verification would, as long as the
//! keys are unchanged: the owner clears the cache when the key set changes
//! (see `sync_generation`).
//!
//! Revocation is not handled here: a revoked but unexpired token stays a hit.
//! Callers check `jti` (or the session) themselves on every request.
//!
//! When full, expired entries go first, then the entry that expires soonest:
//! it has the least remaining use, and the order is known without tracking
//! recency (which would make every hit a write).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::validation::Window;

/// Default number of cached tokens.
pub const DEFAULT_CAPACITY: usize = 10_000;

pub type Claims = Arc<Map<String, Value>>;

struct Entry {
    claims: Claims,
    window: Window,
    order: (i64, u64),
}

/// Token string -> claims, bounded, expiring by each token's own window.
pub struct TokenCache {
    /// Maximum entries; 0 disables the cache.
    capacity: usize,
    entries: HashMap<Arc<str>, Entry>,
    /// (whole seconds of `valid_until`, insertion number) -> token, so the
    /// entry expiring soonest is always first.
    by_expiry: BTreeMap<(i64, u64), Arc<str>>,
    next_seq: u64,
    /// The key set generation these entries were verified under.
    generation: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            next_seq: 0,
            generation: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_expiry.clear();
    }

    /// Drop everything if the key set changed since the entries were added
    /// (a removed key must stop validating its tokens at once).
    pub fn sync_generation(&mut self, generation: u64) {
        if self.generation != generation {
            self.clear();
            self.generation = generation;
        }
    }

    /// The claims of `token` if cached and acceptable at `now`.
    pub fn get(&mut self, token: &str, now: f64) -> Option<Claims> {
        let entry = self.entries.get(token)?;
        if now >= entry.window.valid_until {
            self.remove(token);
            return None;
        }
        // Only reachable with an explicit `now` in the past (tests); the
        // full path will then report the token as immature.
        if now < entry.window.valid_from {
            return None;
        }
        Some(Arc::clone(&entry.claims))
    }

    /// Remember a token that just passed the full check.
    pub fn insert(&mut self, token: &str, claims: Claims, window: Window, now: f64) {
        if self.capacity == 0 {
            return;
        }
        self.remove(token);
        self.purge_expired(now);
        while self.entries.len() >= self.capacity {
            let Some((_, victim)) = self.by_expiry.pop_first() else { break };
            self.entries.remove(&victim);
        }
        let token: Arc<str> = Arc::from(token);
        // `as` saturates, so exp = 1e300 or -inf still orders correctly.
        let order = (window.valid_until.floor() as i64, self.next_seq);
        self.next_seq += 1;
        self.by_expiry.insert(order, Arc::clone(&token));
        self.entries.insert(token, Entry { claims, window, order });
    }

    fn remove(&mut self, token: &str) {
        if let Some(entry) = self.entries.remove(token) {
            self.by_expiry.remove(&entry.order);
        }
    }

    /// Drop entries whose whole second of expiry is before `now`; cheap
    /// because they are at the front of `by_expiry`.
    fn purge_expired(&mut self, now: f64) {
        let cutoff = now.floor() as i64;
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 >= cutoff {
                break;
            }
            let token = entry.remove();
            self.entries.remove(&token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(n: i64) -> Claims {
        Arc::new(json!({ "n": n }).as_object().unwrap().clone())
    }

    fn window(from: f64, until: f64) -> Window {
        Window { valid_from: from, valid_until: until }
    }

    #[test]
    fn hit_inside_window_only() {
        let mut c = TokenCache::new(10);
        c.insert("t", claims(1), window(100.0, 200.0), 150.0);
        assert_eq!(c.get("t", 150.0).unwrap()["n"], 1);
        assert!(c.get("t", 99.0).is_none(), "before nbf");
        assert_eq!(c.len(), 1, "kept: only a clock set back reaches here");
        assert!(c.get("t", 200.0).is_none(), "expired");
        assert_eq!(c.len(), 0, "expired entry dropped on lookup");
        assert!(c.get("other", 150.0).is_none());
    }

    #[test]
    fn bounded_and_evicts_soonest_expiry_then_expired() {
        let mut c = TokenCache::new(3);
        c.insert("a", claims(1), window(0.0, 500.0), 10.0);
        c.insert("b", claims(2), window(0.0, 300.0), 10.0);
        c.insert("c", claims(3), window(0.0, 400.0), 10.0);
        c.insert("d", claims(4), window(0.0, 600.0), 10.0);
        assert_eq!(c.len(), 3);
        assert!(c.get("b", 20.0).is_none(), "soonest expiry evicted");
        assert!(c.get("a", 20.0).is_some() && c.get("d", 20.0).is_some());
        // At t=450 "c" has expired and is purged on insert, "a" stays.
        c.insert("e", claims(5), window(0.0, 900.0), 450.0);
        assert!(c.get("a", 450.0).is_some());
        assert!(c.get("c", 100.0).is_none(), "purged");
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn reinsert_replaces_and_generation_clears() {
        let mut c = TokenCache::new(2);
        c.insert("a", claims(1), window(0.0, 500.0), 10.0);
        c.insert("a", claims(2), window(0.0, 500.0), 10.0);
        assert_eq!(c.len(), 1);
        assert_eq!(c.by_expiry.len(), 1);
        assert_eq!(c.get("a", 10.0).unwrap()["n"], 2);
        c.sync_generation(0);
        assert_eq!(c.len(), 1, "same generation keeps entries");
        c.sync_generation(1);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn zero_capacity_disables() {
        let mut c = TokenCache::new(0);
        assert!(!c.enabled());
        c.insert("a", claims(1), window(0.0, 500.0), 10.0);
        assert!(c.get("a", 10.0).is_none());
        assert!(c.is_empty());
    }
}
