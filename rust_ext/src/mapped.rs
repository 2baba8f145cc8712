//! Tables of 64-bit atomics in a memory-mapped file, shared by every process
//! of a host that maps the same path (e.g. under `/dev/shm`), with no lock and
//! no server. The rate limiter's host tier and the invalidation generations
//! are such tables; this module creates and opens them safely.
//!
//! File layout (native-endian words):
//!
//! ```text
//! offset 0   u64 magic (names the kind of table)
//!        8   u64 version
//!        16  u64 capacity (slots)
//!        24  2 x u64 SipHash key, random per table
//!        40  3 x u64 header words free for the table's own atomics
//!        64  capacity x slot (words_per_slot x AtomicU64)
//! ```
//!
//! The file is created complete (zeros written, not sparse) under a random
//! temporary name with `O_EXCL` and mode 0600, and published with `link(2)`,
//! which fails if the path exists: a process never maps a half-initialised
//! table, and concurrent creators agree on one file. Opening refuses symlinks
//! and files not owned by this user or writable by others: in a shared
//! directory another local user could otherwise plant or swap a table.

use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::io::Write;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use memmap2::MmapMut;
use siphasher::sip::SipHasher13;

pub const HEADER_BYTES: usize = 64;
/// Header words 5, 6 and 7 belong to the table kind (see [`MappedTable::header_word`]).
pub const FREE_HEADER_WORDS: std::ops::Range<usize> = 5..8;
const HASH_KEY_WORD: usize = 3;

#[derive(Debug)]
pub enum ShmError {
    Io(std::io::Error),
    /// The file exists but is not a table of this kind, version or capacity.
    Incompatible(String),
    InvalidCapacity,
}

impl From<std::io::Error> for ShmError {
    fn from(e: std::io::Error) -> Self {
        ShmError::Io(e)
    }
}

/// What a table file must hold.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub magic: u64,
    pub version: u64,
    pub words_per_slot: usize,
    /// For error messages: "rate-limit table", ...
    pub name: &'static str,
}

/// The 64-bit hash of a key under a table's SipHash key; never 0 (0 marks an empty slot).
pub fn key_hash(hash_key: (u64, u64), key: &str) -> u64 {
    let mut h = SipHasher13::new_with_keys(hash_key.0, hash_key.1);
    h.write(key.as_bytes());
    h.finish().max(1)
}

/// 16 random bytes from the kernel.
fn random_words() -> std::io::Result<(u64, u64)> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let (a, b) = bytes.split_at(8);
    Ok((u64::from_ne_bytes(a.try_into().expect("8 bytes")), u64::from_ne_bytes(b.try_into().expect("8 bytes"))))
}

pub struct MappedTable {
    _map: MmapMut,
    base: NonNull<AtomicU64>,
    capacity: usize,
    words_per_slot: usize,
    hash_key: (u64, u64),
}

// SAFETY: after `open` checked the header, the mapping is only accessed
// through `AtomicU64`s, which are safe to share between threads; `base` points
// into `_map`, which lives as long as the table and never moves.
unsafe impl Send for MappedTable {}
unsafe impl Sync for MappedTable {}

impl MappedTable {
    /// Open the table of `kind` at `path`, creating it with `capacity` slots
    /// if missing. An existing file must be of the same kind and capacity.
    pub fn open(path: &Path, kind: Kind, capacity: usize) -> Result<MappedTable, ShmError> {
        if capacity == 0 || capacity > (1 << 40) {
            return Err(ShmError::InvalidCapacity);
        }
        let len = HEADER_BYTES + capacity * kind.words_per_slot * 8;
        if !path.exists() {
            create(path, kind, capacity, len)?;
        }
        let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
        let meta = file.metadata()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if !meta.is_file() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
            return Err(ShmError::Incompatible(format!(
                "{} must be a regular file owned by this user and writable by it alone",
                path.display()
            )));
        }
        let actual = meta.len();
        if actual < HEADER_BYTES as u64 {
            return Err(ShmError::Incompatible(format!("{} is too short for a {}", path.display(), kind.name)));
        }
        // SAFETY: the file is shared with other processes on purpose; all
        // accesses after the header check go through atomics.
        let mut map = unsafe { MmapMut::map_mut(&file)? };
        let word = |i: usize| u64::from_ne_bytes(map[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        if word(0) != kind.magic || word(1) != kind.version {
            return Err(ShmError::Incompatible(format!(
                "{} is not a version {} {}",
                path.display(),
                kind.version,
                kind.name
            )));
        }
        if word(2) != capacity as u64 || actual != len as u64 {
            return Err(ShmError::Incompatible(format!("{} has capacity {}, not {capacity}", path.display(), word(2))));
        }
        if map.len() != len {
            // The file changed size between the check and the mapping.
            return Err(ShmError::Incompatible(format!("{} changed size while opening", path.display())));
        }
        let hash_key = (word(HASH_KEY_WORD), word(HASH_KEY_WORD + 1));
        let base = NonNull::new(map.as_mut_ptr().cast::<AtomicU64>()).expect("mmap is not null");
        Ok(MappedTable { _map: map, base, capacity, words_per_slot: kind.words_per_slot, hash_key })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// This table's hash of `key` (never 0).
    pub fn hash(&self, key: &str) -> u64 {
        key_hash(self.hash_key, key)
    }

    /// Word `word` of slot `slot`.
    pub fn slot_word(&self, slot: usize, word: usize) -> &AtomicU64 {
        assert!(slot < self.capacity && word < self.words_per_slot);
        // SAFETY: in bounds (asserted; the mapping's length was checked in
        // `open`); the offset is a multiple of 8 from a page-aligned base, as
        // AtomicU64 requires; the mapping outlives &self.
        unsafe { &*self.base.as_ptr().add(HEADER_BYTES / 8 + slot * self.words_per_slot + word) }
    }

    /// One of the header words free for the table kind's own use.
    pub fn header_word(&self, index: usize) -> &AtomicU64 {
        assert!(FREE_HEADER_WORDS.contains(&index));
        // SAFETY: as in `slot_word`; the header is 8 words.
        unsafe { &*self.base.as_ptr().add(index) }
    }

    /// Lemire's fastrange: a slot index uniform over any capacity, no modulo.
    pub fn home(&self, hash: u64) -> usize {
        ((hash as u128 * self.capacity as u128) >> 64) as usize
    }
}

fn create(path: &Path, kind: Kind, capacity: usize, len: usize) -> Result<(), ShmError> {
    let (k0, k1) = random_words()?;
    // An unpredictable name, created exclusively (never following a planted
    // symlink), readable and writable by this user only.
    let tmp = path.with_extension(format!("tmp.{:016x}", random_words()?.0));
    let result = (|| -> Result<(), ShmError> {
        let mut f: File = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        let mut header = [0u8; HEADER_BYTES];
        header[0..8].copy_from_slice(&kind.magic.to_ne_bytes());
        header[8..16].copy_from_slice(&kind.version.to_ne_bytes());
        header[16..24].copy_from_slice(&(capacity as u64).to_ne_bytes());
        header[24..32].copy_from_slice(&k0.to_ne_bytes());
        header[32..40].copy_from_slice(&k1.to_ne_bytes());
        f.write_all(&header)?;
        // Zeros written, not a sparse set_len: a full tmpfs then fails here
        // with an error, instead of SIGBUS in a worker on first use.
        let zeros = vec![0u8; 1 << 16];
        let mut left = len - HEADER_BYTES;
        while left > 0 {
            let n = left.min(zeros.len());
            f.write_all(&zeros[..n])?;
            left -= n;
        }
        f.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()), // another process won
            Err(e) => Err(e.into()),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

impl From<ShmError> for pyo3::PyErr {
    fn from(e: ShmError) -> pyo3::PyErr {
        use pyo3::exceptions::{PyOSError, PyValueError};
        match e {
            ShmError::Io(e) => PyOSError::new_err(e.to_string()),
            ShmError::Incompatible(m) => PyValueError::new_err(m),
            ShmError::InvalidCapacity => PyValueError::new_err("capacity must be between 1 and 2**40"),
        }
    }
}

/// A fresh path in the temporary directory for a table file of the tests (`kind` and `name`
/// keep the tests of one run apart; the process id keeps runs apart).
#[cfg(test)]
pub(crate) fn test_table_path(kind: &str, name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("vedina-{kind}-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::SeqCst;

    const KIND: Kind = Kind { magic: u64::from_le_bytes(*b"VEDTEST1"), version: 1, words_per_slot: 2, name: "test table" };

    fn temp_path(name: &str) -> std::path::PathBuf {
        test_table_path("mapped", name)
    }

    #[test]
    fn two_mappings_share_words_and_header() {
        let path = temp_path("share");
        let a = MappedTable::open(&path, KIND, 8).unwrap();
        let b = MappedTable::open(&path, KIND, 8).unwrap();
        a.slot_word(7, 1).store(42, SeqCst);
        a.header_word(5).store(9, SeqCst);
        assert_eq!(b.slot_word(7, 1).load(SeqCst), 42);
        assert_eq!(b.slot_word(7, 0).load(SeqCst), 0);
        assert_eq!(b.header_word(5).load(SeqCst), 9);
        assert_eq!(a.hash("k"), b.hash("k"), "one hash key per table");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn refuses_other_kinds_capacities_and_modes() {
        let path = temp_path("refuse");
        MappedTable::open(&path, KIND, 8).unwrap();
        assert!(matches!(MappedTable::open(&path, KIND, 16), Err(ShmError::Incompatible(_))));
        let other = Kind { magic: u64::from_le_bytes(*b"VEDOTHER"), ..KIND };
        assert!(matches!(MappedTable::open(&path, other, 8), Err(ShmError::Incompatible(_))));
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(MappedTable::open(&path, KIND, 8), Err(ShmError::Incompatible(_))));
        assert!(matches!(MappedTable::open(&path, KIND, 0), Err(ShmError::InvalidCapacity)));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn tables_get_distinct_hash_keys() {
        let (p, q) = (temp_path("key-a"), temp_path("key-b"));
        let (a, b) = (MappedTable::open(&p, KIND, 1).unwrap(), MappedTable::open(&q, KIND, 1).unwrap());
        assert_ne!(a.hash("same key"), b.hash("same key"));
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_file(&q);
    }
}
