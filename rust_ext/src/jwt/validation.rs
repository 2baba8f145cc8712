//! Token parsing, the JWS header rules, and the claim checks.
//!
//! Order matters: the header is parsed first (it selects the key), the
//! signature is checked next, and only a payload whose signature verified is
//! parsed as JSON, so unauthenticated claim JSON is never interpreted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::errors::{fail, ErrorKind, Result};
use super::keys::{Algorithm, KeySet};

/// Longest token accepted, in bytes. Real access tokens are well under 2 KiB;
/// the cap bounds the work (base64, JSON, hashing) one request can cause.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Claim checks, fixed when a verifier is built.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Required exact `iss`. Default `None`: `iss` is not checked.
    pub issuer: Option<String>,
    /// Audience that `aud` (string or array) must contain. Default `None`:
    /// then a token that carries `aud` is rejected (as PyJWT does), because a
    /// token meant for some named audience is not meant for us.
    pub audience: Option<String>,
    /// Seconds of clock skew allowed on `exp`, `nbf` and `iat`. Default 0.
    pub leeway: f64,
}

/// When a validated token stops (and started) being acceptable, in Unix
/// seconds with the leeway applied; the cache uses it to expire entries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// `max(nbf, iat) - leeway`, or `-inf` when neither claim is present.
    pub valid_from: f64,
    /// `exp + leeway`: acceptable while `now < valid_until`.
    pub valid_until: f64,
}

/// Split `token` into (signing input, header, payload, signature) segments,
/// base64url-decoded where needed. Exactly three non-empty-signature parts.
fn split(token: &str) -> Result<(&str, &str, &str, &str)> {
    if token.len() > MAX_TOKEN_LEN {
        return fail(ErrorKind::Malformed, "token is too long");
    }
    let Some((signing_input, sig)) = token.rsplit_once('.') else {
        return fail(ErrorKind::Malformed, "token is not three dot-separated parts");
    };
    let Some((header, payload)) = signing_input.split_once('.') else {
        return fail(ErrorKind::Malformed, "token is not three dot-separated parts");
    };
    if payload.contains('.') {
        return fail(ErrorKind::Malformed, "token is not three dot-separated parts");
    }
    Ok((signing_input, header, payload, sig))
}

fn b64(segment: &str, what: &'static str) -> Result<Vec<u8>> {
    // URL_SAFE_NO_PAD rejects padding, the standard alphabet and
    // non-canonical trailing bits, so each token has one spelling.
    match URL_SAFE_NO_PAD.decode(segment) {
        Ok(bytes) => Ok(bytes),
        Err(_) => fail(ErrorKind::Malformed, what),
    }
}

/// Check the signature and the header rules of a compact JWS and return the
/// raw payload bytes, without any claim check.
///
/// Header rules: a JSON object; `alg` a string naming a supported algorithm
/// (`none` never is); no `crit` (we understand no extension, and RFC 7515
/// section 4.1.11 says to reject what we do not understand); `kid`, when
/// present, a string naming a key in `keys` (without `kid` the set must hold
/// exactly one key); and `alg` equal to that key's algorithm.
pub fn verify_jws(keys: &KeySet, token: &str) -> Result<Vec<u8>> {
    let (signing_input, header_b64, payload_b64, sig_b64) = split(token)?;
    let header_bytes = b64(header_b64, "token header is not base64url")?;
    let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(&header_bytes) else {
        return fail(ErrorKind::Malformed, "token header is not a JSON object");
    };
    let Some(Value::String(alg_name)) = header.get("alg") else {
        return fail(ErrorKind::Malformed, "token header has no alg string");
    };
    if header.contains_key("crit") {
        return fail(ErrorKind::InvalidClaims, "token header has crit parameters, none are supported");
    }
    let Some(alg) = Algorithm::parse(alg_name) else {
        return fail(ErrorKind::KeyMismatch, "token alg is none or unsupported");
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return fail(ErrorKind::Malformed, "token header kid is not a string"),
    };
    let key = keys.select_for_verify(kid)?;
    if key.alg() != alg {
        return fail(ErrorKind::KeyMismatch, "token alg does not match the key's algorithm");
    }
    let sig = b64(sig_b64, "token signature is not base64url")?;
    key.verify(signing_input.as_bytes(), &sig)?;
    b64(payload_b64, "token payload is not base64url")
}

/// Parse a verified payload as a JSON object of claims.
pub fn parse_claims(payload: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(claims)) => Ok(claims),
        _ => fail(ErrorKind::Malformed, "token payload is not a JSON object"),
    }
}

/// A NumericDate claim: absent is `None`, present must be a JSON number.
/// A string `"exp": "123"` is an error, never treated as absent.
fn numeric(claims: &Map<String, Value>, name: &str, bad_type: &'static str) -> Result<Option<f64>> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Ok(Some(v)),
            _ => fail(ErrorKind::InvalidClaims, bad_type),
        },
        Some(_) => fail(ErrorKind::InvalidClaims, bad_type),
    }
}

/// Check the registered claims at time `now` (Unix seconds); on success
/// return the window in which the token stays acceptable.
pub fn validate(claims: &Map<String, Value>, opts: &Options, now: f64) -> Result<Window> {
    let leeway = opts.leeway;
    let Some(exp) = numeric(claims, "exp", "exp claim is not a number")? else {
        return fail(ErrorKind::InvalidClaims, "token has no exp claim");
    };
    let nbf = numeric(claims, "nbf", "nbf claim is not a number")?;
    let iat = numeric(claims, "iat", "iat claim is not a number")?;
    // Same boundaries as PyJWT: expired when exp <= now - leeway.
    if exp <= now - leeway {
        return fail(ErrorKind::Expired, "token has expired");
    }
    if nbf.is_some_and(|nbf| nbf > now + leeway) {
        return fail(ErrorKind::Immature, "token is not yet valid (nbf)");
    }
    if iat.is_some_and(|iat| iat > now + leeway) {
        return fail(ErrorKind::Immature, "token is not yet valid (iat)");
    }
    if let Some(issuer) = &opts.issuer {
        match claims.get("iss") {
            Some(Value::String(iss)) if iss == issuer => {}
            None => return fail(ErrorKind::InvalidClaims, "token has no iss claim"),
            Some(Value::String(_)) => return fail(ErrorKind::InvalidClaims, "token iss does not match"),
            Some(_) => return fail(ErrorKind::InvalidClaims, "iss claim is not a string"),
        }
    }
    check_audience(claims.get("aud"), opts.audience.as_deref())?;
    let valid_from = nbf.into_iter().chain(iat).fold(f64::NEG_INFINITY, f64::max) - leeway;
    Ok(Window { valid_from, valid_until: exp + leeway })
}

fn check_audience(aud: Option<&Value>, expected: Option<&str>) -> Result<()> {
    let Some(expected) = expected else {
        if aud.is_some() {
            return fail(ErrorKind::InvalidClaims, "token has aud but the verifier has no audience");
        }
        return Ok(());
    };
    let found = match aud {
        None => return fail(ErrorKind::InvalidClaims, "token has no aud claim"),
        Some(Value::String(aud)) => aud == expected,
        Some(Value::Array(items)) => {
            if !items.iter().all(Value::is_string) {
                return fail(ErrorKind::InvalidClaims, "aud claim array holds a non-string");
            }
            items.iter().any(|item| item.as_str() == Some(expected))
        }
        Some(_) => return fail(ErrorKind::InvalidClaims, "aud claim is not a string or array"),
    };
    if !found {
        return fail(ErrorKind::InvalidClaims, "token aud does not match");
    }
    Ok(())
}

/// Build a compact JWS: header `{"alg", "typ": "JWT", "kid"}`, the given
/// payload bytes, and a signature by the key `kid` (or the only signing key).
pub fn sign(keys: &KeySet, payload: &[u8], kid: Option<&str>) -> Result<String> {
    let (kid, key) = keys.select_for_sign(kid)?;
    let header = serde_json::json!({ "alg": key.alg().name(), "typ": "JWT", "kid": kid });
    let header = serde_json::to_vec(&header).expect("a JSON object of strings serializes");
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let sig = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(token)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jwt::keys::tests::{EC_PRIVATE_PEM, ED_PRIVATE_PEM, RSA_PRIVATE_PEM};
    use serde_json::json;

    fn hs_set() -> KeySet {
        let mut set = KeySet::default();
        set.add_hmac("k1", "HS256", &[0x42; 32]).unwrap();
        set
    }

    fn enc(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
        r.unwrap_err().kind
    }

    /// RFC 7515 appendix A.1: HS256 with the JWK octet key of that appendix.
    /// The header has no kid, so the set holds just that one key.
    #[test]
    fn rfc7515_a1_hs256() {
        let k = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let mut set = KeySet::default();
        set.add_hmac("a1", "HS256", &k).unwrap();
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9\
            .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
            .dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let payload = verify_jws(&set, token).unwrap();
        assert_eq!(
            payload,
            b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
        );
        // The same token with one signature character changed fails.
        let forged = token.replace("dBjft", "dBjfu");
        assert_eq!(kind(verify_jws(&set, &forged)), ErrorKind::BadSignature);
        // Its exp (2011) is long past: the claim layer says so.
        let claims = parse_claims(&payload).unwrap();
        assert_eq!(kind(validate(&claims, &Options::default(), 1.7e9)), ErrorKind::Expired);
    }

    /// RFC 8037 appendix A.4: Ed25519 over a non-JSON payload. The RFC gives
    /// the key as a JWK (x); we wrap x in an SPKI PEM to load it.
    #[test]
    fn rfc8037_a4_ed25519() {
        let x = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        der.extend_from_slice(&x);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        let mut set = KeySet::default();
        set.add_public_pem("a4", "EdDSA", pem.as_bytes()).unwrap();
        let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc\
            .hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
        assert_eq!(verify_jws(&set, token).unwrap(), b"Example of Ed25519 signing");
        let forged = token.replace("RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc", "RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmd");
        assert_eq!(kind(verify_jws(&set, &forged)), ErrorKind::BadSignature);
        // Not JSON claims, so the claim layer calls it malformed.
        assert_eq!(kind(parse_claims(b"Example of Ed25519 signing")), ErrorKind::Malformed);
    }

    #[test]
    fn every_algorithm_round_trips_and_rejects_tampering() {
        let mut set = KeySet::default();
        set.add_hmac("hs256", "HS256", &[1; 32]).unwrap();
        set.add_hmac("hs384", "HS384", &[2; 48]).unwrap();
        set.add_hmac("hs512", "HS512", &[3; 64]).unwrap();
        set.add_private_pem("rs", "RS256", RSA_PRIVATE_PEM.as_bytes()).unwrap();
        set.add_private_pem("es", "ES256", EC_PRIVATE_PEM.as_bytes()).unwrap();
        set.add_private_pem("ed", "EdDSA", ED_PRIVATE_PEM.as_bytes()).unwrap();
        let payload = serde_json::to_vec(&json!({"sub": "u1", "exp": 2e9})).unwrap();
        for kid in ["hs256", "hs384", "hs512", "rs", "es", "ed"] {
            let token = sign(&set, &payload, Some(kid)).unwrap();
            assert_eq!(verify_jws(&set, &token).unwrap(), payload, "{kid}");
            let (head, _) = token.rsplit_once('.').unwrap();
            let (h, _) = head.split_once('.').unwrap();
            let other = enc(&json!({"sub": "admin", "exp": 2e9}));
            let tampered = format!("{h}.{other}.{}", token.rsplit_once('.').unwrap().1);
            assert_eq!(kind(verify_jws(&set, &tampered)), ErrorKind::BadSignature, "{kid}");
        }
    }

    #[test]
    fn alg_none_unknown_and_mismatch_are_rejected() {
        let set = hs_set();
        let body = enc(&json!({"exp": 2e9}));
        let none = format!("{}.{body}.", enc(&json!({"alg": "none"})));
        assert_eq!(kind(verify_jws(&set, &none)), ErrorKind::KeyMismatch);
        let none_kid = format!("{}.{body}.", enc(&json!({"alg": "none", "kid": "k1"})));
        assert_eq!(kind(verify_jws(&set, &none_kid)), ErrorKind::KeyMismatch);
        let hs512 = format!("{}.{body}.AAAA", enc(&json!({"alg": "HS512", "kid": "k1"})));
        assert_eq!(kind(verify_jws(&set, &hs512)), ErrorKind::KeyMismatch);
        let no_alg = format!("{}.{body}.AAAA", enc(&json!({"kid": "k1"})));
        assert_eq!(kind(verify_jws(&set, &no_alg)), ErrorKind::Malformed);
        let wrong_kid = format!("{}.{body}.AAAA", enc(&json!({"alg": "HS256", "kid": "k2"})));
        assert_eq!(kind(verify_jws(&set, &wrong_kid)), ErrorKind::KeyMismatch);
    }

    /// The alg-confusion forgery: HS256 keyed with the public key PEM. The
    /// set holds only the ES256 key, so HS256 cannot even be selected. (The
    /// PEM text stands in for the public key PEM the attacker would use; the
    /// Python tests use the real public PEM.)
    #[test]
    fn public_key_is_never_an_hmac_secret() {
        let mut set = KeySet::default();
        set.add_private_pem("es", "ES256", EC_PRIVATE_PEM.as_bytes()).unwrap();
        let mut attacker = KeySet::default();
        attacker.add_hmac("es", "HS256", EC_PRIVATE_PEM.as_bytes()).unwrap();
        let forged = sign(&attacker, br#"{"exp":2000000000}"#, Some("es")).unwrap();
        assert_eq!(kind(verify_jws(&set, &forged)), ErrorKind::KeyMismatch);
    }

    #[test]
    fn crit_and_malformed_shapes() {
        let set = hs_set();
        let payload = br#"{"exp":2000000000}"#;
        let good = sign(&set, payload, None).unwrap();
        assert!(verify_jws(&set, &good).is_ok());
        let crit = format!("{}.{}.AAAA", enc(&json!({"alg": "HS256", "crit": ["exp"]})), enc(&json!({})));
        assert_eq!(kind(verify_jws(&set, &crit)), ErrorKind::InvalidClaims);
        for bad in ["", "a", "a.b", "a.b.c.d", "!!.e30.AAAA", "e30.e30.AAAA", "W10.e30.AAAA", "eyJhbGciOiJIUzI1NiJ9.e30.AA=="] {
            assert_eq!(kind(verify_jws(&set, bad)), ErrorKind::Malformed, "{bad}");
        }
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(kind(verify_jws(&set, &long)), ErrorKind::Malformed);
        // Padding on a segment is a different spelling of the same token.
        let padded = good.replacen('.', "=.", 1);
        assert_eq!(kind(verify_jws(&set, &padded)), ErrorKind::Malformed);
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn claim_types_and_times() {
        let o = Options::default();
        let now = 1000.0;
        assert!(validate(&claims(json!({"exp": 1001})), &o, now).is_ok());
        assert_eq!(kind(validate(&claims(json!({})), &o, now)), ErrorKind::InvalidClaims);
        assert_eq!(kind(validate(&claims(json!({"exp": "2000"})), &o, now)), ErrorKind::InvalidClaims);
        assert_eq!(kind(validate(&claims(json!({"exp": true})), &o, now)), ErrorKind::InvalidClaims);
        assert_eq!(kind(validate(&claims(json!({"exp": 1000})), &o, now)), ErrorKind::Expired);
        assert_eq!(kind(validate(&claims(json!({"exp": 2000, "nbf": "1"})), &o, now)), ErrorKind::InvalidClaims);
        assert_eq!(kind(validate(&claims(json!({"exp": 2000, "iat": null})), &o, now)), ErrorKind::InvalidClaims);
        assert_eq!(kind(validate(&claims(json!({"exp": 2000, "nbf": 1000.5})), &o, now)), ErrorKind::Immature);
        assert_eq!(kind(validate(&claims(json!({"exp": 2000, "iat": 1001})), &o, now)), ErrorKind::Immature);
        let w = validate(&claims(json!({"exp": 2000, "nbf": 900, "iat": 950.5})), &o, now).unwrap();
        assert_eq!(w, Window { valid_from: 950.5, valid_until: 2000.0 });
    }

    #[test]
    fn leeway_widens_both_ends() {
        let o = Options { leeway: 10.0, ..Options::default() };
        assert!(validate(&claims(json!({"exp": 995})), &o, 1000.0).is_ok());
        assert_eq!(kind(validate(&claims(json!({"exp": 990})), &o, 1000.0)), ErrorKind::Expired);
        assert!(validate(&claims(json!({"exp": 2000, "nbf": 1009})), &o, 1000.0).is_ok());
        assert_eq!(kind(validate(&claims(json!({"exp": 2000, "nbf": 1011})), &o, 1000.0)), ErrorKind::Immature);
        let w = validate(&claims(json!({"exp": 2000, "nbf": 1005})), &o, 1000.0).unwrap();
        assert_eq!(w, Window { valid_from: 995.0, valid_until: 2010.0 });
    }

    #[test]
    fn issuer_and_audience() {
        let o = Options { issuer: Some("vedina".into()), audience: Some("api".into()), leeway: 0.0 };
        let ok = |v: Value| validate(&claims(v), &o, 0.0);
        assert!(ok(json!({"exp": 9, "iss": "vedina", "aud": "api"})).is_ok());
        assert!(ok(json!({"exp": 9, "iss": "vedina", "aud": ["web", "api"]})).is_ok());
        for bad in [
            json!({"exp": 9, "aud": "api"}),
            json!({"exp": 9, "iss": "other", "aud": "api"}),
            json!({"exp": 9, "iss": 5, "aud": "api"}),
            json!({"exp": 9, "iss": "vedina"}),
            json!({"exp": 9, "iss": "vedina", "aud": "web"}),
            json!({"exp": 9, "iss": "vedina", "aud": ["web"]}),
            json!({"exp": 9, "iss": "vedina", "aud": ["api", 1]}),
            json!({"exp": 9, "iss": "vedina", "aud": {"api": true}}),
        ] {
            assert_eq!(kind(ok(bad.clone())), ErrorKind::InvalidClaims, "{bad}");
        }
        // No audience configured: a token with aud is rejected, without is fine.
        let plain = Options::default();
        assert_eq!(kind(validate(&claims(json!({"exp": 9, "aud": "api"})), &plain, 0.0)), ErrorKind::InvalidClaims);
        assert!(validate(&claims(json!({"exp": 9, "iss": "anyone"})), &plain, 0.0).is_ok());
    }
}
