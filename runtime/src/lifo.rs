//! A worker's LIFO slot: the process it woke last, which it runs next.
//!
//! The slot keeps a message chain (ping-pong, a token passed round a ring) on one
//! core, hot in cache, and costs the owner no read-modify-write: it is touched on
//! every send that wakes a process and on every pick. But a slot only its owner
//! can see strands what it holds while the owner is stuck in one long activation
//! (a CPU-bound handler that sends, then computes for a second), even with other
//! workers idle. So the slot can also be *stolen* from, rarely, by the runtime's
//! watch thread (see `scheduler.rs`), and the two sides meet in a Dekker-style
//! handshake with asymmetric fences:
//!
//! ```text
//!   owner (every access)                   thief (rare)
//!   --------------------                   ------------
//!   busy := true                           lock thieves; claimed := true
//!   light fence (compiler only)            heavy fence (membarrier)
//!   claimed?                               while busy: wait (a few instructions)
//!     no: use the slot; busy := false      use the slot
//!     yes: busy := false, lock thieves,    claimed := false; unlock
//!          use the slot under the lock
//! ```
//!
//! The heavy fence makes every running thread of the process execute a full
//! fence, so the owner's store-then-load and the thief's store-then-load are
//! ordered as two `SeqCst` fences would order them: the owner sees the claim, or
//! the thief sees the owner busy and waits out its few instructions. Either way one
//! side at a time touches the slot. The owner's section contains no user code
//! (only the swap of one value), so the thief's wait is short; the thief's section
//! is one look at the value.
//!
//! `tests/loom_lifo.rs` checks the handshake under every interleaving (loom's
//! tracked cell reports any overlapping access), with both fences as `SeqCst`
//! fences, which is the ordering the asymmetric pair promises.

use crate::sync::{asymmetric, spin_wait, AtomicBool, Mutex, Ordering, UnsafeCell};

/// One value that its owner thread swaps freely and other threads may steal.
pub struct LifoSlot<T> {
    /// The owner is inside its section.
    busy: AtomicBool,
    /// A thief is inside its section, or about to enter it.
    claimed: AtomicBool,
    /// Whether the slot held a value when last touched: a hint for thieves, who
    /// look at it without the handshake (stale is harmless).
    occupied: AtomicBool,
    /// Serializes thieves, and the owner while a thief holds its claim.
    thieves: Mutex<()>,
    /// The value; see the module comment for who may touch it when.
    value: UnsafeCell<Option<T>>,
}

// Safety: the handshake (module comment) makes every access to `value` exclusive,
// and the value moves between threads only as a whole, so `T: Send` suffices.
unsafe impl<T: Send> Sync for LifoSlot<T> {}
// Safety: as above; the slot owns a `T`.
unsafe impl<T: Send> Send for LifoSlot<T> {}

impl<T> Default for LifoSlot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> LifoSlot<T> {
    /// An empty slot.
    pub fn new() -> Self {
        LifoSlot {
            busy: AtomicBool::new(false),
            claimed: AtomicBool::new(false),
            occupied: AtomicBool::new(false),
            thieves: Mutex::new(()),
            value: UnsafeCell::new(None),
        }
    }

    /// Owner side: puts `value` in the slot and returns what it held.
    ///
    /// Only one thread (the slot's owner) may call this and [`take`](Self::take);
    /// the scheduler calls them from its worker only.
    #[inline]
    pub fn replace(&self, value: Option<T>) -> Option<T> {
        self.busy.store(true, Ordering::Relaxed);
        asymmetric::light_fence();
        if self.claimed.load(Ordering::Acquire) {
            return self.replace_contended(value);
        }
        self.occupied.store(value.is_some(), Ordering::Relaxed);
        // Safety: no thief is inside its section, and none enters until `busy` is
        // cleared below (module comment).
        let old = self
            .value
            .with_mut(|slot| unsafe { std::mem::replace(&mut *slot, value) });
        self.busy.store(false, Ordering::Release);
        old
    }

    /// Owner side: empties the slot.
    #[inline]
    pub fn take(&self) -> Option<T> {
        self.replace(None)
    }

    /// The owner met a claim: it waits for the thief under the thieves' lock.
    #[cold]
    fn replace_contended(&self, value: Option<T>) -> Option<T> {
        self.busy.store(false, Ordering::Release);
        let _thieves = self.thieves.lock();
        self.occupied.store(value.is_some(), Ordering::Relaxed);
        // Safety: thieves touch the value only while holding this lock.
        self.value
            .with_mut(|slot| unsafe { std::mem::replace(&mut *slot, value) })
    }

    /// Whether the slot seems to hold a value (a hint: the owner may be changing
    /// it right now).
    pub fn looks_occupied(&self) -> bool {
        self.occupied.load(Ordering::Relaxed)
    }

    /// Thief side (any thread but the owner): takes the value if `wanted` says so.
    pub fn steal_if(&self, wanted: impl FnOnce(&T) -> bool) -> Option<T> {
        let _thieves = self.thieves.lock();
        self.claimed.store(true, Ordering::Relaxed);
        let stolen = if asymmetric::heavy_fence() {
            let mut turns = 0;
            while self.busy.load(Ordering::Acquire) {
                spin_wait(&mut turns);
            }
            // Safety: the owner is outside its section and will see the claim before
            // it enters again; other thieves wait for the lock.
            let stolen = self.value.with_mut(|slot| unsafe {
                match &*slot {
                    Some(value) if wanted(value) => (*slot).take(),
                    _ => None,
                }
            });
            if stolen.is_some() {
                self.occupied.store(false, Ordering::Relaxed);
            }
            stolen
        } else {
            None
        };
        self.claimed.store(false, Ordering::Release);
        stolen
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicUsize as StdAtomicUsize};
    use std::sync::Arc;

    /// Real threads, the real fences (membarrier where the kernel has it): an owner
    /// swapping values in as fast as it can and a thief stealing all the while,
    /// until the thief has taken a few hundred. Every value comes out exactly once.
    #[test]
    fn an_owner_and_a_thief_on_real_threads_take_each_value_once() {
        const MAX_VALUES: u64 = 20_000_000;
        const STEALS: usize = 300;
        asymmetric::init();
        let slot = Arc::new(LifoSlot::new());
        let done = Arc::new(StdAtomicBool::new(false));
        let steals = Arc::new(StdAtomicUsize::new(0));
        let thief = {
            let (slot, done, steals) = (slot.clone(), done.clone(), steals.clone());
            std::thread::spawn(move || {
                let mut stolen = Vec::new();
                while !done.load(Ordering::Acquire) {
                    if let Some(v) = slot.steal_if(|v: &u64| v % 3 != 0) {
                        stolen.push(v);
                        steals.store(stolen.len(), Ordering::Release);
                    }
                }
                stolen
            })
        };
        let mut out = Vec::new();
        let mut values = 0;
        while values < MAX_VALUES && steals.load(Ordering::Acquire) < STEALS {
            out.extend(slot.replace(Some(values)));
            if values % 7 == 0 {
                out.extend(slot.take());
            }
            values += 1;
        }
        out.extend(slot.take());
        done.store(true, Ordering::Release);
        let stolen = thief.join().unwrap();
        assert!(
            stolen.len() >= STEALS,
            "the thief stole only {} values",
            stolen.len()
        );
        assert!(
            stolen.iter().all(|v| v % 3 != 0),
            "the thief took a value it declined"
        );
        out.extend(stolen);
        out.sort_unstable();
        assert!(
            out.iter().copied().eq(0..values),
            "a value was lost or taken twice"
        );
    }
}
