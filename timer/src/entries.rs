//! The payloads of pending timers and the queue of new deadlines: the state the timer
//! thread shares with every thread that inserts or cancels, kept behind one short lock.
//!
//! How a timer is invalidated without touching the heap:
//!
//! 1. An insert takes the next **generation** (a counter that only grows), stores the
//!    payload with it in a free slot of the slab, and gives out the key
//!    `(slot, generation)`. It then queues `(deadline, key)` for the timer thread.
//! 2. A key is **valid** while its slot holds an entry with the key's generation.
//! 3. A cancel checks that, takes the payload out and frees the slot: O(1). The heap still
//!    holds the key, which is now stale.
//! 4. When the slot is reused, its new entry gets a new generation, so the stale key can
//!    never match it: the generation is global and 64 bits wide, so unlike a per-slot
//!    counter it never wraps around to an old value.
//! 5. Firing is the same as a cancel done by the timer thread: whichever of the two takes
//!    the payload out of the slot (under the lock) owns it, and the other finds nothing.
//!    That is what makes "fired or returned by cancel, exactly once" hold.
//!
//! The queue of new deadlines is a plain `Vec` behind the same lock as the slab, not a
//! lock-free queue of its own: an insert has to take the lock for the payload anyway, so
//! pushing there costs one store and no second round of synchronisation, and the loom
//! models see every step of it.

use crate::{Stats, TimerKey};
use slab::Slab;
use std::cmp::Ordering;
use std::time::Instant;

/// How many new deadlines may wait in the queue before an insert wakes the timer thread
/// to take them, even though none of them is earlier than the one it sleeps for.
///
/// Without this limit a thread sleeping for a 10 s deadline while processes insert and
/// cancel long timeouts would let the queue grow for 10 s. With it the queue stays under
/// 32 KiB (32 bytes an entry) and the thread pays one wake-up per 1,024 inserts, which
/// is noise next to the inserts themselves. The value was picked out of thin air
/// between those two bounds.
pub(crate) const BACKLOG_LIMIT: usize = 1024;

/// A deadline on its way to, or in, the timer thread's heap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scheduled {
    /// When the timer is due.
    pub(crate) deadline: Instant,
    /// The timer it belongs to; stale once the timer fires or is cancelled.
    pub(crate) key: TimerKey,
}

impl Ord for Scheduled {
    /// Earlier deadlines first; equal deadlines in the order they were inserted, which is
    /// the order of their generations.
    fn cmp(&self, other: &Self) -> Ordering {
        self.deadline
            .cmp(&other.deadline)
            .then(self.key.generation.cmp(&other.key.generation))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scheduled {}

/// Whether an insert left the queue short enough for the timer thread to take it at its
/// next wake-up, or long enough that it should be woken now to take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backlog {
    /// The queue is below [`BACKLOG_LIMIT`].
    Short,
    /// This insert brought the queue to [`BACKLOG_LIMIT`]: wake the thread.
    Full,
}

/// One pending timer's payload.
pub(crate) struct Entry<T> {
    /// The generation its key carries.
    generation: u64,
    /// What to hand to `fire` when the deadline passes.
    payload: T,
}

/// Pending payloads, the queue of new deadlines and the counters, all behind the lock.
pub(crate) struct Entries<T> {
    /// One entry per pending timer; a cancelled or fired timer's slot is free again.
    slots: Slab<Entry<T>>,
    /// The generation the next insert gets.
    next_generation: u64,
    /// Deadlines inserted since the timer thread last took the queue, oldest first.
    incoming: Vec<Scheduled>,
    /// Set at shutdown: inserts fail from then on.
    closed: bool,
    /// Payloads taken out for `fire`.
    fired: u64,
    /// Payloads handed back by `cancel`.
    cancelled: u64,
    /// Length of the timer thread's heap at the end of its last turn.
    heap_len: usize,
    /// Heap compactions the timer thread has done.
    compactions: u64,
}

impl<T> Entries<T> {
    /// No timers, nothing queued, open.
    pub(crate) fn new() -> Self {
        Self {
            slots: Slab::new(),
            next_generation: 0,
            incoming: Vec::new(),
            closed: false,
            fired: 0,
            cancelled: 0,
            heap_len: 0,
            compactions: 0,
        }
    }

    /// Stores `payload` and queues its deadline. Hands the payload back once closed.
    pub(crate) fn insert(
        &mut self,
        deadline: Instant,
        payload: T,
    ) -> Result<(TimerKey, Backlog), T> {
        if self.closed {
            return Err(payload);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let slot = self.slots.insert(Entry {
            generation,
            payload,
        });
        let key = TimerKey { slot, generation };
        self.incoming.push(Scheduled { deadline, key });
        let backlog = if self.incoming.len() == BACKLOG_LIMIT {
            Backlog::Full
        } else {
            Backlog::Short
        };
        Ok((key, backlog))
    }

    /// Whether `key` still names a pending timer.
    pub(crate) fn is_pending(&self, key: TimerKey) -> bool {
        is_pending_in(&self.slots, key)
    }

    /// Takes the payload of a still-pending timer out and frees its slot.
    fn take(&mut self, key: TimerKey) -> Option<T> {
        if !self.is_pending(key) {
            return None;
        }
        Some(self.slots.remove(key.slot).payload)
    }

    /// Invalidates a pending timer and hands back its payload; `None` if it already fired,
    /// was cancelled, or the key is stale.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let payload = self.take(key)?;
        self.cancelled += 1;
        Some(payload)
    }

    /// Takes a due timer's payload out to be fired; `None` if it was cancelled.
    pub(crate) fn take_due(&mut self, key: TimerKey) -> Option<T> {
        let payload = self.take(key)?;
        self.fired += 1;
        Some(payload)
    }

    /// Number of pending (valid) timers.
    pub(crate) fn pending(&self) -> usize {
        self.slots.len()
    }

    /// Empties the queue, yielding the deadlines of timers that are still pending;
    /// those cancelled while queued never reach the heap.
    pub(crate) fn take_incoming(&mut self) -> impl Iterator<Item = Scheduled> + '_ {
        let slots = &self.slots;
        self.incoming
            .drain(..)
            .filter(move |scheduled| is_pending_in(slots, scheduled.key))
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Makes later inserts fail and takes every pending payload out, for the caller to
    /// drop after it has released the lock (a payload's destructor may well use the
    /// timer itself).
    pub(crate) fn close(&mut self) -> Vec<T> {
        self.closed = true;
        self.incoming = Vec::new();
        std::mem::take(&mut self.slots)
            .into_iter()
            .map(|(_, entry)| entry.payload)
            .collect()
    }

    /// Records the timer thread's heap figures for [`stats`](Self::stats).
    pub(crate) fn record_heap(&mut self, heap_len: usize, compactions: u64) {
        self.heap_len = heap_len;
        self.compactions = compactions;
    }

    /// The counters as of now (the heap figures as of the timer thread's last turn).
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            pending: self.slots.len(),
            heap_len: self.heap_len,
            fired: self.fired,
            cancelled: self.cancelled,
            compactions: self.compactions,
        }
    }
}

/// Whether `key` names a pending timer in `slots`.
fn is_pending_in<T>(slots: &Slab<Entry<T>>, key: TimerKey) -> bool {
    slots
        .get(key.slot)
        .is_some_and(|entry| entry.generation == key.generation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cancel_returns_the_payload_once() {
        let mut entries = Entries::new();
        let now = Instant::now();
        let (key, _) = entries.insert(now, "a").ok().unwrap();
        assert!(entries.is_pending(key));
        assert_eq!(entries.cancel(key), Some("a"));
        assert_eq!(entries.cancel(key), None);
        assert_eq!(entries.take_due(key), None);
        assert_eq!(entries.pending(), 0);
        assert_eq!(entries.stats().cancelled, 1);
    }

    #[test]
    fn a_stale_key_misses_the_slot_reused_after_it() {
        let mut entries = Entries::new();
        let now = Instant::now();
        let (old, _) = entries.insert(now, 1).ok().unwrap();
        assert_eq!(entries.cancel(old), Some(1));
        let (new, _) = entries.insert(now, 2).ok().unwrap();
        assert_eq!(new.slot, old.slot, "the slab reuses the freed slot");
        assert_ne!(new, old);
        assert_eq!(entries.cancel(old), None);
        assert_eq!(entries.take_due(new), Some(2));
        assert_eq!(entries.stats().fired, 1);
    }

    #[test]
    fn timers_cancelled_while_queued_never_leave_the_queue() {
        let mut entries = Entries::new();
        let now = Instant::now();
        let keys: Vec<_> = (0..4)
            .map(|i| entries.insert(now, i).ok().unwrap().0)
            .collect();
        entries.cancel(keys[1]);
        entries.cancel(keys[2]);
        let left: Vec<_> = entries.take_incoming().map(|s| s.key).collect();
        assert_eq!(left, [keys[0], keys[3]]);
        assert_eq!(entries.take_incoming().count(), 0);
    }

    #[test]
    fn the_insert_that_fills_the_backlog_says_so() {
        let mut entries = Entries::new();
        let now = Instant::now();
        for i in 1..=BACKLOG_LIMIT * 2 {
            let (_, backlog) = entries.insert(now, i).ok().unwrap();
            let expected = if i == BACKLOG_LIMIT {
                Backlog::Full
            } else {
                Backlog::Short
            };
            assert_eq!(backlog, expected, "insert {i}");
        }
        // Once taken, the queue fills up again from empty.
        entries.take_incoming().for_each(drop);
        for i in 1..=BACKLOG_LIMIT {
            let (_, backlog) = entries.insert(now, i).ok().unwrap();
            assert_eq!(backlog == Backlog::Full, i == BACKLOG_LIMIT);
        }
    }

    #[test]
    fn close_hands_out_every_pending_payload_and_refuses_inserts() {
        let mut entries = Entries::new();
        let now = Instant::now();
        let a = entries.insert(now, 'a').ok().unwrap().0;
        entries.insert(now, 'b').ok().unwrap();
        entries.cancel(a);
        assert_eq!(entries.close(), ['b']);
        assert!(entries.is_closed());
        assert_eq!(entries.insert(now, 'c').err(), Some('c'));
        assert_eq!(entries.pending(), 0);
    }

    #[test]
    fn ties_order_by_insertion() {
        let mut entries = Entries::new();
        let now = Instant::now();
        let later = now + Duration::from_millis(1);
        let a = entries.insert(later, 0).ok().unwrap().0;
        let b = entries.insert(now, 0).ok().unwrap().0;
        let c = entries.insert(later, 0).ok().unwrap().0;
        let mut queued: Vec<_> = entries.take_incoming().collect();
        queued.sort();
        let keys: Vec<_> = queued.iter().map(|s| s.key).collect();
        assert_eq!(keys, [b, a, c]);
    }
}
