//! Python face of the JWT core: `JwtKeySet`, `JwtVerifier` and the exception
//! classes. Nothing here decides whether a token is valid; it converts
//! arguments, releases the GIL around the core, and maps errors (in
//! [`to_py_err`] only).

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use super::cache::DEFAULT_CAPACITY;
use super::errors::{Error, ErrorKind};
use super::keys::KeySet;
use super::validation::{self, Options};
use super::Verifier;

create_exception!(vedina._native, JWTError, PyValueError, "Base class of every token rejection.");
create_exception!(vedina._native, ExpiredToken, JWTError, "exp (+ leeway) has passed.");
create_exception!(vedina._native, ImmatureToken, JWTError, "nbf or iat lies in the future.");
create_exception!(vedina._native, InvalidSignature, JWTError, "The signature does not verify.");
create_exception!(
    vedina._native,
    InvalidClaims,
    JWTError,
    "A claim is missing, mistyped or wrong (exp, nbf, iat, iss, aud), or the header has crit."
);
create_exception!(
    vedina._native,
    MalformedToken,
    JWTError,
    "Not three base64url parts, bad JSON, or a header/payload that is not an object."
);
create_exception!(
    vedina._native,
    InvalidKey,
    JWTError,
    "alg none/unsupported, alg not the key's algorithm, unknown kid, or no kid with several keys."
);

/// The one place where core errors become Python exceptions. Key-loading and
/// signing errors are configuration bugs: plain `ValueError`, not `JWTError`.
#[cold]
#[inline(never)]
fn to_py_err(e: Error) -> PyErr {
    let msg = e.message;
    match e.kind {
        ErrorKind::Malformed => MalformedToken::new_err(msg),
        ErrorKind::KeyMismatch => InvalidKey::new_err(msg),
        ErrorKind::BadSignature => InvalidSignature::new_err(msg),
        ErrorKind::InvalidClaims => InvalidClaims::new_err(msg),
        ErrorKind::Expired => ExpiredToken::new_err(msg),
        ErrorKind::Immature => ImmatureToken::new_err(msg),
        ErrorKind::BadKey => PyValueError::new_err(msg),
    }
}

/// Keys by `kid`, each bound to one algorithm. Shared with verifiers, so a
/// rotation (add the new key, later remove the old) is seen by all of them.
#[pyclass(module = "vedina._native", name = "JwtKeySet", frozen)]
pub struct PyJwtKeySet {
    inner: Arc<RwLock<KeySet>>,
}

impl PyJwtKeySet {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KeySet> {
        self.inner.write().expect("key set lock poisoned")
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.inner.read().expect("key set lock poisoned")
    }
}

#[pymethods]
impl PyJwtKeySet {
    #[new]
    fn new() -> Self {
        PyJwtKeySet { inner: Arc::new(RwLock::new(KeySet::default())) }
    }

    /// Add an HS256/HS384/HS512 secret (bytes, at least the hash size).
    fn add_hmac_key(&self, kid: &str, alg: &str, secret: &[u8]) -> PyResult<()> {
        self.write().add_hmac(kid, alg, secret).map_err(to_py_err)
    }

    /// Add a verify-only public key (RS256, ES256 or EdDSA) from PEM bytes.
    fn add_public_key_pem(&self, kid: &str, alg: &str, pem: &[u8]) -> PyResult<()> {
        self.write().add_public_pem(kid, alg, pem).map_err(to_py_err)
    }

    /// Add a private key (signs and verifies) from unencrypted PEM bytes.
    fn add_private_key_pem(&self, kid: &str, alg: &str, pem: &[u8]) -> PyResult<()> {
        self.write().add_private_pem(kid, alg, pem).map_err(to_py_err)
    }

    /// Remove a key; True if it was present.
    fn remove_key(&self, kid: &str) -> bool {
        self.write().remove(kid)
    }

    fn kids(&self) -> Vec<String> {
        self.read().kids()
    }

    fn __len__(&self) -> usize {
        self.read().len()
    }

    fn __repr__(&self) -> String {
        format!("JwtKeySet(kids={:?})", self.read().kids())
    }

    /// Sign `claims` with the key `kid` (or the only signing key).
    #[pyo3(signature = (claims, kid = None))]
    fn encode(&self, claims: &Bound<'_, PyDict>, kid: Option<&str>) -> PyResult<String> {
        let payload = serde_json::to_vec(&dict_to_json(claims, 0)?)
            .map_err(|_| PyValueError::new_err("claims cannot be serialized as JSON"))?;
        validation::sign(&self.read(), &payload, kid).map_err(to_py_err)
    }
}

/// Verifies tokens with options fixed at construction, with a bounded cache.
#[pyclass(module = "vedina._native", name = "JwtVerifier", frozen)]
pub struct PyJwtVerifier {
    core: Verifier,
}

#[pymethods]
impl PyJwtVerifier {
    #[new]
    #[pyo3(signature = (keys, *, issuer = None, audience = None, leeway = 0.0, cache_capacity = DEFAULT_CAPACITY))]
    fn new(
        keys: &PyJwtKeySet,
        issuer: Option<String>,
        audience: Option<String>,
        leeway: f64,
        cache_capacity: usize,
    ) -> PyResult<Self> {
        if !(leeway.is_finite() && leeway >= 0.0) {
            return Err(PyValueError::new_err("leeway must be a finite number >= 0"));
        }
        let options = Options { issuer, audience, leeway };
        Ok(PyJwtVerifier { core: Verifier::new(Arc::clone(&keys.inner), options, cache_capacity) })
    }

    /// Verify signature, header rules and claims; a fresh dict of the claims.
    #[pyo3(signature = (token, *, now = None))]
    fn verify<'py>(&self, py: Python<'py>, token: &str, now: Option<f64>) -> PyResult<Bound<'py, PyDict>> {
        let now = match now {
            Some(now) if now.is_finite() => now,
            Some(_) => return Err(PyValueError::new_err("now must be a finite number")),
            None => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
        };
        let claims = py.detach(|| self.core.verify(token, now)).map_err(to_py_err)?;
        map_to_dict(py, &claims)
    }

    /// Verify signature and header rules only; the raw payload bytes.
    fn verify_jws<'py>(&self, py: Python<'py>, token: &str) -> PyResult<Bound<'py, PyBytes>> {
        let payload = py.detach(|| self.core.verify_jws(token)).map_err(to_py_err)?;
        Ok(PyBytes::new(py, &payload))
    }

    #[getter]
    fn cache_size(&self) -> usize {
        self.core.cache_size()
    }

    fn clear_cache(&self) {
        self.core.clear_cache()
    }
}

/// Nesting limit for `encode` claims (serde_json's parser has the same, 128).
const MAX_DEPTH: usize = 128;

fn dict_to_json(dict: &Bound<'_, PyDict>, depth: usize) -> PyResult<Value> {
    let mut map = Map::with_capacity(dict.len());
    for (k, v) in dict.iter() {
        let Ok(key) = k.cast::<PyString>() else {
            return Err(PyTypeError::new_err("claim names must be str"));
        };
        map.insert(key.to_str()?.to_owned(), to_json(&v, depth + 1)?);
    }
    Ok(Value::Object(map))
}

fn to_json(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err("claims are nested too deeply"));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: Python's bool is an int subclass.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(PyValueError::new_err("int claim does not fit in 64 bits"));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return match Number::from_f64(f.value()) {
            Some(n) => Ok(Value::Number(n)),
            None => Err(PyValueError::new_err("float claim is NaN or infinite")),
        };
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return dict_to_json(d, depth);
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return l.iter().map(|item| to_json(&item, depth + 1)).collect::<PyResult<_>>().map(Value::Array);
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return t.iter().map(|item| to_json(&item, depth + 1)).collect::<PyResult<_>>().map(Value::Array);
    }
    Err(PyTypeError::new_err("claims may hold only None, bool, int, float, str, list, tuple and dict"))
}

/// A new dict on every call, so no caller can alter cached claims.
fn map_to_dict<'py>(py: Python<'py>, map: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in map {
        dict.set_item(k, to_py(py, v)?)?;
    }
    Ok(dict)
}

/// JSON to Python: integers stay int, other numbers float.
fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => map_to_dict(py, map)?.into_any(),
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyJwtKeySet>()?;
    m.add_class::<PyJwtVerifier>()?;
    m.add("JWTError", py.get_type::<JWTError>())?;
    m.add("ExpiredToken", py.get_type::<ExpiredToken>())?;
    m.add("ImmatureToken", py.get_type::<ImmatureToken>())?;
    m.add("InvalidSignature", py.get_type::<InvalidSignature>())?;
    m.add("InvalidClaims", py.get_type::<InvalidClaims>())?;
    m.add("MalformedToken", py.get_type::<MalformedToken>())?;
    m.add("InvalidKey", py.get_type::<InvalidKey>())?;
    Ok(())
}
