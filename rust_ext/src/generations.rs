//! Invalidation generations shared by every process of a host.
//!
//! A per-worker cache must drop an entry as soon as anything it was built from
//! changes, on every worker, without asking a server on each read. This table
//! gives each key a *generation*: a counter in shared memory that a writer
//! bumps after its change committed. A reader stamps a cache entry with the
//! generation of the keys it depends on, read *before* it loaded the value, and
//! trusts the entry only while the stamp is unchanged:
//!
//! ```text
//! reader: s = stamp(keys); v = load(); cache(v, s)      later: hit iff stamp(keys) == s
//! writer: commit(change); bump(keys)
//! ```
//!
//! If the bump lands after `s` was read, the entry's stamp is stale and the next
//! read misses (at worst a needless reload); if it landed before, `load` saw
//! the committed change. A hit is one hash and a few atomic loads: no system
//! call, no I/O.
//!
//! Keys hash (SipHash with the table's random key) into `capacity` counters;
//! two keys sharing a counter only cause extra misses. A stamp is the sum of
//! the keys' counters and the table's *epoch* (header word 5), which
//! [`Generations::bump_all`] increments to invalidate everything at once (a
//! push channel that may have lost messages). Counters only grow, so a sum
//! changes whenever any of its terms does, and a stale file left by an earlier
//! run is as valid as a new one. A bump is one `fetch_add`: a process killed at
//! any point leaves no half-written state.

use std::path::Path;
use std::sync::atomic::Ordering::{Acquire, Release};

use crate::mapped::{Kind, MappedTable, ShmError};

const KIND: Kind = Kind { magic: u64::from_le_bytes(*b"VEDGENS1"), version: 1, words_per_slot: 1, name: "generation table" };
const EPOCH_WORD: usize = 5;

pub struct Generations {
    table: MappedTable,
}

impl Generations {
    /// Open the table at `path`, creating it with `capacity` counters if missing.
    pub fn open(path: &Path, capacity: usize) -> Result<Generations, ShmError> {
        Ok(Generations { table: MappedTable::open(path, KIND, capacity)? })
    }

    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    fn counter(&self, key: &str) -> &std::sync::atomic::AtomicU64 {
        self.table.slot_word(self.table.home(self.table.hash(key)), 0)
    }

    /// The stamp of a set of keys: changes whenever any of them is bumped, or
    /// everything is.
    pub fn stamp<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> u64 {
        // Acquire pairs with the writers' Release: a reader that sees a bump
        // also sees what the writer did before it.
        keys.into_iter()
            .fold(self.table.header_word(EPOCH_WORD).load(Acquire), |sum, key| sum.wrapping_add(self.counter(key).load(Acquire)))
    }

    /// Invalidate every entry that depends on one of `keys`.
    pub fn bump<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        for key in keys {
            self.counter(key).fetch_add(1, Release);
        }
    }

    /// Invalidate every entry.
    pub fn bump_all(&self) {
        self.table.header_word(EPOCH_WORD).fetch_add(1, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        crate::mapped::test_table_path("gen", name)
    }

    #[test]
    fn a_bump_changes_every_stamp_that_holds_the_key() {
        let path = temp_path("bump");
        let writer = Generations::open(&path, 1024).unwrap();
        let reader = Generations::open(&path, 1024).unwrap(); // another process's mapping
        let user = reader.stamp(["user:1"]);
        let token = reader.stamp(["deny:abc", "session:f1", "user:1"]);
        writer.bump(["user:1"]);
        assert_ne!(reader.stamp(["user:1"]), user);
        assert_ne!(reader.stamp(["deny:abc", "session:f1", "user:1"]), token);
        let after = reader.stamp(["user:1"]);
        assert_eq!(reader.stamp(["user:1"]), after, "stable without writes");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn bump_all_changes_every_stamp_and_stale_files_stay_valid() {
        let path = temp_path("epoch");
        let t = Generations::open(&path, 16).unwrap();
        let before = [t.stamp(["a"]), t.stamp(["b", "c"]), t.stamp([])];
        t.bump_all();
        let after = [t.stamp(["a"]), t.stamp(["b", "c"]), t.stamp([])];
        for (b, a) in before.iter().zip(after) {
            assert_ne!(*b, a);
        }
        drop(t);
        let reopened = Generations::open(&path, 16).unwrap();
        assert_eq!(reopened.stamp(["a"]), after[0], "counters survive a reopen");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn concurrent_bumps_are_all_counted() {
        let path = temp_path("threads");
        let t = std::sync::Arc::new(Generations::open(&path, 4).unwrap());
        let start = t.stamp(["hot"]);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| t.bump(["hot"])))
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(t.stamp(["hot"]) - start, 4000);
        let _ = std::fs::remove_file(&path);
    }
}

// -- Python layer -----------------------------------------------------------

use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

/// Default number of counters (8 bytes each: 512 KiB).
pub const DEFAULT_CAPACITY: usize = 65536;

fn with_keys<T>(keys: &Bound<'_, PyTuple>, f: impl FnOnce(&mut dyn Iterator<Item = &str>) -> T) -> PyResult<T> {
    let strings: Vec<Bound<'_, PyString>> = keys.iter().map(|k| k.cast_into::<PyString>().map_err(PyErr::from)).collect::<PyResult<_>>()?;
    let texts: Vec<&str> = strings.iter().map(|s| s.to_str()).collect::<PyResult<_>>()?;
    Ok(f(&mut texts.into_iter()))
}

/// Invalidation generations shared by every process of the host (see the module docs).
#[pyclass(module = "vedina._native", name = "GenerationTable", frozen)]
pub struct PyGenerations {
    table: Generations,
    path: std::path::PathBuf,
}

#[pymethods]
impl PyGenerations {
    #[new]
    #[pyo3(signature = (path, capacity = DEFAULT_CAPACITY))]
    fn new(path: std::path::PathBuf, capacity: usize) -> PyResult<Self> {
        Ok(PyGenerations { table: Generations::open(&path, capacity)?, path })
    }

    /// The stamp of `keys`: equal to an earlier stamp of the same keys iff none was bumped since.
    #[pyo3(signature = (*keys))]
    fn stamp(&self, keys: &Bound<'_, PyTuple>) -> PyResult<u64> {
        with_keys(keys, |it| self.table.stamp(it))
    }

    /// Invalidate what depends on any of `keys` (call after the change committed).
    #[pyo3(signature = (*keys))]
    fn bump(&self, keys: &Bound<'_, PyTuple>) -> PyResult<()> {
        with_keys(keys, |it| self.table.bump(it))
    }

    /// Invalidate everything.
    fn bump_all(&self) {
        self.table.bump_all()
    }

    #[getter]
    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGenerations>()
}
