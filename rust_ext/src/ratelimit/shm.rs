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
//! * a window full of live keys (a flood of cheap keys: random emails, IPv6
//!   prefixes): the key with the smallest TAT — the one closest to full burst,
//!   whose forgetting changes least — is *evicted* and its slot handed over.
//!   The table never stops limiting because it is full ([`Checked::evicted`]
//!   says when it had to evict, for a metric).
//!
//! Reclaiming uses a marker so that a process still working on the old key
//! cannot write its TAT into the new key's slot: CAS(tat: old -> marker),
//! store key = new hash, store tat = 0. The marker is the top bit plus the time
//! it was set, so a marker left by a process killed between those stores is
//! recognised once older than [`STALE_RECLAIM_NS`] and taken over. A TAT update
//! loads the TAT, then checks the key, then CASes the TAT: if the slot was
//! reclaimed meanwhile, either the key check or the CAS fails and the lookup
//! restarts. A stored TAT far further ahead than any decision can set (the
//! clock went back, or a table from before a reboot) counts as none.
//!
//! Time is the caller's: [`super::monotonic_ns`] (CLOCK_MONOTONIC, one clock
//! for every process of the host, immune to wall-clock steps) by default.
//!
//! Known limits (documented, not hidden):
//! * two processes inserting the same NEW key at the same instant, while the
//!   window holds reclaimable slots, may place it in two slots; that key then
//!   gets up to one extra burst, once;
//! * a slot whose TAT is 0 (just claimed or reset) can be reclaimed between
//!   another process's key check and its CAS (ABA): that request is then
//!   charged to the new key once. Making key and TAT one 128-bit CAS would
//!   close both; this table keeps 64-bit atomics for portability;
//! * keys are hashed to 64 bits (SipHash-1-3 with the table's random key): two
//!   keys with the same hash share a limit (probability ~ n^2 / 2^65), and
//!   nobody without the file can choose keys that collide.


use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

pub use crate::mapped::ShmError;
use crate::mapped::{Kind, MappedTable};

use super::gcra::{self, Decision, Params};

// Version 3: monotonic time and time-stamped reclaim markers (a version-2 table holds wall-clock TATs).
const KIND: Kind = Kind { magic: u64::from_le_bytes(*b"VEDGCRA1"), version: 3, words_per_slot: 2, name: "rate-limit table" };
/// Longest probe sequence: bounds the work per decision. A key whose window
/// holds only live other keys finds the table "full".
pub const MAX_PROBE: usize = 32;
/// Set in the TAT word of a slot being handed to another key; the low bits hold when.
const RECLAIM_FLAG: u64 = 1 << 63;
/// A handover takes a few instructions: a marker this old was left by a process that died.
pub const STALE_RECLAIM_NS: u64 = 1_000_000_000;

/// Slack before a TAT counts as impossibly far ahead (processes read the clock at slightly different times).
const HORIZON_SLACK_NS: u64 = 60_000_000_000;

fn reclaiming(tat: u64) -> bool {
    tat & RECLAIM_FLAG != 0
}

fn stale_marker(tat: u64, now: u64) -> bool {
    reclaiming(tat) && now.saturating_sub(tat & !RECLAIM_FLAG) > STALE_RECLAIM_NS
}

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
    /// True when another live key was evicted to make room for this one.
    pub evicted: bool,
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

    /// The slot for `hash` (and whether a live key was evicted for it), claiming
    /// an empty, expired or stale slot, or evicting the live key with the smallest TAT.
    fn find_or_claim(&self, hash: u64, now: u64) -> Option<(usize, bool)> {
        'retry: for _ in 0..MAX_PROBE {
            let mut reclaimable = None;
            let mut victim: Option<(usize, u64)> = None;
            for slot in self.window(hash) {
                let key = self.key_at(slot).load(SeqCst);
                if key == hash {
                    return Some((slot, false));
                }
                if key == 0 {
                    if let Some(slot) = reclaimable {
                        if self.reclaim(slot, hash, now, false) {
                            return Some((slot, false));
                        }
                        continue 'retry;
                    }
                    match self.key_at(slot).compare_exchange(0, hash, SeqCst, SeqCst) {
                        Ok(_) => return Some((slot, false)),
                        Err(k) if k == hash => return Some((slot, false)),
                        Err(_) => continue 'retry, // lost the slot to another key: rescan
                    }
                }
                let tat = self.tat_at(slot).load(SeqCst);
                if reclaimable.is_none() && ((!reclaiming(tat) && tat <= now) || stale_marker(tat, now)) {
                    reclaimable = Some(slot);
                }
                if !reclaiming(tat) && victim.is_none_or(|(_, least)| tat < least) {
                    victim = Some((slot, tat));
                }
            }
            // Window full of other keys: take an expired one, else evict the least live.
            if let Some(slot) = reclaimable {
                if self.reclaim(slot, hash, now, false) {
                    return Some((slot, false));
                }
                continue 'retry;
            }
            match victim {
                Some((slot, _)) if self.reclaim(slot, hash, now, true) => return Some((slot, true)),
                Some(_) => continue 'retry,
                None => return None, // every slot of the window is being handed over right now
            }
        }
        None
    }

    /// Hand `slot` to `hash`: an expired key's (or, with `evict`, a live one's), or a stale marker.
    fn reclaim(&self, slot: usize, hash: u64, now: u64, evict: bool) -> bool {
        let tat = self.tat_at(slot).load(SeqCst);
        let takeable = if reclaiming(tat) { stale_marker(tat, now) } else { evict || tat <= now };
        if !takeable || self.tat_at(slot).compare_exchange(tat, RECLAIM_FLAG | now, SeqCst, SeqCst).is_err() {
            return false;
        }
        // We own the slot until the TAT is stored again; 0 ("full burst") starts the new key.
        self.key_at(slot).store(hash, SeqCst);
        self.tat_at(slot).store(0, SeqCst);
        true
    }

    /// Decide a request for `key` at `now_ns` and record it when allowed.
    pub fn check(&self, key: &str, now_ns: u64, params: &Params, on_full: OnFull) -> Checked {
        let hash = self.table.hash(key);
        // The furthest ahead a decision can leave a TAT, with room for callers whose `now`
        // was read a little earlier than another's: beyond it, the stored value is not real.
        let horizon = now_ns
            .saturating_add(params.interval_ns.saturating_mul(params.burst).saturating_mul(2))
            .saturating_add(HORIZON_SLACK_NS);
        'lookup: for _ in 0..1000 {
            let Some((slot, evicted)) = self.find_or_claim(hash, now_ns) else { break };
            loop {
                let tat = self.tat_at(slot).load(SeqCst);
                if reclaiming(tat) {
                    if stale_marker(tat, now_ns) && self.key_at(slot).load(SeqCst) == hash {
                        // A handover to this very key never finished: finish it.
                        let _ = self.tat_at(slot).compare_exchange(tat, 0, SeqCst, SeqCst);
                    }
                    std::hint::spin_loop();
                    continue 'lookup;
                }
                // Load the key after the TAT: if the slot was handed to another
                // key, either this check or the CAS below fails.
                if self.key_at(slot).load(SeqCst) != hash {
                    continue 'lookup;
                }
                let decision = gcra::decide(if tat > horizon { 0 } else { tat }, now_ns, params);
                // A denied request (or cost 0) leaves the TAT alone.
                if !decision.allowed || params.cost == 0 {
                    return Checked { decision, tracked: true, evicted };
                }
                if self.tat_at(slot).compare_exchange_weak(tat, decision.new_tat_ns, SeqCst, SeqCst).is_ok() {
                    return Checked { decision, tracked: true, evicted };
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
        Checked { decision, tracked: false, evicted: false }
    }

    /// Forget `key`: its next request starts from a full burst.
    pub fn reset(&self, key: &str) {
        let hash = self.table.hash(key);
        if let Some(slot) = self.find(hash) {
            let tat = self.tat_at(slot);
            let mut current = tat.load(SeqCst);
            // Set 0 unless the slot is being reclaimed (then the key is gone anyway).
            while !reclaiming(current) && self.key_at(slot).load(SeqCst) == hash {
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
        crate::mapped::test_table_path("shm", name)
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
        // full of live keys: a fifth key evicts one and is limited like any other
        let e = t.check("e", now, &p, OnFull::Allow);
        assert!(e.tracked && e.evicted && e.decision.allowed);
        let again = t.check("e", now, &p, OnFull::Allow);
        assert!(again.tracked && !again.evicted && !again.decision.allowed, "tracked, so limited");
        assert_eq!(t.occupied(), 4);
        // one second later every TAT is in the past: "f" reclaims a slot without evicting
        let later = now + S;
        let f = t.check("f", later, &p, OnFull::Deny);
        assert!(f.tracked && !f.evicted && f.decision.allowed);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_handover_left_half_done_is_taken_over() {
        let path = temp_path("stale");
        let t = SharedTable::open(&path, 1).unwrap();
        let p = Params::new(1, S, 1, 1).unwrap();
        let now = 1_000 * S;
        assert!(t.check("a", now, &p, OnFull::Deny).decision.allowed);
        // A process died between the stores of a handover to "b": its marker stays.
        t.tat_at(0).store(RECLAIM_FLAG | now, SeqCst);
        let fresh = t.check("b", now + S / 2, &p, OnFull::Deny);
        assert!(!fresh.tracked, "a fresh marker is respected");
        let later = t.check("b", now + 2 * STALE_RECLAIM_NS, &p, OnFull::Deny);
        assert!(later.tracked && later.decision.allowed, "a stale one is taken over");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_tat_beyond_any_decision_counts_as_none() {
        let path = temp_path("horizon");
        let t = SharedTable::open(&path, 8).unwrap();
        let p = Params::new(1, S, 2, 1).unwrap();
        let before_reboot = 10_000 * S;
        assert!(t.check("k", before_reboot, &p, OnFull::Deny).decision.allowed);
        assert!(t.check("k", before_reboot, &p, OnFull::Deny).decision.allowed);
        assert!(!t.check("k", before_reboot, &p, OnFull::Deny).decision.allowed);
        // A caller a little behind still sees the key's state...
        assert!(!t.check("k", before_reboot - S, &p, OnFull::Deny).decision.allowed);
        // ...but after the clock went back (a reboot, with a table kept on disk) it is not locked out.
        assert!(t.check("k", 5 * S, &p, OnFull::Deny).decision.allowed);
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
