//! The timer thread's private heap of deadlines, and how it stays small.
//!
//! The heap holds `(deadline, key)` pairs, earliest first. Cancelling a timer does not
//! look for its pair (that would be O(n)); it only frees the payload's slot, which leaves
//! the pair in the heap as a stale entry. Each turn of the timer thread:
//!
//! 1. moves the queued deadlines into the heap, skipping timers already cancelled;
//! 2. pops every entry that is due, taking the payloads of the valid ones out for firing
//!    and skipping the stale ones;
//! 3. pops stale entries off the top, so the thread never sleeps for a cancelled
//!    deadline;
//! 4. counts the stale entries left and compacts the heap (rebuilds it from the valid
//!    entries) when there are too many, see [`needs_compaction`];
//! 5. returns the earliest valid deadline, for the thread to sleep until.
//!
//! The count in step 4 is exact and costs nothing: after step 1 every pending timer has
//! exactly one entry in the heap, so the stale entries are `heap length − pending`.
//! A compaction brings it back to zero.
//!
//! This is all plain data and no threads: the timer thread runs [`DeadlineHeap::turn`]
//! under the lock with the real clock, and the tests run it with made-up instants.

use crate::entries::{Entries, Scheduled};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Stale entries a heap may hold however small it is, before it is worth compacting.
///
/// Below this, a rebuild frees at most 2 KiB and would run on nearly every wake-up of a
/// thread with a handful of timers that keep being cancelled. Picked out of thin air.
const MIN_STALE_TO_COMPACT: usize = 64;

/// Whether a heap of `heap_len` entries, of which `stale` are stale, should be rebuilt.
///
/// The rule is `stale > max(heap_len / 2, 64)`, i.e. more stale entries than valid ones
/// (and more than 64). It has to do two things:
///
/// * **Bound memory**: after every turn the heap holds at most
///   `max(2 × pending, pending + 64)` entries, whatever the pattern of inserts and
///   cancels.
/// * **Not rebuild on every wake-up**: a rebuild leaves no stale entry, and the next one
///   needs more than `heap_len / 2` new ones, each made by a cancel. So a rebuild, which
///   costs O(heap_len), is paid for by at least `heap_len / 2` cancels: O(1) per cancel.
fn needs_compaction(heap_len: usize, stale: usize) -> bool {
    stale > (heap_len / 2).max(MIN_STALE_TO_COMPACT)
}

/// The timer thread's heap of deadlines, valid and stale.
pub(crate) struct DeadlineHeap {
    /// `(deadline, key)` pairs, earliest on top.
    heap: BinaryHeap<Reverse<Scheduled>>,
    /// Times the heap was rebuilt without its stale entries.
    compactions: u64,
}

impl DeadlineHeap {
    /// An empty heap.
    pub(crate) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            compactions: 0,
        }
    }

    /// One turn of the timer thread at time `now` (steps 1 to 5 above): the payloads
    /// that are due go to the end of `due`, in deadline order (ties in insertion order).
    /// Returns the earliest deadline still pending, if any.
    pub(crate) fn turn<T>(
        &mut self,
        entries: &mut Entries<T>,
        now: Instant,
        due: &mut Vec<T>,
    ) -> Option<Instant> {
        self.heap.extend(entries.take_incoming().map(Reverse));

        while let Some(Reverse(top)) = self.heap.peek().copied() {
            if entries.is_pending(top.key) {
                if top.deadline > now {
                    break;
                }
                due.extend(entries.take_due(top.key));
            }
            self.heap.pop();
        }

        let stale = self.heap.len().saturating_sub(entries.pending());
        debug_assert_eq!(
            self.heap.len() - stale,
            entries.pending(),
            "every pending timer has one heap entry once the queue is taken"
        );
        if needs_compaction(self.heap.len(), stale) {
            self.compact(entries);
        }
        entries.record_heap(self.heap.len(), self.compactions);
        self.heap.peek().map(|Reverse(top)| top.deadline)
    }

    /// Rebuilds the heap from its valid entries, in O(heap length).
    ///
    /// This runs under the lock, since validity lives in the slab. It costs one slab
    /// lookup per entry plus the rebuild, and by [`needs_compaction`] at least
    /// `heap_len / 2` cancels have paid for it.
    fn compact<T>(&mut self, entries: &Entries<T>) {
        let before = self.heap.len();
        self.heap.retain(|Reverse(s)| entries.is_pending(s.key));
        // Give back memory too, once the heap is far below its high-water mark, so a burst
        // of timers does not pin its peak allocation forever.
        let floor = self.heap.len().max(MIN_STALE_TO_COMPACT);
        if self.heap.capacity() > 4 * floor {
            self.heap.shrink_to(2 * floor);
        }
        self.compactions += 1;
        tracing::trace!(before, after = self.heap.len(), "compacted the timer heap");
    }

    /// Entries in the heap, valid and stale.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries::{Backlog, BACKLOG_LIMIT};
    use crate::TimerKey;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// A small xorshift generator, so the random tests repeat exactly from their seed.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// A number in `0..n`.
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The data structure driven the way the timer thread drives it.
    struct Timers<T> {
        entries: Entries<T>,
        heap: DeadlineHeap,
    }

    impl<T> Timers<T> {
        fn new() -> Self {
            Self {
                entries: Entries::new(),
                heap: DeadlineHeap::new(),
            }
        }

        fn insert(&mut self, deadline: Instant, payload: T) -> (TimerKey, Backlog) {
            match self.entries.insert(deadline, payload) {
                Ok(inserted) => inserted,
                Err(_) => panic!("the entries are open"),
            }
        }

        fn turn(&mut self, now: Instant) -> (Vec<T>, Option<Instant>) {
            let mut due = Vec::new();
            let next = self.heap.turn(&mut self.entries, now, &mut due);
            (due, next)
        }
    }

    #[test]
    fn fires_due_timers_in_deadline_then_insertion_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::new();
        for (deadline, payload) in [(30, 'a'), (10, 'b'), (20, 'c'), (10, 'd'), (40, 'e')] {
            timers.insert(ms(deadline), payload);
        }
        assert_eq!(timers.turn(ms(5)), (vec![], Some(ms(10))));
        assert_eq!(timers.turn(ms(20)), (vec!['b', 'd', 'c'], Some(ms(30))));
        assert_eq!(timers.turn(ms(100)), (vec!['a', 'e'], None));
        assert_eq!(timers.heap.len(), 0);
        assert_eq!(timers.entries.stats().fired, 5);
    }

    #[test]
    fn a_cancelled_timer_stays_in_the_heap_but_never_fires() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::new();
        let (a, _) = timers.insert(ms(10), 'a');
        timers.insert(ms(20), 'b');
        timers.turn(t0);
        assert_eq!(timers.entries.cancel(a), Some('a'));
        assert_eq!(timers.heap.len(), 2, "cancel does not touch the heap");
        // The next turn drops the stale top, so the thread sleeps for 'b', not 'a'.
        assert_eq!(timers.turn(t0), (vec![], Some(ms(20))));
        assert_eq!(timers.heap.len(), 1);
        assert_eq!(timers.turn(ms(20)), (vec!['b'], None));
    }

    #[test]
    fn compacts_once_stale_entries_outnumber_valid_ones() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        let mut timers = Timers::new();
        // 400 timers, all in the heap; cancel them from the back so that none of the
        // stale entries is on top, where a turn would pop it.
        let keys: Vec<_> = (0..400u32)
            .map(|i| timers.insert(far + Duration::from_secs(i.into()), i).0)
            .collect();
        timers.turn(t0);
        for (cancelled, key) in keys.iter().rev().enumerate().map(|(i, k)| (i + 1, k)) {
            timers.entries.cancel(*key);
            timers.turn(t0);
            let stats = timers.entries.stats();
            if cancelled <= 200 {
                assert_eq!(stats.compactions, 0, "after {cancelled} cancels");
                assert_eq!(stats.heap_len, 400);
            } else {
                // 201 stale of 400 is more than half: rebuilt down to the 199 valid.
                assert_eq!(stats.compactions, 1, "after {cancelled} cancels");
                assert_eq!(stats.heap_len, 400 - cancelled);
                break;
            }
        }
    }

    #[test]
    fn small_heaps_tolerate_a_few_stale_entries() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        let mut timers = Timers::new();
        timers.insert(t0 + Duration::from_secs(1), 0);
        // The earliest timer stays, so stale entries below it are never popped.
        for i in 1..=MIN_STALE_TO_COMPACT {
            let (key, _) = timers.insert(far, i);
            timers.turn(t0);
            timers.entries.cancel(key);
        }
        timers.turn(t0);
        assert_eq!(timers.entries.stats().compactions, 0);
        assert_eq!(timers.heap.len(), MIN_STALE_TO_COMPACT + 1);
        let (key, _) = timers.insert(far, 0);
        timers.turn(t0);
        timers.entries.cancel(key);
        timers.turn(t0);
        assert_eq!(timers.entries.stats().compactions, 1);
        assert_eq!(timers.heap.len(), 1);
    }

    /// Random inserts, cancels and clock moves, checked against a plain ordered map:
    /// every turn must fire exactly the pending timers whose deadline has passed, in
    /// deadline order with ties in insertion order, and nothing else.
    #[test]
    fn matches_a_reference_model() {
        for seed in 1..=40u64 {
            run_against_reference(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 3_000);
        }
    }

    fn run_against_reference(seed: u64, steps: usize) {
        let mut rng = XorShift(seed);
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        let mut now = 0u64;
        let mut timers = Timers::new();
        // (deadline, insertion number) -> payload: the order timers must fire in.
        let mut reference: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        // Every key ever handed out, with what cancelling it must give back.
        let mut keys: Vec<(TimerKey, (u64, u64))> = Vec::new();
        let mut inserted = 0u64;

        for step in 0..steps {
            match rng.below(10) {
                // Insert, at or near "now" so that deadlines tie often; sometimes in the
                // past, which must fire at the next turn.
                0..=4 => {
                    let deadline = (now + rng.below(200)).saturating_sub(20);
                    let payload = rng.next();
                    let (key, _) = timers.insert(at(deadline), payload);
                    reference.insert((deadline, inserted), payload);
                    keys.push((key, (deadline, inserted)));
                    inserted += 1;
                }
                // Cancel a random key: pending, fired, cancelled or stale alike.
                5 | 6 if !keys.is_empty() => {
                    let (key, slot) = keys[rng.below(keys.len() as u64) as usize];
                    assert_eq!(
                        timers.entries.cancel(key),
                        reference.remove(&slot),
                        "seed {seed:#x} step {step}: cancel"
                    );
                }
                // Move the clock (possibly not at all) and run a turn.
                _ => {
                    now += rng.below(60);
                    let (fired, next) = timers.turn(at(now));
                    let still_pending = reference.split_off(&(now + 1, 0));
                    let expected: Vec<u64> = reference.values().copied().collect();
                    reference = still_pending;
                    assert_eq!(fired, expected, "seed {seed:#x} step {step}: fired");
                    let earliest = reference.keys().next().map(|&(deadline, _)| at(deadline));
                    assert_eq!(next, earliest, "seed {seed:#x} step {step}: next");
                    let stats = timers.entries.stats();
                    assert_eq!(stats.pending, reference.len());
                    assert!(stats.heap_len <= (2 * stats.pending).max(stats.pending + 64));
                }
            }
        }
    }

    /// Cycles of "insert a timeout, cancel the oldest" with `live` timeouts pending, the
    /// way processes use `receive_timeout` when messages arrive in time. The deadlines
    /// are random, so the stale entries end up all over the heap rather than on top,
    /// where a turn would pop them. A turn runs whenever an insert fills the queue, which
    /// is when the real thread would be woken (the deadlines are an hour away, so nothing
    /// else wakes it). Returns the largest heap seen after a turn.
    fn churn(live: usize, cycles: usize) -> usize {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let mut timers = Timers::new();
        let mut keys = std::collections::VecDeque::with_capacity(live + 1);
        let mut largest = 0;
        for i in 0..live + cycles {
            let deadline = far + Duration::from_micros(rng.below(1_000_000_000));
            let (key, backlog) = timers.insert(deadline, i);
            keys.push_back(key);
            if keys.len() > live {
                let oldest = keys.pop_front().expect("more than `live` keys");
                assert_eq!(timers.entries.cancel(oldest), Some(i - live));
            }
            if backlog == Backlog::Full {
                let (fired, _) = timers.turn(t0);
                assert!(fired.is_empty());
                largest = largest.max(timers.heap.len());
            }
        }
        assert_eq!(timers.entries.pending(), live);
        assert!(timers.entries.stats().compactions > 0);
        largest
    }

    /// 10,000,000 insert-then-cancel cycles with 1,000 live timeouts keep the heap at most
    /// `2 × live + 64` entries. The full run takes about 4 s in a debug build, so it is
    /// not scaled down there.
    #[test]
    fn insert_cancel_churn_keeps_the_heap_bounded() {
        let cycles = 10_000_000;
        let live = 1_000;
        let largest = churn(live, cycles);
        assert!(
            largest <= 2 * live + 64,
            "heap reached {largest} entries with {live} live timers"
        );
        // The bound is not slack: cancels do fill the heap up to about twice the live set.
        assert!(
            largest > live + BACKLOG_LIMIT / 2,
            "heap only reached {largest}"
        );
    }
}
