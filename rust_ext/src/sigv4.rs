//! AWS Signature Version 4 (AWS4-HMAC-SHA256) for requests made to the Vedina
//! API by external services, so that stock clients (`curl --aws-sigv4
//! "aws:amz:REGION:vedina"`, botocore's `SigV4Auth`) can sign.
//!
//! The signature is computed as AWS specifies:
//!
//! ```text
//! CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n
//!                    CanonicalHeaders \n SignedHeaders \n HashedPayload
//! StringToSign     = "AWS4-HMAC-SHA256" \n X-Amz-Date \n Scope \n hex(SHA256(CanonicalRequest))
//! Scope            = yyyymmdd/region/service/aws4_request
//! SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, yyyymmdd), region), service), "aws4_request")
//! Signature        = hex(HMAC(SigningKey, StringToSign))
//! ```
//!
//! Decisions (keep the Python docs in `_native.pyi` in step):
//!
//! * Canonical URI: like botocore for non-S3 services, the raw request path
//!   (as received on the wire, still percent-encoded) has its dot segments and
//!   empty segments removed and is then URI-encoded once more (so `%20` in the
//!   request becomes `%2520`: AWS's "encode twice" rule). The caller must
//!   therefore pass the *raw* path, not a percent-decoded one.
//! * Canonical query: each `name=value` pair of the raw query is
//!   percent-decoded and re-encoded with RFC 3986 (unreserved characters kept,
//!   everything else `%XX` upper-case), then pairs are sorted by name, then
//!   value. A `+` is a literal plus (encoded `%2B`), never a space: clients
//!   must send spaces as `%20`, as AWS requires.
//! * Clients disagree on those two rules, so a request verifies when its
//!   signature matches any of the forms stock clients produce of the same raw
//!   path and query: the URI encoded twice (AWS, botocore) or as sent (curl),
//!   the query normalised as above (AWS's test suite, curl) or its pairs as
//!   sent, sorted (botocore, which signs `x=a+b` as written). Every form is a
//!   function of the bytes received, so no form lets anything be changed.
//! * Payload: SHA-256 of the body. When `x-amz-content-sha256` is sent it
//!   must equal that hash; `UNSIGNED-PAYLOAD` (and the streaming variants)
//!   are refused, so a signature always covers the body.
//! * `SignedHeaders` must include `host` and `x-amz-date`; the credential
//!   scope date must be the date of `x-amz-date`, which must be within
//!   `max_skew` seconds of `now`.
//! * Replay protection is the caller's: it remembers the `signature` of
//!   accepted requests for the skew window.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use pyo3::prelude::*;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::errors::{MalformedSignature, SignatureExpired, SignatureMismatch};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Default service name in the credential scope.
pub const DEFAULT_SERVICE: &str = "vedina";
/// Default accepted distance between `x-amz-date` and `now`, in seconds (AWS uses 5 minutes too).
pub const DEFAULT_MAX_SKEW: i64 = 300;
/// How many derived signing keys are cached; the cache is cleared when full
/// (keys change daily, so a full cache means many clients or a day rollover).
const SIGNING_KEY_CACHE_CAPACITY: usize = 1024;

/// Why a signature (SigV4 or webhook) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureFailure {
    /// The header (or a header it depends on) cannot be parsed or is incomplete.
    Malformed(String),
    /// The signed timestamp is outside the allowed window.
    Expired(String),
    /// Well formed and fresh but not matching.
    Mismatch(String),
}

impl From<SignatureFailure> for PyErr {
    fn from(err: SignatureFailure) -> PyErr {
        match err {
            SignatureFailure::Malformed(m) => MalformedSignature::new_err(m),
            SignatureFailure::Expired(m) => SignatureExpired::new_err(m),
            SignatureFailure::Mismatch(m) => SignatureMismatch::new_err(m),
        }
    }
}

fn malformed<T>(msg: impl Into<String>) -> Result<T, SignatureFailure> {
    Err(SignatureFailure::Malformed(msg.into()))
}

fn mismatch<T>(msg: impl Into<String>) -> Result<T, SignatureFailure> {
    Err(SignatureFailure::Mismatch(msg.into()))
}

pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Authorization header
// ---------------------------------------------------------------------------

/// The parsed `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[pyclass(module = "vedina._native", name = "SigV4Authorization", frozen, get_all)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// Credential scope date, `yyyymmdd`.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower-case header names, in the order they were signed.
    pub signed_headers: Vec<String>,
    /// 64 lower-case hex digits.
    pub signature: String,
}

#[pymethods]
impl Authorization {
    fn __repr__(&self) -> String {
        format!(
            "SigV4Authorization(access_key_id={:?}, date={:?}, region={:?}, service={:?}, signed_headers={:?}, signature={:?})",
            self.access_key_id, self.date, self.region, self.service, self.signed_headers, self.signature
        )
    }
}

fn is_yyyymmdd(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit())
}

pub fn parse_authorization(header: &str) -> Result<Authorization, SignatureFailure> {
    let header = header.trim();
    let Some(rest) = header.strip_prefix(ALGORITHM) else {
        return malformed(format!("Authorization does not start with {ALGORITHM}"));
    };
    if !rest.starts_with([' ', '\t']) {
        return malformed("expected whitespace after the algorithm");
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for item in rest.split(',') {
        let item = item.trim();
        let Some((key, value)) = item.split_once('=') else {
            return malformed(format!("Authorization component without '=': {item:?}"));
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return malformed(format!("unknown Authorization component {key:?}")),
        };
        if slot.replace(value).is_some() {
            return malformed(format!("duplicate Authorization component {key:?}"));
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return malformed("Authorization needs Credential, SignedHeaders and Signature");
    };

    let parts: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = parts[..] else {
        return malformed("Credential must be AKID/yyyymmdd/region/service/aws4_request");
    };
    if akid.is_empty() || region.is_empty() || service.is_empty() || terminator != "aws4_request" || !is_yyyymmdd(date) {
        return malformed("Credential must be AKID/yyyymmdd/region/service/aws4_request");
    }

    let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace()))
    {
        return malformed("SignedHeaders must be non-empty lower-case names separated by ';'");
    }
    if signature.len() != 64 || !signature.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return malformed("Signature must be 64 lower-case hex digits");
    }
    Ok(Authorization {
        access_key_id: akid.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        signature: signature.to_owned(),
    })
}

// ---------------------------------------------------------------------------
// Canonical request
// ---------------------------------------------------------------------------

/// RFC 3986 encoding: unreserved characters kept, every other byte `%XX`
/// (upper-case hex); `/` is kept when `keep_slash`.
fn uri_encode(out: &mut String, bytes: &[u8], keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Percent-decode; a `%` not followed by two hex digits stays literal.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hi = (bytes[i + 1] as char).to_digit(16);
            let lo = (bytes[i + 2] as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// RFC 3986 §5.2.4 dot-segment removal, also dropping empty segments (`//`),
/// exactly as botocore's `remove_dot_segments` does for non-S3 services.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// Canonical URI of a raw (still percent-encoded) request path.
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    let normalized = remove_dot_segments(raw_path);
    let mut out = String::with_capacity(normalized.len() + 8);
    uri_encode(&mut out, normalized.as_bytes(), true);
    out
}

/// Canonical query string of a raw query (without the leading `?`).
pub fn canonical_query(raw_query: &str) -> String {
    if raw_query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let mut n = String::with_capacity(name.len());
            uri_encode(&mut n, &percent_decode(name), false);
            let mut v = String::with_capacity(value.len());
            uri_encode(&mut v, &percent_decode(value), false);
            (n, v)
        })
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(raw_query.len() + 8);
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(n);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// All values of header `name` (case-insensitive), each trimmed with runs of
/// whitespace collapsed to one space, joined by `,` (AWS's rule for repeated
/// headers). None when the header is absent.
fn canonical_header_value<S: AsRef<str>>(headers: &[(S, S)], name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for (n, v) in headers {
        if !n.as_ref().trim().eq_ignore_ascii_case(name) {
            continue;
        }
        let out = match out.as_mut() {
            Some(s) => {
                s.push(',');
                s
            }
            None => out.insert(String::new()),
        };
        for (i, word) in v.as_ref().split_ascii_whitespace().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

/// The path as sent, dot and empty segments removed (curl's canonical URI).
pub fn as_sent_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        "/".to_owned()
    } else {
        remove_dot_segments(raw_path)
    }
}

/// The query's `name=value` pairs as sent, sorted (botocore's canonical query).
pub fn as_sent_query(raw_query: &str) -> String {
    if raw_query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(&str, &str)> =
        raw_query.split('&').map(|pair| pair.split_once('=').unwrap_or((pair, ""))).collect();
    pairs.sort_unstable();
    pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
}

/// The canonical request for `signed_headers`; fails if a signed header is missing.
pub fn canonical_request<S: AsRef<str>>(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &[(S, S)],
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<String, SignatureFailure> {
    canonical_request_of(
        method,
        &canonical_uri(raw_path),
        &canonical_query(raw_query),
        headers,
        signed_headers,
        payload_hash,
    )
}

fn canonical_request_of<S: AsRef<str>>(
    method: &str,
    uri: &str,
    query: &str,
    headers: &[(S, S)],
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<String, SignatureFailure> {
    let mut out = String::with_capacity(256);
    out.push_str(&method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(uri);
    out.push('\n');
    out.push_str(query);
    out.push('\n');
    for name in signed_headers {
        let Some(value) = canonical_header_value(headers, name) else {
            return malformed(format!("signed header {name:?} is missing from the request"));
        };
        out.push_str(name);
        out.push(':');
        out.push_str(&value);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// The derived signing key, cached per (secret, date, region, service): four
/// HMACs saved on every request after a client's first of the day.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    type Key = (String, String, String, String);
    static CACHE: OnceLock<Mutex<HashMap<Key, [u8; 32]>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key: Key = (secret.to_owned(), date.to_owned(), region.to_owned(), service.to_owned());
    if let Some(k) = cache.lock().expect("signing key cache poisoned").get(&key) {
        return *k;
    }
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), &[date.as_bytes()]);
    let k_region = hmac_sha256(&k_date, &[region.as_bytes()]);
    let k_service = hmac_sha256(&k_region, &[service.as_bytes()]);
    let k_signing = hmac_sha256(&k_service, &[b"aws4_request"]);
    let mut map = cache.lock().expect("signing key cache poisoned");
    if map.len() >= SIGNING_KEY_CACHE_CAPACITY {
        map.clear();
    }
    map.insert(key, k_signing);
    k_signing
}

// ---------------------------------------------------------------------------
// Dates (`yyyymmddThhmmssZ`), without a date crate
// ---------------------------------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parse `yyyymmddThhmmssZ` to unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // ASCII only: the byte positions below must be character boundaries
    // (a multi-byte character across one would make the slice panic).
    if !s.is_ascii() || b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &s[r];
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

pub fn format_amz_date(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86400));
    let secs = unix.rem_euclid(86400);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

// ---------------------------------------------------------------------------
// Verify and sign
// ---------------------------------------------------------------------------

/// One incoming request, as received.
pub struct Request<'a, S: AsRef<str>> {
    pub method: &'a str,
    /// Raw path, still percent-encoded.
    pub path: &'a str,
    /// Raw query string without `?`.
    pub query: &'a str,
    pub headers: &'a [(S, S)],
    pub body: &'a [u8],
}

/// What the verifier expects: region, service, clock.
pub struct Expect<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub now: i64,
    pub max_skew: i64,
}

/// Verify a SigV4-signed request with `secret`; returns the parsed
/// Authorization (its `signature` is what a replay cache remembers).
pub fn verify<S: AsRef<str>>(
    req: &Request<'_, S>,
    secret: &str,
    expect: &Expect<'_>,
) -> Result<Authorization, SignatureFailure> {
    let Some(auth_header) = canonical_header_value(req.headers, "authorization") else {
        return malformed("missing Authorization header");
    };
    let auth = parse_authorization(&auth_header)?;
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return malformed(format!("SignedHeaders must include {required:?}"));
        }
    }
    let Some(amz_date) = canonical_header_value(req.headers, "x-amz-date") else {
        return malformed("missing x-amz-date header");
    };
    let Some(signed_at) = parse_amz_date(&amz_date) else {
        return malformed("x-amz-date must be yyyymmddThhmmssZ");
    };
    if (expect.now - signed_at).abs() > expect.max_skew {
        return Err(SignatureFailure::Expired(format!(
            "x-amz-date {amz_date} is more than {}s away from now",
            expect.max_skew
        )));
    }
    if auth.date != amz_date[..8] {
        return mismatch("credential scope date differs from the date of x-amz-date");
    }
    if auth.region != expect.region || auth.service != expect.service {
        return mismatch(format!(
            "credential scope {}/{} is not {}/{}",
            auth.region, auth.service, expect.region, expect.service
        ));
    }

    let body_hash = sha256_hex(req.body);
    if let Some(declared) = canonical_header_value(req.headers, "x-amz-content-sha256") {
        if declared == "UNSIGNED-PAYLOAD" || declared.starts_with("STREAMING-") {
            return malformed("unsigned payloads are refused: x-amz-content-sha256 must be the body's SHA-256");
        }
        if declared != body_hash {
            return mismatch("x-amz-content-sha256 does not match the body");
        }
    }

    let scope = format!("{}/{}/{}/aws4_request", auth.date, auth.region, auth.service);
    let key = signing_key(secret, &auth.date, &auth.region, &auth.service);
    let mut uris = vec![canonical_uri(req.path), as_sent_uri(req.path)];
    let mut queries = vec![canonical_query(req.query), as_sent_query(req.query)];
    uris.dedup();
    queries.dedup();
    for uri in &uris {
        for query in &queries {
            let creq = canonical_request_of(req.method, uri, query, req.headers, &auth.signed_headers, &body_hash)?;
            let sts = string_to_sign(&amz_date, &scope, &creq);
            let expected = hex::encode(hmac_sha256(&key, &[sts.as_bytes()]));
            // Constant time: the comparison must not tell how many leading hex digits match.
            if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
                return Ok(auth);
            }
        }
    }
    mismatch("signature does not match")
}

/// Sign a request: returns the headers to add (`x-amz-date`,
/// `x-amz-content-sha256` when `content_sha256`, `Authorization`). Every
/// header in `req.headers` is signed, plus those added; `host` must be there.
#[allow(clippy::too_many_arguments)]
pub fn sign<S: AsRef<str>>(
    req: &Request<'_, S>,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    now: i64,
    content_sha256: bool,
) -> Result<Vec<(String, String)>, SignatureFailure> {
    let amz_date = format_amz_date(now);
    let body_hash = sha256_hex(req.body);
    let mut added: Vec<(String, String)> = vec![("x-amz-date".into(), amz_date.clone())];
    if content_sha256 {
        added.push(("x-amz-content-sha256".into(), body_hash.clone()));
    }
    let mut all: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_ref(), v.as_ref()))
        .filter(|(n, _)| {
            let n = n.trim();
            !n.eq_ignore_ascii_case("authorization")
                && !n.eq_ignore_ascii_case("x-amz-date")
                && !n.eq_ignore_ascii_case("x-amz-content-sha256")
        })
        .collect();
    all.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let mut signed: Vec<String> = all.iter().map(|(n, _)| n.trim().to_ascii_lowercase()).collect();
    signed.sort_unstable();
    signed.dedup();
    if !signed.iter().any(|h| h == "host") {
        return malformed("a Host header is required to sign");
    }
    let creq = canonical_request(req.method, req.path, req.query, &all, &signed, &body_hash)?;
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = string_to_sign(&amz_date, &scope, &creq);
    let signature = hex::encode(hmac_sha256(&signing_key(secret, date, region, service), &[sts.as_bytes()]));
    added.push((
        "Authorization".into(),
        format!("{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={signature}", signed.join(";")),
    ));
    Ok(added)
}

// ---------------------------------------------------------------------------
// Python layer
// ---------------------------------------------------------------------------

/// Parse a SigV4 `Authorization` header; raises MalformedSignature.
#[pyfunction]
fn parse_sigv4_authorization(header: &str) -> Result<Authorization, SignatureFailure> {
    parse_authorization(header)
}

/// Verify a SigV4-signed request; None on success, SignatureError subclasses otherwise.
#[pyfunction]
#[pyo3(signature = (method, path, query, headers, body, secret, *, region, service = DEFAULT_SERVICE, now = None, max_skew = DEFAULT_MAX_SKEW))]
#[allow(clippy::too_many_arguments)]
fn verify_sigv4(
    method: &str,
    path: &str,
    query: &str,
    headers: Vec<(String, String)>,
    body: &[u8],
    secret: &str,
    region: &str,
    service: &str,
    now: Option<i64>,
    max_skew: i64,
) -> Result<(), SignatureFailure> {
    let req = Request { method, path, query, headers: &headers, body };
    let expect = Expect { region, service, now: now.unwrap_or_else(unix_now), max_skew };
    verify(&req, secret, &expect).map(|_| ())
}

/// Sign a request; returns the headers to add as (name, value) pairs.
#[pyfunction]
#[pyo3(signature = (method, path, query, headers, body, *, access_key_id, secret, region, service = DEFAULT_SERVICE, now = None, content_sha256 = true))]
#[allow(clippy::too_many_arguments)]
fn sign_sigv4(
    method: &str,
    path: &str,
    query: &str,
    headers: Vec<(String, String)>,
    body: &[u8],
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    now: Option<i64>,
    content_sha256: bool,
) -> Result<Vec<(String, String)>, SignatureFailure> {
    let req = Request { method, path, query, headers: &headers, body };
    sign(&req, access_key_id, secret, region, service, now.unwrap_or_else(unix_now), content_sha256)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Authorization>()?;
    m.add_function(wrap_pyfunction!(parse_sigv4_authorization, m)?)?;
    m.add_function(wrap_pyfunction!(verify_sigv4, m)?)?;
    m.add_function(wrap_pyfunction!(sign_sigv4, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Credentials and request of the AWS SigV4 test suite (aws-sig-v4-test-suite).
    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";

    fn suite_headers() -> Vec<(String, String)> {
        vec![("Host".into(), "example.amazonaws.com".into()), ("X-Amz-Date".into(), DATE.into())]
    }

    fn suite_signature(method: &str, path: &str, query: &str) -> String {
        let headers = suite_headers();
        let signed = vec!["host".to_string(), "x-amz-date".to_string()];
        let creq = canonical_request(method, path, query, &headers, &signed, &sha256_hex(b"")).unwrap();
        let sts = string_to_sign(DATE, "20150830/us-east-1/service/aws4_request", &creq);
        hex::encode(hmac_sha256(&signing_key(SECRET, "20150830", "us-east-1", "service"), &[sts.as_bytes()]))
    }

    #[test]
    fn aws_test_suite_vectors() {
        // get-vanilla, get-vanilla-query-order-key-case, post-vanilla
        assert_eq!(suite_signature("GET", "/", ""), "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
        assert_eq!(
            suite_signature("GET", "/", "Param2=value2&Param1=value1"),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
        assert_eq!(suite_signature("POST", "/", ""), "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
    }

    /// A signature over an explicit canonical URI and query, as a given client computes them.
    fn signed_with(uri: &str, query: &str, now: i64) -> Vec<(String, String)> {
        let date = format_amz_date(now);
        let mut headers = vec![("Host".to_string(), "api.vedina.test".to_string()), ("X-Amz-Date".to_string(), date.clone())];
        let signed = vec!["host".to_string(), "x-amz-date".to_string()];
        let creq = canonical_request_of("GET", uri, query, &headers, &signed, &sha256_hex(b"")).unwrap();
        let scope = format!("{}/eu-west-1/vedina/aws4_request", &date[..8]);
        let sts = string_to_sign(&date, &scope, &creq);
        let sig = hex::encode(hmac_sha256(&signing_key("s3cr3t", &date[..8], "eu-west-1", "vedina"), &[sts.as_bytes()]));
        headers.push((
            "Authorization".into(),
            format!("AWS4-HMAC-SHA256 Credential=AK/{scope}, SignedHeaders=host;x-amz-date, Signature={sig}"),
        ));
        headers
    }

    #[test]
    fn the_forms_stock_clients_sign_all_verify_and_nothing_else() {
        let now = 1_700_000_000;
        let expect = Expect { region: "eu-west-1", service: "vedina", now, max_skew: 300 };
        // (path and query as received, the canonical URI and query one client or another signs)
        let cases = [
            ("/api/movies/a%20b", "x=a+b", "/api/movies/a%2520b", "x=a+b"), // botocore
            ("/api/movies/a%20b", "x=a+b", "/api/movies/a%20b", "x=a%2Bb"), // curl
            ("/api/movies/1", "b=2&a=1", "/api/movies/1", "a=1&b=2"),       // AWS suite order rule
            ("/api/movies/1", "k=%e1%88%b4", "/api/movies/1", "k=%E1%88%B4"), // get-vanilla-utf8-query
        ];
        for (path, query, uri, canonical) in cases {
            let headers = signed_with(uri, canonical, now);
            let req = Request { method: "GET", path, query, headers: &headers, body: b"" };
            assert!(verify(&req, "s3cr3t", &expect).is_ok(), "{uri} {canonical}");
            let tampered = Request { query: "x=a+c", ..req };
            assert!(verify(&tampered, "s3cr3t", &expect).is_err());
            let other_path = Request { path: "/api/movies/2", ..req };
            assert!(verify(&other_path, "s3cr3t", &expect).is_err());
        }
    }

    #[test]
    fn get_vanilla_verifies_end_to_end() {
        let mut headers = suite_headers();
        headers.push((
            "Authorization".into(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                .into(),
        ));
        let req = Request { method: "GET", path: "/", query: "", headers: &headers, body: b"" };
        let now = parse_amz_date(DATE).unwrap();
        let expect = Expect { region: "us-east-1", service: "service", now, max_skew: 300 };
        let auth = verify(&req, SECRET, &expect).unwrap();
        assert_eq!(auth.access_key_id, AKID);
        assert_eq!(verify(&req, "wrong", &expect), mismatch("signature does not match"));
        let late = Expect { now: now + 301, ..expect };
        assert!(matches!(verify(&req, SECRET, &late), Err(SignatureFailure::Expired(_))));
        let other_region = Expect { region: "eu-west-1", service: "service", now, max_skew: 300 };
        assert!(matches!(verify(&req, SECRET, &other_region), Err(SignatureFailure::Mismatch(_))));
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let headers = vec![("Host".to_string(), "api.vedina.test".to_string()), ("Content-Type".to_string(), "application/json".to_string())];
        let now = 1_700_000_000;
        let body = br#"{"a":1}"#;
        let req = Request { method: "POST", path: "/api/v1/movies/a%20b", query: "z=1&a=%2F", headers: &headers, body };
        let added = sign(&req, "AK", "s3cr3t", "eu-west-1", "vedina", now, true).unwrap();
        let mut all = headers.clone();
        all.extend(added);
        let ok = Request { headers: &all, ..req };
        let expect = Expect { region: "eu-west-1", service: "vedina", now: now + 10, max_skew: 300 };
        verify(&ok, "s3cr3t", &expect).unwrap();
        let bad_body = Request { body: b"{}", ..ok };
        assert_eq!(verify(&bad_body, "s3cr3t", &expect), mismatch("x-amz-content-sha256 does not match the body"));
        let bad_path = Request { path: "/api/v1/movies/a%20c", ..ok };
        assert!(matches!(verify(&bad_path, "s3cr3t", &expect), Err(SignatureFailure::Mismatch(_))));
    }

    #[test]
    fn parses_and_rejects_authorization_headers() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AK/20240101/eu-west-1/vedina/aws4_request,SignedHeaders=host;x-amz-date,  Signature=00000000000000000000000000000000000000000000000000000000000000ff",
        )
        .unwrap();
        assert_eq!((a.access_key_id.as_str(), a.date.as_str(), a.region.as_str(), a.service.as_str()), ("AK", "20240101", "eu-west-1", "vedina"));
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        let sig = "0".repeat(64);
        for bad in [
            String::new(),
            format!("AWS4-HMAC-SHA1 Credential=AK/20240101/r/s/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256Credential=AK/20240101/r/s/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/2024011/r/s/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20240101/r/s/aws5_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20240101/r/aws4_request, SignedHeaders=host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20240101/r/s/aws4_request, SignedHeaders=Host, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20240101/r/s/aws4_request, SignedHeaders=host;;a, Signature={sig}"),
            "AWS4-HMAC-SHA256 Credential=AK/20240101/r/s/aws4_request, SignedHeaders=host, Signature=abc".to_string(),
            format!("AWS4-HMAC-SHA256 Credential=AK/20240101/r/s/aws4_request, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20240101/r/s/aws4_request, SignedHeaders=host, Signature={sig}, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20240101/r/s/aws4_request, SignedHeaders=host, Signature={sig}, Foo=1"),
        ] {
            assert!(matches!(parse_authorization(&bad), Err(SignatureFailure::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_uri("/a b/%20"), "/a%20b/%2520");
        assert_eq!(canonical_uri("/ü"), "/%C3%BC");
        assert_eq!(canonical_query("b=2&a=x%20y&a=1&c"), "a=1&a=x%20y&b=2&c=");
        assert_eq!(canonical_query("k=%2f+%zz"), "k=%2F%2B%25zz");
        let headers = vec![("X-A", "  a   b  "), ("x-a", "c"), ("Other", "d")];
        assert_eq!(canonical_header_value(&headers, "x-a").as_deref(), Some("a b,c"));
        assert_eq!(canonical_header_value(&headers, "missing"), None);
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date(DATE), Some(1_440_938_160));
        assert_eq!(format_amz_date(1_440_938_160), DATE);
        assert_eq!(format_amz_date(951_782_400), "20000229T000000Z");
        for bad in ["20150830T123600", "2015-08-30T12:36:00Z", "20151330T123600Z", "20150830T253600Z", "2015083xT123600Z"] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn non_ascii_amz_date_is_rejected_not_a_panic() {
        assert_eq!(parse_amz_date("20150\u{e9}0T123600Z"), None);
        assert_eq!(parse_amz_date("2015\u{e9}\u{e9}T123600Z"), None);
        assert!(parse_amz_date("20150830T123600Z").is_some());
    }
}
