//! `vedina._native`: the Rust hot paths of Vedina.
//!
//! This file only declares the modules and registers them in the Python
//! module; each module keeps its pure-Rust core and its thin PyO3 layer apart.

use pyo3::prelude::*;

pub mod errors;
pub mod generations;
pub mod jwt;
pub mod mapped;
pub mod playback;
pub mod range;
pub mod ratelimit;
pub mod router;
pub mod sigv4;
pub mod webhook;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    router::register(m)?;
    errors::register(m)?;
    range::register(m)?;
    ratelimit::register(m)?;
    sigv4::register(m)?;
    webhook::register(m)?;
    jwt::register(m)?;
    generations::register(m)?;
    playback::register(m)?;
    Ok(())
}
