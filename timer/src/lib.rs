//! fibra's timeout thread: one thread that keeps a heap of deadlines and hands each
//! payload to a callback when its deadline passes, unless it was cancelled first.
//!
//! A runtime has timeouts everywhere: a process waits for a message for at most 50 ms, a
//! call gives up after a second, a message is sent in ten minutes. Most of them never
//! fire: the message arrives in time and the timeout is cancelled. So cancelling must be
//! cheap, and the timers must still fire on time, to within about 100 µs.
//!
//! # How it works
//!
//! * **One thread** owns a binary heap of `(deadline, key)` pairs and sleeps until the
//!   earliest deadline. When it passes, the thread calls `fire` with that timer's
//!   payload. The crate knows nothing of processes: the payload is whatever the caller
//!   wants done (fibra's runtime uses "wake process P for its wait number N").
//! * **Inserting**, from any thread, stores the payload in a slab (a slot array with a
//!   free list) under a short lock and queues the deadline for the timer thread. The
//!   thread is woken early only if the new deadline is earlier than the one it sleeps
//!   for; otherwise it picks the queue up when it next wakes.
//! * **Cancelling** takes the payload out of its slot and hands it back, in O(1). The
//!   heap is not searched: its entry goes stale. A [`TimerKey`] carries the slot's
//!   generation, so a stale key finds nothing, even once the slot holds another timer.
//! * **Compaction**: stale entries are skipped when they reach the top of the heap. When
//!   they outnumber the valid ones, the thread rebuilds the heap without them, so the
//!   heap stays within twice the number of pending timers (plus 64).
//! * **Exactly once**: a payload is either moved into `fire`, or handed back by
//!   [`TimerHandle::cancel`], or dropped when the thread shuts down. Never two of these,
//!   and never none.
//!
//! # Resolution
//!
//! The timer thread asks Linux for a timer slack of 1 ns instead of the default 50 µs,
//! parks until 50 µs before the earliest deadline and spins the rest of the way. Measured
//! with `examples/lateness.rs` (one 1–10 ms timer at a time, 1,000 samples) on a 2-core
//! VM that was not idle (load average about 2 from other builds):
//!
//! | timer thread does                 | late, median | late, 99th percentile |
//! |-----------------------------------|--------------|-----------------------|
//! | slack 1 ns, spin the last 50 µs   | 0.2 µs       | 40–120 µs             |
//! | slack 1 ns, park to the deadline  | 25–30 µs     | 95–135 µs             |
//! | default slack, park to deadline   | 85–100 µs    | 155–185 µs            |
//!
//! The tail is the scheduler handing the core to another thread: at a load average of 3.5
//! the median stayed within 0.2–17 µs but the 99th percentile grew to 1.5–2.5 ms, as the
//! timer thread waited for a core like everyone else. An idle machine should do better
//! than the table, which was not measured on one. No timer ever fires early.
//!
//! # Example
//!
//! ```
//! use fibra_timer::TimerThread;
//! use std::sync::mpsc;
//! use std::time::Duration;
//!
//! let (fired, fired_rx) = mpsc::channel();
//! let mut timers = TimerThread::start("timers", move |name: &str| {
//!     fired.send(name).unwrap();
//! })?;
//! let handle = timers.handle();
//!
//! handle.insert_after(Duration::from_millis(20), "late").unwrap();
//! handle.insert_after(Duration::from_millis(10), "early").unwrap();
//! // A timeout that is no longer needed: cancelling hands its payload back.
//! let unneeded = handle.insert_after(Duration::from_secs(60), "cancelled").unwrap();
//! assert_eq!(handle.cancel(unneeded), Some("cancelled"));
//!
//! let wait = Duration::from_secs(5);
//! assert_eq!(fired_rx.recv_timeout(wait), Ok("early"));
//! assert_eq!(fired_rx.recv_timeout(wait), Ok("late"));
//!
//! timers.shutdown();
//! assert_eq!(handle.insert_after(Duration::ZERO, "too late"), Err("too late"));
//! # Ok::<(), std::io::Error>(())
//! ```

#![warn(missing_docs, unsafe_op_in_unsafe_fn)]
#![doc(test(attr(deny(warnings))))]

mod entries;
mod heap;
mod sync;
mod thread;

pub use thread::{TimerHandle, TimerThread};

/// Identifies one pending timer: its slot in the payload slab and the generation it was
/// given when inserted. A key outlives its timer harmlessly: once the timer has fired or
/// been cancelled, the key matches nothing, even after its slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey {
    /// The slot holding the timer's payload.
    slot: usize,
    /// Unique to this timer among all timers of its thread; it also orders timers with
    /// equal deadlines by insertion.
    generation: u64,
}

/// Counters of one timer thread, for tests and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Timers inserted and not yet fired or cancelled.
    pub pending: usize,
    /// Entries in the thread's heap at the end of its last turn, stale ones included.
    pub heap_len: usize,
    /// Payloads taken out to be handed to `fire`.
    pub fired: u64,
    /// Payloads handed back by [`TimerHandle::cancel`].
    pub cancelled: u64,
    /// Times the thread rebuilt its heap without the stale entries.
    pub compactions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime keeps one key per waiting process, and the heap one entry per timer.
    #[test]
    fn sizes() {
        assert_eq!(std::mem::size_of::<TimerKey>(), 16);
        assert_eq!(std::mem::size_of::<entries::Scheduled>(), 32);
    }
}
