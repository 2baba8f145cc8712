//! JSON Web Token verification and signing (RFC 7515, 7518, 7519, 8037).
//!
//! Layout: `keys` (keys bound to one algorithm, key sets by `kid`),
//! `validation` (JWS header rules, signature, claim checks), `cache` (bounded
//! cache of verified tokens), `errors` (the core's error enum) and `py` (the
//! thin Python layer, the only place that builds Python exceptions).
//! [`Verifier`] ties the pure-Rust parts together.

use std::sync::{Arc, Mutex, RwLock};

use pyo3::prelude::*;

pub mod cache;
pub mod errors;
pub mod keys;
mod py;
pub mod validation;

use cache::{Claims, TokenCache};
use errors::Result;
use keys::KeySet;
use validation::Options;

/// Verifies tokens against a shared key set with options fixed at build time.
pub struct Verifier {
    keys: Arc<RwLock<KeySet>>,
    options: Options,
    cache: Mutex<TokenCache>,
}

impl Verifier {
    /// `cache_capacity` 0 disables the cache (see [`cache::DEFAULT_CAPACITY`]).
    pub fn new(keys: Arc<RwLock<KeySet>>, options: Options, cache_capacity: usize) -> Self {
        Verifier { keys, options, cache: Mutex::new(TokenCache::new(cache_capacity)) }
    }

    /// Signature, header rules and claims; `now` in Unix seconds.
    pub fn verify(&self, token: &str, now: f64) -> Result<Claims> {
        // The read lock is held to the end, so the key set generation cannot
        // change between the cache lookup, the verification and the insert.
        let keys = self.keys.read().expect("key set lock poisoned");
        let generation = keys.generation();
        {
            let mut cache = self.cache.lock().expect("token cache lock poisoned");
            if cache.enabled() {
                cache.sync_generation(generation);
                if let Some(claims) = cache.get(token, now) {
                    return Ok(claims);
                }
            }
        }
        let payload = validation::verify_jws(&keys, token)?;
        let claims = validation::parse_claims(&payload)?;
        let window = validation::validate(&claims, &self.options, now)?;
        let claims = Arc::new(claims);
        let mut cache = self.cache.lock().expect("token cache lock poisoned");
        cache.insert(token, Arc::clone(&claims), window, now);
        Ok(claims)
    }

    /// Signature and header rules only; the raw payload bytes.
    pub fn verify_jws(&self, token: &str) -> Result<Vec<u8>> {
        let keys = self.keys.read().expect("key set lock poisoned");
        validation::verify_jws(&keys, token)
    }

    pub fn cache_size(&self) -> usize {
        // Report 0 once keys changed, even before the next verify clears it.
        let generation = self.keys.read().expect("key set lock poisoned").generation();
        let mut cache = self.cache.lock().expect("token cache lock poisoned");
        cache.sync_generation(generation);
        cache.len()
    }

    pub fn clear_cache(&self) {
        self.cache.lock().expect("token cache lock poisoned").clear();
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::register(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use errors::ErrorKind;

    fn setup(capacity: usize) -> (Arc<RwLock<KeySet>>, Verifier) {
        let keys = Arc::new(RwLock::new(KeySet::default()));
        keys.write().unwrap().add_hmac("k1", "HS256", &[9; 32]).unwrap();
        let options = Options { issuer: Some("vedina".into()), ..Options::default() };
        let verifier = Verifier::new(Arc::clone(&keys), options, capacity);
        (keys, verifier)
    }

    fn token(keys: &Arc<RwLock<KeySet>>, claims: &str) -> String {
        validation::sign(&keys.read().unwrap(), claims.as_bytes(), None).unwrap()
    }

    #[test]
    fn cache_hits_expire_with_the_token() {
        let (keys, v) = setup(10);
        let t = token(&keys, r#"{"exp":100,"iss":"vedina","sub":"u"}"#);
        assert_eq!(v.verify(&t, 50.0).unwrap()["sub"], "u");
        assert_eq!(v.cache_size(), 1);
        assert_eq!(v.verify(&t, 60.0).unwrap()["sub"], "u");
        assert_eq!(v.verify(&t, 100.0).unwrap_err().kind, ErrorKind::Expired);
        assert_eq!(v.cache_size(), 0);
    }

    #[test]
    fn failures_are_not_cached_and_key_changes_clear() {
        let (keys, v) = setup(10);
        let bad = token(&keys, r#"{"exp":100,"iss":"other"}"#);
        assert_eq!(v.verify(&bad, 50.0).unwrap_err().kind, ErrorKind::InvalidClaims);
        assert_eq!(v.cache_size(), 0);
        let t = token(&keys, r#"{"exp":100,"iss":"vedina"}"#);
        v.verify(&t, 50.0).unwrap();
        assert_eq!(v.cache_size(), 1);
        // Rotating out the key must stop its tokens at once, cache or not.
        assert!(keys.write().unwrap().remove("k1"));
        assert_eq!(v.cache_size(), 0);
        assert_eq!(v.verify(&t, 50.0).unwrap_err().kind, ErrorKind::KeyMismatch);
    }

    #[test]
    fn disabled_cache_stays_empty() {
        let (keys, v) = setup(0);
        let t = token(&keys, r#"{"exp":100,"iss":"vedina"}"#);
        v.verify(&t, 50.0).unwrap();
        v.verify(&t, 50.0).unwrap();
        assert_eq!(v.cache_size(), 0);
    }
}
