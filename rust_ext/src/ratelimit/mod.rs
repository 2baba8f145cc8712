//! Host-tier rate limiting: GCRA ([`gcra`]) over a table shared by all the
//! processes of a host ([`shm`]). This file is the Python layer.

pub mod gcra;
pub mod shm;

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use gcra::{Decision, GcraError, Params};
use shm::{OnFull, SharedTable};

/// Default number of slots of a host table (16 bytes each: 1 MiB).
pub const DEFAULT_CAPACITY: usize = 65536;

impl From<GcraError> for PyErr {
    fn from(e: GcraError) -> PyErr {
        match e {
            GcraError::InvalidParams(m) => PyValueError::new_err(m),
        }
    }
}

/// The answer of a rate limiter.
#[pyclass(module = "vedina._native", name = "RateDecision", frozen, get_all, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct RateDecision {
    pub allowed: bool,
    /// The burst: most requests possible at once.
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until this request would be allowed (0.0 when allowed).
    pub retry_after: f64,
    /// Seconds until the key is back at its full burst.
    pub reset_after: f64,
    /// False when the host table had no slot for the key (see `fail_open`).
    pub tracked: bool,
    /// True when the host table evicted another live key to track this one.
    pub evicted: bool,
}

#[pymethods]
impl RateDecision {
    fn __repr__(&self) -> String {
        format!(
            "RateDecision(allowed={}, limit={}, remaining={}, retry_after={}, reset_after={}, tracked={}, evicted={})",
            py_bool(self.allowed), self.limit, self.remaining, self.retry_after, self.reset_after, py_bool(self.tracked),
            py_bool(self.evicted)
        )
    }
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

impl RateDecision {
    fn from_decision(d: &Decision, tracked: bool, evicted: bool) -> Self {
        RateDecision {
            evicted,
            allowed: d.allowed,
            limit: d.limit,
            remaining: d.remaining,
            retry_after: d.retry_after_ns as f64 / 1e9,
            reset_after: d.reset_after_ns as f64 / 1e9,
            tracked,
        }
    }
}

fn seconds_to_ns(name: &str, s: f64) -> PyResult<u64> {
    if !s.is_finite() || s < 0.0 || s * 1e9 >= u64::MAX as f64 {
        return Err(PyValueError::new_err(format!("{name} must be a finite, non-negative number of seconds")));
    }
    Ok((s * 1e9).round() as u64)
}

fn params(limit: u64, period: f64, burst: u64, cost: u64) -> PyResult<Params> {
    let period_ns = seconds_to_ns("period", period)?;
    Ok(Params::new(limit, period_ns, burst, cost)?)
}

/// CLOCK_MONOTONIC in ns: one clock for every process of the host, never stepped
/// back by NTP or an operator (the wall clock can be, and a TAT would then lie).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

fn now_ns(now: Option<f64>) -> PyResult<u64> {
    match now {
        Some(s) => seconds_to_ns("now", s),
        None => Ok(monotonic_ns()),
    }
}

/// GCRA limiter shared by every process of the host through a memory-mapped file.
#[pyclass(module = "vedina._native", name = "HostRateLimiter", frozen)]
pub struct HostRateLimiter {
    table: SharedTable,
    path: PathBuf,
    on_full: OnFull,
}

#[pymethods]
impl HostRateLimiter {
    #[new]
    #[pyo3(signature = (path, capacity = DEFAULT_CAPACITY, *, fail_open = true))]
    fn new(path: PathBuf, capacity: usize, fail_open: bool) -> PyResult<Self> {
        let table = SharedTable::open(&path, capacity)?;
        Ok(HostRateLimiter { table, path, on_full: if fail_open { OnFull::Allow } else { OnFull::Deny } })
    }

    #[pyo3(signature = (key, *, limit, period, burst, cost = 1, now = None))]
    fn check(&self, key: &str, limit: u64, period: f64, burst: u64, cost: u64, now: Option<f64>) -> PyResult<RateDecision> {
        let p = params(limit, period, burst, cost)?;
        let checked = self.table.check(key, now_ns(now)?, &p, self.on_full);
        Ok(RateDecision::from_decision(&checked.decision, checked.tracked, checked.evicted))
    }

    fn reset(&self, key: &str) {
        self.table.reset(key)
    }

    #[getter]
    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.table.capacity()
    }

    #[getter]
    fn fail_open(&self) -> bool {
        self.on_full == OnFull::Allow
    }

    /// Slots holding a key (O(capacity): for tests and metrics).
    fn occupied(&self) -> usize {
        self.table.occupied()
    }
}

/// Pure GCRA step: the decision for a key whose stored TAT is `tat_ns` (0 =
/// unknown key) at `now_ns`, and the TAT to store (unchanged when denied).
#[pyfunction]
#[pyo3(signature = (tat_ns, now_ns, *, limit, period, burst, cost = 1))]
fn gcra_decide(tat_ns: u64, now_ns: u64, limit: u64, period: f64, burst: u64, cost: u64) -> PyResult<(RateDecision, u64)> {
    let d = gcra::decide(tat_ns, now_ns, &params(limit, period, burst, cost)?);
    Ok((RateDecision::from_decision(&d, true, false), d.new_tat_ns))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RateDecision>()?;
    m.add_class::<HostRateLimiter>()?;
    m.add_function(wrap_pyfunction!(gcra_decide, m)?)?;
    Ok(())
}
