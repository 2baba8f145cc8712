//! A fixed-capacity hash table of GCRA TATs in a memory-mapped file, shared
//! by every process on the host that maps the same path (e.g. under
//! `/dev/shm`), with no lock and no server: each decision is a CAS on one
//! 64-bit word.
//!
//! Each slot is two words, `{ AtomicU64 key_hash (0 = empty), AtomicU64 tat_ns }`,
//! in a file created and opened by [`crate::mapped`] (exclusive creation, mode
//! 0600, no symlinks, a random SipHash key per table).
//!
//! Slots: open addressing with linear probing over at most [`MAX_PROBE`]
//! slots from `fastrange(hash)`. A lookup walks the window:
//!
//! * key == hash: found;
//! * key == 0: the chain ends; claim it with CAS(0 -> hash) (a failed CAS is
//!   re-read: another process may have just claimed it for the same key);
//! * another key whose TAT <= now (that key is back at full burst, forgetting
//!   it changes no decision): reclaimable. The first one met is reclaimed if
//!   the key is not found in the window and no empty slot precedes it.
//!
//! Reclaiming uses a marker so that a process still working on the old key
//! cannot write its TAT into the new key's slot: CAS(tat: old -> RECLAIMING),
//! store key = new hash, store tat = 0. A TAT update loads the TAT, then checks
//! the key, then CASes the TAT: if the slot was reclaimed meanwhile, either the
//! key check or the CAS fails and the lookup restarts.
//!
//! Known limits (documented, not hidden):
//! * two processes inserting the same NEW key at the same instant, while the
//!   window holds reclaimable slots, may place it in two slots; that key then
//!   gets up to one extra burst, once;
//! * a slot whose TAT is 0 (just claimed or reset) can be reclaimed between
//!   another process's key check and its CAS (ABA): that request is then
//!   charged to the new key once. Making key and TAT one 128-bit CAS would
//!   close both; this table keeps 64-bit atomics for portability;
//! * a process killed between the two stores of a reclaim (a few instructions)
//!   leaves that slot marked until the file is recreated;
//! * keys are hashed to 64 bits (SipHash-1-3 with the table's random key): two
//!   keys with the same hash share a limit (probability ~ n^2 / 2^65), and
//!   nobody without the file can choose keys that collide.


use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

pub use crate::mapped::ShmError;
use crate::mapped::{Kind, MappedTable};

use super::gcra::{self, Decision, Params};

const KIND: Kind = Kind { magic: u64::from_le_bytes(*b"VEDGCRA1"), version: 2, words_per_slot: 2, name: "rate-limit table" };
/// Longest probe sequence: bounds the work per decision. A key whose window
/// holds only live other keys finds the table "full".
pub const MAX_PROBE: usize = 32;
/// TAT value of a slot being handed to another key.
const RECLAIMING: u64 = u64::MAX;

/// What happens when no slot can be found for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Allow the request untracked (the cluster tier still limits).
    Allow,
    /// Deny it.
    Deny,
}

/// The outcome of [`SharedTable::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub decision: Decision,
    /// False when the table had no slot for the key (decision from [`OnFull`]).
    pub tracked: bool,
}

pub struct SharedTable {
    table: MappedTable,
}

impl SharedTable {
    /// Open the table at `path`, creating it with `capacity` slots if missing.
    /// An existing file must have the same capacity.
    pub fn open(path: &Path, capacity: usize) -> Result<SharedTable, ShmError> {
        Ok(SharedTable { table: MappedTable::open(path, KIND, capacity)? })
    }

    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    fn key_at(&self, slot: usize) -> &AtomicU64 {
        self.table.slot_word(slot, 0)
    }

    fn tat_at(&self, slot: usize) -> &AtomicU64 {
        self.table.slot_word(slot, 1)
    }

    fn home(&self, hash: u64) -> usize {
        self.table.home(hash)
    }

    fn window(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let home = self.home(hash);
        (0..MAX_PROBE.min(self.capacity())).map(move |i| (home + i) % self.capacity())
    }

    /// The slot holding `hash`, if any.
    fn find(&self, hash: u64) -> Option<usize> {
        for slot in self.window(hash) {
            match self.key_at(slot).load(SeqCst) {
                k if k == hash => return Some(slot),
                0 => return None, // chains never have holes: slots are never emptied
                _ => {}
            }
        }
        None
    }

    /// The slot for `hash`, claiming an empty or reclaimable one if needed.
    fn find_or_claim(&self, hash: u64, now: u64) -> Option<usize> {
        'retry: for _ in 0..MAX_PROBE {
            let mut reclaimable = None;
            for slot in self.window(hash) {
                let key = self.key_at(slot).load(SeqCst);
                if key == hash {
                    return Some(slot);
                }
                if key == 0 {
                    if let Some(slot) = reclaimable {
                        if self.reclaim(slot, hash, now) {
                            return Some(slot);
                        }
                        continue 'retry;
                    }
                    match self.key_at(slot).compare_exchange(0, hash, SeqCst, SeqCst) {
                        Ok(_) => return Some(slot),
                        Err(k) if k == hash => return Some(slot),
                        Err(_) => continue 'retry, // lost the slot to another key: rescan
                    }
                }
                let tat = self.tat_at(slot).load(SeqCst);
                if reclaimable.is_none() && tat != RECLAIMING && tat <= now {
                    reclaimable = Some(slot);
                }
            }
            // Window full of other keys: take the first expired one, if any.
            return match reclaimable {
                Some(slot) if self.reclaim(slot, hash, now) => Some(slot),
                Some(_) => continue 'retry,
                None => None,
            };
        }
        None
    }

    /// Hand `slot` (another key's, expired) to `hash`.
    fn reclaim(&self, slot: usize, hash: u64, now: u64) -> bool {
        let tat = self.tat_at(slot).load(SeqCst);
        if tat == RECLAIMING || tat > now {
            return false;
        }
        if self.tat_at(slot).compare_exchange(tat, RECLAIMING, SeqCst, SeqCst).is_err() {
            return false;
        }
        // We own the slot until the TAT is stored again. The old TAT was in
        // the past, so 0 ("full burst") describes the new key exactly.
        self.key_at(slot).store(hash, SeqCst);
        self.tat_at(slot).store(0, SeqCst);
        true
    }

    /// Decide a request for `key` at `now_ns` and record it when allowed.
    pub fn check(&self, key: &str, now_ns: u64, params: &Params, on_full: OnFull) -> Checked {
        let hash = self.table.hash(key);
        'lookup: for _ in 0..1000 {
            let Some(slot) = self.find_or_claim(hash, now_ns) else { break };
            loop {
                let tat = self.tat_at(slot).load(SeqCst);
                if tat == RECLAIMING {
                    std::hint::spin_loop();
                    continue 'lookup;
                }
                // Load the key after the TAT: if the slot was handed to another
                // key, either this check or the CAS below fails.
                if self.key_at(slot).load(SeqCst) != hash {
                    continue 'lookup;
                }
                let decision = gcra::decide(tat, now_ns, params);
                // A denied request (or cost 0) leaves the TAT alone.
                if !decision.allowed || params.cost == 0 {
                    return Checked { decision, tracked: true };
                }
                if self.tat_at(slot).compare_exchange_weak(tat, decision.new_tat_ns, SeqCst, SeqCst).is_ok() {
                    return Checked { decision, tracked: true };
                }
            }
        }
        let untracked = gcra::decide(0, now_ns, params);
        let decision = match on_full {
            OnFull::Allow => untracked,
            OnFull::Deny => Decision {
                allowed: false,
                remaining: 0,
                retry_after_ns: params.interval_ns * params.cost.max(1),
                new_tat_ns: 0,
                ..untracked
            },
        };
        Checked { decision, tracked: false }
    }

    /// Forget `key`: its next request starts from a full burst.
    pub fn reset(&self, key: &str) {
        let hash = self.table.hash(key);
        if let Some(slot) = self.find(hash) {
            let tat = self.tat_at(slot);
            let mut current = tat.load(SeqCst);
            // Set 0 unless the slot is being reclaimed (then the key is gone anyway).
            while current != RECLAIMING && self.key_at(slot).load(SeqCst) == hash {
                match tat.compare_exchange_weak(current, 0, SeqCst, SeqCst) {
                    Ok(_) => break,
                    Err(now) => current = now,
                }
            }
        }
    }

    /// Slots currently holding a key (for tests and metrics; O(capacity)).
    pub fn occupied(&self) -> usize {
        (0..self.capacity()).filter(|&s| self.key_at(s).load(SeqCst) != 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("vedina-shm-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn create_reopen_and_share() {
        let path = temp_path("reopen");
        let p = Params::new(10, S, 3, 1).unwrap();
        let a = SharedTable::open(&path, 64).unwrap();
        let b = SharedTable::open(&path, 64).unwrap(); // a second mapping, as another process would
        let now = 100 * S;
        assert!(a.check("k", now, &p, OnFull::Deny).decision.allowed);
        assert!(b.check("k", now, &p, OnFull::Deny).decision.allowed);
        assert!(a.check("k", now, &p, OnFull::Deny).decision.allowed);
        let c = b.check("k", now, &p, OnFull::Deny);
        assert!(c.tracked && !c.decision.allowed);
        assert!(matches!(SharedTable::open(&path, 128), Err(ShmError::Incompatible(_))));
        b.reset("k");
        assert!(a.check("k", now, &p, OnFull::Deny).decision.allowed);
        let garbage = temp_path("garbage");
        std::fs::write(&garbage, vec![7u8; 200]).unwrap();
        assert!(matches!(SharedTable::open(&garbage, 1), Err(ShmError::Incompatible(_))));
        let _ = std::fs::remove_file(&garbage);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn collisions_full_window_and_reclaim() {
        // Capacity 4 < MAX_PROBE: every key shares one window of 4 slots.
        let path = temp_path("full");
        let t = SharedTable::open(&path, 4).unwrap();
        let p = Params::new(1, S, 1, 1).unwrap(); // one per second
        let now = 1_000 * S;
        for k in ["a", "b", "c", "d"] {
            assert!(t.check(k, now, &p, OnFull::Deny).decision.allowed);
        }
        assert_eq!(t.occupied(), 4);
        // each key keeps its own state despite sharing the window
        for k in ["a", "b", "c", "d"] {
            assert!(!t.check(k, now, &p, OnFull::Deny).decision.allowed);
        }
        // full: a fifth live key is refused or allowed per policy, untracked
        let full = t.check("e", now, &p, OnFull::Deny);
        assert!(!full.tracked && !full.decision.allowed);
        let open = t.check("e", now, &p, OnFull::Allow);
        assert!(!open.tracked && open.decision.allowed);
        // one second later every TAT is in the past: "e" reclaims a slot and
        // starts from a full burst; the reclaimed key also starts fresh later.
        let later = now + S;
        let e = t.check("e", later, &p, OnFull::Deny);
        assert!(e.tracked && e.decision.allowed);
        assert!(!t.check("e", later, &p, OnFull::Deny).decision.allowed);
        assert_eq!(t.occupied(), 4);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn threads_make_exact_decisions() {
        let path = temp_path("threads");
        let t = std::sync::Arc::new(SharedTable::open(&path, 1024).unwrap());
        let p = Params::new(100, S, 50, 1).unwrap();
        let now = 5_000 * S;
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || (0..1000).filter(|_| t.check("hot", now, &p, OnFull::Deny).decision.allowed).count())
            })
            .collect();
        let allowed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(allowed, 50);
        let _ = std::fs::remove_file(&path);
    }
}
