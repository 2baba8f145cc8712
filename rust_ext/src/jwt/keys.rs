//! Keys and key sets.
//!
//! Every key is bound to exactly one algorithm when it is loaded, and its
//! type is fixed then too: HMAC secrets come only from [`KeySet::add_hmac`],
//! asymmetric keys only from PEM. So a token can never make us use an RSA
//! public key as an HMAC secret (the classic "alg confusion" forgery): the
//! token's `alg` must equal the key's algorithm, and the key's material has
//! one type that only that algorithm's code path accepts.

use std::collections::HashMap;
use std::sync::Arc;

// One pkcs8 crate serves RSA, P-256 and Ed25519; its traits give from_*_pem.
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use hmac::{Hmac, KeyInit, Mac};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, DecodeRsaPublicKey as _};
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use sha2::{Sha256, Sha384, Sha512};

use super::errors::{fail, ErrorKind, Result};

/// Smallest RSA modulus we load, in bits (RFC 7518 section 3.3 requires 2048).
pub const MIN_RSA_BITS: usize = 2048;

/// The JWS algorithms this module implements (RFC 7518, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    ES256,
    EdDSA,
}

impl Algorithm {
    /// Parse a header or API `alg` name. `none` and anything unknown are
    /// rejected here, so no later code path can ever see an unsigned token.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            _ => return None,
        })
    }

    /// The registered JOSE name, as written in a token header.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }
}

/// A keyed HMAC state. Keeping the keyed state (rather than the raw secret)
/// lets each verification start from a clone, skipping the key schedule.
#[derive(Clone)]
enum HmacKey {
    S256(Hmac<Sha256>),
    S384(Hmac<Sha384>),
    S512(Hmac<Sha512>),
}

impl HmacKey {
    fn mac(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            HmacKey::S256(k) => k.clone().chain_update(msg).finalize().into_bytes().to_vec(),
            HmacKey::S384(k) => k.clone().chain_update(msg).finalize().into_bytes().to_vec(),
            HmacKey::S512(k) => k.clone().chain_update(msg).finalize().into_bytes().to_vec(),
        }
    }

    /// Constant-time comparison (`verify_slice`), and a wrong length fails.
    fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        match self {
            HmacKey::S256(k) => k.clone().chain_update(msg).verify_slice(tag).is_ok(),
            HmacKey::S384(k) => k.clone().chain_update(msg).verify_slice(tag).is_ok(),
            HmacKey::S512(k) => k.clone().chain_update(msg).verify_slice(tag).is_ok(),
        }
    }
}

/// What can check a signature; one variant per key type.
enum VerifyKey {
    Hmac(HmacKey),
    // RS256 and ES256 verify with ring (keys are parsed and checked by the
    // rsa/p256 crates first): several times faster than the pure-Rust maths,
    // and verification is what every request does.
    Rsa(ring::signature::UnparsedPublicKey<Vec<u8>>),
    Ec(ring::signature::UnparsedPublicKey<Vec<u8>>),
    Ed(ed25519_dalek::VerifyingKey),
}

fn rsa_verifier(public: &rsa::PublicKey) -> Result<VerifyKey> {
    use rsa::pkcs1::EncodeRsaPublicKey as _;
    let Ok(der) = public.to_pkcs1_der() else {
        return fail(ErrorKind::BadKey, "RSA public key cannot be encoded");
    };
    Ok(VerifyKey::Rsa(ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        der.as_bytes().to_vec(),
    )))
}

fn ec_verifier(public: &p256::ecdsa::VerifyingKey) -> VerifyKey {
    // ring takes the uncompressed SEC1 point; JWS ES256 signatures are raw R||S ("FIXED").
    VerifyKey::Ec(ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        public.to_sec1_point(false).as_bytes().to_vec(),
    ))
}

/// What can sign; present only for HMAC secrets and private keys.
enum SignKey {
    Hmac(HmacKey),
    Rsa(rsa::pkcs1v15::SigningKey<Sha256>),
    Ec(p256::ecdsa::SigningKey),
    Ed(ed25519_dalek::SigningKey),
}

/// One key: its algorithm, its verifier, and (for secrets and private keys)
/// its signer.
pub struct Key {
    alg: Algorithm,
    verify: VerifyKey,
    sign: Option<SignKey>,
}

impl Key {
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    pub fn can_sign(&self) -> bool {
        self.sign.is_some()
    }

    /// An HMAC key. The secret must be at least as long as the hash output
    /// (RFC 7518 section 3.2), which also stops a PEM public key (short and
    /// public) from being a usable secret by accident.
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Result<Key> {
        let (min, key) = match alg {
            Algorithm::HS256 => (32, Hmac::<Sha256>::new_from_slice(secret).map(HmacKey::S256)),
            Algorithm::HS384 => (48, Hmac::<Sha384>::new_from_slice(secret).map(HmacKey::S384)),
            Algorithm::HS512 => (64, Hmac::<Sha512>::new_from_slice(secret).map(HmacKey::S512)),
            _ => return fail(ErrorKind::BadKey, "an HMAC secret needs alg HS256, HS384 or HS512"),
        };
        if secret.len() < min {
            return fail(ErrorKind::BadKey, "HMAC secret is shorter than the hash output");
        }
        let Ok(key) = key else {
            return fail(ErrorKind::BadKey, "HMAC secret rejected");
        };
        Ok(Key { alg, verify: VerifyKey::Hmac(key.clone()), sign: Some(SignKey::Hmac(key)) })
    }

    /// A public key from PEM (`PUBLIC KEY`, or `RSA PUBLIC KEY` for RS256).
    /// It verifies only; it can never be used as an HMAC secret.
    pub fn public_pem(alg: Algorithm, pem: &[u8]) -> Result<Key> {
        let pem = pem_str(pem)?;
        let verify = match alg {
            Algorithm::RS256 => {
                let public = rsa::PublicKey::from_public_key_pem(pem)
                    .or_else(|_| rsa::PublicKey::from_pkcs1_pem(pem));
                let Ok(public) = public else {
                    return fail(ErrorKind::BadKey, "PEM is not an RSA public key");
                };
                check_rsa_size(&public)?;
                rsa_verifier(&public)?
            }
            Algorithm::ES256 => match p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
                Ok(k) => ec_verifier(&k),
                Err(_) => return fail(ErrorKind::BadKey, "PEM is not a P-256 public key"),
            },
            Algorithm::EdDSA => match ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
                Ok(k) => VerifyKey::Ed(k),
                Err(_) => return fail(ErrorKind::BadKey, "PEM is not an Ed25519 public key"),
            },
            _ => return fail(ErrorKind::BadKey, "HMAC keys come from add_hmac_key, not from PEM"),
        };
        Ok(Key { alg, verify, sign: None })
    }

    /// A private key from unencrypted PEM (`PRIVATE KEY`, i.e. PKCS#8, or
    /// `RSA PRIVATE KEY` for RS256). It signs and verifies.
    pub fn private_pem(alg: Algorithm, pem: &[u8]) -> Result<Key> {
        let pem = pem_str(pem)?;
        let (verify, sign) = match alg {
            Algorithm::RS256 => {
                let private = rsa::PrivateKey::from_pkcs8_pem(pem)
                    .or_else(|_| rsa::PrivateKey::from_pkcs1_pem(pem));
                let Ok(private) = private else {
                    return fail(ErrorKind::BadKey, "PEM is not an RSA private key");
                };
                let public = private.to_public_key();
                check_rsa_size(&public)?;
                (rsa_verifier(&public)?, SignKey::Rsa(rsa::pkcs1v15::SigningKey::new(private)))
            }
            Algorithm::ES256 => match p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
                Ok(k) => (ec_verifier(k.verifying_key()), SignKey::Ec(k)),
                Err(_) => return fail(ErrorKind::BadKey, "PEM is not a P-256 private key"),
            },
            Algorithm::EdDSA => match ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
                Ok(k) => (VerifyKey::Ed(k.verifying_key()), SignKey::Ed(k)),
                Err(_) => return fail(ErrorKind::BadKey, "PEM is not an Ed25519 private key"),
            },
            _ => return fail(ErrorKind::BadKey, "HMAC keys come from add_hmac_key, not from PEM"),
        };
        Ok(Key { alg, verify, sign: Some(sign) })
    }

    /// Check `sig` over `msg`. The caller has already checked that the token's
    /// `alg` equals `self.alg`; the match below can only pair a key with its
    /// own algorithm's code.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<()> {
        let ok = match &self.verify {
            VerifyKey::Hmac(k) => k.verify(msg, sig),
            VerifyKey::Rsa(k) => k.verify(msg, sig).is_ok(),
            // Raw R||S (64 bytes) as JWS requires, not DER. High-S is accepted
            // on purpose: other JWT libraries emit it and P-256 does not forbid it.
            VerifyKey::Ec(k) => sig.len() == 64 && k.verify(msg, sig).is_ok(),
            // verify_strict rejects small-order keys and non-canonical R.
            VerifyKey::Ed(k) => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_strict(msg, &s).is_ok()),
        };
        if !ok {
            return fail(ErrorKind::BadSignature, "signature verification failed");
        }
        Ok(())
    }

    /// Sign `msg`; fails for a public-only key.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let Some(signer) = &self.sign else {
            return fail(ErrorKind::BadKey, "this key is public and cannot sign");
        };
        Ok(match signer {
            SignKey::Hmac(k) => k.mac(msg),
            SignKey::Rsa(k) => match k.try_sign(msg) {
                Ok(s) => s.to_vec(),
                Err(_) => return fail(ErrorKind::BadKey, "RSA signing failed"),
            },
            SignKey::Ec(k) => {
                let s: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(k, msg);
                s.to_bytes().to_vec()
            }
            SignKey::Ed(k) => ed25519_dalek::Signer::sign(k, msg).to_bytes().to_vec(),
        })
    }
}

fn pem_str(pem: &[u8]) -> Result<&str> {
    match std::str::from_utf8(pem) {
        Ok(s) => Ok(s),
        Err(_) => fail(ErrorKind::BadKey, "PEM is not ASCII text"),
    }
}

fn check_rsa_size(public: &rsa::PublicKey) -> Result<()> {
    if public.size() * 8 < MIN_RSA_BITS {
        return fail(ErrorKind::BadKey, "RSA key is shorter than 2048 bits");
    }
    Ok(())
}

/// Keys by `kid`. Several may be active at once (rotation). Every change
/// bumps `generation`, which verifiers compare to drop their token caches.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<Key>>,
    generation: u64,
}

impl KeySet {
    /// Add `key` under `kid`. A kid already present is an error rather than a
    /// silent replacement, so a rotation mistake cannot swap a key unnoticed.
    pub fn insert(&mut self, kid: &str, key: Key) -> Result<()> {
        if self.keys.contains_key(kid) {
            return fail(ErrorKind::BadKey, "kid already present; remove it first");
        }
        self.keys.insert(kid.to_owned(), Arc::new(key));
        self.generation += 1;
        Ok(())
    }

    pub fn add_hmac(&mut self, kid: &str, alg: &str, secret: &[u8]) -> Result<()> {
        let key = Key::hmac(parse_alg(alg)?, secret)?;
        self.insert(kid, key)
    }

    pub fn add_public_pem(&mut self, kid: &str, alg: &str, pem: &[u8]) -> Result<()> {
        let key = Key::public_pem(parse_alg(alg)?, pem)?;
        self.insert(kid, key)
    }

    pub fn add_private_pem(&mut self, kid: &str, alg: &str, pem: &[u8]) -> Result<()> {
        let key = Key::private_pem(parse_alg(alg)?, pem)?;
        self.insert(kid, key)
    }

    /// Remove a key; true if it was present.
    pub fn remove(&mut self, kid: &str) -> bool {
        let removed = self.keys.remove(kid).is_some();
        if removed {
            self.generation += 1;
        }
        removed
    }

    /// The kids, sorted (stable output for callers and tests).
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.keys.keys().cloned().collect();
        kids.sort();
        kids
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Changes on every add and remove.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The key for a token header's `kid`. Without a kid the set must hold
    /// exactly one key; guessing among several would let a token pick its key.
    pub fn select_for_verify(&self, kid: Option<&str>) -> Result<&Key> {
        match kid {
            Some(kid) => match self.keys.get(kid) {
                Some(key) => Ok(key),
                None => fail(ErrorKind::KeyMismatch, "token kid is not in the key set"),
            },
            None if self.keys.len() == 1 => Ok(self.keys.values().next().expect("one key")),
            None => fail(ErrorKind::KeyMismatch, "token has no kid and the key set does not hold exactly one key"),
        }
    }

    /// The signing key for `encode`: the named one, or the only one that can sign.
    pub fn select_for_sign(&self, kid: Option<&str>) -> Result<(&str, &Key)> {
        if let Some(kid) = kid {
            let Some((kid, key)) = self.keys.get_key_value(kid) else {
                return fail(ErrorKind::BadKey, "kid is not in the key set");
            };
            if !key.can_sign() {
                return fail(ErrorKind::BadKey, "this key is public and cannot sign");
            }
            return Ok((kid, key));
        }
        let mut signers = self.keys.iter().filter(|(_, k)| k.can_sign());
        match (signers.next(), signers.next()) {
            (Some((kid, key)), None) => Ok((kid, key)),
            (None, _) => fail(ErrorKind::BadKey, "the key set holds no signing key"),
            (Some(_), Some(_)) => fail(ErrorKind::BadKey, "several signing keys; pass kid"),
        }
    }
}

fn parse_alg(alg: &str) -> Result<Algorithm> {
    match Algorithm::parse(alg) {
        Some(a) => Ok(a),
        None => fail(ErrorKind::BadKey, "unsupported alg (use HS256, HS384, HS512, RS256, ES256 or EdDSA)"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Fixed test keys, generated once with `openssl genpkey`; only for tests.
    /// (Private test keys of no value; they sign nothing outside these tests.)
    pub const EC_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPBDk0pMZFUCmF8CN
Jv6gYnSnq7Uz7CCR6yQzC+tAdz+hRANCAARmC4nktKmiqbEFEF0dEx1ifw0SQ4oh
+iJLfDEJHY28NhITeWtoWytzUz75/vYFrMrKHPVHrvqSrULTRez0VNPB
-----END PRIVATE KEY-----
";
    pub const ED_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIdiDwnmep5gkhMQzR8bgW6KP7n1PowUN+66RCO9kuF7
-----END PRIVATE KEY-----
";
    pub const RSA_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCYdFjF5QSI4Dgs
u424BlhNaOrUdwleP702yPf8GPPmx8tO/F8aZEJIhg0QSpRLSD5aSrTa/NBYIUdl
yD4L8+pfbq/2tKrKEpANnkaS12qMFe6y6PfhoJ3bVtXo4N0hrZ+he/AqHjCXVHwS
QVyoEBPHGscKilk4ZNEWdMa/gcIb2UUvkLzgYKg6i0pnZN9v1N3e8dv5NUYyJxuU
BNA99gj5VM5gMchgfoMg1ak2TbnYPxBesZa4joktvXwPpPQ6G8b27A3WVNXrAqVr
jpUPyRwYAgnwSp4AlVwJ/0+7RL0UmDDHu4my+c20pBmAQrQmNXhA+UDYDp1qdMdL
1O+s73ivAgMBAAECggEAA44D1FT+0/Y1jnEENibSY5rLqoDMfh8YyyJW7e1UzFbi
RNA2TiR0GW0Ho2TUc0DsUJrgOHYRTD6LSt0KwOG0wvmO9emPaXfoOYdJlN5Gi9Xf
hxNO43PP2nbd+//Gst2OFMFKuKCwP1xnDfrNu7l26Ql4eDLIEubicognMcQq5Uf4
EV021wao3aqEBejUNU4UtjRyxKEnFqZPlr4bOjGwcJDbs4hYX6bpIoli5u3zLRW+
LlM+c6NjFKLBaAcd1qWSa/qUnJLbGVFveXSSrMIrNHUnMSLSZ4JlZvF/sXUloWOB
2rhFdmE5/ygJffjuvndKgyUG/Oq/At7GKPWkvzvDCQKBgQDWb7N/2J9A8KkZ6ata
6rriN15irEWYLHkEhlBB7/jW9DE1SGLklejFmVCTeTvOabMbS05jebkZQDjM+aPS
gvxqJEt8W48iXK3GmU5bMBnO0aRAzhUryZIqhIQU0KZyH9vib+3+qACx6/4XPhsG
5eYRjC9gXFKfSgwSiLuTJ0PVowKBgQC2AR2EGJLLD8MeYf7tuR3jobkY9ZywfmZx
CzmPDgH3UwICt/AJ5RmCGBBzJas+vid9Vps6lJ2yoxIWneSZnH3MlS5+vx6VNFX3
VfTaszklQuGh4kRXCeNXRRMSENdeGDpui2rblrliminRhmqRTOy2eBv2KNWZYHV9
K0vt5oJJhQKBgB05tBkkiO/s3N8vPa9ydm4GZdLE7+dBiGzZcW7LKfsB5QMCDphg
5gyoTJcM2t3TAhoiNVjRaizK1/L3wyAZwhUlRTR5thRU1UpP8qHy+FF7uQssCy6g
lk89KFM97LF5Lhq6bpFajF2zcDnyuPRDuQuDM6HKc2hKS0LrZ8UygMhJAoGBAJdQ
eg+WtoQoSJn78wwE+XqEu/SqTmjVzalyIZpzlOLgmi1UazZuyDRGeXah/KsfQImN
9WRQpoMb3C/9eU7UsiniZVNu5ag6aLZHOliQ5JO79Qa3rQWH7QBjJyW/5q4OCpZZ
Rq/lsZ7ueJH/5J2EjNBvLyAKdvsbHNLBqlDRccRZAoGAZshY3vi4AvZ/qBEbNe12
wRwFj0lb868/dT5cXuIuYFiL8RjGEqRNVkX72j/+QnWuX4EYQ32dpLbRw2ymGkN9
/orHghcK8odcNlW4FhUvYhCuTcA+ehrLxiK2E88w+mPb/86cvVKTFEeyE08Le2o6
kJCzhDeweblLb0iImE4MB44=
-----END PRIVATE KEY-----
";

    #[test]
    fn alg_names_round_trip_and_none_is_unknown() {
        for name in ["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"] {
            assert_eq!(Algorithm::parse(name).unwrap().name(), name);
        }
        assert!(Algorithm::parse("none").is_none());
        assert!(Algorithm::parse("hs256").is_none());
    }

    #[test]
    fn hmac_sign_verify_and_short_secret() {
        for (alg, len) in [(Algorithm::HS256, 32), (Algorithm::HS384, 48), (Algorithm::HS512, 64)] {
            let key = Key::hmac(alg, &vec![7u8; len]).unwrap();
            let tag = key.sign(b"msg").unwrap();
            assert!(key.verify(b"msg", &tag).is_ok());
            assert_eq!(key.verify(b"msG", &tag).unwrap_err().kind, ErrorKind::BadSignature);
            // A truncated tag must not verify.
            assert!(key.verify(b"msg", &tag[..16]).is_err());
            assert_eq!(Key::hmac(alg, &vec![7u8; len - 1]).err().unwrap().kind, ErrorKind::BadKey);
        }
        assert!(Key::hmac(Algorithm::RS256, &[0; 64]).is_err());
    }

    #[test]
    fn pem_keys_are_bound_to_their_algorithm() {
        let ec = Key::private_pem(Algorithm::ES256, EC_PRIVATE_PEM.as_bytes()).unwrap();
        let sig = ec.sign(b"msg").unwrap();
        assert_eq!(sig.len(), 64);
        assert!(ec.verify(b"msg", &sig).is_ok());
        assert!(ec.verify(b"other", &sig).is_err());
        let ed = Key::private_pem(Algorithm::EdDSA, ED_PRIVATE_PEM.as_bytes()).unwrap();
        let sig = ed.sign(b"msg").unwrap();
        assert!(ed.verify(b"msg", &sig).is_ok());
        let rsa = Key::private_pem(Algorithm::RS256, RSA_PRIVATE_PEM.as_bytes()).unwrap();
        let sig = rsa.sign(b"msg").unwrap();
        assert_eq!(sig.len(), 256);
        assert!(rsa.verify(b"msg", &sig).is_ok());
        assert!(rsa.verify(b"msh", &sig).is_err());
        // Wrong algorithm for the PEM's key type, or HMAC from PEM: refused.
        assert!(Key::private_pem(Algorithm::EdDSA, EC_PRIVATE_PEM.as_bytes()).is_err());
        assert!(Key::private_pem(Algorithm::RS256, EC_PRIVATE_PEM.as_bytes()).is_err());
        assert!(Key::public_pem(Algorithm::HS256, EC_PRIVATE_PEM.as_bytes()).is_err());
        assert!(Key::private_pem(Algorithm::HS256, EC_PRIVATE_PEM.as_bytes()).is_err());
    }

    #[test]
    fn key_set_selection_rules() {
        let mut set = KeySet::default();
        assert!(set.select_for_verify(None).is_err());
        set.add_hmac("a", "HS256", &[1; 32]).unwrap();
        assert!(set.select_for_verify(None).is_ok());
        let g = set.generation();
        set.add_private_pem("b", "ES256", EC_PRIVATE_PEM.as_bytes()).unwrap();
        assert!(set.generation() > g);
        assert_eq!(set.select_for_verify(None).err().unwrap().kind, ErrorKind::KeyMismatch);
        assert_eq!(set.select_for_verify(Some("zz")).err().unwrap().kind, ErrorKind::KeyMismatch);
        assert_eq!(set.select_for_verify(Some("b")).unwrap().alg(), Algorithm::ES256);
        assert!(set.add_hmac("a", "HS256", &[2; 32]).is_err(), "duplicate kid");
        assert!(set.select_for_sign(None).is_err(), "two signers");
        assert_eq!(set.select_for_sign(Some("a")).unwrap().0, "a");
        assert!(set.remove("a"));
        assert!(!set.remove("a"));
        assert_eq!(set.kids(), vec!["b".to_string()]);
        assert_eq!(set.select_for_sign(None).unwrap().0, "b");
    }
}
