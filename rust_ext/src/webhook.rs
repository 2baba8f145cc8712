//! Webhook signatures: `t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`.
//!
//! The scheme is Stripe's: the timestamp is signed with the body so an old
//! delivery cannot be replayed outside the tolerance window, and a header may
//! carry several `v1=` values while a verifier may hold several secrets, so
//! secrets can be rotated without a flag day (the sender signs with old and
//! new, the receiver accepts either). Unknown keys (`v0=`, future schemes) are
//! ignored. Comparisons are constant time.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use subtle::ConstantTimeEq;

use crate::sigv4::{hmac_sha256, unix_now, SignatureFailure};

/// Default accepted distance between the signed timestamp and now, in seconds.
pub const DEFAULT_TOLERANCE: i64 = 300;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> [u8; 32] {
    hmac_sha256(secret, &[timestamp.to_string().as_bytes(), b".", body])
}

/// The header value signing `body` at `timestamp` with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac(secret, timestamp, body)))
}

/// The parsed header: the timestamp and every `v1` signature.
fn parse(header: &str) -> Result<(i64, Vec<[u8; 32]>), SignatureFailure> {
    let malformed = |m: &str| Err(SignatureFailure::Malformed(m.to_owned()));
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            return malformed("webhook signature items must be key=value");
        };
        match key {
            "t" => {
                let valid = !value.is_empty() && value.len() <= 18 && value.bytes().all(|b| b.is_ascii_digit());
                if !valid || timestamp.replace(value.parse::<i64>().unwrap_or(0)).is_some() {
                    return malformed("webhook signature needs exactly one t=<unix seconds>");
                }
            }
            "v1" => {
                let mut sig = [0u8; 32];
                if hex::decode_to_slice(value, &mut sig).is_err() {
                    return malformed("v1 must be 64 hex digits");
                }
                signatures.push(sig);
            }
            _ => {} // other schemes are ignored
        }
    }
    let Some(timestamp) = timestamp else {
        return malformed("webhook signature needs t=<unix seconds>");
    };
    if signatures.is_empty() {
        return malformed("webhook signature has no v1= value");
    }
    Ok((timestamp, signatures))
}

/// Verify `header` for `body` against any of `secrets` (at least one).
pub fn verify<S: AsRef<[u8]>>(
    header: &str,
    secrets: &[S],
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), SignatureFailure> {
    let (timestamp, signatures) = parse(header)?;
    if (now - timestamp).abs() > tolerance {
        return Err(SignatureFailure::Expired(format!("webhook timestamp {timestamp} is more than {tolerance}s away from now")));
    }
    // Check every (secret, signature) pair without stopping early, so the time
    // taken does not tell which secret or which value matched.
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        let expected = mac(secret.as_ref(), timestamp, body);
        for sig in &signatures {
            matched |= expected.ct_eq(sig);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureFailure::Mismatch("no webhook signature matches".to_owned()))
    }
}

/// `t=<timestamp>,v1=<hex>` for `body`.
#[pyfunction]
#[pyo3(name = "sign_webhook")]
fn py_sign_webhook(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    sign(secret, timestamp, body)
}

/// Verify a webhook signature header; None on success, SignatureError subclasses otherwise.
#[pyfunction]
#[pyo3(name = "verify_webhook", signature = (header, secrets, body, *, now = None, tolerance = DEFAULT_TOLERANCE))]
fn py_verify_webhook(header: &str, secrets: Vec<Vec<u8>>, body: &[u8], now: Option<i64>, tolerance: i64) -> PyResult<()> {
    if secrets.is_empty() {
        return Err(PyValueError::new_err("verify_webhook needs at least one secret"));
    }
    Ok(verify(header, &secrets, body, now.unwrap_or_else(unix_now), tolerance)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_sign_webhook, m)?)?;
    m.add_function(wrap_pyfunction!(py_verify_webhook, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value() {
        // Python: hmac.new(b"whsec", b"1700000000.{}", sha256).hexdigest()
        let h = sign(b"whsec", 1_700_000_000, b"{}");
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
    }

    #[test]
    fn round_trip_rotation_and_tolerance() {
        let body = b"{\"event\":\"movie.published\"}";
        let old = sign(b"old", 1000, body);
        let new = sign(b"new", 1000, body);
        let both = format!("{},{}", old, new.trim_start_matches("t=1000,"));
        verify(&old, &[b"new".as_slice(), b"old"], body, 1000, 300).unwrap();
        verify(&both, &[b"new".as_slice()], body, 1200, 300).unwrap();
        verify(&both, &[b"old".as_slice()], body, 700, 300).unwrap();
        assert!(matches!(verify(&both, &[b"other".as_slice()], body, 1000, 300), Err(SignatureFailure::Mismatch(_))));
        assert!(matches!(verify(&old, &[b"old".as_slice()], b"tampered", 1000, 300), Err(SignatureFailure::Mismatch(_))));
        assert!(matches!(verify(&old, &[b"old".as_slice()], body, 1301, 300), Err(SignatureFailure::Expired(_))));
        // unknown schemes are ignored
        verify(&format!("{old},v0=zz"), &[b"old".as_slice()], body, 1000, 300).unwrap();
    }

    #[test]
    fn malformed_headers() {
        let sig = "0".repeat(64);
        for bad in [
            String::new(),
            format!("v1={sig}"),
            "t=1000".to_string(),
            format!("t=abc,v1={sig}"),
            format!("t=-5,v1={sig}"),
            format!("t=1,t=2,v1={sig}"),
            "t=1000,v1=xyz".to_string(),
            format!("t=1000;v1={sig}"),
        ] {
            assert!(matches!(verify(&bad, &[b"k".as_slice()], b"", 1000, 300), Err(SignatureFailure::Malformed(_))), "{bad:?}");
        }
    }
}
