//! Signed playback URLs: `?t=<exp>.<user>.<asset>.<session>.<sig>`.
//!
//! A player that cannot send headers (`<video src>`, ffprobe, a smart TV's
//! native player) still has to prove, on every range request, that the
//! server let this user play this asset. The token carries the claims in
//! clear and a MAC over them:
//!
//! ```text
//! token   = exp "." user "." asset "." session "." sig
//! exp     = unix seconds, decimal           (the token is refused from exp on)
//! user    = user id, decimal                (positive, no leading zero)
//! asset   = media asset id, decimal         (positive, no leading zero)
//! session = playback session id, [A-Za-z0-9_-]{0,64}; empty: not bound to a session
//! sig     = base64url, no padding (43 chars) of
//!           HMAC-SHA256(key, "vedina-playback-v1\n" || exp "." user "." asset "." session)
//! ```
//!
//! The MAC covers the exact bytes received (a domain label first, so no other
//! HMAC made with the same key can be replayed as a token), and the decimal
//! fields must be canonical, so one claim set has exactly one token text.
//! Verification order: parse (malformed) → MAC, constant time (mismatch) →
//! asset binding (mismatch: a token for another asset) → expiry against the
//! `now` the caller passes (expired). A token is no longer than
//! [`MAX_TOKEN_LEN`] bytes. Session liveness is the caller's: it needs I/O.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::sigv4::{unix_now, SignatureFailure};

/// Prefix of every MAC input: a token MAC is never another message's MAC.
const DOMAIN: &[u8] = b"vedina-playback-v1\n";
/// Longest accepted token (a real one is under 150 bytes).
pub const MAX_TOKEN_LEN: usize = 256;
/// Longest session id.
pub const MAX_SESSION_LEN: usize = 64;
/// Shortest accepted key, in bytes.
pub const MIN_KEY_LEN: usize = 32;
const SIG_LEN: usize = 43; // base64url of 32 bytes, unpadded

/// What a valid token grants.
#[pyclass(module = "vedina._native", name = "PlaybackGrant", frozen, get_all)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user_id: u64,
    pub asset_id: u64,
    /// Unix seconds; the token is refused from this second on.
    pub expires_at: i64,
    /// The playback session it is bound to, or None.
    pub session_id: Option<String>,
}

#[pymethods]
impl Grant {
    fn __repr__(&self) -> String {
        let session = self.session_id.as_deref().map_or("None".to_owned(), |s| format!("'{s}'"));
        format!(
            "PlaybackGrant(user_id={}, asset_id={}, expires_at={}, session_id={session})",
            self.user_id, self.asset_id, self.expires_at
        )
    }
}

fn malformed<T>(msg: &str) -> Result<T, SignatureFailure> {
    Err(SignatureFailure::Malformed(msg.to_owned()))
}

/// A canonical positive decimal (no sign, no leading zero), at most 18 digits.
fn decimal(field: &str) -> Option<u64> {
    let ok = !field.is_empty() && field.len() <= 18 && field.bytes().all(|b| b.is_ascii_digit()) && !field.starts_with('0');
    if ok {
        field.parse().ok()
    } else {
        None
    }
}

fn valid_session(session: &str) -> bool {
    session.len() <= MAX_SESSION_LEN && session.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Signs and verifies playback tokens with one key (cloned keyed state per call).
pub struct Signer {
    keyed: Hmac<Sha256>,
}

impl Signer {
    pub fn new(key: &[u8]) -> Result<Self, String> {
        if key.len() < MIN_KEY_LEN {
            return Err(format!("playback key must be at least {MIN_KEY_LEN} bytes"));
        }
        let mut keyed = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
        keyed.update(DOMAIN);
        Ok(Self { keyed })
    }

    fn mac(&self, claims: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(claims);
        mac.finalize().into_bytes().into()
    }

    /// The token for these claims; `session` must match `[A-Za-z0-9_-]{0,64}`.
    pub fn sign(&self, user_id: u64, asset_id: u64, expires_at: i64, session: Option<&str>) -> Result<String, String> {
        let session = session.unwrap_or("");
        if !valid_session(session) {
            return Err("session id must be 0-64 characters of A-Z a-z 0-9 _ -".into());
        }
        if user_id == 0 || asset_id == 0 || user_id >= 10u64.pow(18) || asset_id >= 10u64.pow(18) {
            return Err("user and asset ids must be between 1 and 10**18 - 1".into());
        }
        if !(1..10i64.pow(18)).contains(&expires_at) {
            return Err("expires_at must be positive unix seconds".into());
        }
        let claims = format!("{expires_at}.{user_id}.{asset_id}.{session}");
        let sig = URL_SAFE_NO_PAD.encode(self.mac(claims.as_bytes()));
        Ok(format!("{claims}.{sig}"))
    }

    /// The grant of `token` for `asset_id` at `now` (unix seconds).
    pub fn verify(&self, token: &str, asset_id: u64, now: i64) -> Result<Grant, SignatureFailure> {
        if token.len() > MAX_TOKEN_LEN {
            return malformed("playback token too long");
        }
        let Some((claims, sig)) = token.rsplit_once('.') else {
            return malformed("playback token must be exp.user.asset.session.sig");
        };
        let fields: Vec<&str> = claims.split('.').collect();
        let [exp, user, asset, session] = fields[..] else {
            return malformed("playback token must be exp.user.asset.session.sig");
        };
        let (Some(exp), Some(user), Some(asset)) = (decimal(exp), decimal(user), decimal(asset)) else {
            return malformed("playback token fields exp, user and asset must be canonical positive integers");
        };
        if !valid_session(session) {
            return malformed("playback token session must be 0-64 characters of A-Z a-z 0-9 _ -");
        }
        let mut presented = [0u8; 32];
        // 43 unpadded base64url characters decode to exactly 32 bytes; a
        // non-canonical last character is refused by the decoder.
        if sig.len() != SIG_LEN || URL_SAFE_NO_PAD.decode_slice(sig, &mut presented).ok() != Some(32) {
            return malformed("playback token signature must be 43 base64url characters");
        }
        if !bool::from(self.mac(claims.as_bytes()).ct_eq(&presented)) {
            return Err(SignatureFailure::Mismatch("playback token signature does not match".into()));
        }
        if asset != asset_id {
            return Err(SignatureFailure::Mismatch("playback token is for another asset".into()));
        }
        let expires_at = exp as i64;
        if now >= expires_at {
            return Err(SignatureFailure::Expired("playback token expired".into()));
        }
        Ok(Grant {
            user_id: user,
            asset_id: asset,
            expires_at,
            session_id: (!session.is_empty()).then(|| session.to_owned()),
        })
    }
}

/// Python face: `PlaybackSigner(key)` with `sign(...)` and `verify(...)`.
#[pyclass(module = "vedina._native", name = "PlaybackSigner", frozen)]
pub struct PySigner {
    inner: Signer,
}

#[pymethods]
impl PySigner {
    #[new]
    fn new(key: &[u8]) -> PyResult<Self> {
        Signer::new(key).map(|inner| Self { inner }).map_err(PyValueError::new_err)
    }

    #[pyo3(signature = (*, user_id, asset_id, expires_at, session_id = None))]
    fn sign(&self, user_id: u64, asset_id: u64, expires_at: i64, session_id: Option<&str>) -> PyResult<String> {
        self.inner.sign(user_id, asset_id, expires_at, session_id).map_err(PyValueError::new_err)
    }

    #[pyo3(signature = (token, *, asset_id, now = None))]
    fn verify(&self, token: &str, asset_id: u64, now: Option<i64>) -> PyResult<Grant> {
        Ok(self.inner.verify(token, asset_id, now.unwrap_or_else(unix_now))?)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySigner>()?;
    m.add_class::<Grant>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_700_000_000;

    fn signer() -> Signer {
        Signer::new(KEY).unwrap()
    }

    fn token(session: Option<&str>) -> String {
        signer().sign(7, 42, NOW + 300, session).unwrap()
    }

    fn is_mismatch(r: Result<Grant, SignatureFailure>) -> bool {
        matches!(r, Err(SignatureFailure::Mismatch(_)))
    }

    #[test]
    fn round_trip_with_and_without_session() {
        let bound = token(Some("s-1_A"));
        let grant = signer().verify(&bound, 42, NOW).unwrap();
        assert_eq!(grant, Grant { user_id: 7, asset_id: 42, expires_at: NOW + 300, session_id: Some("s-1_A".into()) });
        let free = token(None);
        assert!(free.starts_with(&format!("{}.7.42..", NOW + 300)));
        assert_eq!(signer().verify(&free, 42, NOW).unwrap().session_id, None);
    }

    #[test]
    fn known_value_matches_python_hmac() {
        // Python: base64.urlsafe_b64encode(hmac.new(KEY, b"vedina-playback-v1\n1700000300.7.42.s",
        //         "sha256").digest()).rstrip(b"=")
        let t = signer().sign(7, 42, NOW + 300, Some("s")).unwrap();
        let (claims, sig) = t.rsplit_once('.').unwrap();
        assert_eq!(claims, "1700000300.7.42.s");
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
        mac.update(b"vedina-playback-v1\n1700000300.7.42.s");
        assert_eq!(sig, URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    }

    #[test]
    fn tampering_any_field_is_a_mismatch() {
        let t = token(Some("sess"));
        let parts: Vec<&str> = t.split('.').collect();
        for (i, replacement) in [(0, "1700009999"), (1, "8"), (3, "other")] {
            let mut forged = parts.clone();
            forged[i] = replacement;
            assert!(is_mismatch(signer().verify(&forged.join("."), 42, NOW)), "field {i}");
        }
        // the asset field changed to the asset asked for
        let mut forged = parts.clone();
        forged[2] = "43";
        assert!(is_mismatch(signer().verify(&forged.join("."), 43, NOW)));
        // dropping the session binding
        let mut unbound = parts.clone();
        unbound[3] = "";
        assert!(is_mismatch(signer().verify(&unbound.join("."), 42, NOW)));
        // a flipped signature character
        let mut sig: Vec<u8> = parts[4].bytes().collect();
        sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
        let mut forged = parts.clone();
        let sig = String::from_utf8(sig).unwrap();
        forged[4] = &sig;
        assert!(is_mismatch(signer().verify(&forged.join("."), 42, NOW)));
    }

    #[test]
    fn another_asset_or_key_is_a_mismatch() {
        let t = token(None);
        assert!(is_mismatch(signer().verify(&t, 43, NOW)));
        let other = Signer::new(b"another key of at least 32 bytes!").unwrap();
        assert!(is_mismatch(other.verify(&t, 42, NOW)));
    }

    #[test]
    fn expired_from_exp_on() {
        let t = token(None);
        assert!(signer().verify(&t, 42, NOW + 299).is_ok());
        assert!(matches!(signer().verify(&t, 42, NOW + 300), Err(SignatureFailure::Expired(_))));
        assert!(matches!(signer().verify(&t, 42, NOW + 10_000), Err(SignatureFailure::Expired(_))));
    }

    #[test]
    fn malformed_tokens() {
        let t = token(Some("s"));
        let sig = t.rsplit_once('.').unwrap().1.to_owned();
        for bad in [
            String::new(),
            "x".into(),
            "1.2.3.4".into(),
            format!("1700000300.7.42.{sig}"), // one field missing
            format!("1700000300.7.42.s.x.{sig}"),
            format!("01700000300.7.42.s.{sig}"), // leading zero
            format!("1700000300.+7.42.s.{sig}"),
            format!("1700000300.0.42.s.{sig}"),
            format!("1700000300.7.-42.s.{sig}"),
            format!("1700000300.7.42.s!.{sig}"),
            format!("1700000300.7.42.{}.{sig}", "s".repeat(65)),
            format!("1700000300.7.42.s.{}", &sig[..42]),
            format!("1700000300.7.42.s.{sig}="),
            format!("1700000300.7.42.s.{}", sig.replace(|c: char| c.is_ascii_alphanumeric(), "+")),
            format!("9999999999999999999.7.42.s.{sig}"),
            "a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(matches!(signer().verify(&bad, 42, NOW), Err(SignatureFailure::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn signing_refuses_bad_claims_and_short_keys() {
        assert!(Signer::new(b"short").is_err());
        let s = signer();
        assert!(s.sign(0, 1, NOW, None).is_err());
        assert!(s.sign(1, 0, NOW, None).is_err());
        assert!(s.sign(1, 1, 0, None).is_err());
        assert!(s.sign(1, 1, NOW, Some("a.b")).is_err());
        assert!(s.sign(1, 1, NOW, Some(&"a".repeat(65))).is_err());
    }
}
