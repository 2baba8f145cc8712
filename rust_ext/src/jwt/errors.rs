//! The error type of the JWT core.
//!
//! The core never builds Python exceptions: it returns [`Error`], and `py.rs`
//! maps each [`ErrorKind`] to one exception class in a single cold function.
//! Messages are fixed strings chosen by this crate, so they can never echo a
//! token, a secret, or any other attacker-supplied text back to a caller
//! (who might log it).

use std::fmt;

/// Why a token or a key was rejected. Each variant maps to one Python class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not three base64url parts, bad base64, bad JSON, or a header/payload
    /// that is not a JSON object. Python: `MalformedToken`.
    Malformed,
    /// The token names a key or algorithm we cannot use: `alg` is `none` or
    /// unsupported, `alg` differs from the selected key's algorithm, the `kid`
    /// is unknown, or there is no `kid` while the set holds several keys.
    /// Python: `InvalidKey`.
    KeyMismatch,
    /// The signature or MAC does not verify. Python: `InvalidSignature`.
    BadSignature,
    /// A claim is missing, has the wrong JSON type, or has the wrong value
    /// (`exp`, `nbf`, `iat`, `iss`, `aud`), or the header has `crit`.
    /// Python: `InvalidClaims`.
    InvalidClaims,
    /// `exp` (+ leeway) has passed. Python: `ExpiredToken`.
    Expired,
    /// `nbf` or `iat` lies in the future (beyond the leeway).
    /// Python: `ImmatureToken`.
    Immature,
    /// A key could not be loaded or used for signing: bad PEM, key type that
    /// does not fit the algorithm, short secret, duplicate kid, no signing
    /// key. A configuration error, so Python gets a plain `ValueError` that an
    /// auth handler catching `JWTError` will not silently turn into a 401.
    BadKey,
}

/// A JWT failure: a kind plus a fixed, secret-free message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: &'static str,
}

impl Error {
    /// Build an error; cold because every caller is a failure path.
    #[cold]
    pub fn new(kind: ErrorKind, message: &'static str) -> Self {
        Error { kind, message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand used in the early-return style of the validators.
#[cold]
pub fn fail<T>(kind: ErrorKind, message: &'static str) -> Result<T> {
    Err(Error::new(kind, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_fixed_message() {
        let e = Error::new(ErrorKind::Expired, "token has expired");
        assert_eq!(e.to_string(), "token has expired");
        assert_eq!(fail::<()>(ErrorKind::Malformed, "x").unwrap_err().kind, ErrorKind::Malformed);
    }
}
