//! Python exceptions raised by the native hot paths, declared once here.
//!
//! Each Rust module returns its own error enum; the conversion to one of these
//! exceptions happens only at the PyO3 boundary (`impl From<...> for PyErr`
//! next to the enum).

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

// The Range header was valid but none of its ranges overlaps the file: the
// server answers 416 with `Content-Range: bytes */<size>`.
create_exception!(
    vedina._native,
    RangeNotSatisfiable,
    PyValueError,
    "The Range header is valid but no range is satisfiable: answer 416 with `Content-Range: bytes */size`."
);

// Base of every request/webhook signature failure, so a caller can answer 401
// (or 403) for all of them with a single `except SignatureError`.
create_exception!(
    vedina._native,
    SignatureError,
    PyException,
    "A request or webhook signature was refused."
);
create_exception!(
    vedina._native,
    SignatureMismatch,
    SignatureError,
    "The signature is well formed and fresh but does not match (wrong secret or tampered request)."
);
create_exception!(
    vedina._native,
    SignatureExpired,
    SignatureError,
    "The signed timestamp is outside the allowed clock-skew window."
);
create_exception!(
    vedina._native,
    MalformedSignature,
    SignatureError,
    "The signature header (or a header it depends on) cannot be parsed or is incomplete."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RangeNotSatisfiable", py.get_type::<RangeNotSatisfiable>())?;
    m.add("SignatureError", py.get_type::<SignatureError>())?;
    m.add("SignatureMismatch", py.get_type::<SignatureMismatch>())?;
    m.add("SignatureExpired", py.get_type::<SignatureExpired>())?;
    m.add("MalformedSignature", py.get_type::<MalformedSignature>())?;
    Ok(())
}
