//! The timer thread, and the handles that insert and cancel timers from other threads.
//!
//! The thread sleeps until the earliest deadline. An insert wakes it early only when the
//! new deadline is earlier than the one it sleeps for; the thread publishes that deadline
//! in `parked_until` for inserters to compare against. The protocol, step by step:
//!
//! 1. **Insert**: under the lock, store the payload and queue `(deadline, key)`.
//! 2. After releasing the lock, load `parked_until`. If the new deadline is earlier, or
//!    the insert filled the queue, unpark the thread. Otherwise the thread is either
//!    awake (`AWAKE`, it will take the queue before it sleeps again) or sleeping for a
//!    deadline no later than this one, and will see the queue when it wakes for that.
//! 3. **Turn**: the thread reads the clock, takes the lock, runs one turn of the heap
//!    (take the queue, pop what is due, maybe compact) and, still under the lock, stores
//!    in `parked_until` either `AWAKE` (it has payloads to fire) or the deadline it is
//!    about to sleep for (`NEVER` if none).
//! 4. **Fire**: with the lock released it hands each due payload to `fire`, then goes back
//!    to step 3 without sleeping, since time has passed and inserts may have arrived.
//! 5. **Sleep**: with nothing to fire, it parks until the deadline it published. No user
//!    code runs between publishing and parking: `fire` might park and unpark on its own
//!    (a blocking channel does), and could otherwise swallow our wake-up token.
//!
//! `fire` is the caller's code, and so are the payloads' destructors; either may
//! panic. One panic must not end the thread, or every later deadline would silently
//! never come. So each call of `fire` in step 4, and each drop of an abandoned payload
//! at shutdown, runs under `catch_unwind`; a panic is reported (see [`report_panic`])
//! and the thread goes on with the next payload.
//!
//! Why an insert racing the thread's decision to sleep is never missed. Both sides meet
//! on the lock: either the insert's lock comes first, and the thread's turn takes the
//! new deadline from the queue, or the thread's lock comes first, and then the insert's
//! load is ordered after the thread's store and sees the deadline the thread sleeps for:
//!
//! ```text
//!  timer thread                            inserter
//!  lock; take queue (empty)
//!  parked_until = D; unlock
//!                                          lock; queue d (d < D); unlock
//!                                          load parked_until: D
//!                                          d < D: unpark (token set)
//!  park until D: returns at once
//!  lock; take queue: d
//! ```
//!
//! The unpark may come before the park, as above, or after it; the park token covers
//! both. Since every store to `parked_until` happens under the lock and every load
//! that matters follows a lock of the same mutex, `Relaxed` ordering is enough: the
//! mutex orders them. The loom model in `tests/loom.rs` checks this.

use crate::entries::{Backlog, Entries};
use crate::heap::DeadlineHeap;
use crate::sync::{self, park, park_timeout, Arc, AtomicU64, JoinHandle, Mutex, Ordering, Thread};
use crate::{Stats, TimerKey};
use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// `parked_until` while the thread is awake: no insert needs to wake it.
const AWAKE: u64 = 0;
/// `parked_until` while the thread sleeps with no timer pending: any insert wakes it.
const NEVER: u64 = u64::MAX;

/// What `insert_after` schedules a huge delay as: "effectively never", and still far
/// inside what an `Instant` can represent on every platform.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// How close a deadline must be for the thread to spin for it instead of parking.
///
/// A park wakes up tens of microseconds after its deadline (the kernel's timer path plus
/// the scheduler), while spinning sees the deadline within a clock read. A thread with a
/// deadline further off parks until this much before it, then spins. Measured (see the
/// crate docs): with 1 ns slack a park to the deadline is 25–30 µs late at the median,
/// spinning the last 50 µs brings that to 0.2 µs. Spinning holds a core, so this is also
/// the most we are willing to burn per deadline; 50 µs covers the median park overshoot
/// with room to spare, and longer would mostly buy the rare deeply-late wake-ups.
const SPIN_BEFORE_DEADLINE: Duration = Duration::from_micros(50);

/// What the timer thread and every handle share.
struct Shared<T> {
    /// Pending payloads, the queue of new deadlines and the counters.
    entries: Mutex<Entries<T>>,
    /// The deadline the thread sleeps for, in nanoseconds since `epoch` (clamped to
    /// `1..NEVER`), or `AWAKE` or `NEVER`. Stored only under the `entries` lock.
    parked_until: AtomicU64,
    /// The origin of `parked_until`.
    epoch: Instant,
}

impl<T> Shared<T> {
    /// `deadline` in the units of `parked_until`: a deadline compares below a sleeping
    /// thread's exactly when it is earlier, never below `AWAKE` and always below `NEVER`.
    fn encode(&self, deadline: Instant) -> u64 {
        let nanos = deadline.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(NEVER).clamp(1, NEVER - 1)
    }
}

/// A running timer thread: owns it and stops it on [`shutdown`](Self::shutdown) or drop.
pub struct TimerThread<T: Send + 'static> {
    /// A handle of our own, to insert through and to reach the shared state.
    handle: TimerHandle<T>,
    /// The thread, until it has been joined.
    join: Option<JoinHandle<()>>,
}

/// Inserts and cancels timers of one [`TimerThread`]. Cheap to clone, usable from any
/// thread, and still usable after shutdown (then inserts fail).
pub struct TimerHandle<T> {
    /// The state shared with the timer thread.
    shared: Arc<Shared<T>>,
    /// The timer thread, to unpark it.
    thread: Thread,
}

impl<T: Send + 'static> TimerThread<T> {
    /// Starts the thread (named `name`). `fire` is called on the timer thread, outside
    /// any lock, with the payload of each deadline that passes without having been
    /// cancelled.
    ///
    /// `fire` should be quick: it delays every deadline behind it. If it panics, the
    /// panic is caught and reported (a `tracing` error event and a line on standard
    /// error) and the thread goes on with the next payload; the payload that `fire`
    /// was given is gone.
    pub fn start(name: &str, fire: impl FnMut(T) + Send + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            entries: Mutex::new(Entries::new()),
            parked_until: AtomicU64::new(AWAKE),
            epoch: Instant::now(),
        });
        let join = {
            let shared = Arc::clone(&shared);
            sync::Builder::new()
                .name(name.to_owned())
                .spawn(move || run(&shared, fire))?
        };
        let handle = TimerHandle {
            shared,
            thread: join.thread().clone(),
        };
        Ok(Self {
            handle,
            join: Some(join),
        })
    }

    /// A handle for inserting and cancelling timers.
    pub fn handle(&self) -> TimerHandle<T> {
        self.handle.clone()
    }

    /// Stops and joins the thread; every pending payload is dropped (destructors run,
    /// and one that panics is reported and does not keep the others from being
    /// dropped) and later inserts fail. Also done on drop. Idempotent.
    ///
    /// Payloads that were already due and taken out for firing are still fired before
    /// the thread exits. Called from within `fire`, this stops the thread without
    /// joining it (a thread cannot join itself).
    pub fn shutdown(&mut self) {
        let abandoned = self.handle.shared.entries.lock().close();
        // Destructors run with the lock released: a payload may hold a handle and use it.
        drop_each(abandoned);
        self.handle.thread.unpark();
        let Some(join) = self.join.take() else {
            return;
        };
        if sync::current().id() == join.thread().id() {
            return;
        }
        if join.join().is_err() {
            tracing::error!("the timer thread had panicked");
        }
    }
}

impl<T: Send + 'static> Drop for TimerThread<T> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<T: Send + 'static> fmt::Debug for TimerThread<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerThread")
            .field("running", &self.join.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> TimerHandle<T> {
    /// Schedules `payload` for `deadline`. `Err(payload)` once the thread has shut down.
    ///
    /// A deadline that has already passed fires as soon as the thread gets to it.
    pub fn insert(&self, deadline: Instant, payload: T) -> Result<TimerKey, T> {
        let (key, backlog) = self.shared.entries.lock().insert(deadline, payload)?;
        // Step 2 of the protocol: the load must come after the lock above.
        let parked_until = self.shared.parked_until.load(Ordering::Relaxed);
        if backlog == Backlog::Full || self.shared.encode(deadline) < parked_until {
            self.thread.unpark();
        }
        Ok(key)
    }

    /// Schedules `payload` for `delay` from now. A zero delay fires as soon as possible;
    /// a delay too large to add to the clock (such as `Duration::MAX`) is treated as
    /// "never" and scheduled a hundred years from now.
    pub fn insert_after(&self, delay: Duration, payload: T) -> Result<TimerKey, T> {
        self.insert(deadline_after(Instant::now(), delay), payload)
    }

    /// O(1) cancellation: if the timer is still pending, invalidates it and returns its
    /// payload (the heap is not touched). `None` if it already fired (or is being fired),
    /// was cancelled, or the key is stale.
    pub fn cancel(&self, key: TimerKey) -> Option<T> {
        self.shared.entries.lock().cancel(key)
    }

    /// Counters for tests and metrics. `heap_len` and `compactions` are as of the timer
    /// thread's last turn; the others are as of now.
    pub fn stats(&self) -> Stats {
        self.shared.entries.lock().stats()
    }
}

impl<T> Clone for TimerHandle<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            thread: self.thread.clone(),
        }
    }
}

impl<T> fmt::Debug for TimerHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHandle").finish_non_exhaustive()
    }
}

/// `now + delay`, with a delay too large for the clock cut down to [`FAR_FUTURE`] (or
/// less, on a platform whose clock cannot even reach that).
fn deadline_after(now: Instant, delay: Duration) -> Instant {
    let mut delay = delay.min(FAR_FUTURE);
    loop {
        if let Some(deadline) = now.checked_add(delay) {
            return deadline;
        }
        delay /= 2;
    }
}

/// Closes the timer if the thread leaves `run` without a shutdown, which only a bug of
/// this crate could cause now that `fire` is contained: inserts must not succeed into
/// a timer nobody runs.
struct CloseOnExit<'a, T>(&'a Shared<T>);

impl<T> Drop for CloseOnExit<'_, T> {
    fn drop(&mut self) {
        let abandoned = self.0.entries.lock().close();
        drop_each(abandoned);
    }
}

/// Drops each payload; a destructor that panics is reported, and the rest are still
/// dropped.
fn drop_each<T>(payloads: Vec<T>) {
    for payload in payloads {
        if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            report_panic(
                "a pending timer's payload panicked in its destructor",
                panic,
            );
        }
    }
}

/// Reports a panic caught on the timer thread (or in a shutdown): as a `tracing` error
/// event, for programs that collect them, and as one line on standard error, for
/// those with no subscriber, which would otherwise not learn that a timer's work was
/// cut short. (The panic hook prints the panic itself as usual.)
fn report_panic(what: &str, panic: Box<dyn Any + Send>) {
    let message = match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(message), _) => message,
        (None, Some(message)) => message.as_str(),
        (None, None) => "a panic with a non-string payload",
    };
    tracing::error!("{what}: {message}; the timer thread goes on");
    eprintln!("fibra-timer: {what}: {message}; the timer thread goes on");
    // A panic payload whose own destructor panics is not worth another word.
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(panic))) {
        std::mem::forget(again);
    }
}

/// The timer thread's body: turns, fires and sleeps until shut down.
fn run<T>(shared: &Shared<T>, mut fire: impl FnMut(T)) {
    let _close = CloseOnExit(shared);
    tighten_timer_slack();
    let mut heap = DeadlineHeap::new();
    let mut due = Vec::new();
    loop {
        // Step 3.
        let now = Instant::now();
        let next = {
            let mut entries = shared.entries.lock();
            if entries.is_closed() {
                return;
            }
            let next = heap.turn(&mut entries, now, &mut due);
            let parked_until = match next {
                _ if !due.is_empty() => AWAKE,
                Some(deadline) => shared.encode(deadline),
                None => NEVER,
            };
            shared.parked_until.store(parked_until, Ordering::Relaxed);
            next
        };
        // Step 4.
        if !due.is_empty() {
            for payload in due.drain(..) {
                if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| fire(payload))) {
                    report_panic("a timer panicked as it fired", panic);
                }
            }
            continue;
        }
        // Step 5.
        sleep_until(next);
    }
}

/// Sleeps until `deadline` (forever if `None`), or less: until unparked, or spuriously.
fn sleep_until(deadline: Option<Instant>) {
    let Some(deadline) = deadline else {
        park();
        return;
    };
    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
        return;
    };
    if cfg!(loom) {
        // Loom has no clock to spin against; its timed park waits to be unparked.
        park_timeout(left);
    } else if left > SPIN_BEFORE_DEADLINE {
        // Wake up a little early, to spin the rest of the way (the next turn sees the
        // deadline still ahead and comes back here).
        park_timeout(left - SPIN_BEFORE_DEADLINE);
    } else {
        while Instant::now() < deadline {
            std::hint::spin_loop();
        }
    }
}

/// Asks the kernel to wake this thread from its timed sleeps as precisely as it can.
///
/// Linux lets a sleeping thread's wake-up slip by its "timer slack", 50 µs by default,
/// so that wake-ups can be batched; the timer thread wants its deadlines, not batching.
#[cfg(all(target_os = "linux", not(loom)))]
fn tighten_timer_slack() {
    const ONE_NANOSECOND: libc::c_ulong = 1;
    // Safety: PR_SET_TIMERSLACK reads one integer argument and changes only the calling
    // thread's timer slack; no memory is shared with the kernel.
    let result = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ONE_NANOSECOND) };
    if result != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not set the timer thread's timer slack"
        );
    }
}

/// Elsewhere there is no timer slack to set (or, under loom, no kernel).
#[cfg(not(all(target_os = "linux", not(loom))))]
fn tighten_timer_slack() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_delays_saturate_and_zero_is_now() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(deadline_after(now, Duration::ZERO), now);
        let soon = Duration::from_millis(3);
        assert_eq!(deadline_after(now, soon), now + soon);
    }

    #[test]
    fn encoded_deadlines_compare_like_instants() {
        let shared = Shared::<()> {
            entries: Mutex::new(Entries::new()),
            parked_until: AtomicU64::new(AWAKE),
            epoch: Instant::now(),
        };
        let at = |us| shared.epoch + Duration::from_micros(us);
        assert!(shared.encode(at(10)) < shared.encode(at(11)));
        assert!(shared.encode(at(0)) > AWAKE);
        assert!(shared.encode(shared.epoch + FAR_FUTURE * 10) < NEVER);
        assert!(shared.encode(at(0) - Duration::from_secs(1)) > AWAKE);
    }
}
